"""The vg500 (SSGRL release format) and nuswide (CSV layout) loaders on tiny fixtures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.nuswide import load_nuswide, parse_concepts
from ssgrl.data.registry import load_split
from ssgrl.data.vg import load_vg500


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (0, 128, 255)).save(path, "JPEG")


# ---------------------------------------------------------------- vg500


@pytest.fixture
def vg(tmp_path: Path) -> Path:
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        jpeg(tmp_path / "VG_100K" / name)
    (tmp_path / "vg_category_500.txt").write_text("man\nwindow\ntree\nshirt\n")
    (tmp_path / "train_list_500.txt").write_text("1.jpg\n2.jpg\n\n")
    (tmp_path / "test_list_500.txt").write_text("3.jpg\n")
    labels = {"1.jpg": [0, 3, 3], "2.jpg": [], "3.jpg": [2, 1], "4.jpg": [0]}
    (tmp_path / "vg_category_500_labels_index.json").write_text(json.dumps(labels))
    return tmp_path


def test_vg_targets(vg: Path) -> None:
    split = load_split("vg500", "train", root=vg)
    assert split.classes == ("man", "window", "tree", "shirt")
    assert split.ids == ["1.jpg", "2.jpg"]
    np.testing.assert_array_equal(split.targets, [[1, 0, 0, 1], [0, 0, 0, 0]])
    assert split.meta["num_unlabelled"] == 1
    test = load_vg500(vg, "test")
    np.testing.assert_array_equal(test.targets, [[0, 1, 1, 0]])
    assert test.load_image(0).size == (8, 8)


def test_vg_json_categories_and_several_image_folders(vg: Path) -> None:
    (vg / "cats.json").write_text(json.dumps({"tree": 2, "man": 0, "shirt": 3, "window": 1}))
    (vg / "VG_100K" / "3.jpg").unlink()
    jpeg(vg / "VG_100K_2" / "3.jpg")
    split = load_vg500(vg, "test", images=["VG_100K", "VG_100K_2"], categories_file="cats.json")
    assert split.classes == ("man", "window", "tree", "shirt")
    assert split.load_image(0).size == (8, 8)
    (vg / "cats.json").write_text(json.dumps(["a", "b", "c", "d"]))
    assert load_vg500(vg, "train", categories_file="cats.json").classes == ("a", "b", "c", "d")


def test_vg_index_out_of_range(vg: Path) -> None:
    (vg / "vg_category_500.txt").write_text("man\nwindow\ntree\n")
    with pytest.raises(
        DatasetFormatError,
        match=r"labels_index\.json: image '1\.jpg' has class index 3, outside 0\.\.2",
    ):
        load_vg500(vg, "train")


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        ({"1.jpg": [0]}, r"train_list_500\.txt:2: image '2\.jpg' has no entry"),
        ({"1.jpg": [0], "2.jpg": [-1]}, r"class index -1"),
        ({"1.jpg": [0], "2.jpg": ["man"]}, r"entry '2\.jpg' must be a list of integer"),
        ({"1.jpg": [0], "2.jpg": [True]}, r"entry '2\.jpg' must be a list of integer"),
    ],
)
def test_vg_bad_labels(vg: Path, labels: dict, pattern: str) -> None:
    (vg / "vg_category_500_labels_index.json").write_text(json.dumps(labels))
    with pytest.raises(DatasetFormatError, match=pattern):
        load_vg500(vg, "train")


def test_vg_missing_duplicate_and_absent_files(vg: Path) -> None:
    (vg / "VG_100K" / "2.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_vg500(vg, "train")
    assert str(vg / "VG_100K" / "2.jpg") in str(err.value) and "train_list_500.txt:2" in str(
        err.value
    )
    (vg / "train_list_500.txt").write_text("1.jpg\n3.jpg\n1.jpg\n")
    with pytest.raises(
        DatasetFormatError, match=r"train_list_500\.txt:3: duplicate image '1\.jpg'"
    ):
        load_vg500(vg, "train")
    with pytest.raises(FileNotFoundError, match=r"val_list_500\.txt"):
        load_vg500(vg, "val")
    with pytest.raises(FileNotFoundError, match="category file"):
        load_vg500(vg, "test", categories_file="nope.txt")
    (vg / "vg_category_500.txt").write_text("man\nwindow\nman\n")
    with pytest.raises(
        DatasetFormatError, match=r"vg_category_500\.txt:3: class 'man' is listed twice"
    ):
        load_vg500(vg, "test")


# ---------------------------------------------------------------- nuswide

CSV = """filepath,label,split_name
images/a.jpg,"['sky', 'clouds']",train
images/b.jpg,[],train
images/c.jpg,water|sky,val
images/d.jpg,animal water,val
images/e.jpg,"['animal']",train
"""


@pytest.fixture
def nus(tmp_path: Path) -> Path:
    for name in "abcde":
        jpeg(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "nus_wid_data.csv").write_text(CSV)
    return tmp_path


def test_nus_sorted_names_from_whole_csv(nus: Path) -> None:
    train = load_split("nuswide", "train", root=nus)
    assert train.classes == ("animal", "clouds", "sky", "water")  # includes the val-only 'water'
    assert train.ids == ["images/a.jpg", "images/b.jpg", "images/e.jpg"]
    np.testing.assert_array_equal(train.targets, [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    val = load_nuswide(nus, "val")
    assert val.classes == train.classes
    np.testing.assert_array_equal(val.targets, [[0, 0, 1, 1], [1, 0, 0, 1]])
    assert val.load_image(1).size == (8, 8)


def test_nus_concepts_file_order_and_unknown_concept(nus: Path) -> None:
    (nus / "ConceptsList").mkdir()
    (nus / "ConceptsList" / "Concepts81.txt").write_text("water\nsky\nclouds\nanimal\nzebra\n")
    val = load_nuswide(nus, "val")
    assert val.classes == ("water", "sky", "clouds", "animal", "zebra")
    np.testing.assert_array_equal(val.targets, [[1, 1, 0, 0, 0], [1, 0, 0, 1, 0]])
    (nus / "ConceptsList" / "Concepts81.txt").write_text("water\nsky\nanimal\n")
    with pytest.raises(DatasetFormatError, match=r"nus_wid_data\.csv:2: unknown concept 'clouds'"):
        load_nuswide(nus, "val")


def test_nus_missing_images_error_or_skip(nus: Path, caplog: pytest.LogCaptureFixture) -> None:
    (nus / "images" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_nuswide(nus, "train")
    assert str(nus / "images" / "b.jpg") in str(err.value) and "nus_wid_data.csv:3" in str(
        err.value
    )
    with caplog.at_level(logging.WARNING, logger="ssgrl.data.nuswide"):
        split = load_nuswide(nus, "train", skip_missing=True)
    assert "1 of 3 images are missing" in caplog.text
    assert split.ids == ["images/a.jpg", "images/e.jpg"]
    np.testing.assert_array_equal(split.targets, [[0, 1, 1, 0], [1, 0, 0, 0]])
    assert split.meta["num_missing"] == 1
    for name in "ae":
        (nus / "images" / f"{name}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="none of the 3 images exist"):
        load_nuswide(nus, "train", skip_missing=True)


def test_nus_duplicate_unknown_split_and_bad_header(nus: Path) -> None:
    (nus / "nus_wid_data.csv").write_text(CSV + "images/c.jpg,sky,train\n")
    with pytest.raises(
        DatasetFormatError, match=r"csv:7: duplicate image 'images/c\.jpg' \(already on line 4\)"
    ):
        load_nuswide(nus, "train")
    (nus / "nus_wid_data.csv").write_text(CSV)
    with pytest.raises(ValueError, match=r"no rows with split 'test'.*\['train', 'val'\]"):
        load_nuswide(nus, "test")
    (nus / "other.csv").write_text("path,tags,split\nimages/a.jpg,sky,train\n")
    with pytest.raises(DatasetFormatError, match="none of the columns label, labels"):
        load_nuswide(nus, "train", csv_file="other.csv")


def test_nus_images_option_and_plain_columns(tmp_path: Path) -> None:
    jpeg(tmp_path / "flickr" / "x" / "1.jpg")
    (tmp_path / "list.csv").write_text("image,labels,split\nx/1.jpg,sky|sun,test\n")
    split = load_nuswide(tmp_path, "test", csv_file="list.csv", images="flickr")
    assert split.classes == ("sky", "sun")
    np.testing.assert_array_equal(split.targets, [[1, 1]])


def test_parse_concepts() -> None:
    assert parse_concepts("['clouds', 'sky']", "x") == ("clouds", "sky")
    assert parse_concepts("[]", "x") == ()
    assert parse_concepts(" a | b ", "x") == ("a", "b")
    assert parse_concepts("a  b", "x") == ("a", "b")
    assert parse_concepts("", "x") == ()
    with pytest.raises(DatasetFormatError, match=r"f\.csv:9: malformed label list"):
        parse_concepts("['a', ", "f.csv:9")
    with pytest.raises(DatasetFormatError, match="concept-name strings"):
        parse_concepts("[1, 2]", "f.csv:9")
