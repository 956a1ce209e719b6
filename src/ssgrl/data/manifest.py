"""Custom datasets described by one manifest file per split (``dataset: manifest``).

Layout: ``root/<split>.csv`` or ``root/<split>.jsonl`` (or the option ``manifests={"train":
"a.csv", ...}``, files relative to ``root``; ``root`` may also be a manifest file, which is then
the manifest of the requested split).

* CSV, header ``image,labels`` and optionally ``ignore``; labels are class names separated by
  ``|`` (an empty field = no labels)::

      image,labels,ignore
      photos/1.jpg,dog|person,
      photos/2.jpg,,cat

* JSON Lines, one object per line: ``{"image": "photos/1.jpg", "labels": ["dog"],
  "ignore": ["cat"]}`` (``ignore`` optional).

Image paths are relative to the manifest's folder (absolute paths are allowed). ``ignore``
classes get target -1 (skipped by loss and metrics). Class order: the ``classes`` option, else
``classes.txt`` (one name per line) next to the manifest or in ``root``, else the sorted names (labels and
ignore) found in the *training* manifest, so every split gets the same columns. A class in a
val/test manifest that the class list lacks is an error (in every split when the list is
explicit).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ssgrl.data.base import Split, file_split
from ssgrl.data.labelspace import (
    DatasetFormatError,
    base_meta,
    class_index,
    read_class_names,
    require_files,
    resolve_file,
    targets_from_indices,
)
from ssgrl.data.registry import register_dataset
from ssgrl.provenance import sha256_file

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".jsonl")
CSV_COLUMNS = ("image", "labels", "ignore")
JSON_KEYS = frozenset(CSV_COLUMNS)
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest: its path as written, label names, ignored names, line number."""

    line: int
    image: str
    labels: tuple[str, ...]
    ignore: tuple[str, ...]


def _split_names(field: str) -> tuple[str, ...]:
    return tuple(n for n in (part.strip() for part in field.split("|")) if n)


def _read_csv(path: Path) -> list[ManifestRow]:
    rows: list[ManifestRow] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DatasetFormatError(f"{path}: empty manifest (expected a header 'image,labels')")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if (
            unknown
            or "image" not in header
            or "labels" not in header
            or len(set(header)) != len(header)
        ):
            raise DatasetFormatError(
                f"{path}:1: header {','.join(header)!r}; expected 'image,labels' with an "
                f"optional 'ignore' column, each once"
            )
        col = {name: header.index(name) for name in header}
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DatasetFormatError(
                    f"{path}:{line}: {len(values)} fields, expected {len(header)} "
                    f"({','.join(header)}); quote fields that contain commas"
                )
            image = values[col["image"]].strip()
            if not image:
                raise DatasetFormatError(f"{path}:{line}: empty image path")
            ignore = _split_names(values[col["ignore"]]) if "ignore" in col else ()
            rows.append(ManifestRow(line, image, _split_names(values[col["labels"]]), ignore))
    return rows


