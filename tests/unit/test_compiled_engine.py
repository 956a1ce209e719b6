"""``ssgrl predict --compile``: the network through ``torch.compile`` with frozen weights gives the
eager network's probabilities, in order, with a last partial batch padded instead of compiled
again; ONNX files refuse the option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_resnet18_ssgrl
from PIL import Image

from ssgrl.checkpoint import write_checkpoint
from ssgrl.cli import main
from ssgrl.inference.predictor import Predictor, TorchEngine

CLASSES = ["cat", "dog", "boat"]


def _checkpoint(folder: Path) -> Path:
    model = tiny_resnet18_ssgrl(CLASSES, resize=36, jpeg_draft=True, ggnn_steps=2)
    return write_checkpoint(model.net, model.meta, folder / "model.ckpt")


def _images(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.jpg"
        Image.fromarray((rng.random((60 + 5 * i, 90, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_predict_compile_matches_eager(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path)
    paths = _images(tmp_path, 7)
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / f"{name}.jsonl"
        argv = ["predict", *map(str, paths), "--checkpoint", str(ckpt), "-o", str(out)]
        assert main([*argv, "--batch-size", "3", "--no-progress", *extra]) == 0
        runs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in runs["compiled"]] == [str(p) for p in paths]
    for eager, compiled in zip(runs["eager"], runs["compiled"], strict=True):
        e = {s["label"]: s["score"] for s in eager["labels"]}
        c = {s["label"]: s["score"] for s in compiled["labels"]}
        assert set(c) == set(CLASSES)
        assert c == pytest.approx(e, abs=1e-5)

    # 3 + 3 + 1 images: the last batch is padded to 3, not compiled again
    predictor = Predictor(ckpt, compile=True)
    engine = predictor.engine
    assert isinstance(engine, TorchEngine) and engine.compiled is not None
    compiled, shapes = engine.compiled, []

    def recording(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return compiled(x)

    engine.compiled = recording
    preds = list(predictor.predict_paths(paths, batch_size=3))
    assert shapes == [(3, 3, 32, 32)] * 3
    eager_probs = np.stack([p.probabilities for p in Predictor(ckpt).predict_paths(paths)])  # type: ignore[misc]
    np.testing.assert_allclose(
        np.stack([p.probabilities for p in preds]),  # type: ignore[misc]
        eager_probs,
        rtol=0,
        atol=1e-5,
    )


def test_compile_refused_for_onnx_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not read")
    argv = ["predict", str(tmp_path / "x.jpg"), "--checkpoint", str(fake), "--compile"]
    assert main(argv) == 2
    assert "--compile applies to PyTorch checkpoints" in capsys.readouterr().err
