"""Transforms: evaluation geometry shared by training, prediction and the explain picture; the
``Preprocessing`` record saved in checkpoints, and how a request is resolved against a backbone."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ssgrl.checkpoint import CheckpointMeta, Model
from ssgrl.data.transforms import (
    Preprocessing,
    PreprocessingRequest,
    eval_geometry,
    eval_transform,
    train_transform,
)
from ssgrl.engine.build import resolve_preprocessing
from ssgrl.inference.predictor import Predictor
from ssgrl.models.factory import ModelConfig, build_model


def _image(w: int = 411, h: int = 300) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _pre(image_size: int = 96, resize: int = 128, interpolation: str = "bilinear") -> Preprocessing:
    return Preprocessing(image_size, resize, (0.5,) * 3, (0.5,) * 3, interpolation)


@pytest.mark.parametrize(
    ("resize", "size", "interp"), [(259, 224, "bicubic"), (56, 21, "nearest"), (64, 64, "bilinear")]
)
def test_view_is_exactly_what_the_network_sees(resize: int, size: int, interp: str) -> None:
    pre = Preprocessing(size, resize, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), interp)
    config = ModelConfig(arch="baseline", backbone="resnet18")
    model = Model(
        build_model(config, 3),
        CheckpointMeta(class_names=["a", "b", "c"], model=config, preprocessing=pre),
    )
    seen = eval_transform(pre)(_image())  # (3, size, size), mean 0 / std 1: plain [0, 1] pixels
    predictor = Predictor(model=model)
    assert predictor.preprocessing == pre
    view = predictor.view(_image())
    assert view.size == (size, size)
    drawn = torch.from_numpy(np.array(view)).permute(2, 0, 1).float() / 255
    assert torch.allclose(seen, drawn, atol=1e-6)
    assert eval_geometry(pre)(_image()).size == (size, size)


def test_paper_augmentation_crops_and_refuses_a_no_op() -> None:
    out = train_transform(_pre(96, 128), "paper", scales=(128, 112, 96, 64))(_image())
    assert out.shape == (3, 96, 96)
    with pytest.raises(ValueError, match="resize"):
        train_transform(_pre(224, 224), "paper")


def test_deterministic_policies_match_evaluation() -> None:
    pre = _pre(64, 80)
    image = _image()
    expected = eval_transform(pre)(image)
    assert torch.equal(train_transform(pre, "none")(image), expected)
    flipped = train_transform(pre, "flip")(image)
    assert torch.equal(flipped, expected) or torch.equal(flipped, expected.flip(-1))
    assert train_transform(pre, "modern")(image).shape == (3, 64, 64)
    with pytest.raises(ValueError, match="unknown augmentation 'jitter'"):
        train_transform(pre, "jitter")  # type: ignore[arg-type]


# -- the Preprocessing record ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"image_size": 224, "resize": 200},
            r"image_size <= resize, got image_size 224, resize 200",
        ),
        ({"image_size": 0, "resize": 0}, "image_size <= resize"),
        ({"interpolation": "lanczos"}, "interpolation 'lanczos'; expected one of bilinear"),
        ({"std": (0.5, 0.0, 0.5)}, r"std > 0"),
        ({"std": (0.5, -0.1, 0.5)}, r"std > 0"),
        ({"mean": (0.5, 0.5)}, "mean and std need 3 values"),
    ],
)
def test_preprocessing_refuses_bad_values(kwargs: dict[str, object], message: str) -> None:
    fields = {
        "image_size": 96,
        "resize": 128,
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "interpolation": "bilinear",
    }
    with pytest.raises(ValueError, match=message):
        Preprocessing(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_preprocessing_is_frozen_and_round_trips() -> None:
    pre = Preprocessing(576, 640, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pre.image_size = 224  # type: ignore[misc]
    record = pre.to_dict()
    assert record == {
        "image_size": 576,
        "resize": 640,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bicubic",
        "jpeg_draft": False,
    }
    assert Preprocessing.from_dict(record) == pre
    assert Preprocessing.from_dict(json.loads(json.dumps(record))) == pre  # as in a checkpoint
    # a record without resize (or with resize null) means no crop; interpolation defaults
    old = {"image_size": 64, "resize": None, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert Preprocessing.from_dict(old) == Preprocessing(64, 64, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match=r"missing \['mean'\]"):
        Preprocessing.from_dict({"image_size": 64, "std": [0.5] * 3})


def test_describe_names_the_crop() -> None:
    assert _pre(576, 640).describe() == "resize 640x640, centre crop 576"
    assert _pre(448, 448).describe() == "resize 448x448"


# -- resolving a request against the backbone ----------------------------------------------------
@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet101"])
def test_resolve_takes_the_backbones_values_where_unset(backbone: str) -> None:
    cfg = timm.get_pretrained_cfg(backbone)
    pre = resolve_preprocessing(backbone, PreprocessingRequest(image_size=96))
    assert pre == Preprocessing(
        image_size=96,
        resize=96,  # no resize given: no crop
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        interpolation=cfg.interpolation,
        jpeg_draft=True,  # new runs decode JPEGs at reduced scale where it covers
    )
    request = PreprocessingRequest(image_size=96, jpeg_draft=False)
    assert resolve_preprocessing(backbone, request).jpeg_draft is False


def test_the_two_backbones_differ() -> None:
    """The case that makes the resolution matter: Lite0 normalises with 0.5, ResNet with the
    ImageNet statistics."""
    lite = resolve_preprocessing("tf_efficientnet_lite0", PreprocessingRequest())
    resnet = resolve_preprocessing("resnet101", PreprocessingRequest())
    assert lite.mean == pytest.approx((0.5, 0.5, 0.5))
    assert lite.std == pytest.approx((0.5, 0.5, 0.5))
    assert resnet.mean == pytest.approx((0.485, 0.456, 0.406))
    assert resnet.std == pytest.approx((0.229, 0.224, 0.225))
    assert lite.image_size == resnet.image_size == 224


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet101"])
def test_resolve_keeps_the_requests_values(backbone: str) -> None:
    request = PreprocessingRequest(
        image_size=576,
        resize=640,
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        interpolation="nearest",
    )
    assert resolve_preprocessing(backbone, request) == Preprocessing(
        576, 640, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "nearest", jpeg_draft=True
    )
    # only some given: those are kept, the rest come from the backbone
    cfg = timm.get_pretrained_cfg(backbone)
    partial = resolve_preprocessing(backbone, PreprocessingRequest(image_size=64, mean=(0.0,) * 3))
    assert partial.mean == (0.0, 0.0, 0.0)
    assert partial.std == tuple(cfg.std)
    assert partial.interpolation == cfg.interpolation


def test_resolve_refuses_a_request_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="image_size <= resize"):
        resolve_preprocessing("resnet101", PreprocessingRequest(image_size=576, resize=448))
