"""Distributed training: ``ssgrl fit --trainer.strategy ddp --trainer.devices 2`` (2 CPU processes,
gloo) takes the steps of one process with the same global batch.

Two runs of ``ssgrl fit``, each in a subprocess as a user runs it (Lightning's launcher re-runs
the command for rank 1): two processes with ``data.batch_size`` 4 each, and one process with
batch 8 under ``--trainer.strategy ddp --trainer.devices 1``. The one-process run uses the
DistributedSampler too (one replica), so its shuffle is the permutation the two processes share
out: global batch k of the two processes holds exactly the images of its batch k (the test
checks this from the recorded indices). A plain one-process run shuffles with another generator,
so its batches hold other images and its weights differ by far more than rounding.

The data are chosen to be awkward: 25 training images (rank 1's shard is padded with a duplicate,
and the last step has 1 image on rank 0 and only the duplicate on rank 1), 7 validation images
(padded too). One global step is poisoned on rank 1 only (its features set to NaN): rank 0's
loss is finite, yet both processes must skip that step together (else their weights part, or one
waits for the other in a collective forever); the one-process run has the same global batch
poisoned.

Tolerance: float32 weights and logits within 1e-5 (abs) + 1e-4 (rel), losses within 1e-5 (rel),
mAP and the other metrics within 1e-4 percentage points. What differs is only the order of
float32 sums (two partial sums all-reduced instead of one sum over 8 images; the per-process
batch of 4 instead of 8 in the head's matrix products), so differences are rounding: measured
2e-8 on weights and 5e-7 on logits after 7 SGD steps. An image counted twice, a mean of
per-process means instead of the global mean (the last step: 1 image vs 1 image plus a
duplicate; tried: weights off by 4e-3) or a step taken by one process alone changes them by
orders of magnitude more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import finish_ssgrl, start_ssgrl, tiny_lite0_config
from lightning.pytorch.callbacks import Callback

from ssgrl.data.registry import load_split

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning"),
]

HERE = Path(__file__).resolve().parent
NUM_TRAIN, NUM_VAL = 25, 7
BATCH = 4  # per process; the one-process run: 8
EPOCHS = 2
STEPS_PER_EPOCH = 4  # ceil(13 / 4) per process; ceil(25 / 8) in one process
POISONED_STEP = 5  # epoch 1, batch 1: on rank 1 only under DDP, the whole batch in one process
SYNTHETIC = {"num_train": NUM_TRAIN, "num_val": NUM_VAL, "num_test": 4, "image_size": 64}
ATOL, RTOL = 1e-5, 1e-4

CONFIG = tiny_lite0_config(
    SYNTHETIC,
    epochs=EPOCHS,
    optim={"optimizer": "sgd", "lr": 0.05},
    devices=None,  # set on the command line
    cache_features=True,
)


class RecordSteps(Callback):
    """Test-only: per process, what each training step saw and did, written to
    ``out/rank<r>.json`` after every step; features of ``poison`` steps ([rank, global step],
    rank -1 = every rank) are set to NaN before the step."""

    def __init__(self, out: str, poison: list[list[int]] | None = None) -> None:
        self.out = Path(out)
        self.poison = {tuple(p) for p in poison or []}
        self.steps: list[dict[str, Any]] = []
        self.val: list[dict[str, Any]] = []
        self._before: dict[str, torch.Tensor] = {}

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        step, rank = trainer.global_step, trainer.global_rank
        if (rank, step) in self.poison or (-1, step) in self.poison:
            batch["features"] = torch.full_like(batch["features"], float("nan"))
        self._before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        changed = [
            n for n, p in pl_module.named_parameters() if not torch.equal(p, self._before[n])
        ]
        skipped = bool(outputs["skipped"])
        loss = trainer.callback_metrics.get("train/loss_step")
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "batch_idx": batch_idx,
                "global_step_after": trainer.global_step,
                "index": batch["index"].tolist(),
                "counted": None if skipped else outputs["counted"].tolist(),
                "skipped": skipped,
                "changed": len(changed),
                "loss": None if skipped or loss is None else float(loss),
            }
        )
        self._write(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        m = trainer.callback_metrics
        self.val.append({k: float(m[k]) for k in ("val/loss", "val/mAP") if k in m})
        self._write(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.out / f"rank{trainer.global_rank}_final.pt")

    def _write(self, trainer: Any) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {"world_size": trainer.world_size, "steps": self.steps, "val": self.val}
        path = self.out / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(data))


def callback_arg(out: Path, poison: list[list[int]]) -> str:
    spec = {"class_path": "test_distributed_fit.RecordSteps"}
    spec["init_args"] = {"out": str(out), "poison": poison}  # type: ignore[assignment]
    return json.dumps([spec])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ddp_fit")
    config = tmp / "config.yaml"
    config.write_text(CONFIG)
    out: dict[str, Any] = {}
    plan = {"ddp": (2, BATCH, [[1, POISONED_STEP]]), "one": (1, 2 * BATCH, [[0, POISONED_STEP]])}
    started = {}
    for name, (devices, batch, poison) in plan.items():  # both at once: start-up is mostly idle
        started[name] = start_ssgrl(
            tmp / f"{name}.log",
            *("fit", "--config", str(config), "--run_dir", str(tmp / name)),
            *("--trainer.strategy", "ddp", "--trainer.devices", str(devices)),
            *("--data.batch_size", str(batch)),
            *("--trainer.callbacks", callback_arg(tmp / f"{name}-steps", poison)),
            pythonpath=HERE,
        )
    for name, (devices, _, _) in plan.items():
        log = finish_ssgrl(started[name], tmp / f"{name}.log")
        run = tmp / name
        steps = tmp / f"{name}-steps"
        ranks = [json.loads((steps / f"rank{r}.json").read_text()) for r in range(devices)]
        final = [torch.load(steps / f"rank{r}_final.pt", weights_only=True) for r in range(devices)]
        out[name] = {
            "log": log,
            "ranks": ranks,
            "metrics": json.loads((run / "metrics.json").read_text()),
            "val_logits": np.load(run / "val_logits.npy"),
            "val_targets": np.load(run / "val_targets.npy"),
            "final": final,
            "best": torch.load(run / "checkpoints" / "best.ckpt", weights_only=True),
        }
    return out


def test_two_processes_trained(runs: dict[str, Any]) -> None:
    log = runs["ddp"]["log"]
    assert "MEMBER: 2/2" in log and "distributed_backend=gloo" in log
    assert [r["world_size"] for r in runs["ddp"]["ranks"]] == [2, 2]
    for rank in runs["ddp"]["ranks"]:
        assert len(rank["steps"]) == EPOCHS * STEPS_PER_EPOCH
        assert rank["steps"][-1]["global_step_after"] == EPOCHS * STEPS_PER_EPOCH


def test_each_training_image_once_per_epoch(runs: dict[str, Any]) -> None:
    """The sampler hands rank 1 a padded duplicate; it is drawn, but not counted in the loss."""
    ranks = runs["ddp"]["ranks"]
    for epoch in range(EPOCHS):
        drawn: list[int] = []
        counted: list[int] = []
        for rank in ranks:
            for s in rank["steps"]:
                if s["epoch"] == epoch:
                    drawn += s["index"]
                    # a skipped step counts nothing; what it drew is what it would have counted
                    counted += s["index"] if s["skipped"] else s["counted"]
        assert len(drawn) == NUM_TRAIN + 1  # 13 per process: one duplicate
        assert sorted(counted) == list(range(NUM_TRAIN)), f"epoch {epoch}"
        # and the per-process shards are disjoint apart from the duplicate
        shards = [{i for s in r["steps"] if s["epoch"] == epoch for i in s["index"]} for r in ranks]
        assert len(shards[0] & shards[1]) == 1


def test_global_batches_are_the_one_process_batches(runs: dict[str, Any]) -> None:
    ddp, one = runs["ddp"]["ranks"], runs["one"]["ranks"][0]
    assert len(one["steps"]) == EPOCHS * STEPS_PER_EPOCH
    for k, single in enumerate(one["steps"]):
        parts = [r["steps"][k] for r in ddp]
        merged = sorted(i for p in parts for i in (p["index"] if p["skipped"] else p["counted"]))
        assert merged == sorted(single["index"]), f"step {k}"


def test_a_nonfinite_loss_on_one_process_skips_the_step_on_every_process(
    runs: dict[str, Any],
) -> None:
    for name in ("ddp", "one"):
        for rank in runs[name]["ranks"]:
            for k, s in enumerate(rank["steps"]):
                if k == POISONED_STEP:
                    assert s["skipped"] and s["changed"] == 0, (name, k)
                else:
                    assert not s["skipped"] and s["changed"] > 0, (name, k)
    # one warning (from rank 0) naming the whole global batch, and rank 1's half as the culprits
    ids = load_split("synthetic", "train", None, **SYNTHETIC).ids
    parts = [r["steps"][POISONED_STEP]["index"] for r in runs["ddp"]["ranks"]]
    names = [", ".join(ids[i] for i in sorted(p)) for p in (parts[0] + parts[1], parts[1])]
    log = runs["ddp"]["log"]
    assert log.count("NonFiniteLossWarning: step 5 (epoch 1, batch 1): the loss is not finite") == 1
    assert f"the batch's samples: {names[0]}; not finite for {names[1]}" in log


def test_losses_are_global_batch_means(runs: dict[str, Any]) -> None:
    """train/loss of every step: the same on both processes, and the one-process value."""
    ddp, one = runs["ddp"]["ranks"], runs["one"]["ranks"][0]
    for k, single in enumerate(one["steps"]):
        if single["skipped"]:
            continue
        for rank in ddp:
            assert rank["steps"][k]["loss"] == pytest.approx(single["loss"], rel=1e-5), k
    for epoch, single in enumerate(one["val"]):
        for rank in ddp:
            assert rank["val"][epoch]["val/loss"] == pytest.approx(single["val/loss"], rel=1e-5)
            assert rank["val"][epoch]["val/mAP"] == pytest.approx(single["val/mAP"], abs=1e-4)


def test_validation_counts_each_image_once(runs: dict[str, Any]) -> None:
    expected = load_split("synthetic", "val", None, **SYNTHETIC).targets
    for name in ("ddp", "one"):
        np.testing.assert_array_equal(runs[name]["val_targets"], expected)
        assert runs[name]["metrics"]["metrics"]["num_images"] == NUM_VAL


def assert_near(got: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """|got - expected| <= ATOL + RTOL |expected| everywhere (torch.testing.assert_close's rule,
    without its per-call cost: 300 tensors)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype, name
    excess = (got.double() - expected.double()).abs() - (ATOL + RTOL * expected.double().abs())
    assert excess.numel() == 0 or float(excess.max()) <= 0, f"{name}: off by {excess.max()}"


def test_weights_and_metrics_equal_one_process(runs: dict[str, Any]) -> None:
    ddp, one = runs["ddp"], runs["one"]
    final0, final1 = ddp["final"]
    reference = one["final"][0]
    assert sorted(final0) == sorted(final1) == sorted(reference)
    for key in reference:
        assert torch.equal(final0[key], final1[key]), key  # the processes hold one model
        assert_near(final0[key], reference[key], key)
    a, b = ddp["best"], one["best"]
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    for key in b["state_dict"]:
        assert_near(a["state_dict"][key], b["state_dict"][key], key)
    np.testing.assert_allclose(ddp["val_logits"], one["val_logits"], atol=ATOL, rtol=RTOL)
    got, expected = ddp["metrics"]["metrics"], one["metrics"]["metrics"]
    for key in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert got[key] == pytest.approx(expected[key], abs=1e-4), key
    assert ddp["metrics"]["best_val_mAP"] == pytest.approx(one["metrics"]["best_val_mAP"], abs=1e-4)
