"""The coco2014 loader on a tiny instances JSON read through pycocotools."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ssgrl.data.coco import load_coco2014
from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.registry import load_split


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 90, 10)).save(path, "JPEG")


def ann(ann_id: int, image_id: int, cat: int, crowd: int = 0) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": [1.0, 2.0, 3.0, 4.0],
        "area": 12.0,
        "iscrowd": crowd,
        "segmentation": [[1, 2, 4, 2, 4, 6]],
    }


def instances() -> dict[str, Any]:
    # categories listed out of id order, ids non-contiguous (1, 3, 7)
    return {
        "info": {},
        "licenses": [],
        "categories": [
            {"id": 7, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
        ],
        "images": [
            {"id": 10, "file_name": "COCO_val2014_000000000010.jpg", "width": 8, "height": 8},
            {"id": 5, "file_name": "COCO_val2014_000000000005.jpg", "width": 8, "height": 8},
            {"id": 20, "file_name": "COCO_val2014_000000000020.jpg", "width": 8, "height": 8},
        ],
        "annotations": [
            ann(100, 10, 1),
            ann(101, 10, 7),
            ann(102, 10, 7),
            ann(103, 5, 3, crowd=1),  # crowd annotations count as present
        ],
    }


def make_coco(root: Path, data: dict[str, Any], split: str = "val") -> Path:
    for img in data["images"]:
        jpeg(root / f"{split}2014" / img["file_name"])
    path = root / "annotations" / f"instances_{split}2014.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_targets_category_mapping_and_unlabelled_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    make_coco(tmp_path, instances())
    with caplog.at_level(logging.INFO, logger="ssgrl.data.coco"):
        split = load_split("coco2014", "val", root=tmp_path)
    assert capsys.readouterr().out == ""  # pycocotools prints are silenced
    assert "3 images" in caplog.text and "1 without annotations" in caplog.text
    assert split.classes == ("person", "car", "dog")  # category ids 1, 3, 7 -> 0, 1, 2
    assert split.meta["category_ids"] == [1, 3, 7]
    # images in image-id order: 5 (crowd car), 10 (person, dog), 20 (nothing)
    assert split.ids == [
        "COCO_val2014_000000000005.jpg",
        "COCO_val2014_000000000010.jpg",
        "COCO_val2014_000000000020.jpg",
    ]
    np.testing.assert_array_equal(split.targets, [[0, 1, 0], [1, 0, 1], [0, 0, 0]])
    meta = split.meta
    assert (meta["num_images_total"], meta["num_without_annotations"], meta["num_dropped"]) == (
        3,
        1,
        0,
    )
    assert meta["num_images"] == 3 and meta["num_unlabelled"] == 1
    assert split.boxes is not None
    assert split.boxes[0] == [(1, 1.0, 2.0, 4.0, 6.0)]
    assert sorted(b[0] for b in split.boxes[1]) == [0, 2, 2]
    assert split.load_image(2).size == (8, 8)


def test_drop_unlabelled(tmp_path: Path) -> None:
    make_coco(tmp_path, instances())
    split = load_coco2014(tmp_path, "val", drop_unlabelled=True)
    assert split.ids == ["COCO_val2014_000000000005.jpg", "COCO_val2014_000000000010.jpg"]
    np.testing.assert_array_equal(split.targets, [[0, 1, 0], [1, 0, 1]])
    assert (
        split.meta["num_images_total"],
        split.meta["num_dropped"],
        split.meta["num_images"],
    ) == (3, 1, 2)
    assert split.boxes is not None and len(split.boxes) == 2


def test_labels_follow_image_id_not_position(tmp_path: Path) -> None:
    data = instances()
    data["images"].reverse()
    data["annotations"].reverse()
    make_coco(tmp_path, data)
    split = load_coco2014(tmp_path, "val")
    np.testing.assert_array_equal(split.targets, [[0, 1, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda d: d["annotations"].append(ann(104, 5, 2)),
            r"annotation id 104 .* category_id 2, which is not in 'categories'",
        ),
        (
            lambda d: d["annotations"].append(ann(105, 99, 1)),
            r"annotation id 105 refers to image_id 99",
        ),
        (
            lambda d: d["images"][1].update(file_name=d["images"][0]["file_name"]),
            r"file_name .* is used by image ids 5 and 10",
        ),
        (lambda d: d["images"].append(dict(d["images"][0])), r"image ids appear more than once"),
        (lambda d: d.pop("categories"), r"'categories'"),
    ],
)
def test_inconsistent_json(tmp_path: Path, edit: Any, pattern: str) -> None:
    data = instances()
    edit(data)
    make_coco(tmp_path, data)
    with pytest.raises(DatasetFormatError, match=pattern):
        load_coco2014(tmp_path, "val")


def test_missing_image_names_file_and_image_id(tmp_path: Path) -> None:
    make_coco(tmp_path, instances())
    gone = tmp_path / "val2014" / "COCO_val2014_000000000010.jpg"
    gone.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_coco2014(tmp_path, "val")
    assert str(gone) in str(err.value) and "image id 10" in str(err.value)


def test_missing_annotation_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"instances_train2014\.json does not exist"):
        load_coco2014(tmp_path, "train")
    path = make_coco(tmp_path, instances(), split="train")
    path.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        load_coco2014(tmp_path, "train")
    path.write_text("[1, 2]")
    with pytest.raises(DatasetFormatError, match="not a COCO instances file"):
        load_coco2014(tmp_path, "train")


def test_layout_options_for_other_releases(tmp_path: Path) -> None:
    data = instances()
    for img in data["images"]:
        jpeg(tmp_path / "images" / "val2017" / img["file_name"])
    (tmp_path / "ann.json").write_text(json.dumps(data))
    split = load_coco2014(tmp_path, "val", images="images/{split}2017", annotations="ann.json")
    assert len(split) == 3 and split.targets.sum() == 3
