"""SIGTERM from outside, and SLURM's requeue signal, stop ``ssgrl fit`` after the running step
with a complete checkpoint and a one-line message; the resumed run equals the uninterrupted one
(same loss at every step, bit-identical final weights)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import start_ssgrl
from test_resume import (  # the uninterrupted runs are shared
    assert_same_run,
    check_interrupted,
    fit_args,
    losses,
    uninterrupted,
)

from ssgrl.cli import main

__all__ = ["uninterrupted"]  # a fixture, used by name
pytestmark = pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning")

HERE = Path(__file__).resolve().parent


def _wait_for_step(log: Path, step: int, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ssgrl fit ended early with exit code {proc.returncode}")
        if log.is_file() and step in losses(log):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} was not logged within {limit} s")


@pytest.mark.slow
def test_sigterm_from_outside_checkpoints_and_resume_is_exact(
    uninterrupted: dict[bool, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real process, images with random flips through 2 loader workers: SIGTERM arrives after
    step 4 (the first of epoch 1; the callback holds the step until it has); the resumed run
    (2 workers) equals the uninterrupted one (no workers)."""
    run, log = tmp_path / "run", tmp_path / "steps.jsonl"
    args = fit_args(run, log, cached=False, workers=2, wait_at=4)
    err_file = tmp_path / "output.txt"
    proc = start_ssgrl(err_file, *args, threads=torch.get_num_threads(), pythonpath=HERE)
    try:
        _wait_for_step(log, 4, proc, limit=180)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err_file.read_text()
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    check_interrupted(run, log, stderr, "SIGTERM", 4)
    assert main([*fit_args(run, log, cached=False, workers=2), "--ckpt_path", "last"]) == 0
    assert_same_run(uninterrupted[False], (run, log))


@pytest.mark.slow
def test_slurm_requeue_signal_checkpoints_requeues_and_resumes(
    uninterrupted: dict[bool, tuple[Path, Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under SLURM (its environment variables; a stand-in ``scontrol`` records its arguments)
    SIGUSR1 is the requeue signal: checkpoint at the step, ``scontrol requeue JOB``, exit. The
    requeued job, the same command line with SLURM_RESTART_COUNT=1, resumes by itself, exactly.
    Lightning's own SIGUSR1 handler (which writes hpc_ckpt_N.ckpt from inside the signal
    handler, mid-step) is not installed."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "ssgrl-test", "SLURM_JOB_ID": "4242"}
    slurm |= {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    slurm |= {"SLURM_NODELIST": "localhost"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)

    # were SIGUSR1 left unhandled, it would end this test process: a no-op handler instead
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    run, log = tmp_path / "run", tmp_path / "steps.jsonl"
    args = fit_args(run, log, cached=True, signal_at=4, sig="SIGUSR1")
    try:
        code = main(args)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert code == 128 + signal.SIGUSR1
    err = capsys.readouterr().err
    check_interrupted(run, log, err, "SIGUSR1", 4)
    assert "SLURM job 4242 requeued" in err
    assert calls.read_text().split() == ["requeue", "4242"]
    assert not list(run.rglob("hpc_ckpt_*.ckpt"))

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # what SLURM sets in the requeued job
    assert main(fit_args(run, log, cached=True)) == 0
    assert f"SLURM job requeued (restart 1): resuming {run}" in capsys.readouterr().err
    assert_same_run(uninterrupted[True], (run, log))
    assert json.loads((run / "metrics.json").read_text())["last_checkpoint"].endswith("last.ckpt")
