"""The pure model code: every registered configuration end to end (shapes, gradients, attention,
batch independence, reload from the checkpoint alone in a fresh process), the math against
straightforward loop references, the decoupling's memory bound, and the freezing policy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from helpers import LargestAllocation
from torch import nn
from torch.nn import functional as F

from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, write_checkpoint
from ssgrl.data.transforms import Preprocessing
from ssgrl.models import (
    GGNN,
    MODEL_CONFIGS,
    SSGRL,
    Backbone,
    Baseline,
    ModelConfig,
    SemanticDecoupling,
    build_model,
    default_preprocessing,
    model_config,
)
from ssgrl.models.ggnn import unfused_state_dict

NUM_CLASSES = 5
EMBED_DIM = 12
BATCH = 2
# ResNet-101 + 2x2 pooling -> a 1x2 map, Lite0 -> 2x4: attention is not trivial, and h != w
# catches a transposed reshape
IMAGE_HW = (64, 128)
CONFIG_NAMES = sorted(MODEL_CONFIGS)
SSGRL_NAMES = [n for n in CONFIG_NAMES if MODEL_CONFIGS[n].arch == "ssgrl"]
# Softmax over positions is invariant to a constant added to every score, so the attention
# bias terms (P's bias b folded through f_a, and f_a's own bias) cannot change any output:
# their gradient is zero up to rounding. They exist only to match the reference weights.
SHIFT_INVARIANT = {"decoupling.P.bias", "decoupling.f_a.bias"}
CLASS_NAMES = [f"name{i}" for i in range(NUM_CLASSES)]


def _preprocessing(backbone: str) -> Preprocessing:
    """The backbone's pretraining normalisation, with a resize larger than the crop (so a
    checkpoint that dropped either size would show)."""
    base = default_preprocessing(backbone)
    return Preprocessing(
        image_size=IMAGE_HW[0],
        resize=IMAGE_HW[0] + 16,
        mean=tuple(base["mean"]),  # type: ignore[arg-type]
        std=tuple(base["std"]),  # type: ignore[arg-type]
        interpolation=str(base["interpolation"]),
    )


# ---------------------------------------------------------------------------------------------
# every registered configuration


def _batchnorms(module: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {
        n: m for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    }


@dataclass
class Built:
    name: str
    config: ModelConfig
    net: SSGRL | Baseline
    images: torch.Tensor  # (B, 3, S, S)
    eval_logits: torch.Tensor  # (B, C), model in eval mode, no grad
    attention: torch.Tensor | None  # (B, C, h, w) from forward_with_attention (SSGRL)


def _pretend_pretrained(net: SSGRL | Baseline, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial affine weights and the running statistics of the actual
    activations, as pretrained ones roughly have.

    timm zero-initialises the last BatchNorm of each residual block (which silences the residual
    branch and its gradient), and unit statistics on random convolutions make a 101-layer
    network's activations explode in eval mode (saturating every tanh of the head).
    """
    bns = list(_batchnorms(net).values())
    for m in bns:
        c = m.num_features
        with torch.no_grad():
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_((torch.rand(c, generator=gen) - 0.5) * 0.2)
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batch
        m.train()
    with torch.no_grad():
        net.backbone(torch.randn(BATCH, 3, *IMAGE_HW, generator=gen))
    for m in bns:
        m.momentum = 0.1
    net.eval()


def _build(name: str) -> Built:
    config = model_config(name, d1=32, d2=32)
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    torch.manual_seed(sum(map(ord, name)))
    adjacency = torch.rand(NUM_CLASSES, NUM_CLASSES, generator=gen)
    embeddings = torch.randn(NUM_CLASSES, EMBED_DIM, generator=gen)
    net = build_model(config, NUM_CLASSES, adjacency=adjacency, label_embeddings=embeddings)
    _pretend_pretrained(net, gen)
    if isinstance(net, SSGRL):
        with torch.no_grad():  # non-zero attention biases, so the reload test covers them too
            net.decoupling.P.bias.normal_(generator=gen)
            net.decoupling.f_a.bias.normal_(generator=gen)
            net.classifier_bias.normal_(generator=gen)
    images = torch.randn(BATCH, 3, *IMAGE_HW, generator=gen)
    attention = None
    with torch.no_grad():
        if isinstance(net, SSGRL):
            logits, attention = net.forward_with_attention(images)
        else:
            logits = net(images)
    return Built(name, config, net, images, logits, attention)


