"""A fit stopped mid-epoch and resumed from its checkpoint reproduces the uninterrupted run:
the same loss at every step and bit-identical final weights (here: cached features with random
mirrored features, no loader workers, and fine-tuning the backbone's last stage on images with
random flips through 2 workers; test_signals.py: images with random flips, 2 workers, a real
SIGTERM from outside, and SLURM's requeue signal).

Every run is an ordinary ``ssgrl fit`` (configs/tiny.yaml, a cosine schedule over 2 epochs of
3 steps); ``StepLog``, given as a ``trainer.callbacks`` entry, records each step's loss and can
send this process a signal after a chosen step, which stops the run through the same path as a
``kill``: the step finishes, ``checkpoints/interrupted.ckpt`` is written, exit 128 + signal.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ssgrl.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning")
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
FINETUNE = TINY.with_name("tiny_finetune.yaml")
DATA = "{num_train: 12, num_val: 8, num_test: 8, image_size: 64}"
STEPS_PER_EPOCH = 3
TOTAL_STEPS = 2 * STEPS_PER_EPOCH


class StepLog(Callback):
    """Appends ``{"step", "loss"}`` of each training step to ``path`` (JSON lines). After global
    step ``signal_at`` it sends ``signal_name`` to this process; after step ``wait_at`` it waits
    (at most 120 s) until a signal from outside has asked the Trainer to stop."""

    def __init__(
        self, path: str, signal_at: int = -1, signal_name: str = "SIGTERM", wait_at: int = -1
    ) -> None:
        self.path = path
        self.signal_at = signal_at
        self.signal_name = signal_name
        self.wait_at = wait_at

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "loss": float(loss)}) + "\n")
        if trainer.global_step == self.signal_at:
            os.kill(os.getpid(), getattr(signal, self.signal_name))
        if trainer.global_step == self.wait_at:
            deadline = time.monotonic() + 120
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.05)


def fit_args(
    run: Path,
    log: Path,
    *,
    cached: bool,
    workers: int = 0,
    signal_at: int = -1,
    sig: str = "SIGTERM",
    wait_at: int = -1,
    config: Path = TINY,
    epochs: int = 2,
) -> list[str]:
    """``ssgrl fit`` of ``config`` (configs/tiny.yaml): flips, batch 4, cosine schedule, 2
    epochs."""
    init = {"path": str(log), "signal_at": signal_at, "signal_name": sig, "wait_at": wait_at}
    callback = {"class_path": f"{__name__}.StepLog", "init_args": init}
    return [
        "fit",
        "--config",
        str(config),
        "--run_dir",
        str(run),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.max_epochs",
        str(epochs),
        f"--trainer.callbacks+={json.dumps(callback)}",
        "--data.dataset_options",
        DATA,
        "--data.image_size",
        "64",
        "--data.batch_size",
        "4",
        "--data.train_augment",
        "flip",
        "--data.num_workers",
        str(workers),
        "--model.optim.scheduler",
        "cosine",
        "--cache_features",
        str(cached).lower(),
    ]


def losses(log: Path) -> dict[int, float]:
    """Step -> loss; each step must appear once."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert len(steps) == len(set(steps)), f"a step ran twice: {steps}"
    return {r["step"]: r["loss"] for r in rows}


def weights(run: Path, steps: int) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == steps
    return ckpt["state_dict"]


def assert_same_run(a: tuple[Path, Path], b: tuple[Path, Path], steps: int = TOTAL_STEPS) -> None:
    """Same loss at every step, bit-identical final weights."""
    la, lb = losses(a[1]), losses(b[1])
    assert sorted(la) == list(range(1, steps + 1))
    assert la == lb
    wa, wb = weights(a[0], steps), weights(b[0], steps)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different


_RUNS: dict[bool, tuple[Path, Path]] = {}  # also when test_signals.py imports the fixture


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, Path]]:
    """The uninterrupted runs, images and cached features: {cached: (run dir, step log)}."""
    if not _RUNS:
        root = tmp_path_factory.mktemp("uninterrupted")
        for cached in (False, True):
            run, log = root / f"run-{cached}", root / f"steps-{cached}.jsonl"
            assert main(fit_args(run, log, cached=cached)) == 0
            _RUNS[cached] = (run, log)
    return _RUNS


def check_interrupted(run: Path, log: Path, err: str, sig: str, at: int) -> Path:
    """The one-line message, the checkpoint at step ``at``, the steps run so far."""
    ckpt = run / "checkpoints" / "interrupted.ckpt"
    line = next(x for x in err.splitlines() if "interrupted by" in x)
    assert (
        f"ssgrl fit: interrupted by {sig} at step {at} (epoch {(at - 1) // STEPS_PER_EPOCH})"
        in line
    )
    assert f"checkpoint written: {ckpt}" in line
    assert f"resume with: ssgrl fit --run_dir {run} --ckpt_path last" in line
    assert torch.load(ckpt, weights_only=True)["global_step"] == at
    assert (run / "checkpoints" / "interrupted.ckpt.sha256").is_file()
    assert sorted(losses(log)) == list(range(1, at + 1))
    return ckpt


@pytest.mark.slow
def test_mid_epoch_resume_is_exact(
    uninterrupted: dict[bool, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C (SIGINT) in the first epoch after step 2 of 3; `--ckpt_path last` resumes in the
    same run directory; cached features, each training image or its mirror drawn at random."""
    run, log = tmp_path / "run", tmp_path / "steps.jsonl"
    args = fit_args(run, log, cached=True, signal_at=2, sig="SIGINT")
    assert main(args) == 128 + signal.SIGINT
    ckpt = check_interrupted(run, log, capsys.readouterr().err, "SIGINT", 2)
    assert main([*fit_args(run, log, cached=True), "--ckpt_path", "last"]) == 0
    assert f"resuming {run} from {ckpt}" in capsys.readouterr().err
    assert not ckpt.exists()  # replaced by the complete, newer last.ckpt
    assert_same_run(uninterrupted[True], (run, log))


@pytest.mark.slow
def test_mid_epoch_resume_while_fine_tuning_with_two_workers_is_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """configs/tiny_finetune.yaml (1 epoch): the backbone's last stage trains (its BatchNorm
    too), images with random flips, 2 loader workers, SIGTERM after step 2 of 3; the
    uninterrupted run has no workers."""
    ft = {"cached": False, "config": FINETUNE, "epochs": 1}
    a = (tmp_path / "a", tmp_path / "a.jsonl")
    assert main(fit_args(*a, **ft)) == 0  # type: ignore[arg-type]
    run, log = tmp_path / "b", tmp_path / "b.jsonl"
    args = fit_args(run, log, workers=2, signal_at=2, **ft)  # type: ignore[arg-type]
    assert main(args) == 128 + signal.SIGTERM
    check_interrupted(run, log, capsys.readouterr().err, "SIGTERM", 2)
    resume = fit_args(run, log, workers=2, **ft)  # type: ignore[arg-type]
    assert main([*resume, "--ckpt_path", "last"]) == 0
    assert_same_run(a, (run, log), steps=STEPS_PER_EPOCH)
