"""The ``manifest`` loader on CSV / JSON Lines manifests written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.manifest import load_manifest
from ssgrl.data.registry import load_split


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 200, 30)).save(path, "JPEG")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a.jpg", "b.jpg", "c.jpg", "img/d.jpg", "img/e.jpg"):
        jpeg(tmp_path / name)
    write(
        tmp_path / "train.csv",
        "image,labels,ignore\na.jpg,dog|person,\nb.jpg,,\n\nc.jpg, cat ,dog\n",
    )
    write(
        tmp_path / "val.jsonl",
        json.dumps({"image": "img/d.jpg", "labels": ["person", "cat"]})
        + "\n\n"
        + json.dumps({"image": "img/e.jpg", "labels": [], "ignore": ["person"]})
        + "\n",
    )
    return tmp_path


def test_csv_targets_and_classes_from_training_manifest(root: Path) -> None:
    split = load_manifest(root, "train")
    assert split.classes == ("cat", "dog", "person")  # sorted names of the training manifest
    assert split.ids == ["a.jpg", "b.jpg", "c.jpg"]
    expected = np.array([[0, 1, 1], [0, 0, 0], [1, -1, 0]], dtype=np.int8)
    np.testing.assert_array_equal(split.targets, expected)
    assert split.has_labels
    assert split.meta["num_images"] == 3
    assert split.meta["num_unlabelled"] == 1
    assert split.meta["num_ignored"] == 1
    assert split.meta["classes_source"] == str(root / "train.csv")
    img = split.load_image(2)
    assert img.size == (8, 8) and img.mode == "RGB"


def test_jsonl_val_uses_the_training_class_order(root: Path) -> None:
    split = load_split("manifest", "val", root=root)
    assert split.classes == ("cat", "dog", "person")
    np.testing.assert_array_equal(split.targets, [[1, 0, 1], [0, 0, -1]])
    assert split.ids == ["img/d.jpg", "img/e.jpg"]


def test_unknown_class_in_val_names_file_and_line(root: Path) -> None:
    write(
        root / "val.jsonl",
        '{"image": "a.jpg", "labels": ["cat"]}\n{"image": "b.jpg", "labels": ["cow"]}\n',
    )
    with pytest.raises(DatasetFormatError, match=r"val\.jsonl:2: unknown class 'cow'"):
        load_manifest(root, "val")


def test_classes_txt_sets_order_and_makes_every_split_strict(root: Path) -> None:
    write(root / "classes.txt", "person\n\ndog\ncat\nbird\n")
    split = load_manifest(root, "train")
    assert split.classes == ("person", "dog", "cat", "bird")
    np.testing.assert_array_equal(split.targets, [[1, 1, 0, 0], [0, 0, 0, 0], [0, -1, 1, 0]])
    write(root / "classes.txt", "person\ndog\n")
    with pytest.raises(DatasetFormatError, match=r"train\.csv:5: unknown class 'cat'"):
        load_manifest(root, "train")


def test_classes_option_overrides_files(root: Path) -> None:
    split = load_manifest(root, "val", classes=["person", "cat", "dog"])
    np.testing.assert_array_equal(split.targets, [[1, 1, 0], [-1, 0, 0]])


def test_manifests_option_root_as_file_and_absolute_paths(tmp_path: Path) -> None:
    jpeg(tmp_path / "data" / "x.jpg")
    other = tmp_path / "elsewhere.jpg"
    jpeg(other)
    write(tmp_path / "lists" / "tr.csv", f"image,labels\n../data/x.jpg,b\n{other},a|b\n")
    write(tmp_path / "lists" / "held.csv", "image,labels\n../data/x.jpg,a\n")
    split = load_manifest(
        tmp_path / "lists", "test", manifests={"train": "tr.csv", "test": "held.csv"}
    )
    assert split.classes == ("a", "b")
    np.testing.assert_array_equal(split.targets, [[1, 0]])
    # classes.txt in root also applies to manifests in sub-folders
    write(tmp_path / "classes.txt", "b\na\n")
    both = {"train": "lists/tr.csv", "test": "lists/held.csv"}
    split = load_manifest(tmp_path, "test", manifests=both)
    assert split.classes == ("b", "a")
    np.testing.assert_array_equal(split.targets, [[0, 1]])
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(ValueError, match="list of names"):
        load_manifest(tmp_path, "train", manifests=both, classes="a")
    # root pointing at the manifest file itself: the file is the train manifest here
    split = load_manifest(tmp_path / "lists" / "tr.csv", "train")
    np.testing.assert_array_equal(split.targets, [[0, 1], [1, 1]])
    assert split.ids == ["../data/x.jpg", str(other)]
    assert split.load_image(1).size == (8, 8)


def test_val_without_class_list_or_train_manifest_is_an_error(tmp_path: Path) -> None:
    jpeg(tmp_path / "a.jpg")
    write(tmp_path / "val.csv", "image,labels\na.jpg,x\n")
    with pytest.raises(FileNotFoundError, match=r"classes\.txt"):
        load_manifest(tmp_path, "val")


def test_duplicate_image_names_both_lines(root: Path) -> None:
    write(root / "train.csv", "image,labels\na.jpg,cat\nb.jpg,dog\n./a.jpg,dog\n")
    with pytest.raises(
        DatasetFormatError, match=r"train\.csv:4: duplicate image '\./a\.jpg' \(already on line 2\)"
    ):
        load_manifest(root, "train")


def test_missing_image_names_file_and_line(root: Path) -> None:
    write(root / "train.csv", "image,labels\na.jpg,cat\nnope.jpg,dog\n")
    with pytest.raises(FileNotFoundError) as err:
        load_manifest(root, "train")
    msg = str(err.value)
    assert str(root / "nope.jpg") in msg and "train.csv:3" in msg and "1 of 2" in msg


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("image,labels\na.jpg,cat,extra\n", r"train\.csv:2: 3 fields, expected 2"),
        ("image,label\na.jpg,cat\n", r"train\.csv:1: header"),
        ("image,labels,labels\na.jpg,cat,cat\n", r"train\.csv:1: header"),
        ("image,labels\n", r"empty manifest"),
        ("", r"empty manifest"),
        ("image,labels\n,cat\n", r"train\.csv:2: empty image path"),
        (
            "image,labels,ignore\na.jpg,cat|dog,dog\n",
            r"train\.csv:2: class 'dog' is both in labels and in ignore",
        ),
    ],
)
def test_malformed_csv(root: Path, text: str, pattern: str) -> None:
    write(root / "train.csv", text)
    with pytest.raises(DatasetFormatError, match=pattern):
        load_manifest(root, "train")


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('{"image": "a.jpg", "labels": ["cat"]', r"val\.jsonl:2: not valid JSON"),
        ('["a.jpg"]', r"val\.jsonl:2: expected a JSON object"),
        ('{"image": "a.jpg"}', r"val\.jsonl:2: keys"),
        ('{"image": "a.jpg", "labels": [], "label": ["cat"]}', r"val\.jsonl:2: keys"),
        ('{"image": "a.jpg", "labels": "cat"}', r"val\.jsonl:2: 'labels' must be a list"),
        ('{"image": 3, "labels": []}', r"val\.jsonl:2: 'image' must be"),
        (
            '{"image": "a.jpg", "labels": ["cat"], "ignore": ["cat"]}',
            r"val\.jsonl:2: class 'cat' is both",
        ),
    ],
)
def test_malformed_jsonl(root: Path, line: str, pattern: str) -> None:
    write(root / "val.jsonl", '{"image": "b.jpg", "labels": ["dog"]}\n' + line + "\n")
    with pytest.raises(DatasetFormatError, match=pattern):
        load_manifest(root, "val")


def test_ambiguous_and_absent_manifests(root: Path) -> None:
    write(root / "val.csv", "image,labels\na.jpg,cat\n")
    with pytest.raises(DatasetFormatError, match="both"):
        load_manifest(root, "val")
    with pytest.raises(FileNotFoundError, match=r"test\.csv"):
        load_manifest(root, "test")
    with pytest.raises(ValueError, match="root is required"):
        load_manifest(None, "train")
