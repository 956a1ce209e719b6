"""The fast head against the authors' computation (``ssgrl.models.reference``): the fused GGNN,
the chunked decoupling and the channels_last backbone compute the same function (values and
gradients), state dicts written before the fusion keep loading, and the built networks really
are channels_last."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import LargestAllocation
from torch import nn

import ssgrl
from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, write_checkpoint
from ssgrl.data.transforms import Preprocessing
from ssgrl.engine.pretrained import load_backbone_weights
from ssgrl.models import SSGRL, Backbone, build_model, model_config
from ssgrl.models import decoupling as decoupling_module
from ssgrl.models.decoupling import SemanticDecoupling, _attend, class_chunk
from ssgrl.models.ggnn import GGNN, fuse_state_dict, unfused_state_dict
from ssgrl.models.reference import ReferenceHead, reference_head_from

DS = 5  # label embedding size
# ours -> the authors' names, for building a pre-fusion state dict from the reference's Linears
GRAPH_NAMES = {"W_z": "fc_eq3_w", "U_z": "fc_eq3_u", "W_r": "fc_eq4_w", "U_r": "fc_eq4_u",
               "W": "fc_eq5_w", "U": "fc_eq5_u"}  # fmt: skip


def _net(c: int, quirk: bool = False, steps: int = 2, seed: int = 0) -> SSGRL:
    """A Lite0 SSGRL (N = 320) with a small random head; non-zero biases everywhere."""
    torch.manual_seed(seed)
    net = build_model(
        model_config("ssgrl-lite0", d1=24, d2=12, ggnn_steps=steps,
                     reset_gate_uses_update_weights=quirk),
        c,
        adjacency=torch.rand(c, c),  # asymmetric: A_in != A_out
        label_embeddings=torch.randn(c, DS),
    )  # fmt: skip
    assert isinstance(net, SSGRL) and isinstance(net.decoupling, SemanticDecoupling)
    with torch.no_grad():
        net.classifier_bias.normal_()
        net.decoupling.P.bias.normal_()
        net.decoupling.f_a.weight.mul_(8)  # peaked attention, not nearly uniform
    return net.eval()


def _fmap(net: SSGRL, h: int = 3, w: int = 4, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, net.backbone.num_features, h, w, generator=gen)


def _grads_ours(net: SSGRL) -> dict[str, torch.Tensor]:
    """Our head's parameter gradients in the authors' layout (the fused ones split)."""
    grads = {n: p.grad for n, p in net.named_parameters() if not n.startswith("backbone.")}
    graph = unfused_state_dict({k: v for k, v in grads.items() if k.startswith("graph.")}, "graph.")
    d = net.decoupling
    return {
        "word_semantic.fc_1.weight": grads["decoupling.U.weight"],
        "word_semantic.fc_2.weight": grads["decoupling.V.weight"],
        **{f"word_semantic.{t}.{k}": getattr(d, o).get_parameter(k).grad
           for o, t in (("P", "fc_3"), ("f_a", "fc_a")) for k in ("weight", "bias")},
        **{f"graph_net.{t}.{k}": graph[f"graph.{o}.{k}"]
           for o, t in GRAPH_NAMES.items() for k in ("weight", "bias")},
        "fc_output.weight": grads["fc_out.weight"],
        "fc_output.bias": grads["fc_out.bias"],
        "classifiers.weight": grads["classifier_weight"],
        "classifiers.bias": grads["classifier_bias"],
    }  # fmt: skip


@pytest.mark.parametrize("quirk", [False, True])
@pytest.mark.parametrize(("c", "chunk"), [(1, None), (2, 1), (7, 3), (7, None), (11, 4)])
def test_fused_head_matches_the_authors_computation(
    monkeypatch: pytest.MonkeyPatch, quirk: bool, c: int, chunk: int | None
) -> None:
    """Logits, attention and every gradient (parameters and feature map) to 1e-5, with class
    chunks that do not divide C (7 = 3 + 3 + 1, 11 = 4 + 4 + 3)."""
    net = _net(c, quirk)
    ref = reference_head_from(net)
    assert isinstance(ref, ReferenceHead)
    if chunk is not None:  # the byte budget that gives `chunk` classes per chunk
        monkeypatch.setattr(decoupling_module, "CHUNK_BYTES", 2 * 12 * 24 * 4 * chunk)
        assert class_chunk(2, 12, 24) == chunk
    fmap = _fmap(net).requires_grad_(True)
    fmap_ref = fmap.detach().clone().requires_grad_(True)
    targets = (torch.rand(2, c, generator=torch.Generator().manual_seed(2)) < 0.5).float()

    logits, attention = net.head_with_attention(fmap)
    ref_logits, ref_attention = ref.forward_with_attention(fmap_ref)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention, ref_attention, atol=1e-5, rtol=1e-5)
    assert attention.amax() > 2 * attention.amin() + 0.01  # the attention is not uniform

    loss = nn.functional.binary_cross_entropy_with_logits
    loss(logits, targets).backward()
    loss(ref_logits, targets).backward()
    theirs = {n: p.grad for n, p in ref.named_parameters()}
    ours = _grads_ours(net)
    assert set(ours) == set(theirs)
    for name, grad in theirs.items():
        assert ours[name] is not None, name
        if grad is None:  # U_r with the quirk: nothing reads it
            assert quirk and name.startswith("graph_net.fc_eq4_u."), name
            assert not ours[name].any(), name
            continue
        torch.testing.assert_close(ours[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert fmap.grad is not None and fmap_ref.grad is not None
    torch.testing.assert_close(fmap.grad, fmap_ref.grad, atol=1e-6, rtol=1e-4)
    # the quirk is real: the other reset gate gives other logits
    ref.graph_net.reset_u = "fc_eq4_u" if quirk else "fc_eq3_u"
    with torch.no_grad():
        assert (ref(fmap_ref) - logits).abs().max() > 1e-4


def test_zero_steps_and_float64() -> None:
    """T = 0 (the GGNN is the identity) and float64, where the two computations agree to 1e-10."""
    for steps in (0, 3):
        net = _net(5, steps=steps).double()
        ref = reference_head_from(net)
        fmap = _fmap(net).double()
        with torch.no_grad():
            logits, attention = net.head_with_attention(fmap)
            ref_logits, ref_attention = ref.forward_with_attention(fmap)
            if steps == 0:
                f_c, _ = net.decoupling(fmap, net.label_embeddings)
                assert torch.equal(net.graph(f_c), f_c)
        torch.testing.assert_close(logits, ref_logits, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(attention, ref_attention, atol=1e-12, rtol=1e-10)


def _legacy_state(net: SSGRL, ref: ReferenceHead) -> dict[str, torch.Tensor]:
    """``net``'s state dict as the code before the fusion wrote it: separate ``graph.W_z`` ...
    ``graph.U`` keys, taken here from the reference head's own Linears."""
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("graph.W_a.",
             "graph.U_zr.", "graph.U."))}  # fmt: skip
    for ours, theirs in GRAPH_NAMES.items():
        for kind in ("weight", "bias"):
            state[f"graph.{ours}.{kind}"] = ref.graph_net.get_parameter(f"{theirs}.{kind}").clone()
    return state


