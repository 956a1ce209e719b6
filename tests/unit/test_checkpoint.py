"""The checkpoint contract (``ssgrl.checkpoint``): one typed record, written and read in one
place, checked on load with errors that name the file; and the layering it lets the package keep."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssgrl.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMeta,
    EmbeddingInfo,
    Model,
    Thresholds,
    load_model,
    read_checkpoint,
    write_checkpoint,
)
from ssgrl.data.transforms import Preprocessing
from ssgrl.models.factory import ModelConfig, build_model

SRC = Path(__file__).resolve().parents[2] / "src" / "ssgrl"
CONFIG = ModelConfig(arch="ssgrl", backbone="tf_efficientnet_lite0", train_stages=0, d1=8, d2=8)
PRE = Preprocessing(64, 72, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic")


def _meta(**changes: object) -> CheckpointMeta:
    fields: dict[str, object] = {
        "class_names": ["cat", "dog", "pottedplant"],
        "model": CONFIG,
        "preprocessing": PRE,
        "graph": {"split": "manifest:train", "num_images": 10, "sha256": "0" * 64},
        "embeddings": EmbeddingInfo("glove50", 4, [["cat"], ["dog"], ["potted", "plant"]], {}),
        "pretrained": "none",
        "data": {"dataset": "manifest", "train_split": "train", "val_split": "val"},
    }
    fields.update(changes)
    return CheckpointMeta(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = build_model(CONFIG, 3, torch.rand(3, 3), torch.rand(3, 4)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    thresholds = Thresholds([0.3, 0.5, 0.7], fitted_on="manifest:val", method="max-f1")
    write_checkpoint(net, _meta(thresholds=thresholds), path)
    return path, net


def test_round_trip_keeps_every_field() -> None:
    meta = _meta(thresholds=Thresholds([0.1, 0.2, 0.3], "x:val", "max-f1", ["dog: no positives"]))
    again = CheckpointMeta.from_dict(meta.to_dict())
    assert again == meta
    assert again.embeddings is not None and again.embeddings.words == [
        ["cat"],
        ["dog"],
        ["potted", "plant"],
    ]
    assert again.format_version == FORMAT_VERSION and again.package_version


def test_load_model_from_the_file_alone(written: tuple[Path, torch.nn.Module]) -> None:
    path, net = written
    model = load_model(path)
    assert isinstance(model, Model) and not model.training
    assert model.class_names == ["cat", "dog", "pottedplant"]
    assert model.preprocessing == PRE
    assert model.thresholds is not None and model.thresholds.values == [0.3, 0.5, 0.7]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
        logits, attention = model.forward_with_attention(x)
    assert torch.equal(logits, net(x)) and attention.shape[:2] == (2, 3)


def test_writer_never_replaces_a_file(written: tuple[Path, torch.nn.Module]) -> None:
    path, net = written
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        write_checkpoint(net, _meta(), path)
    assert path.read_bytes() == before
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("class_names"), "malformed.*class_names"),
        (lambda m: m.update(format_version=FORMAT_VERSION + 1), "newer than this ssgrl"),
        (lambda m: m.update(class_names=["a", "a", "b"]), "unique"),
        (lambda m: m["thresholds"].update(values=[0.5]), "3 probabilities"),
        (lambda m: m["model_config"].update(depth=3), "unknown model settings"),
        (lambda m: m.update(embeddings=None), "needs its label-embedding record"),
        (lambda m: m["preprocessing"].update(image_size=900), "image_size <= resize"),
    ],
)
def test_bad_metadata_is_refused_naming_the_file(
    written: tuple[Path, torch.nn.Module], tmp_path: Path, change: object, message: str
) -> None:
    raw = torch.load(written[0], map_location="cpu", weights_only=True)
    change(raw["ssgrl"])  # type: ignore[operator]
    path = tmp_path / "bad.ckpt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=message) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value)


def test_not_an_ssgrl_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="import-official"):
        read_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        read_checkpoint(path)


def test_format_1_checkpoints_still_load(written: tuple[Path, torch.nn.Module]) -> None:
    """ssgrl 0.1 wrote a flat block with ``embed_dim`` and the provenance beside the source."""
    raw = torch.load(written[0], map_location="cpu", weights_only=True)
    new = raw["ssgrl"]
    old = {
        "format_version": 1,
        "model_config": new["model_config"],
        "class_names": new["class_names"],
        "embed_dim": 4,
        "preprocessing": new["preprocessing"],
        "graph": new["graph"],
        "embeddings": {"source": "glove50", "words": new["embeddings"]["words"], "sha256": "x"},
        "pretrained": "none",
        "dataset": "manifest",
        "train_split": "train",
        "val_split": "val",
        "package_version": "0.1.0",
    }
    meta = CheckpointMeta.from_dict(old)
    assert meta.embeddings is not None and meta.embeddings.dim == 4
    assert meta.embeddings.provenance == {"sha256": "x"}
    assert meta.data == {"dataset": "manifest", "train_split": "train", "val_split": "val"}


# --- layering: data flows down ---------------------------------------------------------------


def _modules_loaded_by(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in out.stdout.split() if m.startswith("ssgrl")}


def test_inference_does_not_import_the_training_engine() -> None:
    loaded = _modules_loaded_by("ssgrl.inference.predictor")
    assert not [m for m in loaded if m.startswith("ssgrl.engine")], loaded


def test_data_does_not_import_models() -> None:
    loaded = _modules_loaded_by("ssgrl.data.datamodule")
    assert not [m for m in loaded if m.startswith(("ssgrl.models", "ssgrl.engine"))], loaded


def test_no_private_lightning_imports_and_no_attached_metadata() -> None:
    private = re.compile(r"from lightning[\w.]* import .*\b_[A-Za-z]|import lightning[\w.]*\._")
    attached = re.compile(r"\b(net|model|rebuilt|module)\.(class_names|preprocessing)\s*=")
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert not private.search(text), f"{path}: private Lightning import"
        assert not attached.search(text), f"{path}: metadata attached to an object"
