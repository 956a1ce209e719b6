"""Gated graph neural network over the class nodes (paper Sec. 3.2, Eqs. 5-6)."""

from __future__ import annotations

import torch
from torch import nn


class GGNN(nn.Module):
    """T steps of gated message passing with weights shared across steps.

        a_c^t  = [sum_c' A_in[c,c'] h_c'^{t-1}, sum_c' A_out[c,c'] h_c'^{t-1}]
        z_c^t  = sigmoid(W_z a_c^t + U_z h_c^{t-1})
        r_c^t  = sigmoid(W_r a_c^t + U_r h_c^{t-1})
        h~_c^t = tanh(W a_c^t + U (r_c^t * h_c^{t-1}))
        h_c^t  = (1 - z_c^t) * h_c^{t-1} + z_c^t * h~_c^t

    ``reset_gate_uses_update_weights`` reproduces the authors' code, whose reset gate uses U_z
    (their ``fc_eq4_u`` = U_r is never used). Only for weights trained that way; U_r is then
    frozen because nothing reads it.
    """

    def __init__(
        self,
        hidden_dim: int,
        adjacency: torch.Tensor,
        steps: int = 3,
        reset_gate_uses_update_weights: bool = False,
    ) -> None:
        super().__init__()
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be square (C, C), got {tuple(adjacency.shape)}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.steps = steps
        self.reset_gate_uses_update_weights = reset_gate_uses_update_weights
        self.adjacency: torch.Tensor
        self.register_buffer("adjacency", adjacency.detach().clone().float())  # A_in = M, (C, C)
        self.W_z = nn.Linear(2 * hidden_dim, hidden_dim)
        self.U_z = nn.Linear(hidden_dim, hidden_dim)
        self.W_r = nn.Linear(2 * hidden_dim, hidden_dim)
        self.U_r = nn.Linear(hidden_dim, hidden_dim)
        self.W = nn.Linear(2 * hidden_dim, hidden_dim)
        self.U = nn.Linear(hidden_dim, hidden_dim)
        if reset_gate_uses_update_weights:
            self.U_r.requires_grad_(False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C, D) initial node states -> (B, C, D) after T steps."""
        a_in = self.adjacency  # (C, C)
        u_reset = self.U_z if self.reset_gate_uses_update_weights else self.U_r
        for _ in range(self.steps):
            a = torch.cat([a_in @ h, a_in.t() @ h], dim=-1)  # (B, C, 2D)
            z = torch.sigmoid(self.W_z(a) + self.U_z(h))
            r = torch.sigmoid(self.W_r(a) + u_reset(h))
            h_tilde = torch.tanh(self.W(a) + self.U(r * h))
            h = (1 - z) * h + z * h_tilde
        return h
