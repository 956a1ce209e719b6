"""Metrics at COCO size: all three AP modes plus CP, CR, CF1, OP, OR, OF1 (at the threshold,
top-3 and ML-GCN's top-3) on a 40,504 x 80 score matrix, against scikit-learn's per-class loop.

    OMP_NUM_THREADS=2 python benchmarks/metrics_speed.py [--repeats 5] [--json out.json]

The data: uniform random scores (float64) and targets with about 2.9 positives per image (COCO's
average), no ignored entries (scikit-learn has none). Timed, each the median of ``--repeats``
runs after one warm-up (the first call also pays for page-faulting its buffers; printed too):

- **all metrics**: ``average_precisions`` for noninterp, voc and voc07 (one sort per class,
  shared by the three modes), then the six CP..OF1 figures for the threshold 0.5, the top-3
  and the top-3 ML-GCN predictions;
- **compute_metrics**: the one call training and ``ssgrl metrics`` make (one AP mode and the
  three CP..OF1 blocks);
- **scikit-learn**: ``average_precision_score`` once per class column, the usual loop; its
  per-class AP must equal our noninterp AP (printed: the largest difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

from ssgrl.metrics import (
    AP_MODES,
    average_precisions,
    compute_metrics,
    multilabel_counts,
    multilabel_prf,
    threshold_predictions,
    topk_predictions,
)

COCO_VAL_IMAGES, COCO_CLASSES = 40504, 80
TARGET_SECONDS = 1.0


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` further calls) in seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def all_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Three AP modes and the three CP..OF1 blocks."""
    ap = average_precisions(scores, targets, AP_MODES)
    top = topk_predictions(scores, 3)
    return {
        "ap": ap,
        "threshold": multilabel_prf(multilabel_counts(threshold_predictions(scores, 0.5), targets)),
        "top3": multilabel_prf(multilabel_counts(top, targets)),
        "top3_mlgcn": multilabel_prf(multilabel_counts(top & (scores >= 0.5), targets)),
    }


def sklearn_loop(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array(
        [average_precision_score(targets[:, j], scores[:, j]) for j in range(scores.shape[1])]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=COCO_VAL_IMAGES)
    parser.add_argument("--classes", type=int, default=COCO_CLASSES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, c = args.images, args.classes
    scores = rng.random((n, c))
    targets = (rng.random((n, c)) < 2.9 / COCO_CLASSES).astype(np.int8)
    targets[rng.integers(0, n, size=c), np.arange(c)] = 1  # every class defined

    first_all, all_s = timed(lambda: all_metrics(scores, targets), args.repeats)
    _, one_s = timed(lambda: compute_metrics(scores, targets, top_k=3), args.repeats)
    _, ours_ap_s = timed(lambda: average_precisions(scores, targets, ("noninterp",)), args.repeats)
    _, sk_s = timed(lambda: sklearn_loop(scores, targets), max(1, args.repeats // 2))
    diff = float(
        np.abs(
            sklearn_loop(scores, targets) - average_precisions(scores, targets)["noninterp"]
        ).max()
    )

    size = f"{n:,} x {c}"
    print(f"metrics on a {size} score matrix, {args.repeats} repeats (median; first call apart)")
    print(f"  3 AP modes + CP..OF1 x3   {all_s:7.3f} s   (first call {first_all:.3f} s)")
    print(f"  compute_metrics (1 mode)  {one_s:7.3f} s")
    print(f"  noninterp AP, ours        {ours_ap_s:7.3f} s")
    print(f"  scikit-learn class loop   {sk_s:7.3f} s   ({sk_s / ours_ap_s:.1f}x ours)")
    print(f"  max |AP ours - sklearn|   {diff:.1e}")

    command = "OMP_NUM_THREADS=2 python benchmarks/metrics_speed.py"
    rows = [
        {
            "section": "metrics",
            "figure": f"3 AP modes + CP..OF1 (thr 0.5, top-3, top-3 ML-GCN), {size}",
            "value": f"{all_s:.3f} s (first call {first_all:.3f} s)",
            "target": f"< {TARGET_SECONDS:g} s",
            "met": all_s < TARGET_SECONDS,
            "command": command,
        },
        {
            "section": "metrics",
            "figure": f"compute_metrics, one AP mode + 3 CP..OF1 blocks, {size}",
            "value": f"{one_s:.3f} s",
            "target": "-",
            "met": None,
            "command": command,
        },
        {
            "section": "metrics",
            "figure": "noninterp AP: scikit-learn per-class loop / ours",
            "value": f"{sk_s:.2f} s / {ours_ap_s:.3f} s = {sk_s / ours_ap_s:.1f}x",
            "target": "printed",
            "met": None,
            "command": command,
        },
        {
            "section": "metrics",
            "figure": "max |AP ours - scikit-learn| over the classes",
            "value": f"{diff:.1e}",
            "target": "<= 1e-12",
            "met": diff <= 1e-12,
            "command": command,
        },
    ]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
