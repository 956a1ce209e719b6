"""Multi-label metrics: AP variants, mAP and CP/CR/CF1/OP/OR/OF1, vectorised over classes.

``compute_metrics`` is the one entry point used by training, evaluation and ``ssgrl metrics``.
Inputs are (N, C) arrays; targets hold 1 = present, 0 = absent, -1 = ignore.

A class with no positive target after removing ignored entries is *undefined*: its AP is
reported as ``None``, it is left out of mAP, CP and CR, and an ``UndefinedClassWarning`` names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ssgrl.metrics.ap import AP_MODES, APMode, average_precision, check_scores_targets, mean_ap
from ssgrl.metrics.multilabel import (
    PRF_KEYS,
    MultilabelCounts,
    multilabel_counts,
    multilabel_prf,
    threshold_predictions,
    topk_predictions,
)

__all__ = [
    "AP_MODES",
    "PRF_KEYS",
    "APMode",
    "MultilabelCounts",
    "UndefinedClassWarning",
    "average_precision",
    "check_scores_targets",
    "compute_metrics",
    "format_metrics",
    "mean_ap",
    "multilabel_counts",
    "multilabel_prf",
    "sigmoid",
    "threshold_predictions",
    "topk_predictions",
]


class UndefinedClassWarning(UserWarning):
    """Some classes have no positive target; their metrics are undefined and skipped."""


def sigmoid(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Numerically stable logistic function (no overflow for large |x|)."""
    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _percent(values: dict[str, float]) -> dict[str, float]:
    return {k: 100.0 * v for k, v in values.items()}


def compute_metrics(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    class_names: Sequence[str] | None = None,
    ap_mode: APMode = "noninterp",
    threshold: float = 0.5,
    top_k: int | None = 3,
    *,
    logits: bool = False,
) -> dict[str, Any]:
    """All metrics of (N, C) ``scores`` against ``targets``, in percent (0-100).

    ``scores`` are probabilities; with ``logits=True`` they are logits: AP ranks the raw
    logits (no saturation ties) and the threshold applies to their sigmoid. An entry is
    predicted when its probability is >= ``threshold``. ``top_k=None`` skips the top-k block.

    The result is JSON-serialisable (floats, ints, strings, lists, dicts, ``None``): keys
    ``mAP``, ``per_class_AP`` (name -> AP or None), ``CP CR CF1 OP OR OF1`` (threshold),
    ``top{k}`` (the same six for the k best classes per image), ``num_images``,
    ``num_classes``, ``num_classes_defined``, ``undefined_classes``, ``ap_mode``,
    ``threshold``, ``top_k``.
    """
    s, t = check_scores_targets(scores, targets)
    n, c = s.shape
    names = [f"class_{i}" for i in range(c)] if class_names is None else list(class_names)
    if len(names) != c:
        raise ValueError(f"got {len(names)} class names for {c} score columns")
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"class names must be unique; repeated: {', '.join(dup)}")
    if ap_mode not in AP_MODES:
        raise ValueError(f"unknown AP mode {ap_mode!r}; expected one of {', '.join(AP_MODES)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
    probs = sigmoid(s) if logits else s
    if not logits and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(
            f"scores must be probabilities in [0, 1] (found values in [{s.min():.4g}, "
            f"{s.max():.4g}]); pass logits=True for raw logits"
        )

    ap = average_precision(s, t, mode=ap_mode)  # (C,), NaN = undefined
    undefined = [names[i] for i in np.flatnonzero(np.isnan(ap))]
    if len(undefined) == c:
        raise ValueError(
            "no class has a positive (non-ignored) target, so no metric is defined; "
            "check that the targets are not all 0/-1"
        )
    if undefined:
        warnings.warn(
            f"{len(undefined)} of {c} classes have no positive target and are reported as "
            f"undefined, left out of mAP/CP/CR: {', '.join(undefined)}",
            UndefinedClassWarning,
            stacklevel=2,
        )

    result: dict[str, Any] = {
        "mAP": 100.0 * mean_ap(ap),
        "per_class_AP": {
            name: None if np.isnan(v) else 100.0 * float(v)
            for name, v in zip(names, ap, strict=True)
        },
    }
    result.update(
        _percent(multilabel_prf(multilabel_counts(threshold_predictions(probs, threshold), t)))
    )
    if top_k is not None:
        top = multilabel_counts(topk_predictions(s, top_k), t)
        result[f"top{top_k}"] = _percent(multilabel_prf(top))
    result.update(
        {
            "num_images": n,
            "num_classes": c,
            "num_classes_defined": c - len(undefined),
            "undefined_classes": undefined,
            "ap_mode": ap_mode,
            "threshold": float(threshold),
            "top_k": top_k,
        }
    )
    return result


def format_metrics(result: dict[str, Any]) -> str:
    """A plain-text table of a ``compute_metrics`` result, for terminals."""
    lines = [
        f"mAP {result['mAP']:6.2f}  (AP mode {result['ap_mode']}; {result['num_images']} images, "
        f"{result['num_classes_defined']}/{result['num_classes']} classes defined)",
        "",
        f"{'':12s}" + "".join(f"{k:>8s}" for k in PRF_KEYS),
        f"{'thr ' + format(result['threshold'], 'g'):12s}"
        + "".join(f"{result[k]:8.2f}" for k in PRF_KEYS),
    ]
    top_k = result.get("top_k")
    if top_k is not None:
        block = result[f"top{top_k}"]
        lines.append(f"{'top-' + str(top_k):12s}" + "".join(f"{block[k]:8.2f}" for k in PRF_KEYS))
    lines += ["", "per-class AP"]
    width = max(len(name) for name in result["per_class_AP"])
    for name, v in result["per_class_AP"].items():
        lines.append(
            f"  {name:{width}s}  " + ("undefined (no positives)" if v is None else f"{v:6.2f}")
        )
    return "\n".join(lines)
