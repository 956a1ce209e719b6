"""``ssgrl fit`` on the tiny config with the focal and the asymmetric loss, selected by the
ablation variants' overrides: the run trains with finite losses, its val/loss is the configured
loss of the validation logits (not BCE), and the loss section travels in the run's config and
its checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from ssgrl.checkpoint import read_checkpoint
from ssgrl.engine.cli import run_cli
from ssgrl.engine.losses import LossConfig, masked_loss
from ssgrl.engine.module import SSGRLModule, masked_bce
from ssgrl.engine.variants import VARIANTS

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "src" / "ssgrl" / "configs" / "tiny.yaml"


@pytest.mark.parametrize("name", ["focal", "asl"])
def test_fit_with_the_loss_variant(name: str, tmp_path: Path) -> None:
    run = tmp_path / name
    cli = run_cli(
        [
            "fit",
            "--config",
            str(TINY),
            *VARIANTS[name].args,
            "--run_dir",
            str(run),
            "--trainer.max_epochs",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    module = cli.model
    assert isinstance(module, SSGRLModule)
    expected = LossConfig(name=name)  # type: ignore[arg-type]
    assert module.loss_config == expected
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    val = module.results["val"]
    logits, target = torch.from_numpy(val["logits"]), torch.from_numpy(val["target"]).float()
    oracle = float(masked_loss(logits, target, expected))
    assert float(metrics["val/loss"]) == pytest.approx(oracle, rel=1e-5)
    assert oracle != pytest.approx(float(masked_bce(logits, target)), rel=1e-3)
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written["model"]["loss"] == dataclasses.asdict(expected)
    _, meta = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert meta.config["model"]["loss"] == dataclasses.asdict(expected)
