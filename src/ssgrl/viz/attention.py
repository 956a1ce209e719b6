"""Per-class attention pictures: the spatial attention a_c of semantic decoupling over the image.

SSGRL computes, for every class c, a softmax distribution a_c over the h×w backbone grid (the
attention of the low-rank bilinear decoupling). These helpers upsample that grid smoothly to the
picture, overlay it as a colour heat-map and lay out one tile per class. Rendering goes through a
private ``Figure`` + ``FigureCanvasAgg``, so no global matplotlib state (backend, pyplot) is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["overlay_attention", "render_explanation", "upsample_attention"]

_DPI = 100  # 1 inch = 100 px, so every layout size below is in pixels
_PAD = 8  # px around each tile
_TITLE_H = 24  # px above each tile for "<class>  <prob>"
_HEADER_H = 36  # px for the figure title (when given)
_FOOTER_H = 52  # px for the colour bar or the "no class" note
_FONT = 11  # pt; at 100 dpi about 15 px high
_NO_CLASS_NOTE = "no class above threshold"


def _colormap(cmap: str) -> Colormap:
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"unknown colour map {cmap!r}; use a matplotlib colormap name such as "
            "'jet', 'inferno', 'turbo' or 'viridis'"
        ) from None


def _check_map(attention_2d: np.ndarray, what: str = "attention map") -> np.ndarray:
    """Return a (h, w) float64 copy; raise on wrong rank, empty grid, NaN/inf or negatives."""
    att = np.asarray(attention_2d, dtype=np.float64)
    if att.ndim != 2 or att.shape[0] == 0 or att.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D (h, w) array, got shape {att.shape}")
    if not np.isfinite(att).all():
        bad = np.argwhere(~np.isfinite(att))[0]
        raise ValueError(
            f"{what} has non-finite values (first at row {bad[0]}, column {bad[1]}); "
            "an attention map must be a finite distribution over the feature grid"
        )
    if att.min() < 0:
        bad = np.unravel_index(int(att.argmin()), att.shape)
        raise ValueError(
            f"{what} has negative values (min {att.min():.3g} at row {bad[0]}, column {bad[1]}); "
            "pass the softmax attention, not the raw scores"
        )
    return att


def upsample_attention(attention_2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalise a (h, w) map to its max and resize it bicubically to ``size`` = (width, height).

    Returns an (height, width) float32 array in [0, 1]; an all-zero map stays all zero.
    Each grid cell covers an equal patch of the picture (cell centres at patch centres).
    """
    att = _check_map(attention_2d)
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive (width, height), got {size}")
    peak = att.max()
    if peak <= 0:
        return np.zeros((height, width), dtype=np.float32)
    grid = Image.fromarray((att / peak).astype(np.float32), mode="F")
    smooth = np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC))  # (H, W)
    return np.clip(smooth, 0.0, 1.0).astype(np.float32)  # bicubic may overshoot slightly


