"""Backbone wrapper: any timm network cut at one feature stage, with the paper's optional pooling.

Pure torch. Weights are not read here: ``pretrained=True`` defers to timm's own mechanism, and
``ssgrl.engine.pretrained`` loads explicit local files into ``Backbone.body``.
"""

from __future__ import annotations

from typing import Any, Literal

import timm
import torch
from torch import nn

Pooling = Literal["none", "avg2x2"]


class Backbone(nn.Module):
    """Image (B, 3, H, W) -> feature map (B, N, h, w).

    ``pool="avg2x2"`` is the paper's 2x2 / stride-2 average pooling after ResNet layer4.
    ``train_stages`` is the freezing policy: the number of last feature stages that train
    (-1 = all, 0 = frozen; the paper trains ResNet's layer4 only, i.e. 1). BatchNorm layers of
    frozen stages stay in eval mode, so their running statistics never move.

    ``channels_last`` (default: for convolutional bodies, see ``is_convolutional``) stores the
    body's 4-D weights in the NHWC memory format and converts each input to it, so convolutions
    run without layout conversions (the same numbers up to float rounding). Bodies made mostly
    of Linear layers (ViT-like) are left as they are. The output feature map is then NHWC too.
    """

    def __init__(
        self,
        name: str,
        feature_index: int = -1,
        pool: Pooling = "none",
        train_stages: int = -1,
        pretrained: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if pool not in ("none", "avg2x2"):
            raise ValueError(f"pool must be 'none' or 'avg2x2', got {pool!r}")
        self.name = name
        body: Any = timm.create_model(
            name, pretrained=pretrained, features_only=True, out_indices=(feature_index,)
        )
        self.channels_last = is_convolutional(body) if channels_last is None else channels_last
        if self.channels_last:
            body = body.to(memory_format=torch.channels_last)
        self.body = body
        self.num_features: int = int(body.feature_info.channels()[-1])
        self.reduction: int = int(body.feature_info.reduction()[-1]) * (
            2 if pool == "avg2x2" else 1
        )
        self.pool = nn.AvgPool2d(2, stride=2) if pool == "avg2x2" else nn.Identity()
        self.train_stages = train_stages
        self._freeze(self._stage_of_parameters(feature_index), train_stages)
        self.train()  # frozen BatchNorm in eval mode from the start

    def _stage_of_parameters(self, feature_index: int) -> dict[str, int]:
        """Map each parameter name to the index of the feature stage that computes it."""
        stages = self.body.feature_info.info  # every stage of the network, used or not
        last = range(len(stages))[feature_index]
        self._last_stage = last
        stage_modules = [str(stages[i]["module"]) for i in range(last + 1)]
        names = [n for n, _ in self.body.named_parameters()]
        # A stage ends with the last parameter of its module; a parameter-free module (ResNet's
        # act1) ends just before the first parameter of the next stage.
        ends: list[int] = []
        for k, module in enumerate(stage_modules):
            own = [i for i, n in enumerate(names) if n.startswith(module + ".")]
            if own:
                ends.append(own[-1])
            elif k + 1 < len(stage_modules):
                nxt = [i for i, n in enumerate(names) if n.startswith(stage_modules[k + 1] + ".")]
                ends.append((nxt[0] if nxt else len(names)) - 1)
            else:
                ends.append(len(names) - 1)
        stage: dict[str, int] = {}
        k = 0
        for i, n in enumerate(names):
            while k < len(ends) and i > ends[k]:
                k += 1
            stage[n] = k  # == len(ends): after the used stage (timm keeps it), never trained
        return stage

    def _freeze(self, stage: dict[str, int], train_stages: int) -> None:
        num_stages = len(self.body.feature_info.info[: self._last_stage + 1])
        first = 0 if train_stages < 0 else max(num_stages - train_stages, 0)
        for n, p in self.body.named_parameters():
            p.requires_grad_(first <= stage[n] < num_stages)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        for m in self.body.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                params = list(m.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # no copy if already
        fmap = self.body(images)[-1]  # (B, N, H/r, W/r)
        return self.pool(fmap)  # (B, N, h, w)


def is_convolutional(body: nn.Module) -> bool:
    """Whether most of the body's weights are convolution kernels (a CNN, for which the NHWC
    memory format pays) rather than Linear matrices (ViT-like: patch embedding + MLPs)."""
    conv = sum(m.weight.numel() for m in body.modules() if isinstance(m, nn.Conv2d))
    linear = sum(m.weight.numel() for m in body.modules() if isinstance(m, nn.Linear))
    return conv > linear


def default_preprocessing(name: str) -> dict[str, object]:
    """The normalisation and interpolation the backbone was pretrained with (timm's config)."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return {
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bilinear",
        }
    return {
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "interpolation": str(cfg.interpolation or "bilinear"),
    }
