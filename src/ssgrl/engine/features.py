"""Backbone features computed once, where that is exact: a frozen backbone (BatchNorm in eval)
and a deterministic transform give the same feature map for an image at every epoch."""

from __future__ import annotations

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

    def __len__(self) -> int:
        return len(self._store)

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
