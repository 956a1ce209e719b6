"""Splits -> torch datasets -> batches. One DataModule for every dataset name.

Training batches are exactly reproducible, also across a resume: the order of an epoch is a
permutation drawn from (seed, epoch) only (``EpochSampler``, a ``DistributedSampler``, so each
process of a data-parallel run takes its share), every random choice of a training sample's
transform (flip, crop, RandAugment; the mirrored-features choice of cached features) is drawn
from generators seeded with (seed, epoch, index) only (``SeededItems``), and the training loader
(``ResumableLoader``) saves the epoch and the number of batches it has handed out in
checkpoints, which Lightning restores for a mid-epoch resume. Neither the number of loader
worker processes nor where a run was stopped and resumed changes a batch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2 as T
from tqdm.auto import tqdm

from ssgrl.data.base import Split
from ssgrl.data.registry import load_split, takes_classes
from ssgrl.data.scan import BadImage, BadImagesError, scan_split
from ssgrl.data.transforms import (
    PAPER_SCALES,
    Augment,
    Preprocessing,
    PreprocessingRequest,
    draft_size,
    eval_pixels,
    eval_transform,
    train_transform,
)

Batch = dict[str, torch.Tensor]


class ImageDataset(Dataset[Batch]):
    """A split as tensors: ``{"image": (3, H, W), "target": (C,) float in {1, 0, -1}, "index"}``."""

    def __init__(
        self,
        split: Split,
        transform: Callable[[Any], torch.Tensor],
        draft: tuple[int, int] | None = None,
    ) -> None:
        self.split = split
        self.transform = transform
        self.draft = draft  # see Split.load_image

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Batch:
        image = self.transform(self.split.load_image(index, self.draft))
        target = torch.from_numpy(self.split.targets[index].astype(np.float32))
        return {"image": image, "target": target, "index": torch.tensor(index)}


class FeatureSource(Protocol):
    """Precomputed backbone feature maps of a split's images (see ``ssgrl.engine.features``)."""

    def features(self, index: int, mirrored: bool) -> torch.Tensor:
        """(N, h, w) of image ``index``, or of its horizontal mirror."""
        ...


class FeatureDataset(Dataset[Batch]):
    """A split served as backbone feature maps: ``{"features": (N, h, w), "target", "index"}``.

    Exact where the backbone is frozen and the transform deterministic; with ``flip`` each item
    is, with probability 1/2, the features of the image's mirror (computed on the mirror, not
    flipped features), so horizontal flipping stays exact."""

    def __init__(self, source: FeatureSource, targets: np.ndarray, flip: bool = False) -> None:
        self.source = source
        self.targets = torch.from_numpy(targets.astype(np.float32))
        self.flip = flip

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Batch:
        mirrored = self.flip and bool(torch.rand(()) < 0.5)
        return {
            "features": self.source.features(index, mirrored),
            "target": self.targets[index],
            "index": torch.tensor(index),
        }


