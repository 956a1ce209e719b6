"""Semantic decoupling: one attention map and one feature vector per class (paper Sec. 3.1)."""

from __future__ import annotations

import torch
from torch import nn


class SemanticDecoupling(nn.Module):
    """Low-rank bilinear attention guided by the label embeddings.

        f~_{c,wh} = P^T tanh((U^T f_wh) * (V^T x_c)) + b       (Eq. 1)
        a~_{c,wh} = f_a(f~_{c,wh}),  a_c = softmax_wh(a~_c)      (Eqs. 2-3)
        f_c       = sum_wh a_{c,wh} f_wh                         (Eq. 4)

    P, b and f_a are kept as in the reference (for weight import), but since nothing
    non-linear separates them they are folded into one d1 -> 1 map before use: the
    (B, HW, C, d2) tensor is never formed, and memory peaks at B*HW*C*d1.
    """

    def __init__(self, feature_dim: int, embed_dim: int, d1: int = 1024, d2: int = 1024) -> None:
        super().__init__()
        self.U = nn.Linear(feature_dim, d1, bias=False)
        self.V = nn.Linear(embed_dim, d1, bias=False)
        self.P = nn.Linear(d1, d2)  # weight (d2, d1), bias b (d2,)
        self.f_a = nn.Linear(d2, 1)

    def forward(
        self, fmap: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap (B, N, h, w), embeddings (C, d_s) -> features (B, C, N), attention (B, C, h, w)."""
        b, _, h, w = fmap.shape
        f = fmap.flatten(2).transpose(1, 2)  # (B, HW, N)
        u = self.U(f)  # (B, HW, d1)
        v = self.V(embeddings)  # (C, d1)
        joint = torch.tanh(u.unsqueeze(2) * v)  # (B, HW, C, d1)
        w_eff = self.P.weight.t() @ self.f_a.weight.squeeze(0)  # (d1,) = P f_a
        b_eff = self.P.bias @ self.f_a.weight.squeeze(0) + self.f_a.bias  # (1,)
        scores = joint @ w_eff + b_eff  # (B, HW, C)
        attention = scores.softmax(dim=1)  # (B, HW, C): a distribution over positions
        features = attention.transpose(1, 2) @ f  # (B, C, N)
        return features, attention.transpose(1, 2).reshape(b, -1, h, w)
