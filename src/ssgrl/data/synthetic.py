"""``synthetic``: a procedurally generated multi-label scene dataset (the data of ``ssgrl demo``).

Each image is one of six scenes (sky, night, street, sea, room, garden) holding 1-5 objects of
16 classes drawn as composite shapes (a sun has rays, a car has wheels and windows, a clock has
ticks and hands) at varied sizes, positions, colours and orientations, on textured backgrounds
with distractor blobs that are no class. A scene decides which classes are likely, occasional
or excluded, so labels co-occur and exclude each other as objects do in photos. Some classes need
context: a star is small and often faint but comes with the moon at night; fish are often small,
faint or cut by the image border, but come with boats.

Everything about image ``index`` of ``split`` comes from ``np.random.default_rng([seed,
split_id, index])``: its layout (labels, boxes) is sampled up-front, its pixels are rendered by
``load_image`` and are the same bytes whatever the rendering order. Layouts are in unit
coordinates, so ``image_size`` only scales the drawing.
"""

from __future__ import annotations

import colorsys
import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ssgrl.data.base import PRESENT, Split
from ssgrl.data.registry import register_dataset

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
class _Style:
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


_STYLES: dict[str, _Style] = {
    "sun": _Style((0.2, 0.34), (0.1, 0.45), 180, flip=False),
    "moon": _Style((0.18, 0.32), (0.1, 0.45), 180),
    "star": _Style(
        (0.06, 0.13), (0.08, 0.6), 180, p_faint=0.6, faint=(0.35, 0.6), p_edge=0.05, extra=2
    ),
    "cloud": _Style((0.28, 0.46), (0.1, 0.4), 8, extra=1),
    "tree": _Style((0.3, 0.5), (0.45, 0.8), 8, extra=1),
    "house": _Style((0.3, 0.48), (0.45, 0.8), 5),
    "car": _Style((0.3, 0.46), (0.55, 0.88), 6),
    "boat": _Style((0.3, 0.48), (0.35, 0.65), 10),
    "fish": _Style(
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
    "flower": _Style((0.22, 0.4), (0.5, 0.85), 20, extra=1),
    "ball": _Style((0.13, 0.24), (0.55, 0.92), 180, p_small=0.4, small=(0.08, 0.12)),
    "balloon": _Style((0.24, 0.4), (0.15, 0.55), 20, extra=1),
    "cup": _Style((0.18, 0.3), (0.5, 0.88), 12),
    "book": _Style((0.2, 0.34), (0.45, 0.88), 40),
    "lamp": _Style((0.28, 0.45), (0.4, 0.8), 6),
    "clock": _Style((0.17, 0.3), (0.12, 0.45), 10),
}


# ---------------------------------------------------------------------------------------------
# shapes: each class is a list of parts in local coordinates (the object spans about [-0.5, 0.5]
# on its longer side, y points down), built from the object's own RNG


@dataclass(frozen=True)
class _Part:
    pts: np.ndarray  # (K, 2) local coordinates
    color: RGB
    width: float = 0.0  # 0: filled polygon; > 0: polyline of this width (local units)


def _ellipse(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    n: int = 20,
    a0: float = 0.0,
    a1: float | None = None,
) -> np.ndarray:
    """Points of an ellipse (closed, ``a1`` None) or of the arc from ``a0`` to ``a1`` (radians)."""
    t = np.linspace(a0, a0 + 2 * np.pi, n, endpoint=False) if a1 is None else np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _poly(*xy: tuple[float, float]) -> np.ndarray:
    return np.array(xy, dtype=float)


def _rotate(pts: np.ndarray, angle: float, about: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    p = pts - about
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + about


def _hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> RGB:
    """A colour with hue/saturation/value drawn from the ranges (hue in turns, may exceed 1)."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def _vivid(rng: np.random.Generator) -> RGB:
    return _hsv(rng, (0.0, 1.0), (0.6, 1.0), (0.65, 1.0))


def _shade(c: RGB, f: float) -> RGB:
    """``c`` darkened (f < 1) or lightened towards white (f > 1)."""
    if f <= 1.0:
        return (int(c[0] * f), int(c[1] * f), int(c[2] * f))
    t = min(f - 1.0, 1.0)
    return (
        int(c[0] + (255 - c[0]) * t),
        int(c[1] + (255 - c[1]) * t),
        int(c[2] + (255 - c[2]) * t),
    )


def _pick(rng: np.random.Generator, options: list[RGB], jitter: int = 18) -> RGB:
    """One of ``options``, each channel moved by up to ``jitter``."""
    base = options[int(rng.integers(len(options)))]
    return _jitter(base, rng.integers(-jitter, jitter + 1, 3).tolist())


def _jitter(c: RGB, d: list[int]) -> RGB:
    return (
        min(max(c[0] + d[0], 0), 255),
        min(max(c[1] + d[1], 0), 255),
        min(max(c[2] + d[2], 0), 255),
    )


def _sun(rng: np.random.Generator) -> list[_Part]:
    body = _pick(rng, [(255, 214, 0), (255, 170, 20), (255, 235, 90), (250, 135, 30)])
    ray = _shade(body, float(rng.uniform(0.85, 1.15)))
    r0 = rng.uniform(0.24, 0.3)
    n = int(rng.integers(8, 15))
    start = rng.uniform(0, 2 * np.pi)
    half = np.pi / n * rng.uniform(0.35, 0.55)
    parts = []
    for a in start + np.arange(n) * 2 * np.pi / n:
        tip = rng.uniform(0.42, 0.5)
        pts = _poly(
            (r0 * 1.05 * np.cos(a - half), r0 * 1.05 * np.sin(a - half)),
            (tip * np.cos(a), tip * np.sin(a)),
            (r0 * 1.05 * np.cos(a + half), r0 * 1.05 * np.sin(a + half)),
        )
        parts.append(_Part(pts, ray))
    parts.append(_Part(_ellipse(0, 0, r0, r0, 28), body))
    if rng.random() < 0.5:  # a lighter core
        parts.append(_Part(_ellipse(0, 0, r0 * 0.6, r0 * 0.6, 20), _shade(body, 1.35)))
    return parts


def _moon(rng: np.random.Generator) -> list[_Part]:
    color = _pick(rng, [(245, 240, 200), (232, 232, 232), (255, 248, 170), (250, 225, 150)])
    r = 0.5
    d = r * rng.uniform(0.45, 0.8)  # offset of the biting circle
    h = np.sqrt(r * r - d * d / 4)
    phi1 = np.arctan2(h, d / 2)  # intersection angle on the moon's circle
    phi2 = np.arctan2(h, -d / 2)  # and on the biting circle
    outer = _ellipse(0, 0, r, r, 24, phi1, 2 * np.pi - phi1)
    inner = _ellipse(d, 0, r, r, 18, 2 * np.pi - phi2, phi2)
    parts = [_Part(np.concatenate([outer, inner]), color)]
    if rng.random() < 0.5:  # craters on the lit part
        dark = _shade(color, 0.8)
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(2.4, 3.9)
            rr = rng.uniform(0.25, 0.38)
            parts.append(_Part(_ellipse(rr * np.cos(a), rr * np.sin(a), 0.05, 0.05, 10), dark))
    return parts


def _star(rng: np.random.Generator) -> list[_Part]:
    color = _pick(rng, [(255, 230, 40), (255, 250, 210), (255, 200, 60), (255, 255, 255)])
    inner = 0.5 * rng.uniform(0.36, 0.46)
    a = -np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, 0.5, inner)
    parts = [_Part(np.stack([rad * np.cos(a), rad * np.sin(a)], axis=1), color)]
    if rng.random() < 0.4:
        parts.append(_Part(_ellipse(0, 0, inner * 0.6, inner * 0.6, 10), _shade(color, 1.5)))
    return parts


def _cloud(rng: np.random.Generator) -> list[_Part]:
    color = _pick(rng, [(250, 250, 250), (235, 238, 242), (210, 214, 222), (170, 175, 185)], 8)
    shadow = _shade(color, 0.85)
    n = int(rng.integers(3, 6))
    xs = np.linspace(-0.28, 0.28, n) + rng.uniform(-0.03, 0.03, n)
    rs = 0.13 + 0.1 * np.sin(np.linspace(0.3, np.pi - 0.3, n)) + rng.uniform(-0.02, 0.03, n)
    shapes = [_rect(-0.36, -0.02, 0.36, 0.14)]
    shapes += [_ellipse(-0.36, 0.06, 0.08, 0.08, 12), _ellipse(0.36, 0.06, 0.08, 0.08, 12)]
    shapes += [_ellipse(x, 0.02 - 0.5 * r, r, r, 18) for x, r in zip(xs, rs, strict=True)]
    off = np.array([0.02, 0.035])
    return [_Part(p + off, shadow) for p in shapes] + [_Part(p, color) for p in shapes]


def _tree(rng: np.random.Generator) -> list[_Part]:
    trunk = _pick(rng, [(110, 70, 35), (90, 60, 40), (130, 85, 45)])
    green = _hsv(rng, (0.22, 0.4), (0.55, 0.9), (0.35, 0.7))
    if rng.random() < 0.5:  # round crown
        parts = [_Part(_rect(-0.06, -0.05, 0.06, 0.5), trunk)]
        for cx, cy, r in (
            (-0.17, -0.12, 0.2),
            (0.17, -0.12, 0.2),
            (0.0, -0.28, 0.22),
            (0.0, -0.08, 0.2),
        ):
            g = _shade(green, float(rng.uniform(0.85, 1.15)))
            parts.append(_Part(_ellipse(cx, cy, r, r * rng.uniform(0.9, 1.1), 18), g))
        if rng.random() < 0.35:  # fruit
            fruit = _pick(rng, [(220, 30, 30), (255, 150, 0)])
            for _ in range(int(rng.integers(3, 7))):
                fx, fy = rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.0)
                parts.append(_Part(_ellipse(fx, fy, 0.03, 0.03, 8), fruit))
        return parts
    parts = [_Part(_rect(-0.05, 0.3, 0.05, 0.5), trunk)]  # conifer: three tiers
    for i, (top, bot, half) in enumerate(
        ((-0.5, -0.15, 0.2), (-0.33, 0.08, 0.27), (-0.15, 0.32, 0.34))
    ):
        g = _shade(green, 0.85 + 0.1 * i)
        parts.append(_Part(_poly((0, top), (half, bot), (-half, bot)), g))
    return parts


def _house(rng: np.random.Generator) -> list[_Part]:
    wall = _pick(
        rng, [(235, 220, 180), (245, 245, 240), (240, 210, 120), (170, 200, 230), (190, 80, 60)]
    )
    roof = _pick(rng, [(180, 40, 30), (120, 70, 40), (70, 70, 80), (50, 80, 150)])
    win = _pick(rng, [(170, 220, 255), (255, 230, 120)], 10)
    frame = (250, 250, 250) if sum(wall) < 500 else (90, 70, 60)
    parts = []
    if rng.random() < 0.6:  # chimney, behind the roof
        parts.append(_Part(_rect(0.15, -0.4, 0.26, -0.12), _shade(roof, 0.8)))
    parts.append(_Part(_rect(-0.36, -0.05, 0.36, 0.45), wall))
    parts.append(_Part(_poly((-0.46, -0.03), (0.0, -0.45), (0.46, -0.03)), roof))
    door_x = rng.choice([-0.2, 0.0, 0.2])
    parts.append(_Part(_rect(door_x - 0.07, 0.2, door_x + 0.07, 0.45), _shade(roof, 0.6)))
    for wx in (-0.2, 0.2) if door_x == 0.0 else (-door_x,):
        parts.append(_Part(_rect(wx - 0.08, 0.06, wx + 0.08, 0.22), win))
        parts.append(_Part(_poly((wx, 0.06), (wx, 0.22)), frame, 0.018))
        parts.append(_Part(_poly((wx - 0.08, 0.14), (wx + 0.08, 0.14)), frame, 0.018))
    return parts


def _car(rng: np.random.Generator) -> list[_Part]:
    body = _vivid(rng)
    glass = _pick(rng, [(170, 210, 240), (120, 150, 180)], 12)
    cab_front = rng.uniform(0.22, 0.32)
    parts = [
        _Part(_poly((-0.5, 0.04), (0.42, 0.02), (0.5, 0.1), (0.5, 0.24), (-0.5, 0.24)), body),
        _Part(_poly((-0.34, 0.05), (-0.22, -0.18), (0.14, -0.18), (cab_front, 0.05)), body),
        _Part(_poly((-0.3, 0.03), (-0.2, -0.14), (-0.05, -0.14), (-0.05, 0.03)), glass),
        _Part(_poly((0.0, 0.03), (0.0, -0.14), (0.12, -0.14), (cab_front - 0.04, 0.03)), glass),
        _Part(_rect(0.44, 0.1, 0.5, 0.15), (255, 235, 120)),
        _Part(_rect(-0.5, 0.08, -0.46, 0.14), (200, 20, 20)),
    ]
    for wx in (-0.3, 0.3):
        parts.append(_Part(_ellipse(wx, 0.24, 0.115, 0.115, 18), (25, 25, 25)))
        parts.append(_Part(_ellipse(wx, 0.24, 0.05, 0.05, 12), (180, 180, 185)))
    return parts


def _boat(rng: np.random.Generator) -> list[_Part]:
    hull = _pick(rng, [(140, 80, 40), (200, 40, 40), (245, 245, 245), (40, 60, 140)])
    sail = _pick(rng, [(250, 250, 250), (245, 235, 200), (230, 60, 60), (250, 200, 40)], 8)
    parts = [_Part(_poly((0.0, 0.16), (0.0, -0.5)), (90, 60, 40), 0.025)]
    parts.append(_Part(_poly((0.03, -0.45), (0.03, 0.1), (0.4, 0.1)), sail))
    if rng.random() < 0.6:  # jib
        parts.append(_Part(_poly((-0.03, -0.33), (-0.03, 0.1), (-0.3, 0.1)), _shade(sail, 0.92)))
    parts.append(_Part(_poly((0.0, -0.5), (0.0, -0.42), (-0.12, -0.46)), _vivid(rng)))
    parts.append(_Part(_poly((-0.5, 0.14), (0.5, 0.14), (0.36, 0.34), (-0.36, 0.34)), hull))
    parts.append(
        _Part(_poly((-0.46, 0.2), (0.46, 0.2)), _shade(hull, 1.5 if sum(hull) < 400 else 0.6), 0.03)
    )
    return parts


def _fish(rng: np.random.Generator) -> list[_Part]:
    body = _pick(
        rng, [(255, 130, 20), (250, 210, 30), (60, 120, 230), (220, 50, 60), (150, 80, 200)], 25
    )
    fin = _shade(body, 0.75)
    rx, ry = 0.32, rng.uniform(0.15, 0.2)
    parts = [
        _Part(_poly((-0.2, 0.0), (-0.5, -0.2), (-0.44, 0.0), (-0.5, 0.2)), fin),
        _Part(_poly((-0.1, -ry * 0.8), (0.05, -ry - 0.1), (0.12, -ry * 0.8)), fin),
        _Part(_ellipse(0.05, 0.0, rx, ry, 22), body),
    ]
    if rng.random() < 0.5:  # stripes
        stripe = (250, 250, 250) if rng.random() < 0.5 else _shade(body, 0.55)
        for sx in (-0.1, 0.06):
            yy = ry * np.sqrt(1 - ((sx - 0.05) / rx) ** 2) * 0.92
            parts.append(_Part(_poly((sx, -yy), (sx, yy)), stripe, 0.05))
    parts.append(_Part(_ellipse(0.23, -0.04, 0.05, 0.05, 10), (255, 255, 255)))
    parts.append(_Part(_ellipse(0.245, -0.04, 0.025, 0.025, 8), (10, 10, 10)))
    return parts


def _flower(rng: np.random.Generator) -> list[_Part]:
    petal = _pick(
        rng,
        [
            (230, 40, 60),
            (250, 120, 180),
            (160, 70, 210),
            (255, 220, 40),
            (250, 250, 250),
            (255, 130, 30),
        ],
        20,
    )
    centre = _pick(rng, [(255, 200, 0), (120, 70, 30), (60, 40, 20)])
    green = _hsv(rng, (0.25, 0.38), (0.6, 0.9), (0.4, 0.7))
    hy = -0.22
    parts = [_Part(_poly((0.0, hy), (0.02, 0.15), (0.0, 0.5)), green, 0.04)]
    for side in (-1, 1):
        leaf = _ellipse(side * 0.11, 0.0, 0.11, 0.045, 12)
        leaf = _rotate(leaf, -side * 0.5)
        parts.append(_Part(leaf + np.array([0.0, rng.uniform(0.15, 0.35)]), green))
    n = int(rng.integers(5, 9))
    start = rng.uniform(0, 2 * np.pi)
    pr = rng.uniform(0.12, 0.15)
    for a in start + np.arange(n) * 2 * np.pi / n:
        p = _rotate(_ellipse(pr * 1.1, 0.0, pr, pr * 0.5, 14), a)
        parts.append(_Part(p + np.array([0.0, hy]), petal))
    parts.append(_Part(_ellipse(0.0, hy, 0.085, 0.085, 14), centre))
    return parts


def _ball(rng: np.random.Generator) -> list[_Part]:
    kind = rng.random()
    outline = (30, 30, 30)
    if kind < 0.45:  # beach ball: coloured segments
        cols = [_vivid(rng), (250, 250, 250), _vivid(rng)]
        n = 6
        parts = []
        for i in range(n):
            arc = _ellipse(0, 0, 0.5, 0.5, 8, i * 2 * np.pi / n, (i + 1) * 2 * np.pi / n)
            parts.append(_Part(np.concatenate([[[0.0, 0.0]], arc]), cols[i % 3]))
        parts.append(_Part(_ellipse(0, 0, 0.09, 0.09, 10), (250, 250, 250)))
        return parts
    if kind < 0.75:  # football: white with black pentagons
        parts = [_Part(_ellipse(0, 0, 0.5, 0.5, 28), (245, 245, 245))]
        pent = np.arange(5) * 2 * np.pi / 5 - np.pi / 2
        parts.append(_Part(np.stack([0.13 * np.cos(pent), 0.13 * np.sin(pent)], 1), outline))
        for a in pent + np.pi / 5:
            c = (0.36 * np.cos(a), 0.36 * np.sin(a))
            parts.append(
                _Part(
                    np.stack([c[0] + 0.09 * np.cos(pent + a), c[1] + 0.09 * np.sin(pent + a)], 1),
                    outline,
                )
            )
        return parts
    orange = _pick(rng, [(230, 110, 30), (210, 90, 20)], 15)  # basketball
    return [
        _Part(_ellipse(0, 0, 0.5, 0.5, 28), orange),
        _Part(_poly((-0.5, 0.0), (0.5, 0.0)), outline, 0.035),
        _Part(_poly((0.0, -0.5), (0.0, 0.5)), outline, 0.035),
        _Part(_ellipse(-0.55, 0, 0.3, 0.42, 12, -1.0, 1.0), outline, 0.035),
        _Part(_ellipse(0.55, 0, 0.3, 0.42, 12, np.pi - 1.0, np.pi + 1.0), outline, 0.035),
    ]


def _balloon(rng: np.random.Generator) -> list[_Part]:
    n = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    string = (80, 80, 80)
    parts = []
    centres = [(0.0, -0.15)] if n == 1 else [(-0.17, -0.2), (0.17, -0.2), (0.0, -0.3)][:n]
    scale = 1.0 if n == 1 else 0.7
    for cx, cy in centres:
        col = _vivid(rng)
        rx, ry = 0.26 * scale, 0.33 * scale
        knot = cy + ry
        parts.append(
            _Part(
                _poly((cx, knot), (cx * 0.2 + 0.03 * np.sin(knot * 20), 0.33), (0.0, 0.5)),
                string,
                0.014,
            )
        )
        parts.append(_Part(_ellipse(cx, cy, rx, ry, 22), col))
        parts.append(
            _Part(
                _poly((cx - 0.035, knot + 0.04), (cx + 0.035, knot + 0.04), (cx, knot - 0.01)), col
            )
        )
        hl = _ellipse(cx - rx * 0.4, cy - ry * 0.45, rx * 0.18, ry * 0.22, 10)
        parts.append(_Part(hl, _shade(col, 1.6)))
    return parts


def _cup(rng: np.random.Generator) -> list[_Part]:
    body = _pick(
        rng, [(245, 245, 245), (200, 40, 40), (40, 90, 180), (240, 200, 40), (60, 150, 80)], 15
    )
    parts = []
    if rng.random() < 0.6:  # saucer
        parts.append(_Part(_ellipse(0, 0.34, 0.48, 0.08, 20), _shade(body, 0.85)))
    handle = _ellipse(0.28, 0.0, 0.16, 0.15, 14, -1.4, 1.4)
    parts.append(_Part(handle, body, 0.075))
    parts.append(_Part(_poly((-0.32, -0.3), (0.32, -0.3), (0.24, 0.32), (-0.24, 0.32)), body))
    parts.append(_Part(_ellipse(0, -0.3, 0.32, 0.07, 18), _shade(body, 0.8)))
    parts.append(_Part(_ellipse(0, -0.29, 0.27, 0.05, 16), (90, 50, 25)))
    if rng.random() < 0.35:  # steam
        for sx in (-0.1, 0.1):
            y = np.linspace(-0.38, -0.55, 6)
            parts.append(
                _Part(np.stack([sx + 0.04 * np.sin(y * 30), y], 1), (235, 235, 235), 0.025)
            )
    return parts


def _book(rng: np.random.Generator) -> list[_Part]:
    cover = _pick(
        rng, [(170, 30, 40), (30, 70, 150), (40, 120, 60), (120, 60, 140), (220, 150, 30)], 20
    )
    paper = _pick(rng, [(250, 248, 235), (240, 235, 215)], 6)
    ink = (120, 120, 130)
    if rng.random() < 0.5:  # closed, seen from the front, pages showing at the side
        parts = [
            _Part(_rect(-0.28, -0.44, 0.34, 0.44), paper),
            _Part(_rect(-0.32, -0.46, 0.3, 0.46), cover),
            _Part(_rect(-0.32, -0.46, -0.22, 0.46), _shade(cover, 0.65)),
            _Part(_rect(-0.12, -0.3, 0.22, -0.12), paper),
        ]
        for y in (-0.25, -0.17):
            parts.append(_Part(_poly((-0.08, y), (0.18, y)), ink, 0.02))
        return parts
    parts = [  # open book
        _Part(
            _poly(
                (-0.52, -0.28), (0.0, -0.22), (0.52, -0.28), (0.52, 0.3), (0.0, 0.36), (-0.52, 0.3)
            ),
            cover,
        ),
        _Part(_poly((-0.48, -0.31), (0.0, -0.25), (0.0, 0.3), (-0.48, 0.25)), paper),
        _Part(_poly((0.48, -0.31), (0.0, -0.25), (0.0, 0.3), (0.48, 0.25)), _shade(paper, 0.95)),
        _Part(_poly((0.0, -0.25), (0.0, 0.3)), _shade(cover, 0.7), 0.02),
    ]
    for y in np.linspace(-0.17, 0.15, 6):
        parts.append(_Part(_poly((-0.42, y - 0.01), (-0.06, y + 0.02)), ink, 0.012))
        parts.append(_Part(_poly((0.06, y + 0.02), (0.42, y - 0.01)), ink, 0.012))
    return parts


def _lamp(rng: np.random.Generator) -> list[_Part]:
    shade = _pick(
        rng, [(240, 225, 180), (200, 60, 50), (60, 110, 170), (240, 240, 240), (90, 160, 90)], 15
    )
    metal = _pick(rng, [(60, 60, 60), (180, 150, 60), (200, 200, 205)], 10)
    if rng.random() < 0.6:  # table lamp
        return [
            _Part(_ellipse(0.0, -0.08, 0.22, 0.05, 14), (255, 240, 150)),
            _Part(_rect(-0.035, -0.12, 0.035, 0.4), metal),
            _Part(_poly((-0.22, 0.38), (0.22, 0.38), (0.27, 0.48), (-0.27, 0.48)), metal),
            _Part(_poly((-0.17, -0.46), (0.17, -0.46), (0.33, -0.1), (-0.33, -0.1)), shade),
        ]
    # desk lamp: base, two arms, cone head
    head = _poly((0.0, -0.06), (0.18, -0.3), (0.38, -0.02), (0.3, 0.04))
    return [
        _Part(_ellipse(-0.1, 0.44, 0.28, 0.06, 16), metal),
        _Part(_poly((-0.1, 0.42), (-0.3, -0.1), (0.08, -0.35)), metal, 0.045),
        _Part(_ellipse(-0.3, -0.1, 0.045, 0.045, 10), _shade(metal, 0.7)),
        _Part(_ellipse(0.22, 0.02, 0.09, 0.04, 10), (255, 240, 150)),
        _Part(head, shade),
    ]


def _clock(rng: np.random.Generator) -> list[_Part]:
    frame = _pick(
        rng, [(60, 40, 30), (150, 30, 30), (40, 40, 45), (190, 150, 60), (40, 80, 160)], 12
    )
    face = _pick(rng, [(252, 252, 245), (240, 232, 200)], 5)
    ink = (20, 20, 20)
    parts = []
    if rng.random() < 0.35:  # alarm clock: bells and feet
        for sx in (-1, 1):
            parts.append(_Part(_ellipse(sx * 0.3, -0.4, 0.13, 0.1, 12), frame))
            parts.append(_Part(_poly((sx * 0.25, 0.38), (sx * 0.36, 0.5)), frame, 0.05))
    parts.append(_Part(_ellipse(0, 0, 0.46, 0.46, 28), frame))
    parts.append(_Part(_ellipse(0, 0, 0.38, 0.38, 28), face))
    for k in range(12):
        a = k * np.pi / 6
        r0 = 0.27 if k % 3 == 0 else 0.31
        parts.append(
            _Part(
                _poly((r0 * np.cos(a), r0 * np.sin(a)), (0.35 * np.cos(a), 0.35 * np.sin(a))),
                ink,
                0.03,
            )
        )
    for length, width in ((0.2, 0.05), (0.3, 0.03)):
        a = rng.uniform(0, 2 * np.pi)
        parts.append(_Part(_poly((0.0, 0.0), (length * np.cos(a), length * np.sin(a))), ink, width))
    parts.append(_Part(_ellipse(0, 0, 0.035, 0.035, 8), (200, 30, 30)))
    return parts


_SHAPES: dict[str, Callable[[np.random.Generator], list[_Part]]] = {
    "sun": _sun,
    "moon": _moon,
    "star": _star,
    "cloud": _cloud,
    "tree": _tree,
    "house": _house,
    "car": _car,
    "boat": _boat,
    "fish": _fish,
    "flower": _flower,
    "ball": _ball,
    "balloon": _balloon,
    "cup": _cup,
    "book": _book,
    "lamp": _lamp,
    "clock": _clock,
}


# ---------------------------------------------------------------------------------------------
# layout: what is where, sampled up-front from the per-image RNG


@dataclass(frozen=True)
class _Object:
    cls: int
    shape_seed: int
    cx: float  # centre, unit coordinates
    cy: float
    size: float  # fraction of the image side
    angle: float  # radians
    sx: float  # horizontal scale (negative: mirrored)
    sy: float
    faint: float  # 0: as drawn; > 0: colours blended this much into the background


@dataclass(frozen=True)
class _Distractor:
    kind: str  # "blob", "ellipse", "rect", "scribble"
    seed: int
    cx: float
    cy: float
    size: float
    color: RGB


@dataclass(frozen=True)
class _Background:
    decor: str  # scene whose decorations are drawn (waves, fence, ...), or "plain"
    top: RGB  # sky / wall, top and bottom of the upper region
    mid: RGB
    ground: RGB  # lower region (road, water, grass, floor), top and bottom
    ground_far: RGB
    horizon: float  # y where the lower region starts (1.0: none)
    noise: float  # amplitude of the low-frequency noise
    stripes: tuple[float, float, float]  # amplitude, period (px at 224), angle
    grain: float  # per-pixel noise sigma
    seed: int


@dataclass(frozen=True)
class _Layout:
    scene: str
    background: _Background
    objects: tuple[_Object, ...]
    under: tuple[_Distractor, ...]  # drawn before the objects
    over: tuple[_Distractor, ...]  # drawn on top of them (small, occluding)
    boxes: tuple[tuple[int, float, float, float, float], ...]  # unit coordinates, clipped


def _part_points(parts: list[_Part]) -> tuple[np.ndarray, float]:
    """All points of the parts (for bounding boxes) and the largest line half-width."""
    pts = np.concatenate([p.pts for p in parts])
    pad = max((p.width / 2 for p in parts), default=0.0)
    return pts, pad


def _transform(pts: np.ndarray, obj: _Object) -> np.ndarray:
    """Local shape coordinates -> unit image coordinates. (K, 2) -> (K, 2)"""
    p = pts * (obj.size * obj.sx, obj.size * obj.sy)
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    return np.stack(
        [c * p[:, 0] - s * p[:, 1] + obj.cx, s * p[:, 0] + c * p[:, 1] + obj.cy], axis=1
    )


def _extent(pts: np.ndarray, pad: float, obj: _Object) -> tuple[float, float, float, float]:
    q = _transform(pts, obj)
    m = pad * obj.size
    return (
        float(q[:, 0].min() - m),
        float(q[:, 1].min() - m),
        float(q[:, 0].max() + m),
        float(q[:, 1].max() + m),
    )


def _area(b: tuple[float, float, float, float]) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def _inter(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


_UNIT = (0.0, 0.0, 1.0, 1.0)


def _place(
    rng: np.random.Generator, cls: int, placed: list[tuple[float, float, float, float]]
) -> tuple[_Object, tuple[float, float, float, float]] | None:
    """Sample a pose for one object of ``cls`` that leaves earlier objects mostly visible."""
    name = CLASSES[cls]
    style = _STYLES[name]
    shape_seed = int(rng.integers(2**63))
    pts, pad = _part_points(_SHAPES[name](np.random.default_rng(shape_seed)))
    small = rng.random() < style.p_small
    size = rng.uniform(*(style.small if small else style.size))
    faint = rng.uniform(*style.faint) if rng.random() < style.p_faint else 0.0
    angle = np.deg2rad(rng.uniform(-style.rot, style.rot))
    sx = rng.uniform(0.88, 1.12) * (-1.0 if style.flip and rng.random() < 0.5 else 1.0)
    sy = rng.uniform(0.88, 1.12)
    edge = rng.random() < style.p_edge
    # the box around the centre scales with the size: compute it once for size 1
    unit = _extent(pts, pad, _Object(cls, shape_seed, 0.0, 0.0, 1.0, angle, sx, sy, faint))
    best: tuple[float, _Object, tuple[float, float, float, float]] | None = None
    for attempt in range(30):
        if attempt >= 15:
            size *= 0.93  # crowded: shrink
        x0, y0, x1, y1 = (v * size for v in unit)
        w, h = x1 - x0, y1 - y0
        if edge and attempt < 20:
            vis = rng.uniform(0.55, 0.8)  # fraction of the box left inside the image
            side = int(rng.integers(4))
            if side == 0:
                cx, cy = vis * w - x1, rng.uniform(-y0, 1 - y1)
            elif side == 1:
                cx, cy = 1 - vis * w - x0, rng.uniform(-y0, 1 - y1)
            elif side == 2:
                cx, cy = rng.uniform(-x0, 1 - x1), 1 - vis * h - y0
            else:
                cx, cy = rng.uniform(-x0, 1 - x1), vis * h - y1
        else:
            cx = rng.uniform(-x0, 1 - x1) if 1 - x1 > -x0 else 0.5
            lo, hi = max(style.y[0], -y0), min(style.y[1], 1 - y1)
            if attempt >= 10 or hi <= lo:
                lo, hi = -y0, 1 - y1
            cy = rng.uniform(lo, hi) if hi > lo else 0.5
        obj = _Object(cls, shape_seed, float(cx), float(cy), size, angle, sx, sy, faint)
        box = (x0 + cx, y0 + cy, x1 + cx, y1 + cy)
        if _inter(box, _UNIT) < 0.5 * _area(box):
            continue
        # the new object is drawn on top: it may hide at most 35% of an earlier one's box
        cover = max((_inter(box, b) / max(_area(b), 1e-9) for b in placed), default=0.0)
        if cover <= 0.35:
            return obj, box
        if best is None or cover < best[0]:
            best = (cover, obj, box)
    if best is not None and best[0] <= 0.6:
        return best[1], best[2]
    return None


def _background(rng: np.random.Generator, scene: str) -> _Background:
    def jit(c: RGB, k: int = 20) -> RGB:
        return _jitter(c, rng.integers(-k, k + 1, 3).tolist())

    if rng.random() < 0.75:
        sky_top, sky_mid = jit((70, 140, 220), 30), jit((175, 210, 240), 20)
    else:  # hazy or sunset sky
        sky_top, sky_mid = jit((120, 150, 200), 30), jit((240, 190, 150), 25)
    decor = scene
    if rng.random() < PLAIN_BACKGROUND_P:  # a background that does not tell the scene
        decor = "plain"
        top, mid, ground, far = (_hsv(rng, (0.0, 1.0), (0.1, 0.7), (0.3, 0.95)) for _ in range(4))
        horizon = rng.uniform(0.3, 1.0)
    elif scene == "sky":
        top, mid, ground, far, horizon = sky_top, sky_mid, sky_mid, sky_mid, 1.0
        if rng.random() < 0.3:  # distant hills
            ground, far, horizon = jit((90, 140, 80)), jit((70, 120, 60)), rng.uniform(0.8, 0.92)
    elif scene == "night":
        top, mid = jit((12, 15, 45), 10), jit((45, 55, 100), 20)
        ground, far, horizon = jit((20, 30, 25), 10), jit((10, 15, 15), 8), rng.uniform(0.8, 1.0)
    elif scene == "street":
        top, mid = sky_top, sky_mid
        ground, far, horizon = (
            jit((115, 115, 120), 25),
            jit((80, 80, 85), 20),
            rng.uniform(0.5, 0.62),
        )
    elif scene == "sea":
        top, mid = sky_top, sky_mid
        ground, far, horizon = (
            jit((40, 120, 170), 25),
            jit((15, 60, 120), 20),
            rng.uniform(0.4, 0.52),
        )
    elif scene == "room":
        top = _hsv(rng, (0.0, 1.0), (0.1, 0.4), (0.65, 0.95))
        mid = _shade(top, 0.9)
        ground, far = jit((150, 105, 65), 30), jit((110, 75, 45), 25)
        horizon = rng.uniform(0.62, 0.78)
    else:  # garden
        top, mid = sky_top, sky_mid
        ground, far, horizon = (
            jit((80, 160, 60), 25),
            jit((45, 110, 35), 20),
            rng.uniform(0.38, 0.5),
        )
    stripes = (0.0, 1.0, 0.0)
    if rng.random() < 0.35:
        stripes = (rng.uniform(6, 18), rng.uniform(6, 24), rng.uniform(0, np.pi))
    return _Background(
        decor,
        top,
        mid,
        ground,
        far,
        float(horizon),
        float(rng.uniform(6, 22)),
        stripes,
        float(rng.uniform(3, 12)),
        int(rng.integers(2**63)),
    )


def _distractor(rng: np.random.Generator, small: bool) -> _Distractor:
    kind = ("blob", "blob", "ellipse", "rect", "scribble")[int(rng.integers(5))]
    size = rng.uniform(0.05, 0.11) if small else rng.uniform(0.08, 0.25)
    color = _hsv(rng, (0.0, 1.0), (0.2, 0.9), (0.25, 0.95))
    return _Distractor(
        kind,
        int(rng.integers(2**63)),
        float(rng.uniform(0, 1)),
        float(rng.uniform(0, 1)),
        float(size),
        color,
    )


def _sample_labels(rng: np.random.Generator, spec: SceneSpec, kept: set[str]) -> list[str]:
    probs = {c: p for c, p in spec.probabilities().items() if c in kept}
    names = [c for c in CLASSES if c in probs]  # fixed order: same draws for the same seed
    draws = rng.random(len(names))
    labels = [c for c, u in zip(names, draws, strict=True) if u < probs[c]]
    if not labels:
        w = np.array([probs[c] for c in names])
        labels = [names[int(rng.choice(len(names), p=w / w.sum()))]]
    if len(labels) > MAX_LABELS:
        labels = [labels[i] for i in sorted(rng.choice(len(labels), MAX_LABELS, replace=False))]
    return labels


def _layout(seed: int, split_id: int, index: int, num_classes: int) -> _Layout:
    """The layout of one image, from its own RNG."""
    rng = np.random.default_rng([seed, split_id, index])
    kept = set(CLASSES[:num_classes])
    scenes = [s for s in SCENES.values() if kept & set(s.probabilities())]
    spec = scenes[int(rng.integers(len(scenes)))]
    labels = _sample_labels(rng, spec, kept)
    instances = [CLASSES.index(c) for c in labels]
    for c in labels:
        for _ in range(_STYLES[c].extra):
            if len(instances) < MAX_OBJECTS and rng.random() < 0.35:
                instances.append(CLASSES.index(c))
    background = _background(rng, spec.name)
    # place large classes first, so that small ones are drawn on top of them
    order = sorted(range(len(instances)), key=lambda k: -_STYLES[CLASSES[instances[k]]].size[1])
    objects: list[_Object] = []
    boxes: list[tuple[float, float, float, float]] = []
    for k in order:
        placed = _place(rng, instances[k], boxes)
        if placed is not None:
            objects.append(placed[0])
            boxes.append(placed[1])
    # a label whose every instance failed to fit is dropped (rare): labels follow the boxes
    under = tuple(_distractor(rng, small=False) for _ in range(int(rng.integers(2, 6))))
    over: list[_Distractor] = []
    for _ in range(int(rng.integers(0, 3))):
        d = _distractor(rng, small=True)
        r = d.size / 2
        db = (d.cx - r, d.cy - r, d.cx + r, d.cy + r)
        if all(_inter(db, b) <= 0.25 * _area(b) for b in boxes):
            over.append(d)
    clipped = tuple(
        (o.cls, max(b[0], 0.0), max(b[1], 0.0), min(b[2], 1.0), min(b[3], 1.0))
        for o, b in zip(objects, boxes, strict=True)
    )
    return _Layout(spec.name, background, tuple(objects), under, tuple(over), clipped)


def _layouts(split: str, n: int, seed: int, num_classes: int) -> list[_Layout]:
    return [_layout(seed, SPLIT_IDS[split], i, num_classes) for i in range(n)]


def _targets(layouts: list[_Layout], num_classes: int) -> np.ndarray:
    targets = np.zeros((len(layouts), num_classes), dtype=np.int8)  # (N, C)
    for i, lay in enumerate(layouts):
        for o in lay.objects:
            targets[i, o.cls] = PRESENT
    return targets


def _pixel_boxes(lay: _Layout, image_size: int) -> list[Box]:
    s = float(image_size)
    return [
        (c, round(x0 * s, 2), round(y0 * s, 2), round(x1 * s, 2), round(y1 * s, 2))
        for c, x0, y0, x1, y1 in lay.boxes
    ]


# ---------------------------------------------------------------------------------------------
# rendering


def _lerp(a: RGB, b: RGB, t: np.ndarray) -> np.ndarray:
    """Colours between a and b at fractions t. (K,) -> (K, 3)"""
    return (
        np.array(a, np.float32) + (np.array(b, np.float32) - np.array(a, np.float32)) * t[:, None]
    )


def _draw_background(bg: _Background, size: int, rng: np.random.Generator) -> Image.Image:
    scene = bg.decor
    lo = max(size // 2, 8)  # smooth layers are computed at half resolution, then upsampled
    ys = (np.arange(lo, dtype=np.float32) + 0.5) / lo
    h = bg.horizon
    near, far = (bg.ground_far, bg.ground) if scene == "sea" else (bg.ground, bg.ground_far)
    rows = np.where(
        (ys < h)[:, None],
        _lerp(bg.top, bg.mid, np.clip(ys / max(h, 1e-6), 0, 1)),
        _lerp(near, far, np.clip((ys - h) / max(1 - h, 1e-6), 0, 1)),
    )  # (lo, 3)
    # low-frequency mottling: mostly brightness, a little colour
    coarse = rng.normal(0.0, bg.noise, (6, 6, 1)) + rng.normal(0.0, 0.35 * bg.noise, (6, 6, 3))
    coarse_img = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8))
    img = rows[:, None, :] + (
        np.asarray(coarse_img.resize((lo, lo), Image.Resampling.BILINEAR), np.float32) - 128.0
    )
    amp, period, ang = bg.stripes
    if amp > 0:
        xs = np.arange(lo, dtype=np.float32) * (224.0 / lo)
        phase = (xs[None, :] * np.cos(ang) + xs[:, None] * np.sin(ang)) * (2 * np.pi / period)
        img = img + (amp * np.sign(np.sin(phase)))[:, :, None]  # (lo, lo, 3)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    draw = ImageDraw.Draw(out)
    s = float(size)
    hy = h * s
    if scene == "night":
        for x, y in rng.uniform(0, 1, (int(rng.integers(25, 70)), 2)):
            v = int(rng.integers(150, 256))
            r = max(s / 448, 0.5)
            draw.ellipse((x * s - r, y * h * s - r, x * s + r, y * h * s + r), fill=(v, v, v))
    elif scene == "street":
        for _ in range(int(rng.integers(1, 5))):  # distant flat-roofed blocks
            x0 = rng.uniform(-0.1, 0.9) * s
            w, bh = rng.uniform(0.1, 0.25) * s, rng.uniform(0.15, 0.35) * s
            g = int(rng.integers(90, 170))
            draw.rectangle((x0, hy - bh, x0 + w, hy), fill=(g, g, int(g * 1.05)))
        y = hy + (s - hy) * rng.uniform(0.45, 0.7)
        for x in np.arange(rng.uniform(0, 0.12), 1.0, 0.2) * s:
            draw.rectangle((x, y - s / 120, x + 0.1 * s, y + s / 120), fill=(235, 235, 225))
    elif scene == "sea":
        for _ in range(int(rng.integers(4, 10))):
            y0 = rng.uniform(h, 1.0) * s
            xs = np.linspace(rng.uniform(-0.2, 0.6), rng.uniform(0.5, 1.2), 10) * s
            ys = y0 + np.sin(xs / s * rng.uniform(20, 40)) * s / 90
            draw.line(
                np.stack([xs, ys], 1).ravel().tolist(),
                fill=_shade(bg.ground, 1.3),
                width=max(1, size // 112),
            )
    elif scene == "room":
        if rng.random() < 0.5:  # a picture frame on the wall
            x0, y0 = rng.uniform(0.05, 0.7) * s, rng.uniform(0.05, 0.35) * hy
            w, fh = rng.uniform(0.15, 0.28) * s, rng.uniform(0.12, 0.22) * s
            draw.rectangle((x0, y0, x0 + w, y0 + fh), fill=(70, 50, 30))
            draw.rectangle(
                (x0 + s / 40, y0 + s / 40, x0 + w - s / 40, y0 + fh - s / 40),
                fill=_hsv(rng, (0, 1), (0.2, 0.7), (0.4, 0.9)),
            )
        for x in np.arange(0.0, 1.0, rng.uniform(0.08, 0.16)) * s:  # floor boards
            draw.line(
                (x, hy, x - s * 0.05, s), fill=_shade(bg.ground, 0.75), width=max(1, size // 224)
            )
    elif scene == "garden":
        if rng.random() < 0.4:  # a fence along the horizon
            fc = (240, 240, 235) if rng.random() < 0.5 else (140, 95, 55)
            for x in np.arange(0.0, 1.0, 0.07) * s:
                draw.rectangle((x, hy - 0.12 * s, x + 0.035 * s, hy + 0.02 * s), fill=fc)
        for _ in range(int(rng.integers(20, 50))):
            x, y = rng.uniform(0, 1) * s, rng.uniform(h, 1.0) * s
            draw.line(
                (x, y, x + rng.uniform(-0.015, 0.015) * s, y - rng.uniform(0.02, 0.05) * s),
                fill=_shade(bg.ground, 0.7),
                width=max(1, size // 224),
            )
    return out


def _draw_distractor(draw: ImageDraw.ImageDraw, d: _Distractor, size: int) -> None:
    rng = np.random.default_rng(d.seed)
    s = float(size)
    r = d.size / 2
    if d.kind == "blob":
        n = int(rng.integers(5, 10))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.4, 1.0, n)
        pts = np.stack([d.cx + rad * np.cos(t), d.cy + rad * np.sin(t)], 1) * s
        draw.polygon(pts.ravel().tolist(), fill=d.color)
    elif d.kind == "ellipse":
        ry = r * rng.uniform(0.3, 0.7)
        pts = _rotate(_ellipse(0, 0, r, ry, 16), rng.uniform(0, np.pi)) + np.array([d.cx, d.cy])
        draw.polygon((pts * s).ravel().tolist(), fill=d.color)
    elif d.kind == "rect":
        pts = _rotate(_rect(-r, -r * 0.4, r, r * 0.4), rng.uniform(0, np.pi)) + np.array(
            [d.cx, d.cy]
        )
        draw.polygon((pts * s).ravel().tolist(), fill=d.color)
    else:
        pts = (np.array([d.cx, d.cy]) + np.cumsum(rng.normal(0, r / 2, (6, 2)), axis=0)) * s
        draw.line(pts.ravel().tolist(), fill=d.color, width=max(1, int(size / 100)), joint="curve")


def _draw_object(draw: ImageDraw.ImageDraw, img: Image.Image, obj: _Object, size: int) -> None:
    parts = _SHAPES[CLASSES[obj.cls]](np.random.default_rng(obj.shape_seed))
    s = float(size)
    back: RGB | None = None
    if obj.faint > 0:  # blend into the background colour at the object's centre
        x = min(max(int(obj.cx * s), 0), size - 1)
        y = min(max(int(obj.cy * s), 0), size - 1)
        r, g, b = np.asarray(img)[y, x].tolist()
        back = (r, g, b)
    for part in parts:
        color = part.color if back is None else _blend(part.color, back, obj.faint)
        xy = (_transform(part.pts, obj) * s).ravel().tolist()
        if part.width > 0:
            draw.line(xy, fill=color, width=max(1, round(part.width * obj.size * s)), joint="curve")
        else:
            draw.polygon(xy, fill=color)


def _blend(a: RGB, b: RGB, t: float) -> RGB:
    return (
        int((1 - t) * a[0] + t * b[0]),
        int((1 - t) * a[1] + t * b[1]),
        int((1 - t) * a[2] + t * b[2]),
    )


def render(layout: _Layout, image_size: int) -> Image.Image:
    """The pixels of one image; the randomness of textures and grain comes from the layout's seed."""
    rng = np.random.default_rng(layout.background.seed)
    img = _draw_background(layout.background, image_size, rng)
    draw = ImageDraw.Draw(img)
    for d in layout.under:
        _draw_distractor(draw, d, image_size)
    for obj in layout.objects:
        _draw_object(draw, img, obj, image_size)
    for d in layout.over:
        _draw_distractor(draw, d, image_size)
    arr = np.asarray(img, dtype=np.int16)
    g = int(layout.background.grain)
    grain = rng.integers(-g, g + 1, (*arr.shape[:2], 1), dtype=np.int16)  # sensor-like grain
    return Image.fromarray(np.clip(arr + grain, 0, 255).astype(np.uint8))


class _Renderer:
    """``loader(i)`` of a synthetic split (a picklable object, so DataLoader workers can use it)."""

    def __init__(self, layouts: list[_Layout], image_size: int) -> None:
        self.layouts = layouts
        self.image_size = image_size

    def __call__(self, index: int) -> Image.Image:
        if not 0 <= index < len(self.layouts):
            raise IndexError(
                f"synthetic: image index {index} out of range [0, {len(self.layouts)})"
            )
        return render(self.layouts[index], self.image_size)


# ---------------------------------------------------------------------------------------------
# public API


def _check(split: str, n: int, image_size: int, num_classes: int | None) -> int:
    if split not in SPLIT_IDS:
        raise ValueError(
            f"synthetic: unknown split {split!r}; expected one of {', '.join(SPLIT_IDS)}"
        )
    if n < 0:
        raise ValueError(f"synthetic: the {split} split needs a size >= 0, got {n}")
    if image_size < 16:
        raise ValueError(f"synthetic: image_size must be >= 16 pixels, got {image_size}")
    k = len(CLASSES) if num_classes is None else num_classes
    if not 1 <= k <= len(CLASSES):
        raise ValueError(
            f"synthetic: num_classes must be in [1, {len(CLASSES)}] (or None for all), got {num_classes}"
        )
    return k


def generate(
    split: str, n: int, image_size: int = 224, seed: int = 0, num_classes: int | None = None
) -> tuple[np.ndarray, list[list[Box]], list[str]]:
    """Labels of ``n`` images without rendering them: (targets (n, C) int8, boxes, scene names).

    Image ``i`` is the same whatever ``n``: the first 10 of 1000 images are the 10 of 10.
    """
    k = _check(split, n, image_size, num_classes)
    layouts = _layouts(split, n, seed, k)
    return (
        _targets(layouts, k),
        [_pixel_boxes(lay, image_size) for lay in layouts],
        [lay.scene for lay in layouts],
    )


@register_dataset("synthetic")
def load_synthetic(
    root: Path | None,
    split: str,
    *,
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 500,
    image_size: int = 224,
    seed: int = 0,
    num_classes: int | None = None,
) -> Split:
    """One split of the synthetic scenes; ``root`` is ignored (nothing is read or downloaded).

    ``num_classes`` keeps the first classes of ``CLASSES`` (objects of the others are not drawn).
    """
    del root
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    n = sizes.get(split, 0)
    k = _check(split, n, image_size, num_classes)
    layouts = _layouts(split, n, seed, k)
    params: dict[str, Any] = {
        "generator": "ssgrl.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "num_classes": k,
        "num_train": num_train,
        "num_val": num_val,
        "num_test": num_test,
    }
    return Split(
        name=f"synthetic/{split}",
        classes=CLASSES[:k],
        ids=[f"synthetic/{split}/{i:06d}" for i in range(n)],
        targets=_targets(layouts, k),
        loader=_Renderer(layouts, image_size),
        boxes=[_pixel_boxes(lay, image_size) for lay in layouts],
        meta={"scenes": [lay.scene for lay in layouts], "params": params},
    )


def save_split_as_manifest(split: Split, out_dir: Path) -> Path:
    """Write ``split`` as PNG files plus ``manifest.csv`` (``image,labels``; labels joined by "|",
    paths relative to the manifest) and ``classes.txt``; return the manifest's path.

    Only present labels are written: an ignored (-1) target becomes absent.
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in split.classes), encoding="utf-8")
    manifest = out_dir / "manifest.csv"
    used: set[str] = set()
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels"])
        for i, image_id in enumerate(split.ids):
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("_") or "image"
            if stem in used:
                stem = f"{stem}_{i:06d}"
            used.add(stem)
            rel = f"images/{stem}.png"
            split.load_image(i).save(out_dir / rel, format="PNG")
            labels = [
                c for c, t in zip(split.classes, split.targets[i], strict=True) if t == PRESENT
            ]
            writer.writerow([rel, "|".join(labels)])
    return manifest
