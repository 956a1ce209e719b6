"""``synthetic``: a procedurally generated multi-label scene dataset (the data of ``ssgrl demo``),
and its public API: ``load_synthetic`` (registered as dataset "synthetic"), ``generate`` (labels
and boxes without pixels) and ``render``. Each image is one of six scenes holding 1-5 objects of
16 classes drawn as composite shapes on textured backgrounds with distractor blobs that are no
class; some classes need context (a faint star comes with the moon, a small fish with boats).
Everything about image ``index`` of ``split`` comes from ``np.random.default_rng([seed, split_id,
index])``: its layout (labels, boxes) is sampled up-front (``layout``), its pixels are rendered by
``load_image`` (``rendering``) and are the same bytes whatever the rendering order. Classes and
scenes are in ``specs``, the shapes in ``painters``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ssgrl.data.base import Split
from ssgrl.data.registry import register_dataset
from ssgrl.data.synthetic.layout import Layout, layout_targets, pixel_boxes, sample_layouts
from ssgrl.data.synthetic.rendering import Renderer, render
from ssgrl.data.synthetic.specs import (
    CLASSES,
    GENERATOR_VERSION,
    MAX_LABELS,
    MAX_OBJECTS,
    PLAIN_BACKGROUND_P,
    RGB,
    SCENES,
    SPLIT_IDS,
    Box,
    SceneSpec,
)

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "MAX_LABELS",
    "MAX_OBJECTS",
    "PLAIN_BACKGROUND_P",
    "RGB",
    "SCENES",
    "SPLIT_IDS",
    "Box",
    "Layout",
    "Renderer",
    "SceneSpec",
    "generate",
    "load_synthetic",
    "render",
]


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
    layouts = sample_layouts(split, n, seed, k)
    return (
        layout_targets(layouts, k),
        [pixel_boxes(lay, image_size) for lay in layouts],
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
    layouts = sample_layouts(split, n, seed, k)
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
        targets=layout_targets(layouts, k),
        loader=Renderer(layouts, image_size),
        boxes=[pixel_boxes(lay, image_size) for lay in layouts],
        meta={"scenes": [lay.scene for lay in layouts], "params": params},
        content_key=_ContentKey(split, seed, image_size, k),
    )


class _ContentKey:
    """Image ``index``'s identity: the generator version and everything its pixels depend on
    (a picklable callable, for DataLoader workers)."""

    def __init__(self, split: str, seed: int, image_size: int, num_classes: int) -> None:
        self.prefix = f"synthetic:v{GENERATOR_VERSION}:{split}:{seed}:{image_size}:{num_classes}"

    def __call__(self, index: int) -> str:
        return hashlib.sha256(f"{self.prefix}:{index}".encode()).hexdigest()
