"""The SSGRL head computed as the authors' code computes it: an oracle for tests, a baseline for
benchmarks. Never used for training or prediction.

A port of their ``semantic.py``, ``ggnn.py``, ``models.py`` and ``element_wise_layer.py`` to
Python 3 that keeps how they compute, generalised from their fixed sizes (N = 2048, d1 = d2 =
1024, square maps) to any: the decoupling materialises the (B*HW*C, d2) tensor through ``fc_3``
and the (B, h, w, C, N) one by ``.repeat()``; the GGNN has six separate gate Linears and batches
the adjacency by ``.repeat()``; then the shared output FC and the element-wise classifier.
``reference_head_from`` copies an ``SSGRL`` head's weights into one, so both compute the same
function by different computations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ssgrl.models.decoupling import SemanticDecoupling
from ssgrl.models.ggnn import unfused_state_dict
from ssgrl.models.ssgrl import SSGRL


class ReferenceSemantic(nn.Module):
    """Their ``semantic``: fc_1 = U, fc_2 = V, fc_3 = (P, b), fc_a = f_a."""

    def __init__(self, num_classes: int, feature_dim: int, embed_dim: int, d1: int, d2: int):
        super().__init__()
        self.num_classes = num_classes
        self.feature_dim = feature_dim
        self.d1 = d1
        self.fc_1 = nn.Linear(feature_dim, d1, bias=False)
        self.fc_2 = nn.Linear(embed_dim, d1, bias=False)
        self.fc_3 = nn.Linear(d1, d2)
        self.fc_a = nn.Linear(d2, 1)

    def forward(
        self, fmap: torch.Tensor, word_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap (B, N, h, w), words (C, d_s) -> features (B, C, N), attention (B, C, h, w)."""
        b, n, h, w = fmap.shape
        c, hw = self.num_classes, h * w
        fm = torch.transpose(torch.transpose(fmap, 1, 2), 2, 3)  # (B, h, w, N)
        f_wh = fm.contiguous().view(b * hw, -1)
        f_wh = self.fc_1(f_wh).view(b * hw, 1, -1).repeat(1, c, 1)  # (B*HW, C, d1)
        f_wd = self.fc_2(word_features).view(1, c, self.d1).repeat(b * hw, 1, 1)  # (B*HW, C, d1)
        lb_feature = self.fc_3(torch.tanh(f_wh * f_wd).view(-1, self.d1))  # (B*HW*C, d2)
        coefficient = self.fc_a(lb_feature)  # (B*HW*C, 1)
        coefficient = torch.transpose(
            torch.transpose(coefficient.view(b, h, w, c), 2, 3), 1, 2
        ).reshape(b, c, -1)  # (B, C, HW)
        coefficient = F.softmax(coefficient, dim=2)
        attention = coefficient.view(b, c, h, w)
        coefficient = torch.transpose(torch.transpose(attention, 1, 2), 2, 3)  # (B, h, w, C)
        coefficient = coefficient.reshape(b, h, w, c, 1).repeat(1, 1, 1, 1, n)  # (B, h, w, C, N)
        weighted = fm.reshape(b, h, w, 1, n).repeat(1, 1, 1, c, 1) * coefficient
        return torch.sum(torch.sum(weighted, 1), 1), attention  # (B, C, N), (B, C, h, w)


class ReferenceGGNN(nn.Module):
    """Their ``GGNN`` with in_matrix = M, out_matrix = M^T; ``reset_u`` picks the reset gate's
    U: ``fc_eq3_u`` (U_z, their released code) or ``fc_eq4_u`` (U_r, the paper)."""

    in_matrix: torch.Tensor
    out_matrix: torch.Tensor

    def __init__(self, dim: int, steps: int, matrix: torch.Tensor, reset_u: str = "fc_eq4_u"):
        super().__init__()
        self.dim = dim
        self.steps = steps
        self.reset_u = reset_u
        self.register_buffer("in_matrix", matrix.detach().clone())
        self.register_buffer("out_matrix", matrix.detach().t().contiguous())
        self.fc_eq3_w = nn.Linear(2 * dim, dim)
        self.fc_eq3_u = nn.Linear(dim, dim)
        self.fc_eq4_w = nn.Linear(2 * dim, dim)
        self.fc_eq4_u = nn.Linear(dim, dim)
        self.fc_eq5_w = nn.Linear(2 * dim, dim)
        self.fc_eq5_u = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], self.in_matrix.shape[0]
        nodes = x.reshape(b, c, self.dim)
        batch_in = self.in_matrix.repeat(b, 1).view(b, c, -1)
        batch_out = self.out_matrix.repeat(b, 1).view(b, c, -1)
        reset_u = self.get_submodule(self.reset_u)
        for _ in range(self.steps):
            av = torch.cat((torch.bmm(batch_in, nodes), torch.bmm(batch_out, nodes)), 2)
            av = av.view(b * c, -1)
            flat = nodes.reshape(b * c, -1)
            zv = torch.sigmoid(self.fc_eq3_w(av) + self.fc_eq3_u(flat))
            rv = torch.sigmoid(self.fc_eq4_w(av) + reset_u(flat))
            hv = torch.tanh(self.fc_eq5_w(av) + self.fc_eq5_u(rv * flat))
            flat = (1 - zv) * flat + zv * hv
            nodes = flat.view(b, c, -1)
        return nodes


