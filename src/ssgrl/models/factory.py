"""Model configurations by name, and building a model from its plain-data spec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch

from ssgrl.models.backbone import Backbone, Pooling
from ssgrl.models.ssgrl import SSGRL, Baseline, GlobalPool

Architecture = Literal["ssgrl", "baseline"]
# the GGNN's adjacency: the label statistics of ``model.graph`` (threshold / reweight give
# ML-GCN's graph), the identity (no messages between classes), or uniform (A[i, j] = 1/C)
Adjacency = Literal["statistics", "identity", "uniform"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network: its shape and its variant. Saved in every checkpoint
    as a plain dict; a field missing there (a checkpoint older than the field) takes its
    default, which is the behaviour from before the field existed."""

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
    # the variants of the ablations (``ssgrl.engine.variants``); the defaults are the paper's
    dropout: float = 0.0  # on the features before the classifier (o_c; the baseline's pooled)
    global_pool: GlobalPool = "avg"  # baseline only: global average or max pooling
    adjacency: Adjacency = "statistics"  # SSGRL only
    learn_adjacency: bool = False  # SSGRL only: the adjacency trains, initialised as configured
    semantic_decoupling: bool = True  # SSGRL only: False = one pooled feature projected per class

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.net.dropout must lie in [0, 1), got {self.dropout}")
        if self.global_pool not in ("avg", "max"):
            raise ValueError(
                f"model.net.global_pool must be 'avg' or 'max', got {self.global_pool!r}"
            )
        if self.adjacency not in ("statistics", "identity", "uniform"):
            raise ValueError(
                "model.net.adjacency must be 'statistics', 'identity' or 'uniform', "
                f"got {self.adjacency!r}"
            )
        defaults = ModelConfig.__dataclass_fields__
        if self.arch == "baseline":
            ssgrl_only = [
                name
                for name in ("adjacency", "learn_adjacency", "semantic_decoupling")
                if getattr(self, name) != defaults[name].default
            ]
            if ssgrl_only:
                keys = ", ".join(f"model.net.{name}" for name in ssgrl_only)
                raise ValueError(f"{keys} only apply to arch ssgrl, not baseline")
        elif self.global_pool != "avg":
            raise ValueError(
                f"model.net.global_pool {self.global_pool!r} only applies to arch baseline "
                "(SSGRL pools with its attention)"
            )

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
        return cls(**data)  # fields added later take their defaults: old checkpoints load


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
    "baseline-gmp-lite0": ModelConfig(arch="baseline", global_pool="max", train_stages=1),
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
    (to be overwritten by ``load_state_dict``); ``embed_dim`` is then required for SSGRL.
    ``config.adjacency`` identity / uniform replaces the given adjacency by I or 1/C."""
    backbone = Backbone(
        config.backbone, config.feature_index, config.pool, config.train_stages, pretrained
    )
    if config.arch == "baseline":
        return Baseline(backbone, num_classes, config.global_pool, config.dropout)
    if config.arch != "ssgrl":
        raise ValueError(f"unknown architecture {config.arch!r}; expected 'ssgrl' or 'baseline'")
    if config.adjacency != "statistics" or adjacency is None:
        adjacency = fixed_adjacency(config.adjacency, num_classes)
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
        learn_adjacency=config.learn_adjacency,
        semantic_decoupling=config.semantic_decoupling,
        dropout=config.dropout,
    )


def fixed_adjacency(kind: Adjacency, num_classes: int) -> torch.Tensor:
    """(C, C) adjacency of the ablations: ``identity`` I (each node hears only itself, so the
    GGNN message is [h_c, h_c]); ``uniform`` 1/C everywhere (each node hears the mean of all
    nodes: rows sum to 1 like the identity's, so the gates see messages of the same scale
    whatever C; all-ones would grow them C-fold); ``statistics`` zeros, a placeholder for the
    weights of a checkpoint."""
    if kind == "identity":
        return torch.eye(num_classes)
    if kind == "uniform":
        return torch.full((num_classes, num_classes), 1.0 / num_classes)
    return torch.zeros(num_classes, num_classes)
