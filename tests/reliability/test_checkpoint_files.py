"""Checkpoints cannot be half-written, and a damaged one is never used unnoticed.

Every checkpoint is written to a temporary file, fsynced and renamed into place, with its sha256
in ``NAME.sha256``; every reader (resume, ``ssgrl test``, ``predict``, ``load_model``) verifies it
and names the file when it does not match; ``--ckpt_path last`` skips a damaged checkpoint for
the previous intact one; a full disk stops ``fit`` with the previous checkpoints intact.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from PIL import Image

from ssgrl.checkpoint import (
    CheckpointError,
    checksum_path,
    load_model,
    read_checkpoint,
    save_atomically,
    verify_checkpoint,
)
from ssgrl.cli import main
from ssgrl.engine.checkpoint_io import VerifiedCheckpointIO
from ssgrl.engine.resume import find_resumable

pytestmark = pytest.mark.filterwarnings("ignore::ssgrl.metrics.UndefinedClassWarning")
TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
QUIET = ["--trainer.enable_progress_bar", "false"]
SMALL = ["--data.dataset_options", "{num_train: 12, num_val: 8, num_test: 8, image_size: 64}"]
SMALL += ["--data.image_size", "64", "--data.batch_size", "4"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# --- the file format, without training ----------------------------------------------------------


def test_sidecar_is_sha256sum_format_and_detects_damage(tmp_path: Path) -> None:
    path = save_atomically({"w": torch.arange(1000.0)}, tmp_path / "a.ckpt")
    sidecar = checksum_path(path)
    assert sidecar.name == "a.ckpt.sha256"
    check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0 and b"a.ckpt: OK" in check.stdout
    assert verify_checkpoint(path) is not None
    assert not list(tmp_path.glob("*.tmp"))
    for damage in (_flip_bit, _truncate):
        damaged = tmp_path / f"{damage.__name__}.ckpt"
        shutil.copy(path, damaged)
        checksum_path(damaged).write_text(sidecar.read_text().replace("a.ckpt", damaged.name))
        damage(damaged)
        with pytest.raises(CheckpointError, match=f"checkpoint {damaged} is damaged"):
            verify_checkpoint(damaged)
    # a file without a sidecar (older ssgrl, written by hand) is read unverified
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.ckpt")
    assert verify_checkpoint(tmp_path / "plain.ckpt") is None


def test_replacing_a_file_keeps_it_verifiable_at_every_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar lists the old and the new digest while the file is replaced: a process that
    dies just before the rename leaves the old file, which still verifies."""
    path = save_atomically({"w": torch.zeros(10)}, tmp_path / "last.ckpt")
    old = path.read_bytes()
    real_replace = os.replace

    def dies_at_rename(src: Any, dst: Any) -> None:
        if str(dst) == str(path):
            raise KeyboardInterrupt  # the process stops between the sidecar and the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_at_rename)
    with pytest.raises(KeyboardInterrupt):
        save_atomically({"w": torch.ones(10)}, path, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert len(checksum_path(path).read_text().splitlines()) == 2  # new first, then old
    assert verify_checkpoint(path) is not None
    save_atomically({"w": torch.ones(10)}, path, overwrite=True)
    assert len(checksum_path(path).read_text().splitlines()) == 1
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(10))


