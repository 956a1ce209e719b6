"""``ssgrl import-official`` against an independent re-implementation of the authors' forward.

The random checkpoint has the authors' exact key layout (torchvision ResNet-101 under
``resnet_101.``, N = 2048, d1 = d2 = 1024, 300-d word vectors) with C = 4 classes, saved as old
torch did (legacy, non-zip format) with a numpy ``best_mAP`` as their ``main.py`` stores it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import ssgrl
from ssgrl.checkpoint import CheckpointMeta, Model
from ssgrl.cli import main
from ssgrl.data.transforms import Preprocessing
from ssgrl.engine.official import convert_official, load_weights_only, read_official_checkpoint
from ssgrl.models import SSGRL

C, N, D, DS = 4, 2048, 1024, 300
NAMES = ["cat", "dog", "person", "sofa"]
IMAGE = 128  # layer4 4x4 -> 2x2 after the 2x2 pooling


def _authors_state() -> dict[str, torch.Tensor]:
    """Random weights in the authors' key layout, scaled so no tanh/softmax saturates."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        trunk = torchvision.models.resnet101(weights=None)
    for m in trunk.modules():  # non-trivial BatchNorm affine and running statistics
        if isinstance(m, nn.BatchNorm2d):
            k = m.num_features
            m.weight.data = torch.rand(k, generator=g) * 0.5 + 0.25
            m.bias.data = torch.randn(k, generator=g) * 0.1
            m.running_mean.data = torch.randn(k, generator=g) * 0.1
            m.running_var.data = torch.rand(k, generator=g) + 0.5
    state = {f"resnet_101.{k}": v for k, v in trunk.state_dict().items() if not k.startswith("fc.")}

    def linear(name: str, out: int, inp: int, bias: bool = True, scale: float = 1.0) -> None:
        state[f"{name}.weight"] = torch.randn(out, inp, generator=g) * scale / inp**0.5
        if bias:
            state[f"{name}.bias"] = torch.randn(out, generator=g) * 0.1

    linear("word_semantic.fc_1", D, N, bias=False)
    linear("word_semantic.fc_2", D, DS, bias=False)
    linear("word_semantic.fc_3", D, D)
    linear("word_semantic.fc_a", 1, D, scale=8.0)  # peaked attention
    for eq in ("eq3", "eq4", "eq5"):
        linear(f"graph_net.fc_{eq}_w", N, 2 * N)
        linear(f"graph_net.fc_{eq}_u", N, N, scale=2.0)
    linear("fc_output", N, 2 * N, scale=2.0)
    state["classifiers.weight"] = torch.randn(C, N, generator=g)
    state["classifiers.bias"] = torch.randn(C, generator=g)
    return state


