"""The training loss skips ignored targets (-1) and is the plain BCE mean otherwise."""

from __future__ import annotations

import math

import torch
from sklearn.metrics import log_loss

from ssgrl.engine.module import masked_bce


def test_ignored_entries_do_not_count() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.5, 9.0]])
    target = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])  # the last class is ignored
    kept = target >= 0
    probs = torch.sigmoid(logits[kept]).double().numpy()
    expected = log_loss(target[kept].numpy(), probs, labels=[0, 1])
    assert math.isclose(float(masked_bce(logits, target)), expected, rel_tol=1e-6)
    # an ignored entry's logit can be anything: the loss does not move
    moved = logits.clone()
    moved[:, 2] = torch.tensor([-50.0, 50.0])
    assert torch.equal(masked_bce(moved, target), masked_bce(logits, target))


def test_no_ignore_is_the_mean_over_batch_and_classes() -> None:
    logits = torch.randn(4, 5)
    target = (torch.rand(4, 5) > 0.5).float()
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(masked_bce(logits, target), reference)


def test_all_ignored_gives_zero_not_nan() -> None:
    loss = masked_bce(torch.randn(2, 3, requires_grad=True), torch.full((2, 3), -1.0))
    assert float(loss) == 0.0
    loss.backward()
