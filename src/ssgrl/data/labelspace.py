"""Helpers shared by the on-disk dataset loaders: class-name files, label rows → targets,
the start-up check that every listed image exists, and file digests for provenance."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ssgrl.data.base import ABSENT, IGNORE, PRESENT

MAX_LISTED = 5  # missing files named in one error message


class DatasetFormatError(ValueError):
    """A dataset file that does not match its documented format; the message names the file
    and the line or id."""


def read_class_names(path: Path) -> list[str]:
    """One class name per line (surrounding spaces and blank lines ignored), no duplicates."""
    names: list[str] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            name = line.strip()
            if not name:
                continue
            if name in first_line:
                raise DatasetFormatError(
                    f"{path}:{line_no}: class {name!r} is listed twice "
                    f"(first on line {first_line[name]}); class names must be unique"
                )
            first_line[name] = line_no
            names.append(name)
    if not names:
        raise DatasetFormatError(f"{path}: no class names (expected one name per line)")
    return names


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """``{name: column}``; raises on duplicate names."""
    index: dict[str, int] = {}
    for i, name in enumerate(classes):
        if name in index:
            raise ValueError(f"class {name!r} appears twice in the class list")
        index[name] = i
    return index


def targets_from_indices(
    present: Sequence[Iterable[int]],
    num_classes: int,
    ignore: Sequence[Iterable[int]] | None = None,
) -> np.ndarray:
    """(N, C) int8 targets: 1 at ``present[i]``, -1 at ``ignore[i]`` (present wins), else 0."""
    targets = np.full((len(present), num_classes), ABSENT, dtype=np.int8)  # (N, C)
    if ignore is not None:
        for row, cols in enumerate(ignore):
            targets[row, list(cols)] = IGNORE
    for row, cols in enumerate(present):
        targets[row, list(cols)] = PRESENT
    return targets


def missing_files(paths: Sequence[Path]) -> list[int]:
    """Indices of ``paths`` that are not existing files."""
    return [i for i, p in enumerate(paths) if not os.path.isfile(p)]


def require_files(paths: Sequence[Path], source: Callable[[int], str], what: str) -> None:
    """Raise ``FileNotFoundError`` naming the missing files and where each was listed.

    ``source(i)`` says where path i came from (``"train.csv line 3"``); ``what`` names the
    split (``"voc2007 trainval"``).
    """
    missing = missing_files(paths)
    if not missing:
        return
    lines = [f"  {paths[i]} (listed at {source(i)})" for i in missing[:MAX_LISTED]]
    if len(missing) > MAX_LISTED:
        lines.append(f"  ... and {len(missing) - MAX_LISTED} more")
    raise FileNotFoundError(
        f"{what}: {len(missing)} of {len(paths)} listed image file(s) do not exist:\n"
        + "\n".join(lines)
        + "\nCheck the dataset root and that the images were fully extracted."
    )


def base_meta(dataset: str, split: str, targets: np.ndarray, **extra: object) -> dict[str, object]:
    """The meta keys every loader fills: dataset, split, image and unlabelled counts."""
    meta: dict[str, object] = {
        "dataset": dataset,
        "split": split,
        "num_images": int(targets.shape[0]),
        "num_unlabelled": int((~(targets == PRESENT).any(axis=1)).sum()),
    }
    meta.update(extra)
    return meta


def resolve_file(root: Path, name: str | os.PathLike[str]) -> Path:
    """``name`` relative to ``root`` unless absolute."""
    p = Path(name)
    return p if p.is_absolute() else root / p


def need_root(root: Path | None, dataset: str, layout: str) -> Path:
    """``root`` as an existing folder or a clear error describing the expected layout."""
    if root is None:
        raise ValueError(f"{dataset}: a dataset root is required ({layout})")
    if not root.exists():
        raise FileNotFoundError(f"{dataset}: dataset root {root} does not exist ({layout})")
    return root


def check_option(name: str, value: str, choices: Sequence[str] | Mapping[str, object]) -> None:
    """Raise ``ValueError`` if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {', '.join(map(repr, choices))}")
