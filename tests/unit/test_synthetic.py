"""The synthetic scene dataset: determinism, label structure, boxes, options and the manifest."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import save_split_as_manifest

from ssgrl.data.base import Split
from ssgrl.data.decode import open_image
from ssgrl.data.registry import load_split
from ssgrl.data.synthetic import (
    CLASSES,
    GENERATOR_VERSION,
    SCENES,
    Renderer,
    generate,
    load_synthetic,
    render,
)


def _split(split: str = "train", n: int = 12, **options: object) -> Split:
    sizes = {"train": "num_train", "val": "num_val", "test": "num_test"}
    return load_synthetic(None, split, **{sizes[split]: n, **options})  # type: ignore[arg-type]


def test_classes_and_scenes_are_consistent() -> None:
    assert 10 <= len(CLASSES) <= 20
    assert len(set(CLASSES)) == len(CLASSES)
    for spec in SCENES.values():
        probs = spec.probabilities()
        assert set(probs) <= set(CLASSES), spec.name
        assert all(0.0 < p < 1.0 for p in probs.values()), spec.name
        assert not set(spec.likely) & set(spec.occasional), spec.name
        assert len(probs) < len(CLASSES)  # every scene excludes some classes
    assert set().union(*(s.probabilities() for s in SCENES.values())) == set(CLASSES)


def test_same_seed_gives_identical_bytes_and_labels() -> None:
    a, b = _split(n=6, seed=3), _split(n=6, seed=3)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert a.boxes == b.boxes
    assert a.meta["scenes"] == b.meta["scenes"]
    for i in range(6):
        assert a.load_image(i).tobytes() == b.load_image(i).tobytes()
        assert a.load_image(i).tobytes() == a.load_image(i).tobytes()  # rendering twice


def test_different_seed_or_split_gives_different_data() -> None:
    a, b = _split(n=20, seed=0), _split(n=20, seed=1)
    assert not np.array_equal(a.targets, b.targets)
    assert a.load_image(0).tobytes() != b.load_image(0).tobytes()
    val = _split("val", n=20, seed=0)
    assert not np.array_equal(a.targets, val.targets)
    assert a.load_image(0).tobytes() != val.load_image(0).tobytes()


def test_rendering_order_and_split_size_do_not_matter() -> None:
    a, b = _split(n=8), _split(n=30)
    forward = [a.load_image(i).tobytes() for i in range(8)]
    backward = [b.load_image(i).tobytes() for i in reversed(range(8))][::-1]
    assert forward == backward
    np.testing.assert_array_equal(a.targets, b.targets[:8])
    assert a.boxes == b.boxes[:8]  # type: ignore[index]


def test_generate_matches_the_loaded_split() -> None:
    targets, boxes, scenes = generate("test", 15, image_size=96, seed=5)
    split = _split("test", n=15, image_size=96, seed=5)
    np.testing.assert_array_equal(targets, split.targets)
    assert boxes == split.boxes
    assert scenes == split.meta["scenes"]
    assert targets.shape == (15, len(CLASSES)) and targets.dtype == np.int8


def test_label_structure_follows_the_scenes() -> None:
    targets, _, scenes = generate("train", 2000, seed=0)
    y = targets.astype(float)  # (N, C)
    count = y.sum(0)
    assert (y.sum(1) >= 1).all() and (y.sum(1) <= 4).all()
    # every present class is allowed by its image's scene
    for row, scene in zip(targets, scenes, strict=True):
        present = {CLASSES[c] for c in np.flatnonzero(row == 1)}
        assert present <= set(SCENES[scene].probabilities()), (scene, present)
    assert set(scenes) == set(SCENES)
    # co-occurrence: some P(j | i) > 0.6, and two common classes that never meet
    co = y.T @ y  # (C, C)
    cond = co / count[:, None]
    np.fill_diagonal(cond, 0.0)
    assert cond.max() > 0.6
    star, moon, sun = (CLASSES.index(c) for c in ("star", "moon", "sun"))
    assert cond[star, moon] > 0.6
    assert count[sun] > 0.1 * len(y) and count[moon] > 0.1 * len(y)
    assert co[sun, moon] == 0 and co[sun, star] == 0


def test_boxes_are_consistent_with_labels_and_image() -> None:
    size = 224
    targets, boxes, _ = generate("val", 300, image_size=size, seed=2)
    for row, image_boxes in zip(targets, boxes, strict=True):
        assert 1 <= len(image_boxes) <= 5
        classes = {b[0] for b in image_boxes}
        assert classes == set(np.flatnonzero(row == 1).tolist())
        for _, x0, y0, x1, y1 in image_boxes:
            assert 0.0 <= x0 < x1 <= size and 0.0 <= y0 < y1 <= size
    # some objects are cut by the border, some are small
    touching = [b for bs in boxes for b in bs if min(b[1], b[2]) == 0.0 or max(b[3], b[4]) == size]
    sides = [np.sqrt((b[3] - b[1]) * (b[4] - b[2])) for bs in boxes for b in bs]
    assert len(touching) > 10
    assert min(sides) < 0.1 * size < np.median(sides)


def test_boxes_enclose_the_drawn_objects() -> None:
    # oracle: the same image rendered without its objects; pixels may differ only inside boxes
    size = 128
    split = _split(n=40, seed=7, image_size=size)
    assert isinstance(split.loader, Renderer)
    for i, layout in enumerate(split.loader.layouts):
        full = np.asarray(render(layout, size), dtype=np.int16)
        bare = np.asarray(render(dataclasses.replace(layout, objects=()), size), dtype=np.int16)
        changed = (full != bare).any(axis=-1)  # (H, W)
        inside = np.zeros_like(changed)
        for _, x0, y0, x1, y1 in split.boxes[i]:  # type: ignore[index]
            ya, yb = max(math.floor(y0) - 1, 0), math.ceil(y1) + 1
            xa, xb = max(math.floor(x0) - 1, 0), math.ceil(x1) + 1
            assert changed[ya:yb, xa:xb].mean() > 0.1, (split.ids[i], x0, y0, x1, y1)
            inside[ya:yb, xa:xb] = True
        assert not (changed & ~inside).any(), split.ids[i]


@pytest.mark.parametrize("size", [32, 97])
def test_image_size_option(size: int) -> None:
    split = _split("val", n=3, image_size=size)
    assert split.load_image(2).size == (size, size)
    assert split.load_image(2).mode == "RGB"
    assert all(b[3] <= size and b[4] <= size for bs in split.boxes for b in bs)  # type: ignore[union-attr]
    # the layout is in unit coordinates: boxes scale with the size
    big = _split("val", n=3, image_size=2 * size)
    for small_boxes, big_boxes in zip(split.boxes, big.boxes, strict=True):  # type: ignore[arg-type]
        for s, b in zip(small_boxes, big_boxes, strict=True):
            assert s[0] == b[0]
            np.testing.assert_allclose(np.array(s[1:]) * 2, b[1:], atol=0.02)


def test_ids_meta_and_sizes() -> None:
    split = load_synthetic(None, "test", num_train=5, num_val=6, num_test=7, seed=4)
    assert split.ids == [f"synthetic/test/{i:06d}" for i in range(7)]
    assert split.classes == CLASSES and len(split) == 7
    assert len(split.meta["scenes"]) == 7 and set(split.meta["scenes"]) <= set(SCENES)
    assert split.meta["params"]["seed"] == 4 and split.meta["params"]["num_test"] == 7
    assert split.has_labels and split.num_unlabelled == 0
    assert len(_split("val", n=0)) == 0


def test_num_classes_keeps_the_first_classes() -> None:
    split = _split(n=200, num_classes=4)
    assert split.classes == CLASSES[:4]
    assert split.targets.shape == (200, 4)
    assert (split.targets.sum(1) >= 1).all()  # scenes without kept classes are not drawn
    assert all(b[0] < 4 for bs in split.boxes for b in bs)  # type: ignore[union-attr]
    assert all(split.targets[:, c].any() for c in range(4))
    one = _split(n=10, num_classes=1)
    assert (one.targets == 1).all()


def test_registry_loads_synthetic() -> None:
    split = load_split("synthetic", "val", num_val=3, image_size=64)
    assert len(split) == 3 and split.load_image(0).size == (64, 64)
    ref = _split("val", n=3, image_size=64)
    assert split.load_image(1).tobytes() == ref.load_image(1).tobytes()


@pytest.mark.parametrize(
    ("split", "options", "message"),
    [
        ("trainval", {}, "unknown split 'trainval'"),
        ("train", {"num_classes": 0}, "num_classes"),
        ("train", {"num_classes": len(CLASSES) + 1}, "num_classes"),
        ("train", {"image_size": 8}, "image_size"),
        ("train", {"num_train": -1}, "size >= 0"),
    ],
)
def test_bad_options_raise_clear_errors(split: str, options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_synthetic(None, split, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected one of train, val, test"):
        generate("trainval", 3)


def test_split_pickles_for_dataloader_workers() -> None:
    split = _split(n=3, image_size=40)
    clone = pickle.loads(pickle.dumps(split))
    assert clone.load_image(2).tobytes() == split.load_image(2).tobytes()


def test_loader_index_out_of_range() -> None:
    split = _split(n=2)
    with pytest.raises(IndexError, match="out of range"):
        split.load_image(2)


def test_save_split_as_manifest_round_trip(tmp_path: Path) -> None:
    split = _split("val", n=5, image_size=48, seed=9)
    manifest = save_split_as_manifest(split, tmp_path / "out")
    assert manifest == tmp_path / "out" / "manifest.csv"
    classes = (tmp_path / "out" / "classes.txt").read_text(encoding="utf-8").splitlines()
    assert tuple(classes) == split.classes
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "labels"]
    assert len(rows) == 6
    for i, (rel, labels) in enumerate(rows[1:]):
        assert not Path(rel).is_absolute()
        expected = [CLASSES[c] for c in np.flatnonzero(split.targets[i] == 1)]
        assert labels.split("|") == expected
        saved = np.asarray(open_image(manifest.parent / rel))
        np.testing.assert_array_equal(saved, np.asarray(split.load_image(i)))  # PNG is lossless


# Pinned output of the generator: sha256 of image pixels (``tobytes()``), of the int8 targets and
# of ``repr(boxes)`` of 20-image splits loaded through the registry. A refactor must keep these
# bytes. Changing what the generator draws (shapes, layouts, colours, RNG use) means bumping
# GENERATOR_VERSION and updating these hashes together, so that data saved under one version is
# never mistaken for another. (A Pillow or NumPy upgrade that rasterises or samples differently
# shows up here too.)
# (split, image_size, seed, num_classes, image index, image sha256, targets sha256, boxes sha256)
PINNED = [
    (
        "train",
        96,
        0,
        None,
        0,
        "3f2d70ed8eba7636f7dd0350deb58534ff10b5b103006db9532ef77054dff66f",
        "e418790a2997d1c145227296820c858af4aba06cf281dab1eadc0c493e001c8a",
        "9484b85a52f75d3b3fbd682165ea2695448e8135260d70614a10dfaa90ff76f4",
    ),
    (
        "val",
        224,
        3,
        5,
        7,
        "f81599489811cf02a135d1fddbf08b3908f46992df64b773df5b777a24811fa9",
        "b38e304409594f5be41edee897b5f3b4c7c8a5122d223dce786e80e0056371bd",
        "8d3ab23c80d9b7dc581189b3e78f531dcc3ab628afad3c4330ce7cb3bc7d9b35",
    ),
    (
        "test",
        224,
        0,
        None,
        19,
        "5274b6f195c2ba7fded52257ea3317ffa0182eae6637a3de10c30e13c7e5b9e6",
        "b006bc0afcfd8088292c1590c56836ccf047ac880e1e592a54d8498ad356d217",
        "5f3ea58ad135a6cb3bcc254592b17e585ce5fe391a840c9a2e9e7a45bd47b772",
    ),
    (
        "test",
        96,
        3,
        None,
        4,
        "afb14efc50059d70fab75b8adb6c514db427ce215b42c6098c84c0a85732322e",
        "3b3bbff6208673c9576ae53a2c56d1529208736e6b21cd41d2397025ff54874d",
        "b78b64f2565b99190fda7302796ac9b4ce975d715b9b1e7bd9a436db7bc1b1f4",
    ),
]


@pytest.mark.parametrize(
    ("split", "size", "seed", "num_classes", "index", "image", "targets", "boxes"), PINNED
)
def test_output_is_pinned_for_this_generator_version(
    split: str,
    size: int,
    seed: int,
    num_classes: int | None,
    index: int,
    image: str,
    targets: str,
    boxes: str,
) -> None:
    assert GENERATOR_VERSION == 1, "new generator version: update PINNED"
    data = load_split(
        "synthetic",
        split,
        None,
        num_train=20,
        num_val=20,
        num_test=20,
        image_size=size,
        seed=seed,
        num_classes=num_classes,
    )
    assert data.targets.shape == (20, num_classes or len(CLASSES))
    assert data.targets.dtype == np.int8
    assert hashlib.sha256(data.targets.tobytes()).hexdigest() == targets
    assert hashlib.sha256(repr(data.boxes).encode()).hexdigest() == boxes
    assert hashlib.sha256(data.load_image(index).tobytes()).hexdigest() == image
