"""Paired bootstrap over test images: per-class AP, mAP, CF1 and OF1 for many resamples at once.

A resample draws N image indices with replacement (a seeded ``numpy.random.Generator``); the
same draws serve every run, so differences between runs are paired. A resample is held as the
(B, N) matrix of how many times each image was drawn (``resample_counts``), and every metric is
computed from those weights without building the resampled arrays:

- AP: each class's images are ranked once by score; a replicate's true positives and non-ignored
  entries among the top rows are cumulative sums of the weights. Copies of one image have equal
  scores, so they fall in one tie group, which ``ssgrl.metrics.ap`` scores as one operating point:
  the weighted sums give exactly what ``average_precision(scores[idx], targets[idx], mode)``
  gives on the resampled rows, for all three AP modes.
- CP/CR/CF1/OP/OR/OF1: the per-class counts are weighted sums (one matrix product), then the
  definitions of ``ssgrl.metrics.multilabel``.

Classes without positives in a replicate are handled as the metrics module handles them: their
AP is undefined (NaN) and left out of that replicate's mAP, CP and CR. A per-class AP difference
is then undefined in that replicate, and its interval is taken over the replicates where the
class is defined (``defined`` counts them). Intervals are percentile intervals
(``numpy.nanpercentile``, linear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ssgrl.metrics import sigmoid
from ssgrl.metrics.ap import AP_MODES, VOC07_RECALL_LEVELS, APMode, check_scores_targets

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def resample_indices(num_images: int, num_resamples: int, seed: int) -> IntArray:
    """(B, N) image indices drawn with replacement; the same seed gives the same draws."""
    if num_images < 1:
        raise ValueError(f"the bootstrap needs at least one image, got {num_images}")
    if num_resamples < 1:
        raise ValueError(f"the number of bootstrap resamples must be >= 1, got {num_resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_images, size=(num_resamples, num_images), dtype=np.int64)


def resample_counts(indices: npt.ArrayLike, num_images: int) -> IntArray:
    """(B, N) draws -> (B, N) counts: how many times each image is in each resample."""
    idx = np.asarray(indices, dtype=np.int64)
    b = idx.shape[0]
    offsets = (np.arange(b, dtype=np.int64) * num_images)[:, None]  # (B, 1)
    flat = np.bincount((idx + offsets).ravel(), minlength=b * num_images)
    counts: IntArray = flat.reshape(b, num_images).astype(np.int64)
    return counts


def weighted_average_precision(
    scores: npt.ArrayLike, targets: npt.ArrayLike, weights: npt.ArrayLike, mode: APMode
) -> FloatArray:
    """(B, C) per-class AP in [0, 1] of B weighted copies of the (N, C) data; NaN for a class
    without (weighted) positives. Row b equals ``average_precision`` of the resample whose image
    i appears ``weights[b, i]`` times.

    Only the positives' ranks matter: precision rises only at a positive, so the VOC envelope
    and the first rank reaching a recall level are found among them. The non-ignored images
    ranked up to each positive's tie group are counted with one weighted ``bincount`` per class,
    so the cost is O(B N) per class.
    """
    if mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {mode!r}; expected one of {', '.join(AP_MODES)}")
    s, t = check_scores_targets(scores, targets)
    n, c = s.shape
    w_int = np.asarray(weights)
    if w_int.ndim != 2 or w_int.shape[1] != n:
        raise ValueError(f"weights must be (resamples, {n} images), got shape {w_int.shape}")
    w = w_int.astype(np.float64)  # (B, N); counts, exact in float64
    out = np.full((w.shape[0], c), np.nan)
    for j in range(c):
        order = np.argsort(-s[:, j], kind="stable")  # (N,) rank -> image, best first
        sj = s[order, j]
        pos_ranks = np.flatnonzero(t[order, j] == 1)  # (P,)
        if pos_ranks.size == 0:
            continue
        # the last rank of each rank's tie group: a tie group is one operating point
        last = np.ones(n, dtype=bool)
        last[:-1] = sj[:-1] != sj[1:]
        end = np.where(last, np.arange(n), n)
        end = np.minimum.accumulate(end[::-1])[::-1]  # (N,)
        ends = end[pos_ranks]  # (P,) nondecreasing
        # segment k: the non-ignored ranks counted at positive k but not at positive k - 1
        valid_ranks = np.flatnonzero(t[order, j] >= 0)
        segment = np.searchsorted(ends, valid_ranks, side="left")  # (V,) in 0..P
        image_segment = np.full(n, pos_ranks.size + 1, dtype=np.int64)  # ignored: a spare bin
        image_segment[order[valid_ranks]] = segment
        seen = np.cumsum(_segment_sums(w, image_segment, pos_ranks.size + 2), axis=1)
        seen = seen[:, : pos_ranks.size]  # (B, P) counted entries at each positive's tie end
        wpos = w[:, order[pos_ranks]]  # (B, P) weights of the positives in rank order
        tie_last = np.searchsorted(ends, ends, side="right") - 1  # (P,) last positive of tie
        tp = np.cumsum(wpos, axis=1)[:, tie_last]  # (B, P) at each tie end
        out[:, j] = _ap_at_positives(wpos, tp, seen, mode)
    return out


def _segment_sums(w: FloatArray, segment: IntArray, num_segments: int) -> FloatArray:
    """(B, K) sums of the weights w (B, N) grouped by each image's ``segment`` (N,) in 0..K-1."""
    offsets = (np.arange(w.shape[0], dtype=np.int64) * num_segments)[:, None]  # (B, 1)
    bins = (segment[None, :] + offsets).ravel()
    sums = np.bincount(bins, weights=w.ravel(), minlength=w.shape[0] * num_segments)
    out: FloatArray = sums.astype(np.float64).reshape(w.shape[0], num_segments)
    return out


