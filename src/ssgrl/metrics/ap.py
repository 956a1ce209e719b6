"""Average precision per class, vectorised over the C columns of an (N, C) score matrix.

Targets use 1 = present, 0 = absent, -1 = ignore. An ignored entry is removed from its class's
ranking: it counts neither as a true nor as a false positive, whatever its score.

Three AP definitions (``mode``):

- ``"noninterp"``: mean over the positives of the precision at the positive's rank
  (= scikit-learn ``average_precision_score``).
- ``"voc"``: VOC2010+ all-point interpolated AP: the same mean, with the precision at each
  positive replaced by the best precision at that rank or below (the monotone envelope).
- ``"voc07"``: VOC2007 11-point AP: mean over recall levels t of the best precision at
  recall >= t. It follows the Python ports that published VOC2007 figures come from
  (py-faster-rcnn's ``voc_ap(use_07_metric=True)``) to the bit: float recall ``tp / npos``
  against the float levels ``np.arange(0.0, 1.1, 0.1)`` (``VOC07_RECALL_LEVELS``). Those put
  0.3, 0.6 and 0.7 one ulp above k/10, so a recall of exactly 3/10, 6/10 or 7/10 misses its
  level and the next operating point serves it; exact k/10 levels would give a different
  (sometimes higher) number than the published ones.

Tied scores form one operating point (as in scikit-learn): every member of a tie group takes
the precision and recall reached after the whole group, so the result never depends on the
order of tied entries. Without ties all three modes equal the usual devkit loops exactly.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

APMode = Literal["noninterp", "voc", "voc07"]
AP_MODES: tuple[APMode, ...] = get_args(APMode)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int8]

# (11,) the 11-point levels exactly as py-faster-rcnn's voc_ap builds them (0.3, 0.6, 0.7 one
# ulp above k/10 on purpose: see the module docstring).
VOC07_RECALL_LEVELS: FloatArray = np.arange(0.0, 1.1, 0.1)


def check_scores_targets(
    scores: npt.ArrayLike, targets: npt.ArrayLike
) -> tuple[FloatArray, IntArray]:
    """Validate (N, C) scores and targets; return them as float64 and int8 arrays.

    Raises ``ValueError`` naming the first offending entry (row = image, column = class).
    """
    s = np.asarray(scores)
    t = np.asarray(targets)
    for name, arr in (("scores", s), ("targets", t)):
        if arr.ndim != 2:
            hint = " (for a single class use .reshape(-1, 1))" if arr.ndim == 1 else ""
            raise ValueError(
                f"{name} must be a 2-D (images, classes) array, got shape {arr.shape}{hint}"
            )
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if s.shape != t.shape:
        raise ValueError(
            f"scores and targets must have the same (images, classes) shape, "
            f"got scores {s.shape} and targets {t.shape}"
        )
    s = s.astype(np.float64, copy=False)
    bad = ~np.isfinite(s)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"scores must be finite: {int(bad.sum())} NaN/inf value(s), the first at "
            f"row {row}, column {col} ({s[row, col]})"
        )
    bad = ~np.isin(t, (1, 0, -1))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"targets must be 1 (present), 0 (absent) or -1 (ignore): {int(bad.sum())} other "
            f"value(s), the first at row {row}, column {col} ({t[row, col]})"
        )
    return s, t.astype(np.int8)


def average_precision(
    scores: npt.ArrayLike, targets: npt.ArrayLike, mode: APMode = "noninterp"
) -> FloatArray:
    """Per-class AP in [0, 1] as a (C,) float64 array; NaN for a class without positives.

    ``scores`` may be logits or probabilities (only their order matters). ``"voc07"`` uses
    py-faster-rcnn's float levels ``np.arange(0.0, 1.1, 0.1)``, not exact k/10 (module docstring).
    """
    if mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {mode!r}; expected one of {', '.join(AP_MODES)}")
    s, t = check_scores_targets(scores, targets)
    n, c = s.shape
    order = np.argsort(-s, axis=0, kind="stable")  # (N, C) rank -> row, best first
    s = np.take_along_axis(s, order, axis=0)
    t = np.take_along_axis(t, order, axis=0)
    pos = t == 1  # (N, C)
    valid = t >= 0  # (N, C); ignored entries add to neither count below
    tp = np.cumsum(pos, axis=0)  # (N, C) true positives among the top rows
    seen = np.cumsum(valid, axis=0)  # (N, C) non-ignored entries among the top rows
    npos = tp[-1]  # (C,)

    # Each row takes the counts at the last row of its tie group.
    last = np.ones((n, c), dtype=bool)
    last[:-1] = s[:-1] != s[1:]
    end = np.where(last, np.arange(n)[:, None], n)
    end = np.minimum.accumulate(end[::-1], axis=0)[::-1]  # (N, C) index of the group's last row
    tp = np.take_along_axis(tp, end, axis=0)
    seen = np.take_along_axis(seen, end, axis=0)

    # Precision of the operating point of each non-ignored row; 0 elsewhere (never the max).
    precision = np.zeros((n, c))
    np.divide(tp, seen, out=precision, where=valid)
    if mode == "noninterp":
        total = np.where(pos, precision, 0.0).sum(axis=0)  # (C,)
        count = npos
    else:
        envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]  # best at rank >= this
        if mode == "voc":
            total = np.where(pos, envelope, 0.0).sum(axis=0)
            count = npos
        else:
            # Float recall as the port computes it (rec = tp / float(npos)), float levels.
            rec = np.zeros((n, c))
            np.divide(tp, npos, out=rec, where=npos > 0)  # (N, C)
            total = np.zeros(c)
            cols = np.arange(c)
            for level in VOC07_RECALL_LEVELS:
                reached = rec >= level  # (N, C); monotone down each column
                first = np.argmax(reached, axis=0)  # (C,) first row reaching the level
                total += np.where(reached[first, cols], envelope[first, cols], 0.0)
            count = np.where(npos > 0, 11, 0)

    ap = np.full(c, np.nan)
    np.divide(total, count, out=ap, where=npos > 0)
    return ap


def mean_ap(ap: FloatArray) -> float:
    """Mean over the defined (non-NaN) classes; raises if no class is defined."""
    defined = ~np.isnan(ap)
    if not defined.any():
        raise ValueError("no class has a positive (non-ignored) target: mAP is undefined")
    return float(ap[defined].mean())
