"""The real-photo collage dataset (``ssgrl.data.photos``): deterministic files, labels that
follow the recorded layout (checked by an independent per-box visibility computation), and a
manifest the public loader reads."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ssgrl.cli import main
from ssgrl.data import photos
from ssgrl.data.photos import (
    CLASSES,
    SOURCES,
    VISIBLE_MIN,
    MissingPhotosError,
    Paste,
    Source,
    labels_from_pastes,
    make_photos,
    visible_fractions,
)
from ssgrl.data.registry import load_split
from ssgrl.provenance import sha256_file

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

SMALL = {"num_train": 10, "num_val": 4, "num_test": 4, "image_size": 64}


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos") / "d"
    make_photos(root, seed=3, **SMALL)
    return root


def test_same_seed_same_files(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    make_photos(again, seed=3, **SMALL)
    assert tree_hashes(again) == tree_hashes(dataset)
    other = tmp_path / "other"
    make_photos(other, seed=4, **SMALL)
    a, b = tree_hashes(dataset), tree_hashes(other)
    assert a.keys() == b.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 18
    assert all(a[k] != b[k] for k in images)  # another seed, other images


def test_a_smaller_dataset_is_a_prefix(dataset: Path, tmp_path: Path) -> None:
    """Each image has its own random stream: the first images do not depend on the counts."""
    small = tmp_path / "small"
    make_photos(small, num_train=3, num_val=1, num_test=0, image_size=64, seed=3)
    hashes, full = tree_hashes(small), tree_hashes(dataset)
    for name in ("train/train_00000.jpg", "train/train_00002.jpg", "val/val_00000.jpg"):
        assert hashes[name] == full[name]
    assert not (small / "test.csv").exists()


def independent_visible(dests: list[list[int]], size: int) -> list[float]:
    """Per box: the pixels of the box inside the frame that no later box covers, over the
    box's area (boolean masks, one per box; not the generator's owner map)."""
    masks = []
    for x0, y0, x1, y1 in dests:
        m = np.zeros((size, size), dtype=bool)
        ys = np.arange(size)[:, None]
        xs = np.arange(size)[None, :]
        m[(ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)] = True
        masks.append(m)
    out = []
    for i, (x0, y0, x1, y1) in enumerate(dests):
        covered = np.zeros((size, size), dtype=bool)
        for later in masks[i + 1 :]:
            covered |= later
        out.append(float((masks[i] & ~covered).sum()) / ((x1 - x0) * (y1 - y0)))
    return out


def test_labels_follow_the_placement_record(dataset: Path) -> None:
    seen_occluded = False
    for split in ("train", "val", "test"):
        with (dataset / f"{split}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        records = [json.loads(line) for line in (dataset / f"{split}_placements.jsonl").open()]
        assert [r["image"] for r in records] == [r["image"] for r in rows]
        for row, rec in zip(rows, records, strict=True):
            pastes = rec["pastes"]
            visible = independent_visible([p["dest"] for p in pastes], SMALL["image_size"])
            assert [p["visible"] for p in pastes] == pytest.approx(visible, abs=1e-6)
            # the rule, applied by hand to the recomputed visibility
            best: dict[str, float] = {}
            for p, v in zip(pastes, visible, strict=True):
                if p["kind"] == "object":
                    best[p["label"]] = max(best.get(p["label"], 0.0), v)
                    seen_occluded |= v < 1.0
            present = sorted(c for c, v in best.items() if v >= VISIBLE_MIN)
            ignored = sorted(c for c, v in best.items() if 0 < v < VISIBLE_MIN)
            assert (row["ignore"].split("|") if row["ignore"] else []) == ignored
            assert (row["labels"].split("|") if row["labels"] else []) == present
            # distractors carry no label; objects come from their class's photos
            for p in pastes:
                if p["kind"] == "distractor":
                    assert p["label"] is None
                else:
                    assert p["region"] in {r.source for r in photos.OBJECTS[p["label"]]}
    assert seen_occluded  # the layouts do occlude and cut objects


def test_visible_fractions_by_hand() -> None:
    # the second box covers the right half of the first; the third sticks out of the frame
    fr = visible_fractions([(0, 0, 10, 10), (5, 0, 15, 10), (-5, 15, 5, 25)], 20)
    assert fr == pytest.approx([0.5, 1.0, 25 / 100])
    # fully covered, and entirely outside the frame
    assert visible_fractions([(2, 2, 4, 4), (0, 0, 8, 8), (30, 30, 40, 40)], 20) == [0, 1, 0]


def paste(label: str | None, visible: float, kind: str = "object") -> Paste:
    return Paste(kind, label, "x", (0, 0, 1, 1), (0, 0, 1, 1), False, visible)


def test_label_rule_edges() -> None:
    assert labels_from_pastes([paste("cat", VISIBLE_MIN)]) == (("cat",), ())
    assert labels_from_pastes([paste("cat", VISIBLE_MIN - 0.01)]) == ((), ("cat",))
    assert labels_from_pastes([paste("cat", 0.0)]) == ((), ())  # fully hidden: absent
    # one visible copy is enough; a distractor never labels
    two = [paste("cup", 0.1), paste("cup", 0.9), paste(None, 1.0, "distractor")]
    assert labels_from_pastes(two) == (("cup",), ())


def test_the_manifest_loads(dataset: Path) -> None:
    for split, n in (("train", 10), ("val", 4), ("test", 4)):
        data = load_split("manifest", split, dataset)
        assert list(data.classes) == list(CLASSES)
        assert len(data) == n
        with (dataset / f"{split}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        for i, row in enumerate(rows):
            expected = np.zeros(len(CLASSES), dtype=np.int64)
            for name in filter(None, row["labels"].split("|")):
                expected[CLASSES.index(name)] = 1
            for name in filter(None, row["ignore"].split("|")):
                expected[CLASSES.index(name)] = -1
            assert data.targets[i].tolist() == expected.tolist()
            image = data.load_image(i)
            assert image.size == (64, 64) and image.mode == "RGB"


def test_provenance(dataset: Path) -> None:
    info = json.loads((dataset / "provenance.json").read_text())
    assert info["classes"] == list(CLASSES)
    assert info["counts"] == {"train": 10, "val": 4, "test": 4}
    for entry in info["sources"]:
        assert entry["sha256"] == sha256_file(photos.source_path(SOURCES[entry["name"]]))
        assert entry["licence"]
    text = (dataset / "PROVENANCE.md").read_text()
    assert "collage" in text and "CC BY 2.0" in text


def test_errors(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileExistsError, match="not empty"):
        make_photos(dataset, **SMALL)
    with pytest.raises(ValueError, match="num_train"):
        make_photos(tmp_path / "a", num_train=0)
    with pytest.raises(ValueError, match="num_val"):
        make_photos(tmp_path / "b", num_val=-1)
    missing = Source("ghost", "no_such_package_xyz", "a.png", "CC0", "nobody")
    with pytest.raises(MissingPhotosError, match=r"no_such_package_xyz.*not installed"):
        photos.source_path(missing)
    absent = Source("ghost", "skimage.data", "no_such_photo.png", "CC0", "nobody")
    with pytest.raises(MissingPhotosError, match=r"no_such_photo\.png"):
        photos.source_path(absent)
    monkeypatch.setitem(photos.SOURCES, "chelsea", missing)
    with pytest.raises(MissingPhotosError):
        make_photos(tmp_path / "c", **SMALL)
    assert not (tmp_path / "c").exists()  # nothing written before the photos are found


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["make-photos", str(out), "--num-train", "3", "--num-val", "1", "--num-test", "1"]
    assert main([*argv, "--image-size", "48", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 images" in printed and str(out) in printed
    assert len(list((out / "train").glob("*.jpg"))) == 3
    assert main(argv) == 2  # the folder is not empty now
    assert "not empty" in capsys.readouterr().out
