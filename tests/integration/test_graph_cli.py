"""``ssgrl graph`` end to end on a throwaway dataset registered inside the test; with ``--config``
the file is a run config read by the ``ssgrl fit`` parser, and the graph written for a run
directory is the adjacency that run trained with."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from ssgrl.cli import main
from ssgrl.data import registry
from ssgrl.data.base import Split
from ssgrl.data.registry import load_split
from ssgrl.engine.cli import parse_config
from ssgrl.graph import GraphOptions, LabelGraph, build_label_graph, graph_from_labels

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "src" / "ssgrl" / "configs" / "tiny.yaml"
DATASET = "graph-cli-fixture"
CLASSES = ("person", "bicycle", "dog", "unicorn")  # unicorn never occurs


def fixture_targets(num_train: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    targets = rng.choice([1, 0, 0, -1], size=(num_train, len(CLASSES))).astype(np.int8)
    targets[:, 3] = 0
    return targets


def run_config(graph: str = "", data: str = "") -> str:
    """A run config as `ssgrl fit` takes it: trainer, model (with ``graph``) and data sections."""
    return (
        "trainer:\n  max_epochs: 1\n"
        f"model:\n  net: ssgrl-lite0\n  pretrained: none\n{graph}"
        f"data:\n  dataset: {DATASET}\n  root: null\n  train_split: train\n  batch_size: 4\n"
        f"  dataset_options:\n    num_train: 9\n    seed: 5\n{data}"
    )


GRAPH_0_04_025 = "  graph:\n    diagonal: 0\n    threshold: 0.4\n    reweight: 0.25\n"


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


def test_config_is_a_run_config(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    """A full run config (trainer, model, data): the split and its options come from data."""
    config = tmp_path / "run.yaml"
    config.write_text(run_config())
    assert main(["graph", "--out", str(tmp_path / "a"), "--config", str(config)]) == 0
    assert calls == [{"root": None, "split": "train", "num_train": 9, "seed": 5}]
    expected = graph_from_labels(fixture_targets(9, 5), CLASSES, f"{DATASET}:train", GraphOptions())
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "graph.npy"), expected.matrix)
    assert LabelGraph.load(tmp_path / "a").sha256 == expected.sha256


def test_nested_class_path_form_is_refused_as_fit_refuses_it(
    calls: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data: {class_path, init_args}`` is not a form the `ssgrl fit` parser accepts (the data
    class is fixed), so neither does `ssgrl graph`: both read the file with the same parser."""
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "data:\n  class_path: ssgrl.data.SSGRLDataModule\n  init_args:\n"
        f"    dataset: {DATASET}\n    dataset_options: {{num_train: 9, seed: 5}}\n"
    )
    with pytest.raises(ValueError, match="init_args"):
        parse_config(nested)
    assert main(["graph", "--out", str(tmp_path / "out"), "--config", str(nested)]) == 2
    assert "init_args" in capsys.readouterr().err
    assert calls == []


