"""Pure PyTorch models: no file reading, no device choice, no Lightning."""

from ssgrl.models.backbone import Backbone, default_preprocessing
from ssgrl.models.decoupling import SemanticDecoupling
from ssgrl.models.factory import (
    MODEL_CONFIGS,
    ModelConfig,
    build_model,
    fixed_adjacency,
    model_config,
)
from ssgrl.models.ggnn import GGNN
from ssgrl.models.ssgrl import SSGRL, Baseline, NoAttentionError, PooledProjection

__all__ = [
    "GGNN",
    "MODEL_CONFIGS",
    "SSGRL",
    "Backbone",
    "Baseline",
    "ModelConfig",
    "NoAttentionError",
    "PooledProjection",
    "SemanticDecoupling",
    "build_model",
    "default_preprocessing",
    "fixed_adjacency",
    "model_config",
]
