"""What the synthetic scenes are made of: the 16 classes, the six scene types (sky, night, street,
sea, room, garden) with the classes each makes likely, occasional or excludes (so labels co-occur
and exclude each other as objects do in photos), how each class is placed (size, height band,
rotation, chance to be small, faint or cut by the border, extra instances), the split ids that
seed the per-image RNG, the caps on labels and objects per image and ``GENERATOR_VERSION``.
Constants and plain data only: nothing here draws or samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CLASSES: tuple[str, ...] = (
    "sun",
    "moon",
    "star",
    "cloud",
    "tree",
    "house",
    "car",
    "boat",
    "fish",
    "flower",
    "ball",
    "balloon",
    "cup",
    "book",
    "lamp",
    "clock",
)
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
GENERATOR_VERSION = 1
MAX_LABELS = 4  # distinct classes per image
MAX_OBJECTS = 5  # object instances per image
PLAIN_BACKGROUND_P = 0.25  # share of images whose background does not show the scene

RGB = tuple[int, int, int]
Box = tuple[int, float, float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    """A scene type: the probability that each class is present; classes not listed are excluded."""

    name: str
    likely: Mapping[str, float]
    occasional: Mapping[str, float]

    def probabilities(self) -> dict[str, float]:
        return {**self.likely, **self.occasional}


SCENES: dict[str, SceneSpec] = {
    s.name: s
    for s in (
        SceneSpec("sky", {"sun": 0.7, "cloud": 0.75, "balloon": 0.5}, {"tree": 0.1, "house": 0.1}),
        SceneSpec(
            "night", {"moon": 0.85, "star": 0.75}, {"cloud": 0.3, "house": 0.15, "tree": 0.15}
        ),
        SceneSpec(
            "street",
            {"car": 0.8, "house": 0.7, "tree": 0.5},
            {"sun": 0.15, "cloud": 0.2, "balloon": 0.1, "ball": 0.1},
        ),
        SceneSpec("sea", {"boat": 0.85, "fish": 0.6}, {"sun": 0.3, "cloud": 0.35}),
        SceneSpec(
            "room",
            {"cup": 0.6, "book": 0.6, "lamp": 0.55, "clock": 0.5},
            {"flower": 0.2, "ball": 0.15, "balloon": 0.1},
        ),
        SceneSpec(
            "garden",
            {"flower": 0.8, "tree": 0.6, "ball": 0.45},
            {"house": 0.2, "sun": 0.25, "cloud": 0.2, "balloon": 0.15},
        ),
    )
}


@dataclass(frozen=True)
class Style:
    """How a class is placed: size range (fraction of the image side), band of the centre's y,
    largest rotation (degrees), chance to be drawn small, faint (blended into the background) or
    cut by the image border, and how many extra instances it may have."""

    size: tuple[float, float]
    y: tuple[float, float]
    rot: float
    p_small: float = 0.0
    small: tuple[float, float] = (0.1, 0.14)
    p_faint: float = 0.0
    faint: tuple[float, float] = (0.3, 0.5)
    p_edge: float = 0.15
    flip: bool = True
    extra: int = 0


STYLES: dict[str, Style] = {
    "sun": Style((0.2, 0.34), (0.1, 0.45), 180, flip=False),
    "moon": Style((0.18, 0.32), (0.1, 0.45), 180),
    "star": Style(
        (0.06, 0.13), (0.08, 0.6), 180, p_faint=0.6, faint=(0.35, 0.6), p_edge=0.05, extra=2
    ),
    "cloud": Style((0.28, 0.46), (0.1, 0.4), 8, extra=1),
    "tree": Style((0.3, 0.5), (0.45, 0.8), 8, extra=1),
    "house": Style((0.3, 0.48), (0.45, 0.8), 5),
    "car": Style((0.3, 0.46), (0.55, 0.88), 6),
    "boat": Style((0.3, 0.48), (0.35, 0.65), 10),
    "fish": Style(
        (0.18, 0.3),
        (0.62, 0.95),
        30,
        p_small=0.5,
        small=(0.08, 0.13),
        p_faint=0.45,
        faint=(0.25, 0.5),
        p_edge=0.35,
        extra=1,
    ),
    "flower": Style((0.22, 0.4), (0.5, 0.85), 20, extra=1),
    "ball": Style((0.13, 0.24), (0.55, 0.92), 180, p_small=0.4, small=(0.08, 0.12)),
    "balloon": Style((0.24, 0.4), (0.15, 0.55), 20, extra=1),
    "cup": Style((0.18, 0.3), (0.5, 0.88), 12),
    "book": Style((0.2, 0.34), (0.45, 0.88), 40),
    "lamp": Style((0.28, 0.45), (0.4, 0.8), 6),
    "clock": Style((0.17, 0.3), (0.12, 0.45), 10),
}
