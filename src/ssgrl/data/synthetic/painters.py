"""The per-class shape painters: each class (sun with rays, car with wheels and windows, clock with
ticks and hands, ...) is a function of its own RNG returning a list of ``Part``s, filled polygons
or polylines in local coordinates (the object spans about [-0.5, 0.5] on its longer side, y points
down), drawn in order. ``SHAPES`` maps each class name to its painter; the layout uses the parts
for bounding boxes, the renderer draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ssgrl.data.synthetic.primitives import ellipse, hsv, pick, poly, rect, rotate, shade, vivid
from ssgrl.data.synthetic.specs import RGB


@dataclass(frozen=True)
class Part:
    pts: np.ndarray  # (K, 2) local coordinates
    color: RGB
    width: float = 0.0  # 0: filled polygon; > 0: polyline of this width (local units)


def _sun(rng: np.random.Generator) -> list[Part]:
    body = pick(rng, [(255, 214, 0), (255, 170, 20), (255, 235, 90), (250, 135, 30)])
    ray = shade(body, float(rng.uniform(0.85, 1.15)))
    r0 = rng.uniform(0.24, 0.3)
    n = int(rng.integers(8, 15))
    start = rng.uniform(0, 2 * np.pi)
    half = np.pi / n * rng.uniform(0.35, 0.55)
    parts = []
    for a in start + np.arange(n) * 2 * np.pi / n:
        tip = rng.uniform(0.42, 0.5)
        pts = poly(
            (r0 * 1.05 * np.cos(a - half), r0 * 1.05 * np.sin(a - half)),
            (tip * np.cos(a), tip * np.sin(a)),
            (r0 * 1.05 * np.cos(a + half), r0 * 1.05 * np.sin(a + half)),
        )
        parts.append(Part(pts, ray))
    parts.append(Part(ellipse(0, 0, r0, r0, 28), body))
    if rng.random() < 0.5:  # a lighter core
        parts.append(Part(ellipse(0, 0, r0 * 0.6, r0 * 0.6, 20), shade(body, 1.35)))
    return parts


def _moon(rng: np.random.Generator) -> list[Part]:
    color = pick(rng, [(245, 240, 200), (232, 232, 232), (255, 248, 170), (250, 225, 150)])
    r = 0.5
    d = r * rng.uniform(0.45, 0.8)  # offset of the biting circle
    h = np.sqrt(r * r - d * d / 4)
    phi1 = np.arctan2(h, d / 2)  # intersection angle on the moon's circle
    phi2 = np.arctan2(h, -d / 2)  # and on the biting circle
    outer = ellipse(0, 0, r, r, 24, phi1, 2 * np.pi - phi1)
    inner = ellipse(d, 0, r, r, 18, 2 * np.pi - phi2, phi2)
    parts = [Part(np.concatenate([outer, inner]), color)]
    if rng.random() < 0.5:  # craters on the lit part
        dark = shade(color, 0.8)
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(2.4, 3.9)
            rr = rng.uniform(0.25, 0.38)
            parts.append(Part(ellipse(rr * np.cos(a), rr * np.sin(a), 0.05, 0.05, 10), dark))
    return parts


def _star(rng: np.random.Generator) -> list[Part]:
    color = pick(rng, [(255, 230, 40), (255, 250, 210), (255, 200, 60), (255, 255, 255)])
    inner = 0.5 * rng.uniform(0.36, 0.46)
    a = -np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, 0.5, inner)
    parts = [Part(np.stack([rad * np.cos(a), rad * np.sin(a)], axis=1), color)]
    if rng.random() < 0.4:
        parts.append(Part(ellipse(0, 0, inner * 0.6, inner * 0.6, 10), shade(color, 1.5)))
    return parts


def _cloud(rng: np.random.Generator) -> list[Part]:
    color = pick(rng, [(250, 250, 250), (235, 238, 242), (210, 214, 222), (170, 175, 185)], 8)
    shadow = shade(color, 0.85)
    n = int(rng.integers(3, 6))
    xs = np.linspace(-0.28, 0.28, n) + rng.uniform(-0.03, 0.03, n)
    rs = 0.13 + 0.1 * np.sin(np.linspace(0.3, np.pi - 0.3, n)) + rng.uniform(-0.02, 0.03, n)
    shapes = [rect(-0.36, -0.02, 0.36, 0.14)]
    shapes += [ellipse(-0.36, 0.06, 0.08, 0.08, 12), ellipse(0.36, 0.06, 0.08, 0.08, 12)]
    shapes += [ellipse(x, 0.02 - 0.5 * r, r, r, 18) for x, r in zip(xs, rs, strict=True)]
    off = np.array([0.02, 0.035])
    return [Part(p + off, shadow) for p in shapes] + [Part(p, color) for p in shapes]


def _tree(rng: np.random.Generator) -> list[Part]:
    trunk = pick(rng, [(110, 70, 35), (90, 60, 40), (130, 85, 45)])
    green = hsv(rng, (0.22, 0.4), (0.55, 0.9), (0.35, 0.7))
    if rng.random() < 0.5:  # round crown
        parts = [Part(rect(-0.06, -0.05, 0.06, 0.5), trunk)]
        for cx, cy, r in (
            (-0.17, -0.12, 0.2),
            (0.17, -0.12, 0.2),
            (0.0, -0.28, 0.22),
            (0.0, -0.08, 0.2),
        ):
            g = shade(green, float(rng.uniform(0.85, 1.15)))
            parts.append(Part(ellipse(cx, cy, r, r * rng.uniform(0.9, 1.1), 18), g))
        if rng.random() < 0.35:  # fruit
            fruit = pick(rng, [(220, 30, 30), (255, 150, 0)])
            for _ in range(int(rng.integers(3, 7))):
                fx, fy = rng.uniform(-0.25, 0.25), rng.uniform(-0.35, 0.0)
                parts.append(Part(ellipse(fx, fy, 0.03, 0.03, 8), fruit))
        return parts
    parts = [Part(rect(-0.05, 0.3, 0.05, 0.5), trunk)]  # conifer: three tiers
    for i, (top, bot, half) in enumerate(
        ((-0.5, -0.15, 0.2), (-0.33, 0.08, 0.27), (-0.15, 0.32, 0.34))
    ):
        g = shade(green, 0.85 + 0.1 * i)
        parts.append(Part(poly((0, top), (half, bot), (-half, bot)), g))
    return parts


def _house(rng: np.random.Generator) -> list[Part]:
    wall = pick(
        rng, [(235, 220, 180), (245, 245, 240), (240, 210, 120), (170, 200, 230), (190, 80, 60)]
    )
    roof = pick(rng, [(180, 40, 30), (120, 70, 40), (70, 70, 80), (50, 80, 150)])
    win = pick(rng, [(170, 220, 255), (255, 230, 120)], 10)
    frame = (250, 250, 250) if sum(wall) < 500 else (90, 70, 60)
    parts = []
    if rng.random() < 0.6:  # chimney, behind the roof
        parts.append(Part(rect(0.15, -0.4, 0.26, -0.12), shade(roof, 0.8)))
    parts.append(Part(rect(-0.36, -0.05, 0.36, 0.45), wall))
    parts.append(Part(poly((-0.46, -0.03), (0.0, -0.45), (0.46, -0.03)), roof))
    door_x = rng.choice([-0.2, 0.0, 0.2])
    parts.append(Part(rect(door_x - 0.07, 0.2, door_x + 0.07, 0.45), shade(roof, 0.6)))
    for wx in (-0.2, 0.2) if door_x == 0.0 else (-door_x,):
        parts.append(Part(rect(wx - 0.08, 0.06, wx + 0.08, 0.22), win))
        parts.append(Part(poly((wx, 0.06), (wx, 0.22)), frame, 0.018))
        parts.append(Part(poly((wx - 0.08, 0.14), (wx + 0.08, 0.14)), frame, 0.018))
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    body = vivid(rng)
    glass = pick(rng, [(170, 210, 240), (120, 150, 180)], 12)
    cab_front = rng.uniform(0.22, 0.32)
    parts = [
        Part(poly((-0.5, 0.04), (0.42, 0.02), (0.5, 0.1), (0.5, 0.24), (-0.5, 0.24)), body),
        Part(poly((-0.34, 0.05), (-0.22, -0.18), (0.14, -0.18), (cab_front, 0.05)), body),
        Part(poly((-0.3, 0.03), (-0.2, -0.14), (-0.05, -0.14), (-0.05, 0.03)), glass),
        Part(poly((0.0, 0.03), (0.0, -0.14), (0.12, -0.14), (cab_front - 0.04, 0.03)), glass),
        Part(rect(0.44, 0.1, 0.5, 0.15), (255, 235, 120)),
        Part(rect(-0.5, 0.08, -0.46, 0.14), (200, 20, 20)),
    ]
    for wx in (-0.3, 0.3):
        parts.append(Part(ellipse(wx, 0.24, 0.115, 0.115, 18), (25, 25, 25)))
        parts.append(Part(ellipse(wx, 0.24, 0.05, 0.05, 12), (180, 180, 185)))
    return parts


def _boat(rng: np.random.Generator) -> list[Part]:
    hull = pick(rng, [(140, 80, 40), (200, 40, 40), (245, 245, 245), (40, 60, 140)])
    sail = pick(rng, [(250, 250, 250), (245, 235, 200), (230, 60, 60), (250, 200, 40)], 8)
    parts = [Part(poly((0.0, 0.16), (0.0, -0.5)), (90, 60, 40), 0.025)]
    parts.append(Part(poly((0.03, -0.45), (0.03, 0.1), (0.4, 0.1)), sail))
    if rng.random() < 0.6:  # jib
        parts.append(Part(poly((-0.03, -0.33), (-0.03, 0.1), (-0.3, 0.1)), shade(sail, 0.92)))
    parts.append(Part(poly((0.0, -0.5), (0.0, -0.42), (-0.12, -0.46)), vivid(rng)))
    parts.append(Part(poly((-0.5, 0.14), (0.5, 0.14), (0.36, 0.34), (-0.36, 0.34)), hull))
    parts.append(
        Part(poly((-0.46, 0.2), (0.46, 0.2)), shade(hull, 1.5 if sum(hull) < 400 else 0.6), 0.03)
    )
    return parts


def _fish(rng: np.random.Generator) -> list[Part]:
    body = pick(
        rng, [(255, 130, 20), (250, 210, 30), (60, 120, 230), (220, 50, 60), (150, 80, 200)], 25
    )
    fin = shade(body, 0.75)
    rx, ry = 0.32, rng.uniform(0.15, 0.2)
    parts = [
        Part(poly((-0.2, 0.0), (-0.5, -0.2), (-0.44, 0.0), (-0.5, 0.2)), fin),
        Part(poly((-0.1, -ry * 0.8), (0.05, -ry - 0.1), (0.12, -ry * 0.8)), fin),
        Part(ellipse(0.05, 0.0, rx, ry, 22), body),
    ]
    if rng.random() < 0.5:  # stripes
        stripe = (250, 250, 250) if rng.random() < 0.5 else shade(body, 0.55)
        for sx in (-0.1, 0.06):
            yy = ry * np.sqrt(1 - ((sx - 0.05) / rx) ** 2) * 0.92
            parts.append(Part(poly((sx, -yy), (sx, yy)), stripe, 0.05))
    parts.append(Part(ellipse(0.23, -0.04, 0.05, 0.05, 10), (255, 255, 255)))
    parts.append(Part(ellipse(0.245, -0.04, 0.025, 0.025, 8), (10, 10, 10)))
    return parts


def _flower(rng: np.random.Generator) -> list[Part]:
    petal = pick(
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
    centre = pick(rng, [(255, 200, 0), (120, 70, 30), (60, 40, 20)])
    green = hsv(rng, (0.25, 0.38), (0.6, 0.9), (0.4, 0.7))
    hy = -0.22
    parts = [Part(poly((0.0, hy), (0.02, 0.15), (0.0, 0.5)), green, 0.04)]
    for side in (-1, 1):
        leaf = ellipse(side * 0.11, 0.0, 0.11, 0.045, 12)
        leaf = rotate(leaf, -side * 0.5)
        parts.append(Part(leaf + np.array([0.0, rng.uniform(0.15, 0.35)]), green))
    n = int(rng.integers(5, 9))
    start = rng.uniform(0, 2 * np.pi)
    pr = rng.uniform(0.12, 0.15)
    for a in start + np.arange(n) * 2 * np.pi / n:
        p = rotate(ellipse(pr * 1.1, 0.0, pr, pr * 0.5, 14), a)
        parts.append(Part(p + np.array([0.0, hy]), petal))
    parts.append(Part(ellipse(0.0, hy, 0.085, 0.085, 14), centre))
    return parts


def _ball(rng: np.random.Generator) -> list[Part]:
    kind = rng.random()
    outline = (30, 30, 30)
    if kind < 0.45:  # beach ball: coloured segments
        cols = [vivid(rng), (250, 250, 250), vivid(rng)]
        n = 6
        parts = []
        for i in range(n):
            arc = ellipse(0, 0, 0.5, 0.5, 8, i * 2 * np.pi / n, (i + 1) * 2 * np.pi / n)
            parts.append(Part(np.concatenate([[[0.0, 0.0]], arc]), cols[i % 3]))
        parts.append(Part(ellipse(0, 0, 0.09, 0.09, 10), (250, 250, 250)))
        return parts
    if kind < 0.75:  # football: white with black pentagons
        parts = [Part(ellipse(0, 0, 0.5, 0.5, 28), (245, 245, 245))]
        pent = np.arange(5) * 2 * np.pi / 5 - np.pi / 2
        parts.append(Part(np.stack([0.13 * np.cos(pent), 0.13 * np.sin(pent)], 1), outline))
        for a in pent + np.pi / 5:
            c = (0.36 * np.cos(a), 0.36 * np.sin(a))
            parts.append(
                Part(
                    np.stack([c[0] + 0.09 * np.cos(pent + a), c[1] + 0.09 * np.sin(pent + a)], 1),
                    outline,
                )
            )
        return parts
    orange = pick(rng, [(230, 110, 30), (210, 90, 20)], 15)  # basketball
    return [
        Part(ellipse(0, 0, 0.5, 0.5, 28), orange),
        Part(poly((-0.5, 0.0), (0.5, 0.0)), outline, 0.035),
        Part(poly((0.0, -0.5), (0.0, 0.5)), outline, 0.035),
        Part(ellipse(-0.55, 0, 0.3, 0.42, 12, -1.0, 1.0), outline, 0.035),
        Part(ellipse(0.55, 0, 0.3, 0.42, 12, np.pi - 1.0, np.pi + 1.0), outline, 0.035),
    ]


def _balloon(rng: np.random.Generator) -> list[Part]:
    n = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    string = (80, 80, 80)
    parts = []
    centres = [(0.0, -0.15)] if n == 1 else [(-0.17, -0.2), (0.17, -0.2), (0.0, -0.3)][:n]
    scale = 1.0 if n == 1 else 0.7
    for cx, cy in centres:
        col = vivid(rng)
        rx, ry = 0.26 * scale, 0.33 * scale
        knot = cy + ry
        parts.append(
            Part(
                poly((cx, knot), (cx * 0.2 + 0.03 * np.sin(knot * 20), 0.33), (0.0, 0.5)),
                string,
                0.014,
            )
        )
        parts.append(Part(ellipse(cx, cy, rx, ry, 22), col))
        parts.append(
            Part(poly((cx - 0.035, knot + 0.04), (cx + 0.035, knot + 0.04), (cx, knot - 0.01)), col)
        )
        hl = ellipse(cx - rx * 0.4, cy - ry * 0.45, rx * 0.18, ry * 0.22, 10)
        parts.append(Part(hl, shade(col, 1.6)))
    return parts


def _cup(rng: np.random.Generator) -> list[Part]:
    body = pick(
        rng, [(245, 245, 245), (200, 40, 40), (40, 90, 180), (240, 200, 40), (60, 150, 80)], 15
    )
    parts = []
    if rng.random() < 0.6:  # saucer
        parts.append(Part(ellipse(0, 0.34, 0.48, 0.08, 20), shade(body, 0.85)))
    handle = ellipse(0.28, 0.0, 0.16, 0.15, 14, -1.4, 1.4)
    parts.append(Part(handle, body, 0.075))
    parts.append(Part(poly((-0.32, -0.3), (0.32, -0.3), (0.24, 0.32), (-0.24, 0.32)), body))
    parts.append(Part(ellipse(0, -0.3, 0.32, 0.07, 18), shade(body, 0.8)))
    parts.append(Part(ellipse(0, -0.29, 0.27, 0.05, 16), (90, 50, 25)))
    if rng.random() < 0.35:  # steam
        for sx in (-0.1, 0.1):
            y = np.linspace(-0.38, -0.55, 6)
            parts.append(Part(np.stack([sx + 0.04 * np.sin(y * 30), y], 1), (235, 235, 235), 0.025))
    return parts


def _book(rng: np.random.Generator) -> list[Part]:
    cover = pick(
        rng, [(170, 30, 40), (30, 70, 150), (40, 120, 60), (120, 60, 140), (220, 150, 30)], 20
    )
    paper = pick(rng, [(250, 248, 235), (240, 235, 215)], 6)
    ink = (120, 120, 130)
    if rng.random() < 0.5:  # closed, seen from the front, pages showing at the side
        parts = [
            Part(rect(-0.28, -0.44, 0.34, 0.44), paper),
            Part(rect(-0.32, -0.46, 0.3, 0.46), cover),
            Part(rect(-0.32, -0.46, -0.22, 0.46), shade(cover, 0.65)),
            Part(rect(-0.12, -0.3, 0.22, -0.12), paper),
        ]
        for y in (-0.25, -0.17):
            parts.append(Part(poly((-0.08, y), (0.18, y)), ink, 0.02))
        return parts
    parts = [  # open book
        Part(
            poly(
                (-0.52, -0.28), (0.0, -0.22), (0.52, -0.28), (0.52, 0.3), (0.0, 0.36), (-0.52, 0.3)
            ),
            cover,
        ),
        Part(poly((-0.48, -0.31), (0.0, -0.25), (0.0, 0.3), (-0.48, 0.25)), paper),
        Part(poly((0.48, -0.31), (0.0, -0.25), (0.0, 0.3), (0.48, 0.25)), shade(paper, 0.95)),
        Part(poly((0.0, -0.25), (0.0, 0.3)), shade(cover, 0.7), 0.02),
    ]
    for y in np.linspace(-0.17, 0.15, 6):
        parts.append(Part(poly((-0.42, y - 0.01), (-0.06, y + 0.02)), ink, 0.012))
        parts.append(Part(poly((0.06, y + 0.02), (0.42, y - 0.01)), ink, 0.012))
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    hood = pick(
        rng, [(240, 225, 180), (200, 60, 50), (60, 110, 170), (240, 240, 240), (90, 160, 90)], 15
    )
    metal = pick(rng, [(60, 60, 60), (180, 150, 60), (200, 200, 205)], 10)
    if rng.random() < 0.6:  # table lamp
        return [
            Part(ellipse(0.0, -0.08, 0.22, 0.05, 14), (255, 240, 150)),
            Part(rect(-0.035, -0.12, 0.035, 0.4), metal),
            Part(poly((-0.22, 0.38), (0.22, 0.38), (0.27, 0.48), (-0.27, 0.48)), metal),
            Part(poly((-0.17, -0.46), (0.17, -0.46), (0.33, -0.1), (-0.33, -0.1)), hood),
        ]
    # desk lamp: base, two arms, cone head
    head = poly((0.0, -0.06), (0.18, -0.3), (0.38, -0.02), (0.3, 0.04))
    return [
        Part(ellipse(-0.1, 0.44, 0.28, 0.06, 16), metal),
        Part(poly((-0.1, 0.42), (-0.3, -0.1), (0.08, -0.35)), metal, 0.045),
        Part(ellipse(-0.3, -0.1, 0.045, 0.045, 10), shade(metal, 0.7)),
        Part(ellipse(0.22, 0.02, 0.09, 0.04, 10), (255, 240, 150)),
        Part(head, hood),
    ]


def _clock(rng: np.random.Generator) -> list[Part]:
    frame = pick(
        rng, [(60, 40, 30), (150, 30, 30), (40, 40, 45), (190, 150, 60), (40, 80, 160)], 12
    )
    face = pick(rng, [(252, 252, 245), (240, 232, 200)], 5)
    ink = (20, 20, 20)
    parts = []
    if rng.random() < 0.35:  # alarm clock: bells and feet
        for sx in (-1, 1):
            parts.append(Part(ellipse(sx * 0.3, -0.4, 0.13, 0.1, 12), frame))
            parts.append(Part(poly((sx * 0.25, 0.38), (sx * 0.36, 0.5)), frame, 0.05))
    parts.append(Part(ellipse(0, 0, 0.46, 0.46, 28), frame))
    parts.append(Part(ellipse(0, 0, 0.38, 0.38, 28), face))
    for k in range(12):
        a = k * np.pi / 6
        r0 = 0.27 if k % 3 == 0 else 0.31
        parts.append(
            Part(
                poly((r0 * np.cos(a), r0 * np.sin(a)), (0.35 * np.cos(a), 0.35 * np.sin(a))),
                ink,
                0.03,
            )
        )
    for length, width in ((0.2, 0.05), (0.3, 0.03)):
        a = rng.uniform(0, 2 * np.pi)
        parts.append(Part(poly((0.0, 0.0), (length * np.cos(a), length * np.sin(a))), ink, width))
    parts.append(Part(ellipse(0, 0, 0.035, 0.035, 8), (200, 30, 30)))
    return parts


SHAPES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
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
