"""JPEG draft decoding (``Preprocessing.jpeg_draft``) and the uint8 data path: a JPEG is decoded
at reduced scale only where that still covers the resize, every path that reads a file decodes
it the same way (dataset, feature pass, ``predict``, ``explain``, ``serve``, ``Image.open``
results), old checkpoints keep the full decode, and batched normalisation equals the per-image
transform bit for bit."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_resnet18_ssgrl
from PIL import Image

from ssgrl.checkpoint import Model, write_checkpoint
from ssgrl.cli import main
from ssgrl.data.base import file_split
from ssgrl.data.datamodule import ImageDataset
from ssgrl.data.decode import decode_image, open_image
from ssgrl.data.threaded import batches_in_threads
from ssgrl.data.transforms import (
    Preprocessing,
    draft_size,
    eval_pixels,
    eval_transform,
    normalize_batch,
)
from ssgrl.engine.features import compute_features
from ssgrl.inference import predictor as predictor_module
from ssgrl.inference.onnx_engine import preprocess
from ssgrl.inference.predictor import Predictor, default_num_workers
from ssgrl.inference.server import Upload, decode_upload
from ssgrl.viz import cli as explain_cli

CLASSES = ["a", "b", "c"]


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth picture (JPEG-friendly) of ``size`` (w, h)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    a, b, c = rng.random(3) * 0.2 + 0.02
    rgb = np.stack(
        [np.sin(a * xx) * 100 + 128, np.cos(b * yy) * 100 + 128, np.sin(c * (xx + yy)) * 100 + 128],
        axis=-1,
    )
    return Image.fromarray(rgb.astype(np.uint8))


def _jpeg(path: Path, size: tuple[int, int], seed: int = 0, orientation: int | None = None) -> Path:
    image = _photo(size, seed)
    if orientation is None:
        image.save(path, quality=92)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, quality=92, exif=exif.tobytes())
    return path


def _model(jpeg_draft: bool) -> Model:
    model: Model = tiny_resnet18_ssgrl(CLASSES, resize=40, jpeg_draft=jpeg_draft)
    return model


def test_draft_decodes_at_the_smallest_scale_that_covers(tmp_path: Path) -> None:
    big = _jpeg(tmp_path / "big.jpg", (640, 480))
    assert open_image(big).size == (640, 480)
    assert open_image(big, (224, 224)).size == (320, 240)  # 1/2: 240 >= 224, 1/4 would not
    assert open_image(big, (100, 100)).size == (160, 120)  # 1/4
    assert open_image(big, (50, 50)).size == (80, 60)  # 1/8, the smallest libjpeg offers
    assert open_image(big, (400, 400)).size == (640, 480)  # 1/2 would not cover
    # other formats are decoded whole
    png = tmp_path / "big.png"
    _photo((640, 480)).save(png)
    assert open_image(png, (100, 100)).size == (640, 480)
    # EXIF orientation still applies: stored 640 x 480, shown 480 x 640
    turned = _jpeg(tmp_path / "turned.jpg", (640, 480), orientation=6)
    assert open_image(turned, (100, 100)).size == (120, 160)
    assert open_image(turned).size == (480, 640)
    # a draft is close to a full decode resized alike (libjpeg's DCT scaling is a low-pass)
    full = np.asarray(open_image(big).resize((160, 120), Image.Resampling.BOX), dtype=np.float64)
    draft = np.asarray(open_image(big, (100, 100)), dtype=np.float64)
    assert np.abs(full - draft).mean() < 2.0


def test_image_open_results_decode_like_files_loaded_ones_as_they_are(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "p.jpg", (400, 300))
    from_file = np.asarray(open_image(path, (60, 60)))
    with Image.open(path) as lazy:
        drafted = decode_image(lazy, (60, 60))
        assert np.array_equal(np.asarray(drafted), from_file)
    with Image.open(path) as loaded:
        loaded.load()
        assert decode_image(loaded, (60, 60)).size == (400, 300)  # already decoded: untouched
    upload = Upload("p.jpg", path.read_bytes(), "image/jpeg")
    assert np.array_equal(np.asarray(decode_upload(upload, 10**8, (60, 60))), from_file)
    assert decode_upload(upload, 10**8).size == (400, 300)


def test_preprocessing_records_the_draft_and_old_checkpoints_decode_whole() -> None:
    pre = Preprocessing(32, 40, (0.5,) * 3, (0.5,) * 3, "bilinear", True)
    assert pre.draft_size == (40, 40)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    old = {k: v for k, v in pre.to_dict().items() if k != "jpeg_draft"}
    assert Preprocessing.from_dict(old).jpeg_draft is False
    assert Preprocessing.from_dict(old).draft_size is None
    assert draft_size(pre) == draft_size(pre, "paper") == draft_size(pre, "flip") == (40, 40)
    assert draft_size(pre, "modern") is None  # its crops zoom in: every pixel is needed
    assert "1/2-1/8" in pre.describe_decode()
    assert Preprocessing.from_dict(old).describe_decode() == "full decode"


@pytest.mark.parametrize(
    "pre",
    [
        Preprocessing(32, 40, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear"),
        Preprocessing(57, 57, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic"),
        Preprocessing(20, 31, (0.1, 0.2, 0.3), (0.7, 0.6, 0.5), "nearest"),
    ],
)
def test_batched_normalisation_equals_the_per_image_transform_bit_for_bit(
    pre: Preprocessing,
) -> None:
    images = [_photo((90 + 13 * i, 70 - 5 * i), seed=i) for i in range(5)]
    per_image = torch.stack([eval_transform(pre)(img) for img in images])
    pixels = torch.stack([eval_pixels(pre)(img) for img in images])
    assert pixels.dtype == torch.uint8
    assert torch.equal(normalize_batch(pixels, pre), per_image)


def test_every_path_sees_the_same_pixels(tmp_path: Path) -> None:
    """predict (threads and worker processes), ``Image.open`` images, the feature pass, the
    dataset and the ONNX preprocessing all decode a JPEG at the same reduced scale."""
    paths = [_jpeg(tmp_path / f"p{i}.jpg", (300 + 40 * i, 200 + 30 * i), seed=i) for i in range(5)]
    model = _model(jpeg_draft=True)
    predictor = Predictor(model=model)
    pre = predictor.preprocessing
    expected = torch.stack([eval_transform(pre)(open_image(p, (40, 40))) for p in paths])
    with torch.inference_mode():
        logits = model(expected).double().numpy()
    oracle = 1.0 / (1.0 + np.exp(-logits))
    for workers in (0, 2):
        preds = list(predictor.predict_paths(paths, batch_size=2, num_workers=workers))
        got = np.stack([p.probabilities for p in preds])  # type: ignore[misc]
        np.testing.assert_allclose(got, oracle, rtol=0, atol=1e-6)
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(Image.open(p)) for p in paths]
        np.testing.assert_allclose(predictor.predict_images(opened), oracle, rtol=0, atol=1e-6)
    assert np.array_equal(
        np.asarray(predictor.open(paths[0])), np.asarray(open_image(paths[0], (40, 40)))
    )
    # the dataset and the feature pass of ``fit``
    split = file_split("t", CLASSES, paths, np.zeros((len(paths), len(CLASSES))))
    dataset = ImageDataset(split, eval_pixels(pre), pre.draft_size)
    items = torch.stack([dataset[i]["image"] for i in range(len(paths))])
    assert torch.equal(normalize_batch(items, pre), expected)
    backbone = model.net.backbone
    feats = compute_features(
        backbone,
        dataset,
        2,
        0,
        torch.device("cpu"),
        contextlib.nullcontext,
        "",
        False,
        lambda x: normalize_batch(x, pre),
    )
    with torch.inference_mode():
        torch.testing.assert_close(feats, backbone(expected), rtol=0, atol=1e-5)
    # the ONNX engine's torch-free preprocessing, on an ``Image.open`` result
    with Image.open(paths[1]) as lazy:
        onnx_input = preprocess(lazy, pre.to_dict())
    np.testing.assert_allclose(onnx_input, expected[1].numpy(), rtol=0, atol=1e-5)


def test_explain_draws_the_maps_of_the_drafted_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ssgrl explain`` on a JPEG large enough to draft: its maps and probabilities are those of
    the image decoded as ``predict`` decodes it, and not those of a full decode."""
    model = tiny_resnet18_ssgrl(CLASSES, resize=100, jpeg_draft=True, image_size=96)  # 3x3 maps
    ckpt = write_checkpoint(model.net, model.meta, tmp_path / "model.ckpt")
    path = _jpeg(tmp_path / "big.jpg", (400, 300), seed=3)
    drawn: dict[str, object] = {}

    def capture(
        view: Image.Image, maps: np.ndarray, names: list[str], probs: list[float], **kw: object
    ) -> None:
        drawn.update(view=view, maps=maps, names=names, probs=probs)

    monkeypatch.setattr(explain_cli, "render_explanation", capture)
    argv = ["explain", str(path), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.png")]
    assert main([*argv, "--classes", *CLASSES]) == 0
    assert drawn["names"] == CLASSES

    predictor = Predictor(ckpt)
    predicted = next(predictor.predict_paths([path])).probabilities
    np.testing.assert_allclose(drawn["probs"], predicted, rtol=0, atol=1e-6)
    _, maps, view = predictor.explain(open_image(path, (100, 100)))  # 1/2: 200 x 150
    np.testing.assert_allclose(drawn["maps"], maps, rtol=0, atol=1e-6)
    assert np.array_equal(np.asarray(drawn["view"]), np.asarray(view))
    _, full_maps, full_view = predictor.explain(open_image(path))  # every pixel: other maps
    assert np.abs(np.asarray(drawn["maps"]) - full_maps).max() > 1e-5  # 10x the match above
    difference = np.asarray(drawn["view"], dtype=np.float64) - np.asarray(full_view)
    assert np.abs(difference).mean() > 0.5


def test_a_full_decode_checkpoint_reads_every_pixel(tmp_path: Path) -> None:
    paths = [_jpeg(tmp_path / "p.jpg", (400, 300))]
    predictor = Predictor(model=_model(jpeg_draft=False))
    got = next(predictor.predict_paths(paths)).probabilities
    assert got is not None
    x = eval_transform(predictor.preprocessing)(open_image(paths[0]))[None]
    with torch.inference_mode():
        logits = predictor.model(x).double().numpy()[0]
    np.testing.assert_allclose(got, 1.0 / (1.0 + np.exp(-logits)), rtol=0, atol=1e-6)


def test_batches_in_threads_keep_order_and_sizes() -> None:
    data = list(range(11))
    batches = list(batches_in_threads(data, 4, collate=list, threads=3))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert list(batches_in_threads([], 4, collate=list)) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(batches_in_threads(data, 0))


def test_default_workers_on_cpu_and_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, cpu_workers, gpu_workers in ((1, 0, 0), (2, 0, 1), (3, 0, 2), (4, 1, 3), (16, 4, 4)):
        affinity = set(range(cpus))
        monkeypatch.setattr(predictor_module.os, "sched_getaffinity", lambda _, a=affinity: a)
        assert default_num_workers() == cpu_workers
        assert default_num_workers("cpu") == cpu_workers
        assert default_num_workers(torch.device("cuda")) == gpu_workers


def test_decoding_in_memory_jpeg_bytes() -> None:
    """The lazy ``Image.open`` of bytes (what ``serve`` receives) drafts too."""
    buf = io.BytesIO()
    _photo((640, 480)).save(buf, "JPEG", quality=90)
    with Image.open(io.BytesIO(buf.getvalue())) as lazy:
        assert decode_image(lazy, (150, 150)).size == (320, 240)  # 1/4 would give 120 < 150
    with Image.open(io.BytesIO(buf.getvalue())) as lazy:
        assert decode_image(lazy, (100, 100)).size == (160, 120)