@pytest.fixture(scope="module")
def built() -> Iterator[Callable[[str], Built]]:
    """Each configuration is built once per module (ResNet-101 takes a second or two)."""
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            cache[name] = _build(name)
        return cache[name]

    yield get
    cache.clear()


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_logits_shape_and_finite(built: Callable[[str], Built], name: str) -> None:
    b = built(name)
    assert b.eval_logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(b.eval_logits).all()
    assert b.net.num_classes == NUM_CLASSES
    # different images give different scores (the backbone's output reaches the logits)
    assert not torch.allclose(b.eval_logits[0], b.eval_logits[1])
    expected = SSGRL if b.config.arch == "ssgrl" else Baseline
    assert isinstance(b.net, expected)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_trainable_parameter_gets_a_gradient(
    built: Callable[[str], Built], name: str
) -> None:
    # eval mode: BatchNorm uses its running statistics, so no parameter's effect on the output is
    # cancelled by batch normalisation (train-mode BN hides constant shifts)
    b = built(name)
    net = b.net.eval()
    net.zero_grad(set_to_none=True)
    net(b.images).sum().backward()
    trainable = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert trainable
    largest = max(p.grad.abs().max().item() for p in trainable.values() if p.grad is not None)
    dead, bad = [], []
    for n, p in trainable.items():
        if p.grad is None:
            dead.append(n)
        elif not torch.isfinite(p.grad).all():
            bad.append(n)
        elif n in SHIFT_INVARIANT:
            assert p.grad.abs().max().item() <= 1e-6 * largest, n
        elif not (p.grad != 0).any():
            dead.append(n)
    assert not dead, f"parameters without gradient: {dead}"
    assert not bad, f"parameters with non-finite gradient: {bad}"
    # the backbone trains exactly the configured stages
    backbone_trainable = [n for n in trainable if n.startswith("backbone.")]
    if b.config.train_stages == -1:
        assert len(backbone_trainable) == len(list(net.backbone.parameters()))
    else:
        assert 0 < len(backbone_trainable) < len(list(net.backbone.parameters()))
    if isinstance(net, SSGRL):
        quirk = b.config.reset_gate_uses_update_weights
        grad = net.graph.U_zr.weight.grad  # [U_z; U_r]: the quirk never reads U_r
        assert grad is not None
        d = net.graph.hidden_dim
        assert bool(grad[d:].any()) is not quirk
        assert bool(grad[:d].any())
        assert ("label_embeddings" in trainable) is b.config.learn_embeddings
    net.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", SSGRL_NAMES)
