"""Building a network: plain functions from a training split (or a checkpoint's metadata) to a
network and its ``CheckpointMeta``. Used by the LightningModule, ``ssgrl graph``, the demo (through
the CLI) and ``import-official``; nothing here knows about the Trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, Network
from ssgrl.data.base import Split
from ssgrl.data.transforms import Preprocessing, PreprocessingRequest
from ssgrl.engine.pretrained import load_backbone_weights, pretrained_help
from ssgrl.graph import (
    EmbeddingOptions,
    GraphOptions,
    LabelEmbeddings,
    LabelGraph,
    embed_class_names,
    graph_from_labels,
)
from ssgrl.models.backbone import default_preprocessing
from ssgrl.models.factory import MODEL_CONFIGS, ModelConfig, build_model


def resolve_preprocessing(backbone: str, request: PreprocessingRequest) -> Preprocessing:
    """The evaluation preprocessing: the request's values, the backbone's where unset (as
    timm's ``resolve_data_config``). Resolved once, then handed to the DataModule."""
    base = default_preprocessing(backbone)
    return Preprocessing(
        image_size=request.image_size,
        resize=request.resize if request.resize is not None else request.image_size,
        mean=tuple(request.mean if request.mean is not None else base["mean"]),  # type: ignore[arg-type]
        std=tuple(request.std if request.std is not None else base["std"]),  # type: ignore[arg-type]
        interpolation=request.interpolation or str(base["interpolation"]),
        jpeg_draft=request.jpeg_draft,
    )


def resolve_model_config(net: ModelConfig | str | dict[str, Any]) -> ModelConfig:
    """A ``ModelConfig`` from a preset name, a plain mapping or a config."""
    if isinstance(net, ModelConfig):
        return net
    if isinstance(net, str):
        if net not in MODEL_CONFIGS:
            raise ValueError(
                f"model.net: unknown preset {net!r}; expected one of {', '.join(MODEL_CONFIGS)} "
                "or a mapping of the architecture's fields"
            )
        return MODEL_CONFIGS[net]
    return ModelConfig.from_dict(dict(net))


@dataclass
class BuildResult:
    """A freshly built network with its metadata and the label graph / embeddings it used."""

    net: Network
    meta: CheckpointMeta
    graph: LabelGraph | None = None
    embeddings: LabelEmbeddings | None = None
    notes: list[str] = field(default_factory=list)


def build_network(
    config: ModelConfig,
    train: Split,
    split_label: str,
    preprocessing: Preprocessing,
    graph: GraphOptions | None = None,
    embeddings: EmbeddingOptions | None = None,
    pretrained: str = "none",
    data: dict[str, Any] | None = None,
) -> BuildResult:
    """Build ``config``'s network for the classes of ``train``: the label graph from its labels
    (only these), the class-name embeddings, then the backbone's ImageNet weights."""
    graph = graph or GraphOptions()
    embeddings = embeddings or EmbeddingOptions()
    classes = list(train.classes)
    adjacency = vectors = None
    label_graph = emb = None
    emb_info = None
    graph_info = None
    if config.arch == "ssgrl":
        label_graph = graph_from_labels(train.targets, classes, split_label, graph)
        emb = embed_class_names(classes, source=embeddings.source, path=embeddings.path)
        adjacency = torch.from_numpy(np.asarray(label_graph.matrix, dtype=np.float32))
        vectors = torch.from_numpy(np.asarray(emb.vectors, dtype=np.float32))
        graph_info = {k: v for k, v in label_graph.to_dict().items() if k != "matrix"}
        if config.adjacency != "statistics" or config.learn_adjacency:
            # the statistics above stay on record (resuming checks them); the weights hold this
            graph_info["adjacency"] = adjacency_note(config)
        emb_info = EmbeddingInfo(
            source=emb.source,
            dim=emb.dim,
            words=[list(ws) for ws in emb.words],
            provenance=dict(emb.provenance),
        )
    net = build_model(config, len(classes), adjacency, vectors, pretrained=pretrained == "timm")
    try:
        origin = load_backbone_weights(net.backbone, pretrained)
    except (FileNotFoundError, ValueError) as err:
        raise type(err)(
            f"{err}. To start from ImageNet weights give {pretrained_help(config.backbone)}; "
            "or model.pretrained: none to train from scratch"
        ) from err
    meta = CheckpointMeta(
        class_names=classes,
        model=config,
        preprocessing=preprocessing,
        graph=graph_info,
        embeddings=emb_info,
        pretrained=origin,
        data=dict(data or {}),
    )
    return BuildResult(net=net, meta=meta, graph=label_graph, embeddings=emb)


def adjacency_note(config: ModelConfig) -> str:
    """What the adjacency in a checkpoint's weights is, when not the counted statistics."""
    start = {
        "statistics": "the label statistics recorded here",
        "identity": "the identity",
        "uniform": "uniform 1/C",
    }[config.adjacency]
    if config.learn_adjacency:
        return f"learned, initialised as {start}"
    return start


__all__ = [
    "BuildResult",
    "PreprocessingRequest",
    "adjacency_note",
    "build_network",
    "resolve_model_config",
    "resolve_preprocessing",
]
