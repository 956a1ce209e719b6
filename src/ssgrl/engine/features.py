"""Backbone features computed once, where that is exact: a frozen backbone (BatchNorm in eval) and
a deterministic transform give the same feature map for an image at every epoch.

``FeatureCaching`` is the one code path (a Callback): for each split a run evaluates or trains
on, it computes the frozen backbone's feature maps (and those of each training image's mirror
when ``data.train_augment: flip``) under the Trainer's precision context, exactly as a step
would, keeps them in memory and serves them to the DataModule instead of images. With a
``directory`` they persist between runs, keyed by the backbone's weights, the preprocessing, the
precision and each image's content, so a learning-rate sweep, a baseline or an ablation on the
same data does not run the backbone again.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ssgrl.data.datamodule import ImageDataset, SSGRLDataModule
from ssgrl.data.threaded import batches_in_threads
from ssgrl.data.transforms import normalize_batch
from ssgrl.engine.module import SSGRLModule
from ssgrl.inference.predictor import default_num_workers
from ssgrl.models.backbone import Backbone

STAGE_ROLES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, shapes, dtypes and bytes): equal fingerprints, equal
    features, whatever weights a checkpoint restored."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-d: 0-d tensors cannot be viewed
        digest.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureStore:
    """The feature maps of one split (and of its mirrored images), in dataset order."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.plain: torch.Tensor | None = None  # (N, C, h, w)
        self.mirrored: torch.Tensor | None = None

    def features(self, index: int, mirrored: bool) -> torch.Tensor:
        table = self.mirrored if mirrored else self.plain
        if table is None:
            kind = "mirrored " if mirrored else ""
            raise RuntimeError(f"no {kind}features of the {self.role} split were computed")
        return table[index]


@dataclass
class FillReport:
    """What filling one split cost: images computed by the backbone, read from disk, seconds."""

    role: str
    computed: int
    from_disk: int
    seconds: float