@pytest.mark.parametrize("quirk", [False, True])
def test_state_dicts_from_before_the_fusion_load_to_the_same_logits(quirk: bool) -> None:
    net = _net(4, quirk, seed=3)
    ref = reference_head_from(net)
    legacy = _legacy_state(net, ref)
    assert "graph.W_z.weight" in legacy and "graph.W_a.weight" not in legacy
    fresh = _net(4, quirk, seed=9)  # other weights, overwritten by the load
    fmap = _fmap(net)
    with torch.no_grad():
        before = fresh.head(fmap)
        assert fresh.load_state_dict(legacy, strict=True)  # no missing, no unexpected key
        after = fresh.head(fmap)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, ref(fmap), atol=1e-5, rtol=1e-5)
        assert torch.equal(after, net.head(fmap))  # the very same weights as `net`
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, net.state_dict()[name]), name
    # and back: unfused_state_dict is the inverse of the fusion
    unfused = unfused_state_dict(net.state_dict(), "graph.")
    assert set(unfused) == set(legacy)
    for name, value in legacy.items():
        assert torch.equal(unfused[name], value), name


def test_a_partial_legacy_state_dict_names_what_is_missing() -> None:
    net = _net(3)
    legacy = _legacy_state(net, reference_head_from(net))
    del legacy["graph.W_r.weight"]
    with pytest.raises(RuntimeError) as err:
        _net(3).load_state_dict(legacy)
    message = str(err.value)
    assert 'Missing key(s) in state_dict: "graph.W_a.weight"' in message
    assert '"graph.W_z.weight"' in message and '"graph.W.weight"' in message  # unexpected
    # fuse_state_dict leaves such a dict alone, and a fused one too
    state = dict(legacy)
    fuse_state_dict(state, "graph.")
    assert "graph.W_a.weight" not in state and "graph.W_a.bias" in state
    fused = net.state_dict()
    again = dict(fused)
    fuse_state_dict(again, "graph.")
    assert again.keys() == fused.keys()


