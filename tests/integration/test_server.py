"""``ssgrl serve``: a real uvicorn server on 127.0.0.1 (a free port, in a background thread or a
subprocess) driven over HTTP with httpx. The served scores are compared with what the offline
``Predictor`` gives for the same file (``ssgrl predict``'s code path) to 1e-6; every bad input is
followed by a good request that must still get exactly those scores."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from ssgrl.cli import main
from ssgrl.data.decode import open_image
from ssgrl.data.registry import load_split
from ssgrl.inference.output import prediction_record
from ssgrl.inference.predictor import Predictor
from ssgrl.inference.server import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    BackgroundServer,
    create_app,
)

pytestmark = pytest.mark.slow  # fits the tiny config once (module fixture)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}
TOL = 1e-6  # served scores are rounded to 6 decimals (prediction_record): |error| <= 5e-7 + float


def fit_tiny(base: Path) -> Path:
    """The tiny config's best checkpoint under ``base`` (fitted once per test session; the
    browser test's module finds the same one)."""
    ckpt = base / "serve-tiny" / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        run = ["fit", "--config", str(TINY), "--run_dir", str(ckpt.parents[1])]
        assert main([*run, "--trainer.enable_progress_bar", "false"]) == 0
    return ckpt


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_tiny(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> Predictor:
    """The offline predictor, as ``ssgrl predict`` loads it (its own instance)."""
    return Predictor(checkpoint)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic test scenes as PNG files, plus the awkward shapes and modes."""
    out = tmp_path_factory.mktemp("images")
    split = load_split("synthetic", "test", **DATA)
    files: dict[str, Path] = {}
    for i in range(4):
        files[f"scene{i}"] = out / f"scene{i}.png"
        split.load_image(i).save(files[f"scene{i}"])
    rng = np.random.default_rng(0)
    noise = lambda h, w: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    special = {
        "1x1.png": Image.new("RGB", (1, 1), (10, 200, 30)),
        "1x4000.png": noise(4000, 1),
        "4000x1.png": noise(1, 4000),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (64, 80, 4), dtype=np.uint8), "RGBA"),
        "gray16.png": Image.fromarray(rng.integers(0, 65536, (50, 70), dtype=np.uint16)),
        "palette.gif": noise(60, 60).convert("P"),
        "photo.jpg": noise(90, 120),
        "large.jpg": noise(300, 400),  # >= 2 x 96 px: decoded at 1/2 scale (jpeg_draft)
    }
    for name, img in special.items():
        files[name] = out / name
        img.save(files[name])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    files["exif6.jpg"] = out / "exif6.jpg"
    split.load_image(5).save(files["exif6.jpg"], exif=exif.tobytes())
    return files


@pytest.fixture(scope="module")
def server(checkpoint: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(Predictor(checkpoint))) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def offline_scores(reference: Predictor, path: Path) -> np.ndarray:
    """What ``ssgrl predict`` gives for ``path`` (decoded as the checkpoint says, ``open``)."""
    return reference.predict_images([reference.open(path)])[0]


def served_scores(result: dict[str, Any], class_names: list[str]) -> np.ndarray:
    by_name = {entry["label"]: entry["score"] for entry in result["labels"]}
    return np.array([by_name[n] for n in class_names])


def assert_same_record(result: dict[str, Any], reference: Predictor, path: Path) -> None:
    """``result`` is ``prediction_record`` of the offline scores: same scores to 1e-6, same
    thresholds and decisions, labels in the same order."""
    probs = offline_scores(reference, path)
    np.testing.assert_allclose(served_scores(result, reference.class_names), probs, atol=TOL)
    expected = prediction_record(
        result["image"], probs, reference.class_names, reference.thresholds
    )
    assert [e["label"] for e in result["labels"]] == [e["label"] for e in expected["labels"]]
    assert result["predicted"] == expected["predicted"]
    assert [e["threshold"] for e in result["labels"]] == [
        e["threshold"] for e in expected["labels"]
    ]


def post_image(client: httpx.Client, path: Path, url: str = "/predict") -> httpx.Response:
    ctype = Image.MIME[Image.open(path).format]  # type: ignore[index]
    return client.post(url, content=path.read_bytes(), headers={"content-type": ctype})


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: tens of KB that decode to
    width*height pixels (8000 x 8000: 8 KB; 20000 x 20000: 48 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    pack = zlib.compressobj(9)
    idat = b"".join(pack.compress(row * 500) for _ in range(height // 500))
    idat += pack.compress(row * (height % 500)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------


def test_health_classes_and_docs(
    client: httpx.Client, reference: Predictor, checkpoint: Path
) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["engine"] == "torch" and health["explain"]
    assert health["num_classes"] == len(reference.class_names)
    assert health["limits"] == {
        "max_bytes": DEFAULT_MAX_BYTES,
        "max_pixels": DEFAULT_MAX_PIXELS,
        "max_files": DEFAULT_MAX_FILES,
        "batch_size": DEFAULT_BATCH_SIZE,
        "batch_wait_ms": DEFAULT_BATCH_WAIT_MS,
    }
    classes = client.get("/classes").json()
    assert classes["class_names"] == reference.class_names
    np.testing.assert_allclose(classes["thresholds"], reference.thresholds)
    assert classes["threshold_source"] == reference.threshold_source
    assert classes["preprocessing"]["image_size"] == 96
    assert classes["explain"] and classes["explain_note"] is None
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/classes"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


def test_predict_raw_body_equals_offline(
    client: httpx.Client, reference: Predictor, images: dict[str, Path]
) -> None:
    response = post_image(client, images["scene0"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["threshold_source"] == reference.threshold_source
    (result,) = body["results"]
    assert result["image"] == "image"
    assert_same_record(result, reference, images["scene0"])
    named = client.post(
        "/predict?name=mine.png&top_k=1",
        content=images["scene1"].read_bytes(),
        headers={"content-type": "image/png"},
    ).json()["results"][0]
    assert named["image"] == "mine.png" and len(named["predicted"]) <= 1


def test_predict_several_files_in_order_with_a_bad_one(
    client: httpx.Client, reference: Predictor, images: dict[str, Path]
) -> None:
    names = ["scene0", "scene1", "scene2", "scene3"]
    files = [("files", (f"{n}.png", images[n].read_bytes(), "image/png")) for n in names]
    files.insert(2, ("files", ("notes.png", b"this is not a picture", "image/png")))
    files.insert(4, ("files", ("notes.txt", b"plain text", "text/plain")))
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["image"] for r in results] == [
        "scene0.png",
        "scene1.png",
        "notes.png",
        "scene2.png",
        "notes.txt",
        "scene3.png",
    ]
    assert results[2]["status"] == 422 and "notes.png" in results[2]["error"]
    assert results[4]["status"] == 415 and "text/plain" in results[4]["error"]
    for result in (results[0], results[1], results[3], results[5]):
        assert_same_record(result, reference, images[result["image"].removesuffix(".png")])


@pytest.mark.parametrize(
    "name",
    [
        "1x1.png",
        "1x4000.png",
        "4000x1.png",
        "rgba.png",
        "gray16.png",
        "palette.gif",
        "photo.jpg",
        "large.jpg",
        "exif6.jpg",
    ],
)
def test_awkward_images_are_predicted_as_offline(
    client: httpx.Client, reference: Predictor, images: dict[str, Path], name: str
) -> None:
    response = post_image(client, images[name])
    assert response.status_code == 200, response.text
    assert_same_record(response.json()["results"][0], reference, images[name])
    # the same file as a multipart upload
    upload = client.post("/predict", files={"file": (name, images[name].read_bytes())})
    assert upload.status_code == 200, upload.text
    assert_same_record(upload.json()["results"][0], reference, images[name])


def test_a_large_jpeg_is_decoded_as_the_checkpoint_was_trained(
    client: httpx.Client, checkpoint: Path, reference: Predictor, images: dict[str, Path]
) -> None:
    """A fitted checkpoint decodes JPEGs at reduced scale (``data.jpeg_draft``, the default):
    the service does too, so it answers what ``ssgrl predict`` writes for the file, not the
    scores of a full decode."""
    path = images["large.jpg"]
    assert reference.preprocessing.jpeg_draft
    assert reference.open(path).size == (200, 150)
    served = served_scores(post_image(client, path).json()["results"][0], reference.class_names)
    (predicted,) = Predictor(checkpoint).predict_paths([path])
    assert predicted.probabilities is not None
    np.testing.assert_allclose(served, predicted.probabilities, atol=TOL)
    full = reference.predict_images([open_image(path)])[0]
    assert np.abs(full - predicted.probabilities).max() > 10 * TOL  # the test can tell


def _chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    # name: (httpx request arguments, expected status, a word the message must contain)
    "body over --max-bytes": (
        {"content": b"\0" * (DEFAULT_MAX_BYTES + 1), "headers": {"content-type": "image/png"}},
        413,
        "max-bytes",
    ),
    "chunked body over --max-bytes": (
        {
            "content": _chunks(b"\0" * (DEFAULT_MAX_BYTES + 1)),
            "headers": {"content-type": "image/png"},
        },
        413,
        "max-bytes",
    ),
    "text content type": (
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
        415,
        "text/plain",
    ),
    "no content type": ({"content": b"hello"}, 415, "content type"),
    "json body": ({"json": {"image": "x"}}, 415, "application/json"),
    "0 bytes": ({"content": b"", "headers": {"content-type": "image/png"}}, 422, "empty"),
    "bytes that are no image": (
        {"content": os.urandom(5000), "headers": {"content-type": "image/jpeg"}},
        422,
        "not an image",
    ),
    "truncated PNG": (
        {"content": "TRUNCATED", "headers": {"content-type": "image/png"}},
        422,
        "readable",
    ),
    "20000x20000 PNG bomb": (
        {"content": png_bomb(20000, 20000), "headers": {"content-type": "image/png"}},
        413,
        "before decoding",
    ),
    "8000x8000 PNG over --max-pixels": (
        {"content": png_bomb(8000, 8000), "headers": {"content-type": "image/png"}},
        413,
        "max-pixels",
    ),
    "form without a file": ({"data": {"field": "value"}, "files": {}}, 422, "no file"),
    "form with one empty file": (
        {"files": {"file": ("empty.png", b"", "image/png")}},
        422,
        "empty",
    ),
    "form with too many files": (
        {"files": [("f", (f"{i}.png", b"x", "image/png")) for i in range(DEFAULT_MAX_FILES + 1)]},
        413,
        "Too many files",
    ),
    "malformed multipart": (
        {
            "content": b"--x\r\nnonsense",
            "headers": {"content-type": "multipart/form-data; boundary=x"},
        },
        422,
        "no file",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_refused_and_the_next_request_is_answered(
    client: httpx.Client, reference: Predictor, images: dict[str, Path], case: str
) -> None:
    kwargs, status, word = dict(BAD_REQUESTS[case][0]), *BAD_REQUESTS[case][1:]
    if kwargs.get("content") == "TRUNCATED":
        kwargs["content"] = images["scene0"].read_bytes()[:300]
    if case == "form without a file":  # a urlencoded-looking form sent as multipart
        kwargs = {"files": [("note", (None, b"value"))]}
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert word.lower() in response.json()["detail"].lower(), response.text
    after = post_image(client, images["scene1"])
    assert after.status_code == 200
    assert_same_record(after.json()["results"][0], reference, images["scene1"])


def test_explain_png_and_json(
    client: httpx.Client, reference: Predictor, images: dict[str, Path]
) -> None:
    path = images["scene2"]
    png = post_image(client, path, "/explain")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(png.content))
    assert picture.format == "PNG" and picture.width > 96

    image = open_image(path)
    probs, maps = reference.attention([image])
    names = reference.class_names
    wanted = [names[3], names[0]]
    for query in (f"classes={wanted[0]}&classes={wanted[1]}", f"classes={wanted[0]},{wanted[1]}"):
        response = post_image(client, path, f"/explain?format=json&{query}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["classes"] == wanted
        np.testing.assert_allclose(body["probabilities"], probs[0, [3, 0]], atol=TOL)
        assert body["map_shape"] == list(maps.shape[2:])
        np.testing.assert_allclose(np.array(body["maps"]), maps[0, [3, 0]], atol=1e-6)
        view = reference.view(image)
        assert body["view_size"] == {"width": view.width, "height": view.height}

    # default classes: the predicted ones, best first (or the most likely one)
    body = post_image(client, path, "/explain?format=json").json()
    thresholds = reference.thresholds
    order = [int(i) for i in np.argsort(-probs[0], kind="stable")]
    expected = [names[i] for i in order if probs[0, i] >= thresholds[i]][:12] or [names[order[0]]]
    assert body["classes"] == expected

    unknown = post_image(client, path, "/explain?classes=no-such-class")
    assert unknown.status_code == 422 and "no-such-class" in unknown.json()["detail"]
    two = client.post(
        "/explain", files=[("f", ("a.png", path.read_bytes())), ("f", ("b.png", path.read_bytes()))]
    )
    assert two.status_code == 422 and "one image" in two.json()["detail"]
    broken = client.post("/explain", content=b"nope", headers={"content-type": "image/png"})
    assert broken.status_code == 422
    assert post_image(client, path, "/explain?format=svg").status_code == 422


def test_page_and_static_files_are_offline(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/static/app.js"' in page.text and 'id="file"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        response = client.get(asset)
        assert response.status_code == 200
    for text in (
        page.text,
        client.get("/static/app.js").text,
        client.get("/static/style.css").text,
    ):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_docs_pages_load_their_scripts_from_the_server(client: httpx.Client) -> None:
    """/docs (Swagger UI) and /redoc name only scripts and styles on this server, and serve them."""
    for page, kinds in (("/docs", ("js", "css")), ("/redoc", ("js",))):
        html = client.get(page)
        assert html.status_code == 200
        refs = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html.text)
        assert {ref.rsplit(".", 1)[1] for ref in refs} >= set(kinds), (page, refs)
        for ref in refs:
            assert ref.startswith("/"), f"{page} loads {ref} from elsewhere"
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, ref


class CountingEngine:
    """Wraps an engine: counts forward passes and their batch sizes, each pass made slow so
    that concurrent requests pile up behind it."""

    def __init__(self, inner: Any, delay_s: float = 0.05) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.class_names = inner.class_names
        self.preprocessing = inner.preprocessing
        self.thresholds = inner.thresholds
        self.sizes: list[int] = []

    def logits(self, images: torch.Tensor) -> np.ndarray:
        self.sizes.append(len(images))
        time.sleep(self.delay_s)
        return self.inner.logits(images)


def test_concurrent_requests_share_forward_passes(
    checkpoint: Path, reference: Predictor, images: dict[str, Path]
) -> None:
    predictor = Predictor(checkpoint)
    engine = CountingEngine(predictor.engine)
    predictor.engine = engine
    n = 16
    paths = [images[f"scene{i % 4}"] for i in range(n)]

    async def send_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:
            return await asyncio.gather(
                *(
                    c.post(
                        "/predict", content=p.read_bytes(), headers={"content-type": "image/png"}
                    )
                    for p in paths
                )
            )

    with BackgroundServer(create_app(predictor, batch_size=8, batch_wait_ms=20)) as running:
        responses = asyncio.run(send_all(running.url))
        health = httpx.get(running.url + "/health").json()
        classes = httpx.get(running.url + "/classes").json()
        # an engine without attention maps: /explain says so, the service goes on
        no_maps = httpx.post(
            running.url + "/explain",
            content=paths[0].read_bytes(),
            headers={"content-type": "image/png"},
        )
    assert all(r.status_code == 200 for r in responses)
    for response, path in zip(responses, paths, strict=True):
        assert_same_record(response.json()["results"][0], reference, path)
    assert sum(engine.sizes) == n
    assert len(engine.sizes) < n, engine.sizes  # batched: fewer forward passes than requests
    assert max(engine.sizes) <= 8
    assert health["batching"] == {
        "forwards": len(engine.sizes),
        "images": n,
        "largest_batch": max(engine.sizes),
    }
    assert no_maps.status_code == 501 and "PyTorch" in no_maps.json()["detail"]
    assert not classes["explain"] and "PyTorch" in classes["explain_note"]


class FailingOnceEngine(CountingEngine):
    def logits(self, images: torch.Tensor) -> np.ndarray:
        if not self.sizes:
            self.sizes.append(0)
            raise RuntimeError("simulated failure inside the model")
        return super().logits(images)


def test_a_model_failure_is_a_500_and_the_service_goes_on(
    checkpoint: Path, reference: Predictor, images: dict[str, Path]
) -> None:
    predictor = Predictor(checkpoint)
    predictor.engine = FailingOnceEngine(predictor.engine, delay_s=0.0)
    with (
        BackgroundServer(create_app(predictor)) as running,
        httpx.Client(base_url=running.url, timeout=60) as c,
    ):
        failed = post_image(c, images["scene0"])
        assert failed.status_code == 500
        assert "simulated failure" in failed.json()["detail"]
        after = post_image(c, images["scene0"])
    assert after.status_code == 200
    assert_same_record(after.json()["results"][0], reference, images["scene0"])


def test_load_200_requests_8_at_a_time(
    server: BackgroundServer, reference: Predictor, images: dict[str, Path]
) -> None:
    paths = [images[f"scene{i % 4}"] for i in range(200)]
    bodies = {p: p.read_bytes() for p in set(paths)}
    expected = {p: offline_scores(reference, p) for p in bodies}

    async def run() -> list[tuple[Path, httpx.Response]]:
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as c:

            async def one(path: Path) -> tuple[Path, httpx.Response]:
                async with gate:
                    headers = {"content-type": "image/png"}
                    return path, await c.post("/predict", content=bodies[path], headers=headers)

            return await asyncio.wait_for(asyncio.gather(*(one(p) for p in paths)), 120.0)

    start = time.perf_counter()
    done = asyncio.run(run())
    elapsed = time.perf_counter() - start
    assert len(done) == 200 and all(r.status_code == 200 for _, r in done)
    for path, response in done:
        scores = served_scores(response.json()["results"][0], reference.class_names)
        np.testing.assert_allclose(scores, expected[path], atol=TOL)
    assert elapsed < 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command(checkpoint: Path, reference: Predictor, images: dict[str, Path]) -> None:
    """``ssgrl serve`` as a user runs it (a subprocess), with a flag that changes a limit."""
    port = _free_port()
    command = [sys.executable, "-m", "ssgrl.cli", "serve", "--checkpoint", str(checkpoint)]
    command += ["--port", str(port), "--max-pixels", "1000000", "--threshold", "0.3"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90.0
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ssgrl serve did not start in 90 s"
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60.0) as c:
            ok = post_image(c, images["scene3"])
            assert ok.status_code == 200
            body = ok.json()
            assert body["threshold_source"].startswith("one threshold for every class: 0.3")
            probs = offline_scores(reference, images["scene3"])
            result = body["results"][0]
            np.testing.assert_allclose(
                served_scores(result, reference.class_names), probs, atol=TOL
            )
            names = reference.class_names
            assert sorted(result["predicted"]) == sorted(
                n for n, p in zip(names, probs, strict=True) if p >= 0.3
            )
            big = io.BytesIO()
            Image.new("RGB", (1001, 1000)).save(big, format="PNG")
            refused = c.post(
                "/predict", content=big.getvalue(), headers={"content-type": "image/png"}
            )
            assert refused.status_code == 413 and "1000000" in refused.json()["detail"]
            assert c.get("/health").json()["limits"]["max_pixels"] == 1_000_000
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "ssgrl serve:" in output


def test_serve_help_and_bad_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--checkpoint",
        "--host",
        "--port",
        "--engine",
        "--threshold",
        "--max-bytes",
        "--max-pixels",
    ):
        assert flag in text
    assert main(["serve", "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2
    assert "ssgrl serve: error" in capsys.readouterr().err
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")  # --compile reaches the engine, which refuses an ONNX file
    assert main(["serve", "--checkpoint", str(onnx), "--compile"]) == 2
    assert "--compile applies to PyTorch checkpoints" in capsys.readouterr().err


def test_background_server_is_loopback_only(reference: Predictor) -> None:
    with pytest.raises(ValueError, match="loopback"):
        BackgroundServer(create_app(reference), host="0.0.0.0")
