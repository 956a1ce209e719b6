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
    (B, HW, C, d2) tensor is never formed, and the (B, HW, C, d1) one only a chunk of classes
    at a time (``CHUNK_BYTES``).
    ``folded()`` gives the inference form that stores that map instead of P, b and f_a.
    """

    def __init__(self, feature_dim: int, embed_dim: int, d1: int = 1024, d2: int = 1024) -> None:
        super().__init__()
        self.U = nn.Linear(feature_dim, d1, bias=False)
        self.V = nn.Linear(embed_dim, d1, bias=False)
        self.P = nn.Linear(d1, d2)  # weight (d2, d1), bias b (d2,)
        self.f_a = nn.Linear(d2, 1)

    def score_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, b, f_a) as one linear map d1 -> 1: weight (d1,) = P f_a, bias (1,) = b.f_a + b_a.
        Exact: a~ = f_a(P^T t + b) = (P f_a).t + (b.f_a + b_a) for any t."""
        w_a = self.f_a.weight.squeeze(0)  # (d2,)
        return self.P.weight.t() @ w_a, self.P.bias @ w_a + self.f_a.bias

    def forward(
        self, fmap: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap (B, N, h, w), embeddings (C, d_s) -> features (B, C, N), attention (B, C, h, w)."""
        w_eff, b_eff = self.score_map()
        return _attend(fmap, self.U, self.V(embeddings), w_eff, b_eff)

    def folded(self) -> FoldedDecoupling:
        """The same function for inference, with P, b and f_a replaced by their fold."""
        return FoldedDecoupling(self)


class FoldedDecoupling(nn.Module):
    """``SemanticDecoupling`` with (P, b, f_a) folded once into a d1-vector and a scalar
    (buffers ``w_eff``, ``b_eff``): what an exported graph holds. It shares U and V with the
    module it was made from and computes the same function (the fold is the one ``forward``
    computes on every call, so in PyTorch the results are bit-identical)."""

    def __init__(self, source: SemanticDecoupling) -> None:
        super().__init__()
        self.U = source.U
        self.V = source.V
        with torch.no_grad():
            w_eff, b_eff = source.score_map()
        self.w_eff: torch.Tensor
        self.b_eff: torch.Tensor
        self.register_buffer("w_eff", w_eff.detach().clone())  # (d1,)
        self.register_buffer("b_eff", b_eff.detach().clone())  # (1,)

    def forward(
        self, fmap: torch.Tensor, embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap (B, N, h, w), embeddings (C, d_s) -> features (B, C, N), attention (B, C, h, w)."""
        return _attend(fmap, self.U, self.V(embeddings), self.w_eff, self.b_eff)


# The largest (B, HW, C', d1) tanh tensor _attend forms at once: classes go in chunks of C' so
# that it stays under this many bytes (64 MiB; one chunk holds all 80 COCO classes at 448 px,
# batch 2). In training, autograd keeps each chunk's tanh for the backward anyway.
CHUNK_BYTES = 64 * 2**20


def class_chunk(batch: int, positions: int, d1: int, itemsize: int = 4) -> int:
    """Classes per chunk: the most whose (batch, positions, chunk, d1) tensor fits CHUNK_BYTES
    (at least 1)."""
    return max(1, CHUNK_BYTES // max(1, batch * positions * d1 * itemsize))


def _attend(
    fmap: torch.Tensor,
    U: nn.Module,
    v: torch.Tensor,
    w_eff: torch.Tensor,
    b_eff: torch.Tensor,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 1-4 with the folded score map; v = V^T x_c for every class (C, d1).

    The scores are computed for ``chunk`` classes at a time (default: ``class_chunk``), each
    chunk exactly as all classes at once. Under ``torch.export`` / ``torch.compile`` (the ONNX
    export has a dynamic batch size) all classes form one chunk."""
    b, _, h, w = fmap.shape
    c, d1 = v.shape
    f = fmap.flatten(2).transpose(1, 2)  # (B, HW, N)
    u = U(f).unsqueeze(2)  # (B, HW, 1, d1)
    if chunk is None:
        chunk = c if torch.compiler.is_compiling() else class_chunk(b, h * w, d1, u.element_size())
    parts = []
    for start in range(0, c, chunk):
        joint = (u * v[start : start + chunk]).tanh_()  # (B, HW, C', d1), one buffer
        parts.append(joint @ w_eff)  # (B, HW, C')
    scores = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)) + b_eff  # (B, HW, C)
    attention = scores.softmax(dim=1)  # (B, HW, C): a distribution over positions
    features = attention.transpose(1, 2) @ f  # (B, C, N)
    return features, attention.transpose(1, 2).reshape(b, -1, h, w)
