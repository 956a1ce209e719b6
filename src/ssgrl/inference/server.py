"""``ssgrl serve --checkpoint CKPT``: an HTTP service (FastAPI + uvicorn) and a web page.

- ``POST /predict``: one or more images (multipart files, or raw bytes with an ``image/*``
  content type) -> ``{"results": [prediction_record per image, in order], "threshold_source"}``;
  an image that cannot be read gives ``{"image", "error", "status"}`` in its place.
- ``POST /explain``: one image -> a PNG of attention overlays (``?format=png``) or the per-class
  maps as JSON (``?format=json``); ``?classes=a&classes=b`` picks the classes.
- ``GET /health``, ``GET /classes``, ``GET /`` (the web page), ``/docs`` and ``/redoc`` (OpenAPI;
  their scripts are served locally, so the pages work on a machine without internet access).

The model is loaded once, before the app is made. Images are decoded and preprocessed in worker
threads; their tensors go through a ``MicroBatcher``, which runs one forward pass for the requests
that arrive within a few milliseconds of each other, on one model thread.

Every input is checked before it costs memory: the body against ``max_bytes`` (413, from the
Content-Length header when there is one, else while reading), the content type (415), the image
header's width x height against ``max_pixels`` (413, read by Pillow's lazy ``Image.open`` before
any pixel is decoded), the bytes themselves (422 when they do not decode).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import ipaddress
import logging
import socket
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ssgrl import __version__
from ssgrl.data.decode import decode_image, draft_image
from ssgrl.inference.output import prediction_record
from ssgrl.inference.predictor import Predictor
from ssgrl.viz.attention import render_explanation

LOG = logging.getLogger("ssgrl.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"

DEFAULT_MAX_BYTES = 20_000_000  # 20 MB per request body
DEFAULT_MAX_PIXELS = 50_000_000  # 50 megapixels per image (width x height from the header)
DEFAULT_MAX_FILES = 32  # files per multipart request
DEFAULT_BATCH_SIZE = 16  # images per forward pass
DEFAULT_BATCH_WAIT_MS = 5.0  # how long the first request of a batch waits for company
EXPLAIN_MAX_CLASSES = 12  # tiles when /explain picks the classes itself


@dataclass(frozen=True)
class Limits:
    """What one request may send, and how requests are batched."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_files: int = DEFAULT_MAX_FILES
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_files", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")


