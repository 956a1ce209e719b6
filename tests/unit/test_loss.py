"""The training loss skips ignored targets (-1) and is the plain BCE mean otherwise."""

from __future__ import annotations

import math

import pytest
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


# ---------------------------------------------------------------------------------------------
# focal and asymmetric losses (ssgrl.engine.losses), against the papers' formulas in float64

from ssgrl.engine.losses import (  # noqa: E402
    LossConfig,
    asl_entries,
    bce_entries,
    focal_entries,
    loss_entries,
    masked_loss,
)


def _reference(x: float, t: float, g_pos: float, g_neg: float, clip: float) -> float:
    """The ASL paper's Eqs. 1-4 written out in float64 (focal: g_pos = g_neg, clip 0)."""
    p = 1.0 / (1.0 + math.exp(-x))
    p_m = max(p - clip, 0.0)
    pos = -((1.0 - p) ** g_pos) * math.log(p)
    neg = -(p_m**g_neg) * math.log(1.0 - p_m)
    return t * pos + (1.0 - t) * neg


LOGITS = [-6.0, -3.0, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5, 6.0]


def test_hand_computed_values_at_zero_logit() -> None:
    zero = torch.zeros(1, 2)
    target = torch.tensor([[1.0, 0.0]])
    log2 = math.log(2.0)
    torch.testing.assert_close(bce_entries(zero, target), torch.tensor([[log2, log2]]))
    # focal, gamma 2: (1/2)^2 log 2 either way
    torch.testing.assert_close(focal_entries(zero, target, 2.0), torch.tensor([[log2, log2]]) / 4)
    # alpha 0.25 weights the positive by 0.25, the negative by 0.75
    torch.testing.assert_close(
        focal_entries(zero, target, 2.0, alpha=0.25),
        torch.tensor([[0.25 * log2 / 4, 0.75 * log2 / 4]]),
    )
    # asl: positive (1/2)^1 log 2; negative p_m = 0.45: 0.45^4 * -log(0.55)
    expected = torch.tensor([[0.5 * log2, 0.45**4 * -math.log(0.55)]])
    torch.testing.assert_close(asl_entries(zero, target, 4.0, 1.0, 0.05), expected)


@pytest.mark.parametrize(
    ("name", "g_pos", "g_neg", "clip"),
    [
        ("focal", 2.0, 2.0, 0.0),
        ("focal", 0.5, 0.5, 0.0),
        ("asl", 1.0, 4.0, 0.05),
        ("asl", 0.0, 2.0, 0.2),
    ],
)
def test_matches_the_paper_formula(name: str, g_pos: float, g_neg: float, clip: float) -> None:
    x = torch.tensor(LOGITS, dtype=torch.float64)
    for t in (0.0, 1.0):
        target = torch.full_like(x, t)
        if name == "focal":
            got = focal_entries(x[None], target[None], g_pos)[0]
        else:
            got = asl_entries(x[None], target[None], g_neg, g_pos, clip)[0]
        expected = torch.tensor(
            [_reference(float(v), t, g_pos, g_neg, clip) for v in x], dtype=torch.float64
        )
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_easy_negatives_below_the_margin_are_discarded() -> None:
    # p = sigmoid(-4) = 0.018 < clip 0.05: no loss and no gradient (the paper's hard threshold)
    x = torch.tensor([[-4.0, -10.0]], requires_grad=True)
    loss = asl_entries(x, torch.zeros(1, 2), 4.0, 1.0, 0.05)
    assert torch.equal(loss.detach(), torch.zeros(1, 2))
    loss.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros(1, 2))


def test_gamma_zero_is_bce() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 7, generator=gen) * 5
    t = (torch.rand(6, 7, generator=gen) > 0.5).float()
    bce = bce_entries(x, t)
    torch.testing.assert_close(focal_entries(x, t, 0.0), bce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(asl_entries(x, t, 0.0, 0.0, 0.0), bce, rtol=1e-6, atol=1e-6)
    zero_gammas = LossConfig(name="asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    torch.testing.assert_close(masked_loss(x, t, zero_gammas), masked_bce(x, t))
    torch.testing.assert_close(masked_loss(x, t, LossConfig("focal", gamma=0.0)), masked_bce(x, t))


def test_focusing_lowers_the_loss_of_easy_entries() -> None:
    # a confident correct positive (x = 4) loses nearly all its loss under focal gamma 2
    x, t = torch.tensor([[4.0]]), torch.ones(1, 1)
    p = torch.sigmoid(x)
    torch.testing.assert_close(focal_entries(x, t, 2.0), (1 - p) ** 2 * bce_entries(x, t))
    assert float(focal_entries(x, t, 2.0)) < 1e-3 * float(bce_entries(x, t))


@pytest.mark.parametrize("config", [LossConfig(), LossConfig("focal"), LossConfig("asl")])
def test_finite_values_and_gradients_at_extreme_logits(config: LossConfig) -> None:
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0, 0.0]], requires_grad=True)
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]])
    entries = loss_entries(x, t, config)
    assert torch.isfinite(entries).all(), entries
    entries.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), x.grad
    # wrong by 100 logits costs about 100 (times the focusing weight, 1 there); right costs ~0
    if config.name == "asl":  # a negative's probability is shifted by the margin: p_m = 0.95
        assert float(entries[0, 2]) == pytest.approx(0.95**4 * -math.log(0.05), rel=1e-5)
    else:
        assert float(entries[0, 2]) == pytest.approx(100.0, rel=1e-5)
    assert float(entries[0, 1]) == pytest.approx(100.0, rel=1e-5)
    assert float(entries[0, 0]) < 1e-6 and float(entries[0, 3]) < 1e-6


@pytest.mark.parametrize("config", [LossConfig("focal"), LossConfig("asl")])
def test_gradient_matches_finite_differences(config: LossConfig) -> None:
    x = torch.tensor([LOGITS, LOGITS[::-1]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[1.0] * 9, [0.0] * 9], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: loss_entries(v, t, config), (x,))


@pytest.mark.parametrize("config", [LossConfig("focal"), LossConfig("asl")])
def test_ignored_entries_do_not_count_for_any_loss(config: LossConfig) -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-2.0, 1.5, 9.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])
    kept = target >= 0
    expected = loss_entries(logits.detach()[kept], target[kept], config).mean()
    loss = masked_loss(logits, target, config)
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad[:, 2], torch.zeros(2))  # ignored: no gradient
    assert (logits.grad[kept] != 0).all()
    moved = logits.detach().clone()
    moved[:, 2] = torch.tensor([-50.0, 50.0])
    assert torch.equal(masked_loss(moved, target, config), loss.detach())
    all_ignored = masked_loss(logits, torch.full((2, 3), -1.0), config)
    assert float(all_ignored) == 0.0


def test_bad_settings_are_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match=r"model\.loss\.name"):
        LossConfig(name="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"model\.loss\.gamma_neg"):
        LossConfig(name="asl", gamma_neg=-1.0)
    with pytest.raises(ValueError, match=r"model\.loss\.clip"):
        LossConfig(name="asl", clip=1.0)
    with pytest.raises(ValueError, match=r"model\.loss\.alpha"):
        LossConfig(name="focal", alpha=1.5)