def sample_seeds(seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Two 64-bit seeds that depend on (seed, epoch, index) only."""
    words = np.random.SeedSequence([seed & (2**64 - 1), epoch, index]).generate_state(
        2, dtype=np.uint64
    )
    return int(words[0]), int(words[1])


class SeededItems(Dataset[Batch]):
    """``dataset`` whose items are drawn with their own random state: ``items[(epoch, i)]`` is
    ``dataset[i]`` computed with torch's, Python's and NumPy's global generators seeded from
    (seed, epoch, i) and restored afterwards, so any random transform gives the same sample in
    any worker process, in any order, before or after a resume. ``items[i]`` is epoch 0."""

    def __init__(self, dataset: Dataset[Batch], seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Batch:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        torch_seed, other_seed = sample_seeds(self.seed, epoch, index)
        py_state = random.getstate()
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            random.seed(other_seed)
            np.random.seed(other_seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class EpochSampler(DistributedSampler[Any]):
    """The training order: ``DistributedSampler``'s permutation of (seed, epoch) (this process's
    share of it when there are several), yielding ``(epoch, index)`` keys for ``SeededItems``.
    ``skip`` (set by ``ResumableLoader`` on a resume) leaves out the first samples of the next
    pass; ``len`` stays the whole epoch's."""

    def __init__(self, dataset: Dataset[Any], seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        epoch = self.epoch
        for position, index in enumerate(super().__iter__()):
            if position >= skip:
                yield (epoch, index)


class ResumableLoader(DataLoader[Batch]):
    """The training loader: ``state_dict`` is the epoch, the number of batches handed out in it
    and the seed; after ``load_state_dict`` the next pass over the same epoch continues after
    those batches (their samples are not even loaded). Lightning saves this state in every
    checkpoint (``loops.fit_loop.combined_loader``) and, for a mid-epoch resume, hands it back
    before the first batch (``ssgrl.engine.resume.ResumeState`` makes sure it does)."""

    sampler: EpochSampler

    def __init__(self, dataset: SeededItems, sampler: EpochSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._position = (sampler.epoch, 0)
        self._pending: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        # a generator: the body runs at the first batch, after Lightning's set_epoch
        epoch = self.sampler.epoch
        done = 0
        if self._pending is not None:
            saved_epoch, saved_done = self._pending
            self._pending = None
            if saved_epoch == epoch:  # else that epoch was finished: start the new one whole
                done = saved_done
        self.sampler.skip = done * int(self.batch_size or 1)
        self._position = (epoch, done)
        for batch in super().__iter__():
            done += 1
            self._position = (epoch, done)  # counted before the step that uses the batch
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, done = self._position
        return {"epoch": epoch, "batches": done, "seed": self.sampler.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        seed = int(state.get("seed", self.sampler.seed))
        self.sampler.seed = seed
        dataset = self.dataset
        if isinstance(dataset, SeededItems):
            dataset.seed = seed
        self._pending = (int(state["epoch"]), int(state["batches"]))
        self._position = self._pending


class SSGRLDataModule(L.LightningDataModule):
    """Loads ``dataset``'s splits by name (see ``ssgrl.data.registry``).

    The class list comes from the training split, or from a checkpoint (``use_classes``) when
    only an evaluation split is needed; the preprocessing is resolved from the model (the
    backbone's normalisation where ``mean``/``std``/``interpolation`` are None) and handed in with
    ``use_preprocessing`` before any loader is built.

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
        jpeg_draft: decode JPEG files at 1/2, 1/4 or 1/8 scale where that still covers
            ``resize`` (libjpeg's DCT scaling: much less work for large photos, pixels within a
            few levels of a full decode). Saved in the checkpoint, so ``predict``, ``explain``
            and ``serve`` decode as training did; ``modern`` augmentation decodes training
            images whole (its crops zoom in).
        on_bad_image: what a quick start-up scan of the training and validation images does
            with missing, empty, unreadable or truncated files: ``error`` names every one and
            stops before training; ``skip`` leaves them out (each remaining image is still seen
            once per epoch) and lists them in the run directory (``bad_images.txt``). Test
            images are never skipped.
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
        jpeg_draft: bool = True,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_bad_image: Literal["error", "skip"] = "error",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = root
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.dataset_options = dict(dataset_options or {})
        self.train_augment: Augment = train_augment
        self.paper_scales = tuple(paper_scales)
        self.preprocessing_request = PreprocessingRequest(
            image_size=image_size,
            resize=resize,
            mean=None if mean is None else tuple(mean),  # type: ignore[arg-type]
            std=None if std is None else tuple(std),  # type: ignore[arg-type]
            interpolation=interpolation,
            jpeg_draft=jpeg_draft,
        )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"data.on_bad_image must be error or skip, got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self.bad_images: dict[str, list[BadImage]] = {}
        self.report_dir: Path | None = None  # where bad_images.txt goes (the run directory)
        self.splits: dict[str, Split] = {}
        self.feature_sources: dict[str, FeatureSource] = {}
        self._preprocessing: Preprocessing | None = None
        self._classes: tuple[str, ...] | None = None

    # -- what the model hands down -----------------------------------------------------------
    def use_preprocessing(self, preprocessing: Preprocessing) -> None:
        self._preprocessing = preprocessing

    @property
    def preprocessing(self) -> Preprocessing:
        if self._preprocessing is None:
            raise RuntimeError(
                "the DataModule's preprocessing is resolved from the model: call "
                "use_preprocessing() (the LightningModule does so in setup)"
            )
        return self._preprocessing

    def use_classes(self, classes: Sequence[str]) -> None:
        """Fix the class list (a checkpoint's) instead of reading it from the training split."""
        self._classes = tuple(classes)
        for role, split in self.splits.items():
            self._check_classes(role, split)

    # -- splits ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Before fitting, scan the training and validation images (see ``on_bad_image``)."""
        if stage != "fit":
            return
        for role in ("train", "val"):
            if self.split_names[role] is not None and role not in self.bad_images:
                self._scan(role)

    def _scan(self, role: str) -> None:
        split = self.load(role)
        if split.paths is None:
            self.bad_images[role] = []
            return
        with tqdm(total=len(split), desc=f"checking {role} images", unit="img", leave=False) as bar:
            bad = scan_split(split, progress=bar.update)
        self.bad_images[role] = bad
        if not bad:
            return
        if self.on_bad_image == "error":
            raise BadImagesError(split.name, bad)
        self.splits[role] = split.without([b.index for b in bad])
        if self.report_dir is not None:
            # the whole list, rewritten: a resumed run lists each image once
            lines = [f"{r}\t{b.line()}" for r, found in self.bad_images.items() for b in found]
            self.report_dir.mkdir(parents=True, exist_ok=True)
            (self.report_dir / "bad_images.txt").write_text("\n".join(lines) + "\n")
        where = f" (listed in {self.report_dir / 'bad_images.txt'})" if self.report_dir else ""
        print(
            f"skipping {len(bad)} unusable image(s) of the {role} split{where}: "
            + "; ".join(b.line() for b in bad[:5])
            + (" ..." if len(bad) > 5 else "")
        )

    def load(self, role: str) -> Split:
        """The split playing ``role`` (train, val or test), loaded once."""
        if role not in self.splits:
            name = self.split_names[role]
            if name is None:
                raise ValueError(f"no {role} split configured (data.{role}_split is null)")
            options = dict(self.dataset_options)
            if self._classes is not None and takes_classes(self.dataset):
                options.setdefault("classes", list(self._classes))
            split = load_split(self.dataset, name, self.root, **options)
            self._check_classes(role, split)
            self.splits[role] = split
        return self.splits[role]

    def _check_classes(self, role: str, split: Split) -> None:
        expected = self._classes
        if expected is None and role != "train":
            expected = self.load("train").classes
        if expected is not None and tuple(split.classes) != tuple(expected):
            source = "the checkpoint" if self._classes is not None else "the training split"
            raise ValueError(
                f"{self.dataset} split {split.name!r} has classes {list(split.classes)}, but "
                f"{source} has {list(expected)}"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes if self._classes is not None else self.load("train").classes

    @property
    def train_split(self) -> Split:
        return self.load("train")

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
    def serve_features(self, role: str, source: FeatureSource) -> None:
        """Serve ``role`` as precomputed backbone features from ``source`` (filled before the
        first batch is drawn) instead of images."""
        if role == "train" and self.train_augment not in ("none", "flip"):
            raise ValueError(
                "cached features need a deterministic training transform: data.train_augment "
                f"none or flip (each image and its mirror are cached), got {self.train_augment!r}"
            )
        self.feature_sources[role] = source

    def image_dataset(
        self, role: str, train: bool = False, mirrored: bool = False, pixels: bool = False
    ) -> ImageDataset:
        """``role`` as images: the training transform when ``train``, else the evaluation one
        (of the horizontal mirror when ``mirrored``); ``pixels``: evaluation images as uint8,
        for ``normalize_batch`` to finish per batch (``eval_pixels``)."""
        pre = self.preprocessing
        transform: Callable[[Any], torch.Tensor]
        draft = draft_size(pre, self.train_augment if train else None)
        if train:
            transform = train_transform(pre, self.train_augment, self.paper_scales)
        else:
            transform = eval_pixels(pre) if pixels else eval_transform(pre)
            if mirrored:
                transform = T.Compose([T.RandomHorizontalFlip(p=1.0), transform])
        return ImageDataset(self.load(role), transform, draft)

    # -- loaders -------------------------------------------------------------------------------
    def _loader(self, role: str, train: bool) -> DataLoader[Batch]:
        dataset: Dataset[Batch]
        workers = self.num_workers
        if role in self.feature_sources:
            flip = train and self.train_augment == "flip"
            dataset = FeatureDataset(self.feature_sources[role], self.load(role).targets, flip)
            workers = 0  # the features are in memory: workers would only copy them
        else:
            dataset = self.image_dataset(role, train)
        if train:
            seed = self.seed
            items = SeededItems(dataset, seed)
            replicas, rank = self._replicas()
            return ResumableLoader(
                items,
                EpochSampler(items, seed, num_replicas=replicas, rank=rank),
                batch_size=self.batch_size,
                drop_last=False,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    @property
    def seed(self) -> int:
        """The seed of the training order and augmentation: the run's ``seed_everything``."""
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _replicas(self) -> tuple[int, int]:
        """(number of processes, this one's rank) sharing the training data."""
        trainer = self.trainer
        kwargs = None if trainer is None else trainer.distributed_sampler_kwargs
        if not kwargs:
            return 1, 0
        return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))

    def train_dataloader(self) -> DataLoader[Batch]:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader[Batch] | list[DataLoader[Batch]]:
        if self.split_names["val"] is None:
            return []  # no validation: Lightning then skips the loop
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader[Batch]:
        return self._loader("test", train=False)
