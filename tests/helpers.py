"""Test-only helpers that the package itself does not need (importable as ``helpers``: the test
root is on ``sys.path``, as for ``fixtures_voc``). ``save_split_as_manifest`` writes any split as
PNG files plus the ``manifest`` dataset's CSV and class list, so a test can round-trip generated
data through the manifest reader. ``start_ssgrl`` / ``finish_ssgrl`` / ``run_ssgrl`` run the
``ssgrl`` command in a fresh interpreter, as a user does (DDP launches, signals).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ssgrl.data.base import PRESENT, Split


def save_split_as_manifest(split: Split, out_dir: Path) -> Path:
    """Write ``split`` as PNG files plus ``manifest.csv`` (``image,labels``; labels joined by "|",
    paths relative to the manifest) and ``classes.txt``; return the manifest's path.

    Only present labels are written: an ignored (-1) target becomes absent.
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in split.classes), encoding="utf-8")
    manifest = out_dir / "manifest.csv"
    used: set[str] = set()
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels"])
        for i, image_id in enumerate(split.ids):
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("_") or "image"
            if stem in used:
                stem = f"{stem}_{i:06d}"
            used.add(stem)
            rel = f"images/{stem}.png"
            split.load_image(i).save(out_dir / rel, format="PNG")
            labels = [
                c for c, t in zip(split.classes, split.targets[i], strict=True) if t == PRESENT
            ]
            writer.writerow([rel, "|".join(labels)])
    return manifest


def start_ssgrl(
    log: Path, *args: str, threads: int = 1, pythonpath: Path | None = None
) -> subprocess.Popen[bytes]:
    """``ssgrl ARGS`` started in a fresh interpreter with ``threads`` OpenMP threads, its stdout
    and stderr into ``log``; ``pythonpath`` makes a test folder importable (for callbacks)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if pythonpath is not None:  # with the test root: a test module imports ``helpers``
        paths = [str(pythonpath), str(Path(__file__).resolve().parent)]
        env["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    with Path(log).open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ssgrl.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def finish_ssgrl(proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> str:
    """The output of a started ``ssgrl``, which must exit 0 within ``timeout`` seconds (a
    process left waiting for another would hang: the timeout makes that a failure)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    output = Path(log).read_text(errors="replace")
    assert proc.returncode == 0, f"{' '.join(map(str, proc.args))} failed:\n{output[-4000:]}"
    return output


def run_ssgrl(log: Path, *args: str, timeout: float = 300) -> str:
    """Run ``ssgrl ARGS`` in a fresh interpreter to the end; its output (it must exit 0)."""
    return finish_ssgrl(start_ssgrl(log, *args), log, timeout)


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (in elements) any aten op returns, forward and backward.

    Storage size, not numel: a broadcast view is free, a materialised tensor is not."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                size = t.untyped_storage().nbytes() // t.element_size()
                if size > self.largest:
                    self.largest, self.op = size, str(func)
        return out


# the network of the small CPU fits: frozen Lite0 trunk, a d1 = d2 = 32 SSGRL head
TINY_LITE0_NET: dict[str, Any] = {
    "arch": "ssgrl",
    "backbone": "tf_efficientnet_lite0",
    "train_stages": 0,
    "d1": 32,
    "d2": 32,
}


def tiny_lite0_config(
    synthetic: dict[str, Any],
    epochs: int,
    optim: dict[str, Any],
    data: dict[str, Any] | None = None,
    devices: int | None = 1,
    cache_features: bool = False,
) -> str:
    """The YAML of a small CPU fit: frozen ImageNet Lite0, a d1 = d2 = 32 SSGRL head with one-hot
    embeddings, on generated data (``synthetic``: the dataset options, 64 px); ``devices``
    None leaves the number of processes to the command line."""
    trainer: dict[str, Any] = {"max_epochs": epochs, "accelerator": "cpu"}
    if devices is not None:
        trainer["devices"] = devices
    trainer |= {"enable_model_summary": False, "enable_progress_bar": False}
    config: dict[str, Any] = {
        "seed_everything": 0,
        "trainer": {**trainer, "log_every_n_steps": 1},
        "model": {
            "net": dict(TINY_LITE0_NET),
            "pretrained": "efficientnet-lite0",
            "embeddings": {"source": "onehot"},
            "optim": optim,
        },
        "data": {
            "dataset": "synthetic",
            "dataset_options": synthetic,
            "image_size": 64,
            **(data or {}),
        },
    }
    if cache_features:
        config["cache_features"] = True
    return yaml.safe_dump(config, sort_keys=False)


def tiny_resnet18_ssgrl(
    class_names: list[str],
    resize: int,
    jpeg_draft: bool,
    ggnn_steps: int = 1,
    image_size: int = 32,
) -> Any:
    """A random-weight SSGRL ``Model`` (ResNet-18, d1 = d2 = 16, an ``image_size`` crop after
    resizing to ``resize``), in eval mode: the small network of the data-path, ``--compile``
    and ``explain`` tests."""
    from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, Model
    from ssgrl.data.transforms import Preprocessing
    from ssgrl.models.factory import ModelConfig, build_model

    torch.manual_seed(0)
    c = len(class_names)
    config = ModelConfig(arch="ssgrl", backbone="resnet18", d1=16, d2=16, ggnn_steps=ggnn_steps)
    pre = Preprocessing(
        image_size, resize, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear", jpeg_draft
    )
    meta = CheckpointMeta(
        class_names=class_names,
        model=config,
        preprocessing=pre,
        embeddings=EmbeddingInfo("random", 50),
    )
    net = build_model(config, c, torch.rand(c, c), torch.randn(c, 50))
    return Model(net, meta).eval()
