"""Plots of ``ssgrl report``: per-class AP, precision-recall and F1-threshold curves, and the
predicted-minus-true label co-occurrence. Each returns PNG bytes (nothing is written)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]

_DPI = 80


@dataclass(frozen=True)
class Curve:
    """One class's operating points, best threshold first: one point per distinct score."""

    threshold: FloatArray  # (K,) the score at and above which an entry is predicted
    precision: FloatArray  # (K,)
    recall: FloatArray  # (K,)

    @property
    def f1(self) -> FloatArray:
        out = np.zeros_like(self.precision)
        s = self.precision + self.recall
        np.divide(2.0 * self.precision * self.recall, s, out=out, where=s > 0)
        return out


def operating_points(scores: npt.ArrayLike, targets: npt.ArrayLike) -> Curve | None:
    """Precision and recall of one class at every distinct score (ignored entries, target -1,
    left out; tied scores form one point, as in ``ssgrl.metrics.ap``); None without positives."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    keep = t >= 0
    s, pos = s[keep], t[keep] == 1
    if not pos.any():
        return None
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    tp = np.cumsum(pos)
    seen = np.arange(1, s.size + 1)
    last = np.ones(s.size, dtype=bool)
    last[:-1] = s[:-1] != s[1:]
    return Curve(s[last], tp[last] / seen[last], tp[last] / tp[-1])


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    return buffer.getvalue()


def _grid(
    num: int, xlabel: str, ylabel: str, columns: int = 5, cell: float = 2.4
) -> tuple[Figure, list[Any]]:
    """A figure of ``num`` small panels; tick labels only on the outer panels (no constrained
    layout: it is slow for many panels)."""
    cols = min(columns, max(num, 1))
    rows = max(1, math.ceil(num / cols))
    height = rows * cell * 0.85 + 0.6
    fig = Figure(figsize=(cols * cell + 0.4, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.5 / (cols * cell + 0.4) + 0.03,
        right=0.99,
        bottom=0.55 / height,
        top=1.0 - 0.25 / height,
        wspace=0.08,
        hspace=0.35,
    )
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(num)]
    for i, ax in enumerate(axes):
        ax.tick_params(labelsize=6, labelbottom=i + cols >= num, labelleft=i % cols == 0)
    fig.supxlabel(xlabel, fontsize=8)
    fig.supylabel(ylabel, fontsize=8)
    return fig, axes


def per_class_ap_png(names: Sequence[str], ap: Sequence[float | None], title: str) -> bytes:
    """Horizontal bars of per-class AP in percent, largest first; "n/a" for undefined."""
    values = np.array([np.nan if v is None else float(v) for v in ap])
    order = np.argsort(-np.nan_to_num(values, nan=-1.0), kind="stable")
    num = len(names)
    fig = Figure(figsize=(7.5, 1.2 + 0.26 * num), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = np.arange(num, dtype=np.float64)
    shown = values[order]
    ax.barh(rows, np.nan_to_num(shown), color="#1f77b4", height=0.7)
    for y, v in zip(rows, shown, strict=True):
        ax.text(
            1 if np.isnan(v) else v + 0.5,
            y,
            "n/a" if np.isnan(v) else f"{v:.1f}",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(rows, labels=[names[i] for i in order], fontsize=8)
    ax.set_ylim(num - 0.5, -0.5)
    ax.set_xlim(0, 108)
    ax.set_xlabel("AP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def pr_curves_png(
    names: Sequence[str], curves: Sequence[Curve | None], ap: Sequence[float | None]
) -> bytes:
    """One precision-recall panel per class."""
    fig, axes = _grid(len(names), "recall", "precision")
    for ax, name, curve, value in zip(axes, names, curves, ap, strict=True):
        label = "undefined" if value is None else f"AP {value:.1f}"
        ax.set_title(f"{name} ({label})", fontsize=8)
        if curve is not None:
            ax.step(curve.recall, curve.precision, where="post", color="#1f77b4", lw=1.2)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    return _png(fig)


def threshold_curves_png(
    names: Sequence[str],
    curves: Sequence[Curve | None],
    fitted: Sequence[float] | None,
    global_threshold: float,
) -> bytes:
    """One F1-against-probability-threshold panel per class; the global threshold dotted, the
    checkpoint's fitted per-class threshold (when there is one) dashed red."""
    fig, axes = _grid(len(names), "probability threshold", "F1")
    for j, (ax, name, curve) in enumerate(zip(axes, names, curves, strict=True)):
        ax.set_title(name, fontsize=8)
        if curve is not None:
            probs = 1.0 / (1.0 + np.exp(-np.clip(curve.threshold, -50, 50)))
            ax.plot(probs, curve.f1, color="#2ca02c", lw=1.2)
        ax.axvline(global_threshold, color="#555555", ls=":", lw=1)
        if fitted is not None:
            ax.axvline(float(fitted[j]), color="#d62728", ls="--", lw=1.2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    return _png(fig)


def cooccurrence_png(names: Sequence[str], difference: FloatArray, title: str) -> bytes:
    """Heat-map of (predicted - true) co-occurrence per image pair rate, diverging around 0."""
    num = len(names)
    side = max(5.0, 2.5 + 0.2 * num)
    fig = Figure(figsize=(side + 1.0, side), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bound = float(np.abs(difference).max()) or 1.0
    image = ax.imshow(difference, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    ticks = np.arange(num)
    font = 8 if num <= 30 else 6
    ax.set_xticks(ticks, labels=list(names), rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=list(names))
    ax.tick_params(labelsize=font, length=2)
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("predicted - true pair rate (fraction of images)", fontsize=8)
    return _png(fig)
