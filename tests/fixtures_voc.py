"""Shared builders for end-to-end tests: tiny VOCdevkit trees with several splits, and random
checkpoints in the SSGRL authors' layout for any number of classes.

The annotation writer and the authors' key layout come from the unit tests
(``tests/unit/test_voc.py``, ``tests/unit/test_official.py``), so both stay defined once.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

_UNIT = str(Path(__file__).resolve().parent / "unit")
if _UNIT not in sys.path:  # pytest's default (prepend) import mode puts it there as well
    sys.path.insert(0, _UNIT)
_voc_tests: Any = importlib.import_module("test_voc")
_official_tests: Any = importlib.import_module("test_official")

voc_xml = _voc_tests.voc_xml  # (objects: list[(name, difficult)]) -> annotation XML text
AUTHORS_N: int = _official_tests.N  # 2048, ResNet-101 channels
AUTHORS_D: int = _official_tests.D  # 1024 = d1 = d2
AUTHORS_DS: int = _official_tests.DS  # 300-d word vectors


def noise_jpeg(path: Path, seed: int, size: int = 32) -> None:
    """A random RGB JPEG: distinct images give distinct scores (no AP ties)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # (H, W, 3)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=95)


def make_voc_splits(
    root: Path,
    year: str,
    splits: dict[str, dict[str, list[tuple[str, int]]] | list[str]],
    size: int = 32,
) -> Path:
    """A VOCdevkit tree under ``root``: ``splits`` maps a split name to either
    ``{image id: [(class, difficult), ...]}`` (annotated) or a list of ids (no annotation files,
    as VOC 2012 test). Returns ``root/VOCdevkit/VOC<year>``."""
    base = root / "VOCdevkit" / f"VOC{year}"
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    seed = 0
    for name, content in splits.items():
        ids = list(content)
        for image_id in ids:
            seed += 1
            noise_jpeg(base / "JPEGImages" / f"{image_id}.jpg", seed, size)
            if isinstance(content, dict):
                (base / "Annotations" / f"{image_id}.xml").write_text(voc_xml(content[image_id]))
        (main / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return base


def authors_state(num_classes: int) -> dict[str, torch.Tensor]:
    """Random weights in the authors' key layout (ResNet-101, d1 = d2 = 1024) for
    ``num_classes`` classes: the unit tests' 4-class state with a new classifier."""
    state: dict[str, torch.Tensor] = dict(_official_tests._authors_state())
    g = torch.Generator().manual_seed(num_classes)
    state["classifiers.weight"] = torch.randn(num_classes, AUTHORS_N, generator=g)
    state["classifiers.bias"] = torch.randn(num_classes, generator=g)
    return state


def write_authors_files(root: Path, num_classes: int) -> dict[str, Path]:
    """``checkpoint.pth.tar`` ({'epoch', 'state_dict', 'best_mAP'}), ``prob.npy`` (C, C) and
    ``vectors.npy`` (C, 300) as the authors ship them; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(num_classes)
    adjacency = rng.uniform(0, 1, (num_classes, num_classes)).astype(np.float32)
    np.fill_diagonal(adjacency, 1.0)
    vectors = rng.normal(size=(num_classes, AUTHORS_DS)).astype(np.float32)
    files = {
        "ckpt": root / "checkpoint.pth.tar",
        "adj": root / "prob.npy",
        "emb": root / "vectors.npy",
    }
    state = authors_state(num_classes)
    torch.save({"epoch": 3, "state_dict": state, "best_mAP": np.float64(0.5)}, files["ckpt"])
    np.save(files["adj"], adjacency)
    np.save(files["emb"], vectors)
    return files
