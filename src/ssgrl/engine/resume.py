"""Stopping and resuming ``ssgrl fit`` exactly.

- ``ResumeState`` (a Callback) keeps what Lightning's checkpoints lack for an exact resume: the
  global random states (torch, CUDA, NumPy, Python), put back just before the first resumed batch
  (or epoch), and it hands the training loader its saved position when Lightning itself would not:
  Lightning restores a stateful loader only when it builds the loader after the checkpoint was
  loaded, but a scheduler that asks ``trainer.estimated_stepping_batches`` (cosine, one-cycle)
  makes it build the loader earlier, and the saved position would be dropped.
- ``Interruption`` (a Callback) turns SIGTERM, SIGINT and, under SLURM with auto-requeue, the
  requeue signal (SIGUSR1) into Lightning's graceful stop: the step that is running finishes,
  ``checkpoints/interrupted.ckpt`` is written at that step, the SLURM job is requeued (for the
  requeue signal), and the command exits non-zero with a line saying how to resume. A second
  SIGINT stops at once, without a checkpoint.
- ``find_resumable`` resolves ``--ckpt_path last``: the newest checkpoint of a run directory that
  verifies (``ssgrl.checkpoint.verify_checkpoint``), skipping damaged ones and saying so.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ssgrl.checkpoint import CheckpointError, verify_checkpoint

INTERRUPTED_NAME = "interrupted.ckpt"


# --- random states ------------------------------------------------------------------------------


def collect_rng_states() -> dict[str, Any]:
    """The global random states as plain data (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, py_state, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(version), torch.tensor(py_state, dtype=torch.int64), gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = states["python"]
    random.setstate((version, tuple(int(v) for v in py_state.tolist()), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(Callback):
    """Saves the random states in each checkpoint and, on resume, restores them and the training
    loader's position (see the module doc)."""

    def __init__(self) -> None:
        self._rng: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng = state_dict.get("rng")

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        saved = (fit_loop.get("state_dict") or {}).get("combined_loader")
        self._loader_states = list(saved or [])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        states, self._loader_states = self._loader_states, []
        loaders = [
            dl
            for dl in _flattened(trainer.train_dataloader)
            if callable(getattr(dl, "load_state_dict", None))
            and callable(getattr(dl, "state_dict", None))
        ]
        if states and len(states) == len(loaders):
            for loader, state in zip(loaders, states, strict=True):
                loader.load_state_dict(state)  # the same state again when Lightning did it

    def _restore_rng(self) -> None:
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_rng()  # resumed at an epoch's end: before the next epoch's loader starts

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._restore_rng()  # resumed mid-epoch


def _flattened(loaders: Any) -> list[Any]:
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return [x for v in loaders.values() for x in _flattened(v)]
    if isinstance(loaders, list | tuple):
        return [x for v in loaders for x in _flattened(v)]
    return [loaders]


# --- signals ------------------------------------------------------------------------------------


@dataclass
class Interrupted:
    """What an interruption left behind."""

    signal: str
    step: int
    epoch: int
    checkpoint: Path | None
    requeued: str | None = None  # the SLURM job id that was requeued


def requeue_signal(trainer: L.Trainer) -> int | None:
    """The signal SLURM sends before it stops a job (SIGUSR1 by default) when the Trainer runs
    under SLURM with auto-requeue, else None."""
    connector = getattr(trainer, "_accelerator_connector", None)
    env = getattr(connector, "cluster_environment", None)
    if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
        return int(env.requeue_signal)
    return None


class Interruption(Callback):
    """A signal stops ``fit`` at the next batch boundary with a checkpoint (see the module doc).

    ``install(trainer)`` sets the signal handlers (main thread only); Lightning adds its own
    SIGTERM handler to ours when fitting starts and leaves SIGUSR1 to us; the caller restores the
    previous handlers afterwards (``preserved_signal_handlers``)."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = Path(checkpoint)
        self.signal_name: str | None = None
        self.signum: int | None = None
        self.result: Interrupted | None = None
        self._trainer: L.Trainer | None = None
        self._requeue: int | None = None

    def install(self, trainer: L.Trainer) -> None:
        self._trainer = trainer
        self._requeue = requeue_signal(trainer)
        signals = [signal.SIGTERM, signal.SIGINT]
        if self._requeue is not None:
            signals.append(signal.Signals(self._requeue))
        for signum in signals:
            try:
                signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: Lightning's own SIGTERM handling only
                return

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal_name is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            self.signum = signum
        self._request_stop()

    def _request_stop(self) -> None:
        """Lightning's own graceful stop (its SIGTERM flag): the loops finish the running batch
        (and their bookkeeping), then raise ``SIGTERMException`` and call ``on_exception``."""
        trainer = self._trainer
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None:
            connector.received_sigterm = True
        elif trainer is not None:
            trainer.should_stop = True

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # a signal during setup: Lightning cleared its flag when fitting started
        if self.signal_name is not None and not trainer.received_sigterm:
            self._request_stop()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.signal_name is None or not isinstance(exception, SIGTERMException):
            return
        saved: Path | None = None
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.checkpoint)
            saved = self.checkpoint
        self.result = Interrupted(
            self.signal_name, trainer.global_step, trainer.current_epoch, saved
        )
        if self.signum is not None and self.signum == self._requeue and trainer.is_global_zero:
            self.result.requeued = requeue_slurm_job()


def requeue_slurm_job() -> str | None:
    """``scontrol requeue`` this SLURM job (as Lightning's auto-requeue does); its id, or None
    when that failed (a warning says why)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = (
        f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        if array_job is not None
        else os.environ.get("SLURM_JOB_ID")
    )
    if not job or not all(c.isdigit() or c in "_-" for c in job):
        print(f"ssgrl fit: cannot requeue: no valid SLURM job id ({job!r})", file=sys.stderr)
        return None
    try:
        code = subprocess.call(["scontrol", "requeue", job])
    except OSError as err:
        print(f"ssgrl fit: cannot requeue SLURM job {job}: {err}", file=sys.stderr)
        return None
    if code != 0:
        print(f"ssgrl fit: `scontrol requeue {job}` failed (exit {code})", file=sys.stderr)
        return None
    return job


@contextlib.contextmanager
def preserved_signal_handlers() -> Iterator[None]:
    """Put back the handlers of SIGTERM, SIGINT and SIGUSR1 as they were."""
    names = ("SIGTERM", "SIGINT", "SIGUSR1")
    signums = [getattr(signal, n) for n in names if hasattr(signal, n)]
    saved = {s: signal.getsignal(s) for s in signums}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                with contextlib.suppress(ValueError):  # not the main thread
                    signal.signal(s, handler)


# --- resolving --ckpt_path last -----------------------------------------------------------------


@dataclass
class Resumable:
    """The checkpoint ``last`` resolves to, and the newer ones skipped (path, why)."""

    path: Path
    skipped: list[tuple[Path, str]]


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """The run's checkpoint files, newest first (``interrupted`` > ``last`` > others on ties)."""
    order = {INTERRUPTED_NAME: 0, "last.ckpt": 1}
    files = [p for p in Path(folder).glob("*.ckpt") if p.is_file()]
    return sorted(files, key=lambda p: (-p.stat().st_mtime_ns, order.get(p.name, 2), p.name))


def _check_readable(path: Path) -> None:
    """A file without a sidecar (older ssgrl): at least it must load."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({err})") from None


def find_resumable(run_dir: str | Path) -> Resumable:
    """The newest checkpoint of ``run_dir/checkpoints`` that verifies (``--ckpt_path last``);
    CheckpointError when there is none."""
    folder = Path(run_dir) / "checkpoints"
    skipped: list[tuple[Path, str]] = []
    for path in checkpoints_newest_first(folder):
        try:
            if verify_checkpoint(path) is None:
                _check_readable(path)
        except CheckpointError as err:
            skipped.append((path, str(err)))
            continue
        return Resumable(path, skipped)
    if skipped:
        detail = "; ".join(f"{p.name}: {why}" for p, why in skipped)
        raise CheckpointError(f"no intact checkpoint to resume in {folder}: {detail}")
    raise CheckpointError(
        f"--ckpt_path last: no checkpoint to resume in {folder} (is {run_dir} a fit run?)"
    )


__all__ = [
    "INTERRUPTED_NAME",
    "Interrupted",
    "Interruption",
    "Resumable",
    "ResumeState",
    "checkpoints_newest_first",
    "collect_rng_states",
    "find_resumable",
    "preserved_signal_handlers",
    "requeue_signal",
    "requeue_slurm_job",
    "set_rng_states",
]
