"""ssgrl.metrics against scikit-learn, independent loop oracles and hand-computed values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ssgrl.metrics import (
    AP_MODES,
    APMode,
    UndefinedClassWarning,
    average_precision,
    average_precisions,
    compute_metrics,
    format_metrics,
    multilabel_counts,
    multilabel_prf,
    sigmoid,
    threshold_predictions,
    topk_predictions,
)

# ---------------------------------------------------------------- oracles (plain loops, one class)


def _pr_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each rank (no ties, labels in {0, 1})."""
    order = np.argsort(-scores)
    tp = fp = 0
    prec, rec = [], []
    for i in order:
        if labels[i] == 1:
            tp += 1
        else:
            fp += 1
        prec.append(tp / (tp + fp))
        rec.append(tp / labels.sum())
    return np.array(prec), np.array(rec)


def voc_all_point_oracle(scores: np.ndarray, labels: np.ndarray) -> float:
    """The VOC2010+ devkit loop (VOCevaldet / voc_ap with use_07_metric=False)."""
    prec, rec = _pr_curve(scores, labels)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def voc_ap_07_port(rec: np.ndarray, prec: np.ndarray) -> float:
    """py-faster-rcnn's voc_ap(rec, prec, use_07_metric=True), line for line."""
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        if np.sum(rec >= t) == 0:  # noqa: SIM108 (kept as the port writes it)
            p = 0
        else:
            p = np.max(prec[rec >= t])
        ap = ap + p / 11.0
    return float(ap)


def voc07_exact_levels(rec: np.ndarray, prec: np.ndarray) -> float:
    """The same loop with exact k/10 levels (the old, non-published rule), to show they differ."""
    ap = 0.0
    for k in range(11):
        t = k / 10  # the float nearest k/10, as is rec = j / npos when j / npos = k / 10
        p = np.max(prec[rec >= t]) if np.sum(rec >= t) else 0
        ap = ap + p / 11.0
    return float(ap)


def voc07_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """voc_eval's rec/prec for one class: ignored (-1) rows dropped; a tie group is one
    operating point (each member takes the counts after the whole group)."""
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    npos = int(np.sum(labels == 1))
    sorted_ind = np.argsort(-scores, kind="stable")
    tp = np.zeros(len(sorted_ind))
    fp = np.zeros(len(sorted_ind))
    for d, i in enumerate(sorted_ind):
        if labels[i] == 1:
            tp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    ranked = scores[sorted_ind]
    for d in range(len(ranked) - 2, -1, -1):
        if ranked[d] == ranked[d + 1]:
            tp[d], fp[d] = tp[d + 1], fp[d + 1]
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec


def voc07_oracle(scores: np.ndarray, labels: np.ndarray) -> float:
    """VOC2007 11-point AP as py-faster-rcnn computes it (float arange recall levels)."""
    return voc_ap_07_port(*voc07_curve(scores, labels))


def random_data(seed: int, n: int = 60, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Tie-free scores and {0,1} targets with at least one positive per class."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    targets = (rng.random((n, c)) < rng.uniform(0.1, 0.6, size=c)).astype(np.int8)
    targets[rng.integers(0, n, size=c), np.arange(c)] = 1
    return scores, targets


# ---------------------------------------------------------------- AP

HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])[:, None]
HAND_LABELS = np.array([1, 0, 1, 0, 0, 1])[:, None]


@pytest.mark.parametrize(
    ("mode", "expected"),
    # precisions at the positives: 1, 2/3, 3/6 -> (1 + 2/3 + 1/2) / 3 = 13/18 (already monotone);
    # 11-point: 1 for t <= .3 (4 levels), 2/3 for .4-.6 (3), 1/2 for .7-1 (4) -> 8/11
    [("noninterp", 13 / 18), ("voc", 13 / 18), ("voc07", 8 / 11)],
)
def test_ap_hand_vector(mode: APMode, expected: float) -> None:
    ap = average_precision(HAND_SCORES, HAND_LABELS, mode=mode)
    assert ap.shape == (1,) and ap.dtype == np.float64
    assert ap[0] == pytest.approx(expected, abs=1e-12)
    assert round(100 * ap[0], 4) == {"voc07": 72.7273}.get(mode, 72.2222)


