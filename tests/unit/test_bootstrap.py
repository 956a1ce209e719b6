"""The paired bootstrap against a slow oracle: the resampled arrays scored one replicate at a
time by ``ssgrl.metrics`` (the weighted, vectorised path must give the same numbers)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ssgrl.analysis.bootstrap import (
    bootstrap_run,
    percentile_interval,
    replicate_map,
    resample_counts,
    resample_indices,
    weighted_average_precision,
    weighted_prf,
)
from ssgrl.analysis.compare import ScoredRun, compare_runs
from ssgrl.metrics import compute_metrics, sigmoid
from ssgrl.metrics.ap import AP_MODES, average_precision
from ssgrl.metrics.multilabel import multilabel_counts, multilabel_prf, threshold_predictions


def _data(
    n: int, c: int, seed: int, ties: bool, ignore: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.25).astype(np.int8)
    targets[rng.random((n, c)) < ignore] = -1
    targets[:, -1] = np.where(np.arange(n) == 0, 1, 0)  # one positive: often absent in a replicate
    scores = rng.normal(size=(n, c)) + 1.5 * (targets == 1)
    if ties:
        scores = np.round(scores, 1)  # many tie groups
    return scores, targets


def _oracle_ap(scores: np.ndarray, targets: np.ndarray, idx: np.ndarray, mode: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.stack([average_precision(scores[i], targets[i], mode) for i in idx])  # type: ignore[arg-type]


def test_resamples_are_seeded_and_counted() -> None:
    a = resample_indices(30, 20, seed=3)
    assert a.shape == (20, 30) and a.min() >= 0 and a.max() < 30
    assert np.array_equal(a, resample_indices(30, 20, seed=3))
    assert not np.array_equal(a, resample_indices(30, 20, seed=4))
    counts = resample_counts(a, 30)
    assert counts.shape == (20, 30) and (counts.sum(axis=1) == 30).all()
    for b in range(20):
        assert np.array_equal(counts[b], np.bincount(a[b], minlength=30))


@pytest.mark.parametrize("mode", AP_MODES)
@pytest.mark.parametrize("ties", [False, True])
def test_weighted_ap_equals_ap_of_the_resampled_rows(mode: str, ties: bool) -> None:
    scores, targets = _data(60, 6, seed=1, ties=ties)
    idx = resample_indices(60, 40, seed=0)
    got = weighted_average_precision(scores, targets, resample_counts(idx, 60), mode)  # type: ignore[arg-type]
    want = _oracle_ap(scores, targets, idx, mode)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want[:, -1]).any()  # the one-positive class is undefined in some replicates
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)


def test_weighted_prf_equals_the_metrics_module() -> None:
    scores, targets = _data(50, 5, seed=2, ties=True)
    idx = resample_indices(50, 30, seed=1)
    got = weighted_prf(scores, targets, resample_counts(idx, 50), threshold=0.6)
    for b, rows in enumerate(idx):
        preds = threshold_predictions(sigmoid(scores[rows]), 0.6)
        want = multilabel_prf(multilabel_counts(preds, targets[rows]))
        for key, value in want.items():
            assert got[key][b] == pytest.approx(value, abs=1e-12), (key, b)


def test_replicate_map_skips_undefined_classes_like_compute_metrics() -> None:
    scores, targets = _data(40, 4, seed=5, ties=False)
    idx = resample_indices(40, 25, seed=2)
    reps = bootstrap_run(scores, targets, resample_counts(idx, 40), "noninterp", 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b, rows in enumerate(idx):
            m = compute_metrics(scores[rows], targets[rows], top_k=None, logits=True)
            assert reps.mAP[b] == pytest.approx(m["mAP"], abs=1e-9)
            assert reps.CF1[b] == pytest.approx(m["CF1"], abs=1e-9)
            assert reps.OF1[b] == pytest.approx(m["OF1"], abs=1e-9)
    assert replicate_map(np.full((2, 3), np.nan)).tolist() == pytest.approx(
        [np.nan, np.nan], nan_ok=True
    )


def test_percentile_interval_is_numpys_and_ignores_nan() -> None:
    values = np.array([3.0, 1.0, np.nan, 2.0, 5.0, 4.0])
    iv = percentile_interval(values, 0.9)
    assert (iv.low, iv.high, iv.defined) == pytest.approx((1.2, 4.8, 5))
    assert iv.excludes_zero()
    assert not percentile_interval(values - 3.0, 0.9).excludes_zero()
    assert percentile_interval([np.nan]).defined == 0


def _run(name: str, logits: np.ndarray, targets: np.ndarray) -> ScoredRun:
    classes = [f"c{j}" for j in range(logits.shape[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = compute_metrics(logits, targets, classes, top_k=None, logits=True)
    protocol = {"dataset": "synthetic", "split": "test", "ap_mode": "noninterp", "threshold": 0.5}
    ids = [f"img{i}" for i in range(logits.shape[0])]
    return ScoredRun(name, Path(name), protocol, metrics, classes, logits, targets, ids)


def test_identical_runs_differ_by_exactly_zero() -> None:
    scores, targets = _data(80, 5, seed=3, ties=True)
    result = compare_runs(
        [_run("a", scores, targets), _run("b", scores.copy(), targets)], None, 200
    )
    for est in result.differences["b"].values():
        assert (est.value, est.low, est.high) == (0.0, 0.0, 0.0)
    assert all(
        d.difference is None or (d.difference.low, d.difference.high) == (0.0, 0.0)
        for d in result.per_class["b"]
    )
    assert result.significant_classes("b") == []


def test_a_large_difference_excludes_zero_and_same_seed_same_interval() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 4)) < 0.3).astype(np.int8)
    good = rng.normal(size=targets.shape) + 3.0 * targets  # separates the classes well
    bad = rng.normal(size=targets.shape)  # chance
    bad[:, 0] = good[:, 0]  # one class scored identically: its difference is [0, 0]
    runs = [_run("good", good, targets), _run("bad", bad, targets)]
    first = compare_runs(runs, "good", 300, seed=7)
    diff = first.differences["bad"]["mAP"]
    assert diff.value < -20 and diff.high < 0 and diff.excludes_zero
    assert {d.name for d in first.significant_classes("bad")} == {"c1", "c2", "c3"}
    again = compare_runs([_run("good", good, targets), _run("bad", bad, targets)], "good", 300, 7)
    assert again.differences["bad"]["mAP"] == diff
    other = compare_runs([_run("good", good, targets), _run("bad", bad, targets)], "good", 300, 8)
    assert other.differences["bad"]["mAP"] != diff
    # each run's mAP interval holds its point estimate
    for est in first.estimates.values():
        assert est["mAP"].low <= est["mAP"].value <= est["mAP"].high


def test_thousand_resamples_of_a_coco_sized_test_set_take_seconds() -> None:
    import time

    rng = np.random.default_rng(0)
    targets = (rng.random((2000, 80)) < 0.04).astype(np.int8)
    scores = rng.normal(size=targets.shape) + targets
    weights = resample_counts(resample_indices(2000, 1000, 0), 2000)
    t0 = time.perf_counter()
    bootstrap_run(scores, targets, weights)
    assert time.perf_counter() - t0 < 30.0  # about 2 s on a quiet core
