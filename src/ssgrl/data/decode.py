"""The one image decoder: every image that enters ssgrl goes through ``open_image``.

``decode_image`` turns any Pillow image into 8-bit RGB:

- EXIF (or XMP) orientation is applied.
- Transparent pixels (RGBA, LA, PA, premultiplied modes, palette or L/RGB images with a
  transparency entry / tRNS chunk) are alpha-composited over ``ALPHA_BACKGROUND`` (white, the
  usual page background): ``out = round((c * a + bg * (255 - a)) / 255)``. A fully opaque image
  keeps its RGB exactly.
- High bit depths are scaled, not clipped: 16-bit gray (``I;16*``, or ``I`` from a 16-bit file)
  by ``round(v / 257)`` (65535 -> 255); 32-bit integer ``I`` by its full range (unsigned 0..2**32-1,
  signed 0..2**31-1 with negatives clipped to 0); float ``F`` as 0..1 (clipped, NaN -> 0).
  Pillow itself reduces 16-bit RGB / RGBA / gray+alpha PNG and TIFF samples to their high byte
  (``v >> 8``, within 1 of ``round(v / 257)``), so those arrive as 8-bit RGB / RGBA.
- An 8-bit RGB image without orientation is returned as is (no copy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ALPHA_BACKGROUND: tuple[int, int, int] = (255, 255, 255)  # transparent pixels become white

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLE_FORMAT = 258, 339


class ImageDecodeError(ValueError):
    """A file that is not a readable image; the message names it."""


def _orientation(img: Image.Image) -> int:
    """The EXIF/XMP orientation (1 = upright); unreadable metadata counts as upright."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return int(value)
    except (TypeError, ValueError, SyntaxError, OSError):
        return 1


def _tiff_tag(img: Image.Image, tag: int) -> int | None:
    """First value of a TIFF tag, or None for other formats / absent tags."""
    tags = getattr(img, "tag_v2", None)
    value = tags.get(tag) if tags is not None else None
    if isinstance(value, tuple):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


def _gray_to_uint8(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 of an ``I;16*``, ``I`` or ``F`` image, scaled as the module doc says."""
    arr = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    bits = _tiff_tag(img, _TIFF_BITS_PER_SAMPLE)
    if img.mode.startswith("I;16") or img.format == "PNG" or bits == 16:
        # round(v / 257) in exact integer arithmetic (never a tie: 65535 is odd)
        wide = np.clip(arr.astype(np.int64), 0, 65535)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)
    if _tiff_tag(img, _TIFF_SAMPLE_FORMAT) == 1:  # unsigned 32-bit, stored by Pillow as int32
        full = arr.astype(np.int32).view(np.uint32).astype(np.float64)
        return np.rint(full / 16843009.0).astype(np.uint8)  # (2**32 - 1) / 255
    signed = np.clip(arr.astype(np.float64), 0.0, 2.0**31 - 1)
    return np.rint(signed * (255.0 / (2.0**31 - 1))).astype(np.uint8)


def _composite(img: Image.Image) -> Image.Image:
    """Alpha-composite over ``ALPHA_BACKGROUND``; an opaque image keeps its RGB exactly."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return rgba.convert("RGB")
    out = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
    out.paste(rgba, (0, 0), alpha)  # per pixel round((c * a + bg * (255 - a)) / 255)
    return out


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB pixels of ``img`` (no orientation); ``img`` itself when it already is."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB", "1") and "transparency" in img.info):
        return _composite(img)
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_gray_to_uint8(img)).convert("RGB")
    return img.convert("RGB")  # L, 1, P (opaque), CMYK, YCbCr, ...


def draft_image(raw: Image.Image, size: tuple[int, int]) -> None:
    """Before ``raw.load()``: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling)
    when both sides stay >= ``size``; nothing for other formats or smaller images. ``size`` is
    compared with the stored (not EXIF-rotated) sides, so give a square one."""
    if raw.format == "JPEG" and raw.width >= 2 * size[0] and raw.height >= 2 * size[1]:
        raw.draft(None, size)  # a no-op once the pixels are loaded


def decode_image(img: Image.Image, draft: tuple[int, int] | None = None) -> Image.Image:
    """``img`` as 8-bit RGB, upright, transparency composited (see the module doc).

    For images that are already open (uploads, ``Image.open`` results, tests). Returns ``img``
    itself when it is 8-bit RGB without orientation or transparency, otherwise a new image.
    ``draft``: a JPEG opened but not yet loaded (``Image.open``) is decoded at reduced scale as
    ``draft_image`` says; an image already loaded is used as it is.
    """
    if draft is not None and getattr(img, "tile", None):
        draft_image(img, draft)
    orientation = _orientation(img)
    rgb = _to_rgb(img)
    method = _TRANSPOSE.get(orientation)
    if method is None:
        return rgb
    upright = rgb.transpose(method)
    # the result is upright: drop the tag, so decoding it again does not turn it twice
    exif = upright.getexif()
    exif.pop(_ORIENTATION_TAG, None)
    upright.info["exif"] = exif.tobytes()
    for key in ("XML:com.adobe.xmp", "xmp", "Raw profile type exif"):
        upright.info.pop(key, None)
    return upright


def open_image(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``path`` as an RGB image, honouring the EXIF orientation (see ``decode_image``).

    ``draft`` (w, h): a JPEG file is decoded at the smallest of 1, 1/2, 1/4 and 1/8 scale whose
    sides still cover (w, h) (``draft_image``); other formats are decoded whole."""
    path = Path(path)
    try:
        with Image.open(path) as raw:
            if draft is not None:
                draft_image(raw, draft)
            raw.load()
            return decode_image(raw)
    except FileNotFoundError as err:
        raise ImageDecodeError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{path}: not a readable image ({err})") from err