def _name_list(path: Path, line: int, obj: dict[str, object], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetFormatError(
            f"{path}:{line}: {key!r} must be a list of class-name strings, got {value!r}"
        )
    return tuple(n for n in (v.strip() for v in value) if n)


def _read_jsonl(path: Path) -> list[ManifestRow]:
    rows: list[ManifestRow] = []
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise DatasetFormatError(f"{path}:{line}: not valid JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise DatasetFormatError(f"{path}:{line}: expected a JSON object, got {obj!r}")
            unknown = sorted(set(obj) - JSON_KEYS)
            if unknown or "image" not in obj or "labels" not in obj:
                raise DatasetFormatError(
                    f"{path}:{line}: keys {sorted(obj)}; expected 'image' and 'labels' "
                    f"and optionally 'ignore'"
                )
            image = obj["image"]
            if not isinstance(image, str) or not image.strip():
                raise DatasetFormatError(f"{path}:{line}: 'image' must be a non-empty path string")
            labels = _name_list(path, line, obj, "labels")
            rows.append(
                ManifestRow(line, image.strip(), labels, _name_list(path, line, obj, "ignore"))
            )
    return rows


def read_manifest(path: Path) -> list[ManifestRow]:
    """The rows of a ``.csv`` or ``.jsonl`` manifest; raises on malformed or empty files."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if path.suffix.lower() == ".csv":
        rows = _read_csv(path)
    elif path.suffix.lower() == ".jsonl":
        rows = _read_jsonl(path)
    else:
        raise DatasetFormatError(f"{path}: unknown manifest type; expected a .csv or .jsonl file")
    if not rows:
        raise DatasetFormatError(f"{path}: empty manifest (no image rows)")
    return rows


def _find_manifest(folder: Path, split: str, manifests: Mapping[str, str] | None) -> Path | None:
    if manifests and split in manifests:
        return resolve_file(folder, manifests[split])
    found = [folder / f"{split}{s}" for s in SUFFIXES if (folder / f"{split}{s}").is_file()]
    if len(found) > 1:
        raise DatasetFormatError(
            f"manifest: both {found[0]} and {found[1]} exist for split {split!r}; keep one"
        )
    return found[0] if found else None


def _class_list(
    path: Path,
    rows: list[ManifestRow],
    split: str,
    folder: Path,
    manifests: Mapping[str, str] | None,
    classes: Sequence[str] | None,
) -> tuple[list[str], str, bool]:
    """(classes, where they came from, whether unknown names in this split are errors)."""
    if isinstance(classes, str):
        raise ValueError(f"manifest: classes must be a list of names, got the string {classes!r}")
    if classes is not None:
        return list(classes), "classes option", True
    for class_file in dict.fromkeys((path.parent / CLASSES_FILE, folder / CLASSES_FILE)):
        if class_file.is_file():
            return read_class_names(class_file), str(class_file), True
    train_path = path if split == "train" else _find_manifest(folder, "train", manifests)
    if train_path is None:
        raise FileNotFoundError(
            f"manifest: no class list for split {split!r} of {path}: put {CLASSES_FILE} (one "
            f"class name per line) next to it, or provide the training manifest "
            f"(train.csv or train.jsonl in {folder}, or manifests={{'train': ...}})"
        )
    train_rows = rows if train_path == path else read_manifest(train_path)
    names = sorted({n for r in train_rows for n in (*r.labels, *r.ignore)})
    if not names:
        raise DatasetFormatError(
            f"{train_path}: no class names in the training manifest; add labels or {CLASSES_FILE}"
        )
    return names, str(train_path), train_path != path


@register_dataset("manifest")
def load_manifest(
    root: Path | None,
    split: str,
    manifests: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
) -> Split:
    """Load ``split`` from ``root/<split>.csv|.jsonl`` (see the module docstring)."""
    if root is None:
        raise ValueError(
            "manifest: a root is required (a folder with <split>.csv/.jsonl or a file)"
        )
    if root.is_file():
        path, folder = root, root.parent
    else:
        if not root.is_dir():
            raise FileNotFoundError(f"manifest: {root} does not exist")
        folder = root
        found = _find_manifest(root, split, manifests)
        if found is None:
            raise FileNotFoundError(
                f"manifest: no manifest for split {split!r}: expected {root / (split + '.csv')} "
                f"or {root / (split + '.jsonl')}, or manifests={{{split!r}: 'file'}}"
            )
        path = found
    rows = read_manifest(path)
    names, classes_source, strict = _class_list(path, rows, split, folder, manifests, classes)
    index = class_index(names)

    present: list[list[int]] = []
    ignored: list[list[int]] = []
    paths: list[Path] = []
    seen: dict[Path, int] = {}
    for row in rows:
        for name in (*row.labels, *row.ignore):
            if name not in index:
                what = "the class list" if strict else "the training manifest"
                raise DatasetFormatError(
                    f"{path}:{row.line}: unknown class {name!r} (not in {what} from "
                    f"{classes_source}); known: {', '.join(names[:20])}"
                    + (" ..." if len(names) > 20 else "")
                )
        both = sorted(set(row.labels) & set(row.ignore))
        if both:
            raise DatasetFormatError(
                f"{path}:{row.line}: class {both[0]!r} is both in labels and in ignore"
            )
        image_path = resolve_file(path.parent, row.image)
        key = Path(os.path.normpath(os.path.abspath(image_path)))
        if key in seen:
            raise DatasetFormatError(
                f"{path}:{row.line}: duplicate image {row.image!r} (already on line {seen[key]})"
            )
        seen[key] = row.line
        paths.append(image_path)
        present.append([index[n] for n in row.labels])
        ignored.append([index[n] for n in row.ignore])

    require_files(paths, lambda i: f"{path}:{rows[i].line}", f"manifest {split}")
    targets = targets_from_indices(present, len(names), ignored)  # (N, C)
    meta = base_meta(
        "manifest",
        split,
        targets,
        manifest=str(path),
        manifest_sha256=sha256_file(path),
        classes_source=classes_source,
        num_ignored=int((targets == -1).sum()),
    )
    log.info(
        "manifest %s: %d images, %d classes from %s", split, len(paths), len(names), classes_source
    )
    return file_split(
        f"manifest-{split}", names, paths, targets, ids=[r.image for r in rows], meta=meta
    )