def test_learned_adjacency_is_a_parameter_under_the_same_key() -> None:
    torch.manual_seed(4)
    adjacency = torch.rand(3, 3)
    fixed = GGNN(6, adjacency)
    learned = GGNN(6, adjacency, learn_adjacency=True)
    assert "adjacency" in dict(fixed.named_buffers())
    assert isinstance(learned.adjacency, nn.Parameter)
    assert "adjacency" in dict(learned.named_parameters())
    assert torch.equal(learned.adjacency.detach(), adjacency)
    learned.load_state_dict(fixed.state_dict())  # same keys both ways
    fixed.load_state_dict(learned.state_dict())
    h = torch.randn(2, 3, 6)
    torch.testing.assert_close(learned(h), fixed(h))
    learned(h).square().sum().backward()
    assert learned.adjacency.grad is not None and learned.adjacency.grad.abs().sum() > 0


def test_chunked_decoupling_equals_all_classes_at_once() -> None:
    torch.manual_seed(5)
    m = SemanticDecoupling(16, DS, 32, 8)
    fmap = torch.randn(3, 16, 5, 3)
    v = m.V(torch.randn(9, DS))
    w_eff, b_eff = m.score_map()
    with torch.no_grad():
        whole = _attend(fmap, m.U, v, w_eff, b_eff, chunk=9)
        for chunk in (1, 2, 4, 8, 100):
            parts = _attend(fmap, m.U, v, w_eff, b_eff, chunk=chunk)
            for a, b in zip(parts, whole, strict=True):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # the chunk size: the most classes whose (B, HW, chunk, d1) float32 tensor fits the budget
    budget = decoupling_module.CHUNK_BYTES
    assert class_chunk(2, 49, 1024) == budget // (2 * 49 * 1024 * 4)  # 167: all 80 COCO classes
    assert class_chunk(4, 81, 1024) == 50  # the paper's training step: 500 classes in 10 chunks
    assert class_chunk(1, 10**6, 1024) == 1


def test_the_attention_tensor_is_formed_one_chunk_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The largest tensor of a forward + backward is one chunk's (B, HW, C', d1), not C's."""
    b, h, w, c, n, d1, d2 = 2, 4, 4, 10, 8, 64, 4
    monkeypatch.setattr(decoupling_module, "CHUNK_BYTES", b * h * w * d1 * 4 * 3)  # 3 classes
    torch.manual_seed(6)
    m = SemanticDecoupling(n, DS, d1, d2)
    fmap = torch.randn(b, n, h, w, requires_grad=True)
    with LargestAllocation() as meter:
        features, attention = m(fmap, torch.randn(c, DS))
        (features.square().sum() + attention.square().sum()).backward()
    assert meter.largest == b * h * w * 3 * d1, (meter.largest, meter.op)
    monkeypatch.setattr(decoupling_module, "CHUNK_BYTES", 2**40)  # one chunk: C classes
    with LargestAllocation() as meter:
        m(fmap, torch.randn(c, DS))
    assert meter.largest == b * h * w * c * d1


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_channels_last_backbone_equals_contiguous(name: str) -> None:
    torch.manual_seed(7)
    fast = Backbone(name, pool="avg2x2").eval()
    plain = Backbone(name, pool="avg2x2", channels_last=False).eval()
    plain.load_state_dict(fast.state_dict())
    assert fast.channels_last and not plain.channels_last
    convs = [m for m in fast.body.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert all(m.weight.is_contiguous() for m in plain.body.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out, expected = fast(x), plain(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # float rounding only: within 1e-5 of the map's scale (Lite0's reaches 13, its diff 2e-5)
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_vit_like_bodies_stay_contiguous() -> None:
    vit = Backbone("vit_tiny_patch16_224")  # a conv patch embedding, then Linear layers
    assert not vit.channels_last
    assert all(p.is_contiguous() for p in vit.parameters())
    with torch.no_grad():
        assert vit(torch.randn(1, 3, 224, 224)).is_contiguous()


def test_built_and_loaded_networks_are_channels_last(tmp_path: Path) -> None:
    """Through the public entry points: build_model + the offline ImageNet weights, then a
    checkpoint written and read back by ``ssgrl.load_model``."""
    net = _net(3)
    load_backbone_weights(net.backbone, "efficientnet-lite0")
    weights = [m.weight for m in net.backbone.body.modules() if isinstance(m, nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    meta = CheckpointMeta(
        class_names=["a", "b", "c"],
        model=model_config("ssgrl-lite0", d1=24, d2=12, ggnn_steps=2),
        preprocessing=Preprocessing(96, 96, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"),
        embeddings=EmbeddingInfo(source="random", dim=DS, words=[["a"], ["b"], ["c"]]),
    )
    path = write_checkpoint(net, meta, tmp_path / "model.ckpt")
    model = ssgrl.load_model(path)
    loaded = model.net
    assert isinstance(loaded, SSGRL) and loaded.backbone.channels_last
    for m in loaded.backbone.body.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), net(x), atol=1e-6, rtol=1e-6)