def test_last_is_the_newest_intact_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    for i, name in enumerate(["best.ckpt", "last.ckpt", "interrupted.ckpt"]):
        save_atomically({"step": torch.tensor(i)}, folder / name)
        os.utime(folder / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    assert find_resumable(tmp_path / "run").path.name == "interrupted.ckpt"
    _flip_bit(folder / "interrupted.ckpt")
    _truncate(folder / "last.ckpt")
    found = find_resumable(tmp_path / "run")
    assert found.path.name == "best.ckpt"
    assert {p.name for p, _ in found.skipped} == {"interrupted.ckpt", "last.ckpt"}
    assert all("is damaged" in why for _, why in found.skipped)
    _flip_bit(folder / "best.ckpt")
    with pytest.raises(CheckpointError, match="no intact checkpoint to resume"):
        find_resumable(tmp_path / "run")


def test_model_checkpoint_removes_an_old_file_only_after_its_successor_is_complete(
    tmp_path: Path,
) -> None:
    """ModelCheckpoint with the plugin: each save is complete (renamed, sidecar written) before
    the checkpoint it replaces is removed, sidecar included."""
    events: list[tuple[str, str]] = []

    class Recording(VerifiedCheckpointIO):
        def save_checkpoint(
            self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
        ) -> None:
            super().save_checkpoint(checkpoint, path, storage_options)
            assert verify_checkpoint(path) is not None  # complete when save returns
            events.append(("saved", Path(path).name))

        def remove_checkpoint(self, path: Any) -> None:
            events.append(("remove", Path(path).name))
            super().remove_checkpoint(path)

    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        plugins=[Recording()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", filename="{epoch}", save_top_k=1)],
    )
    trainer.fit(BoringModel())
    assert events == [
        ("saved", "epoch=0.ckpt"),
        ("saved", "epoch=1.ckpt"),
        ("remove", "epoch=0.ckpt"),
        ("saved", "epoch=2.ckpt"),
        ("remove", "epoch=1.ckpt"),
    ]
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "epoch=2.ckpt",
        "epoch=2.ckpt.sha256",
    ]


def test_cli_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["--data.on_bad_image", "maybe"], "data.on_bad_image"),
        (["--ckpt_path", "last"], "--ckpt_path last resumes a run in its own directory"),
        (["--ckpt_path", str(tmp_path / "nope.ckpt"), "--run_dir", str(tmp_path / "r")], "nope"),
    ]
    for extra, message in cases:
        assert main(["fit", "--config", str(TINY), *QUIET, *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        line = next(x for x in err.splitlines() if x.startswith("ssgrl fit: error: "))
        assert message in line


# --- through ssgrl fit / test / predict ---------------------------------------------------------


@pytest.mark.slow
def test_full_disk_keeps_the_last_good_checkpoint_and_damage_is_named_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up halfway through the third checkpoint (epoch 1): the run stops with a
    message naming the file, no temporary file is left, epoch 0's checkpoints verify and resume.
    A damaged checkpoint is then refused by name by `ssgrl test`, `predict` and `load_model`,
    and `--ckpt_path last` resumes from the previous intact one, saying so."""
    real_save = torch.save
    calls = []

    def fills_the_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) < 3 or not hasattr(f, "write"):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    run = tmp_path / "run"
    fit = ["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET, *SMALL]
    fit += ["--feature_cache_dir", str(tmp_path / "features")]  # the resume reads them
    monkeypatch.setattr(torch, "save", fills_the_disk)
    assert main(fit) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("ssgrl fit: error: "))
    folder = run / "checkpoints"
    assert f"cannot write checkpoint {folder}" in line and "no space left on device" in line
    assert f"the newest complete checkpoint is {folder}" in line
    assert f"ssgrl fit --run_dir {run} --ckpt_path last" in line
    assert not list(folder.glob("*.tmp"))
    for name in ("best.ckpt", "last.ckpt"):
        assert verify_checkpoint(folder / name) is not None
        assert torch.load(folder / name, weights_only=True)["global_step"] == 3  # epoch 0's

    # a damaged checkpoint, named by every reader
    damaged = tmp_path / "damaged.ckpt"
    shutil.copy(folder / "best.ckpt", damaged)
    shutil.copy(checksum_path(folder / "best.ckpt"), checksum_path(damaged))
    _flip_bit(damaged)
    for read in (read_checkpoint, load_model):
        with pytest.raises(CheckpointError, match=f"checkpoint {damaged} is damaged"):
            read(damaged)  # type: ignore[operator]
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(damaged), str(image)]) == 2
    assert f"{damaged} is damaged" in capsys.readouterr().err
    test = ["test", "--config", str(TINY), "--run_dir", str(tmp_path / "t"), *QUIET, *SMALL]
    assert main([*test, "--ckpt_path", str(damaged)]) == 2
    assert f"ssgrl test: error: checkpoint {damaged} is damaged" in capsys.readouterr().err

    # resume: last.ckpt is damaged, so `last` is best.ckpt (the same step here)
    _truncate(folder / "last.ckpt")
    assert main([*fit, "--ckpt_path", "last", "--trainer.max_epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {folder / 'last.ckpt'}: checkpoint {folder / 'last.ckpt'} is damaged" in err
    assert f"resuming {run} from {folder / 'best.ckpt'}" in err
