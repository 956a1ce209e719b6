"""Model configurations by name, and building a model from its plain-data spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from ssgrl.models.backbone import Backbone, Pooling
from ssgrl.models.ssgrl import SSGRL, Baseline

Architecture = Literal["ssgrl", "baseline"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape. Saved in every checkpoint as a plain dict."""

    arch: Architecture = "ssgrl"
    backbone: str = "tf_efficientnet_lite0"
    feature_index: int = -1
    pool: Pooling = "none"
    train_stages: int = -1
    d1: int = 1024
    d2: int = 1024
    ggnn_steps: int = 3
    reset_gate_uses_update_weights: bool = False
    learn_embeddings: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown model settings {sorted(unknown)}; expected some of {sorted(known)}"
            )
        return cls(**data)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    # the CPU default: ImageNet EfficientNet-Lite0 (offline weights), last stage trains
    "ssgrl-lite0": ModelConfig(d1=512, d2=512, train_stages=1),
    # the paper: ResNet-101, 2x2 pooling after layer4, layer4 + head train, d1 = d2 = 1024
    "ssgrl-resnet101": ModelConfig(backbone="resnet101", pool="avg2x2", train_stages=1),
    # the authors' released weights: their reset-gate quirk switched on
    "ssgrl-resnet101-official": ModelConfig(
        backbone="resnet101", pool="avg2x2", train_stages=1, reset_gate_uses_update_weights=True
    ),
    "ssgrl-lite0-learned-embeddings": ModelConfig(d1=512, d2=512, learn_embeddings=True),
    "baseline-lite0": ModelConfig(arch="baseline", train_stages=1),
    "baseline-resnet101": ModelConfig(arch="baseline", backbone="resnet101", train_stages=1),
}


def model_config(name: str, **overrides: Any) -> ModelConfig:
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; expected one of {sorted(MODEL_CONFIGS)}")
    return replace(MODEL_CONFIGS[name], **overrides)


def build_model(
    config: ModelConfig,
    num_classes: int,
    adjacency: torch.Tensor | None = None,
    label_embeddings: torch.Tensor | None = None,
    embed_dim: int | None = None,
    pretrained: bool = False,
) -> SSGRL | Baseline:
    """Build the network. Without adjacency/embeddings, placeholders of the right shape are used
    (to be overwritten by ``load_state_dict``); ``embed_dim`` is then required for SSGRL."""
    backbone = Backbone(
        config.backbone, config.feature_index, config.pool, config.train_stages, pretrained
    )
    if config.arch == "baseline":
        return Baseline(backbone, num_classes)
    if config.arch != "ssgrl":
        raise ValueError(f"unknown architecture {config.arch!r}; expected 'ssgrl' or 'baseline'")
    if adjacency is None:
        adjacency = torch.zeros(num_classes, num_classes)
    if label_embeddings is None:
        if embed_dim is None:
            raise ValueError("build_model needs label_embeddings or embed_dim for SSGRL")
        label_embeddings = torch.zeros(num_classes, embed_dim)
    return SSGRL(
        backbone,
        adjacency,
        label_embeddings,
        d1=config.d1,
        d2=config.d2,
        ggnn_steps=config.ggnn_steps,
        reset_gate_uses_update_weights=config.reset_gate_uses_update_weights,
        learn_embeddings=config.learn_embeddings,
    )