def overlay_attention(
    image: Image.Image,
    attention_2d: np.ndarray,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Image.Image:
    """Blend a colour heat-map of ``attention_2d`` (h, w) over ``image``; same size, RGB.

    The map is normalised to its own peak and upsampled smoothly. The blend weight of a pixel is
    ``alpha * heat``, so the picture is unchanged where attention is zero and most tinted at the
    peak (where the colour covers ``alpha`` of it).
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colormap = _colormap(cmap)
    rgb = image.convert("RGB")
    base = np.asarray(rgb, dtype=np.float32) / 255.0  # (H, W, 3)
    heat = upsample_attention(attention_2d, rgb.size)  # (H, W) in [0, 1]
    colour = np.asarray(colormap(heat), dtype=np.float32)[..., :3]  # (H, W, 3)
    weight = alpha * heat[..., None]  # (H, W, 1)
    out = (1.0 - weight) * base + weight * colour
    return Image.fromarray(np.round(out * 255.0).astype(np.uint8), mode="RGB")


def _tile_size(image: Image.Image, tile_size: int) -> tuple[int, int]:
    """(width, height) with the longer side ``tile_size``, keeping the aspect ratio."""
    width, height = image.size
    scale = tile_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _short(name: str, max_chars: int) -> str:
    return name if len(name) <= max_chars else name[: max_chars - 1] + "…"


def render_explanation(
    image: Image.Image,
    attention: np.ndarray,
    class_names: Sequence[str],
    probabilities: Sequence[float],
    out_path: Path | None = None,
    title: str | None = None,
    max_columns: int = 4,
    *,
    tile_size: int = 256,
    alpha: float = 0.5,
    cmap: str = "jet",
    mark_peak: bool = True,
) -> Image.Image:
    """Draw the input and one attention tile per class; optionally save it as PNG.

    ``image`` is the picture as the model saw it (after its resize/crop), so the (h, w) grid of
    ``attention`` (K, h, w) covers it exactly. Tile k shows class ``class_names[k]`` with its
    ``probabilities[k]``, the attention upsampled and normalised to the tile's own peak, and the
    peak cell circled. K = 0 draws the image alone with a note. Tiles are ``tile_size`` px on the
    longer side, ``max_columns`` per row. Returns the picture (RGB); writes it to ``out_path``
    (parents created) when given.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if max_columns < 1:
        raise ValueError(f"max_columns must be >= 1, got {max_columns}")
    if tile_size < 32:
        raise ValueError(f"tile_size must be >= 32 px, got {tile_size}")
    maps = np.asarray(attention, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(
            f"attention must have shape (K, h, w) (one map per class), got shape {maps.shape}"
        )
    names = [str(n) for n in class_names]
    probs = [float(p) for p in probabilities]
    num = maps.shape[0]
    if len(names) != num or len(probs) != num:
        raise ValueError(
            f"attention has K={num} maps but got {len(names)} class names and "
            f"{len(probs)} probabilities; all three must list the same classes"
        )
    for name, p in zip(names, probs, strict=True):
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"probability of class {name!r} must be in [0, 1], got {p}")
    for k in range(num):
        _check_map(maps[k], what=f"attention map of class {names[k]!r} (index {k})")
    colormap = _colormap(cmap)

    rgb = image.convert("RGB")
    tile_w, tile_h = _tile_size(rgb, tile_size)
    small = rgb.resize((tile_w, tile_h), Image.Resampling.LANCZOS)

    tiles = 1 + num
    cols = min(max_columns, tiles)
    rows = math.ceil(tiles / cols)
    cell_w, cell_h = tile_w + 2 * _PAD, _TITLE_H + tile_h + _PAD
    header_h = _HEADER_H if title else _PAD
    fig_w, fig_h = cols * cell_w, header_h + rows * cell_h + _FOOTER_H

    fig = Figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    max_chars = max(8, tile_w // 9 - 5)  # room left for "  0.93"

    def add_tile(index: int, picture: Image.Image, label: str) -> Axes:
        row, col = divmod(index, cols)
        left = col * cell_w + _PAD
        top = header_h + row * cell_h  # px from the figure top
        fig.text(
            (left + tile_w / 2) / fig_w,
            1.0 - (top + _TITLE_H / 2) / fig_h,
            label,
            ha="center",
            va="center",
            fontsize=_FONT,
        )
        bottom = fig_h - (top + _TITLE_H + tile_h)
        ax = fig.add_axes((left / fig_w, bottom / fig_h, tile_w / fig_w, tile_h / fig_h))
        ax.imshow(np.asarray(picture), interpolation="antialiased")
        ax.set_xlim(-0.5, tile_w - 0.5)
        ax.set_ylim(tile_h - 0.5, -0.5)
        ax.set_axis_off()
        return ax

    add_tile(0, small, "input")
    h, w = maps.shape[1:]
    for k in range(num):
        tile = overlay_attention(small, maps[k], alpha=alpha, cmap=cmap)
        ax = add_tile(1 + k, tile, f"{_short(names[k], max_chars)}  {probs[k]:.2f}")
        peak, floor = maps[k].max(), maps[k].min()
        if mark_peak and peak > floor + 1e-6 * peak:  # a flat map has no peak to mark
            r, c = np.unravel_index(int(maps[k].argmax()), (h, w))
            x, y = (c + 0.5) * tile_w / w - 0.5, (r + 0.5) * tile_h / h - 0.5  # cell centre
            ax.plot([x], [y], marker="o", ms=11, mfc="none", mec="white", mew=2.0)
            ax.plot([x], [y], marker="o", ms=11, mfc="none", mec="black", mew=0.8)

    if title:
        fig.text(0.5, 1.0 - (header_h / 2) / fig_h, title, ha="center", va="center", fontsize=13)
    if num == 0:
        fig.text(
            0.5,
            (_FOOTER_H / 2) / fig_h,
            _NO_CLASS_NOTE,
            ha="center",
            va="center",
            fontsize=_FONT,
            style="italic",
            color="#444444",
        )
    else:
        bar_w = min(fig_w - 2 * _PAD, 240)
        cax = fig.add_axes(((fig_w - bar_w) / 2 / fig_w, 26 / fig_h, bar_w / fig_w, 8 / fig_h))
        bar = fig.colorbar(
            ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colormap),
            cax=cax,
            orientation="horizontal",
        )
        bar.outline.set_linewidth(0.5)  # type: ignore[operator]
        bar.set_ticks([0.0, 1.0], labels=["0", "peak"])
        cax.tick_params(labelsize=8, length=2, pad=1)
        cax.set_title("attention (per tile, relative to its peak)", fontsize=8, pad=3)

    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]  # (fig_h, fig_w, 3)
    picture = Image.fromarray(np.array(pixels), mode="RGB")
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(out_path, format="PNG")
    return picture
