"""Backbone features computed once, where that is exact: a frozen backbone (BatchNorm in eval)
and a deterministic transform give the same feature map for an image at every epoch."""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ssgrl.data.datamodule import ImageDataset
from ssgrl.models.backbone import Backbone


class FeatureCache:
    """Feature maps by key; one instance may be shared by several models of the same frozen
    backbone (the demo trains SSGRL and its baseline on the same cached features)."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, ...], torch.Tensor] = {}
        self._items: dict[tuple[str, ...], dict[int, torch.Tensor]] = {}

    def batch(
        self, key: tuple[str, ...], index: torch.Tensor, images: torch.Tensor, backbone: Backbone
    ) -> torch.Tensor:
        """Features (B, N, h, w) of a batch of split items, computing only those not seen yet."""
        items = self._items.setdefault(key, {})
        missing = [i for i, k in enumerate(index.tolist()) if k not in items]
        if missing:
            with torch.inference_mode():
                computed = backbone(images[missing]).float()
            for i, feats in zip(missing, computed, strict=True):
                items[int(index[i])] = feats.cpu().clone()
        return torch.stack([items[int(k)] for k in index.tolist()]).to(images.device)

    def get_or_compute(
        self,
        key: tuple[str, ...],
        backbone: Backbone,
        dataset: ImageDataset,
        batch_size: int,
        num_workers: int = 0,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """(N, C_feat, h, w) float32 on the CPU, in dataset order."""
        if key not in self._store:
            if any(p.requires_grad for p in backbone.parameters()):
                raise ValueError("cached features need a frozen backbone (model.train_stages: 0)")
            was_training = backbone.training
            backbone.eval()
            loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
            chunks = []
            with torch.inference_mode():
                for batch in tqdm(loader, desc=f"features {key[-1]}", unit="batch", leave=False):
                    images = batch["image"].to(device) if device is not None else batch["image"]
                    chunks.append(backbone(images).float().cpu())
            backbone.train(was_training)
            self._store[key] = torch.cat(chunks)
        return self._store[key]


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, shapes and bytes): features of equal fingerprints are
    equal, so cache keys built on it stay exact whatever weights a checkpoint restored."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
