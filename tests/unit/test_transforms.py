"""Transforms: evaluation geometry shared by training, prediction and the explain picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.data.transforms import eval_geometry, eval_transform, preprocessing_dict, train_transform
from ssgrl.engine.module import SSGRLModule
from ssgrl.inference.predictor import Predictor
from ssgrl.models.factory import ModelConfig, build_model


def _image(w: int = 411, h: int = 300) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("resize", "size", "interp"), [(259, 224, "bicubic"), (56, 21, "nearest"), (64, 64, "bilinear")]
)
def test_view_is_exactly_what_the_network_sees(resize: int, size: int, interp: str) -> None:
    pre = preprocessing_dict(size, resize, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), interp)
    net = build_model(ModelConfig(arch="baseline", backbone="resnet18"), 3)
    net.preprocessing = pre
    seen = eval_transform(pre)(_image())  # (3, size, size), mean 0 / std 1: plain [0, 1] pixels
    view = Predictor(model=net).view(_image())
    assert view.size == (size, size)
    drawn = torch.from_numpy(np.array(view)).permute(2, 0, 1).float() / 255
    assert torch.allclose(seen, drawn, atol=1e-6)
    assert eval_geometry(pre)(_image()).size == (size, size)


def test_paper_augmentation_crops_and_refuses_a_no_op() -> None:
    pre = preprocessing_dict(96, 128, (0.5,) * 3, (0.5,) * 3, "bilinear")
    out = train_transform(pre, "paper", scales=(128, 112, 96, 64))(_image())
    assert out.shape == (3, 96, 96)
    with pytest.raises(ValueError, match="resize"):
        train_transform(preprocessing_dict(224, 224, (0.5,) * 3, (0.5,) * 3, "bilinear"), "paper")


def test_top_k_larger_than_the_class_count_fails_at_build() -> None:
    dm = SSGRLDataModule(
        dataset="synthetic",
        dataset_options={
            "num_train": 8,
            "num_val": 4,
            "num_test": 4,
            "image_size": 32,
            "num_classes": 2,
        },
        image_size=32,
    )
    module = SSGRLModule(pretrained="none", embeddings="onehot", d1=8, d2=8, top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        module.build(dm, load_pretrained=False)