def test_ap_interpolation_matters() -> None:
    # labels 0,1,1: precision 1/2 then 2/3; all-point lifts the first to 2/3
    s = np.array([[0.9], [0.8], [0.7]])
    t = np.array([[0], [1], [1]])
    assert average_precision(s, t, "noninterp")[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision(s, t, "voc")[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noninterp_matches_sklearn(seed: int) -> None:
    scores, targets = random_data(seed)
    ap = average_precision(scores, targets, "noninterp")
    expected = [average_precision_score(targets[:, j], scores[:, j]) for j in range(6)]
    np.testing.assert_allclose(ap, expected, rtol=0, atol=1e-12)


def test_noninterp_matches_sklearn_with_ties() -> None:
    scores, targets = random_data(3, n=80)
    scores = np.round(scores, 1)  # many ties: a tie group is one operating point, as in sklearn
    ap = average_precision(scores, targets, "noninterp")
    expected = [average_precision_score(targets[:, j], scores[:, j]) for j in range(6)]
    np.testing.assert_allclose(ap, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", AP_MODES)
def test_ties_do_not_depend_on_row_order(mode: APMode) -> None:
    scores, targets = random_data(4, n=50)
    scores = np.round(scores, 1)
    perm = np.random.default_rng(5).permutation(50)
    np.testing.assert_allclose(
        average_precision(scores, targets, mode),
        average_precision(scores[perm], targets[perm], mode),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_voc_modes_match_loop_oracles(seed: int) -> None:
    scores, targets = random_data(seed, n=40 + 7 * seed, c=5)
    voc = average_precision(scores, targets, "voc")
    voc07 = average_precision(scores, targets, "voc07")
    for j in range(5):
        assert voc[j] == pytest.approx(voc_all_point_oracle(scores[:, j], targets[:, j]), abs=1e-12)
        assert voc07[j] == pytest.approx(voc07_oracle(scores[:, j], targets[:, j]), abs=1e-12)


def test_voc07_hand_vector_matches_port() -> None:
    rec, prec = voc07_curve(HAND_SCORES[:, 0], HAND_LABELS[:, 0])
    assert voc_ap_07_port(rec, prec) == pytest.approx(8 / 11, abs=1e-12)
    assert average_precision(HAND_SCORES, HAND_LABELS, "voc07")[0] == pytest.approx(
        voc_ap_07_port(rec, prec), abs=1e-12
    )


def test_voc07_float_levels_like_py_faster_rcnn() -> None:
    # 10 positives; a negative right after recall 0.3, 0.6 and 0.7 drops the precision.
    labels = np.array([1, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1])
    scores = np.linspace(1.0, 0.0, len(labels))
    # precision at recall .3 = 3/3, .6 = 6/7, .7 = 7/9, 1.0 = 10/13; best precision from each
    # row on: 1 up to recall .3, 6/7 from recall .4 to .6, 7/9 at .7, 10/13 from .8 on.
    # float levels 0.30000000000000004, 0.6000000000000001, 0.7000000000000001 miss recall
    # .3, .6, .7 and take the next operating point:
    #   0, .1, .2 -> 1;  .3, .4, .5 -> 6/7;  .6 -> 7/9;  .7, .8, .9, 1 -> 10/13
    published = (3 * 1 + 3 * 6 / 7 + 7 / 9 + 4 * 10 / 13) / 11  # 0.856921
    # exact k/10 levels: 0..0.3 -> 1; .4..0.6 -> 6/7; .7 -> 7/9; .8..1 -> 10/13
    exact = (4 * 1 + 3 * 6 / 7 + 7 / 9 + 3 * 10 / 13) / 11  # 0.877900
    rec, prec = voc07_curve(scores, labels)
    assert voc_ap_07_port(rec, prec) == pytest.approx(published, abs=1e-12)
    assert voc07_exact_levels(rec, prec) == pytest.approx(exact, abs=1e-12)
    assert round(100 * published, 4) == 85.6921 and round(100 * exact, 4) == 87.79
    ap = average_precision(scores[:, None], labels[:, None], "voc07")[0]
    assert ap == pytest.approx(published, abs=1e-12)
    assert ap != pytest.approx(exact, abs=1e-6)


def quirk_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (ties in every other seed) and 1/0/-1 targets; most classes have 10 or 20
    positives (so recall hits .3/.6/.7 exactly); the last class has none (undefined)."""
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(25, 70)), 6
    scores = rng.random((n, c))
    if seed % 2:
        scores = np.round(scores, 1)
    targets = np.zeros((n, c), dtype=np.int8)
    for j in range(c - 1):
        npos = int(rng.choice([10, 10, 20, int(rng.integers(1, 25))]))
        targets[rng.choice(n, size=npos, replace=False), j] = 1
        ignore = rng.random(n) < 0.1
        targets[ignore & (rng.random(n) < 0.5), j] = -1  # some positives/negatives ignored
    targets[rng.random(n) < 0.2, c - 1] = -1  # all-negative (0 / -1) class
    return scores, targets


def test_voc07_matches_port_on_random_matrices() -> None:
    disagreements = 0
    for seed in range(150):
        scores, targets = quirk_data(seed)
        ap = average_precision(scores, targets, "voc07")
        assert np.isnan(ap[-1])
        for j in range(scores.shape[1] - 1):
            if not (targets[:, j] == 1).any():
                assert np.isnan(ap[j])
                continue
            rec, prec = voc07_curve(scores[:, j], targets[:, j])
            expected = voc_ap_07_port(rec, prec)
            assert abs(ap[j] - expected) <= 1e-12, (seed, j)
            disagreements += abs(voc07_exact_levels(rec, prec) - expected) > 1e-9
    assert disagreements > 20  # the data does exercise the float-level quirk


@pytest.mark.parametrize("mode", AP_MODES)
def test_ignored_entry_is_removed_from_ranking(mode: APMode) -> None:
    scores, targets = random_data(6, n=30, c=3)
    row = int(np.flatnonzero(targets[:, 1] == 1)[0])
    scores[row, 1] = 2.0  # the top score of class 1 ...
    ignored = targets.copy()
    ignored[row, 1] = -1  # ... is ignored
    ap = average_precision(scores, ignored, mode)
    keep = np.arange(30) != row
    removed = average_precision(scores[keep, 1:2], targets[keep, 1:2], mode)
    assert ap[1] == pytest.approx(removed[0], abs=1e-12)
    # the other classes are untouched, and counting the entry as positive would differ
    np.testing.assert_array_equal(ap[[0, 2]], average_precision(scores, targets, mode)[[0, 2]])
    assert average_precision(scores, targets, mode)[1] != pytest.approx(ap[1])
    negative = targets.copy()
    negative[row, 1] = 0
    assert average_precision(scores, negative, mode)[1] < ap[1]


def test_ap_undefined_class_is_nan_and_perfect_is_one() -> None:
    scores = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.1, 0.7, 0.5]])
    targets = np.array([[1, 0, -1], [0, 1, 0], [0, 0, -1]])
    for mode in AP_MODES:
        ap = average_precision(scores, targets, mode)
        assert ap[0] == 1.0 and ap[1] == 1.0 and np.isnan(ap[2])


@pytest.mark.parametrize(
    ("scores", "targets", "match"),
    [
        (np.zeros(4), np.zeros(4), "2-D"),
        (np.zeros((3, 2)), np.zeros((3, 3)), "same"),
        (np.zeros((2, 2)), np.array([[1, 0], [2, 0]]), r"row 1, column 0"),
        (np.array([[0.1, np.nan], [0.2, 0.3]]), np.zeros((2, 2)), "finite"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), "numeric"),
    ],
)
def test_ap_rejects_bad_inputs(scores: np.ndarray, targets: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        average_precision(scores, targets)


def test_ap_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="voc07"):
        average_precision(HAND_SCORES, HAND_LABELS, "11point")  # type: ignore[arg-type]


# ---------------------------------------------------------------- CP / CR / CF1 / OP / OR / OF1

# 3 images x 4 classes; the high-ish score 0.45 of image 2 / class 2 is ignored (-1).
SMALL_PROBS = np.array(
    [
        [0.90, 0.60, 0.20, 0.10],
        [0.30, 0.80, 0.70, 0.40],
        [0.55, 0.10, 0.45, 0.95],
    ]
)
SMALL_TARGETS = np.array(
    [
        [1, 0, 1, 0],
        [0, 1, 0, 0],
        [1, 0, -1, 1],
    ]
)
# Worked by hand.
# gt per class (ignored dropped): c0 {0, 2} = 2, c1 {1} = 1, c2 {0} = 1, c3 {2} = 1; total 5.
#
# threshold 0.5: predictions img0 {c0, c1}, img1 {c1, c2}, img2 {c0, c3}
#   pred    c0 2, c1 2, c2 1, c3 1 (total 6);  correct c0 2, c1 1, c2 0, c3 1 (total 4)
#   CP = (1 + 1/2 + 0 + 1) / 4 = 0.625      CR = (1 + 1 + 0 + 1) / 4 = 0.75
#   CF1 = 2 * .625 * .75 / 1.375 = 15/22    (mean of per-class F1 would be (1+2/3+0+1)/4 = 2/3)
#   OP = 4/6, OR = 4/5, OF1 = 2 * (2/3)(4/5) / (2/3 + 4/5) = 8/11
#
# top-3: img0 {c0, c1, c2}, img1 {c1, c2, c3}, img2 {c3, c0, c2 (ignored -> not counted)}
#   pred    c0 2, c1 2, c2 2, c3 2 (total 8);  correct c0 2, c1 1, c2 1, c3 1 (total 5)
#   CP = (1 + 1/2 + 1/2 + 1/2) / 4 = 0.625  CR = 1
#   CF1 = 2 * .625 / 1.625 = 10/13;  OP = 5/8, OR = 1, OF1 = 10/13
THRESHOLD_EXPECTED = {
    "CP": 0.625,
    "CR": 0.75,
    "CF1": 15 / 22,
    "OP": 4 / 6,
    "OR": 0.8,
    "OF1": 8 / 11,
}
TOP3_EXPECTED = {"CP": 0.625, "CR": 1.0, "CF1": 10 / 13, "OP": 5 / 8, "OR": 1.0, "OF1": 10 / 13}


def test_counts_by_hand() -> None:
    counts = multilabel_counts(threshold_predictions(SMALL_PROBS, 0.5), SMALL_TARGETS)
    np.testing.assert_array_equal(counts.correct, [2, 1, 0, 1])
    np.testing.assert_array_equal(counts.predicted, [2, 2, 1, 1])
    np.testing.assert_array_equal(counts.gt, [2, 1, 1, 1])
    top = multilabel_counts(topk_predictions(SMALL_PROBS, 3), SMALL_TARGETS)
    np.testing.assert_array_equal(top.correct, [2, 1, 1, 1])
    np.testing.assert_array_equal(top.predicted, [2, 2, 2, 2])
    np.testing.assert_array_equal(top.gt, [2, 1, 1, 1])


def test_prf_by_hand_threshold_and_top3() -> None:
    prf = multilabel_prf(multilabel_counts(threshold_predictions(SMALL_PROBS), SMALL_TARGETS))
    assert prf == pytest.approx(THRESHOLD_EXPECTED, abs=1e-12)
    top = multilabel_prf(multilabel_counts(topk_predictions(SMALL_PROBS, 3), SMALL_TARGETS))
    assert top == pytest.approx(TOP3_EXPECTED, abs=1e-12)


def test_compute_metrics_percentages_by_hand() -> None:
    result = compute_metrics(SMALL_PROBS, SMALL_TARGETS, class_names=["a", "b", "c", "d"])
    for key, value in THRESHOLD_EXPECTED.items():
        assert result[key] == pytest.approx(100 * value, abs=1e-9)
    for key, value in TOP3_EXPECTED.items():
        assert result["top3"][key] == pytest.approx(100 * value, abs=1e-9)
    # AP per class: a, b, d 1; c: negative 0.7 above its positive 0.2 (0.45 ignored) -> 1/2
    assert result["per_class_AP"] == pytest.approx({"a": 100.0, "b": 100.0, "c": 50.0, "d": 100.0})
    assert result["mAP"] == pytest.approx(87.5)
    assert result["num_images"] == 3 and result["num_classes_defined"] == 4
    assert result["undefined_classes"] == [] and result["ap_mode"] == "noninterp"
    assert result["threshold"] == 0.5


def test_threshold_is_inclusive_and_changes_results() -> None:
    pred = threshold_predictions(np.array([[0.5, 0.4999]]), 0.5)
    np.testing.assert_array_equal(pred, [[True, False]])
    low = compute_metrics(SMALL_PROBS, SMALL_TARGETS, threshold=0.3)
    # at 0.3 image 1 also predicts c0 (0.3) and c3 (0.4): c0 precision 2/3, c3 1/2, c2 gains
    # nothing (0.2 < 0.3, 0.45 ignored): CP = (2/3 + 1/2 + 0 + 1/2)/4 = 5/12
    assert low["CP"] == pytest.approx(100 * 5 / 12)
    assert low["threshold"] == 0.3


# ---------------------------------------------------------------- top-k variants

# 3 images x 5 logits; class 2 of image 2 is ignored.
TOPK_LOGITS = np.array(
    [
        [2.0, 1.0, 0.5, 0.2, -1.0],  # 4 logits >= 0: top-3 cuts c3
        [-0.5, -1.0, 3.0, -2.0, -0.1],  # top-3 {c2, c4, c0}; only c2 >= 0
        [0.0, -3.0, -1.0, 1.5, -0.2],  # top-3 {c3, c0, c4}; c3 and c0 (logit 0 counts)
    ]
)
TOPK_TARGETS = np.array([[1, 1, 0, 1, 0], [0, 0, 1, 0, 1], [1, 0, -1, 1, 0]])
# gt per class: 2, 1, 1, 2, 1 (total 7)
# plain top-3: img0 {0,1,2}, img1 {0,2,4}, img2 {0,3,4}
#   pred 3, 1, 2, 1, 2 (9); correct 2, 1, 1, 1, 1 (6)
#   CP = (2/3 + 1 + 1/2 + 1 + 1/2)/5 = 11/15, CR = (1 + 1 + 1 + 1/2 + 1)/5 = 9/10
#   CF1 = 2 (11/15)(9/10) / (11/15 + 9/10) = 198/245; OP = 6/9, OR = 6/7, OF1 = 3/4
# ML-GCN top-3: img0 {0,1,2}, img1 {2}, img2 {0,3}
#   pred 2, 1, 2, 1, 0 (6); correct 2, 1, 1, 1, 0 (5)
#   CP = (1 + 1 + 1/2 + 1 + 0)/5 = 7/10, CR = (1 + 1 + 1 + 1/2 + 0)/5 = 7/10, CF1 = 7/10
#   OP = 5/6, OR = 5/7, OF1 = 10/13
TOPK_PLAIN = {"CP": 11 / 15, "CR": 0.9, "CF1": 198 / 245, "OP": 2 / 3, "OR": 6 / 7, "OF1": 0.75}
TOPK_MLGCN = {"CP": 0.7, "CR": 0.7, "CF1": 0.7, "OP": 5 / 6, "OR": 5 / 7, "OF1": 10 / 13}


def topk_oracle(scores: np.ndarray, k: int, min_score: float | None) -> np.ndarray:
    """Loop: per image, the k best classes (lower index first on ties), gated by min_score."""
    n, c = scores.shape
    pred = np.zeros((n, c), dtype=bool)
    for i in range(n):
        ranked = sorted(range(c), key=lambda j: (-scores[i, j], j))
        for j in ranked[:k]:
            if min_score is None or scores[i, j] >= min_score:
                pred[i, j] = True
    return pred


def prf_oracle(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Loop version of CP/CR/CF1/OP/OR/OF1 (undefined classes out of CP/CR, 0/0 -> 0)."""
    ps, rs = [], []
    tot_c = tot_p = tot_g = 0
    for j in range(targets.shape[1]):
        correct = predicted = gt = 0
        for i in range(targets.shape[0]):
            if targets[i, j] == -1:
                continue
            predicted += int(pred[i, j])
            gt += int(targets[i, j] == 1)
            correct += int(pred[i, j] and targets[i, j] == 1)
        tot_c, tot_p, tot_g = tot_c + correct, tot_p + predicted, tot_g + gt
        if gt:
            ps.append(correct / predicted if predicted else 0.0)
            rs.append(correct / gt)
    cp, cr = sum(ps) / len(ps), sum(rs) / len(rs)
    op = tot_c / tot_p if tot_p else 0.0
    orr = tot_c / tot_g

    def f1(p: float, r: float) -> float:
        return 2 * p * r / (p + r) if p + r else 0.0

    return {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": orr, "OF1": f1(op, orr)}


def test_topk_min_score_by_hand() -> None:
    np.testing.assert_array_equal(
        topk_predictions(TOPK_LOGITS, 3, min_score=0.0),
        [
            [True, True, True, False, False],
            [False, False, True, False, False],
            [True, False, False, True, False],
        ],
    )
    np.testing.assert_array_equal(
        topk_predictions(TOPK_LOGITS, 3), topk_predictions(TOPK_LOGITS, 3, min_score=None)
    )


@pytest.mark.parametrize("logits", [True, False])
def test_topk_variants_by_hand(logits: bool) -> None:
    scores = TOPK_LOGITS if logits else sigmoid(TOPK_LOGITS)  # sigmoid(0) = 0.5 exactly
    result = compute_metrics(scores, TOPK_TARGETS, logits=logits)
    assert result["top3"] == pytest.approx(_scaled(TOPK_PLAIN), abs=1e-9)
    assert result["top3_mlgcn"] == pytest.approx(_scaled(TOPK_MLGCN), abs=1e-9)
    assert result["topk"] == result["top3"] and result["topk_mlgcn"] == result["top3_mlgcn"]
    assert set(result["top_k_variants"]) == {"top3", "top3_mlgcn"}
    assert "ML-GCN" in result["top_k_variants"]["top3_mlgcn"]
    assert result["top_k"] == 3 and result["top_k_effective"] == 3
    table = format_metrics(result)
    assert "top-3 " in table and "top-3 ML-GCN" in table
    assert f"{result['top3_mlgcn']['CP']:8.2f}" in table.split("top-3 ML-GCN")[1].splitlines()[0]


def _scaled(values: dict[str, float]) -> dict[str, float]:
    return {k: 100 * v for k, v in values.items()}


@pytest.mark.parametrize("seed", range(8))
def test_topk_variants_match_loop_oracle(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, c = int(rng.integers(5, 40)), int(rng.integers(2, 9))
    logits = np.round(rng.normal(0, 2, (n, c)), 1)  # ties and exact zeros
    targets = rng.choice(np.array([1, 0, 0, -1], dtype=np.int8), size=(n, c))
    targets[0] = 1  # every class defined
    k = int(rng.integers(1, c + 1))
    for as_logits in (True, False):
        scores = logits if as_logits else sigmoid(logits)
        result = compute_metrics(scores, targets, top_k=k, logits=as_logits)
        gate = 0.0 if as_logits else 0.5
        for key, min_score in ((f"top{k}", None), (f"top{k}_mlgcn", gate)):
            pred = topk_oracle(scores, k, min_score)
            np.testing.assert_array_equal(topk_predictions(scores, k, min_score=min_score), pred)
            assert result[key] == pytest.approx(_scaled(prf_oracle(pred, targets)), abs=1e-9)


def test_mlgcn_gate_uses_the_logit_sign() -> None:
    # sigmoid(-1e-20) rounds to 0.5, but ML-GCN tests the logit: -1e-20 < 0 is not predicted
    logits = np.array([[-1e-20, -5.0, -6.0], [2.0, -1.0, 1.0]])
    targets = np.array([[1, 0, 0], [1, 0, 1]])
    assert sigmoid(logits)[0, 0] == 0.5
    with pytest.warns(UndefinedClassWarning):
        from_logits = compute_metrics(logits, targets, logits=True)
        from_probs = compute_metrics(sigmoid(logits), targets)
    assert from_logits["top3_mlgcn"]["OR"] == pytest.approx(100 * 2 / 3)
    assert from_probs["top3_mlgcn"]["OR"] == pytest.approx(100.0)


def test_top_k_clamped_to_two_classes() -> None:
    probs = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.3]])
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    result = compute_metrics(probs, targets, top_k=3)
    assert result["top_k"] == 3 and result["top_k_effective"] == 2
    assert "top3" not in result and "top3_mlgcn" not in result
    # top-2 of 2 classes predicts everything: pred 3, 3; correct 2, 2; gt 2, 2
    plain = {"CP": 2 / 3, "CR": 1.0, "CF1": 0.8, "OP": 2 / 3, "OR": 1.0, "OF1": 0.8}
    # ML-GCN: img0 {c0}, img1 {c1}, img2 {c0}: pred 2, 1; correct 2, 1
    mlgcn = {"CP": 1.0, "CR": 0.75, "CF1": 6 / 7, "OP": 1.0, "OR": 0.75, "OF1": 6 / 7}
    assert result["top2"] == pytest.approx(_scaled(plain), abs=1e-9)
    assert result["top2_mlgcn"] == pytest.approx(_scaled(mlgcn), abs=1e-9)
    assert result["topk"] == result["top2"] and result["topk_mlgcn"] == result["top2_mlgcn"]
    assert set(result["top_k_variants"]) == {"top2", "top2_mlgcn"}
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    table = format_metrics(result)
    assert "top-2 ML-GCN" in table and "asked 3, clamped to the 2 classes" in table


def test_top_k_clamped_to_one_class() -> None:
    probs = np.array([[0.8], [0.3], [0.6]])
    targets = np.array([[1], [0], [0]])
    result = compute_metrics(probs, targets, top_k=3)
    assert result["top_k"] == 3 and result["top_k_effective"] == 1
    # plain: every image predicts the class: 1 correct of 3; ML-GCN: .8 and .6 -> 1 of 2
    assert result["top1"]["CP"] == pytest.approx(100 / 3) and result["top1"]["CR"] == 100.0
    assert result["top1_mlgcn"]["CP"] == pytest.approx(50.0)
    assert result["top1_mlgcn"]["CR"] == 100.0
    assert result["topk_mlgcn"] == result["top1_mlgcn"]
    assert result["top_k_variants"]["top1"] == "the highest-scored class of each image"
    exact = compute_metrics(probs, targets, top_k=1)
    assert exact["top_k"] == exact["top_k_effective"] == 1 and exact["top1"] == result["top1"]
    assert "clamped" not in format_metrics(exact)


def test_topk_exactly_k_per_image_ties_to_lower_index() -> None:
    scores = np.array([[0.5, 0.5, 0.5, 0.5], [0.1, 0.9, 0.9, 0.2]])
    pred = topk_predictions(scores, 2)
    np.testing.assert_array_equal(pred, [[True, True, False, False], [False, True, True, False]])
    with pytest.raises(ValueError, match="1 <= k <= number of classes"):
        topk_predictions(scores, 5)


def test_no_prediction_gives_precision_zero() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.3]])
    targets = np.array([[1, 1], [0, 1]])
    result = compute_metrics(probs, targets, top_k=None)
    # class 0: P 1, R 1; class 1: no prediction -> P 0, R 0
    assert result["CP"] == pytest.approx(50.0) and result["CR"] == pytest.approx(50.0)
    assert result["OP"] == pytest.approx(100.0) and result["OR"] == pytest.approx(100 / 3)
    assert "top3" not in result and result["top_k"] is None
    assert "topk" not in result and "top_k_variants" not in result
    assert result["top_k_effective"] is None


