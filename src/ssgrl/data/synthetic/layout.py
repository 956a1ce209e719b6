"""Layouts: what is where in one image, sampled up-front from the image's own RNG
``np.random.default_rng([seed, split_id, index])``: the scene, its labels, one pose per object
instance placed so that earlier objects stay mostly visible, the background's parameters and the
distractor blobs under and over the objects. Everything is in unit coordinates, so the image size
only scales the drawing; ``layout_targets`` and ``pixel_boxes`` turn layouts into the split's
targets and boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssgrl.data.base import PRESENT
from ssgrl.data.synthetic.painters import SHAPES, Part
from ssgrl.data.synthetic.primitives import hsv, jitter_color, shade
from ssgrl.data.synthetic.specs import (
    CLASSES,
    MAX_LABELS,
    MAX_OBJECTS,
    PLAIN_BACKGROUND_P,
    RGB,
    SCENES,
    SPLIT_IDS,
    STYLES,
    Box,
    SceneSpec,
)


@dataclass(frozen=True)
class Object:
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
class Distractor:
    kind: str  # "blob", "ellipse", "rect", "scribble"
    seed: int
    cx: float
    cy: float
    size: float
    color: RGB


@dataclass(frozen=True)
class Background:
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
class Layout:
    scene: str
    background: Background
    objects: tuple[Object, ...]
    under: tuple[Distractor, ...]  # drawn before the objects
    over: tuple[Distractor, ...]  # drawn on top of them (small, occluding)
    boxes: tuple[tuple[int, float, float, float, float], ...]  # unit coordinates, clipped


def _part_points(parts: list[Part]) -> tuple[np.ndarray, float]:
    """All points of the parts (for bounding boxes) and the largest line half-width."""
    pts = np.concatenate([p.pts for p in parts])
    pad = max((p.width / 2 for p in parts), default=0.0)
    return pts, pad


def transform(pts: np.ndarray, obj: Object) -> np.ndarray:
    """Local shape coordinates -> unit image coordinates. (K, 2) -> (K, 2)"""
    p = pts * (obj.size * obj.sx, obj.size * obj.sy)
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    return np.stack(
        [c * p[:, 0] - s * p[:, 1] + obj.cx, s * p[:, 0] + c * p[:, 1] + obj.cy], axis=1
    )


def _extent(pts: np.ndarray, pad: float, obj: Object) -> tuple[float, float, float, float]:
    q = transform(pts, obj)
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
) -> tuple[Object, tuple[float, float, float, float]] | None:
    """Sample a pose for one object of ``cls`` that leaves earlier objects mostly visible."""
    name = CLASSES[cls]
    style = STYLES[name]
    shape_seed = int(rng.integers(2**63))
    pts, pad = _part_points(SHAPES[name](np.random.default_rng(shape_seed)))
    small = rng.random() < style.p_small
    size = rng.uniform(*(style.small if small else style.size))
    faint = rng.uniform(*style.faint) if rng.random() < style.p_faint else 0.0
    angle = np.deg2rad(rng.uniform(-style.rot, style.rot))
    sx = rng.uniform(0.88, 1.12) * (-1.0 if style.flip and rng.random() < 0.5 else 1.0)
    sy = rng.uniform(0.88, 1.12)
    edge = rng.random() < style.p_edge
    # the box around the centre scales with the size: compute it once for size 1
    unit = _extent(pts, pad, Object(cls, shape_seed, 0.0, 0.0, 1.0, angle, sx, sy, faint))
    best: tuple[float, Object, tuple[float, float, float, float]] | None = None
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
        obj = Object(cls, shape_seed, float(cx), float(cy), size, angle, sx, sy, faint)
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


def _background(rng: np.random.Generator, scene: str) -> Background:
    def jit(c: RGB, k: int = 20) -> RGB:
        return jitter_color(c, rng.integers(-k, k + 1, 3).tolist())

    if rng.random() < 0.75:
        sky_top, sky_mid = jit((70, 140, 220), 30), jit((175, 210, 240), 20)
    else:  # hazy or sunset sky
        sky_top, sky_mid = jit((120, 150, 200), 30), jit((240, 190, 150), 25)
    decor = scene
    if rng.random() < PLAIN_BACKGROUND_P:  # a background that does not tell the scene
        decor = "plain"
        top, mid, ground, far = (hsv(rng, (0.0, 1.0), (0.1, 0.7), (0.3, 0.95)) for _ in range(4))
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
        top = hsv(rng, (0.0, 1.0), (0.1, 0.4), (0.65, 0.95))
        mid = shade(top, 0.9)
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
    return Background(
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


def _distractor(rng: np.random.Generator, small: bool) -> Distractor:
    kind = ("blob", "blob", "ellipse", "rect", "scribble")[int(rng.integers(5))]
    size = rng.uniform(0.05, 0.11) if small else rng.uniform(0.08, 0.25)
    color = hsv(rng, (0.0, 1.0), (0.2, 0.9), (0.25, 0.95))
    return Distractor(
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


def _layout(seed: int, split_id: int, index: int, num_classes: int) -> Layout:
    """The layout of one image, from its own RNG."""
    rng = np.random.default_rng([seed, split_id, index])
    kept = set(CLASSES[:num_classes])
    scenes = [s for s in SCENES.values() if kept & set(s.probabilities())]
    spec = scenes[int(rng.integers(len(scenes)))]
    labels = _sample_labels(rng, spec, kept)
    instances = [CLASSES.index(c) for c in labels]
    for c in labels:
        for _ in range(STYLES[c].extra):
            if len(instances) < MAX_OBJECTS and rng.random() < 0.35:
                instances.append(CLASSES.index(c))
    background = _background(rng, spec.name)
    # place large classes first, so that small ones are drawn on top of them
    order = sorted(range(len(instances)), key=lambda k: -STYLES[CLASSES[instances[k]]].size[1])
    objects: list[Object] = []
    boxes: list[tuple[float, float, float, float]] = []
    for k in order:
        placed = _place(rng, instances[k], boxes)
        if placed is not None:
            objects.append(placed[0])
            boxes.append(placed[1])
    # a label whose every instance failed to fit is dropped (rare): labels follow the boxes
    under = tuple(_distractor(rng, small=False) for _ in range(int(rng.integers(2, 6))))
    over: list[Distractor] = []
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
    return Layout(spec.name, background, tuple(objects), under, tuple(over), clipped)


def sample_layouts(split: str, n: int, seed: int, num_classes: int) -> list[Layout]:
    return [_layout(seed, SPLIT_IDS[split], i, num_classes) for i in range(n)]


def layout_targets(layouts: list[Layout], num_classes: int) -> np.ndarray:
    targets = np.zeros((len(layouts), num_classes), dtype=np.int8)  # (N, C)
    for i, lay in enumerate(layouts):
        for o in lay.objects:
            targets[i, o.cls] = PRESENT
    return targets


def pixel_boxes(lay: Layout, image_size: int) -> list[Box]:
    s = float(image_size)
    return [
        (c, round(x0 * s, 2), round(y0 * s, 2), round(x1 * s, 2), round(y1 * s, 2))
        for c, x0, y0, x1, y1 in lay.boxes
    ]
