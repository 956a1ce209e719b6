"""Splits -> torch datasets -> batches. One DataModule for every dataset name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssgrl.data.base import Split
from ssgrl.data.registry import load_split
from ssgrl.data.transforms import (
    PAPER_SCALES,
    Augment,
    eval_transform,
    preprocessing_dict,
    train_transform,
)
from ssgrl.models.backbone import default_preprocessing

Batch = dict[str, torch.Tensor]


class ImageDataset(Dataset[Batch]):
    """A split as tensors: ``{"image": (3, H, W), "target": (C,) float in {1, 0, -1}, "index"}``."""

    def __init__(self, split: Split, transform: Callable[[Any], torch.Tensor]) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Batch:
        image = self.transform(self.split.load_image(index))
        target = torch.from_numpy(self.split.targets[index].astype(np.float32))
        return {"image": image, "target": target, "index": torch.tensor(index)}


class FeatureDataset(Dataset[Batch]):
    """Precomputed backbone feature maps of a split (exact when the backbone is frozen and the
    transform deterministic): ``{"features": (N, h, w), "target", "index"}``."""

    def __init__(self, features: torch.Tensor, targets: np.ndarray) -> None:
        self.features = features
        self.targets = torch.from_numpy(targets.astype(np.float32))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Batch:
        return {
            "features": self.features[index],
            "target": self.targets[index],
            "index": torch.tensor(index),
        }


class SSGRLDataModule(L.LightningDataModule):
    """Loads ``dataset``'s splits by name (see ``ssgrl.data.registry``).

    Args:
        dataset: synthetic, manifest, voc2007, voc2012, coco2014, vg500 or nuswide.
        root: the dataset's folder (a manifest file or folder for ``manifest``).
        train_split / val_split / test_split: split names; the label graph and the class list
            come from the training split; val_split None disables validation.
        dataset_options: the dataset's own options (e.g. ``difficult: ignore`` for VOC).
        image_size: the square input side; ``resize``: the side images are resized to before
            the centre crop (the paper: 640 -> 576); None = image_size (no crop).
        train_augment: none | flip | paper | modern (see ``ssgrl.data.transforms``).
        mean / std / interpolation: None = the backbone's pretraining values (timm config).
        backbone: the timm backbone name, linked from the model by the CLI.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        train_split: str = "train",
        val_split: str | None = "val",
        test_split: str | None = "test",
        dataset_options: dict[str, Any] | None = None,
        image_size: int = 224,
        resize: int | None = None,
        train_augment: Augment = "none",
        paper_scales: tuple[int, ...] = PAPER_SCALES,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        interpolation: str | None = None,
        backbone: str | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.root = root
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.dataset_options = dict(dataset_options or {})
        self.train_augment: Augment = train_augment
        self.paper_scales = tuple(paper_scales)
        base = default_preprocessing(backbone) if backbone else default_preprocessing("")
        self.preprocessing = preprocessing_dict(
            image_size,
            resize,
            mean if mean is not None else base["mean"],  # type: ignore[arg-type]
            std if std is not None else base["std"],  # type: ignore[arg-type]
            interpolation or str(base["interpolation"]),
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.splits: dict[str, Split] = {}
        self.features: dict[str, torch.Tensor] = {}

    # -- splits ------------------------------------------------------------------------------
    def load(self, role: str) -> Split:
        """The split playing ``role`` (train, val or test), loaded once."""
        if role not in self.splits:
            name = self.split_names[role]
            if name is None:
                raise ValueError(f"no {role} split configured (data.{role}_split is null)")
            split = load_split(self.dataset, name, self.root, **self.dataset_options)
            if role != "train" and split.classes != self.classes:
                raise ValueError(
                    f"{self.dataset} split {name!r} has classes {list(split.classes)}, but the "
                    f"training split has {list(self.classes)}"
                )
            self.splits[role] = split
        return self.splits[role]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.load("train").classes

    @property
    def train_split(self) -> Split:
        return self.load("train")

    def setup(self, stage: str) -> None:
        self.load("train")  # class list and label graph
        roles = {"fit": ["val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}
        for role in roles.get(stage, []):
            if self.split_names[role] is not None:
                self.load(role)

    def describe(self, role: str) -> dict[str, Any]:
        """The split's protocol facts: dataset, split, image count, images without labels."""
        split = self.load(role)
        return {
            "dataset": self.dataset,
            "split": self.split_names[role],
            "num_images": len(split),
            "images_without_labels": split.num_unlabelled,
            "has_labels": split.has_labels,
            **{k: v for k, v in split.meta.items() if isinstance(v, str | int | float | bool)},
        }

    # -- cached features -----------------------------------------------------------------------
    def set_features(self, role: str, features: torch.Tensor) -> None:
        """Serve precomputed backbone features for ``role`` instead of images."""
        if self.train_augment != "none" and role == "train":
            raise ValueError(
                "cached features need a deterministic training transform "
                f"(data.train_augment: none), got {self.train_augment!r}"
            )
        self.features[role] = features

    def image_dataset(self, role: str, train: bool = False) -> ImageDataset:
        pre = self.preprocessing
        transform = (
            train_transform(pre, self.train_augment, self.paper_scales)
            if train
            else eval_transform(pre)
        )
        return ImageDataset(self.load(role), transform)

    # -- loaders -------------------------------------------------------------------------------
    def _loader(self, role: str, train: bool) -> DataLoader[Batch]:
        dataset: Dataset[Batch]
        if role in self.features:
            dataset = FeatureDataset(self.features[role], self.load(role).targets)
        else:
            dataset = self.image_dataset(role, train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader[Batch] | list[DataLoader[Batch]]:
        if self.split_names["val"] is None:
            return []  # no validation: Lightning then skips the loop
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", train=False)
