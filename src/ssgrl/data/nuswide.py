"""NUS-WIDE, 81 concepts, in the common CSV layout (``dataset: nuswide``).

NUS-WIDE images are Flickr URLs and many have vanished: the dataset cannot be downloaded
whole, so bring your own copy of the images. ``root`` holds:

* ``csv_file="nus_wid_data.csv"`` — a CSV with a header and, per image, its path, its concept
  list and its split. Column names: the path is ``filepath`` (or ``image``/``path``/
  ``filename``), the labels ``label`` or ``labels``, the split ``split_name`` or ``split``.
  Labels are a Python-style list (``"['clouds', 'sky']"``, as in the ASL release), or names
  separated by ``|`` or spaces; splits are whatever the CSV says (``train``/``val``/``test``).
* the images, at ``images`` (default ``root``) joined with the CSV path.
* optionally ``Concepts81.txt`` (or ``ConceptsList/Concepts81.txt``; option ``concepts_file``):
  the class order, one concept per line. Without it the classes are the sorted names found in
  the whole CSV, so every split gets the same columns.

Missing images are an error naming the file and CSV line; ``skip_missing=True`` drops them
instead and logs how many (``Split.meta["num_missing"]``).
"""

from __future__ import annotations

import ast
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from ssgrl.data.base import Split, file_split
from ssgrl.data.labelspace import (
    DatasetFormatError,
    base_meta,
    class_index,
    missing_files,
    need_root,
    read_class_names,
    require_files,
    resolve_file,
    targets_from_indices,
)
from ssgrl.data.registry import register_dataset
from ssgrl.provenance import sha256_file

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("filepath", "image", "path", "filename")
LABEL_COLUMNS = ("label", "labels")
SPLIT_COLUMNS = ("split_name", "split")
CONCEPT_FILES = ("Concepts81.txt", "ConceptsList/Concepts81.txt")
LAYOUT = "expected root/nus_wid_data.csv with columns filepath,label,split_name and the images"


@dataclass(frozen=True)
class NusRow:
    line: int
    image: str
    labels: tuple[str, ...]
    split: str


def parse_concepts(field: str, where: str) -> tuple[str, ...]:
    """Concept names from ``"['a', 'b']"``, ``"a|b"`` or ``"a b"``."""
    text = field.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise DatasetFormatError(f"{where}: malformed label list {text!r}") from err
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise DatasetFormatError(f"{where}: label list {text!r} must hold concept-name strings")
        names = [v.strip() for v in value]
    else:
        names = text.split("|") if "|" in text else text.split()
    return tuple(n for n in (n.strip() for n in names) if n)


def _column(header: list[str], choices: tuple[str, ...], path: Path) -> int:
    for name in choices:
        if name in header:
            return header.index(name)
    raise DatasetFormatError(
        f"{path}:1: header {','.join(header)!r} has none of the columns {', '.join(choices)}"
    )


def read_nuswide_csv(path: Path) -> list[NusRow]:
    """All rows of the CSV (every split); raises on malformed rows."""
    if not path.is_file():
        raise FileNotFoundError(f"nuswide: CSV {path} does not exist ({LAYOUT})")
    rows: list[NusRow] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise DatasetFormatError(f"{path}: empty CSV ({LAYOUT})")
        ci = _column(header, IMAGE_COLUMNS, path)
        cl = _column(header, LABEL_COLUMNS, path)
        cs = _column(header, SPLIT_COLUMNS, path)
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DatasetFormatError(
                    f"{path}:{line}: {len(values)} fields, expected {len(header)}"
                )
            image, split = values[ci].strip(), values[cs].strip()
            if not image or not split:
                raise DatasetFormatError(f"{path}:{line}: empty image path or split name")
            rows.append(NusRow(line, image, parse_concepts(values[cl], f"{path}:{line}"), split))
    if not rows:
        raise DatasetFormatError(f"{path}: no image rows")
    return rows


@register_dataset("nuswide")
def load_nuswide(
    root: Path | None,
    split: str,
    csv_file: str = "nus_wid_data.csv",
    images: str = ".",
    concepts_file: str | None = None,
    skip_missing: bool = False,
) -> Split:
    """One split of NUS-WIDE from the CSV layout (see the module docstring)."""
    root = need_root(root, "nuswide", LAYOUT)
    csv_path = resolve_file(root, csv_file)
    rows = read_nuswide_csv(csv_path)

    candidates = CONCEPT_FILES if concepts_file is None else (concepts_file,)
    concepts_path = next(
        (p for p in (resolve_file(root, c) for c in candidates) if p.is_file()), None
    )
    if concepts_file is not None and concepts_path is None:
        raise FileNotFoundError(
            f"nuswide: concepts file {resolve_file(root, concepts_file)} does not exist"
        )
    if concepts_path is not None:
        classes = read_class_names(concepts_path)
    else:
        classes = sorted({n for r in rows for n in r.labels})
        if not classes:
            raise DatasetFormatError(f"{csv_path}: no concept names in the label column")
    index = class_index(classes)

    seen: dict[str, int] = {}
    for r in rows:
        if r.image in seen:
            raise DatasetFormatError(
                f"{csv_path}:{r.line}: duplicate image {r.image!r} (already on line {seen[r.image]})"
            )
        seen[r.image] = r.line
        for n in r.labels:
            if n not in index:
                raise DatasetFormatError(
                    f"{csv_path}:{r.line}: unknown concept {n!r} (not in {concepts_path})"
                )

    selected = [r for r in rows if r.split == split]
    if not selected:
        have = sorted({r.split for r in rows})
        raise ValueError(f"nuswide: no rows with split {split!r} in {csv_path}; splits: {have}")
    image_root = resolve_file(root, images)
    paths = [resolve_file(image_root, r.image) for r in selected]
    num_missing = 0
    if skip_missing:
        gone = set(missing_files(paths))
        num_missing = len(gone)
        if num_missing == len(paths):
            raise FileNotFoundError(
                f"nuswide {split}: none of the {len(paths)} images exist under {image_root} "
                f"(e.g. {paths[0]}); check the options root and images"
            )
        if gone:
            log.warning(
                "nuswide %s: %d of %d images are missing under %s and were skipped",
                split, num_missing, len(paths), image_root,
            )  # fmt: skip
            selected = [r for k, r in enumerate(selected) if k not in gone]
            paths = [p for k, p in enumerate(paths) if k not in gone]
    else:
        require_files(paths, lambda k: f"{csv_path}:{selected[k].line}", f"nuswide {split}")

    targets = targets_from_indices(
        [[index[n] for n in r.labels] for r in selected], len(classes)
    )  # (N, C)
    meta = base_meta(
        "nuswide",
        split,
        targets,
        csv_file=str(csv_path),
        csv_sha256=sha256_file(csv_path),
        classes_source=str(concepts_path) if concepts_path else f"sorted names in {csv_path}",
        num_missing=num_missing,
        skip_missing=skip_missing,
    )
    log.info("nuswide %s: %d images, %d concepts", split, len(paths), len(classes))
    return file_split(
        f"nuswide-{split}", classes, paths, targets, ids=[r.image for r in selected], meta=meta
    )
