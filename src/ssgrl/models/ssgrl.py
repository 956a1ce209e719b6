"""The SSGRL network and the plain baseline, both image (B, 3, H, W) -> logits (B, C)."""

from __future__ import annotations

import torch
from torch import nn

from ssgrl.models.backbone import Backbone
from ssgrl.models.decoupling import SemanticDecoupling
from ssgrl.models.ggnn import GGNN


class SSGRL(nn.Module):
    """Backbone -> semantic decoupling -> GGNN -> [h_T, f_c] -> FC + tanh -> per-class classifier.

    The label embeddings (C, d_s) are a buffer (a parameter when ``learn_embeddings``) and the
    adjacency lives in ``graph.adjacency``: both are saved in the state dict, so a checkpoint
    alone reproduces predictions (class names and preprocessing travel in its metadata, see
    ``ssgrl.checkpoint``).
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
        self.decoupling = SemanticDecoupling(n, embeddings.shape[1], d1, d2)
        self.graph = GGNN(n, adjacency, ggnn_steps, reset_gate_uses_update_weights)
        self.fc_out = nn.Linear(2 * n, n)
        self.classifier_weight = nn.Parameter(torch.empty(num_classes, n))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.uniform_(self.classifier_weight, -(n**-0.5), n**-0.5)

    @property
    def num_classes(self) -> int:
        return int(self.classifier_bias.shape[0])

    def head_with_attention(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map (B, N, h, w) -> logits (B, C), attention (B, C, h, w)."""
        f_c, attention = self.decoupling(fmap, self.label_embeddings)  # (B, C, N)
        h_t = self.graph(f_c)  # (B, C, N)
        o = torch.tanh(self.fc_out(torch.cat([h_t, f_c], dim=-1)))  # (B, C, N)
        logits = (o * self.classifier_weight).sum(-1) + self.classifier_bias  # (B, C)
        return logits, attention

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.head_with_attention(fmap)[0]

    def forward_with_attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) -> logits (B, C), attention maps (B, C, h, w) summing to 1."""
        return self.head_with_attention(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class Baseline(nn.Module):
    """The plain multi-label baseline: backbone -> global average pooling -> linear."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.num_features, num_classes)

    @property
    def num_classes(self) -> int:
        return int(self.classifier.out_features)

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.classifier(fmap.mean(dim=(2, 3)))  # (B, N) -> (B, C)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
