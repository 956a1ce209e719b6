"""A checkpoint's label graph belongs to the data it was counted on.

Resuming (``ssgrl fit --ckpt_path``) continues training with the checkpoint's graph, so it is
refused when the configured data counts another one (other images, other ``model.graph``
options), with what differs; the class-list check stays. Evaluating (``ssgrl test --ckpt_path``)
never rebuilds the graph, so another dataset with the same classes is allowed; other classes are
refused.

Options given on the command line with ``--ckpt_path`` reach the module: checkpoints do not
carry Lightning's ``hyper_parameters`` copy, which LightningCLI would otherwise put in their
place (``LightningCLI._parse_ckpt_path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from ssgrl.checkpoint import CheckpointError, read_checkpoint
from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.engine.cli import run_cli
from ssgrl.engine.module import SSGRLModule
from ssgrl.graph import EmbeddingOptions, GraphOptions

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning"),
]

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
SMALLER = [  # tiny.yaml (48 training images) with smaller images, fewer val/test, one epoch
    *("--data.image_size", "64", "--data.dataset_options.image_size", "64"),
    *("--data.dataset_options.num_val", "8", "--data.dataset_options.num_test", "8"),
    *("--model.embeddings.source", "onehot", "--trainer.max_epochs", "1"),
    *("--trainer.enable_progress_bar", "false"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("provenance")
    run = tmp / "fit"
    run_cli(["fit", "--config", str(TINY), "--run_dir", str(run), *SMALLER])
    ckpt = run / "checkpoints" / "last.ckpt"
    graph = torch.load(ckpt, map_location="cpu", weights_only=True)["ssgrl"]["graph"]
    return {"tmp": tmp, "config": run / "config.yaml", "ckpt": ckpt, "graph": graph}


def command(trained: dict[str, Any], name: str, run: str, *args: str) -> Any:
    out = trained["tmp"] / run
    argv = [name, "--config", str(trained["config"]), "--run_dir", str(out)]
    return run_cli([*argv, "--ckpt_path", str(trained["ckpt"]), *args])


def test_the_checkpoint_records_its_graph(trained: dict[str, Any]) -> None:
    graph = trained["graph"]
    assert graph["split"] == "synthetic:train" and graph["num_images"] == 48
    assert graph["options"] == {"diagonal": 1, "threshold": None, "reweight": None}


def test_resuming_on_the_same_data_is_allowed(trained: dict[str, Any]) -> None:
    cli = command(trained, "fit", "resume-same", "--trainer.max_epochs", "2")
    assert cli.trainer.current_epoch == 2  # one more epoch after the restored one
    assert cli.model.meta.graph["sha256"] == trained["graph"]["sha256"]


OTHER_OPTIONS = (
    "options {'diagonal': 1, 'threshold': None, 'reweight': None}, configured "
    "{'diagonal': 1, 'threshold': 0.3, 'reweight': None}"
)


@pytest.mark.parametrize(
    ("args", "differs"),
    [
        (["--data.dataset_options.num_train", "40"], "48 images counted, this split has 40"),
        (["--model.graph.threshold", "0.3", "--cache_features", "false"], OTHER_OPTIONS),
    ],
    ids=["other-images", "other-graph-options"],
)
def test_resuming_on_other_data_is_refused(
    trained: dict[str, Any], args: list[str], differs: str
) -> None:
    with pytest.raises(CheckpointError) as err:
        command(trained, "fit", f"resume-{args[0].rsplit('.', 1)[-1]}", *args)
    message = str(err.value)
    assert f"cannot resume from checkpoint {trained['ckpt']} on this data" in message
    assert differs in message
    assert "start a new fit (without --ckpt_path)" in message


def test_the_module_refuses_other_graph_options(trained: dict[str, Any]) -> None:
    """The same resume through the Trainer, where model.graph.threshold 0.3 reaches the module
    (the module as ``ssgrl fit`` builds it, the checkpoint's network)."""
    _, meta = read_checkpoint(trained["ckpt"])
    module = SSGRLModule(
        net=meta.model,
        pretrained="none",
        graph=GraphOptions(threshold=0.3),
        embeddings=EmbeddingOptions(source="onehot"),
    )
    data = SSGRLDataModule(
        dataset="synthetic",
        dataset_options={"num_train": 48, "num_val": 8, "num_test": 8, "image_size": 64},
        image_size=64,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(CheckpointError) as err:
        trainer.fit(module, datamodule=data, ckpt_path=trained["ckpt"])
    assert OTHER_OPTIONS in str(err.value) and "cannot resume" in str(err.value)


def test_resuming_with_other_classes_is_refused(trained: dict[str, Any]) -> None:
    with pytest.raises(CheckpointError, match="the checkpoint was trained on classes"):
        command(trained, "fit", "resume-classes", "--data.dataset_options.num_classes", "5")


def test_testing_on_other_data_with_the_same_classes_is_allowed(trained: dict[str, Any]) -> None:
    """Other images (another seed, fewer training images): the checkpoint's graph is used, the
    configured training split is not even read."""
    other = ["--data.dataset_options.seed", "7", "--data.dataset_options.num_train", "40"]
    cli = command(trained, "test", "test-other", *other, "--data.dataset_options.num_test", "6")
    assert cli.model.meta.graph == trained["graph"]
    assert "train" not in cli.datamodule.splits
    metrics = json.loads((trained["tmp"] / "test-other" / "metrics.json").read_text())
    assert metrics["metrics"]["num_images"] == 6


def test_testing_on_other_classes_is_refused(trained: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="but the checkpoint has"):
        command(trained, "test", "test-classes", "--data.dataset_options.num_classes", "5")