def _ap_at_positives(wpos: FloatArray, tp: FloatArray, seen: FloatArray, mode: str) -> FloatArray:
    """AP of one class from (B, P) weights, true positives and counted entries at its positives'
    ranks (as ``ssgrl.metrics.ap`` on the resampled rows)."""
    npos = tp[:, -1]  # (B,)
    precision = np.zeros(wpos.shape)  # 0 at a positive that is not in the resample
    np.divide(tp, seen, out=precision, where=wpos > 0)
    if mode == "noninterp":
        total = (wpos * precision).sum(axis=1)
        count = npos
    else:
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # best at >= rank
        if mode == "voc":
            total = (wpos * envelope).sum(axis=1)
            count = npos
        else:  # voc07: 11 float recall levels, as ssgrl.metrics.ap
            rec = np.zeros(wpos.shape)
            np.divide(tp, npos[:, None], out=rec, where=npos[:, None] > 0)
            rows = np.arange(wpos.shape[0])
            total = np.zeros(wpos.shape[0])
            for level in VOC07_RECALL_LEVELS:
                reached = rec >= level  # (B, P)
                first = np.argmax(reached, axis=1)  # (B,)
                total += np.where(reached[rows, first], envelope[rows, first], 0.0)
            count = np.where(npos > 0, 11.0, 0.0)
    ap = np.full(wpos.shape[0], np.nan)
    np.divide(total, count, out=ap, where=npos > 0)
    return ap


def weighted_prf(
    logits: npt.ArrayLike, targets: npt.ArrayLike, weights: npt.ArrayLike, threshold: float
) -> dict[str, FloatArray]:
    """CP, CR, CF1, OP, OR, OF1 as fractions, each (B,), of B weighted copies of the data: an
    entry is predicted when sigmoid(logit) >= threshold (``ssgrl.metrics.compute_metrics``). NaN
    in a replicate without any positive."""
    s, t = check_scores_targets(logits, targets)
    w = np.asarray(weights, dtype=np.float64)  # (B, N)
    valid = t >= 0
    pred = (sigmoid(s) >= threshold) & valid  # (N, C)
    gt = t == 1
    correct = w @ (pred & gt).astype(np.float64)  # (B, C)
    predicted = w @ pred.astype(np.float64)
    positives = w @ gt.astype(np.float64)
    defined = positives > 0  # (B, C)
    num_defined = defined.sum(axis=1)
    cp = _masked_mean(_ratio(correct, predicted), defined, num_defined)
    cr = _masked_mean(_ratio(correct, positives), defined, num_defined)
    op = _ratio(correct.sum(axis=1), predicted.sum(axis=1))
    orr = _ratio(correct.sum(axis=1), positives.sum(axis=1))
    none = num_defined == 0
    op[none] = np.nan
    orr[none] = np.nan
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _masked_mean(values: FloatArray, mask: npt.NDArray[np.bool_], count: IntArray) -> FloatArray:
    out = np.full(values.shape[0], np.nan)
    np.divide(np.where(mask, values, 0.0).sum(axis=1), count, out=out, where=count > 0)
    return out


def _f1(p: FloatArray, r: FloatArray) -> FloatArray:
    out = np.zeros(p.shape)
    np.divide(2.0 * p * r, p + r, out=out, where=(p + r) > 0)
    out[np.isnan(p) | np.isnan(r)] = np.nan
    return out


def replicate_map(per_class_ap: FloatArray) -> FloatArray:
    """(B, C) per-class AP -> (B,) mAP over each replicate's defined classes (NaN if none)."""
    defined = ~np.isnan(per_class_ap)
    count = defined.sum(axis=1)
    out = np.full(per_class_ap.shape[0], np.nan)
    np.divide(np.where(defined, per_class_ap, 0.0).sum(axis=1), count, out=out, where=count > 0)
    return out


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval of a statistic; ``defined``: replicates it was defined in."""

    low: float
    high: float
    defined: int

    def excludes_zero(self) -> bool:
        return bool(self.low > 0.0 or self.high < 0.0)


def percentile_interval(values: npt.ArrayLike, level: float = 0.95) -> Interval:
    """The central ``level`` percentile interval of (B,) replicate values, NaNs left out."""
    v = np.asarray(values, dtype=np.float64)
    defined = int((~np.isnan(v)).sum())
    if defined == 0:
        return Interval(float("nan"), float("nan"), 0)
    alpha = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(v, [alpha, 100.0 - alpha])
    return Interval(float(low), float(high), defined)


@dataclass(frozen=True)
class Replicates:
    """One run's metrics in every bootstrap replicate, in percent: per-class AP (B, C), mAP,
    CF1 and OF1 (B,)."""

    per_class_ap: FloatArray
    mAP: FloatArray
    CF1: FloatArray
    OF1: FloatArray


def bootstrap_run(
    logits: npt.ArrayLike,
    targets: npt.ArrayLike,
    weights: npt.ArrayLike,
    ap_mode: APMode = "noninterp",
    threshold: float = 0.5,
) -> Replicates:
    """Every replicate's per-class AP, mAP, CF1 and OF1 of one run (percent)."""
    ap = weighted_average_precision(logits, targets, weights, ap_mode)
    prf = weighted_prf(logits, targets, weights, threshold)
    return Replicates(100.0 * ap, 100.0 * replicate_map(ap), 100.0 * prf["CF1"], 100.0 * prf["OF1"])
