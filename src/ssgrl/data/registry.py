"""Datasets by name: ``load_split("voc2007", "trainval", root=..., difficult="ignore")``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssgrl.data.base import Split

SplitLoader = Callable[..., Split]
"""``loader(root: Path | None, split: str, **options) -> Split``."""

_LOADERS: dict[str, SplitLoader] = {}
# datasets whose class list depends on their files (a manifest's), so that a checkpoint's list
# is passed in as the ``classes`` option when only an evaluation split is read
_TAKES_CLASSES = {"manifest"}

# module that registers each dataset name, imported on first use
_MODULES = {
    "synthetic": "ssgrl.data.synthetic",
    "manifest": "ssgrl.data.manifest",
    "voc2007": "ssgrl.data.voc",
    "voc2012": "ssgrl.data.voc",
    "coco2014": "ssgrl.data.coco",
    "vg500": "ssgrl.data.vg",
    "nuswide": "ssgrl.data.nuswide",
}


def register_dataset(name: str) -> Callable[[SplitLoader], SplitLoader]:
    def wrap(fn: SplitLoader) -> SplitLoader:
        _LOADERS[name] = fn
        return fn

    return wrap


def takes_classes(dataset: str) -> bool:
    """Whether ``dataset``'s loader takes a ``classes`` option fixing the class order."""
    return dataset in _TAKES_CLASSES


def dataset_names() -> list[str]:
    return sorted(set(_MODULES) | set(_LOADERS))


def load_split(dataset: str, split: str, root: str | Path | None = None, **options: Any) -> Split:
    """Load one split of a named dataset; ``options`` are the dataset's own keyword options."""
    if dataset not in _LOADERS:
        if dataset not in _MODULES:
            raise ValueError(
                f"unknown dataset {dataset!r}; expected one of {', '.join(dataset_names())}"
            )
        importlib.import_module(_MODULES[dataset])
    return _LOADERS[dataset](None if root is None else Path(root), split, **options)
