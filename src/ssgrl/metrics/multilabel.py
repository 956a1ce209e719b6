"""CP, CR, CF1, OP, OR, OF1 for multi-label predictions (the literature definitions).

Per class c: N_c^correct, N_c^pred, N_c^gt over the non-ignored entries (target -1 counts
neither as a prediction nor as ground truth). Then

    CP = mean_c correct_c / pred_c     CR = mean_c correct_c / gt_c     CF1 = 2 CP CR / (CP + CR)
    OP = sum correct / sum pred        OR = sum correct / sum gt        OF1 = 2 OP OR / (OP + OR)

CF1 is the harmonic mean of CP and CR, not the mean of per-class F1 (a smaller number).

Choices for the edge cases:

- a class with no positive target (gt_c = 0) is undefined: it is left out of the CP and CR
  means (its precision would count only false positives, its recall is 0/0);
- a defined class with no prediction has precision 0 (scikit-learn ``zero_division=0``);
- OP and OR pool every non-ignored entry, so predictions of undefined classes are false
  positives in OP;
- an F1 whose precision and recall are both 0 is 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ssgrl.metrics.ap import IntArray, check_scores_targets

BoolArray = npt.NDArray[np.bool_]
CountArray = npt.NDArray[np.int64]

PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


class MultilabelCounts(NamedTuple):
    """Per-class counts over non-ignored entries, each (C,) int64."""

    correct: CountArray
    predicted: CountArray
    gt: CountArray


def threshold_predictions(
    probs: npt.ArrayLike, threshold: float | npt.ArrayLike = 0.5
) -> BoolArray:
    """(N, C) predictions: probability >= threshold (one value, or (C,) values: one per class)."""
    return np.asarray(probs) >= threshold


def topk_predictions(
    scores: npt.ArrayLike, k: int = 3, min_score: float | None = None
) -> BoolArray:
    """(N, C) predictions: the k highest scores of each image (row).

    Ties are broken towards the lower class index, so exactly k classes are predicted per image.
    Every class competes, ignored or not; ignored entries are dropped later, in the counts.
    With ``min_score`` a top-k class is kept only if its score is also >= ``min_score``: 0 on
    logits (or 0.5 on probabilities) is ML-GCN's top-3 rule, so fewer than k may remain.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (images, classes) array, got shape {s.shape}")
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"top-k needs 1 <= k <= number of classes ({s.shape[1]}), got k={k}")
    if np.isnan(s).any():  # NaN has no place in a partition: rank as a stable sort does
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]  # (N, k) class indices
        pred = np.zeros(s.shape, dtype=bool)
        np.put_along_axis(pred, top, True, axis=1)
    else:
        # The same set as the first k of a stable descending sort, without sorting each row:
        # every score above the k-th largest, then the lowest-index entries equal to it.
        kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]  # (N, 1) k-th largest score
        pred = s > kth  # (N, C) fewer than k per row
        tied = s == kth  # (N, C)
        need = k - pred.sum(axis=1, keepdims=True)  # (N, 1) >= 1 entries still to take
        if (tied.sum(axis=1, keepdims=True) == need).all():
            pred |= tied  # no row has more tied entries than places left
        else:
            pred |= tied & (np.cumsum(tied, axis=1) <= need)
    if min_score is not None:
        pred &= s >= min_score
    return pred


def multilabel_counts(predictions: npt.ArrayLike, targets: npt.ArrayLike) -> MultilabelCounts:
    """Count correct, predicted and ground-truth entries per class, skipping ignored targets."""
    pred, t = check_scores_targets(predictions, targets, as_float=False)
    return checked_counts(pred.astype(bool, copy=False), t)  # nonzero = predicted


def checked_counts(predicted: BoolArray, t: IntArray) -> MultilabelCounts:
    """``multilabel_counts`` of (N, C) boolean predictions and targets that
    ``check_scores_targets`` returned (no second validation pass)."""
    predicted = predicted & (t >= 0)  # ignored entries are neither predictions ...
    gt = t == 1  # ... nor ground truth
    return MultilabelCounts(
        correct=(predicted & gt).sum(axis=0, dtype=np.int64),
        predicted=predicted.sum(axis=0, dtype=np.int64),
        gt=gt.sum(axis=0, dtype=np.int64),
    )


def _ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """num / den elementwise, 0 where den == 0."""
    num_a = np.asarray(num, dtype=np.float64)
    den_a = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num_a, den_a).shape)
    np.divide(num_a, den_a, out=out, where=den_a > 0)
    return out


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def multilabel_prf(counts: MultilabelCounts) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 as fractions in [0, 1] (see the module docstring).

    Raises ``ValueError`` when no class has a positive target.
    """
    defined = counts.gt > 0
    if not defined.any():
        raise ValueError("no class has a positive (non-ignored) target: CP/CR are undefined")
    cp = float(_ratio(counts.correct, counts.predicted)[defined].mean())
    cr = float(_ratio(counts.correct, counts.gt)[defined].mean())
    op = float(_ratio(counts.correct.sum(), counts.predicted.sum()))
    orr = float(_ratio(counts.correct.sum(), counts.gt.sum()))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}