class ServeError(Exception):
    """A request (or one of its images) the service refuses, or could not answer: an HTTP status
    and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    name: str
    data: bytes
    content_type: str | None


# --------------------------------------------------------------------------------------------
# batching


class MicroBatcher:
    """Collects single items for up to ``max_wait_s`` after the first one (or until
    ``max_batch``), runs ``run_batch`` on them once in ``executor`` and resolves each caller's
    future with its row. While a batch runs, new items queue up and form the next batch."""

    def __init__(
        self,
        run_batch: Callable[[list[torch.Tensor]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
    ) -> None:
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self.forwards = 0  # batches run
        self.items = 0  # items answered
        self.largest = 0  # largest batch so far
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future[np.ndarray]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: Executor | None = None

    def start(self, executor: Executor) -> None:
        """Start the collecting task on the running event loop."""
        self._executor = executor
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ssgrl-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError("the service is shutting down"))

    async def submit(self, item: torch.Tensor) -> np.ndarray:
        """The row of ``run_batch``'s result that belongs to ``item``."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running (the app's lifespan did not start)")
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    async def _collect(self) -> list[tuple[torch.Tensor, asyncio.Future[np.ndarray]]]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())  # whatever is already waiting
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (TimeoutError, asyncio.QueueEmpty):
                break
        return [(x, f) for x, f in batch if not f.done()]  # a cancelled caller needs no row

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                rows = await loop.run_in_executor(
                    self._executor, self.run_batch, [x for x, _ in batch]
                )
                if len(rows) != len(batch):
                    raise RuntimeError(f"{len(batch)} inputs gave {len(rows)} rows")
            except Exception as err:  # the callers get the error; the service goes on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.forwards += 1
            self.items += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, fut), row in zip(batch, rows, strict=True):
                if not fut.done():
                    fut.set_result(row)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function as ``Predictor.predict_images`` computes it (float32)."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# reading the request


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ServeError(400, f"bad Content-Length header {declared!r}") from None
        if length > max_bytes:
            raise ServeError(
                413, f"the body is {length} bytes, over the limit of {max_bytes} (--max-bytes)"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ServeError(413, f"the body is over the limit of {max_bytes} bytes (--max-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _one_chunk(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def read_uploads(request: Request, limits: Limits) -> list[Upload]:
    """The images of a request: the files of a multipart form, or the body itself."""
    media = _media_type(request)
    if media == "multipart/form-data":
        body = await _read_body(request, limits.max_bytes)
        parser = MultiPartParser(
            request.headers,
            _one_chunk(body),
            max_files=limits.max_files,
            max_fields=100,
            max_part_size=limits.max_bytes,
        )
        try:
            form = await parser.parse()
        except MultiPartException as err:
            status = 413 if err.message.startswith("Too many files") else 422
            raise ServeError(status, f"bad multipart body: {err.message}") from None
        except Exception as err:  # python-multipart's own errors on malformed bodies
            raise ServeError(422, f"bad multipart body: {err}") from None
        uploads: list[Upload] = []
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    uploads.append(Upload(value.filename or key, data, value.content_type))
        finally:
            await form.close()
        if not uploads:
            raise ServeError(
                422, "the form has no file: send each image as a file field (curl -F file=@a.jpg)"
            )
        return uploads
    if media.startswith("image/"):
        body = await _read_body(request, limits.max_bytes)
        return [Upload(request.query_params.get("name") or "image", body, media)]
    raise ServeError(
        415,
        f"unsupported content type {media or '(none)'}: send the image as the body with its "
        "image/* content type, or images as files of a multipart/form-data form",
    )


def decode_upload(
    upload: Upload, max_pixels: int, draft: tuple[int, int] | None = None
) -> Image.Image:
    """The upload as 8-bit RGB (``decode_image``), refused before decoding when its header
    declares more than ``max_pixels`` pixels; ``draft``: a JPEG may be decoded down to that
    size, as ``open_image`` does for files. Raises ``ServeError``."""
    name = upload.name
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ServeError(415, f"{name}: content type {ctype} is not an image")
    if not upload.data:
        raise ServeError(422, f"{name}: empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(upload.data)) as raw:  # lazy: reads the header only
            width, height = raw.size
            if width * height > max_pixels:
                raise ServeError(
                    413,
                    f"{name}: {width}x{height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} (--max-pixels); refused before decoding",
                )
            if draft is not None:
                draft_image(raw, draft)
            raw.load()
            return decode_image(raw)
    except ServeError:
        raise
    except Image.DecompressionBombError as err:
        raise ServeError(413, f"{name}: refused before decoding: {err}") from None
    except UnidentifiedImageError:
        raise ServeError(422, f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise ServeError(422, f"{name}: not a readable image ({err})") from None
    except Exception as err:  # a malformed file can trip a decoder in other ways
        raise ServeError(
            422, f"{name}: not a readable image ({type(err).__name__}: {err})"
        ) from None


@contextlib.asynccontextmanager
async def _failures_are_500() -> AsyncIterator[None]:
    """A failure inside the model or the renderer: this request gets a 500 with the error (the
    traceback goes to the log), the connection and the service go on."""
    try:
        yield
    except ServeError:
        raise
    except Exception as err:
        LOG.exception("request failed")
        raise ServeError(500, f"internal error: {type(err).__name__}: {err}") from err


def _choose_classes(
    wanted: Sequence[str] | None,
    names: list[str],
    probs: np.ndarray,
    thresholds: np.ndarray,
) -> list[int]:
    """``?classes=`` (repeated, or comma-separated) as indices; by default the predicted classes
    (best first, at most ``EXPLAIN_MAX_CLASSES``), or the most likely one when none is."""
    if wanted:
        chosen: list[int] = []
        for value in wanted:
            parts = [value] if value in names else [p.strip() for p in value.split(",")]
            for part in parts:
                if not part:
                    continue
                if part not in names:
                    raise ServeError(422, f"unknown class {part!r}; the model knows {names}")
                chosen.append(names.index(part))
        if chosen:
            return list(dict.fromkeys(chosen))
    order = [int(i) for i in np.argsort(-probs, kind="stable")]
    predicted = [i for i in order if probs[i] >= thresholds[i]][:EXPLAIN_MAX_CLASSES]
    return predicted or order[:1]


def _why_no_attention(predictor: Predictor) -> str | None:
    """None when ``predictor.attention`` works (one probe forward on a gray image at start-up),
    else why not: a baseline model, an engine without attention maps."""
    size = predictor.preprocessing.image_size
    try:
        predictor.attention([Image.new("RGB", (size, size), (128, 128, 128))])
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError) as err:
        return str(err)
    return None


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


NameQuery = Annotated[
    str | None, Query(description="the image's name in the results when it is the raw body")
]

_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "images as files of a multipart form, or one image as the raw body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# --------------------------------------------------------------------------------------------
# the app


def create_app(
    predictor: Predictor,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_files: int = DEFAULT_MAX_FILES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
) -> FastAPI:
    """The service around a loaded ``Predictor`` (see the module doc)."""
    limits = Limits(max_bytes, max_pixels, max_files, batch_size, batch_wait_ms)
    names = list(predictor.class_names)
    thresholds = np.asarray(predictor.thresholds, dtype=np.float64)
    no_explain = _why_no_attention(predictor)
    draft = predictor.preprocessing.draft_size  # uploads decode as the model's files do
    can_explain = no_explain is None
    engine_name = {"TorchEngine": "torch", "OnnxEngine": "onnx"}.get(
        type(predictor.engine).__name__, type(predictor.engine).__name__
    )

    def forward(tensors: list[torch.Tensor]) -> np.ndarray:
        return _sigmoid(np.asarray(predictor.engine.logits(torch.stack(tensors))))

    batcher = MicroBatcher(forward, batch_size, batch_wait_ms / 1000.0)
    model_thread: dict[str, ThreadPoolExecutor] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssgrl-model")
        model_thread["executor"] = executor
        batcher.start(executor)
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=True)

    app = FastAPIOffline(  # FastAPI whose /docs and /redoc pages load no script from a CDN
        title="ssgrl",
        version=__version__,
        summary="SSGRL multi-label image recognition: labels, scores and attention maps",
        lifespan=lifespan,
    )
    app.state.predictor, app.state.limits, app.state.batcher = predictor, limits, batcher

    @app.exception_handler(ServeError)
    async def _input_error(_: Request, err: ServeError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    def prepare(upload: Upload) -> torch.Tensor | ServeError:
        """Decode and preprocess in a worker thread; the error instead of raising it."""
        try:
            image = decode_upload(upload, limits.max_pixels, draft)
            return predictor.batch([image])[0]
        except ServeError as err:
            return err

    @app.post(
        "/predict",
        summary="Labels and scores of one or more images",
        openapi_extra=_IMAGE_BODY,
    )
    async def predict(
        request: Request,
        top_k: Annotated[int | None, Query(ge=1, description="at most K labels per image")] = None,
        name: NameQuery = None,
    ) -> JSONResponse:
        uploads = await read_uploads(request, limits)
        async with _failures_are_500():
            prepared = await asyncio.gather(*(run_in_threadpool(prepare, u) for u in uploads))

        async def score(item: torch.Tensor | ServeError) -> np.ndarray | ServeError:
            return item if isinstance(item, ServeError) else await batcher.submit(item)

        async with _failures_are_500():
            scored = await asyncio.gather(*(score(item) for item in prepared))
        results: list[dict[str, Any]] = []
        errors: list[ServeError] = []
        for upload, item in zip(uploads, scored, strict=True):
            if isinstance(item, ServeError):
                errors.append(item)
                results.append({"image": upload.name, "error": item.message, "status": item.status})
            else:
                results.append(prediction_record(upload.name, item, names, thresholds, top_k))
        body: dict[str, Any] = {"results": results, "threshold_source": predictor.threshold_source}
        if len(errors) == len(uploads):  # nothing to show: the request itself failed
            return JSONResponse({"detail": errors[0].message, **body}, status_code=errors[0].status)
        return JSONResponse(body)

    @app.post(
        "/explain",
        summary="Attention maps of one image: a PNG of overlays, or the maps as JSON",
        openapi_extra=_IMAGE_BODY,
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    )
    async def explain(
        request: Request,
        format: Annotated[Literal["png", "json"], Query(description="png or json")] = "png",
        classes: Annotated[
            list[str] | None,
            Query(description="classes to show (repeat, or comma-separate); default: predicted"),
        ] = None,
        name: NameQuery = None,
    ) -> Response:
        if no_explain is not None:
            raise ServeError(501, f"this service has no attention maps: {no_explain}")
        uploads = await read_uploads(request, limits)
        if len(uploads) != 1:
            raise ServeError(422, f"/explain takes one image, got {len(uploads)}")
        upload = uploads[0]
        image = await run_in_threadpool(decode_upload, upload, limits.max_pixels, draft)
        loop = asyncio.get_running_loop()
        async with _failures_are_500():
            probs, maps = await loop.run_in_executor(
                model_thread["executor"], predictor.attention, [image]
            )
        probs, maps = probs[0], maps[0]
        idx = _choose_classes(classes, names, probs, thresholds)
        async with _failures_are_500():
            view = await run_in_threadpool(predictor.view, image)
        if format == "json":
            return JSONResponse(
                {
                    "image": upload.name,
                    "classes": [names[i] for i in idx],
                    "probabilities": [float(probs[i]) for i in idx],
                    "thresholds": [float(thresholds[i]) for i in idx],
                    "map_shape": list(maps.shape[1:]),
                    "maps": maps[idx].astype(np.float64).tolist(),
                    "view_size": {"width": view.width, "height": view.height},
                }
            )
        async with _failures_are_500():
            picture = await run_in_threadpool(
                render_explanation,
                view,
                maps[idx],
                [names[i] for i in idx],
                [float(probs[i]) for i in idx],
            )
        return Response(await run_in_threadpool(_png, picture), media_type="image/png")

    @app.get("/health", summary="Liveness, engine and batching counters")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "engine": engine_name,
            "num_classes": len(names),
            "explain": can_explain,
            "limits": asdict(limits),
            "batching": {
                "forwards": batcher.forwards,
                "images": batcher.items,
                "largest_batch": batcher.largest,
            },
        }

    @app.get("/classes", summary="Class names, thresholds and preprocessing")
    async def get_classes() -> dict[str, Any]:
        return {
            "class_names": names,
            "thresholds": [float(t) for t in thresholds],
            "threshold_source": predictor.threshold_source,
            "preprocessing": asdict(predictor.preprocessing),
            "engine": engine_name,
            "explain": can_explain,
            "explain_note": no_explain,  # why there are no attention maps, when there are none
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


# --------------------------------------------------------------------------------------------
# running it


class BackgroundServer:
    """Run an app under uvicorn in a thread on a loopback address (tests, benchmarks):
    ``with BackgroundServer(app) as server: httpx.get(server.url + "/health")``. Port 0 (the
    default) takes a free port, bound before the thread starts."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"BackgroundServer serves on loopback only, not {host}")
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host, self.port = host, self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30.0)
        self.socket.close()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="an ssgrl checkpoint (.ckpt) or .onnx")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--engine",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="torch for a checkpoint, onnx for an exported file; auto by suffix (default)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one threshold for every class (default: the checkpoint's per-class ones, else 0.5)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile with frozen weights (BatchNorm folded, "
        "weights pre-packed): faster per image after a one-off compilation of tens of seconds "
        "on a CPU; compiled before the server starts listening. PyTorch checkpoints only",
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help=f"largest request body in bytes, else 413 (default {DEFAULT_MAX_BYTES})",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="largest image (width x height from its header, checked before decoding), else "
        f"413 (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=DEFAULT_MAX_FILES,
        help=f"most files in one multipart request (default {DEFAULT_MAX_FILES})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"most images in one forward pass (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_BATCH_WAIT_MS,
        help="how long a request waits for others to share its forward pass "
        f"(default {DEFAULT_BATCH_WAIT_MS:g} ms)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        limits = Limits(
            args.max_bytes, args.max_pixels, args.max_files, args.batch_size, args.batch_wait_ms
        )
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            engine=args.engine,
            threshold=args.threshold,
            compile=args.compile,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"ssgrl serve: error: {err}", file=sys.stderr)
        return 2
    if args.compile:  # compile at the largest batch now, not in the first request
        size = predictor.preprocessing.image_size
        print(f"ssgrl serve: compiling the network (batch {args.batch_size})...", file=sys.stderr)
        predictor.engine.logits(torch.zeros(args.batch_size, 3, size, size))
    # Pillow refuses (DecompressionBombError) past twice this; our own check comes first
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    app = create_app(predictor, **asdict(limits))
    print(
        f"ssgrl serve: {len(predictor.class_names)} classes, {predictor.threshold_source}; "
        f"http://{args.host}:{args.port}/ (API docs at /docs)",
        file=sys.stderr,
    )
    with contextlib.suppress(ValueError):  # a host name rather than an address
        if not ipaddress.ip_address(args.host).is_loopback:
            print(
                f"ssgrl serve: listening on {args.host}, beyond this machine; the service has "
                "no authentication (put a reverse proxy that has in front of it)",
                file=sys.stderr,
            )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
