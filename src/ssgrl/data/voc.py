"""PASCAL VOC 2007 / 2012 classification (``dataset: voc2007`` / ``voc2012``).

``root`` is the folder holding ``VOCdevkit/VOC2007`` (``root`` may also be ``VOCdevkit`` or
``VOC2007`` itself). Read: ``ImageSets/Main/<split>.txt`` (ids), ``Annotations/<id>.xml``,
``JPEGImages/<id>.jpg``; splits ``train``, ``val``, ``trainval``, ``test``.

Option ``difficult`` decides what an object flagged ``difficult`` means for its class:
``"ignore"`` (default, as the devkit and mmpretrain): target -1 unless a non-difficult object of
the class is also in the image; ``"negative"`` (the SSGRL authors' code): the object is dropped,
so the class is 0 unless a non-difficult object is present; ``"positive"``: present like any
other object.

VOC 2012 test annotations are not public: that split has ``has_labels=False`` and all-zero
targets; score it with :func:`write_voc_submission` and the evaluation server.
``Split.boxes`` lists every object (difficult included) as ``(class, x0, y0, x1, y1)`` in
0-based pixel coordinates (``xmin - 1, ymin - 1, xmax, ymax`` of the 1-based XML).
"""

from __future__ import annotations

import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ssgrl.data.base import Split, file_split
from ssgrl.data.labelspace import (
    DatasetFormatError,
    base_meta,
    check_option,
    need_root,
    require_files,
    targets_from_indices,
)
from ssgrl.data.registry import register_dataset

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
DIFFICULT_POLICIES = ("ignore", "negative", "positive")
Difficult = Literal["ignore", "negative", "positive"]
LAYOUT = "expected root/VOCdevkit/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}"


@dataclass(frozen=True)
class VocObject:
    """One ``<object>`` of a VOC annotation; ``box`` is 0-based ``(x0, y0, x1, y1)``."""

    name: str
    difficult: bool
    box: tuple[float, float, float, float] | None


def parse_voc_xml(path: Path, data: bytes | None = None) -> list[VocObject]:
    """The objects of one VOC annotation file (``data``: its bytes, if already read).

    A document type declaration is refused before parsing: VOC annotations never have one, and
    entity definitions are how XML bombs (billion laughs, quadratic blow-up) and external
    entities get in. Parsing time and memory stay bounded by the file's size."""
    data = path.read_bytes() if data is None else data
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DatasetFormatError(
            f"{path}: declares a document type or entities, which VOC annotations never do; "
            "refused (an XML entity-expansion bomb or external entity would hide there)"
        )
    try:
        tree = ET.fromstring(data)
    except ET.ParseError as err:
        raise DatasetFormatError(f"{path}: not a valid annotation XML ({err})") from err
    objects = []
    for k, obj in enumerate(tree.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetFormatError(f"{path}: object {k + 1} has no <name>")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise DatasetFormatError(
                f"{path}: object {k + 1} ({name}) has <difficult>{flag}</difficult>; expected 0 or 1"
            )
        box = None
        bnd = obj.find("bndbox")
        if bnd is not None:
            try:
                x0, y0, x1, y1 = (
                    float(bnd.findtext(t) or "") for t in ("xmin", "ymin", "xmax", "ymax")
                )
            except ValueError as err:
                raise DatasetFormatError(
                    f"{path}: object {k + 1} ({name}) has a malformed <bndbox> ({err})"
                ) from err
            box = (x0 - 1.0, y0 - 1.0, x1, y1)
        objects.append(VocObject(name, flag == "1", box))
    return objects


def voc_year_dir(root: Path, year: str) -> Path:
    """``root/VOCdevkit/VOC<year>``, ``root/VOC<year>`` or ``root`` itself, whichever exists."""
    name = f"VOC{year}"
    for cand in (root / "VOCdevkit" / name, root / name, root):
        if (cand / "ImageSets" / "Main").is_dir():
            if cand == root and re.fullmatch(r"VOC\d{4}", root.name) and root.name != name:
                raise FileNotFoundError(f"voc{year}: {root} is a {root.name} folder, not {name}")
            return cand
    raise FileNotFoundError(
        f"voc{year}: no {name}/ImageSets/Main under {root} (tried {root / 'VOCdevkit' / name}, "
        f"{root / name}, {root}); {LAYOUT}"
    )


def _read_ids(path: Path, year: str) -> tuple[list[str], list[int]]:
    """Image ids of a split file and the line each was on."""
    if not path.is_file():
        main = path.parent
        have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(
            f"voc{year}: split file {path} does not exist; splits here: {', '.join(have) or 'none'}"
        )
    ids: list[str] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] in seen:
            raise DatasetFormatError(
                f"{path}:{line_no}: duplicate image id {parts[0]!r} (already on line {seen[parts[0]]})"
            )
        seen[parts[0]] = line_no
        ids.append(parts[0])
        lines.append(line_no)
    if not ids:
        raise DatasetFormatError(f"{path}: no image ids")
    return ids, lines


