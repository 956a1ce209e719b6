"""Load a checkpoint once, predict many images: the code behind ``ssgrl predict`` and
``ssgrl explain``, usable from Python."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ssgrl.checkpoint import Model, Thresholds, load_model
from ssgrl.data.decode import IMAGE_EXTENSIONS, ImageDecodeError, decode_image, open_image
from ssgrl.data.threaded import batches_in_threads
from ssgrl.data.transforms import (
    Preprocessing,
    eval_geometry,
    eval_pixels,
    eval_transform,
    normalize_batch,
)

LIST_EXTENSIONS = (".txt", ".lst", ".list")


@dataclass
class Prediction:
    """One input: its probabilities (C,), or the error that stopped it."""

    image: str
    probabilities: np.ndarray | None = None
    error: str | None = None


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files as given, folders searched recursively for images (sorted), and text files
    (.txt/.lst/.list) read as one path per line, relative to the list's folder."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                )
            )
        elif path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line)
                    paths.append(entry if entry.is_absolute() else path.parent / entry)
        else:
            paths.append(path)  # a missing or unreadable file becomes an error line later
    return paths


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Engine(Protocol):
    """What runs the network for a ``Predictor``: the checkpoint's PyTorch model
    (``TorchEngine``) or an exported ONNX file (``ssgrl.inference.onnx_engine.OnnxEngine``)."""

    class_names: list[str]
    preprocessing: Preprocessing
    thresholds: Thresholds | None

    def logits(self, images: torch.Tensor) -> np.ndarray:
        """Normalised images (B, 3, H, W) float32 -> logits (B, C) float32."""
        raise NotImplementedError


class TorchEngine:
    """A checkpoint's ``Model`` on a device, in eval mode, under ``torch.inference_mode``.

    ``compile``: ``logits`` runs the network through ``torch.compile`` with Inductor's
    freezing (weights become constants: BatchNorm folded into the convolutions, weights
    pre-packed for oneDNN on the CPU). The first batch pays the compilation (tens of seconds
    on a CPU, cached on disk by Inductor for the next run); outputs equal the eager network's
    within float rounding. Batches smaller than the largest seen are padded to it, so a last
    partial batch does not compile again. Attention maps (``explain``) run eagerly.
    """

    def __init__(self, model: Model, device: str = "cpu", compile: bool = False) -> None:
        self.device = _device(device)
        self.model = model.eval().to(self.device)
        self.class_names: list[str] = model.class_names
        self.preprocessing: Preprocessing = model.preprocessing
        self.thresholds: Thresholds | None = model.thresholds
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = (
            compile_for_inference(self.model) if compile else None
        )
        self._padded_batch = 0  # the batch size the compiled network runs at

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> np.ndarray:
        images = images.to(self.device)
        if self.compiled is None:
            return self.model(images).float().cpu().numpy()
        count = images.shape[0]
        self._padded_batch = max(self._padded_batch, count)
        # always a fresh tensor made here (the same kind of tensor every call, so no guard
        # fails); images are independent in eval mode, so zero padding changes none of them
        batch = images.new_zeros((self._padded_batch, *images.shape[1:]))
        batch[:count] = images
        return self.compiled(batch)[:count].float().cpu().numpy()

    @torch.inference_mode()
    def logits_and_attention(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        logits, attention = self.model.forward_with_attention(images.to(self.device))
        return logits.float().cpu().numpy(), attention.float().cpu().numpy()


def compile_for_inference(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` (in eval mode, called under ``torch.inference_mode``) through ``torch.compile``
    with Inductor's freezing: its weights become constants, so BatchNorm folds into the
    convolutions and the weights are pre-packed once."""
    return torch.compile(module, options={"freezing": True})  # type: ignore[return-value]


