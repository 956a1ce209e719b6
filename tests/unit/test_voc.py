"""VOC 2007/2012 loaders on a tiny VOCdevkit tree, and the evaluation-server writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssgrl.data.labelspace import DatasetFormatError
from ssgrl.data.registry import load_split
from ssgrl.data.voc import VOC_CLASSES, load_voc2007, load_voc2012, write_voc_submission

CAR, CAT, DOG, PERSON = (VOC_CLASSES.index(n) for n in ("car", "cat", "dog", "person"))


def jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 40, 220)).save(path, "JPEG")


def voc_xml(objects: list[tuple[str, int]]) -> str:
    """An annotation with one object per (name, difficult); box i is (i+1, i+2, i+5, i+6)."""
    body = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{diff}</difficult><bndbox><xmin>{i + 1}</xmin><ymin>{i + 2}</ymin>"
        f"<xmax>{i + 5}</xmax><ymax>{i + 6}</ymax></bndbox></object>"
        for i, (name, diff) in enumerate(objects)
    )
    return (
        "<annotation><folder>VOC2007</folder><filename>x.jpg</filename>"
        f"<size><width>8</width><height>8</height><depth>3</depth></size>{body}</annotation>"
    )


ANNOTATIONS = {
    "000001": [("dog", 0), ("person", 1)],  # person only difficult
    "000002": [("cat", 1), ("cat", 0), ("car", 1)],  # cat also non-difficult, car only difficult
    "000003": [],  # no objects
}


def make_voc(root: Path, year: str = "2007", annotations: dict | None = None) -> Path:
    base = root / "VOCdevkit" / f"VOC{year}"
    annotations = ANNOTATIONS if annotations is None else annotations
    for image_id, objects in annotations.items():
        jpeg(base / "JPEGImages" / f"{image_id}.jpg")
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{image_id}.xml").write_text(voc_xml(objects))
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (main / "trainval.txt").write_text("".join(f"{i}\n" for i in annotations) + "\n")
    (main / "dog_trainval.txt").write_text("000001  1\n")  # per-class files sit alongside
    return base


def expected(cells: dict[tuple[int, int], int]) -> np.ndarray:
    out = np.zeros((3, 20), dtype=np.int8)
    for (row, col), value in cells.items():
        out[row, col] = value
    return out


@pytest.mark.parametrize(
    ("policy", "person_1", "car_2"),
    [("ignore", -1, -1), ("negative", 0, 0), ("positive", 1, 1)],
)
def test_difficult_policies(tmp_path: Path, policy: str, person_1: int, car_2: int) -> None:
    make_voc(tmp_path)
    split = load_voc2007(tmp_path, "trainval", difficult=policy)  # type: ignore[arg-type]
    want = expected({(0, DOG): 1, (0, PERSON): person_1, (1, CAT): 1, (1, CAR): car_2})
    np.testing.assert_array_equal(split.targets, want)
    assert split.ids == ["000001", "000002", "000003"]
    assert split.classes == VOC_CLASSES
    assert split.has_labels
    assert split.meta["difficult"] == policy
    assert split.meta["num_unlabelled"] == 1
    assert split.meta["year"] == "2007" and split.meta["num_images"] == 3


def test_default_policy_is_ignore_and_registry_and_root_variants(tmp_path: Path) -> None:
    base = make_voc(tmp_path)
    want = expected({(0, DOG): 1, (0, PERSON): -1, (1, CAT): 1, (1, CAR): -1})
    for root in (tmp_path, tmp_path / "VOCdevkit", base):
        split = load_split("voc2007", "trainval", root=root)
        np.testing.assert_array_equal(split.targets, want)
    assert split.load_image(0).size == (8, 8)


def test_boxes_are_zero_based_and_include_difficult(tmp_path: Path) -> None:
    make_voc(tmp_path)
    split = load_voc2007(tmp_path, "trainval")
    assert split.boxes is not None
    assert split.boxes[0] == [(DOG, 0.0, 1.0, 5.0, 6.0), (PERSON, 1.0, 2.0, 6.0, 7.0)]
    assert [b[0] for b in split.boxes[1]] == [CAT, CAT, CAR]
    assert split.boxes[2] == []


def test_wrong_year_folder_and_missing_root(tmp_path: Path) -> None:
    base = make_voc(tmp_path, year="2012")
    with pytest.raises(FileNotFoundError, match="VOC2012 folder, not VOC2007"):
        load_voc2007(base, "trainval")
    with pytest.raises(FileNotFoundError, match="no VOC2007/ImageSets/Main"):
        load_voc2007(tmp_path, "trainval")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_voc2007(tmp_path / "nowhere", "trainval")


def test_unknown_class_names_the_xml(tmp_path: Path) -> None:
    base = make_voc(tmp_path, annotations={"000001": [("dog", 0)], "000007": [("unicorn", 0)]})
    with pytest.raises(
        DatasetFormatError, match=r"000007\.xml: object class 'unicorn' is not one of the 20"
    ):
        load_voc2007(tmp_path, "trainval")
    assert (base / "Annotations" / "000007.xml").exists()


def test_missing_image_names_file_and_list_line(tmp_path: Path) -> None:
    base = make_voc(tmp_path)
    (base / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_voc2007(tmp_path, "trainval")
    msg = str(err.value)
    assert str(base / "JPEGImages" / "000002.jpg") in msg
    assert "trainval.txt:2, id 000002" in msg


def test_missing_xml_malformed_xml_and_duplicate_ids(tmp_path: Path) -> None:
    base = make_voc(tmp_path)
    (base / "Annotations" / "000003.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"000003\.xml does not exist"):
        load_voc2007(tmp_path, "trainval")
    (base / "Annotations" / "000003.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetFormatError, match=r"000003\.xml: not a valid annotation XML"):
        load_voc2007(tmp_path, "trainval")
    (base / "Annotations" / "000003.xml").write_text(voc_xml([("dog", 2)]))
    with pytest.raises(DatasetFormatError, match="<difficult>2</difficult>"):
        load_voc2007(tmp_path, "trainval")
    (base / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000001\n")
    with pytest.raises(DatasetFormatError, match=r"trainval\.txt:3: duplicate image id '000001'"):
        load_voc2007(tmp_path, "trainval")


def test_bad_options_and_unknown_split(tmp_path: Path) -> None:
    make_voc(tmp_path)
    with pytest.raises(ValueError, match="difficult='drop'"):
        load_voc2007(tmp_path, "trainval", difficult="drop")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="splits here: trainval"):
        load_voc2007(tmp_path, "test")


def test_voc2012_test_has_no_labels(tmp_path: Path) -> None:
    base = make_voc(tmp_path, year="2012")
    main = base / "ImageSets" / "Main"
    for image_id in ("2008_000001", "2008_000002"):
        jpeg(base / "JPEGImages" / f"{image_id}.jpg")
    # one test image has an object-free XML, the other none at all: both are fine
    (base / "Annotations" / "2008_000001.xml").write_text(voc_xml([]))
    (main / "test.txt").write_text("2008_000001\n2008_000002\n")
    split = load_voc2012(tmp_path, "test")
    assert not split.has_labels
    assert split.targets.shape == (2, 20) and not split.targets.any()
    assert split.ids == ["2008_000001", "2008_000002"]
    assert split.meta["num_unlabelled"] == 2 and split.boxes is None
    labelled = load_voc2012(tmp_path, "trainval")
    assert labelled.has_labels and labelled.targets[0, DOG] == 1


def test_submission_files(tmp_path: Path) -> None:
    classes = list(reversed(VOC_CLASSES))  # any order of the 20 names
    ids = ["2008_000001", "2008_000002"]
    scores = np.zeros((2, 20))
    scores[:, classes.index("dog")] = [2.5, -1.25]
    scores[:, classes.index("aeroplane")] = [0.1234567, 1e-7]
    results = write_voc_submission(ids, scores, classes, tmp_path)
    assert results == tmp_path / "results"
    main = results / "VOC2012" / "Main"
    files = sorted(p.name for p in main.iterdir())
    assert files == sorted(f"comp1_cls_test_{c}.txt" for c in VOC_CLASSES)
    assert (
        main / "comp1_cls_test_dog.txt"
    ).read_text() == "2008_000001 2.500000\n2008_000002 -1.250000\n"
    assert (
        main / "comp1_cls_test_aeroplane.txt"
    ).read_text() == "2008_000001 0.123457\n2008_000002 0.000000\n"
    assert (
        main / "comp1_cls_test_cat.txt"
    ).read_text() == "2008_000001 0.000000\n2008_000002 0.000000\n"


def test_submission_validation(tmp_path: Path) -> None:
    ids = ["a", "b"]
    with pytest.raises(ValueError, match=r"expected \(2, 20\)"):
        write_voc_submission(ids, np.zeros((2, 19)), VOC_CLASSES, tmp_path)
    with pytest.raises(ValueError, match="20 VOC classes"):
        write_voc_submission(ids, np.zeros((2, 20)), (*VOC_CLASSES[:19], "cow"), tmp_path)
    bad = np.zeros((2, 20))
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="image 'b', class 'boat'"):
        write_voc_submission(ids, bad, VOC_CLASSES, tmp_path)
    with pytest.raises(ValueError, match="duplicates"):
        write_voc_submission(["a", "a"], np.zeros((2, 20)), VOC_CLASSES, tmp_path)
    assert not (tmp_path / "results").exists()
