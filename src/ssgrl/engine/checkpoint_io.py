"""The Trainer's checkpoint files: written so that they cannot be half-written, verified when read.

``VerifiedCheckpointIO`` is Lightning's ``TorchCheckpointIO`` with ssgrl's file contract
(``ssgrl.checkpoint.save_atomically``): each checkpoint is written to a temporary file in its
folder, fsynced and renamed into place, with its sha256 in a ``NAME.sha256`` sidecar
(``sha256sum`` format) that lists the old and the new digest while a file is replaced, so the
file at the name always verifies. Loading (``fit --ckpt_path``, ``validate``/``test``) checks the
sidecar first and refuses a truncated or altered file with its name (``CheckpointError``).

``ModelCheckpoint`` writes a checkpoint before it removes the one it replaces (``best.ckpt`` is
overwritten in place, by rename), so an old checkpoint is gone only once its successor is complete.
A write that fails (a full disk: ``OSError`` ENOSPC) leaves the previous file and its sidecar as they
were, removes its temporary file, and stops the run with ``CheckpointWriteError`` naming the file.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from ssgrl.checkpoint import CheckpointError, remove_checkpoint, save_atomically, verify_checkpoint

PathLike = str | Path


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the file it would replace is intact)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        if cause.errno == errno.ENOSPC:
            reason = "no space left on device"
        super().__init__(cause.errno, f"cannot write checkpoint {path}: {reason}")
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return str(self.strerror)


def _is_local(path: PathLike) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class VerifiedCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` writing atomically with a sha256 sidecar and verifying on load
    (local paths; remote URLs are left to Lightning's own implementation)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        try:
            save_atomically(checkpoint, target, overwrite=True)
        except OSError as err:
            raise CheckpointWriteError(target, err) from err

    def load_checkpoint(
        self,
        path: PathLike,
        map_location: Callable[..., Any] | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        target = Path(str(path).removeprefix("file://"))
        if not target.is_file():
            raise FileNotFoundError(f"checkpoint {target}: no such file")
        verify_checkpoint(target)
        try:
            return super().load_checkpoint(path, map_location, weights_only)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {target}: cannot be read as a PyTorch checkpoint ({err})"
            ) from err

    def remove_checkpoint(self, path: PathLike) -> None:
        if not _is_local(path):
            super().remove_checkpoint(path)
            return
        remove_checkpoint(Path(str(path).removeprefix("file://")))


__all__ = ["CheckpointWriteError", "VerifiedCheckpointIO"]
