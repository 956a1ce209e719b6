"""The SSGRL network and the plain baselines, both image (B, 3, H, W) -> logits (B, C)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ssgrl.models.backbone import Backbone
from ssgrl.models.decoupling import SemanticDecoupling
from ssgrl.models.ggnn import GGNN

GlobalPool = Literal["avg", "max"]


class NoAttentionError(ValueError):
    """The network has no per-class attention maps (a baseline, or SSGRL without semantic
    decoupling): ``explain`` and the attention output need SSGRL with semantic decoupling."""


class PooledProjection(nn.Module):
    """The ablation "SSGRL without semantic decoupling": one pooled image feature, projected per
    class by Eq. 1 of the decoupling applied to the global average instead of each position.

        g   = mean_wh f_wh                                   (B, N)
        f_c = P^T tanh((U^T g) * (V^T x_c)) + b               (B, C, N)

    The class-specific part comes from the label embedding x_c (as in the decoupling, so the
    embedding variants still apply), with the same low-rank bilinear parameters U (N -> d1),
    V (d_s -> d1) and P (d1 -> N); there is no spatial attention. A full per-class N x N
    projection would cost C * N^2 weights (131 M for COCO on Lite0), more than the whole head.
    """

    def __init__(self, feature_dim: int, embed_dim: int, d1: int = 1024) -> None:
        super().__init__()
        self.U = nn.Linear(feature_dim, d1, bias=False)
        self.V = nn.Linear(embed_dim, d1, bias=False)
        self.P = nn.Linear(d1, feature_dim)

    def forward(self, fmap: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """fmap (B, N, h, w), embeddings (C, d_s) -> class-specific features (B, C, N)."""
        g = fmap.mean(dim=(2, 3))  # (B, N)
        joint = torch.tanh(self.U(g).unsqueeze(1) * self.V(embeddings))  # (B, C, d1)
        return self.P(joint)  # (B, C, N)


class SSGRL(nn.Module):
    """Backbone -> semantic decoupling -> GGNN -> [h_T, f_c] -> FC + tanh -> per-class classifier.

    The label embeddings (C, d_s) are a buffer (a parameter when ``learn_embeddings``) and the
    adjacency lives in ``graph.adjacency`` (a parameter when ``learn_adjacency``): both are saved
    in the state dict, so a checkpoint alone reproduces predictions (class names and
    preprocessing travel in its metadata, see ``ssgrl.checkpoint``).

    ``semantic_decoupling=False`` replaces the attention by ``PooledProjection`` (the network then
    has no attention maps); ``dropout`` drops entries of o_c before the classifier in training.
    """

    def __init__(
        self,
        backbone: Backbone,
        adjacency: torch.Tensor,
        label_embeddings: torch.Tensor,
        d1: int = 1024,
        d2: int = 1024,
        ggnn_steps: int = 3,
        reset_gate_uses_update_weights: bool = False,
        learn_embeddings: bool = False,
        learn_adjacency: bool = False,
        semantic_decoupling: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = adjacency.shape[0]
        if label_embeddings.ndim != 2 or label_embeddings.shape[0] != num_classes:
            raise ValueError(
                f"label embeddings must be (C={num_classes}, d), got {tuple(label_embeddings.shape)}"
            )
        n = backbone.num_features
        self.backbone = backbone
        embeddings = label_embeddings.detach().clone().float()
        if learn_embeddings:
            self.label_embeddings = nn.Parameter(embeddings)
        else:
            self.register_buffer("label_embeddings", embeddings)
        self.decoupling: SemanticDecoupling | PooledProjection
        if semantic_decoupling:
            self.decoupling = SemanticDecoupling(n, embeddings.shape[1], d1, d2)
        else:
            self.decoupling = PooledProjection(n, embeddings.shape[1], d1)
        self.graph = GGNN(
            n,
            adjacency,
            ggnn_steps,
            reset_gate_uses_update_weights,
            learn_adjacency=learn_adjacency,
        )
        if ggnn_steps == 0:  # T = 0: nothing reads the GGNN (h_0 = f_c), so nothing of it trains
            self.graph.requires_grad_(False)
        self.fc_out = nn.Linear(2 * n, n)
        self.dropout = nn.Dropout(dropout)
        self.classifier_weight = nn.Parameter(torch.empty(num_classes, n))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.uniform_(self.classifier_weight, -(n**-0.5), n**-0.5)

    @property
    def num_classes(self) -> int:
        return int(self.classifier_bias.shape[0])

    @property
    def has_attention(self) -> bool:
        """Whether ``forward_with_attention`` gives attention maps (semantic decoupling)."""
        return not isinstance(self.decoupling, PooledProjection)

    def _require_attention(self) -> None:
        if not self.has_attention:
            raise NoAttentionError(
                "this SSGRL was trained without semantic decoupling "
                "(model.net.semantic_decoupling: false): it has no per-class attention maps. "
                "Attention (ssgrl explain, the attention output) needs a model trained with "
                "semantic decoupling; its predictions work as usual"
            )

    def _logits(self, f_c: torch.Tensor) -> torch.Tensor:
        """Class features (B, C, N) -> logits (B, C): GGNN, output FC, classifier."""
        h_t = self.graph(f_c)  # (B, C, N)
        o = torch.tanh(self.fc_out(torch.cat([h_t, f_c], dim=-1)))  # (B, C, N)
        o = self.dropout(o)  # identity in eval mode
        return (o * self.classifier_weight).sum(-1) + self.classifier_bias  # (B, C)

    def head_with_attention(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map (B, N, h, w) -> logits (B, C), attention (B, C, h, w)."""
        self._require_attention()
        f_c, attention = self.decoupling(fmap, self.label_embeddings)  # (B, C, N)
        return self._logits(f_c), attention

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        if self.has_attention:
            return self.head_with_attention(fmap)[0]
        return self._logits(self.decoupling(fmap, self.label_embeddings))

    def forward_with_attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) -> logits (B, C), attention maps (B, C, h, w) summing to 1.
        Raises ``NoAttentionError`` without semantic decoupling."""
        self._require_attention()  # before the backbone runs
        return self.head_with_attention(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class Baseline(nn.Module):
    """The plain multi-label baseline: backbone -> global average (or max) pooling -> linear."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        global_pool: GlobalPool = "avg",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", "max"):
            raise ValueError(f"global_pool must be 'avg' or 'max', got {global_pool!r}")
        self.backbone = backbone
        self.global_pool = global_pool
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.num_features, num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.classifier.out_features)

    @property
    def has_attention(self) -> bool:
        return False

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        max_pool = self.global_pool == "max"
        pooled = fmap.amax(dim=(2, 3)) if max_pool else fmap.mean(dim=(2, 3))  # (B, N)
        return self.classifier(self.dropout(pooled))  # (B, C)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