def load_voc(root: Path | None, split: str, year: str, difficult: Difficult = "ignore") -> Split:
    """One split of VOC ``year`` (see the module docstring)."""
    check_option("difficult", difficult, DIFFICULT_POLICIES)
    base = voc_year_dir(need_root(root, f"voc{year}", LAYOUT), year)
    list_file = base / "ImageSets" / "Main" / f"{split}.txt"
    ids, lines = _read_ids(list_file, year)
    paths = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
    require_files(paths, lambda k: f"{list_file}:{lines[k]}, id {ids[k]}", f"voc{year} {split}")

    index = {name: c for c, name in enumerate(VOC_CLASSES)}
    has_labels = not (year == "2012" and split == "test")
    present: list[set[int]] = [set() for _ in ids]
    ignored: list[set[int]] = [set() for _ in ids]
    boxes: list[list[tuple[int, float, float, float, float]]] = [[] for _ in ids]
    digest = hashlib.sha256()
    if has_labels:
        for k, image_id in enumerate(ids):
            xml = base / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise FileNotFoundError(
                    f"voc{year} {split}: annotation {xml} does not exist "
                    f"(image id {image_id}, {list_file}:{lines[k]})"
                )
            data = xml.read_bytes()
            digest.update(data)
            for obj in parse_voc_xml(xml, data):
                if obj.name not in index:
                    raise DatasetFormatError(
                        f"{xml}: object class {obj.name!r} is not one of the 20 VOC classes "
                        f"({', '.join(VOC_CLASSES)})"
                    )
                c = index[obj.name]
                if obj.box is not None:
                    boxes[k].append((c, *obj.box))
                if not obj.difficult or difficult == "positive":
                    present[k].add(c)
                elif difficult == "ignore":
                    ignored[k].add(c)
    targets = targets_from_indices(present, len(VOC_CLASSES), ignored)  # (N, 20)
    meta = base_meta(
        f"voc{year}",
        split,
        targets,
        year=year,
        difficult=difficult,
        root=str(base),
        list_file=str(list_file),
        labels="public" if has_labels else "not public (evaluation server only)",
        annotations_sha256=digest.hexdigest() if has_labels else None,
        num_ignored=int((targets == -1).sum()),
    )
    if not has_labels:
        log.info("voc%s %s: %d images, labels not public", year, split, len(ids))
    else:
        log.info(
            "voc%s %s: %d images, difficult=%s, %d ignored entries",
            year, split, len(ids), difficult, meta["num_ignored"],
        )  # fmt: skip
    out = file_split(
        f"voc{year}-{split}", VOC_CLASSES, paths, targets, ids=ids, has_labels=has_labels, meta=meta
    )
    out.boxes = boxes if has_labels else None
    return out


@register_dataset("voc2007")
def load_voc2007(root: Path | None, split: str, difficult: Difficult = "ignore") -> Split:
    """VOC 2007 ``train``/``val``/``trainval``/``test``."""
    return load_voc(root, split, "2007", difficult)


@register_dataset("voc2012")
def load_voc2012(root: Path | None, split: str, difficult: Difficult = "ignore") -> Split:
    """VOC 2012 ``train``/``val``/``trainval``/``test`` (test: no public labels)."""
    return load_voc(root, split, "2012", difficult)


def write_voc_submission(
    ids: Sequence[str],
    scores: np.ndarray,
    classes: Sequence[str],
    out_dir: Path,
    year: str = "2012",
    comp: int = 1,
) -> Path:
    """Write the evaluation-server files ``results/VOC<year>/Main/comp<comp>_cls_test_<class>.txt``.

    ``scores`` (N, C) are per image and class, in ``classes`` order (any order of the 20 VOC
    classes); one ``"<image id> <score>"`` line per image with 6 decimals. Pass logits rather
    than sigmoid probabilities, which saturate to ``1.000000`` ties. Use ``comp=2`` if training
    used data outside VOC (e.g. COCO pre-training). Returns the ``results`` folder; archive it
    with ``tar -czf results.tgz -C <out_dir> results``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != (len(ids), len(classes)):
        raise ValueError(
            f"scores have shape {scores.shape}; expected ({len(ids)}, {len(classes)}) = (ids, classes)"
        )
    if sorted(classes) != sorted(VOC_CLASSES):
        raise ValueError(f"classes must be the 20 VOC classes once each, got {list(classes)}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates; the server expects one line per image")
    bad = np.argwhere(~np.isfinite(scores))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise ValueError(
            f"score of image {ids[row]!r}, class {classes[col]!r} is {scores[row, col]}"
        )
    if comp not in (1, 2):
        raise ValueError(f"comp={comp}; expected 1 (VOC data only) or 2 (outside data)")
    results = Path(out_dir) / "results"
    main = results / f"VOC{year}" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(classes):
        lines = [
            f"{image_id} {score:.6f}\n" for image_id, score in zip(ids, scores[:, c], strict=True)
        ]
        (main / f"comp{comp}_cls_test_{name}.txt").write_text("".join(lines), encoding="utf-8")
    log.info("wrote VOC%s submission files for %d images to %s", year, len(ids), main)
    return results
