"""A saved graph (``model.graph.file``) or a checkpoint whose graph was counted on other data
is refused with what differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssgrl.data.registry import load_split
from ssgrl.graph import GraphMismatchError, GraphOptions, graph_from_labels

DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}


def _saved(tmp_path: Path, **options: object) -> str:
    split = load_split("synthetic", "train", **DATA)
    graph = graph_from_labels(
        split.targets, split.classes, "synthetic:train", GraphOptions(**options)
    )  # type: ignore[arg-type]
    graph.save(tmp_path / "g")
    return str(tmp_path / "g" / "graph.json")


def test_a_graph_file_of_the_same_data_is_used(tmp_path: Path) -> None:
    path = _saved(tmp_path, threshold=0.3)
    split = load_split("synthetic", "train", **DATA)
    used = graph_from_labels(
        split.targets, split.classes, "synthetic:train", GraphOptions(threshold=0.3, file=path)
    )
    counted = graph_from_labels(
        split.targets, split.classes, "synthetic:train", GraphOptions(threshold=0.3)
    )
    assert used.sha256 == counted.sha256
    np.testing.assert_array_equal(used.matrix, counted.matrix)


@pytest.mark.parametrize(
    ("data", "options", "split_name", "message"),
    [
        ({**DATA, "num_train": 40}, {}, "synthetic:train", "48 images counted, this split has 40"),
        (DATA, {"threshold": 0.4}, "synthetic:train", "options"),
        (DATA, {}, "synthetic:trainval", "counted on split 'synthetic:train'"),
        (
            {**DATA, "num_classes": 5},
            {},
            "synthetic:train",
            r"classes differ \(missing \[\], extra \['house'",
        ),
        ({**DATA, "seed": 3}, {}, "synthetic:train", "other labels"),
    ],
)
def test_a_graph_file_of_other_data_is_refused(
    tmp_path: Path, data: dict, options: dict, split_name: str, message: str
) -> None:
    path = _saved(tmp_path)
    split = load_split("synthetic", "train", **data)
    with pytest.raises(GraphMismatchError, match=message) as err:
        graph_from_labels(
            split.targets, split.classes, split_name, GraphOptions(**options, file=path)
        )
    assert path in str(err.value) and "ssgrl graph" in str(err.value)


def test_an_edited_graph_file_is_refused(tmp_path: Path) -> None:
    path = Path(_saved(tmp_path))
    path.write_text(path.read_text().replace("1.0", "0.5", 1))
    split = load_split("synthetic", "train", **DATA)
    with pytest.raises(ValueError, match="sha256"):
        graph_from_labels(
            split.targets, split.classes, "synthetic:train", GraphOptions(file=str(path))
        )
