"""MS-COCO 2014 multi-label classification (``dataset: coco2014``).

``root`` holds ``train2014/``, ``val2014/`` and ``annotations/instances_{train,val}2014.json``
(options ``images`` and ``annotations`` are format strings with ``{split}`` to read another
layout, e.g. COCO 2017). Splits ``train`` and ``val``.

Labels come from the instance annotations themselves, joined to images by ``image_id`` (never
by position): a class is present when at least one annotation of it lies in the image. Crowd
annotations (``iscrowd=1``) count as present too: a crowd of people is people. Categories are
mapped to contiguous indices in ascending category-id order (COCO ids run 1..90 with gaps);
names come from the JSON; ``Split.meta["category_ids"]`` keeps the original ids.
Images without any annotation (about 1% of COCO) are kept as all-negative, unless
``drop_unlabelled=True``. ``ids`` are the image file names; ``Split.boxes`` are the
annotation boxes as ``(class, x0, y0, x1, y1)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any

from ssgrl.data.base import Split, file_split
from ssgrl.data.labelspace import (
    DatasetFormatError,
    base_meta,
    need_root,
    require_files,
    resolve_file,
    targets_from_indices,
)
from ssgrl.data.registry import register_dataset
from ssgrl.provenance import sha256_file

log = logging.getLogger(__name__)

LAYOUT = "expected root/{train2014,val2014}/ and root/annotations/instances_{train,val}2014.json"


def _read_coco(path: Path) -> Any:
    """A pycocotools ``COCO`` index of ``path``, with its progress prints silenced."""
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from err
    except (AssertionError, KeyError, TypeError) as err:
        raise DatasetFormatError(
            f"{path}: not a COCO instances file (expected 'images', 'annotations', "
            f"'categories'; {type(err).__name__}: {err})"
        ) from err


@register_dataset("coco2014")
def load_coco2014(
    root: Path | None,
    split: str,
    drop_unlabelled: bool = False,
    images: str = "{split}2014",
    annotations: str = "annotations/instances_{split}2014.json",
) -> Split:
    """COCO ``train``/``val`` as (N, C) targets from the instance annotations."""
    root = need_root(root, "coco2014", LAYOUT)
    ann_file = resolve_file(root, annotations.format(split=split))
    if not ann_file.is_file():
        raise FileNotFoundError(
            f"coco2014 {split}: annotation file {ann_file} does not exist (splits: train, val; {LAYOUT})"
        )
    image_dir = resolve_file(root, images.format(split=split))
    coco = _read_coco(ann_file)
    dataset = coco.dataset
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DatasetFormatError(
                f"{ann_file}: missing the {key!r} list of a COCO instances file"
            )
    if len(coco.imgs) != len(dataset["images"]):
        raise DatasetFormatError(f"{ann_file}: some image ids appear more than once in 'images'")
    if not dataset["categories"]:
        raise DatasetFormatError(f"{ann_file}: no categories")

    cat_ids = sorted(coco.cats)
    column = {cat_id: c for c, cat_id in enumerate(cat_ids)}
    classes = [str(coco.cats[cat_id]["name"]) for cat_id in cat_ids]
    if len(set(classes)) != len(classes):
        raise DatasetFormatError(f"{ann_file}: category names are not unique: {classes}")

    present: dict[int, set[int]] = {}
    boxes: dict[int, list[tuple[int, float, float, float, float]]] = {}
    for ann in dataset["annotations"]:
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if image_id not in coco.imgs:
            raise DatasetFormatError(
                f"{ann_file}: annotation id {ann.get('id')} refers to image_id {image_id}, "
                f"which is not in 'images'"
            )
        if cat_id not in column:
            raise DatasetFormatError(
                f"{ann_file}: annotation id {ann.get('id')} (image_id {image_id}) has "
                f"category_id {cat_id}, which is not in 'categories' ({cat_ids})"
            )
        present.setdefault(image_id, set()).add(column[cat_id])
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            x, y, w, h = (float(v) for v in bbox)
            boxes.setdefault(image_id, []).append((column[cat_id], x, y, x + w, y + h))

    image_ids = sorted(coco.imgs)
    total = len(image_ids)
    unlabelled = sum(1 for i in image_ids if i not in present)
    if drop_unlabelled:
        image_ids = [i for i in image_ids if i in present]
    if not image_ids:
        raise DatasetFormatError(f"{ann_file}: no images" + (" with annotations" if total else ""))

    names: list[str] = []
    seen: dict[str, int] = {}
    for i in image_ids:
        name = coco.imgs[i].get("file_name")
        if not isinstance(name, str) or not name:
            raise DatasetFormatError(f"{ann_file}: image id {i} has no 'file_name'")
        if name in seen:
            raise DatasetFormatError(
                f"{ann_file}: file_name {name!r} is used by image ids {seen[name]} and {i}"
            )
        seen[name] = i
        names.append(name)
    paths = [image_dir / n for n in names]
    require_files(paths, lambda k: f"{ann_file}, image id {image_ids[k]}", f"coco2014 {split}")

    targets = targets_from_indices([present.get(i, ()) for i in image_ids], len(classes))  # (N, C)
    dropped = total - len(image_ids)
    meta = base_meta(
        "coco2014",
        split,
        targets,
        annotation_file=str(ann_file),
        annotation_sha256=sha256_file(ann_file),
        image_dir=str(image_dir),
        category_ids=cat_ids,
        num_images_total=total,
        num_without_annotations=unlabelled,
        num_dropped=dropped,
        drop_unlabelled=drop_unlabelled,
    )
    log.info(
        "coco2014 %s: %d images in %s, %d without annotations (%s), %d kept",
        split, total, ann_file.name, unlabelled,
        "dropped" if drop_unlabelled else "kept as all-negative", len(image_ids),
    )  # fmt: skip
    out = file_split(f"coco2014-{split}", classes, paths, targets, ids=names, meta=meta)
    out.boxes = [boxes.get(i, []) for i in image_ids]
    return out