def test_undefined_class_warned_excluded_and_never_nan() -> None:
    probs = np.vstack([SMALL_PROBS, [0.15, 0.15, 0.15, 0.15]])
    probs = np.hstack([probs, [[0.7], [0.1], [0.2], [0.9]]])  # extra class "e" with no positive
    targets = np.vstack([SMALL_TARGETS, [0, 0, 0, 0]])
    targets = np.hstack([targets, [[0], [-1], [0], [0]]])
    names = ["a", "b", "c", "d", "e"]
    with pytest.warns(UndefinedClassWarning, match=r"1 of 5 classes .*: e$"):
        result = compute_metrics(probs, targets, class_names=names)
    assert result["per_class_AP"]["e"] is None
    assert result["undefined_classes"] == ["e"] and result["num_classes_defined"] == 4
    assert result["mAP"] == pytest.approx(87.5)  # the mean of a..d as above, not 350 / 5
    # CP/CR are over a..d as before; e's two predictions (0.7, 0.9) are false positives in OP
    assert result["CP"] == pytest.approx(100 * THRESHOLD_EXPECTED["CP"])
    assert result["CR"] == pytest.approx(100 * THRESHOLD_EXPECTED["CR"])
    assert result["OP"] == pytest.approx(100 * 4 / 8)
    assert result["OR"] == pytest.approx(100 * 4 / 5)
    text = json.dumps(result, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == result
    assert "undefined" in format_metrics(result)


def test_all_classes_undefined_raises() -> None:
    with pytest.raises(ValueError, match="no class has a positive"):
        compute_metrics(np.full((3, 2), 0.5), np.array([[0, -1], [0, 0], [-1, 0]]))
    with pytest.raises(ValueError, match="no class has a positive"):
        multilabel_prf(multilabel_counts(np.ones((2, 2)), np.zeros((2, 2))))


def test_compute_metrics_defaults_and_json() -> None:
    scores, targets = random_data(7, n=40, c=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when every class is defined
        result = compute_metrics(scores, targets, ap_mode="voc", top_k=2)
    assert list(result["per_class_AP"]) == [f"class_{i}" for i in range(5)]
    assert "top2" in result and "top2_mlgcn" in result and "top3" not in result
    ap = average_precision(scores, targets, "voc")
    assert result["mAP"] == pytest.approx(100 * ap.mean(), abs=1e-9)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert all(type(v) is float for v in result["per_class_AP"].values())
    table = format_metrics(result)
    assert "top-2" in table and f"{result['mAP']:6.2f}" in table and "class_4" in table


def test_compute_metrics_logits() -> None:
    scores, targets = random_data(8, n=30, c=4)
    logits = np.log(scores / (1 - scores)) * 30  # large logits: sigmoid saturates in float64
    result = compute_metrics(logits, targets, logits=True)
    expected = 100 * average_precision(logits, targets).mean()  # AP on the raw logits
    assert result["mAP"] == pytest.approx(expected, abs=1e-9)
    probs_result = compute_metrics(sigmoid(logits), targets)
    assert result["CP"] == pytest.approx(probs_result["CP"])
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"class_names": ["a"]}, "1 class names for 4"),
        ({"class_names": ["a", "b", "a", "c"]}, "repeated: a"),
        ({"ap_mode": "area"}, "unknown AP mode"),
        ({"threshold": 1.5}, r"threshold must be a probability"),
        ({"top_k": 0}, "top_k must be a whole number >= 1"),
        ({"top_k": -2}, "top_k must be a whole number >= 1"),
        ({"top_k": 2.5}, "top_k must be a whole number >= 1"),
    ],
)
def test_compute_metrics_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(SMALL_PROBS, SMALL_TARGETS, **kwargs)


