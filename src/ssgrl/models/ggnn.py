"""Gated graph neural network over the class nodes (paper Sec. 3.2, Eqs. 5-6)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# The gate projections as the paper (and checkpoints written before the fusion) name them, each
# (name of the fused Linear, first row, rows) in units of the hidden size D:
# W_a = [W_z; W_r; W] (3D, 2D) on the messages a, U_zr = [U_z; U_r] (2D, D) on h.
UNFUSED: dict[str, tuple[str, int]] = {
    "W_z": ("W_a", 0),
    "W_r": ("W_a", 1),
    "W": ("W_a", 2),
    "U_z": ("U_zr", 0),
    "U_r": ("U_zr", 1),
}


class GGNN(nn.Module):
    """T steps of gated message passing with weights shared across steps.

        a_c^t  = [sum_c' A_in[c,c'] h_c'^{t-1}, sum_c' A_out[c,c'] h_c'^{t-1}]
        z_c^t  = sigmoid(W_z a_c^t + U_z h_c^{t-1})
        r_c^t  = sigmoid(W_r a_c^t + U_r h_c^{t-1})
        h~_c^t = tanh(W a_c^t + U (r_c^t * h_c^{t-1}))
        h_c^t  = (1 - z_c^t) * h_c^{t-1} + z_c^t * h~_c^t

    The projections that read the same input are fused into one GEMM each: ``W_a`` =
    [W_z; W_r; W] on a, ``U_zr`` = [U_z; U_r] on h; ``U`` reads r * h and stays apart. State
    dicts with the separate ``W_z, W_r, W, U_z, U_r`` keys (written before the fusion) load
    as they are; ``unfused_state_dict`` gives that layout back.

    ``reset_gate_uses_update_weights`` reproduces the authors' code, whose reset gate uses U_z
    (their ``fc_eq4_u`` = U_r is never used). Only for weights trained that way: the U_r rows
    of ``U_zr`` are then never read, so their gradient is zero and Adam without weight decay
    (the authors' recipe) leaves them unchanged.

    ``learn_adjacency`` makes the adjacency a parameter, initialised from the given matrix
    (same state-dict key ``adjacency``); otherwise it is a buffer.
    """

    def __init__(
        self,
        hidden_dim: int,
        adjacency: torch.Tensor,
        steps: int = 3,
        reset_gate_uses_update_weights: bool = False,
        learn_adjacency: bool = False,
    ) -> None:
        super().__init__()
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be square (C, C), got {tuple(adjacency.shape)}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.hidden_dim = hidden_dim
        self.steps = steps
        self.reset_gate_uses_update_weights = reset_gate_uses_update_weights
        matrix = adjacency.detach().clone().float()  # A_in = M, (C, C)
        self.adjacency: torch.Tensor
        if learn_adjacency:
            self.adjacency = nn.Parameter(matrix)
        else:
            self.register_buffer("adjacency", matrix)
        # nn.Linear initialises from fan_in, which the fusion keeps: same init as unfused
        self.W_a = nn.Linear(2 * hidden_dim, 3 * hidden_dim)  # [W_z; W_r; W]
        self.U_zr = nn.Linear(hidden_dim, 2 * hidden_dim)  # [U_z; U_r]
        self.U = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C, D) initial node states -> (B, C, D) after T steps."""
        c, d = self.adjacency.shape[0], self.hidden_dim
        both = torch.cat([self.adjacency, self.adjacency.t()])  # [A_in; A_out], (2C, C)
        if self.reset_gate_uses_update_weights:  # U_z alone, read by both gates (broadcast)
            u_weight, u_bias = self.U_zr.weight[:d], self.U_zr.bias[:d]  # views, (D, D), (D,)
        else:
            u_weight, u_bias = self.U_zr.weight, self.U_zr.bias  # (2D, D), (2D,)
        for _ in range(self.steps):
            m = both @ h  # (B, 2C, D): the A_in and A_out messages in one product
            a = torch.cat([m[:, :c], m[:, c:]], dim=-1)  # (B, C, 2D)
            wa = self.W_a(a)  # (B, C, 3D): [W_z a, W_r a, W a]
            uh = F.linear(h, u_weight, u_bias).unflatten(-1, (-1, d))  # (B, C, 2 or 1, D)
            zr = torch.sigmoid(wa[..., : 2 * d].unflatten(-1, (2, d)) + uh)  # (B, C, 2, D)
            z, r = zr[..., 0, :], zr[..., 1, :]  # (B, C, D) each
            h_tilde = torch.tanh(wa[..., 2 * d :] + self.U(r * h))
            h = torch.lerp(h, h_tilde, z)  # (1 - z) * h + z * h~
        return h

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        fuse_state_dict(state_dict, prefix)  # unfused checkpoints: W_z ... U_r -> W_a, U_zr
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def fuse_state_dict(state: dict[str, Any], prefix: str = "") -> None:
    """In place: the unfused ``{prefix}W_z.weight`` ... ``{prefix}U_r.bias`` -> ``W_a`` and
    ``U_zr`` (rows stacked in the order of ``UNFUSED``). A fused layout is left as it is; a
    partial unfused one (some of the five missing) too, so that loading names what is missing."""
    for fused in ("W_a", "U_zr"):
        parts = [name for name, (target, _) in UNFUSED.items() if target == fused]
        for kind in ("weight", "bias"):
            keys = [f"{prefix}{name}.{kind}" for name in parts]
            if f"{prefix}{fused}.{kind}" in state or not all(k in state for k in keys):
                continue
            state[f"{prefix}{fused}.{kind}"] = torch.cat([state.pop(k) for k in keys])


def unfused_state_dict(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A copy of ``state`` with ``{prefix}W_a`` and ``{prefix}U_zr`` split into the paper's
    ``W_z, W_r, W, U_z, U_r`` (views of the fused tensors), the layout before the fusion."""
    out = dict(state)
    for name, (fused, index) in UNFUSED.items():
        for kind in ("weight", "bias"):
            key = f"{prefix}{fused}.{kind}"
            if key in state:
                rows = state[key].shape[0] // (3 if fused == "W_a" else 2)
                out[f"{prefix}{name}.{kind}"] = state[key][index * rows : (index + 1) * rows]
    for fused in ("W_a", "U_zr"):
        for kind in ("weight", "bias"):
            out.pop(f"{prefix}{fused}.{kind}", None)
    return out
