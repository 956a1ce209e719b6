"""Report plots: per-class AP of two models side by side."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_per_class_ap"]

_DPI = 100


def _as_ap(values: Sequence[float | None], name: str, num: int) -> np.ndarray:
    """(C,) float array with NaN for undefined (None/NaN) entries; raise on length or range."""
    if len(values) != num:
        raise ValueError(f"{name} has {len(values)} values but there are {num} class names")
    out = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    bad = ~np.isnan(out) & ((out < 0.0) | (out > 1.0) | ~np.isfinite(out))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name}[{i}] = {out[i]} is not an AP in [0, 1]; pass fractions (divide percentages "
            "by 100) and None for classes whose AP is undefined"
        )
    return out


def plot_per_class_ap(
    names: Sequence[str],
    ap_a: Sequence[float | None],
    ap_b: Sequence[float | None],
    path: Path,
    labels: tuple[str, str] = ("SSGRL", "baseline"),
    title: str | None = None,
) -> None:
    """Write a horizontal grouped bar chart of per-class AP for two models to ``path`` (PNG).

    ``None`` (or NaN) marks a class whose AP is undefined (no positive); it is drawn as "n/a" and
    left out of that model's mean, which the legend shows. Classes keep the given order, top down.
    """
    if len(labels) != 2 or not all(isinstance(s, str) for s in labels):
        raise ValueError(f"labels must be two strings (model a, model b), got {labels!r}")
    class_names = [str(n) for n in names]
    num = len(class_names)
    if num == 0:
        raise ValueError("no classes to plot")
    a = _as_ap(ap_a, "ap_a", num)  # (C,)
    b = _as_ap(ap_b, "ap_b", num)  # (C,)

    def legend(label: str, values: np.ndarray) -> str:
        defined = values[~np.isnan(values)]
        mean = f"{defined.mean():.3f}" if defined.size else "n/a"
        return f"{label} (mean {mean} over {defined.size} classes)"

    bar_h = 0.38
    font = 9.0 if num <= 30 else 7.0
    fig = Figure(figsize=(8.0, 1.6 + 0.3 * num), dpi=_DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = np.arange(num, dtype=np.float64)
    for values, offset, colour, label in (
        (a, -bar_h / 2, "#1f77b4", labels[0]),
        (b, bar_h / 2, "#ff7f0e", labels[1]),
    ):
        ys = rows + offset
        ax.barh(ys, np.nan_to_num(values), height=bar_h, color=colour, label=legend(label, values))
        for y, v in zip(ys, values, strict=True):
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            x = 0.005 if np.isnan(v) else v + 0.005
            if num <= 30 or np.isnan(v):
                ax.text(x, y, text, va="center", ha="left", fontsize=font - 1.5, color="#333333")
    ax.set_yticks(rows, labels=class_names, fontsize=font)
    ax.set_ylim(num - 0.5, -0.5)  # first class on top
    ax.set_xlim(0.0, 1.08)
    ax.set_xlabel("average precision")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=1, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, facecolor="white")