def authors_trunk(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Their networks/resnet.py forward: torchvision ResNet-101 to layer4, then AvgPool2d(2, 2)."""
    trunk = torchvision.models.resnet101(weights=None)
    del trunk.fc
    trunk.load_state_dict(
        {k.removeprefix("resnet_101."): v for k, v in sd.items() if "resnet_101." in k}
    )
    trunk.eval()
    h = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    return F.avg_pool2d(trunk.layer4(trunk.layer3(trunk.layer2(trunk.layer1(h)))), 2, stride=2)


def authors_head(
    sd: dict[str, torch.Tensor],
    adjacency: np.ndarray,
    vectors: np.ndarray,
    fmap: torch.Tensor,
    reset_u: str = "fc_eq3_u",
) -> torch.Tensor:
    """Their models.py / semantic.py / ggnn.py / element_wise_layer.py on the (B, N, s, s) map."""

    def lin(name: str, v: torch.Tensor) -> torch.Tensor:
        return F.linear(v, sd[f"{name}.weight"], sd.get(f"{name}.bias"))

    # semantic.forward(batch_size, img_feature_map, word_features)
    b, s = fmap.shape[0], fmap.size(3)
    words = torch.from_numpy(vectors)
    fm = torch.transpose(torch.transpose(fmap, 1, 2), 2, 3)
    f_wh = fm.contiguous().view(b * s * s, -1)
    f_wh = lin("word_semantic.fc_1", f_wh).view(b * s * s, 1, -1).repeat(1, C, 1)
    f_wd = lin("word_semantic.fc_2", words).view(1, C, 1024).repeat(b * s * s, 1, 1)
    lb = lin("word_semantic.fc_3", torch.tanh(f_wh * f_wd).view(-1, 1024))
    coef = lin("word_semantic.fc_a", lb)
    coef = torch.transpose(torch.transpose(coef.view(b, s, s, C), 2, 3), 1, 2).view(b, C, -1)
    coef = F.softmax(coef, dim=2).view(b, C, s, s)
    coef = torch.transpose(torch.transpose(coef, 1, 2), 2, 3)
    coef = coef.view(b, s, s, C, 1).repeat(1, 1, 1, 1, N)
    weighted = fm.view(b, s, s, 1, N).repeat(1, 1, 1, C, 1) * coef
    graph_in = torch.sum(torch.sum(weighted, 1), 1)  # (B, C, N)

    # GGNN.forward with in_matrix = M, out_matrix = M^T
    m_in, m_out = torch.from_numpy(adjacency), torch.from_numpy(adjacency.T.copy())
    nodes = graph_in.view(b, C, N)
    b_in = m_in.repeat(b, 1).view(b, C, -1)
    b_out = m_out.repeat(b, 1).view(b, C, -1)
    for _ in range(3):
        av = torch.cat((torch.bmm(b_in, nodes), torch.bmm(b_out, nodes)), 2).view(b * C, -1)
        flat = nodes.view(b * C, -1)
        zv = torch.sigmoid(lin("graph_net.fc_eq3_w", av) + lin("graph_net.fc_eq3_u", flat))
        rv = torch.sigmoid(lin("graph_net.fc_eq4_w", av) + lin(f"graph_net.{reset_u}", flat))
        hv = torch.tanh(lin("graph_net.fc_eq5_w", av) + lin("graph_net.fc_eq5_u", rv * flat))
        flat = (1 - zv) * flat + zv * hv
        nodes = flat.view(b, C, -1)

    out = torch.cat((nodes.view(b * C, -1), graph_in.view(-1, N)), 1)
    out = torch.tanh(lin("fc_output", out)).contiguous().view(b, C, N)
    return torch.sum(out * sd["classifiers.weight"], 2) + sd["classifiers.bias"]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The authors' files, one import of them, and the reference logits."""
    root = tmp_path_factory.mktemp("official")
    state = _authors_state()
    rng = np.random.default_rng(0)
    adjacency = rng.uniform(0, 1, (C, C)).astype(np.float32)  # asymmetric: A_in != A_out
    np.fill_diagonal(adjacency, 1.0)
    vectors = rng.normal(size=(C, DS)).astype(np.float32)
    files = {
        "ckpt": root / "checkpoint_voc.pth.tar",
        "adj": root / "prob.npy",
        "emb": root / "vectors.npy",
        "classes": root / "classes.txt",
        "out": root / "model.ckpt",
    }
    ckpt = {"epoch": 17, "state_dict": state, "best_mAP": np.float64(0.875)}
    torch.save(ckpt, files["ckpt"], _use_new_zipfile_serialization=False)
    np.save(files["adj"], adjacency)
    np.save(files["emb"], vectors)
    files["classes"].write_text("\n".join(NAMES) + "\n\n", encoding="utf-8")
    x = torch.randn(2, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fmap = authors_trunk(state, x)  # (2, N, 2, 2)
        reference = authors_head(state, adjacency, vectors, fmap)
    # --out exists: refused without --overwrite, then replaced with it
    files["out"].write_bytes(b"precious")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        refused = main(_argv(files))
    refusal = {"rc": refused, "err": stderr.getvalue(), "kept": files["out"].read_bytes()}
    assert main([*_argv(files), "--overwrite"]) == 0
    model = ssgrl.load_model(files["out"])
    return {"state": state, "adjacency": adjacency, "vectors": vectors, "x": x, "fmap": fmap,
            "reference": reference, "model": model, "net": model.net, "refusal": refusal,
            **files}  # fmt: skip


def _argv(files: dict[str, Any], classes: str | None = None, out: Path | None = None) -> list[str]:
    return [
        "import-official",
        *("--checkpoint", str(files["ckpt"]), "--adjacency", str(files["adj"])),
        *("--embeddings", str(files["emb"]), "--classes", classes or str(files["classes"])),
        *("--out", str(out or files["out"])),
    ]


def test_imported_model_matches_the_authors_forward(official: dict[str, Any]) -> None:
    model = official["model"]
    net = official["net"]
    assert isinstance(model, Model) and isinstance(net, SSGRL)
    assert not model.training and not net.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        fmap = net.backbone(official["x"])
        logits = net.head(fmap)
        model_logits = model(official["x"])  # the loaded Model's own forward
    torch.testing.assert_close(fmap, official["fmap"], atol=1e-5, rtol=1e-4)
    assert logits.shape == (2, C)
    torch.testing.assert_close(logits, official["reference"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model_logits, official["reference"], atol=1e-4, rtol=1e-4)
    # the check can fail: the paper's reset gate (U_r) moves the logits far beyond the tolerance
    net.graph.reset_gate_uses_update_weights = False
    try:
        with torch.no_grad():
            paper = net.head(fmap)
    finally:
        net.graph.reset_gate_uses_update_weights = True
    assert (paper - official["reference"]).abs().max() > 1e-2


def test_checkpoint_is_self_sufficient_with_provenance(official: dict[str, Any]) -> None:
    ckpt = torch.load(official["out"], map_location="cpu", weights_only=True)
    meta = ckpt["ssgrl"]
    assert meta["class_names"] == NAMES
    assert meta["embeddings"]["dim"] == DS
    assert meta["embeddings"]["source"] == "official"
    assert "embed_dim" not in meta
    cfg = meta["model_config"]
    assert (cfg["backbone"], cfg["pool"], cfg["d1"], cfg["d2"]) == ("resnet101", "avg2x2", D, D)
    assert cfg["ggnn_steps"] == 3 and cfg["reset_gate_uses_update_weights"] is True
    assert meta["preprocessing"] == {
        "image_size": 576, "resize": 640, "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "interpolation": "bilinear",
        "jpeg_draft": False,  # the authors decode every pixel
    }  # fmt: skip
    digest = hashlib.sha256(official["ckpt"].read_bytes()).hexdigest()
    imported = meta["extra"]["imported_from"]
    assert imported["sha256"] == digest
    assert imported["epoch"] == 17
    assert imported["best_mAP"] == pytest.approx(0.875)
    assert meta["pretrained"] == "official:checkpoint_voc.pth.tar"
    assert meta["selected_on"] == "authors' checkpoint (their code selects on the test split)"
    assert meta["graph"]["file"] == "prob.npy"
    assert meta["graph"]["file_sha256"] == hashlib.sha256(official["adj"].read_bytes()).hexdigest()
    assert (
        meta["embeddings"]["provenance"]["file_sha256"]
        == hashlib.sha256(official["emb"].read_bytes()).hexdigest()
    )
    # the block is a valid CheckpointMeta, and the loaded Model carries it
    parsed = CheckpointMeta.from_dict(meta)
    assert parsed.to_dict() == meta
    model = official["model"]
    assert model.meta.to_dict() == meta
    net = official["net"]
    np.testing.assert_array_equal(net.graph.adjacency.numpy(), official["adjacency"])
    np.testing.assert_array_equal(net.label_embeddings.numpy(), official["vectors"])
    assert isinstance(model.preprocessing, Preprocessing)
    assert model.preprocessing.image_size == 576
    assert model.preprocessing.resize == 640


def test_paper_reset_gate_and_state_without_step_counters(official: dict[str, Any]) -> None:
    """``--reset-gate paper`` reads fc_eq4_u; torch < 0.4.1 files lack num_batches_tracked."""
    state = {k: v for k, v in official["state"].items() if "num_batches_tracked" not in k}
    assert len(state) < len(official["state"])
    net = convert_official(state, official["adjacency"], official["vectors"], NAMES, "paper")
    assert not net.graph.reset_gate_uses_update_weights
    with torch.no_grad():
        logits = net.head(official["fmap"])  # the backbone is checked above
        ref = authors_head(
            state, official["adjacency"], official["vectors"], official["fmap"], "fc_eq4_u"
        )
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)


def test_missing_unexpected_and_misshaped_keys_listed_in_one_error(
    official: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = dict(official["state"])
    del state["graph_net.fc_eq4_u.bias"]
    del state["resnet_101.layer4.2.bn3.running_var"]
    state["fc_output.weight"] = torch.zeros(N, N)
    state["resnet_101.fc.weight"] = torch.zeros(1000, N)
    bad = {**official, "ckpt": tmp_path / "bad.pth.tar"}
    torch.save({"epoch": 1, "state_dict": state, "best_mAP": 0.5}, bad["ckpt"])
    out = tmp_path / "never.ckpt"
    assert main(_argv(bad, out=out)) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    assert "missing graph_net.fc_eq4_u.bias: expected (2048,), got nothing" in err
    assert "missing resnet_101.layer4.2.bn3.running_var: expected (2048,)" in err
    assert "fc_output.weight: expected (2048, 4096), got (2048, 2048)" in err
    assert "unexpected resnet_101.fc.weight" in err
    assert not out.exists()


def test_foreign_layout_and_word_vector_size(official: dict[str, Any]) -> None:
    """A torchvision state dict (no ``resnet_101.`` prefix) and 50-d vectors for 300-d fc_2."""
    state = {
        "conv1.weight": torch.zeros(64, 3, 7, 7),
        "word_semantic.fc_2.weight": torch.zeros(D, DS),
    }
    with pytest.raises(ValueError) as info:
        convert_official(state, official["adjacency"], np.zeros((C, 50), np.float32), NAMES)
    lines = str(info.value).splitlines()
    assert "no key uses the authors' names" in lines[1]
    assert (
        "embeddings: expected (4, 300) word vectors (word_semantic.fc_2 takes 300-d), got (4, 50)"
        in lines[2]
    )
    assert "  unexpected conv1.weight: expected no such tensor, got (64, 3, 7, 7)" in lines
    assert "  missing resnet_101.conv1.weight: expected (64, 3, 7, 7), got nothing" in lines
    assert "  missing classifiers.bias: expected (4,), got nothing" in lines


def test_out_is_never_overwritten_without_flag(official: dict[str, Any]) -> None:
    refusal = official["refusal"]  # the fixture's first run, onto an existing --out
    assert refusal["rc"] == 2
    assert "exists" in refusal["err"] and "--overwrite" in refusal["err"]
    assert refusal["kept"] == b"precious"
    assert official["model"].class_names == NAMES  # the second run, with --overwrite


def test_class_count_mismatch(
    official: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(official, classes="voc", out=tmp_path / "x.ckpt")) == 2
    err = capsys.readouterr().err
    assert "class counts disagree" in err
    assert "--classes voc: 20 classes" in err
    assert "classifiers.weight: 4 classes" in err
    assert not (tmp_path / "x.ckpt").exists()


def test_plain_state_dict_with_dataparallel_prefix(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(
        {"module.fc_output.bias": torch.ones(3), "module.classifiers.bias": torch.ones(2)}, path
    )
    state, info = read_official_checkpoint(path)
    assert sorted(state) == ["classifiers.bias", "fc_output.bias"]
    assert info == {"format": "plain state dict", "epoch": None, "best_mAP": None}


def test_python2_pickle_with_numpy_best_map(tmp_path: Path) -> None:
    """A legacy file as Python 2 wrote it: byte strings, and np.float64 reduced to raw bytes."""
    raw = struct.pack("<d", 0.9337)  # holds bytes >= 0x80: utf-8 decoding would fail
    body = (
        b"\x80\x02}q\x00(U\x05epochq\x01K\x07U\x08best_mAPq\x02"
        b"cnumpy.core.multiarray\nscalar\nq\x03cnumpy\ndtype\nq\x04U\x02f8K\x00K\x01\x87Rq\x05"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"U\x08" + raw + b"\x86Rq\x06U\nstate_dictq\x07}q\x08u."
    )
    assert pickle.loads(body, encoding="latin1")["best_mAP"] == 0.9337  # the bytes are valid
    buf = io.BytesIO()
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}  # fmt: skip
    for obj in (0x1950A86A20F9469CFC6C, 1001, sys_info):  # torch's legacy magic, version
        pickle.dump(obj, buf, protocol=2)
    buf.write(body)
    pickle.dump([], buf, protocol=2)  # no storages
    path = tmp_path / "py2.pth.tar"
    path.write_bytes(buf.getvalue())
    data = load_weights_only(path)
    assert data["epoch"] == 7 and float(data["best_mAP"]) == 0.9337 and data["state_dict"] == {}


def test_foreign_pickled_objects_are_refused_with_an_explanation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "args.pth.tar"
    torch.save({"state_dict": {}, "args": Path("x")}, path)  # any class outside the allowlist
    files = {"ckpt": path, "adj": tmp_path / "a.npy", "emb": tmp_path / "e.npy"}
    np.save(files["adj"], np.eye(2, dtype=np.float32))
    np.save(files["emb"], np.ones((2, 3), dtype=np.float32))
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n", encoding="utf-8")
    assert main(_argv(files, classes=str(names), out=tmp_path / "o.ckpt")) == 2
    err = capsys.readouterr().err
    assert "pickled Python objects besides tensors" in err and "pathlib" in err
    assert str(path) in err


def test_class_file_with_duplicate_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n\na\n", encoding="utf-8")
    files = {"ckpt": tmp_path / "c.pth", "adj": tmp_path / "a.npy", "emb": tmp_path / "e.npy"}
    assert main(_argv(files, classes=str(names), out=tmp_path / "o.ckpt")) == 2
    assert "line 4: 'a' repeats line 1" in capsys.readouterr().err
