"""Distributed evaluation counts every test image exactly once.

Under DDP, Lightning's DistributedSampler pads the shards to equal length by repeating images:
13 test images on 2 processes are evaluated as 14 (image 0 twice). ``SSGRLModule.gather_outputs``
all-gathers logits, targets and indices and keeps one row per index. The test runs ``ssgrl test``
from the same checkpoint once in one process and once with ``--trainer.devices 2
--trainer.strategy ddp`` (2 CPU processes, gloo), each in a subprocess as a user would, and
compares the written ``metrics.json`` and logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_ssgrl, tiny_lite0_config

from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.data.registry import load_split
from ssgrl.engine.cli import SSGRLCLI
from ssgrl.engine.module import SSGRLModule
from ssgrl.metrics import compute_metrics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
    # classes without a positive among 13 images (reported as undefined) are expected here
    pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning"),
]

NUM_TEST = 13
BATCH = 4
DEVICES = 2
SYNTHETIC = {"num_train": 8, "num_val": 4, "num_test": NUM_TEST, "image_size": 64}

CONFIG = tiny_lite0_config(SYNTHETIC, epochs=1, optim={"lr": 0.01}, data={"batch_size": BATCH})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A checkpoint, then its test metrics from one process and from two."""
    tmp = tmp_path_factory.mktemp("ddp")
    config = tmp / "config.yaml"
    config.write_text(CONFIG)
    run_ssgrl(tmp / "fit.log", "fit", "--config", str(config), "--run_dir", str(tmp / "fit"))
    ckpt = tmp / "fit" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    common = ["--config", str(config), "--ckpt_path", str(ckpt)]
    run_ssgrl(tmp / "single.log", "test", *common, "--run_dir", str(tmp / "single"))
    ddp_log = run_ssgrl(
        tmp / "ddp.log",
        "test",
        *common,
        "--run_dir",
        str(tmp / "ddp"),
        "--trainer.devices",
        str(DEVICES),
        "--trainer.strategy",
        "ddp",
    )
    out: dict[str, Any] = {"ddp_log": ddp_log}
    for name in ("single", "ddp"):
        d = tmp / name
        out[name] = {
            "json": json.loads((d / "metrics.json").read_text()),
            "logits": np.load(d / "test_logits.npy"),
            "targets": np.load(d / "test_targets.npy"),
        }
    return out


def assert_close(got: Any, expected: Any, path: str = "metrics") -> None:
    """Recursive equality with a float tolerance of 1e-6."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), path
        for key, value in expected.items():
            assert_close(got[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(got, float | int) and got == pytest.approx(expected, abs=1e-6), path
    else:
        assert got == expected, path


def test_the_sampler_has_to_pad() -> None:
    """The premise: the split does not divide into equal shards of whole batches."""
    assert NUM_TEST % DEVICES != 0 and NUM_TEST % (DEVICES * BATCH) != 0


def test_two_processes_ran(runs: dict[str, Any]) -> None:
    log = runs["ddp_log"]
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    assert runs["ddp"]["json"]["protocol"]["num_images"] == NUM_TEST


def test_every_image_once_in_index_order(runs: dict[str, Any]) -> None:
    expected = load_split("synthetic", "test", None, **SYNTHETIC).targets  # (13, C) oracle
    for name in ("single", "ddp"):
        run = runs[name]
        assert run["logits"].shape == expected.shape, name
        np.testing.assert_array_equal(run["targets"], expected)
        assert run["json"]["metrics"]["num_images"] == NUM_TEST


def test_ddp_metrics_equal_single_process(runs: dict[str, Any]) -> None:
    single, ddp = runs["single"], runs["ddp"]
    np.testing.assert_allclose(ddp["logits"], single["logits"], rtol=0, atol=1e-5)
    assert_close(ddp["json"]["metrics"], single["json"]["metrics"])
    for key in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"):  # explicitly, whatever else is there
        assert ddp["json"]["metrics"][key] == pytest.approx(
            single["json"]["metrics"][key], abs=1e-6
        )
    assert ddp["json"]["protocol"] == single["json"]["protocol"]


def test_a_padding_duplicate_would_show(runs: dict[str, Any]) -> None:
    """The comparison is sensitive: counting the padded image 0 twice changes the metrics."""
    single = runs["single"]
    metrics = single["json"]["metrics"]
    order = np.r_[np.arange(NUM_TEST), 0]  # what the two shards hold together
    padded = compute_metrics(
        single["logits"][order].astype(np.float64),
        single["targets"][order],
        class_names=list(metrics["per_class_AP"]),
        ap_mode=metrics["ap_mode"],
        threshold=metrics["threshold"],
        top_k=metrics["top_k"],
        logits=True,
    )
    assert padded["num_images"] == NUM_TEST + 1
    changed = [
        k
        for k in ("mAP", "CP", "CR", "OP", "OR")
        if padded[k] != pytest.approx(metrics[k], abs=1e-6)
    ]
    assert changed


def test_spawned_strategies_are_refused(tmp_path: Path) -> None:
    """ddp_spawn keeps the results in the workers, so metrics.json could not be written: the CLI
    says so before running anything."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    args = ["--config", str(config), "--run_dir", str(tmp_path / "run")]
    args += ["--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"]
    with pytest.raises(SystemExit, match=r"--trainer\.strategy ddp "):
        SSGRLCLI(
            SSGRLModule, SSGRLDataModule, run=False, args=args, auto_configure_optimizers=False
        )
