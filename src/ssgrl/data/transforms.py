"""Image transforms. Evaluation is resize -> centre crop -> normalise, the same for every
dataset and for ``ssgrl predict``; training adds one of a few named augmentation policies."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from PIL import Image
from torchvision.transforms import v2 as T

Augment = Literal["none", "flip", "paper", "modern"]
PAPER_SCALES = (640, 576, 512, 384, 320)

_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input at evaluation: resize to ``resize`` x ``resize``,
    centre-crop ``image_size``, scale to [0, 1], normalise. Saved in every checkpoint.

    ``jpeg_draft``: JPEG files are decoded at the smallest of 1, 1/2, 1/4, 1/8 scale whose both
    sides still cover ``resize`` (libjpeg's DCT scaling, Pillow's ``Image.draft``), before the
    same resize: 1.5-10x less decoding for photos larger than twice the input, pixels within
    a few levels of a full decode. Every path that reads a file honours it (training, the
    feature cache, evaluation, ``predict``, ``explain``, ``serve``), so a model sees the same
    pixels in training and in use; checkpoints written before it existed read as False (full
    decode, as they were trained). Images handed over already decoded are used as they are.
    """

    image_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    jpeg_draft: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.resize < self.image_size:
            raise ValueError(
                f"preprocessing: expected 0 < image_size <= resize, got image_size "
                f"{self.image_size}, resize {self.resize}"
            )
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(
                f"preprocessing: interpolation {self.interpolation!r}; expected one of "
                f"{', '.join(_INTERPOLATION)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"preprocessing: mean and std need 3 values (std > 0), got {self.mean}, {self.std}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        missing = {"image_size", "mean", "std"} - set(data)
        if missing:
            raise ValueError(f"preprocessing: missing {sorted(missing)} in {dict(data)}")
        return cls(
            image_size=int(data["image_size"]),
            resize=int(data.get("resize") or data["image_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bilinear")),
            jpeg_draft=bool(data.get("jpeg_draft", False)),
        )

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """The size a JPEG file may be decoded down to (see ``jpeg_draft``), or None."""
        return (self.resize, self.resize) if self.jpeg_draft else None

    def describe(self) -> str:
        if self.resize != self.image_size:
            return f"resize {self.resize}x{self.resize}, centre crop {self.image_size}"
        return f"resize {self.image_size}x{self.image_size}"

    def describe_decode(self) -> str:
        if self.jpeg_draft:
            return f"JPEG files decoded at 1/2-1/8 scale where that still covers {self.resize} px"
        return "full decode"


@dataclass(frozen=True)
class PreprocessingRequest:
    """The data section's preprocessing settings; ``None`` = the backbone's pretraining value
    (resolved by ``ssgrl.engine.build.resolve_preprocessing``)."""

    image_size: int = 224
    resize: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None
    jpeg_draft: bool = True


def draft_size(pre: Preprocessing, augment: Augment | None = None) -> tuple[int, int] | None:
    """The size files may be decoded down to for ``augment`` (None: evaluation): the
    preprocessing's ``draft_size``, except for ``modern``, whose random resized crops zoom in
    and need every pixel of the file."""
    return None if augment == "modern" else pre.draft_size


def _to_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(mean), list(std))]


def eval_geometry(pre: Preprocessing) -> Callable[[Image.Image], Image.Image]:
    """Resize the image to ``resize`` x ``resize`` and centre-crop ``image_size``: the picture
    the network sees (``ssgrl explain`` draws on exactly this)."""
    interp = _INTERPOLATION[pre.interpolation]
    size, resize = pre.image_size, pre.resize
    steps: list[Any] = [T.Resize((resize, resize), interpolation=interp, antialias=True)]
    if resize != size:
        steps.append(T.CenterCrop(size))
    return T.Compose(steps)


def eval_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """``eval_geometry`` then normalise."""
    return T.Compose([eval_geometry(pre), *_to_tensor(pre.mean, pre.std)])


def eval_pixels(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """``eval_geometry`` as a uint8 tensor (3, S, S): ``normalize_batch`` of a stack of these
    equals ``eval_transform`` of each image bit for bit, at a quarter of the bytes to move
    between decoding workers and one vectorised normalisation per batch."""
    return T.Compose([eval_geometry(pre), T.ToImage()])


def normalize_batch(pixels: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 (B, 3, S, S) from ``eval_pixels`` -> the network's float32 input: the same
    operations as ``eval_transform`` (scale to [0, 1], then (x - mean) / std)."""
    x = T.functional.to_dtype(pixels, torch.float32, scale=True)
    return T.functional.normalize(x, list(pre.mean), list(pre.std))


class RandomSquareCrop:
    """The authors' multi-scale crop: a random square whose side is drawn from ``scales``."""

    def __init__(self, scales: Sequence[int]) -> None:
        self.scales = tuple(scales)

    def __call__(self, img: Image.Image) -> Image.Image:
        side = min(random.choice(self.scales), img.width, img.height)
        x = random.randint(0, img.width - side)
        y = random.randint(0, img.height - side)
        return img.crop((x, y, x + side, y + side))


def train_transform(
    pre: Preprocessing, augment: Augment, scales: Sequence[int] = PAPER_SCALES
) -> Callable[[Image.Image], torch.Tensor]:
    """``none``: as evaluation (deterministic, so backbone features may be cached);
    ``flip``: plus horizontal flip; ``paper``: resize to ``resize``, random square crop with a
    side from ``scales``, resize to ``image_size`` (no flip, as the authors' code);
    ``modern``: random resized crop, flip and RandAugment."""
    interp = _INTERPOLATION[pre.interpolation]
    size, resize = pre.image_size, pre.resize
    tail = _to_tensor(pre.mean, pre.std)
    if augment == "none":
        return eval_transform(pre)
    if augment == "flip":
        return T.Compose([eval_transform(pre), T.RandomHorizontalFlip()])
    if augment == "paper":
        if min(scales) >= resize:
            raise ValueError(
                f"data.train_augment paper crops squares of sides {tuple(scales)} out of the "
                f"{resize}x{resize} resized image: give data.resize larger than the smallest "
                "side (the paper: resize 640, image_size 576) or smaller data.paper_scales"
            )
        return T.Compose(
            [
                T.Resize((resize, resize), interpolation=interp, antialias=True),
                RandomSquareCrop(scales),
                T.Resize((size, size), interpolation=interp, antialias=True),
                *tail,
            ]
        )
    if augment == "modern":
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=interp, antialias=True),
                T.RandomHorizontalFlip(),
                T.RandAugment(num_ops=2, magnitude=9),
                *tail,
            ]
        )
    raise ValueError(f"unknown augmentation {augment!r}; expected none, flip, paper or modern")