def load_engine(
    path: str | Path, engine: str = "auto", device: str = "cpu", compile: bool = False
) -> Engine:
    """``torch`` for an ssgrl checkpoint, ``onnx`` for an exported file; ``auto`` by suffix.
    ``compile``: see ``TorchEngine`` (the torch engine only)."""
    path = Path(path)
    if engine == "auto":
        engine = "onnx" if path.suffix.lower() == ".onnx" else "torch"
    if engine == "torch":
        return TorchEngine(load_model(path), device, compile)
    if compile:
        raise ValueError("--compile applies to PyTorch checkpoints, not to ONNX files")
    if engine == "onnx":
        from ssgrl.inference.onnx_engine import OnnxEngine

        return OnnxEngine(path, device)
    raise ValueError(f"unknown engine {engine!r}; expected auto, torch or onnx")


class Predictor:
    """``Predictor("best.ckpt").predict_paths(paths)`` yields one ``Prediction`` per path.

    Labels are decided per class by the checkpoint's fitted thresholds when it has them, else
    at 0.5; ``threshold`` overrides both with one value for every class. ``compile``: run the
    network through ``torch.compile`` (see ``TorchEngine``): worth its start-up cost for a
    folder of images or a server, not for a handful.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model: Model | None = None,
        device: str = "cpu",
        engine: str = "auto",
        threshold: float | None = None,
        compile: bool = False,
    ) -> None:
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of checkpoint or model")
        self.engine: Engine = (
            TorchEngine(model, device, compile)
            if model is not None
            else load_engine(checkpoint, engine, device, compile)  # type: ignore[arg-type]
        )
        self.class_names: list[str] = list(self.engine.class_names)
        self.preprocessing: Preprocessing = self.engine.preprocessing
        self.transform = eval_transform(self.preprocessing)
        self.geometry = eval_geometry(self.preprocessing)
        fitted = self.engine.thresholds
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
            self.thresholds = np.full(len(self.class_names), float(threshold), dtype=np.float64)
            self.threshold_source = f"one threshold for every class: {threshold:g} (given)"
        elif fitted is not None:
            self.thresholds = np.asarray(fitted.values, dtype=np.float64)
            self.threshold_source = f"per class, {fitted.method}, fitted on {fitted.fitted_on}"
        else:
            self.thresholds = np.full(len(self.class_names), 0.5, dtype=np.float64)
            self.threshold_source = "one threshold for every class: 0.5 (the checkpoint has none)"

    @property
    def model(self) -> Model:
        """The PyTorch model (torch engine only)."""
        if not isinstance(self.engine, TorchEngine):
            raise ValueError("this predictor runs an ONNX file: it has no PyTorch model")
        return self.engine.model

    def open(self, path: str | Path) -> Image.Image:
        """Decode an image file as every path of this model does (``open_image`` with the
        checkpoint's JPEG draft size, see ``Preprocessing.jpeg_draft``)."""
        return open_image(path, self.preprocessing.draft_size)

    def view(self, image: Image.Image) -> Image.Image:
        """The image as the network sees it (resized and centre-cropped, not normalised)."""
        return self.geometry(decode_image(image, self.preprocessing.draft_size))

    def batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Images as the network's input (B, 3, H, W); a JPEG from ``Image.open`` that is not
        loaded yet is decoded as ``open`` decodes files (already decoded images as they are)."""
        draft = self.preprocessing.draft_size
        return torch.stack([self.transform(decode_image(img, draft)) for img in images])

    def predict_logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Logits (B, C) of decoded images."""
        if not images:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self.engine.logits(self.batch(images))

    def predict_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Probabilities (B, C) of decoded images."""
        return _sigmoid(self.predict_logits(images))

    def predict_paths(
        self, paths: Iterable[str | Path], batch_size: int = 16, num_workers: int | None = None
    ) -> Iterator[Prediction]:
        """Decode and predict in batches, in input order; an unreadable file gives an error
        ``Prediction`` and the others go on.

        Files are opened (``open``), decoded and preprocessed by ``num_workers`` DataLoader
        worker processes (``None``: ``default_num_workers(device)``; 0: in this process) while
        the network runs on the previous batch. A single batch is always decoded in this
        process (starting workers would cost more than they save)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = getattr(self.engine, "device", None)
        workers = default_num_workers(device) if num_workers is None else num_workers
        if workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        files = _ImageFiles(
            list(paths), eval_pixels(self.preprocessing), self.preprocessing.draft_size
        )
        if len(files) <= batch_size:
            workers = 0
        batches: Iterable[tuple[torch.Tensor | None, list[str | None]]]
        if workers == 0:
            batches = batches_in_threads(files, batch_size, _collate)
        else:
            batches = DataLoader(
                files,
                batch_size=batch_size,
                shuffle=False,
                num_workers=workers,
                collate_fn=_collate,
                pin_memory=isinstance(device, torch.device) and device.type == "cuda",
            )
        start = 0
        for pixels, errors in batches:
            probs: Iterator[np.ndarray] = iter(())
            if pixels is not None:
                if isinstance(device, torch.device):  # uint8 to the GPU, normalised there
                    pixels = pixels.to(device, non_blocking=True)
                images = normalize_batch(pixels, self.preprocessing)
                probs = iter(_sigmoid(self.engine.logits(images)))
            for k, error in enumerate(errors):
                name = files.names[start + k]
                if error is not None:
                    yield Prediction(image=name, error=error)
                else:
                    yield Prediction(image=name, probabilities=next(probs))
            start += len(errors)

    def attention(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (B, C) and attention maps (B, C, h, w) of decoded images."""
        if not isinstance(self.engine, TorchEngine):
            raise ValueError("attention maps need the PyTorch checkpoint (--engine torch)")
        logits, attention = self.engine.logits_and_attention(self.batch(images))
        return _sigmoid(logits), attention

    def explain(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, Image.Image]:
        """Probabilities (C,), attention maps (C, h, w) and the image as the model saw it."""
        probs, attention = self.attention([image])
        return probs[0], attention[0], self.view(image)


def default_num_workers(device: torch.device | str | None = None) -> int:
    """Decoding workers for a network on ``device`` (None: the CPU).

    - On a GPU: one per CPU this process may use beyond the main one, at most 4 (0 on one CPU).
    - On the CPU the network's threads already use every core, so a worker only takes time
      from them: measured on 2 CPUs (``benchmarks/data_path.py``), 1 worker was 6-10% slower
      than decoding in this process. 0 below 4 CPUs, then one per 4 CPUs, at most 4.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if device is not None and torch.device(device).type != "cpu":
        return max(0, min(4, cpus - 1))
    return 0 if cpus < 4 else min(4, cpus // 4)


class _ImageFiles(Dataset[tuple[torch.Tensor | None, str | None]]):
    """Image files as uint8 pixels: item i is (tensor (3, H, W), None), or (None, the error
    message) for a file ``open_image`` cannot read. Runs in DataLoader workers or threads."""

    def __init__(
        self,
        paths: list[str | Path],
        transform: Callable[[Image.Image], torch.Tensor],
        draft: tuple[int, int] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.names = [str(p) for p in paths]
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str | None]:
        try:
            image = open_image(self.paths[index], self.draft)
        except ImageDecodeError as err:
            return None, str(err)
        return self.transform(image), None


def _collate(
    items: list[tuple[torch.Tensor | None, str | None]],
) -> tuple[torch.Tensor | None, list[str | None]]:
    """The decoded images of a batch stacked (B', 3, H, W) (None if none decoded), and one error
    message or None per item, in order."""
    tensors = [x for x, _ in items if x is not None]
    return (torch.stack(tensors) if tensors else None), [err for _, err in items]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


def select_labels(
    probabilities: np.ndarray, class_names: Sequence[str], threshold: float, top_k: int | None
) -> list[str]:
    """Classes with probability >= threshold, best first; at most ``top_k`` of them."""
    order = np.argsort(-probabilities, kind="stable")
    chosen = [int(i) for i in order if probabilities[i] >= threshold]
    if top_k is not None:
        chosen = chosen[:top_k]
    return [class_names[i] for i in chosen]
