"""The data path of ``predict`` and of the feature cache: images decoded in DataLoader worker
processes give the same results, in the same order, as decoding in process, and an unreadable
file still becomes an error line, not a crash."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgrl.checkpoint import CheckpointMeta, Model
from ssgrl.data.base import file_split
from ssgrl.data.datamodule import ImageDataset
from ssgrl.data.decode import open_image
from ssgrl.data.transforms import Preprocessing, eval_transform
from ssgrl.engine.features import compute_features
from ssgrl.inference import cli as predict_cli
from ssgrl.inference.predictor import Predictor, default_num_workers
from ssgrl.models.factory import ModelConfig, build_model

CLASSES = ["a", "b", "c"]


def _model() -> Model:
    torch.manual_seed(0)
    config = ModelConfig(arch="baseline", backbone="resnet18")
    pre = Preprocessing(32, 40, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear")
    meta = CheckpointMeta(class_names=CLASSES, model=config, preprocessing=pre)
    return Model(build_model(config, len(CLASSES)), meta).eval()


def _files(folder: Path) -> list[Path]:
    """Nine inputs: JPEG, PNG (RGBA, gray, 16-bit), a corrupt file and a missing one."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        h, w = 30 + 7 * i, 50 - 3 * i
        pixels = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if i % 3 == 1:
            image = image.convert("RGBA")
            image.putalpha(100)
        elif i % 3 == 2:
            image = image.convert("L")
        path = folder / (f"img{i}.jpg" if i % 3 == 0 else f"img{i}.png")
        image.save(path)
        paths.append(path)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a JPEG")
    missing = folder / "missing.png"
    return [*paths[:2], corrupt, *paths[2:5], missing, *paths[5:]]


def test_workers_give_the_same_predictions_in_order(tmp_path: Path) -> None:
    predictor = Predictor(model=_model())
    paths = _files(tmp_path)
    in_process = list(predictor.predict_paths(paths, batch_size=3, num_workers=0))
    workers = list(predictor.predict_paths(paths, batch_size=3, num_workers=2))
    assert [p.image for p in in_process] == [str(p) for p in paths]
    assert [p.image for p in workers] == [str(p) for p in paths]
    for a, b in zip(in_process, workers, strict=True):
        assert a.error == b.error
        if a.probabilities is None:
            assert b.probabilities is None
        else:
            assert b.probabilities is not None
            np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=0, atol=1e-6)
    errors = {p.image: p.error for p in workers if p.error is not None}
    assert set(errors) == {str(tmp_path / "corrupt.jpg"), str(tmp_path / "missing.png")}
    assert "not a readable image" in errors[str(tmp_path / "corrupt.jpg")]
    assert "no such file" in errors[str(tmp_path / "missing.png")]

    # oracle: each readable image alone through the one decoder, the transform and the network
    transform = eval_transform(predictor.preprocessing)
    for pred in workers:
        if pred.error is None:
            x = transform(open_image(pred.image))[None]  # (1, 3, 32, 32)
            with torch.inference_mode():
                logits = predictor.model(x).double().numpy()[0]
            expected = 1.0 / (1.0 + np.exp(-logits))
            np.testing.assert_allclose(pred.probabilities, expected, rtol=0, atol=1e-5)


def test_every_file_unreadable_and_bad_arguments(tmp_path: Path) -> None:
    predictor = Predictor(model=_model())
    paths = [tmp_path / f"gone{i}.jpg" for i in range(5)]
    preds = list(predictor.predict_paths(paths, batch_size=2, num_workers=2))
    assert [p.image for p in preds] == [str(p) for p in paths]
    assert all(p.error is not None and p.probabilities is None for p in preds)
    assert list(predictor.predict_paths([], num_workers=2)) == []
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        list(predictor.predict_paths(paths, num_workers=-1))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(predictor.predict_paths(paths, batch_size=0))
    assert 0 <= default_num_workers() <= 4


def test_predict_command_with_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    monkeypatch.setattr(
        predict_cli, "Predictor", lambda *a, **k: Predictor(model=model, threshold=k["threshold"])
    )
    parser = argparse.ArgumentParser()
    predict_cli.configure(parser)
    paths = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = [*map(str, paths), "--checkpoint", "m.ckpt", "-o", str(out), "--no-progress"]
    assert (
        predict_cli.run(parser.parse_args([*argv, "--batch-size", "4", "--num_workers", "2"])) == 1
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["image"] for rec in lines] == [str(p) for p in paths]
    failed = [p.name in ("corrupt.jpg", "missing.png") for p in paths]
    assert [("error" in rec) for rec in lines] == failed
    assert "predicted 7 image(s), 2 failed" in capsys.readouterr().err
    assert predict_cli.run(parser.parse_args([*argv, "--num-workers", "-1"])) == 2
    assert "--num-workers must be >= 0" in capsys.readouterr().err


def test_feature_extraction_with_workers_matches_in_process(tmp_path: Path) -> None:
    model = _model()
    paths = [p for p in _files(tmp_path) if p.exists() and "corrupt" not in p.name]
    split = file_split("t", CLASSES, paths, np.zeros((len(paths), len(CLASSES))))
    dataset = ImageDataset(split, eval_transform(model.preprocessing))
    backbone = model.net.backbone
    args = (torch.device("cpu"), contextlib.nullcontext, "features", False)
    in_process = compute_features(backbone, dataset, 3, 0, *args)
    workers = compute_features(backbone, dataset, 3, 2, *args)
    assert in_process.shape[0] == len(paths)
    torch.testing.assert_close(workers, in_process, rtol=0, atol=1e-6)
    with torch.inference_mode():
        alone = backbone(dataset[4]["image"][None])[0]  # image 4 by itself
    torch.testing.assert_close(workers[4], alone, rtol=0, atol=1e-5)
