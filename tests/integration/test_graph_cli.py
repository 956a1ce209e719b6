"""``ssgrl graph`` end to end on a throwaway dataset registered inside the test."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ssgrl.cli import main
from ssgrl.data import registry
from ssgrl.data.base import Split
from ssgrl.graph import LabelGraph, build_label_graph
from ssgrl.graph.cli import DATAMODULE_DEFAULTS

DATASET = "graph-cli-fixture"
CLASSES = ("person", "bicycle", "dog", "unicorn")  # unicorn never occurs


def fixture_targets(num_train: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    targets = rng.choice([1, 0, 0, -1], size=(num_train, len(CLASSES))).astype(np.int8)
    targets[:, 3] = 0
    return targets


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Register DATASET for this test only; records each load's arguments."""
    seen: list[dict[str, Any]] = []

    def load(root: Path | None, split: str, num_train: int = 10, seed: int = 0) -> Split:
        seen.append({"root": root, "split": split, "num_train": num_train, "seed": seed})
        if split not in ("train", "val"):
            raise ValueError(f"{DATASET}: unknown split {split!r}; expected train or val")

        def no_pixels(index: int) -> Image.Image:
            raise AssertionError("the graph must not decode images")

        return Split(
            name=split,
            classes=CLASSES,
            ids=[f"img{i}" for i in range(num_train)],
            targets=fixture_targets(num_train, seed),
            loader=no_pixels,
        )

    # load_split only accepts names listed in _MODULES; setitem undoes both entries afterwards
    monkeypatch.setitem(registry._MODULES, DATASET, __name__)
    monkeypatch.setitem(registry._LOADERS, DATASET, load)
    registry.register_dataset(DATASET)(load)
    return seen


def test_flags_write_npy_json_png(
    calls: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "graph"
    rc = main(
        [
            *("graph", "--out", str(out), "--dataset", DATASET, "--root", str(tmp_path)),
            *("--split", "train", "--option", "num_train=12", "--option", "seed=3"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert calls == [{"root": tmp_path, "split": "train", "num_train": 12, "seed": 3}]
    printed = captured.out.split()
    assert printed == [str(out / n) for n in ("graph.npy", "graph.json", "graph.png")]
    assert "never occur in 'train'" in captured.err and "unicorn" in captured.err

    expected = build_label_graph(fixture_targets(12, 3), CLASSES, f"{DATASET}:train")
    matrix = np.load(out / "graph.npy")
    np.testing.assert_array_equal(matrix, expected.matrix)
    record = json.loads((out / "graph.json").read_text())
    assert set(record) == {"classes", "split", "num_images", "sha256", "options", "matrix"}
    assert record["classes"] == list(CLASSES) and record["split"] == f"{DATASET}:train"
    assert record["num_images"] == 12
    assert record["sha256"] == expected.sha256 == hashlib.sha256(matrix.tobytes()).hexdigest()
    assert record["options"] == {
        "diagonal": 1,
        "threshold": None,
        "reweight": None,
        "dataset": DATASET,
        "dataset_options": {"num_train": 12, "seed": 3},
    }
    assert LabelGraph.load(out).sha256 == expected.sha256
    with Image.open(out / "graph.png") as png:
        assert png.format == "PNG" and min(png.size) > 100


def test_config_forms_and_overrides(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    flat = tmp_path / "flat.yaml"
    flat.write_text(
        f"trainer:\n  max_epochs: 1\ndata:\n  dataset: {DATASET}\n  root: null\n"
        "  train_split: train\n  batch_size: 4\n  dataset_options:\n    num_train: 9\n    seed: 5\n"
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "data:\n  class_path: ssgrl.data.SSGRLDataModule\n  init_args:\n"
        f"    dataset: {DATASET}\n    dataset_options: {{num_train: 9, seed: 5}}\n"
    )
    assert main(["graph", "--out", str(tmp_path / "a"), "--config", str(flat)]) == 0
    assert main(["graph", "--out", str(tmp_path / "b"), "--config", str(nested)]) == 0
    a, b = (tmp_path / d / "graph.npy" for d in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()  # same split -> byte-identical graph
    assert calls[0] == calls[1] == {"root": None, "split": "train", "num_train": 9, "seed": 5}

    # flags override the config; --option merges over dataset_options
    rc = main(
        [
            *("graph", "--out", str(tmp_path / "c"), "--config", str(flat), "--option", "seed=6"),
            *("--diagonal", "0", "--threshold", "0.4", "--reweight", "0.25"),
        ]
    )
    assert rc == 0
    assert calls[2] == {"root": None, "split": "train", "num_train": 9, "seed": 6}
    record = json.loads((tmp_path / "c" / "graph.json").read_text())
    assert record["options"]["dataset_options"] == {"num_train": 9, "seed": 6}
    expected = build_label_graph(
        fixture_targets(9, 6), CLASSES, f"{DATASET}:train", diagonal=0, threshold=0.4, reweight=0.25
    )
    assert record["sha256"] == expected.sha256
    np.testing.assert_array_equal(np.load(tmp_path / "c" / "graph.npy"), expected.matrix)


def test_config_without_dataset_uses_datamodule_defaults(
    calls: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry._LOADERS, "synthetic", registry._LOADERS[DATASET])
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  dataset_options: {num_train: 5}\n")
    assert main(["graph", "--out", str(tmp_path / "out"), "--config", str(config)]) == 0
    assert calls == [{"root": None, "split": "train", "num_train": 5, "seed": 0}]
    assert LabelGraph.load(tmp_path / "out").split == "synthetic:train"


def test_defaults_match_the_datamodule() -> None:
    from ssgrl.data.datamodule import SSGRLDataModule

    params = inspect.signature(SSGRLDataModule.__init__).parameters
    assert {k: params[k].default for k in DATAMODULE_DEFAULTS} == DATAMODULE_DEFAULTS


def test_eval_split_warns(
    calls: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", "--out", str(tmp_path), "--dataset", DATASET, "--split", "val"]) == 0
    assert "uses evaluation labels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "argv", "message"),
    [
        (None, ["--config", "{tmp}/missing.yaml"], "config file not found: .*missing.yaml"),
        (
            "data:\n  dataset: [oops\n",
            ["--config", "{tmp}/c.yaml"],
            r"c\.yaml, line \d+: not valid YAML",
        ),
        ("model: {}\n", ["--config", "{tmp}/c.yaml"], "expected a mapping with a 'data' section"),
        ("data:\n  dataset: ''\n", ["--config", "{tmp}/c.yaml"], "no dataset given"),
        (
            f"data:\n  dataset: {DATASET}\n  dataset_options: 3\n",
            ["--config", "{tmp}/c.yaml"],
            "dataset_options must be a mapping",
        ),
        (None, [], "no dataset given"),
        (None, ["--dataset", "nosuchset"], "unknown dataset 'nosuchset'"),
        (None, ["--dataset", DATASET, "--option", "seed"], "expected KEY=VALUE"),
        (None, ["--dataset", DATASET, "--option", "colour=red"], "colour"),
        (None, ["--dataset", DATASET, "--split", "test"], "unknown split 'test'"),
        (None, ["--dataset", DATASET, "--threshold", "2"], r"threshold must lie in \(0, 1\]"),
    ],
)
def test_unusable_input_exits_2(
    calls: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str | None,
    argv: list[str],
    message: str,
) -> None:
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["graph", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssgrl graph: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
