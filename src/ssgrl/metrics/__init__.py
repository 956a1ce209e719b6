"""Multi-label metrics: AP variants, mAP and CP/CR/CF1/OP/OR/OF1, vectorised over classes.

``compute_metrics`` is the one entry point used by training, evaluation and ``ssgrl metrics``.
Inputs are (N, C) arrays; targets hold 1 = present, 0 = absent, -1 = ignore.

Top-k comes in two variants, both reported: plain top-k (the k best classes of each image) and
ML-GCN's rule (among the k best *and* logit >= 0), which is where most published top-3 figures
come from. They are different numbers; ``top_k_variants`` in the result names them.

A class with no positive target after removing ignored entries is *undefined*: its AP is
reported as ``None``, it is left out of mAP, CP and CR, and an ``UndefinedClassWarning`` names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ssgrl.metrics.ap import (
    AP_MODES,
    APMode,
    average_precision,
    average_precisions,
    check_scores_targets,
    checked_average_precisions,
    mean_ap,
)
from ssgrl.metrics.multilabel import (
    PRF_KEYS,
    MultilabelCounts,
    checked_counts,
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
    "average_precisions",
    "check_scores_targets",
    "compute_metrics",
    "format_metrics",
    "mean_ap",
    "multilabel_counts",
    "multilabel_prf",
    "sigmoid",
    "threshold_predictions",
    "topk_predictions",
    "topk_variants",
]

# ML-GCN keeps a top-k class only if its logit is >= 0, i.e. its probability is >= 0.5.
MLGCN_MIN_LOGIT = 0.0
MLGCN_MIN_PROB = 0.5


class UndefinedClassWarning(UserWarning):
    """Some classes have no positive target; their metrics are undefined and skipped."""


def sigmoid(logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Numerically stable logistic function (no overflow for large |x|)."""
    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _percent(values: dict[str, float]) -> dict[str, float]:
    return {k: 100.0 * v for k, v in values.items()}


def topk_variants(k: int) -> dict[str, str]:
    """Result key -> plain-words meaning of the two top-k blocks for an effective ``k``."""
    best = "highest-scored class" if k == 1 else f"{k} highest-scored classes"
    return {
        f"top{k}": f"the {best} of each image",
        f"top{k}_mlgcn": (
            f"among the {best} of each image and logit >= 0, i.e. probability >= 0.5 "
            "(ML-GCN's code)"
        ),
    }


def _check_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ValueError(
            f"top_k must be a whole number >= 1 (or None to skip the top-k blocks), got {top_k!r}"
        )
    return int(top_k)


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
    predicted when its probability is >= ``threshold``. ``top_k=None`` skips the top-k blocks;
    a ``top_k`` above the number of classes C is clamped to k = min(top_k, C).

    The result is JSON-serialisable (floats, ints, strings, lists, dicts, ``None``): keys
    ``mAP``, ``per_class_AP`` (name -> AP or None), ``CP CR CF1 OP OR OF1`` (threshold),
    ``top{k}`` (the same six for the k best classes per image), ``top{k}_mlgcn`` (the same six
    for ML-GCN's rule: among the k best and logit >= 0, or probability >= 0.5 when ``scores``
    are probabilities), ``topk`` / ``topk_mlgcn`` (copies of those two under k-free names),
    ``top_k_variants`` (those two ``top{k}`` keys -> their meaning in words), ``num_images``,
    ``num_classes``, ``num_classes_defined``, ``undefined_classes``, ``ap_mode``,
    ``threshold``, ``top_k`` (as requested) and ``top_k_effective`` (the k used; None, like
    ``top_k``, when the blocks are skipped).
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
    k_eff = None if top_k is None else min(_check_top_k(top_k), c)
    probs = sigmoid(s) if logits else s
    if not logits and (s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(
            f"scores must be probabilities in [0, 1] (found values in [{s.min():.4g}, "
            f"{s.max():.4g}]); pass logits=True for raw logits"
        )

    ap = checked_average_precisions(s, t, (ap_mode,))[ap_mode]  # (C,), NaN = undefined
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
        _percent(multilabel_prf(checked_counts(threshold_predictions(probs, threshold), t)))
    )
    if k_eff is not None:
        # ranked on the raw scores (logits when logits=True), as ML-GCN's topk on its outputs
        min_score = MLGCN_MIN_LOGIT if logits else MLGCN_MIN_PROB
        top = topk_predictions(s, k_eff)  # (N, C)
        plain = checked_counts(top, t)
        mlgcn = checked_counts(top & (s >= min_score), t)  # = topk_predictions(..., min_score)
        result[f"top{k_eff}"] = _percent(multilabel_prf(plain))
        result[f"top{k_eff}_mlgcn"] = _percent(multilabel_prf(mlgcn))
        result["topk"] = dict(result[f"top{k_eff}"])
        result["topk_mlgcn"] = dict(result[f"top{k_eff}_mlgcn"])
        result["top_k_variants"] = topk_variants(k_eff)
    result.update(
        {
            "num_images": n,
            "num_classes": c,
            "num_classes_defined": c - len(undefined),
            "undefined_classes": undefined,
            "ap_mode": ap_mode,
            "threshold": float(threshold),
            "top_k": None if top_k is None else int(top_k),
            "top_k_effective": k_eff,
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
    k = result.get("top_k_effective", result.get("top_k"))
    notes: list[str] = []
    if k is not None:
        for key, label in ((f"top{k}", f"top-{k}"), (f"top{k}_mlgcn", f"top-{k} ML-GCN")):
            block = result.get(key)
            if block is not None:
                lines.append(f"{label:12s}" + "".join(f"{block[m]:8.2f}" for m in PRF_KEYS))
        if result.get("top_k") not in (None, k):
            notes.append(f"top-k: asked {result['top_k']}, clamped to the {k} classes")
        for key, meaning in result.get("top_k_variants", {}).items():
            label = f"top-{k}" + (" ML-GCN" if key.endswith("_mlgcn") else "")
            notes.append(f"{label}: {meaning}")
    if notes:
        lines += ["", *notes]
    lines += ["", "per-class AP"]
    width = max(len(name) for name in result["per_class_AP"])
    for name, v in result["per_class_AP"].items():
        lines.append(
            f"  {name:{width}s}  " + ("undefined (no positives)" if v is None else f"{v:6.2f}")
        )
    return "\n".join(lines)
