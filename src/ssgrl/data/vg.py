"""Visual Genome 500 in the SSGRL release format (``dataset: vg500``).

Files under ``root`` (each an option, relative to ``root`` or absolute):

* ``images="VG_100K"`` — the image folder; a list of folders is searched in order
  (e.g. ``["VG_100K", "VG_100K_2"]`` for the two parts of the official download);
* ``list_file="{split}_list_500.txt"`` — one image path per line, relative to the image
  folder; the release has the splits ``train`` and ``test``;
* ``labels_file="vg_category_500_labels_index.json"`` — ``{"<image path>": [class indices]}``;
* ``categories_file="vg_category_500.txt"`` — the class names, one per line, in index order
  (a ``.json`` file with a list of names or a ``{name: index}`` object is read too).

An image whose index list is empty is kept as all-negative.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ssgrl.data.base import Split, file_split
from ssgrl.data.labelspace import (
    DatasetFormatError,
    base_meta,
    need_root,
    read_class_names,
    require_files,
    resolve_file,
    targets_from_indices,
)
from ssgrl.data.registry import register_dataset
from ssgrl.provenance import sha256_file

log = logging.getLogger(__name__)

LAYOUT = (
    "expected root/VG_100K/, root/{train,test}_list_500.txt, "
    "root/vg_category_500_labels_index.json and root/vg_category_500.txt"
)


def read_vg_categories(path: Path) -> list[str]:
    """Class names in index order from a ``.txt`` (one per line) or ``.json`` file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"vg500: category file {path} does not exist (one class name per line, in the "
            f"order of the label indices; set the option categories_file)"
        )
    if path.suffix.lower() != ".json":
        return read_class_names(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, list) and data and all(isinstance(n, str) for n in data):
        names = list(data)
    elif (
        isinstance(data, dict)
        and data
        and all(isinstance(v, int) and not isinstance(v, bool) for v in data.values())
    ):
        if sorted(data.values()) != list(range(len(data))):
            raise DatasetFormatError(
                f"{path}: the indices of {{name: index}} must be 0..{len(data) - 1}"
            )
        names = sorted(data, key=lambda n: data[n])
    else:
        raise DatasetFormatError(f"{path}: expected a list of names or a {{name: index}} object")
    if len(set(names)) != len(names):
        raise DatasetFormatError(f"{path}: class names are not unique")
    return names


def _read_list(path: Path, split: str) -> tuple[list[str], list[int]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"vg500: image list {path} for split {split!r} does not exist "
            f"(the release has train and test; set the option list_file)"
        )
    names: list[str] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise DatasetFormatError(
                f"{path}:{line_no}: duplicate image {name!r} (already on line {seen[name]})"
            )
        seen[name] = line_no
        names.append(name)
        lines.append(line_no)
    if not names:
        raise DatasetFormatError(f"{path}: no image paths")
    return names, lines


@register_dataset("vg500")
def load_vg500(
    root: Path | None,
    split: str,
    images: str | Sequence[str] = "VG_100K",
    list_file: str = "{split}_list_500.txt",
    labels_file: str = "vg_category_500_labels_index.json",
    categories_file: str = "vg_category_500.txt",
) -> Split:
    """One split of VG-500 (see the module docstring for the files and options)."""
    root = need_root(root, "vg500", LAYOUT)
    classes = read_vg_categories(resolve_file(root, categories_file))
    list_path = resolve_file(root, list_file.format(split=split))
    names, lines = _read_list(list_path, split)

    labels_path = resolve_file(root, labels_file)
    if not labels_path.is_file():
        raise FileNotFoundError(f"vg500: label file {labels_path} does not exist ({LAYOUT})")
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{labels_path}: not valid JSON ({err})") from err
    if not isinstance(labels, dict):
        raise DatasetFormatError(f"{labels_path}: expected an object {{image path: [indices]}}")

    present: list[list[int]] = []
    for name, line in zip(names, lines, strict=True):
        if name not in labels:
            raise DatasetFormatError(
                f"{list_path}:{line}: image {name!r} has no entry in {labels_path}"
            )
        idx = labels[name]
        if not isinstance(idx, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in idx
        ):
            raise DatasetFormatError(
                f"{labels_path}: entry {name!r} must be a list of integer class indices, got {idx!r}"
            )
        bad = [v for v in idx if not 0 <= v < len(classes)]
        if bad:
            raise DatasetFormatError(
                f"{labels_path}: image {name!r} has class index {bad[0]}, outside 0..{len(classes) - 1} "
                f"({len(classes)} names in the category file)"
            )
        present.append(idx)

    folders = [resolve_file(root, f) for f in ([images] if isinstance(images, str) else images)]
    if not folders:
        raise ValueError("vg500: images must name at least one folder")
    paths = [folders[0] / name for name in names]
    if len(folders) > 1:  # the first folder that has the file
        for k, name in enumerate(names):
            found = next((f / name for f in folders if (f / name).is_file()), None)
            paths[k] = paths[k] if found is None else found
    where = " or ".join(str(f) for f in folders)
    require_files(paths, lambda k: f"{list_path}:{lines[k]}; searched {where}", f"vg500 {split}")

    targets = targets_from_indices(present, len(classes))  # (N, C)
    meta = base_meta(
        "vg500",
        split,
        targets,
        list_file=str(list_path),
        list_sha256=sha256_file(list_path),
        labels_file=str(labels_path),
        labels_sha256=sha256_file(labels_path),
        image_dirs=[str(f) for f in folders],
    )
    log.info("vg500 %s: %d images, %d classes", split, len(names), len(classes))
    return file_split(f"vg500-{split}", classes, paths, targets, ids=names, meta=meta)
