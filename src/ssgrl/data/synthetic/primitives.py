"""Geometry and colour primitives shared by the painters, the layout and the renderer: point lists
of ellipses, arcs, rectangles and polygons in local coordinates, rotation, and colours drawn from
hue/saturation/value ranges or picked from palettes, darkened, lightened or jittered. Pure
functions; those that draw take the caller's RNG, so the order of draws is the caller's.
"""

from __future__ import annotations

import colorsys

import numpy as np

from ssgrl.data.synthetic.specs import RGB


def ellipse(
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


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def poly(*xy: tuple[float, float]) -> np.ndarray:
    return np.array(xy, dtype=float)


def rotate(pts: np.ndarray, angle: float, about: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    p = pts - about
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + about


def hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> RGB:
    """A colour with hue/saturation/value drawn from the ranges (hue in turns, may exceed 1)."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(*h) % 1.0, rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def vivid(rng: np.random.Generator) -> RGB:
    return hsv(rng, (0.0, 1.0), (0.6, 1.0), (0.65, 1.0))


def shade(c: RGB, f: float) -> RGB:
    """``c`` darkened (f < 1) or lightened towards white (f > 1)."""
    if f <= 1.0:
        return (int(c[0] * f), int(c[1] * f), int(c[2] * f))
    t = min(f - 1.0, 1.0)
    return (
        int(c[0] + (255 - c[0]) * t),
        int(c[1] + (255 - c[1]) * t),
        int(c[2] + (255 - c[2]) * t),
    )


def pick(rng: np.random.Generator, options: list[RGB], jitter: int = 18) -> RGB:
    """One of ``options``, each channel moved by up to ``jitter``."""
    base = options[int(rng.integers(len(options)))]
    return jitter_color(base, rng.integers(-jitter, jitter + 1, 3).tolist())


def jitter_color(c: RGB, d: list[int]) -> RGB:
    return (
        min(max(c[0] + d[0], 0), 255),
        min(max(c[1] + d[1], 0), 255),
        min(max(c[2] + d[2], 0), 255),
    )