class DiskCache:
    """Per-image feature files under ``directory/<key of backbone, preprocessing, precision>/``,
    named by the image's content id; written atomically (temporary file, rename)."""

    def __init__(self, directory: Path, key: dict[str, Any]) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        self.root = Path(directory) / digest
        self.root.mkdir(parents=True, exist_ok=True)
        info = self.root / "key.json"
        if not info.exists():
            _atomic_write_bytes(info, (json.dumps(key, indent=1) + "\n").encode())

    def path(self, content_id: str, mirrored: bool) -> Path:
        suffix = ".mirror" if mirrored else ""
        return self.root / content_id[:2] / f"{content_id}{suffix}.safetensors"

    def get(self, content_id: str, mirrored: bool) -> torch.Tensor | None:
        path = self.path(content_id, mirrored)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["features"]
        except Exception:  # a damaged entry is recomputed (and rewritten), never trusted
            return None

    def put(self, content_id: str, mirrored: bool, features: torch.Tensor) -> None:
        path = self.path(content_id, mirrored)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"features": features.contiguous()}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def compute_features(
    backbone: Backbone,
    dataset: ImageDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    context: Any,
    desc: str,
    progress: bool = True,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """(N, C, h, w) feature maps of ``dataset`` in order, on the CPU, in the dtype the backbone
    gives under ``context`` (the Trainer's precision context: exact for every precision).

    ``num_workers`` DataLoader worker processes open, decode and preprocess the images while
    the backbone runs on the previous batch (0: threads of this process, in turn with the
    backbone; see ``ssgrl.data.threaded``). ``normalize``: applied to each batch on ``device``
    (``normalize_batch`` for a dataset of uint8 pixels, ``SSGRLDataModule.image_dataset(...,
    pixels=True)``)."""
    loader: Iterable[Any] = (
        batches_in_threads(dataset, batch_size)
        if num_workers == 0
        else DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
    )
    total = math.ceil(len(dataset) / batch_size)
    chunks = []
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(
                loader, desc=desc, total=total, unit="batch", leave=False, disable=not progress
            ):
                images = batch["image"].to(device, non_blocking=True)
                if normalize is not None:
                    images = normalize(images)
                with context():
                    chunks.append(backbone(images).cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(chunks)


def _datamodule(trainer: L.Trainer) -> SSGRLDataModule:
    dm = getattr(trainer, "datamodule", None)
    if not isinstance(dm, SSGRLDataModule):
        raise TypeError("feature caching needs an SSGRLDataModule")
    return dm


class FeatureCaching(Callback):
    """Serve a frozen backbone's features instead of images (see the module doc).

    Args:
        directory: keep the features here between runs (None: in memory, for this run only).
        progress: show a progress bar per split.
        num_workers: decoding worker processes for the backbone pass (None: ``data.num_workers``,
            or, when that is 0 and workers start by fork, ``default_num_workers(device)``: the
            pass reads every image once, so on a GPU workers pay off even where training runs
            without).
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        progress: bool = True,
        num_workers: int | None = None,
    ) -> None:
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.directory = None if directory is None else Path(directory)
        self.progress = progress
        self.num_workers = num_workers
        self.stores: dict[str, FeatureStore] = {}
        self.reports: list[FillReport] = []
        self.precision = ""

    # -- wiring, before any loader is built ----------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = _datamodule(trainer)
        if not isinstance(pl_module, SSGRLModule):
            raise TypeError("feature caching needs an SSGRLModule")
        stages = pl_module.model_config.train_stages
        if stages != 0:
            raise ValueError(
                "cache_features needs a frozen backbone (model.net.train_stages: 0); the "
                f"configured network trains {'all' if stages < 0 else stages} stage(s)"
            )
        for role in STAGE_ROLES.get(stage, ()):
            if dm.split_names[role] is None:
                continue
            store = self.stores.setdefault(role, FeatureStore(role))
            dm.serve_features(role, store)

    # -- filling, once the weights are in place (after a checkpoint was restored) ------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fill(trainer, pl_module, "train")
        self._fill(trainer, pl_module, "val")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.state.fn or trainer.state.fn.value != "fit":
            self._fill(trainer, pl_module, "val")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fill(trainer, pl_module, "test")

    def _fill(self, trainer: L.Trainer, pl_module: L.LightningModule, role: str) -> None:
        store = self.stores.get(role)
        if store is None:
            return
        dm = _datamodule(trainer)
        assert isinstance(pl_module, SSGRLModule) and pl_module.net is not None
        backbone = pl_module.net.backbone
        if any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("cached features need a frozen backbone (model.net.train_stages: 0)")
        self.precision = str(trainer.precision)
        key = {
            "backbone": backbone.name,
            "weights_sha256": weights_fingerprint(backbone),
            "preprocessing": dm.preprocessing.to_dict(),
            "precision": self.precision,
        }
        disk = DiskCache(self.directory, key) if self.directory is not None else None
        start = time.perf_counter()
        computed = from_disk = 0
        want_mirror = role == "train" and dm.train_augment == "flip"
        for mirrored in (False, True) if want_mirror else (False,):
            dataset = dm.image_dataset(role, mirrored=mirrored, pixels=True)
            table, n_new, n_old = self._features(
                trainer, backbone, dm, dataset, disk, mirrored, role
            )
            computed += n_new
            from_disk += n_old
            if mirrored:
                store.mirrored = table
            else:
                store.plain = table
        report = FillReport(role, computed, from_disk, time.perf_counter() - start)
        self.reports.append(report)
        if trainer.is_global_zero:
            where = f"; {from_disk} read from {disk.root}" if disk is not None else ""
            print(
                f"features of the {role} split: {computed} computed{where} "
                f"({report.seconds:.1f} s, backbone run under precision {self.precision})"
            )

    def _features(
        self,
        trainer: L.Trainer,
        backbone: Backbone,
        dm: SSGRLDataModule,
        dataset: ImageDataset,
        disk: DiskCache | None,
        mirrored: bool,
        role: str,
    ) -> tuple[torch.Tensor, int, int]:
        """The split's table, with what was computed and what was read from disk."""
        desc = f"features {role}" + (" (mirrored)" if mirrored else "")
        device = trainer.strategy.root_device
        context = trainer.precision_plugin.forward_context

        workers = self.num_workers
        if workers is None:
            # a forked worker needs nothing pickled (a split's loader may be a closure)
            forks = multiprocessing.get_context().get_start_method() == "fork"
            workers = dm.num_workers or (default_num_workers(device) if forks else 0)

        def run(subset: Any) -> torch.Tensor:
            return compute_features(
                backbone.to(device),
                subset,
                dm.eval_batch_size,
                workers if len(subset) > dm.eval_batch_size else 0,
                device,
                context,
                desc,
                self.progress and trainer.is_global_zero,
                lambda pixels: normalize_batch(pixels, dm.preprocessing),
            )

        if disk is None:
            return run(dataset), len(dataset), 0
        split = dataset.split
        ids = [split.content_id(i) for i in range(len(split))]
        found: dict[int, torch.Tensor] = {}
        for i, cid in enumerate(ids):
            cached = disk.get(cid, mirrored)
            if cached is not None:
                found[i] = cached
        missing = [i for i in range(len(split)) if i not in found]
        if missing:
            new = run(Subset(dataset, missing))
            for i, feats in zip(missing, new, strict=True):
                found[i] = feats.clone()
                disk.put(ids[i], mirrored, found[i])
        table = torch.stack([found[i] for i in range(len(split))])
        return table, len(missing), len(split) - len(missing)


__all__ = ["DiskCache", "FeatureCaching", "FeatureStore", "compute_features", "weights_fingerprint"]
