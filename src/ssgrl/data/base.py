"""The one record type every dataset loader returns: a split of images with their targets.

Targets are int8 with 1 = present, 0 = absent, -1 = ignore (e.g. VOC ``difficult``); loss and
metrics skip ignored entries. Loaders only describe the split; pixels are decoded lazily by
``load_image`` so that a split of 100k images costs a list of paths, not a list of images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssgrl.data.decode import open_image
from ssgrl.provenance import sha256_file

PRESENT, ABSENT, IGNORE = 1, 0, -1


@dataclass
class Split:
    """A list of images, their (N, C) int8 targets and the class names.

    ``ids`` are what a user sees for each image (a relative path or a dataset id);
    ``has_labels`` is False for splits whose labels are not public (VOC 2012 test).
    ``boxes[i]`` (optional) lists ``(class_index, x0, y0, x1, y1)`` in pixels of image i.
    """

    name: str
    classes: tuple[str, ...]
    ids: list[str]
    targets: np.ndarray
    loader: Callable[[int], Image.Image]
    has_labels: bool = True
    boxes: list[list[tuple[int, float, float, float, float]]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    content_key: Callable[[int], str] | None = None
    paths: list[Path] | None = None  # the image files, for splits read from disk

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int8)
        if self.targets.shape != (len(self.ids), len(self.classes)):
            raise ValueError(
                f"split {self.name!r}: targets have shape {self.targets.shape}, expected "
                f"({len(self.ids)}, {len(self.classes)}) = (images, classes)"
            )
        bad = ~np.isin(self.targets, (PRESENT, ABSENT, IGNORE))
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"split {self.name!r}: target of image {self.ids[row]!r}, class "
                f"{self.classes[col]!r} is {int(self.targets[row, col])}; expected 1, 0 or -1"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, index: int, draft: tuple[int, int] | None = None) -> Image.Image:
        """The RGB image ``index``; ``draft``: a JPEG file may be decoded down to that size
        (``ssgrl.data.decode.open_image``; images that are not files are made whole)."""
        if draft is not None and self.paths is not None:
            return open_image(self.paths[index], draft)
        return self.loader(index)

    def content_id(self, index: int) -> str:
        """A hex digest that identifies image ``index``'s pixels: equal ids, equal images. From
        the loader's ``content_key`` (a file's sha256, a generator's parameters), else the
        sha256 of the decoded pixels."""
        if self.content_key is not None:
            return self.content_key(index)
        image = self.load_image(index)
        digest = hashlib.sha256(f"{image.mode}:{image.size}".encode())
        digest.update(image.tobytes())
        return digest.hexdigest()

    def without(self, drop: Sequence[int]) -> Split:
        """The split minus the images ``drop`` (indices), each remaining image once, in order."""
        dropped = set(drop)
        keep = [i for i in range(len(self)) if i not in dropped]
        loader, key = self.loader, self.content_key
        return Split(
            name=self.name,
            classes=self.classes,
            ids=[self.ids[i] for i in keep],
            targets=self.targets[keep],
            loader=_Reindexed(loader, keep),
            has_labels=self.has_labels,
            boxes=None if self.boxes is None else [self.boxes[i] for i in keep],
            meta={**self.meta, "dropped_images": [self.ids[i] for i in sorted(dropped)]},
            content_key=None if key is None else _Reindexed(key, keep),
            paths=None if self.paths is None else [self.paths[i] for i in keep],
        )

    @property
    def num_unlabelled(self) -> int:
        """Images with no present class (kept as all-negative)."""
        return int((~(self.targets == PRESENT).any(axis=1)).sum())


class _Reindexed:
    """``fn(keep[i])``: a loader of a split with images left out (picklable for workers)."""

    def __init__(self, fn: Callable[[int], Any], keep: list[int]) -> None:
        self.fn, self.keep = fn, keep

    def __call__(self, index: int) -> Any:
        return self.fn(self.keep[index])


def file_split(
    name: str,
    classes: Sequence[str],
    paths: Sequence[Path],
    targets: np.ndarray,
    ids: Sequence[str] | None = None,
    has_labels: bool = True,
    meta: dict[str, Any] | None = None,
) -> Split:
    """A split whose images are files on disk, decoded by the one image decoder."""
    paths = list(paths)
    return Split(
        name=name,
        classes=tuple(classes),
        ids=[str(p) for p in paths] if ids is None else list(ids),
        targets=targets,
        loader=lambda i: open_image(paths[i]),
        has_labels=has_labels,
        meta=dict(meta or {}),
        content_key=lambda i: sha256_file(paths[i]),
        paths=paths,
    )
