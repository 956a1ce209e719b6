"""Average precision per class of an (N, C) score matrix: one sort per class column, then
whole-array numpy steps (no loop over images); several AP modes can share the sort.

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

from collections.abc import Sequence
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
    scores: npt.ArrayLike, targets: npt.ArrayLike, as_float: bool = True
) -> tuple[FloatArray, IntArray]:
    """Validate (N, C) scores and targets; return them as float64 and int8 arrays
    (``as_float=False``: the scores as given, e.g. boolean predictions, not copied).

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
    if as_float:
        s = s.astype(np.float64, copy=False)
    if s.dtype.kind == "f" and not np.isfinite(s).all():
        bad = ~np.isfinite(s)
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"scores must be finite: {int(bad.sum())} NaN/inf value(s), the first at "
            f"row {row}, column {col} ({s[row, col]})"
        )
    if t.dtype.kind == "b":
        bad = None  # False / True are 0 / 1
    elif t.dtype.kind in "iu":
        bad = (t > 1) | (t < -1) if t.dtype.kind == "i" else t > 1  # integers: 3 values left
    else:
        bad = ~np.isin(t, (1, 0, -1))
    if bad is not None and bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"targets must be 1 (present), 0 (absent) or -1 (ignore): {int(bad.sum())} other "
            f"value(s), the first at row {row}, column {col} ({t[row, col]})"
        )
    return s, t.astype(np.int8, copy=False)


def average_precision(
    scores: npt.ArrayLike, targets: npt.ArrayLike, mode: APMode = "noninterp"
) -> FloatArray:
    """Per-class AP in [0, 1] as a (C,) float64 array; NaN for a class without positives.

    ``scores`` may be logits or probabilities (only their order matters). ``"voc07"`` uses
    py-faster-rcnn's float levels ``np.arange(0.0, 1.1, 0.1)``, not exact k/10 (module docstring).
    """
    return average_precisions(scores, targets, (mode,))[mode]


def average_precisions(
    scores: npt.ArrayLike, targets: npt.ArrayLike, modes: Sequence[APMode] = AP_MODES
) -> dict[APMode, FloatArray]:
    """``average_precision`` for several modes at once, sharing one sort per class: mode ->
    (C,) float64 array (NaN for a class without positives)."""
    for mode in modes:
        if mode not in AP_MODES:
            raise ValueError(f"unknown AP mode {mode!r}; expected one of {', '.join(AP_MODES)}")
    s, t = check_scores_targets(scores, targets)
    return checked_average_precisions(s, t, modes)


def checked_average_precisions(
    s: FloatArray, t: IntArray, modes: Sequence[APMode]
) -> dict[APMode, FloatArray]:
    """``average_precisions`` of arrays that ``check_scores_targets`` returned (no second
    validation pass over a large matrix)."""
    c = s.shape[1]
    out = {mode: np.full(c, np.nan) for mode in modes}
    s_cn = np.ascontiguousarray(s.T)  # (C, N): each class one contiguous row
    t_cn = np.ascontiguousarray(t.T)
    for j in range(c):
        for mode, value in _class_ap(s_cn[j], t_cn[j], modes).items():
            out[mode][j] = value
    return out


def _class_ap(
    scores: FloatArray, targets: IntArray, modes: Sequence[APMode]
) -> dict[APMode, float]:
    """The AP of one class (scores and targets (N,)) in each mode; {} without positives.

    One sort of the class's non-ignored entries, then whole-array steps (no loop over images).
    Removing the ignored entries first is the same as giving them no count: they never add to
    a true or a false positive. Sums add one term after the other in rank order, as the devkit
    loops do (numpy's pairwise ``sum`` could differ in the last bit).
    """
    keep = targets >= 0
    scores, labels = scores[keep], targets[keep]
    npos = int(np.count_nonzero(labels == 1))
    if npos == 0:
        return {}
    order = np.argsort(-scores)  # (M,) best first; the order inside a tie group is irrelevant
    ranked = scores[order]
    pos = labels[order] == 1  # (M,)
    tp = np.cumsum(pos)  # (M,) true positives among the top ranks
    seen = np.arange(1, len(pos) + 1)  # (M,) entries among the top ranks
    tied = ranked[:-1] == ranked[1:]  # (M-1,) rank i ties with rank i + 1
    if tied.any():
        # every rank takes the counts after its whole tie group (one operating point)
        ends = np.flatnonzero(np.append(~tied, True))  # (G,) last rank of each group
        group = np.searchsorted(ends, np.arange(len(pos)))  # (M,) group of each rank
        tp, seen = tp[ends[group]], seen[ends[group]]
    precision = tp / seen  # (M,)
    result: dict[APMode, float] = {}
    if "noninterp" in modes:
        result["noninterp"] = _sum_in_order(precision[pos]) / npos
    if "voc" in modes or "voc07" in modes:
        envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at >= rank
        if "voc" in modes:
            result["voc"] = _sum_in_order(envelope[pos]) / npos
        if "voc07" in modes:
            # Float recall as the port computes it (rec = tp / float(npos)), float levels. The
            # recall never falls down the ranking: the first rank reaching a level is a search.
            recall = tp / float(npos)  # (M,)
            first = np.searchsorted(recall, VOC07_RECALL_LEVELS, side="left")  # (11,)
            result["voc07"] = _sum_in_order(envelope[first[first < len(pos)]]) / 11
    return result


def _sum_in_order(values: FloatArray) -> float:
    """Sum adding one term after the other (numpy's ``sum`` is pairwise)."""
    return float(np.cumsum(values)[-1]) if len(values) else 0.0


def mean_ap(ap: FloatArray) -> float:
    """Mean over the defined (non-NaN) classes; raises if no class is defined."""
    defined = ~np.isnan(ap)
    if not defined.any():
        raise ValueError("no class has a positive (non-ignored) target: mAP is undefined")
    return float(ap[defined].mean())
