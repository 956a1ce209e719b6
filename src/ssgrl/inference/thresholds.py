"""Per-class decision thresholds fitted on a validation split: exact and vectorised.

A class c is predicted when its probability p >= t_c. For each class the candidate thresholds
are the distinct probabilities of its non-ignored validation entries (target -1 entries are
skipped entirely). Every candidate is scored in one pass over the scores sorted in decreasing
order (cumulative true and predicted positives), so the whole fit is a sort and a few cumulative
sums over the (N, C) array: no grid, no midpoints. The stored threshold *is* a validation
probability, so applying it to the same probabilities reproduces the reported precision, recall
and F1 exactly.

Two methods:

- ``max-F1`` (default): the candidate with the highest F1; among equal F1 the *highest*
  threshold (fewer false positives).
- ``precision=q``: the *lowest* candidate whose precision is >= q (the most recall at that
  precision); when no candidate reaches q the class falls back to its max-F1 threshold and a
  note says so.

A class with no positive (non-ignored) validation entry keeps the global threshold (0.5 unless
configured otherwise), and a note says so.

Probabilities are computed from logits exactly as the ``Predictor`` computes them
(``probabilities``: the logistic function in float64, rounded to float32), so a threshold fitted
here decides a predicted image the same way it decided the validation image it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ssgrl.checkpoint import Thresholds
from ssgrl.metrics.multilabel import (
    PRF_KEYS,
    multilabel_counts,
    multilabel_prf,
    threshold_predictions,
)

GLOBAL_THRESHOLD = 0.5
MAX_F1 = "max-F1"


def probabilities(logits: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The probabilities the ``Predictor`` computes from logits: float64 logistic, float32."""
    x = np.asarray(logits, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def method_name(precision: float | None) -> str:
    """The ``Thresholds.method`` string of a fit."""
    if precision is None:
        return MAX_F1
    return f"lowest with precision >= {precision:g}, else {MAX_F1}"


@dataclass(frozen=True)
class ClassThreshold:
    """One class's fitted threshold and its scores on the fitting split at that threshold.

    ``precision`` is None when nothing is predicted, ``recall``/``f1`` when the class has no
    positive; ``fitted`` is False when the global threshold was kept."""

    name: str
    threshold: float
    precision: float | None
    recall: float | None
    f1: float | None
    positives: int
    fitted: bool
    note: str = ""


@dataclass(frozen=True)
class ThresholdFit:
    """The result of ``fit_thresholds``: the checkpoint's ``Thresholds`` plus per-class stats."""

    thresholds: Thresholds
    classes: list[ClassThreshold]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fitted_on": self.thresholds.fitted_on,
            "method": self.thresholds.method,
            "notes": list(self.thresholds.notes),
            "classes": [asdict(c) for c in self.classes],
        }

    def table(self) -> str:
        """A plain-text table: class, threshold, precision, recall, F1 (percent), note."""
        width = max([5, *(len(c.name) for c in self.classes)])

        def pct(v: float | None) -> str:
            return f"{'-':>9s}" if v is None else f"{100.0 * v:9.2f}"

        lines = [
            f"{'class':{width}s}  {'threshold':>10s}{'precision':>10s}{'recall':>9s}"
            f"{'F1':>9s}  note",
        ]
        for c in self.classes:
            lines.append(
                f"{c.name:{width}s}  {c.threshold:10.6f} {pct(c.precision)} {pct(c.recall)}"
                f"{pct(c.f1)}  {c.note}".rstrip()
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Curves:
    """Every candidate threshold of every class, in decreasing order of score (row i, column c):
    the score, whether row i is a candidate (valid and the last of its run of equal scores),
    true positives and predicted positives at threshold = that score."""

    score: npt.NDArray[np.float64]
    candidate: npt.NDArray[np.bool_]
    tp: npt.NDArray[np.int64]
    pp: npt.NDArray[np.int64]
    positives: npt.NDArray[np.int64]


def _curves(probs: npt.NDArray[np.float64], targets: npt.NDArray[np.int64]) -> _Curves:
    valid = targets >= 0
    key = np.where(valid, probs, -np.inf)  # ignored entries sort last and are never candidates
    order = np.argsort(-key, axis=0, kind="stable")
    score = np.take_along_axis(key, order, axis=0)
    valid_s = np.take_along_axis(valid, order, axis=0)
    pos_s = np.take_along_axis(targets == 1, order, axis=0)
    last = np.ones_like(valid_s)
    last[:-1] = score[:-1] != score[1:]  # p >= t predicts a whole run of tied scores at once
    return _Curves(
        score=score,
        candidate=last & valid_s,
        tp=np.cumsum(pos_s, axis=0, dtype=np.int64),
        pp=np.cumsum(valid_s, axis=0, dtype=np.int64),
        positives=(targets == 1).sum(axis=0, dtype=np.int64),
    )


def _check(
    probs: npt.ArrayLike, targets: npt.ArrayLike, names: Sequence[str] | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[str]]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(
            f"probabilities and targets must be (images, classes) arrays of one shape, got "
            f"{p.shape} and {t.shape}"
        )
    if not np.isin(t, (-1, 0, 1)).all():
        raise ValueError("targets must hold 1 (present), 0 (absent) or -1 (ignored)")
    if np.isnan(p).any() or (p.size and (p.min() < 0.0 or p.max() > 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")
    c = p.shape[1]
    out_names = [f"class_{i}" for i in range(c)] if names is None else list(names)
    if len(out_names) != c:
        raise ValueError(f"got {len(out_names)} class names for {c} score columns")
    return p, t.astype(np.int64), out_names


def fit_thresholds(
    probs: npt.ArrayLike,
    targets: npt.ArrayLike,
    class_names: Sequence[str] | None = None,
    fitted_on: str = "unknown",
    precision: float | None = None,
    global_threshold: float = GLOBAL_THRESHOLD,
) -> ThresholdFit:
    """Per-class thresholds of (N, C) ``probs`` against ``targets`` (1, 0, -1 = ignored).

    ``precision=None`` maximises F1 (ties: the higher threshold); ``precision=q`` takes the
    lowest threshold with precision >= q, or the max-F1 one (with a note) if none reaches q.
    Classes without a positive keep ``global_threshold`` (with a note). See the module doc.
    """
    if precision is not None and not 0.0 < precision <= 1.0:
        raise ValueError(f"the precision target must be in (0, 1], got {precision}")
    if not 0.0 <= global_threshold <= 1.0:
        raise ValueError(f"the global threshold must be in [0, 1], got {global_threshold}")
    p, t, names = _check(probs, targets, class_names)
    n, c = p.shape
    cols = np.arange(c)
    positives = (t == 1).sum(axis=0)
    chosen = np.zeros(c, dtype=np.int64)
    reached = np.ones(c, dtype=bool)
    if n:
        cv = _curves(p, t)
        # F1 = 2 TP / (predicted + positives): an exact ratio of integers, correctly rounded, so
        # equal F1 values compare equal; argmax takes the first = highest-threshold maximum
        f1 = np.where(cv.candidate, 2.0 * cv.tp / np.maximum(cv.pp + cv.positives, 1), -1.0)
        chosen = np.argmax(f1, axis=0)
        if precision is not None:
            prec = cv.tp / np.maximum(cv.pp, 1)
            ok = cv.candidate & (prec >= precision)
            reached = np.asarray(ok.any(axis=0))
            lowest = n - 1 - np.argmax(ok[::-1], axis=0)  # the last (lowest-score) ok row
            chosen = np.where(reached, lowest, chosen)
        values = cv.score[chosen, cols]
        tp, pp = cv.tp[chosen, cols], cv.pp[chosen, cols]
    else:
        values = np.zeros(c)
        tp = pp = np.zeros(c, dtype=np.int64)

    classes: list[ClassThreshold] = []
    for i, name in enumerate(names):
        npos = int(positives[i])
        if npos == 0:
            valid = t[:, i] >= 0
            pred = int((valid & (p[:, i] >= global_threshold)).sum())
            note = f"no positive in {fitted_on}: global threshold {global_threshold:g} kept"
            classes.append(
                ClassThreshold(
                    name,
                    float(global_threshold),
                    0.0 if pred else None,
                    None,
                    None,
                    0,
                    False,
                    note,
                )
            )
            continue
        ti, pi = int(tp[i]), int(pp[i])
        prec_i, rec_i = ti / pi, ti / npos
        note = ""
        if not reached[i]:
            note = f"no threshold reaches precision {precision:g}: the max-F1 threshold is used"
        classes.append(
            ClassThreshold(
                name,
                float(values[i]),
                prec_i,
                rec_i,
                2.0 * ti / (pi + npos),
                npos,
                True,
                note,
            )
        )
    thresholds = Thresholds(
        values=[ct.threshold for ct in classes],
        fitted_on=fitted_on,
        method=method_name(precision),
        notes=[f"{ct.name}: {ct.note}" for ct in classes if ct.note],
    )
    return ThresholdFit(thresholds=thresholds, classes=classes)


def metrics_at_thresholds(
    probs: npt.ArrayLike, targets: npt.ArrayLike, thresholds: npt.ArrayLike
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 in percent with class c predicted at p >= ``thresholds[c]``
    (the conventions of ``ssgrl.metrics.multilabel``: ignored entries skipped, classes without
    positives left out of CP/CR)."""
    p = np.asarray(probs)
    th = np.asarray(thresholds, dtype=np.float64)
    if p.ndim != 2 or th.shape != (p.shape[1],):
        raise ValueError(
            f"need (N, C) probabilities and C thresholds, got {p.shape} and {th.shape}"
        )
    prf = multilabel_prf(multilabel_counts(threshold_predictions(p, th), targets))
    return {k: 100.0 * prf[k] for k in PRF_KEYS}


__all__ = [
    "GLOBAL_THRESHOLD",
    "MAX_F1",
    "ClassThreshold",
    "ThresholdFit",
    "fit_thresholds",
    "method_name",
    "metrics_at_thresholds",
    "probabilities",
]
