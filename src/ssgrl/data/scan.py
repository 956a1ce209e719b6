"""A quick start-up check of a split's image files: missing, empty, unreadable or truncated
images are found before any training, all of them at once, not one traceback mid-epoch.

Quick, not a full decode: Pillow reads each header and ``verify()``s the file (PNG chunk CRCs up
to IEND, GIF/TIFF/BMP structure); a JPEG must also end with its end-of-image marker (FF D9),
which a truncated download lacks. Files are checked by a few threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ssgrl.data.base import Split

JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class BadImage:
    """One image that cannot be used: its index in the split, id, file and why."""

    index: int
    image_id: str
    path: str
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def check_image_file(path: Path) -> str | None:
    """Why ``path`` is not a usable image, or None when it is."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as image:
            fmt = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"not a readable image ({err})"
    except Image.DecompressionBombError as err:
        return f"refused: {err}"
    if fmt == "JPEG":
        with path.open("rb") as f:
            f.seek(max(size - 64, 0))
            tail = f.read().rstrip(b"\x00\r\n ")
        if not tail.endswith(JPEG_END):
            return "truncated JPEG (no end-of-image marker)"
    return None


def scan_split(
    split: Split, workers: int = 4, progress: Callable[[int], None] | None = None
) -> list[BadImage]:
    """Every unusable image of ``split`` (nothing to check for generated splits)."""
    if split.paths is None:
        return []
    paths = split.paths

    def check(i: int) -> BadImage | None:
        reason = check_image_file(paths[i])
        if progress is not None:
            progress(1)
        return None if reason is None else BadImage(i, split.ids[i], str(paths[i]), reason)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(check, range(len(paths))))
    return [b for b in found if b is not None]


class BadImagesError(ValueError):
    """Unusable images in a split; the message lists every one."""

    def __init__(self, split: str, bad: list[BadImage]) -> None:
        lines = "\n  ".join(b.line() for b in bad)
        super().__init__(
            f"{len(bad)} unusable image(s) in split {split!r}:\n  {lines}\n"
            "Fix or remove them, or set data.on_bad_image: skip to train on the others."
        )
        self.bad = bad
