"""Heat-map of a label co-occurrence matrix (the SSGRL graph prior M[i, j] = P(j | i))."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["GraphLike", "plot_graph"]

_DPI = 100


class GraphLike(Protocol):
    """What ``plot_graph`` reads; ``ssgrl.graph.cooccurrence.LabelGraph`` has all of it."""

    @property
    def matrix(self) -> np.ndarray: ...  # (C, C)

    @property
    def classes(self) -> Sequence[str]: ...  # C names, row/column order of ``matrix``

    @property
    def split(self) -> str: ...  # the split the counts come from, e.g. "trainval"

    @property
    def num_images(self) -> int: ...  # images counted


def _label_fontsize(num_classes: int) -> float:
    """9 pt up to 20 classes, shrinking to 6 pt at 80 (cells are then ~16 px) and beyond."""
    return float(np.clip(9.0 - (num_classes - 20) / 20.0, 6.0, 9.0))


def plot_graph(graph: GraphLike, path: Path, *, value_label: str = "P(column | row)") -> None:
    """Write a PNG heat-map of ``graph.matrix`` with class names on both axes.

    Rows are the conditioning class i, columns the co-occurring class j. Cell values are printed
    when C <= 20; the figure grows with C so that 80 (COCO) names stay legible. Parent folders of
    ``path`` are created.
    """
    matrix = np.asarray(graph.matrix, dtype=np.float64)
    classes = [str(c) for c in graph.classes]
    num = len(classes)
    if matrix.ndim != 2 or matrix.shape != (num, num):
        raise ValueError(
            f"graph matrix must be (C, C) with C = {num} classes, got shape {matrix.shape}"
        )
    if num == 0:
        raise ValueError("graph has no classes; nothing to plot")
    if not np.isfinite(matrix).all():
        i, j = np.argwhere(~np.isfinite(matrix))[0]
        raise ValueError(
            f"graph matrix has a non-finite value at row {i} ({classes[i]!r}), "
            f"column {j} ({classes[j]!r})"
        )

    lo, hi = float(matrix.min()), float(matrix.max())
    vmin, vmax = (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi if hi > lo else lo + 1.0)
    side = max(6.0, 2.8 + 0.17 * num)  # inches; 80 classes -> ~16.4 in (1640 px)
    font = _label_fontsize(num)

    fig = Figure(figsize=(side + 1.2, side), dpi=_DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
    ticks = np.arange(num)
    ax.set_xticks(ticks, labels=classes, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=classes)
    ax.tick_params(labelsize=font, length=2)
    ax.set_xlabel("co-occurring class j (column)", fontsize=10)
    ax.set_ylabel("given class i (row)", fontsize=10)
    ax.set_title(
        f"Label co-occurrence {value_label}\n"
        f"split '{graph.split}', {int(graph.num_images)} images, {num} classes",
        fontsize=12,
    )
    if num <= 20:
        cell_font = 7.5 if num <= 12 else 6.0
        middle = (vmin + vmax) / 2
        for i in range(num):
            for j in range(num):
                value = matrix[i, j]
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=cell_font,
                    color="black" if value > middle else "white",  # viridis: bright above mid
                )
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(value_label, fontsize=10)
    bar.ax.tick_params(labelsize=8)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, facecolor="white")
