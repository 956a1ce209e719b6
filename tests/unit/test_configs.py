"""Every YAML in configs/ goes through the real ``ssgrl fit`` parser and is instantiated (model,
datamodule, trainer; no data read, no training), and the recipes hold the values they claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.data.registry import load_split
from ssgrl.data.transforms import eval_transform, train_transform
from ssgrl.engine.cli import SSGRLCLI
from ssgrl.engine.module import SSGRLModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL = sorted(CONFIGS.glob("*.yaml"))
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

PAPER = [p for p in ALL if p.stem.endswith("_paper")]
MODERN = [p for p in ALL if p.stem.endswith("_modern")]


def instantiate(config: Path, run_dir: Path, *overrides: str) -> SSGRLCLI:
    """The CLI of ``ssgrl fit --config config``, built but not run."""
    return SSGRLCLI(
        SSGRLModule,
        SSGRLDataModule,
        run=False,
        args=["--config", str(config), "--run_dir", str(run_dir), *overrides],
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def _hp(cli: SSGRLCLI) -> Any:
    return cli.model.hparams


@pytest.fixture(scope="module")
def clis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SSGRLCLI]:
    """One instantiated CLI per config file (built once: the parser is slow)."""
    base = tmp_path_factory.mktemp("runs")
    return {p.stem: instantiate(p, base / p.stem) for p in ALL}


def test_the_recipes_are_there() -> None:
    names = {p.stem for p in ALL}
    for dataset in ("voc2007", "voc2012", "coco2014"):
        assert {f"{dataset}_paper", f"{dataset}_modern"} <= names
    assert "tiny" in names


@pytest.mark.parametrize("config", ALL, ids=lambda p: p.stem)
def test_config_instantiates(config: Path, clis: dict[str, SSGRLCLI], tmp_path: Path) -> None:
    cli = clis[config.stem]
    assert isinstance(cli.model, SSGRLModule)
    assert isinstance(cli.datamodule, SSGRLDataModule)
    assert cli.model.net is None  # built from the data in setup(), which did not run
    assert cli.datamodule.splits == {}  # no split was read
    # the model's backbone is linked to the datamodule (its normalisation defaults)
    assert cli.config["data.backbone"] == _hp(cli).backbone
    assert cli.trainer.max_epochs == cli.config["trainer.max_epochs"]
    # the dataset options are keyword options the loader accepts: with a missing root the loader
    # fails on the root (FileNotFoundError), not on an unknown option (TypeError)
    dm = cli.datamodule
    try:
        split = load_split(
            dm.dataset, str(dm.split_names["train"]), tmp_path / "absent", **dm.dataset_options
        )
    except FileNotFoundError as err:
        assert str(tmp_path / "absent") in str(err)
    else:
        assert dm.dataset == "synthetic" and len(split) > 0


def test_a_wrong_key_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (CONFIGS / "voc2007_paper.yaml").read_text()
    assert "  lr: 1.0e-5\n" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  lr: 1.0e-5\n", "  lrate: 1.0e-5\n"))
    with pytest.raises(SystemExit):
        instantiate(bad, tmp_path / "run")
    assert "lrate" in capsys.readouterr().err


@pytest.mark.parametrize("config", PAPER, ids=lambda p: p.stem)
def test_paper_recipe(config: Path, clis: dict[str, SSGRLCLI]) -> None:
    cli = clis[config.stem]
    hp, dm = _hp(cli), cli.datamodule
    assert (hp.arch, hp.backbone, hp.pool, hp.train_stages) == ("ssgrl", "resnet101", "avg2x2", 1)
    assert (hp.d1, hp.d2, hp.ggnn_steps) == (1024, 1024, 3)
    assert not hp.reset_gate_uses_update_weights
    assert (hp.optimizer, hp.lr, hp.weight_decay) == ("adam", 1e-5, 0.0)
    assert hp.scheduler == "plateau"
    assert hp.ap_mode == "voc"
    assert hp.embeddings == "glove-file" and hp.embeddings_path
    assert hp.pretrained not in ("none", "timm", "efficientnet-lite0")  # a weights file
    assert (hp.graph_diagonal, hp.graph_threshold, hp.graph_reweight) == (1, None, None)
    assert dm.batch_size == 4
    assert dm.train_augment == "paper"
    assert dm.paper_scales == (640, 576, 512, 384, 320)
    pre = dm.preprocessing
    assert (pre["resize"], pre["image_size"]) == (640, 576)
    assert pre["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert pre["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert cli.trainer.precision == "32-true"
    assert cli.trainer.num_devices == 1  # per-process batch 4 = the paper's batch
    # a validation split drives the plateau schedule and checkpoint selection
    assert dm.split_names["val"] is not None
    if dm.dataset.startswith("voc"):
        assert dm.split_names == {"train": "train", "val": "val", "test": "test"}
        assert dm.dataset_options == {"difficult": "ignore"}
    else:
        assert dm.split_names == {"train": "train", "val": "val", "test": "val"}


@pytest.mark.parametrize("config", MODERN, ids=lambda p: p.stem)
def test_modern_recipe(config: Path, clis: dict[str, SSGRLCLI]) -> None:
    cli = clis[config.stem]
    hp, dm = _hp(cli), cli.datamodule
    assert (hp.backbone, hp.train_stages) == ("resnet101", -1)
    assert (hp.optimizer, hp.lr, hp.weight_decay, hp.scheduler) == ("adamw", 1e-4, 1e-4, "onecycle")
    assert dm.train_augment == "modern"
    assert (dm.preprocessing["resize"], dm.preprocessing["image_size"]) == (448, 448)
    assert cli.trainer.precision == "bf16-mixed"
    assert dm.dataset == config.stem.removesuffix("_modern")


def test_paper_transforms_give_576(clis: dict[str, SSGRLCLI]) -> None:
    """Train: 640 resize, random square crop, 576 resize; test: 640 resize, centre crop 576."""
    dm = clis["voc2007_paper"].datamodule
    image = Image.new("RGB", (500, 333), (200, 100, 50))
    train = train_transform(dm.preprocessing, dm.train_augment, dm.paper_scales)
    for _ in range(5):
        assert train(image).shape == (3, 576, 576)
    x = eval_transform(dm.preprocessing)(image)
    assert x.shape == (3, 576, 576)
    # a uniform image normalises to (value / 255 - mean) / std everywhere
    expected = (
        torch.tensor([200, 100, 50]) / 255 - torch.tensor([0.485, 0.456, 0.406])
    ) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x.mean(dim=(1, 2)), expected, atol=1e-4)


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    cli = instantiate(
        CONFIGS / "voc2007_paper.yaml",
        tmp_path / "run",
        "--data.train_split",
        "trainval",
        "--data.val_split",
        "null",
        "--model.scheduler",
        "none",
        "--trainer.max_epochs",
        "7",
    )
    assert cli.datamodule.split_names == {"train": "trainval", "val": None, "test": "test"}
    assert _hp(cli).scheduler == "none"
    assert cli.trainer.max_epochs == 7
