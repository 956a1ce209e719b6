"""The one image decoder: every image that enters ssgrl goes through ``open_image``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageDecodeError(ValueError):
    """A file that is not a readable image; the message names it."""


def open_image(path: str | Path) -> Image.Image:
    """Decode ``path`` as an RGB image, honouring the EXIF orientation."""
    path = Path(path)
    try:
        with Image.open(path) as raw:
            raw.load()
            return ImageOps.exif_transpose(raw).convert("RGB")
    except FileNotFoundError as err:
        raise ImageDecodeError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{path}: not a readable image ({err})") from err
