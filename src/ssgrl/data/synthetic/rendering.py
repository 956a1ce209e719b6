"""Rendering: the pixels of one layout at a given image size. Draws the textured background
(gradients, low-frequency mottling, stripes and the scene's decorations: stars, distant blocks,
waves, picture frames, fences), the distractors under the objects, the objects from their
painters' parts (faint ones blended into the background), the small occluding distractors, then
sensor-like grain. The randomness of textures and grain comes from the layout's seeds, so an
image is the same bytes whatever the rendering order. ``Renderer`` is a split's picklable loader.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ssgrl.data.synthetic.layout import Background, Distractor, Layout, Object, transform
from ssgrl.data.synthetic.painters import SHAPES
from ssgrl.data.synthetic.primitives import ellipse, hsv, rect, rotate, shade
from ssgrl.data.synthetic.specs import CLASSES, RGB


def _lerp(a: RGB, b: RGB, t: np.ndarray) -> np.ndarray:
    """Colours between a and b at fractions t. (K,) -> (K, 3)"""
    return (
        np.array(a, np.float32) + (np.array(b, np.float32) - np.array(a, np.float32)) * t[:, None]
    )


def _draw_background(bg: Background, size: int, rng: np.random.Generator) -> Image.Image:
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
                fill=shade(bg.ground, 1.3),
                width=max(1, size // 112),
            )
    elif scene == "room":
        if rng.random() < 0.5:  # a picture frame on the wall
            x0, y0 = rng.uniform(0.05, 0.7) * s, rng.uniform(0.05, 0.35) * hy
            w, fh = rng.uniform(0.15, 0.28) * s, rng.uniform(0.12, 0.22) * s
            draw.rectangle((x0, y0, x0 + w, y0 + fh), fill=(70, 50, 30))
            draw.rectangle(
                (x0 + s / 40, y0 + s / 40, x0 + w - s / 40, y0 + fh - s / 40),
                fill=hsv(rng, (0, 1), (0.2, 0.7), (0.4, 0.9)),
            )
        for x in np.arange(0.0, 1.0, rng.uniform(0.08, 0.16)) * s:  # floor boards
            draw.line(
                (x, hy, x - s * 0.05, s), fill=shade(bg.ground, 0.75), width=max(1, size // 224)
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
                fill=shade(bg.ground, 0.7),
                width=max(1, size // 224),
            )
    return out


def _draw_distractor(draw: ImageDraw.ImageDraw, d: Distractor, size: int) -> None:
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
        pts = rotate(ellipse(0, 0, r, ry, 16), rng.uniform(0, np.pi)) + np.array([d.cx, d.cy])
        draw.polygon((pts * s).ravel().tolist(), fill=d.color)
    elif d.kind == "rect":
        pts = rotate(rect(-r, -r * 0.4, r, r * 0.4), rng.uniform(0, np.pi)) + np.array([d.cx, d.cy])
        draw.polygon((pts * s).ravel().tolist(), fill=d.color)
    else:
        pts = (np.array([d.cx, d.cy]) + np.cumsum(rng.normal(0, r / 2, (6, 2)), axis=0)) * s
        draw.line(pts.ravel().tolist(), fill=d.color, width=max(1, int(size / 100)), joint="curve")


def _draw_object(draw: ImageDraw.ImageDraw, img: Image.Image, obj: Object, size: int) -> None:
    parts = SHAPES[CLASSES[obj.cls]](np.random.default_rng(obj.shape_seed))
    s = float(size)
    back: RGB | None = None
    if obj.faint > 0:  # blend into the background colour at the object's centre
        x = min(max(int(obj.cx * s), 0), size - 1)
        y = min(max(int(obj.cy * s), 0), size - 1)
        r, g, b = np.asarray(img)[y, x].tolist()
        back = (r, g, b)
    for part in parts:
        color = part.color if back is None else _blend(part.color, back, obj.faint)
        xy = (transform(part.pts, obj) * s).ravel().tolist()
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


def render(layout: Layout, image_size: int) -> Image.Image:
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


class Renderer:
    """``loader(i)`` of a synthetic split (a picklable object, so DataLoader workers can use it)."""

    def __init__(self, layouts: list[Layout], image_size: int) -> None:
        self.layouts = layouts
        self.image_size = image_size

    def __call__(self, index: int) -> Image.Image:
        if not 0 <= index < len(self.layouts):
            raise IndexError(
                f"synthetic: image index {index} out of range [0, {len(self.layouts)})"
            )
        return render(self.layouts[index], self.image_size)