def test_compute_metrics_rejects_logits_as_probabilities() -> None:
    with pytest.raises(ValueError, match="logits=True"):
        compute_metrics(SMALL_PROBS * 4 - 2, SMALL_TARGETS)


def test_large_input_is_fast() -> None:
    import time

    rng = np.random.default_rng(9)
    scores = rng.random((20000, 80))
    targets = (rng.random((20000, 80)) < 0.05).astype(np.int8)
    start = time.perf_counter()
    for mode in AP_MODES:
        compute_metrics(scores, targets, ap_mode=mode)
    assert time.perf_counter() - start < 20  # vectorised: about a second on 2 cores


def test_coco_sized_matrix_matches_sklearn_loop_with_ties_and_ignored() -> None:
    # 5000 x 80: scores rounded to 2 decimals (many ties), ~3% positives, ~5% ignored, one class
    # without positives and one entirely ignored
    rng = np.random.default_rng(11)
    n, c = 5000, 80
    scores = np.round(rng.random((n, c)), 2)
    targets = (rng.random((n, c)) < 0.03).astype(np.int8)
    targets[rng.random((n, c)) < 0.05] = -1
    targets[rng.integers(0, n, size=c), np.arange(c)] = 1
    targets[:, 7] = np.where(targets[:, 7] == 1, 0, targets[:, 7])  # no positive
    targets[:, 9] = -1  # nothing left
    by_mode = average_precisions(scores, targets)
    assert set(by_mode) == set(AP_MODES)
    expected = np.full(c, np.nan)
    for j in range(c):
        keep = targets[:, j] >= 0
        if (targets[keep, j] == 1).any():
            expected[j] = average_precision_score(targets[keep, j], scores[keep, j])
    assert np.isnan(by_mode["noninterp"][[7, 9]]).all()
    np.testing.assert_allclose(by_mode["noninterp"], expected, rtol=0, atol=1e-12)
    for mode in AP_MODES:  # the shared sort gives what each mode gives alone
        np.testing.assert_array_equal(by_mode[mode], average_precision(scores, targets, mode))
    for j in (0, 33, 79):  # and the devkit loops on a few classes
        rec, prec = voc07_curve(scores[:, j], targets[:, j])
        assert by_mode["voc07"][j] == pytest.approx(voc_ap_07_port(rec, prec), abs=1e-12)
    # top-3 without sorting each row: the same set as a stable sort's first 3
    top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    expected_top = np.zeros((n, c), dtype=bool)
    np.put_along_axis(expected_top, top, True, axis=1)
    np.testing.assert_array_equal(topk_predictions(scores, 3), expected_top)
    counts = multilabel_counts(expected_top, targets)
    valid = targets >= 0
    np.testing.assert_array_equal(counts.correct, (expected_top & (targets == 1)).sum(axis=0))
    np.testing.assert_array_equal(counts.predicted, (expected_top & valid).sum(axis=0))


def test_topk_with_nan_scores_ranks_like_a_stable_sort() -> None:
    scores = np.array([[0.2, np.nan, 0.9, 0.2], [np.nan, np.nan, 0.1, 0.3]])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :2]
    expected = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(expected, top, True, axis=1)
    np.testing.assert_array_equal(topk_predictions(scores, 2), expected)
    np.testing.assert_array_equal(
        expected, [[True, False, True, False], [False, False, True, True]]
    )


def test_ap_of_a_class_alone_equals_it_among_others() -> None:
    scores, targets = quirk_data(3)
    every = average_precisions(scores, targets)
    for j in range(scores.shape[1]):
        alone = average_precisions(scores[:, j : j + 1], targets[:, j : j + 1])
        for mode in AP_MODES:
            np.testing.assert_array_equal(alone[mode], every[mode][j : j + 1])