def test_config_honours_every_graph_option(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(run_config(graph=GRAPH_0_04_025))
    assert parse_config(config).model.graph.as_dict() == {
        "diagonal": 0,
        "threshold": 0.4,
        "reweight": 0.25,
        "file": None,
    }
    assert main(["graph", "--out", str(tmp_path / "g"), "--config", str(config)]) == 0
    targets = fixture_targets(9, 5)
    options = GraphOptions(diagonal=0, threshold=0.4, reweight=0.25)
    expected = graph_from_labels(targets, CLASSES, f"{DATASET}:train", options)
    default = graph_from_labels(targets, CLASSES, f"{DATASET}:train", GraphOptions())
    assert expected.sha256 != default.sha256  # the options change the graph
    matrix = np.load(tmp_path / "g" / "graph.npy")
    np.testing.assert_array_equal(matrix, expected.matrix)
    assert np.diag(matrix).tolist() == [0.0] * len(CLASSES)  # diagonal 0 wins over 1 - p
    record = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert record["sha256"] == expected.sha256
    assert record["options"] == {
        "diagonal": 0,
        "threshold": 0.4,
        "reweight": 0.25,
        "dataset": DATASET,
        "dataset_options": {"num_train": 9, "seed": 5},
    }


def test_flags_override_the_config(calls: list[dict[str, Any]], tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(run_config(graph=GRAPH_0_04_025))
    # every graph option replaced; --option merges over dataset_options
    rc = main(
        [
            *("graph", "--out", str(tmp_path / "c"), "--config", str(config), "--option", "seed=6"),
            *("--diagonal", "1", "--threshold", "0.3", "--reweight", "0.5"),
        ]
    )
    assert rc == 0
    assert calls[-1] == {"root": None, "split": "train", "num_train": 9, "seed": 6}
    record = json.loads((tmp_path / "c" / "graph.json").read_text())
    assert record["options"]["dataset_options"] == {"num_train": 9, "seed": 6}
    expected = build_label_graph(
        fixture_targets(9, 6), CLASSES, f"{DATASET}:train", diagonal=1, threshold=0.3, reweight=0.5
    )
    assert record["sha256"] == expected.sha256
    np.testing.assert_array_equal(np.load(tmp_path / "c" / "graph.npy"), expected.matrix)

    # one flag: only that option changes, the others stay the config's
    rc = main(
        ["graph", "--out", str(tmp_path / "d"), "--config", str(config), "--threshold", "0.6"]
    )
    assert rc == 0
    expected = graph_from_labels(
        fixture_targets(9, 5),
        CLASSES,
        f"{DATASET}:train",
        GraphOptions(diagonal=0, threshold=0.6, reweight=0.25),
    )
    assert LabelGraph.load(tmp_path / "d").sha256 == expected.sha256
    assert LabelGraph.load(tmp_path / "d").options["threshold"] == 0.6

    # --root and --split override data.root and data.train_split
    rc = main(
        [
            *("graph", "--out", str(tmp_path / "e"), "--config", str(config)),
            *("--root", str(tmp_path), "--split", "val"),
        ]
    )
    assert rc == 0
    assert calls[-1] == {"root": tmp_path, "split": "val", "num_train": 9, "seed": 5}
    assert LabelGraph.load(tmp_path / "e").split == f"{DATASET}:val"


def test_config_without_dataset_uses_the_datamodule_default(
    calls: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the fit parser fills in (data.dataset defaults to synthetic) is what is built."""
    monkeypatch.setitem(registry._LOADERS, "synthetic", registry._LOADERS[DATASET])
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  dataset_options: {num_train: 5}\n")
    assert parse_config(config).data.dataset == "synthetic"
    assert main(["graph", "--out", str(tmp_path / "out"), "--config", str(config)]) == 0
    assert calls == [{"root": None, "split": "train", "num_train": 5, "seed": 0}]
    assert LabelGraph.load(tmp_path / "out").split == "synthetic:train"


def test_eval_split_warns(
    calls: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["graph", "--out", str(tmp_path), "--dataset", DATASET, "--split", "val"]) == 0
    assert "uses evaluation labels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (run_config(data="  colour: red\n"), "colour"),
        (run_config(graph="  graph:\n    treshold: 0.4\n"), "treshold"),
        (run_config() + "cache_feature: true\n", "cache_feature"),
        # the old schema: the backbone belonged to the data section
        (run_config(data="  backbone: resnet101\n"), "backbone"),
    ],
    ids=["data", "model.graph", "top-level", "old-data.backbone"],
)
def test_unknown_key_is_refused(
    calls: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: str,
    key: str,
) -> None:
    (tmp_path / "c.yaml").write_text(config)
    assert (
        main(["graph", "--out", str(tmp_path / "out"), "--config", str(tmp_path / "c.yaml")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"ssgrl graph: error: {tmp_path / 'c.yaml'}: ")
    assert re.search(rf"\b{key}\b", err), err
    assert calls == []  # refused before any split was read
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("config", "argv", "message"),
    [
        (None, ["--config", "{tmp}/missing.yaml"], "config file not found: .*missing.yaml"),
        (
            "data:\n  dataset: [oops\n",
            ["--config", "{tmp}/c.yaml"],
            r"c\.yaml: Problems parsing config",
        ),
        ("- a\n- b\n", ["--config", "{tmp}/c.yaml"], r"c\.yaml: "),
        ("data:\n  dataset: ''\n", ["--config", "{tmp}/c.yaml"], "no dataset given"),
        (
            f"data:\n  dataset: {DATASET}\n  dataset_options: 3\n",
            ["--config", "{tmp}/c.yaml"],
            r'c\.yaml: .*"data\.dataset_options"',
        ),
        (
            run_config(graph="  graph:\n    diagonal: 2\n"),
            ["--config", "{tmp}/c.yaml"],
            r"c\.yaml: .*model\.graph",
        ),
        (
            run_config(graph="  graph:\n    threshold: 2.0\n"),
            ["--config", "{tmp}/c.yaml"],
            r"threshold must lie in \(0, 1\]",
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


# -- the graph a user inspects is the graph that trains -----------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ssgrl fit --config configs/tiny.yaml --run_dir R --model.graph.threshold 0.3``."""
    run = tmp_path_factory.mktemp("runs") / "R"
    argv = ["fit", "--config", str(TINY), "--run_dir", str(run), "--model.graph.threshold", "0.3"]
    assert main([*argv, "--trainer.enable_progress_bar", "false"]) == 0
    return run


def assert_graph_is_the_trained_one(out: Path, run: Path) -> None:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    trained = ckpt["state_dict"]["net.graph.adjacency"].numpy()
    matrix = np.load(out / "graph.npy")
    assert matrix.dtype == trained.dtype == np.float32
    np.testing.assert_array_equal(matrix, trained)
    graph = LabelGraph.load(out)
    sha = hashlib.sha256(np.ascontiguousarray(trained).tobytes()).hexdigest()
    assert graph.sha256 == sha == ckpt["ssgrl"]["graph"]["sha256"]
    assert graph.split == ckpt["ssgrl"]["graph"]["split"] == "synthetic:train"
    assert graph.num_images == ckpt["ssgrl"]["graph"]["num_images"] == 48
    assert graph.options["threshold"] == 0.3  # the run's override, not tiny.yaml's default
    off_diagonal = matrix[~np.eye(len(matrix), dtype=bool)]
    assert set(off_diagonal.tolist()) == {0.0, 1.0}  # binarised at 0.3
    # and both are graph_from_labels on the training split the run read
    data = parse_config(TINY).data
    split = load_split(data.dataset, data.train_split, data.root, **data.dataset_options)
    expected = graph_from_labels(
        split.targets, split.classes, "synthetic:train", GraphOptions(threshold=0.3)
    )
    assert expected.sha256 == graph.sha256
    assert list(graph.classes) == list(split.classes) == ckpt["ssgrl"]["class_names"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Found .* in eval mode")  # the frozen backbone's BatchNorm
def test_graph_of_a_run_directory_is_the_graph_that_trained(tiny_run: Path, tmp_path: Path) -> None:
    rc = main(["graph", "--out", str(tmp_path / "g"), "--config", str(tiny_run / "config.yaml")])
    assert rc == 0
    assert_graph_is_the_trained_one(tmp_path / "g", tiny_run)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Found .* in eval mode")
def test_graph_of_the_recipe_is_the_graph_that_trained(tiny_run: Path, tmp_path: Path) -> None:
    """The same identity through the recipe and a flag, and through the run's own config with
    the two `fit`-only keys dropped (what the test above needs, until parse_config takes them)."""
    rc = main(["graph", "--out", str(tmp_path / "a"), "--config", str(TINY), "--threshold", "0.3"])
    assert rc == 0
    assert_graph_is_the_trained_one(tmp_path / "a", tiny_run)

    saved = (tiny_run / "config.yaml").read_text()
    assert re.search(r"^ckpt_path: null$", saved, re.M)
    stripped = tmp_path / "config.yaml"
    stripped.write_text(re.sub(r"^(ckpt_path|weights_only): .*\n", "", saved, flags=re.M))
    rc = main(["graph", "--out", str(tmp_path / "b"), "--config", str(stripped)])
    assert rc == 0
    assert_graph_is_the_trained_one(tmp_path / "b", tiny_run)
