"""After a short training on the synthetic data, each present class's attention concentrates
inside that class's boxes, clearly above chance.

Measure (``ssgrl.metrics.localization``): the attention mass of class c inside the union of c's
boxes (feature cells weighted by the fraction the boxes cover), averaged over the (image, class)
pairs of present classes, divided by the mean box-area fraction, i.e. what a uniform attention
map scores. 1.0 = chance. We require >= 2.0 (measured here: about 3-4 after a few epochs).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from ssgrl.data.datamodule import SSGRLDataModule
from ssgrl.engine.features import FeatureCaching
from ssgrl.engine.module import OptimConfig, SSGRLModule
from ssgrl.metrics.localization import attention_box_mass, box_coverage
from ssgrl.models import SSGRL, ModelConfig


def test_box_coverage_hand_computed() -> None:
    # a 2x2 grid over a 100x100 image; the box covers the left half of the top-left cell
    cover = box_coverage([(0, 0, 25, 50)], grid=(2, 2), size=(100, 100))
    np.testing.assert_allclose(cover, [[0.5, 0.0], [0.0, 0.0]])
    uniform = np.full((1, 1, 2, 2), 0.25)
    result = attention_box_mass(uniform, [[(0, 0, 0, 25, 50)]], size=(100, 100))
    assert result.mass == pytest.approx(0.125) and result.chance == pytest.approx(0.125)
    assert result.ratio == pytest.approx(1.0)  # a uniform map is exactly chance
    peaked = np.zeros((1, 1, 2, 2))
    peaked[0, 0, 0, 0] = 1.0
    assert attention_box_mass(
        peaked, [[(0, 0, 0, 25, 50)]], size=(100, 100)
    ).ratio == pytest.approx(4.0)


@pytest.mark.slow
def test_attention_concentrates_inside_boxes() -> None:
    L.seed_everything(0, verbose=False)
    size = 128
    dm = SSGRLDataModule(
        dataset="synthetic",
        dataset_options={
            "num_train": 400,
            "num_val": 40,
            "num_test": 60,
            "image_size": size,
            "seed": 3,
        },
        image_size=size,  # the backbone's normalisation is handed in by the module in setup
        batch_size=32,
        eval_batch_size=64,
    )
    module = SSGRLModule(
        net=ModelConfig(
            arch="ssgrl",
            backbone="tf_efficientnet_lite0",
            feature_index=-2,  # stride 16: an 8x8 grid at 128 px
            train_stages=0,
            d1=128,
            d2=128,
        ),
        pretrained="efficientnet-lite0",
        optim=OptimConfig(lr=2e-3),
    )
    caching = FeatureCaching()  # the frozen backbone's features, computed once
    trainer = L.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[caching],
    )
    trainer.fit(module, datamodule=dm)
    assert caching.reports  # the features were cached, not recomputed per step
    test = dm.load("test")
    assert isinstance(module.net, SSGRL)
    net = module.net.eval()
    images = torch.stack([dm.image_dataset("test")[i]["image"] for i in range(len(test))])
    with torch.no_grad():
        _, attention = net.forward_with_attention(images)
    result = attention_box_mass(attention.numpy(), test.boxes, size=(size, size))
    assert result.count >= 60
    assert result.ratio >= 2.0, f"attention in boxes only {result.ratio:.2f}x chance ({result})"
