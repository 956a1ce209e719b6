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


def voc07_oracle(scores: np.ndarray, labels: np.ndarray) -> float:
    """The VOC2007 11-point loop. Recall levels k/10 (the devkit's float arange puts 0.3 a hair
    above 3/10; exact levels are the intended definition)."""
    prec, rec = _pr_curve(scores, labels)
    ap = 0.0
    for t in np.arange(11) / 10:
        ap += prec[rec >= t].max() if (rec >= t).any() else 0.0
    return ap / 11


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


def test_voc07_exact_recall_levels() -> None:
    # 10 positives: recall exactly 0.3 after the 3rd positive must reach the t = 0.3 level
    labels = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1])[:, None]
    scores = np.linspace(1.0, 0.0, len(labels))[:, None]
    ap = average_precision(scores, labels, "voc07")[0]
    # levels 0..0.3 -> 1; 0.4..1.0 -> best precision after: 10/11 at the end
    assert ap == pytest.approx((4 * 1 + 7 * 10 / 11) / 11, abs=1e-12)


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
    assert "top2" in result and "top3" not in result
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
        ({"top_k": 5}, "1 <= k <= number of classes"),
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
