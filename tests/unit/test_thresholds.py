"""Per-class thresholds (``ssgrl.inference.thresholds``) against a brute-force oracle: every
candidate threshold tried, scikit-learn scoring each; ties, ignored entries, a class without
positives, the precision-target mode; CP..OF1 at per-class thresholds against a hand count."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from ssgrl.inference.predictor import _sigmoid
from ssgrl.inference.thresholds import (
    MAX_F1,
    fit_thresholds,
    method_name,
    metrics_at_thresholds,
    probabilities,
)
from ssgrl.metrics.multilabel import threshold_predictions


def oracle(
    p: np.ndarray, t: np.ndarray, precision: float | None = None
) -> tuple[float, float, bool]:
    """(threshold, F1 at it, precision target reached) by trying every distinct valid score."""
    keep = t >= 0
    p, y = p[keep], t[keep]
    assert y.sum() > 0
    best_t, best_f1 = None, -1.0
    lowest_ok = None
    for thr in sorted(set(p.tolist()), reverse=True):  # highest first: a tie keeps the higher
        pred = p >= thr
        f1 = f1_score(y, pred, zero_division=0)
        if f1 > best_f1:
            best_t, best_f1 = thr, f1
        if precision is not None and precision_score(y, pred, zero_division=0) >= precision:
            lowest_ok = thr  # the last one seen is the lowest
    assert best_t is not None
    if precision is not None and lowest_ok is not None:
        return lowest_ok, f1_score(y, p >= lowest_ok, zero_division=0), True
    return best_t, best_f1, precision is None


def random_case(seed: int, n: int = 40, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < 0.35).astype(np.int8)
    # scores that rank positives a bit higher, rounded to force many ties
    p = np.clip(rng.random((n, c)) * 0.8 + 0.3 * t, 0, 1)
    p = np.round(p, 1 if seed % 2 == 0 else 2)
    t[rng.random((n, c)) < 0.1] = -1  # ignored entries
    t[0, :] = 1  # every class has a positive (the no-positive class is tested apart)
    p[1, 0], t[1, 0] = 1.0, 0  # a negative on top: class 0 never reaches precision 1
    return p, t


@pytest.mark.parametrize("seed", range(8))
def test_max_f1_matches_brute_force_oracle(seed: int) -> None:
    p, t = random_case(seed)
    fit = fit_thresholds(p, t, fitted_on="val")
    assert fit.thresholds.method == MAX_F1
    for c, ct in enumerate(fit.classes):
        thr, f1, _ = oracle(p[:, c], t[:, c])
        assert ct.threshold == thr, (seed, c)
        assert ct.f1 == pytest.approx(f1, abs=1e-12)
        keep = t[:, c] >= 0
        y, pred = t[keep, c], p[keep, c] >= ct.threshold
        assert ct.precision == pytest.approx(precision_score(y, pred, zero_division=0), abs=1e-12)
        assert ct.recall == pytest.approx(recall_score(y, pred), abs=1e-12)
        assert ct.fitted and ct.note == "" and ct.positives == int((t[:, c] == 1).sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.6, 0.9, 1.0])
def test_precision_target_matches_brute_force_oracle(seed: int, target: float) -> None:
    p, t = random_case(seed)
    fit = fit_thresholds(p, t, fitted_on="val", precision=target)
    assert fit.thresholds.method == method_name(target)
    for c, ct in enumerate(fit.classes):
        thr, f1, reached = oracle(p[:, c], t[:, c], precision=target)
        assert ct.threshold == thr, (seed, target, c)
        assert ct.f1 == pytest.approx(f1, abs=1e-12)
        if reached:
            assert ct.precision is not None and ct.precision >= target and ct.note == ""
        else:
            assert "no threshold reaches precision" in ct.note
            assert any(
                n.startswith(f"{ct.name}: no threshold reaches") for n in fit.thresholds.notes
            )


def test_unreachable_precision_falls_back_to_max_f1() -> None:
    # precision at 0.9, 0.8, 0.7, 0.6: 0/1, 1/2, 1/3, 2/4; F1: 0, 1/2, 2/5, 2/3
    p = np.array([[0.9], [0.8], [0.7], [0.6]])
    t = np.array([[0], [1], [0], [1]])
    fit = fit_thresholds(p, t, ["cat"], precision=0.9)
    ct = fit.classes[0]
    assert ct.threshold == 0.6 and ct.f1 == pytest.approx(2 / 3)
    assert fit.thresholds.notes == [
        "cat: no threshold reaches precision 0.9: the max-F1 threshold is used"
    ]
    assert fit.thresholds.method == "lowest with precision >= 0.9, else max-F1"
    # reachable targets: the lowest threshold reaching them
    assert fit_thresholds(p, t, precision=0.5).classes[0].threshold == 0.6
    assert fit_thresholds(p, t, precision=0.5).classes[0].note == ""


def test_ties_go_to_the_higher_threshold() -> None:
    # threshold 0.8 -> TP 1, PP 1: F1 = 2/3; threshold 0.4 -> TP 2, PP 4: F1 = 4/6 = 2/3 too
    p = np.array([[0.8], [0.4], [0.4], [0.4], [0.1]])
    t = np.array([[1], [1], [0], [0], [0]])
    ct = fit_thresholds(p, t).classes[0]
    assert ct.threshold == 0.8 and ct.f1 == pytest.approx(2 / 3)
    # tied scores are one candidate: 0.4 predicts all three 0.4 entries at once
    p2 = np.array([[0.4], [0.4], [0.4], [0.1]])
    t2 = np.array([[1], [1], [0], [1]])
    ct2 = fit_thresholds(p2, t2).classes[0]
    assert ct2.threshold == 0.1 and ct2.f1 == pytest.approx(2 * 3 / (4 + 3))  # > 0.4's 4/6


def test_ignored_entries_are_skipped() -> None:
    # the ignored 0.9 entry would be a false positive at 0.9 if counted; as a candidate it
    # would give threshold 0.9
    p = np.array([[0.9], [0.7], [0.6], [0.2]])
    t = np.array([[-1], [1], [0], [0]])
    ct = fit_thresholds(p, t).classes[0]
    assert ct.threshold == 0.7 and ct.precision == 1.0 and ct.recall == 1.0 and ct.f1 == 1.0


def test_class_without_positives_keeps_global_threshold_with_note() -> None:
    p = np.array([[0.9, 0.7], [0.2, 0.6], [0.4, 0.1]])
    t = np.array([[1, 0], [0, -1], [0, 0]])
    fit = fit_thresholds(p, t, ["cat", "dog"], fitted_on="toy:val", global_threshold=0.5)
    dog = fit.classes[1]
    assert dog.threshold == 0.5 and not dog.fitted and dog.positives == 0
    assert dog.recall is None and dog.f1 is None and dog.precision == 0.0  # 0.7 predicted
    assert fit.thresholds.values == [0.9, 0.5]
    assert fit.thresholds.notes == [
        "dog: no positive in toy:val: global threshold 0.5 kept",
    ]
    assert fit.classes[0].fitted and fit.classes[0].threshold == 0.9


def test_fit_reproduces_its_f1_exactly_on_the_same_probabilities() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(200, 5)).astype(np.float32)
    t = (rng.random((200, 5)) < 0.3).astype(np.int8)
    probs = probabilities(logits)
    fit = fit_thresholds(probs, t)
    pred = threshold_predictions(probs, np.asarray(fit.thresholds.values))
    for c, ct in enumerate(fit.classes):
        assert f1_score(t[:, c], pred[:, c]) == pytest.approx(ct.f1, abs=1e-15)
        assert float(np.float32(ct.threshold)) == ct.threshold  # a float32 score, stored exactly


def test_probabilities_are_the_predictors() -> None:
    x = np.random.default_rng(0).normal(scale=8, size=(50, 7)).astype(np.float32)
    np.testing.assert_array_equal(probabilities(x), _sigmoid(x))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="precision target"):
        fit_thresholds(np.zeros((2, 1)), np.zeros((2, 1)), precision=0.0)
    with pytest.raises(ValueError, match="one shape"):
        fit_thresholds(np.zeros((2, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        fit_thresholds(np.full((2, 1), 2.0), np.zeros((2, 1)))


def test_table_lists_every_class() -> None:
    p, t = random_case(0, c=3)
    t[:, 2] = 0
    fit = fit_thresholds(p, t, ["a", "b", "c"], fitted_on="x:val")
    table = fit.table().splitlines()
    assert table[0].split() == ["class", "threshold", "precision", "recall", "F1", "note"]
    assert [row.split()[0] for row in table[1:]] == ["a", "b", "c"]
    assert "global threshold 0.5 kept" in table[3]


def test_threshold_predictions_broadcasts_per_class_thresholds() -> None:
    probs = np.array([[0.3, 0.6], [0.5, 0.5]])
    np.testing.assert_array_equal(
        threshold_predictions(probs, np.array([0.3, 0.7])), [[True, False], [True, False]]
    )


def test_metrics_at_thresholds_hand_oracle() -> None:
    # class 0 at 0.3, class 1 at 0.7, class 2 at 0.5 (no positive: out of CP/CR, counts in OP)
    probs = np.array(
        [
            [0.9, 0.8, 0.6],
            [0.2, 0.75, 0.1],
            [0.35, 0.1, 0.2],
            [0.1, 0.69, 0.9],
        ]
    )
    targets = np.array(
        [
            [1, 1, 0],
            [1, 0, -1],
            [0, 1, 0],
            [0, 1, -1],
        ]
    )
    # predictions: c0 rows 0, 2 (0.9, 0.35 >= 0.3); c1 rows 0, 1 (0.8, 0.75); c2 row 0 (0.6;
    # row 3's 0.9 is ignored)
    # c0: correct 1 (row 0), pred 2, gt 2; c1: correct 1, pred 2, gt 3; c2: correct 0, pred 1
    cp = (1 / 2 + 1 / 2) / 2
    cr = (1 / 2 + 1 / 3) / 2
    op, orr = 2 / 5, 2 / 5
    got = metrics_at_thresholds(probs, targets, [0.3, 0.7, 0.5])
    expected = {
        "CP": cp,
        "CR": cr,
        "CF1": 2 * cp * cr / (cp + cr),
        "OP": op,
        "OR": orr,
        "OF1": 2 * op * orr / (op + orr),
    }
    assert got == pytest.approx({k: 100 * v for k, v in expected.items()})
    with pytest.raises(ValueError, match="C thresholds"):
        metrics_at_thresholds(probs, targets, [0.5, 0.5])