def test_attention_maps_are_distributions(built: Callable[[str], Built], name: str) -> None:
    b = built(name)
    attention = b.attention
    assert isinstance(b.net, SSGRL) and attention is not None
    h, w = (s // b.net.backbone.reduction for s in IMAGE_HW)
    assert h * w >= 2  # a 1x1 map would make every check below trivial
    assert attention.shape == (BATCH, NUM_CLASSES, h, w)
    assert (attention >= 0).all()
    torch.testing.assert_close(
        attention.sum(dim=(2, 3)), torch.ones(BATCH, NUM_CLASSES), atol=1e-5, rtol=0
    )
    # (the reload test checks that plain forward() gives exactly these logits)
    # the classes look at different places (the embeddings steer the attention)
    assert not torch.allclose(attention[:, 0], attention[:, 1])


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_batch_independence_in_eval(built: Callable[[str], Built], name: str) -> None:
    b = built(name)
    changed = b.images.clone()
    changed[1] = torch.randn(changed[1].shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = b.net.eval()(changed)
    torch.testing.assert_close(logits[0], b.eval_logits[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits[1], b.eval_logits[1])


_RELOAD_SCRIPT = """
import sys
import torch
import ssgrl

torch.set_num_threads(int(sys.argv[1]))
out = {}
for name in sys.argv[3:]:
    model = ssgrl.load_model(f"{sys.argv[2]}/{name}.ckpt")
    images = torch.load(f"{sys.argv[2]}/{name}.input.pt", weights_only=True)
    with torch.no_grad():
        logits = model(images)
    out[name] = {
        "logits": logits,
        "class_names": model.class_names,
        "preprocessing": model.preprocessing.to_dict(),
        "preprocessing_type": type(model.preprocessing).__name__,
        "training": model.training,
        "net_training": model.net.training,
        "type": type(model).__name__,
        "net_type": type(model.net).__name__,
    }
torch.save(out, f"{sys.argv[2]}/reloaded.pt")
"""


@pytest.fixture(scope="module")
def reloaded(
    built: Callable[[str], Built], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Write one checkpoint per configuration, then load them all in ONE fresh interpreter that
    sees nothing but the files."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for name in CONFIG_NAMES:
        b = built(name)
        embeddings = None
        if b.config.arch == "ssgrl":
            embeddings = EmbeddingInfo(
                source="random", dim=EMBED_DIM, words=[[c] for c in CLASS_NAMES]
            )
        meta = CheckpointMeta(
            class_names=list(CLASS_NAMES),
            model=b.config,
            preprocessing=_preprocessing(b.config.backbone),
            embeddings=embeddings,
        )
        write_checkpoint(b.net, meta, folder / f"{name}.ckpt")
        torch.save(b.images, folder / f"{name}.input.pt")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _RELOAD_SCRIPT,
            str(torch.get_num_threads()),
            str(folder),
            *CONFIG_NAMES,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
    )
    for path in folder.glob("*.ckpt"):  # ~1 GB of ResNet-101 weights: do not leave them behind
        path.unlink()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, dict[str, Any]] = torch.load(folder / "reloaded.pt", weights_only=True)
    return result


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_reload_from_checkpoint_alone_in_fresh_process(
    built: Callable[[str], Built], reloaded: dict[str, dict[str, Any]], name: str
) -> None:
    b = built(name)
    got = reloaded[name]
    assert torch.equal(got["logits"], b.eval_logits)
    assert got["class_names"] == CLASS_NAMES
    assert got["preprocessing_type"] == "Preprocessing"
    assert got["preprocessing"] == _preprocessing(b.config.backbone).to_dict()
    # the backbone's pretraining normalisation travels in the checkpoint
    base = default_preprocessing(b.config.backbone)
    for key in ("mean", "std", "interpolation"):
        assert got["preprocessing"][key] == base[key], key
    assert got["training"] is False
    assert got["net_training"] is False
    assert got["type"] == "Model"
    assert got["net_type"] == type(b.net).__name__


def test_checkpoint_holds_graph_and_embeddings(built: Callable[[str], Built]) -> None:
    # the placeholders build_model uses without them are zeros: the reload test above only passes
    # because adjacency and embeddings travel in the state dict
    b = built("ssgrl-lite0")
    assert isinstance(b.net, SSGRL)
    state = b.net.state_dict()
    adjacency = b.net.graph.get_buffer("adjacency")
    embeddings = b.net.get_buffer("label_embeddings")
    assert torch.equal(state["graph.adjacency"], adjacency)
    assert torch.equal(state["label_embeddings"], embeddings)
    assert adjacency.abs().sum() > 0
    assert embeddings.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# the math against straightforward references (float64)


def reference_decoupling(
    m: SemanticDecoupling, fmap: torch.Tensor, emb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 1-4 as written: the full (B, HW, C, d2) tensor, P then f_a, no folding."""
    b, n, h, w = fmap.shape
    f = fmap.reshape(b, n, h * w).permute(0, 2, 1)  # (B, HW, N), position index = y * w + x
    u = f @ m.U.weight.t()  # (B, HW, d1)
    v = emb @ m.V.weight.t()  # (C, d1)
    joint = torch.tanh(u[:, :, None, :] * v[None, None, :, :])  # (B, HW, C, d1)
    f_tilde = joint @ m.P.weight.t() + m.P.bias  # (B, HW, C, d2)
    scores = (f_tilde @ m.f_a.weight.t()).squeeze(-1) + m.f_a.bias  # (B, HW, C)
    att = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
    att = att / att.sum(dim=1, keepdim=True)  # softmax over positions
    features = torch.einsum("bpc,bpn->bcn", att, f)  # (B, C, N)
    return features, att.permute(0, 2, 1).reshape(b, -1, h, w)


@pytest.mark.parametrize(("h", "w"), [(3, 5), (1, 1), (4, 4)])
def test_decoupling_matches_explicit_reference(h: int, w: int) -> None:
    torch.manual_seed(0)
    m = SemanticDecoupling(feature_dim=16, embed_dim=6, d1=8, d2=11).double()
    with torch.no_grad():
        m.P.bias.normal_()
        m.f_a.bias.normal_()
    fmap = torch.randn(3, 16, h, w, dtype=torch.float64)
    emb = torch.randn(4, 6, dtype=torch.float64)
    features, attention = m(fmap, emb)
    ref_features, ref_attention = reference_decoupling(m, fmap, emb)
    assert features.shape == (3, 4, 16)
    assert attention.shape == (3, 4, h, w)
    torch.testing.assert_close(features, ref_features, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(attention, ref_attention, atol=1e-10, rtol=1e-10)
    # float32, the precision used in training
    m32 = m.float()
    f32, a32 = m32(fmap.float(), emb.float())
    torch.testing.assert_close(f32.double(), ref_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a32.double(), ref_attention, atol=1e-5, rtol=1e-5)


def reference_ggnn(g: GGNN, h: torch.Tensor, reset: str) -> torch.Tensor:
    """Eqs. 5-6 with explicit loops over classes and the paper's separate W_z, W_r, W, U_z,
    U_r, U (``reset`` names the reset gate's U); A_in = M, A_out = M^T."""
    adj = g.adjacency.detach()  # (C, C)
    sd = unfused_state_dict(g.state_dict())

    def lin(name: str, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])

    _, c, _ = h.shape
    for _ in range(g.steps):
        new = []
        for i in range(c):
            a_in = torch.stack([adj[i, j] * h[:, j] for j in range(c)]).sum(0)  # (B, D)
            a_out = torch.stack([adj[j, i] * h[:, j] for j in range(c)]).sum(0)  # A_out = M^T
            a = torch.cat([a_in, a_out], dim=-1)  # (B, 2D)
            hi = h[:, i]
            z = torch.sigmoid(lin("W_z", a) + lin("U_z", hi))
            r = torch.sigmoid(lin("W_r", a) + lin(reset, hi))
            h_tilde = torch.tanh(lin("W", a) + lin("U", r * hi))
            new.append((1 - z) * hi + z * h_tilde)
        h = torch.stack(new, dim=1)
    return h


def _ggnn(quirk: bool, steps: int = 3) -> tuple[GGNN, torch.Tensor]:
    torch.manual_seed(1)
    adjacency = torch.rand(4, 4)  # asymmetric: A_in and A_out differ
    g = GGNN(7, adjacency, steps=steps, reset_gate_uses_update_weights=quirk).double()
    h0 = torch.randn(2, 4, 7, dtype=torch.float64)
    return g, h0


def test_ggnn_matches_loop_reference() -> None:
    g, h0 = _ggnn(quirk=False)
    out = g(h0)
    torch.testing.assert_close(out, reference_ggnn(g, h0, "U_r"), atol=1e-12, rtol=1e-12)
    # the reference can tell A_in from A_out, and U_r from U_z
    flipped = g.get_buffer("adjacency").t()
    transposed = GGNN(7, flipped, steps=3).double()
    transposed.load_state_dict({**g.state_dict(), "adjacency": flipped})
    assert not torch.allclose(transposed(h0), out)
    assert not torch.allclose(reference_ggnn(g, h0, "U_z"), out)


def test_ggnn_quirk_uses_update_weights_in_reset_gate() -> None:
    g, h0 = _ggnn(quirk=True)
    out = g(h0)
    torch.testing.assert_close(out, reference_ggnn(g, h0, "U_z"), atol=1e-12, rtol=1e-12)
    assert not torch.allclose(out, reference_ggnn(g, h0, "U_r"))
    # U_r (rows D: of U_zr) is never read: no gradient reaches it
    g(h0).sum().backward()
    assert g.U_zr.weight.grad is not None and g.U_zr.bias.grad is not None
    assert not g.U_zr.weight.grad[7:].any() and not g.U_zr.bias.grad[7:].any()
    assert g.U_zr.weight.grad[:7].any()


def test_ggnn_zero_steps_is_identity_and_bad_input_is_rejected() -> None:
    g, h0 = _ggnn(quirk=False, steps=0)
    assert torch.equal(g(h0), h0)
    with pytest.raises(ValueError, match="square"):
        GGNN(7, torch.rand(3, 4))
    with pytest.raises(ValueError, match="steps"):
        GGNN(7, torch.rand(3, 3), steps=-1)


def test_ssgrl_head_matches_reference_composition() -> None:
    torch.manual_seed(2)
    c, ds = 3, 5
    net = build_model(
        model_config("ssgrl-lite0", d1=8, d2=6, ggnn_steps=2),
        c,
        adjacency=torch.rand(c, c),
        label_embeddings=torch.randn(c, ds),
    )
    assert isinstance(net, SSGRL)
    net = net.double().eval()
    with torch.no_grad():
        net.classifier_bias.normal_()
    n = net.backbone.num_features
    fmap = torch.randn(2, n, 3, 2, dtype=torch.float64)
    logits, attention = net.head_with_attention(fmap)
    f_c, ref_attention = reference_decoupling(net.decoupling, fmap, net.label_embeddings)
    h_t = reference_ggnn(net.graph, f_c, "U_r")
    ref = torch.empty(2, c, dtype=torch.float64)
    for k in range(c):  # o_c = tanh(FC([h_c^T, f_c])), s_c = w_c . o_c + b_c
        o = torch.tanh(net.fc_out(torch.cat([h_t[:, k], f_c[:, k]], dim=-1)))  # (B, N)
        ref[:, k] = o @ net.classifier_weight[k] + net.classifier_bias[k]
    torch.testing.assert_close(logits, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(attention, ref_attention, atol=1e-12, rtol=0)
    torch.testing.assert_close(net.head(fmap), ref, atol=1e-10, rtol=1e-10)


def test_model_construction_errors() -> None:
    with pytest.raises(ValueError, match="label embeddings"):
        build_model(
            model_config("ssgrl-lite0"),
            3,
            adjacency=torch.rand(3, 3),
            label_embeddings=torch.rand(4, 5),
        )
    with pytest.raises(ValueError, match="embed_dim"):
        build_model(model_config("ssgrl-lite0"), 3)
    with pytest.raises(ValueError, match="unknown model config"):
        model_config("no-such-model")
    with pytest.raises(ValueError, match="unknown model settings"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "drop_rate": 0.5})
    with pytest.raises(ValueError, match="pool"):
        Backbone("tf_efficientnet_lite0", pool="max")  # type: ignore[arg-type]
    for name, config in MODEL_CONFIGS.items():
        assert ModelConfig.from_dict(config.to_dict()) == config, name


# ---------------------------------------------------------------------------------------------
# memory: the decoupling never forms (B, HW, C, d2) or (B, HW, C, N)


def _naive_decoupling(
    m: SemanticDecoupling, fmap: torch.Tensor, emb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return reference_decoupling(m, fmap, emb)


def test_decoupling_peak_intermediate_is_bounded_by_d1() -> None:
    b, h, w, c, n, d1, d2, ds = 2, 4, 4, 20, 128, 16, 512, 8
    bound = b * h * w * c * d1  # 10240
    # every other legitimate tensor is smaller than the bound, so it is tight
    assert max(b * h * w * n, b * c * n, n * d1, d1 * d2) < bound < b * h * w * c * d2
    assert bound < b * h * w * c * n
    torch.manual_seed(3)
    m = SemanticDecoupling(n, ds, d1, d2)
    fmap = torch.randn(b, n, h, w, requires_grad=True)
    emb = torch.randn(c, ds)
    with LargestAllocation() as ours:
        features, attention = m(fmap, emb)
        (features.square().sum() + attention.square().sum()).backward()
    assert ours.largest <= bound, (ours.largest, ours.op)
    assert fmap.grad is not None and m.P.weight.grad is not None
    # the meter sees the naive (B, HW, C, d2) tensor, so the bound above can fail
    with LargestAllocation() as naive:
        features, attention = _naive_decoupling(m, fmap, emb)
        (features.square().sum() + attention.square().sum()).backward()
    assert naive.largest >= b * h * w * c * d2


# ---------------------------------------------------------------------------------------------
# freezing policy


def _trainable_prefixes(backbone: Backbone) -> set[str]:
    return {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("train_stages", "expected"),
    [
        (1, {"layer4"}),
        (2, {"layer3", "layer4"}),
        (0, set()),
        (-1, {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}),
        (9, {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}),
    ],
)
def test_resnet101_train_stages(train_stages: int, expected: set[str]) -> None:
    with torch.device("meta"):  # flags and shapes only: no memory, no weight initialisation
        backbone = Backbone("resnet101", pool="avg2x2", train_stages=train_stages)
    assert _trainable_prefixes(backbone) == expected
    for n, p in backbone.body.named_parameters():  # whole modules, never a partial stage
        assert p.requires_grad is (n.split(".")[0] in expected), n
    assert backbone.num_features == 2048
    assert backbone.reduction == 64


def test_lite0_last_stage_is_the_stride_32_blocks() -> None:
    backbone = Backbone("tf_efficientnet_lite0", train_stages=1)
    stages = {
        ".".join(n.split(".")[:2]) for n, p in backbone.body.named_parameters() if p.requires_grad
    }
    assert stages == {"blocks.5", "blocks.6"}  # blocks.5 starts the stride-32 stage
    assert backbone.num_features == 320
    assert backbone.reduction == 32


@pytest.mark.parametrize("train_stages", [1, 0])
def test_frozen_batchnorm_stays_in_eval_and_keeps_its_statistics(train_stages: int) -> None:
    backbone = Backbone("resnet101", train_stages=train_stages)
    backbone.eval()
    backbone.train()  # e.g. Lightning's switch back after validation
    bns = _batchnorms(backbone.body)
    trained = {n for n in bns if train_stages == 1 and n.startswith("layer4.")}
    assert len(trained) == (3 * 3 + 1 if train_stages == 1 else 0)  # 3 blocks + downsample
    for n, m in bns.items():
        assert m.training is (n in trained), n
    before = {n: torch.cat(_running_stats(m)) for n, m in bns.items()}
    backbone(torch.randn(2, 3, 64, 64))
    for n, m in bns.items():
        moved = not torch.equal(torch.cat(_running_stats(m)), before[n])
        assert moved is (n in trained), n
    backbone.eval()
    assert not any(m.training for m in bns.values())


def _running_stats(m: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    assert m.running_mean is not None and m.running_var is not None
    return m.running_mean.clone(), m.running_var.clone()


def test_full_model_train_mode_keeps_frozen_batchnorm(built: Callable[[str], Built]) -> None:
    net = built("ssgrl-resnet101").net
    assert isinstance(net, SSGRL)
    try:
        net.train()
        for n, m in _batchnorms(net).items():
            assert m.training is n.startswith("backbone.body.layer4."), n
        assert net.decoupling.training and net.backbone.training
    finally:
        net.eval()
