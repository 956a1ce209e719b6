"""Does attention fall on the object? The attention mass inside a class's boxes vs chance.

For image i and a present class c with boxes B_c, the *box mass* is the attention of c that
falls inside the union of B_c, where each feature cell counts by the fraction of its area the
boxes cover. Chance is the fraction of the image the boxes cover: a uniform attention map
scores exactly that. ``box_mass_ratio`` = mean mass / mean chance (1 = chance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[int, float, float, float, float]  # (class index, x0, y0, x1, y1) in pixels


def box_coverage(
    boxes: Sequence[tuple[float, float, float, float]],
    grid: tuple[int, int],
    size: tuple[float, float],
) -> np.ndarray:
    """(h, w) fraction of each feature cell covered by the union of ``boxes`` (pixels of an
    image of ``size`` = (width, height)), computed on a 4x super-sampled grid."""
    h, w = grid
    sub = 4
    ys = (np.arange(h * sub) + 0.5) * size[1] / (h * sub)
    xs = (np.arange(w * sub) + 0.5) * size[0] / (w * sub)
    inside = np.zeros((h * sub, w * sub), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        inside |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    return inside.reshape(h, sub, w, sub).mean(axis=(1, 3))


@dataclass
class BoxMass:
    mass: float  # mean attention mass inside the boxes of present classes
    chance: float  # mean box area fraction (what a uniform map would score)
    count: int  # (image, class) pairs measured

    @property
    def ratio(self) -> float:
        return self.mass / self.chance if self.chance > 0 else float("nan")


def attention_box_mass(
    attention: np.ndarray, boxes: Sequence[Sequence[Box]], size: tuple[float, float]
) -> BoxMass:
    """``attention`` (N, C, h, w) of N images whose boxes are ``boxes[i]``; images of ``size``
    = (width, height) pixels as the model saw them."""
    if attention.ndim != 4 or len(boxes) != attention.shape[0]:
        raise ValueError(
            f"attention must be (N, C, h, w) with N = len(boxes) = {len(boxes)}, got {attention.shape}"
        )
    grid = (attention.shape[2], attention.shape[3])
    masses, chances = [], []
    for att, image_boxes in zip(attention, boxes, strict=True):
        by_class: dict[int, list[tuple[float, float, float, float]]] = {}
        for c, x0, y0, x1, y1 in image_boxes:
            by_class.setdefault(int(c), []).append((x0, y0, x1, y1))
        for c, cls_boxes in by_class.items():
            cover = box_coverage(cls_boxes, grid, size)
            masses.append(float((att[c] * cover).sum()))
            chances.append(float(cover.mean()))
    if not masses:
        raise ValueError("no boxes: nothing to measure")
    return BoxMass(float(np.mean(masses)), float(np.mean(chances)), len(masses))
