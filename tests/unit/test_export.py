"""``ssgrl export`` and ``OnnxEngine``: onnxruntime reproduces the PyTorch logits of the whole
network (Lite0 SSGRL, Lite0 baseline, ResNet-101 with the paper's 2x2 pooling), the file carries
what a deployment needs in its metadata, and a ``Predictor`` runs it like a checkpoint.

Each export takes 5-20 s (torch.export + onnxscript), so every model is exported once per module.
The Lite0 models have their ImageNet backbone (offline package) and a random head; ResNet-101 has
random weights with random BatchNorm statistics (a fresh network's outputs hardly depend on the
image). ResNet-101 is tested as the baseline (backbone + 2x2 pooling + linear): an SSGRL head on
it holds a 2048-d GGNN (a 340 MB checkpoint, about 45 s for its export alone) and has no op the
Lite0 SSGRL lacks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from ssgrl.checkpoint import (
    CheckpointMeta,
    EmbeddingInfo,
    Model,
    Thresholds,
    load_model,
    package_version,
    write_checkpoint,
)
from ssgrl.cli import main
from ssgrl.data.decode import decode_image
from ssgrl.data.transforms import Preprocessing, eval_transform
from ssgrl.engine.pretrained import load_backbone_weights
from ssgrl.inference import export as export_module
from ssgrl.inference.export import DEFAULT_OPSET, ExportError, _install, export_onnx
from ssgrl.inference.onnx_engine import OnnxEngine, OnnxFileError, preprocess
from ssgrl.inference.predictor import Predictor
from ssgrl.models.factory import ModelConfig, build_model
from ssgrl.provenance import sha256_file

TOLERANCE = 1e-4  # the bar: max |logit difference| onnxruntime vs PyTorch
NAMES = ["cat", "dog", "potted plant", "person", "bicycle"]


@dataclass
class Exported:
    checkpoint: Path
    onnx: Path
    model: Model


def _randomise_batchnorm(net: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine weights (a fresh network has mean 0, var 1,
    and ResNet's zero-initialised last BN per block), so their folding is really tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.0, generator=gen)
                m.bias.uniform_(-0.1, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)  # type: ignore[union-attr]
                m.running_var.uniform_(0.5, 1.5, generator=gen)  # type: ignore[union-attr]


def _checkpoint(
    folder: Path,
    config: ModelConfig,
    pre: Preprocessing,
    thresholds: Thresholds | None = None,
    seed: int = 0,
) -> Path:
    torch.manual_seed(seed)
    c = len(NAMES)
    net = build_model(config, c, torch.rand(c, c), torch.randn(c, 6)).eval()
    if config.backbone == "tf_efficientnet_lite0":
        load_backbone_weights(net.backbone, "efficientnet-lite0")
    else:
        _randomise_batchnorm(net, seed)
    meta = CheckpointMeta(
        class_names=NAMES,
        model=config,
        preprocessing=pre,
        embeddings=EmbeddingInfo("random", 6) if config.arch == "ssgrl" else None,
        thresholds=thresholds,
    )
    return write_checkpoint(net, meta, folder / "model.ckpt")


@pytest.fixture(scope="module")
def ssgrl_lite0(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Through ``export_onnx`` with its check; d1 != d2 so P's shape is recognisable."""
    folder = tmp_path_factory.mktemp("ssgrl_lite0")
    config = ModelConfig(backbone="tf_efficientnet_lite0", train_stages=0, d1=16, d2=24)
    pre = Preprocessing(64, 72, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic")
    thresholds = Thresholds([0.3, 0.4, 0.5, 0.6, 0.7], "manifest:val", "max-f1", ["a note"])
    ckpt = _checkpoint(folder, config, pre, thresholds)
    model = load_model(ckpt)
    result = export_onnx(model, folder / "model.onnx", source=ckpt)
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    return Exported(ckpt, result.path, model)


@pytest.fixture(scope="module")
def baseline_lite0(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Through the command line, over an existing file with ``--overwrite`` (without the
    built-in check: ``ssgrl_lite0`` runs it, and this test checks the file itself)."""
    folder = tmp_path_factory.mktemp("baseline_lite0")
    config = ModelConfig(arch="baseline", backbone="tf_efficientnet_lite0", train_stages=0)
    pre = Preprocessing(64, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    ckpt = _checkpoint(folder, config, pre, seed=1)
    out = folder / "model.onnx"
    out.write_bytes(b"an older file")
    argv = ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)]
    assert main(argv) == 2  # refused: the file exists
    assert out.read_bytes() == b"an older file"
    assert main([*argv, "--overwrite", "--no-check"]) == 0
    return Exported(ckpt, out, load_model(ckpt))


@pytest.fixture(scope="module")
def resnet101(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """ResNet-101 with the paper's 2x2 average pooling after layer4, 96 px (random weights)."""
    folder = tmp_path_factory.mktemp("resnet101")
    config = ModelConfig(arch="baseline", backbone="resnet101", pool="avg2x2", train_stages=1)
    pre = Preprocessing(96, 96, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    ckpt = _checkpoint(folder, config, pre, seed=2)
    model = load_model(ckpt)
    result = export_onnx(model, folder / "model.onnx", source=ckpt, check=False)
    return Exported(ckpt, result.path, model)


MODELS = ("ssgrl_lite0", "baseline_lite0", "resnet101")


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_reproduces_the_pytorch_logits(
    name: str, request: pytest.FixtureRequest
) -> None:
    exported: Exported = request.getfixturevalue(name)
    engine = OnnxEngine(exported.onnx)
    size = exported.model.preprocessing.image_size
    gen = torch.Generator().manual_seed(7)
    for batch in (1, 5):
        images = torch.randn(batch, 3, size, size, generator=gen)
        with torch.inference_mode():
            expected = exported.model(images).numpy()
        got = engine.logits(images)
        assert got.shape == (batch, len(NAMES)) and got.dtype == np.float32
        diff = float(np.abs(got - expected).max())
        print(f"{name} batch {batch}: max |logit diff| {diff:.2e}")
        assert diff <= TOLERANCE, (name, batch, diff)
        if batch > 1:  # the logits depend on the image, so the comparison means something
            assert float(np.ptp(expected, axis=0).max()) > 100 * TOLERANCE
    # numpy input works as well as torch
    np.testing.assert_array_equal(engine.logits(images.numpy()), got)


def test_attention_output(ssgrl_lite0: Exported, baseline_lite0: Exported) -> None:
    engine = OnnxEngine(ssgrl_lite0.onnx)
    assert engine.outputs == ["logits", "attention"]
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    logits, attention = engine.logits_and_attention(images)
    with torch.inference_mode():
        ref_logits, ref_attention = ssgrl_lite0.model.forward_with_attention(images)
    assert attention.shape == tuple(ref_attention.shape) == (3, len(NAMES), 2, 2)
    assert np.abs(attention - ref_attention.numpy()).max() <= 1e-5
    assert np.abs(logits - ref_logits.numpy()).max() <= TOLERANCE
    np.testing.assert_allclose(attention.sum(axis=(2, 3)), 1.0, atol=1e-5)
    baseline = OnnxEngine(baseline_lite0.onnx)
    assert baseline.outputs == ["logits"]
    with pytest.raises(ValueError, match="no attention output"):
        baseline.logits_and_attention(images)


def test_the_fold_replaces_p_and_f_a(ssgrl_lite0: Exported) -> None:
    """The file holds the d1-vector P f_a (and a scalar), not P (d2 x d1 = 24 x 16)."""
    graph = onnx.load(str(ssgrl_lite0.onnx), load_external_data=False).graph
    shapes = [tuple(i.dims) for i in graph.initializer]
    shapes += [tuple(a.t.dims) for n in graph.node if n.op_type == "Constant" for a in n.attribute]
    assert (24, 16) not in shapes and (16, 24) not in shapes
    assert (16,) in shapes
    assert not [i.name for i in graph.initializer if ".P." in i.name or "f_a" in i.name]


def test_metadata_and_signature(ssgrl_lite0: Exported, baseline_lite0: Exported) -> None:
    model = onnx.load(str(ssgrl_lite0.onnx), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == NAMES
    assert Preprocessing.from_dict(json.loads(meta["preprocessing"])) == (
        ssgrl_lite0.model.preprocessing
    )
    assert json.loads(meta["thresholds"]) == {
        "values": [0.3, 0.4, 0.5, 0.6, 0.7],
        "fitted_on": "manifest:val",
        "method": "max-f1",
        "notes": ["a note"],
    }
    assert meta["ssgrl_version"] == package_version()
    assert meta["opset"] == str(DEFAULT_OPSET)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    assert meta["source_sha256"] == sha256_file(ssgrl_lite0.checkpoint)
    assert meta["source_name"] == "model.ckpt"
    assert json.loads(meta["model_config"])["d1"] == 16
    assert float(meta["check_max_abs_diff"]) <= TOLERANCE
    # dynamic batch, fixed image size
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert (
        inp.name == "images"
        and dims[0].dim_param
        and [d.dim_value for d in dims[1:]]
        == [
            3,
            64,
            64,
        ]
    )
    assert [o.name for o in model.graph.output] == ["logits", "attention"]
    # a baseline without thresholds: the key is absent
    base = {p.key: p.value for p in onnx.load(str(baseline_lite0.onnx)).metadata_props}
    assert "thresholds" not in base and json.loads(base["outputs"]) == ["logits"]
    assert "check_max_abs_diff" not in base  # exported with --no-check
    assert base["source_sha256"] == sha256_file(baseline_lite0.checkpoint)


def test_onnx_engine_implements_the_engine_protocol(ssgrl_lite0: Exported) -> None:
    engine = OnnxEngine(ssgrl_lite0.onnx)
    model = ssgrl_lite0.model
    assert engine.class_names == model.class_names
    assert engine.preprocessing == model.preprocessing
    assert engine.thresholds == model.thresholds
    assert engine.input_shape == (3, 64, 64)
    threads = engine.session.get_session_options().intra_op_num_threads
    assert threads == torch.get_num_threads()
    with pytest.raises(ValueError, match=r"takes images \(batch, 3, 64, 64\)"):
        engine.logits(np.zeros((1, 3, 32, 32), dtype=np.float32))


def _pictures(folder: Path) -> list[Path]:
    from skimage import data

    folder.mkdir(exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        paths.append(path)
    rgba = Image.fromarray(data.astronaut()).convert("RGBA").resize((90, 70))
    rgba.putalpha(128)
    rgba.save(folder / "transparent.png")
    return [*paths, folder / "transparent.png"]


def test_predictor_runs_the_onnx_file_like_the_checkpoint(
    ssgrl_lite0: Exported, tmp_path: Path
) -> None:
    exported = ssgrl_lite0
    paths = _pictures(tmp_path)
    torch_predictor = Predictor(exported.checkpoint)
    for onnx_predictor in (Predictor(exported.onnx), Predictor(exported.onnx, engine="onnx")):
        assert isinstance(onnx_predictor.engine, OnnxEngine)
        assert onnx_predictor.class_names == torch_predictor.class_names
        np.testing.assert_array_equal(onnx_predictor.thresholds, torch_predictor.thresholds)
        assert onnx_predictor.threshold_source == torch_predictor.threshold_source
        ours = list(onnx_predictor.predict_paths(paths, batch_size=3))
        theirs = list(torch_predictor.predict_paths(paths, batch_size=3))
        assert [p.image for p in ours] == [p.image for p in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a.probabilities is not None and b.probabilities is not None
            assert np.abs(a.probabilities - b.probabilities).max() <= TOLERANCE


def test_predict_command_with_the_onnx_engine(baseline_lite0: Exported, tmp_path: Path) -> None:
    paths = _pictures(tmp_path / "images")
    records = {}
    for engine, model in (("onnx", baseline_lite0.onnx), ("torch", baseline_lite0.checkpoint)):
        out = tmp_path / f"{engine}.jsonl"
        argv = ["predict", str(tmp_path / "images"), "--checkpoint", str(model)]
        argv += ["--engine", engine, "--output", str(out), "--no-progress"]
        assert main(argv) == 0
        records[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records["onnx"]) == len(paths)
    for a, b in zip(records["onnx"], records["torch"], strict=True):
        assert a["image"] == b["image"]
        scores_a = {s["label"]: s["score"] for s in a["labels"]}
        scores_b = {s["label"]: s["score"] for s in b["labels"]}
        assert scores_a.keys() == set(NAMES)
        assert max(abs(scores_a[k] - scores_b[k]) for k in NAMES) <= TOLERANCE
        assert {s["label"]: s["threshold"] for s in a["labels"]} == {
            s["label"]: s["threshold"] for s in b["labels"]
        }


@pytest.mark.parametrize(
    ("pre", "size"),
    [
        (Preprocessing(64, 72, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic"), (300, 200)),
        (Preprocessing(96, 96, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), (96, 96)),
        (Preprocessing(57, 80, (0.4, 0.5, 0.6), (0.2, 0.3, 0.4), "bilinear"), (123, 321)),
        (Preprocessing(32, 35, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "nearest"), (50, 40)),
    ],
)
def test_torch_free_preprocessing_matches_torchvision(
    pre: Preprocessing, size: tuple[int, int]
) -> None:
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    for image in (rgba.convert("RGB"), rgba, rgba.convert("L")):
        ours = preprocess(image, pre)
        theirs = eval_transform(pre)(decode_image(image)).numpy()
        assert ours.shape == theirs.shape == (3, pre.image_size, pre.image_size)
        assert ours.dtype == np.float32
        assert np.abs(ours - theirs).max() <= 1e-5
        np.testing.assert_array_equal(preprocess(image, pre.to_dict()), ours)


def test_a_deployment_needs_no_pytorch(ssgrl_lite0: Exported, tmp_path: Path) -> None:
    """onnxruntime + numpy + Pillow: the engine, its metadata and ``preprocess`` load no torch."""
    image = tmp_path / "x.png"
    Image.new("RGB", (100, 80), (200, 30, 30)).save(image)
    code = (
        "import sys, numpy as np; from PIL import Image\n"
        "from ssgrl.inference.onnx_engine import OnnxEngine, preprocess\n"
        f"e = OnnxEngine({str(ssgrl_lite0.onnx)!r})\n"
        f"x = np.stack([preprocess(Image.open({str(image)!r}), e.preprocessing_dict)])\n"
        "logits = e.logits(x)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm')]\n"
        "print(logits.shape, e.class_names[0], e.thresholds_dict['values'][0], heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "(1, 5) cat 0.3 []"


def test_a_failed_check_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny timm test network: the export runs, the (forced) check fails, the existing file
    stays and no temporary file is left."""
    config = ModelConfig(arch="baseline", backbone="test_resnet", train_stages=0)
    pre = Preprocessing(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    model = load_model(_checkpoint(tmp_path, config, pre))
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    monkeypatch.setattr(export_module, "check_onnx", lambda *a, **k: 0.5)
    with pytest.raises(ExportError, match=r"max \|difference\| 0.5 > 0.0001 .*nothing written"):
        export_onnx(model, out, overwrite=True)
    assert out.read_bytes() == b"keep me"
    assert not list(tmp_path.glob("*.tmp")) and len(list(tmp_path.glob("*.onnx*"))) == 1
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_onnx(model, out)  # refused before exporting
    with pytest.raises(ValueError, match="opset 18 or newer"):
        export_onnx(model, tmp_path / "old.onnx", opset=17)


def test_install_is_atomic_and_never_replaces_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    tmp = tmp_path / "model.onnx.123.tmp"
    tmp.write_bytes(b"new")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _install(tmp, out, overwrite=False)
    assert out.read_bytes() == b"old"
    _install(tmp, out, overwrite=True)
    assert out.read_bytes() == b"new" and not tmp.exists()
    tmp.write_bytes(b"fresh")
    _install(tmp, tmp_path / "other.onnx", overwrite=False)
    assert (tmp_path / "other.onnx").read_bytes() == b"fresh"


def test_bad_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["images"], ["logits"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(
        helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 20)]), plain
    )
    with pytest.raises(OnnxFileError, match="not an ssgrl export") as err:
        OnnxEngine(plain)
    assert str(plain) in str(err.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(OnnxFileError, match="cannot load"):
        OnnxEngine(garbage)
    with pytest.raises(FileNotFoundError):
        OnnxEngine(tmp_path / "missing.onnx")
    assert (
        main(
            ["export", "--checkpoint", str(tmp_path / "no.ckpt"), "--out", str(tmp_path / "x.onnx")]
        )
        == 2
    )
    assert not (tmp_path / "x.onnx").exists()
