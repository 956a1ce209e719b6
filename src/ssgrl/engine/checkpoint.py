"""The checkpoint format: a Lightning checkpoint plus an ``ssgrl`` block that makes it
self-sufficient (model config, class names, graph provenance, embeddings, preprocessing).

``load_model`` needs nothing but the file: weights, adjacency and label embeddings are in the
state dict; the rest is plain data in ``checkpoint["ssgrl"]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssgrl.models.factory import ModelConfig, build_model
from ssgrl.models.ssgrl import SSGRL, Baseline

FORMAT_VERSION = 1
STATE_PREFIX = "net."


def package_version() -> str:
    from ssgrl import __version__

    return __version__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only``) and check that it is an ssgrl one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {path}: cannot be read as a PyTorch checkpoint ({err})"
        ) from err
    if not isinstance(ckpt, dict) or "ssgrl" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(
            f"checkpoint {path}: not an ssgrl checkpoint (no 'ssgrl' block); for the authors' "
            "released .pth.tar files use `ssgrl import-official`"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> SSGRL | Baseline:
    meta = ckpt["ssgrl"]
    config = ModelConfig.from_dict(meta["model_config"])
    net = build_model(config, len(meta["class_names"]), embed_dim=meta.get("embed_dim"))
    state = {
        k.removeprefix(STATE_PREFIX): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(STATE_PREFIX)
    }
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{source}: weights do not fit the saved model config; missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    net.class_names = list(meta["class_names"])
    net.preprocessing = dict(meta.get("preprocessing", {}))
    return net


def load_model(path: str | Path) -> SSGRL | Baseline:
    """The model stored in an ssgrl checkpoint, in eval mode on the CPU, with ``class_names``
    and ``preprocessing`` attached. ``model(x)`` with x a normalised (B, 3, H, W) float tensor
    gives logits (B, C)."""
    net = model_from_checkpoint(read_checkpoint(path), source=str(path))
    return net.eval()


def checkpoint_dict(net: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """A minimal checkpoint (Lightning-compatible) for a model built outside the Trainer."""
    import lightning

    return {
        "state_dict": {STATE_PREFIX + k: v for k, v in net.state_dict().items()},
        "ssgrl": meta,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }


def write_checkpoint(data: dict[str, Any], path: str | Path, overwrite: bool = False) -> Path:
    """The one checkpoint writer outside the Trainer: atomic (temp file + rename), and it never
    replaces an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
