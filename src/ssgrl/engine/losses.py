"""Multi-label training losses, per entry: logits (B, C) and targets (B, C) in [0, 1] ->
losses (B, C). The caller masks the ignored entries (target -1) and takes the mean over the
rest (``masked_loss``; the LightningModule does the same over a distributed batch).

With p = sigmoid(x), every loss here is ``t * L+ + (1 - t) * L-``:

    bce    L+ = -log p                     L- = -log(1 - p)
    focal  L+ = -a (1 - p)^g log p         L- = -(1 - a) p^g log(1 - p)
           (Lin et al. 2017; a = alpha; no weighting at all when alpha is None)
    asl    L+ = -(1 - p)^g+ log p          L- = -p_m^g- log(1 - p_m),  p_m = max(p - m, 0)
           (Ridnik et al. 2021, Eqs. 1-4: g- = 4, g+ = 1, margin m = clip = 0.05)

Numerically safe: log p = logsigmoid(x), log(1 - p) = logsigmoid(-x), the focusing weights
as exp(g * logsigmoid(.)); ``1 - p_m = min(1 - p + m, 1)`` is at least m, so its log is finite.
Losses and gradients stay finite at logits of +-100 (float32). With every gamma 0 and clip 0,
focal (alpha None) and asl are BCE exactly (up to rounding). The focusing weights are
differentiated like the rest, as in the papers (ASL's code can detach them; it is not done).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["bce", "focal", "asl"]


@dataclass(frozen=True)
class LossConfig:
    """The training loss: the config's ``model.loss`` section (``--model.loss.name focal``)."""

    name: LossName = "bce"
    gamma: float = 2.0  # focal: focusing exponent
    alpha: float | None = None  # focal: weight of the positives (RetinaNet: 0.25); None: none
    gamma_neg: float = 4.0  # asl: focusing exponent of the negatives
    gamma_pos: float = 1.0  # asl: focusing exponent of the positives
    clip: float = 0.05  # asl: probability margin m shifted off the negatives

    def __post_init__(self) -> None:
        if self.name not in ("bce", "focal", "asl"):
            raise ValueError(f"model.loss.name must be bce, focal or asl, got {self.name!r}")
        for key in ("gamma", "gamma_neg", "gamma_pos"):
            if getattr(self, key) < 0:
                raise ValueError(f"model.loss.{key} must be >= 0, got {getattr(self, key)}")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"model.loss.alpha must lie in [0, 1] or be null, got {self.alpha}")
        if not 0.0 <= self.clip < 1.0:
            raise ValueError(f"model.loss.clip must lie in [0, 1), got {self.clip}")

    def describe(self) -> str:
        if self.name == "focal":
            return f"focal (gamma {self.gamma}, alpha {self.alpha})"
        if self.name == "asl":
            return f"asl (gamma- {self.gamma_neg}, gamma+ {self.gamma_pos}, clip {self.clip})"
        return "bce"


def bce_entries(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C) binary cross-entropy of each entry."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def focal_entries(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None
) -> torch.Tensor:
    """(B, C) focal loss of each entry (see the module doc)."""
    log_p = F.logsigmoid(logits)  # log p
    log_q = F.logsigmoid(-logits)  # log (1 - p)
    pos = -log_p * _power(log_q, gamma)  # (1 - p)^g * -log p
    neg = -log_q * _power(log_p, gamma)  # p^g * -log (1 - p)
    if alpha is not None:
        pos, neg = alpha * pos, (1.0 - alpha) * neg
    return target * pos + (1.0 - target) * neg


def asl_entries(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
) -> torch.Tensor:
    """(B, C) asymmetric loss of each entry (see the module doc)."""
    log_p = F.logsigmoid(logits)
    log_q = F.logsigmoid(-logits)
    pos = -log_p * _power(log_q, gamma_pos)
    if clip > 0:
        q_m = (torch.exp(log_q) + clip).clamp(max=1.0)  # 1 - p_m, in [clip, 1]
        p_m = 1.0 - q_m  # max(p - m, 0)
        weight = p_m**gamma_neg if gamma_neg > 0 else torch.ones_like(p_m)
        neg = -torch.log(q_m) * weight
    else:
        neg = -log_q * _power(log_p, gamma_neg)
    return target * pos + (1.0 - target) * neg


def loss_entries(logits: torch.Tensor, target: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """(B, C) per-entry loss of ``config``; ``target`` in [0, 1] (ignored entries clamped to 0
    by the caller and masked out afterwards)."""
    if config.name == "focal":
        return focal_entries(logits, target, config.gamma, config.alpha)
    if config.name == "asl":
        return asl_entries(logits, target, config.gamma_neg, config.gamma_pos, config.clip)
    return bce_entries(logits, target)


def masked_loss(
    logits: torch.Tensor, target: torch.Tensor, config: LossConfig | None = None
) -> torch.Tensor:
    """The mean loss over the entries that are not ignored (target -1); 0 when all are."""
    mask = target >= 0
    entries = loss_entries(logits, target.clamp(min=0), config or LossConfig())
    entries = torch.where(mask, entries, torch.zeros_like(entries))
    return entries.sum() / mask.sum().clamp(min=1)


def _power(log_base: torch.Tensor, gamma: float) -> torch.Tensor:
    """base^gamma from log(base), exactly 1 for gamma 0 (no 0 * inf, no NaN gradient)."""
    if gamma == 0:
        return torch.ones_like(log_base)
    return torch.exp(gamma * log_base)


__all__ = [
    "LossConfig",
    "LossName",
    "asl_entries",
    "bce_entries",
    "focal_entries",
    "loss_entries",
    "masked_loss",
]