class ReferenceHead(nn.Module):
    """Feature map (B, N, h, w) -> logits (B, C), attention (B, C, h, w), as their
    ``SSGRL.forward`` computes it after the trunk."""

    word_features: torch.Tensor

    def __init__(
        self,
        adjacency: torch.Tensor,
        word_features: torch.Tensor,
        feature_dim: int,
        d1: int = 1024,
        d2: int = 1024,
        steps: int = 3,
        reset_u: str = "fc_eq4_u",
    ):
        super().__init__()
        c = adjacency.shape[0]
        self.num_classes = c
        self.feature_dim = feature_dim
        self.register_buffer("word_features", word_features.detach().clone())
        self.word_semantic = ReferenceSemantic(c, feature_dim, word_features.shape[1], d1, d2)
        self.graph_net = ReferenceGGNN(feature_dim, steps, adjacency, reset_u)
        self.fc_output = nn.Linear(2 * feature_dim, feature_dim)
        self.classifiers = ElementWiseLayer(c, feature_dim)

    def forward_with_attention(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, n = fmap.shape[0], self.num_classes, self.feature_dim
        graph_net_input, attention = self.word_semantic(fmap, self.word_features)
        graph_net_feature = self.graph_net(graph_net_input)
        output = torch.cat(
            (graph_net_feature.reshape(b * c, -1), graph_net_input.reshape(-1, n)), 1
        )
        output = torch.tanh(self.fc_output(output))
        output = output.contiguous().view(b, c, n)
        return self.classifiers(output), attention

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(fmap)[0]


class ElementWiseLayer(nn.Module):
    """Their ``Element_Wise_Layer``: s_c = w_c . o_c + b_c."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.uniform_(self.weight, -(dim**-0.5), dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x * self.weight, 2) + self.bias  # (B, C, N) -> (B, C)


# our name -> theirs, for reference_head_from
_GRAPH_NAMES = {
    "W_z": "fc_eq3_w",
    "U_z": "fc_eq3_u",
    "W_r": "fc_eq4_w",
    "U_r": "fc_eq4_u",
    "W": "fc_eq5_w",
    "U": "fc_eq5_u",
}


def reference_head_from(net: SSGRL) -> ReferenceHead:
    """A ``ReferenceHead`` holding exactly ``net``'s head weights (and its reset-gate choice),
    in ``net``'s dtype and mode."""
    d = net.decoupling
    if not isinstance(d, SemanticDecoupling):
        raise TypeError(
            f"the reference head has semantic decoupling; this SSGRL uses {type(d).__name__}"
        )
    g = net.graph
    ref = ReferenceHead(
        g.adjacency,
        net.label_embeddings,
        net.backbone.num_features,
        d.U.out_features,
        d.P.out_features,
        g.steps,
        "fc_eq3_u" if g.reset_gate_uses_update_weights else "fc_eq4_u",
    ).to(net.classifier_weight.dtype)
    graph = unfused_state_dict(g.state_dict())
    with torch.no_grad():
        for ours, theirs in (("U", "fc_1"), ("V", "fc_2"), ("P", "fc_3"), ("f_a", "fc_a")):
            ref.word_semantic.get_submodule(theirs).load_state_dict(
                d.get_submodule(ours).state_dict()
            )
        for ours, theirs in _GRAPH_NAMES.items():
            for kind in ("weight", "bias"):
                ref.graph_net.get_parameter(f"{theirs}.{kind}").copy_(graph[f"{ours}.{kind}"])
        ref.fc_output.load_state_dict(net.fc_out.state_dict())
        ref.classifiers.weight.copy_(net.classifier_weight)
        ref.classifiers.bias.copy_(net.classifier_bias)
    return ref.train(net.training)
