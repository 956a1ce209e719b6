"""Run an exported ONNX file (``ssgrl export``) with onnxruntime.

``OnnxEngine(path)`` is the ``Engine`` a ``Predictor`` uses for ``.onnx`` files (``Predictor(
"model.onnx")``, ``ssgrl predict --engine onnx``): class names, preprocessing and thresholds
come from the file's metadata, ``logits`` runs onnxruntime.

This module imports only numpy and onnxruntime (and Pillow for ``preprocess``): with the
plain-data attributes (``preprocessing_dict``, ``thresholds_dict``) and ``preprocess`` it runs
without PyTorch::

    engine = OnnxEngine("model.onnx")
    x = np.stack([preprocess(Image.open(p), engine.preprocessing_dict) for p in paths])
    probabilities = 1 / (1 + np.exp(-engine.logits(x)))

The typed ``preprocessing`` and ``thresholds`` attributes (``Preprocessing``, ``Thresholds``) are
built on first use and import ssgrl's data and checkpoint modules, hence PyTorch; so does the
``Predictor``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    from PIL import Image

    from ssgrl.checkpoint import Thresholds
    from ssgrl.data.transforms import Preprocessing

INPUT_NAME = "images"
SUPPORTED_FORMAT = 1


class OnnxFileError(ValueError):
    """An ONNX file that is not an ssgrl export (or a newer one); the message names the file."""


def default_threads() -> int:
    """PyTorch's intra-op thread count when PyTorch is loaded, else ``OMP_NUM_THREADS``, else 0
    (onnxruntime's default: one thread per physical core)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


def _providers(device: str) -> list[Any]:
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"device {device}: this onnxruntime has no CUDA provider (available: "
                f"{', '.join(available)}); install onnxruntime-gpu or use device cpu"
            )
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or auto")


class OnnxEngine:
    """An ``ssgrl export`` ONNX file in an onnxruntime session; implements ``Engine``.

    ``threads``: onnxruntime's intra-op threads (default ``default_threads()``, i.e. the same
    as PyTorch's ``torch.get_num_threads()`` when PyTorch is loaded)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file {self.path}: no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = default_threads() if threads is None else threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        providers = _providers(device)
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers
            )
        except Exception as err:  # onnxruntime's own exception types
            raise OnnxFileError(
                f"ONNX file {self.path}: onnxruntime cannot load it ({err})"
            ) from err
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.outputs: list[str] = [o.name for o in self.session.get_outputs()]
        self._check_metadata()
        meta = self.metadata
        self.class_names: list[str] = [str(c) for c in json.loads(meta["class_names"])]
        self.preprocessing_dict: dict[str, Any] = dict(json.loads(meta["preprocessing"]))
        th = meta.get("thresholds")
        self.thresholds_dict: dict[str, Any] | None = None if th is None else json.loads(th)
        shape = self.session.get_inputs()[0].shape  # ['batch', 3, S, S]
        self.input_shape: tuple[int, int, int] = tuple(int(d) for d in shape[1:])  # type: ignore[assignment]
        self._preprocessing: Preprocessing | None = None
        self._thresholds: Thresholds | None = None

    def _check_metadata(self) -> None:
        meta = self.metadata
        if "ssgrl_onnx_format" not in meta:
            raise OnnxFileError(
                f"ONNX file {self.path}: not an ssgrl export (no ssgrl metadata); write one "
                "with `ssgrl export --checkpoint CKPT --format onnx --out FILE`"
            )
        version = int(meta["ssgrl_onnx_format"])
        if version > SUPPORTED_FORMAT:
            raise OnnxFileError(
                f"ONNX file {self.path}: format {version} is newer than this ssgrl understands "
                f"({SUPPORTED_FORMAT}); upgrade ssgrl"
            )
        missing = [k for k in ("class_names", "preprocessing") if k not in meta]
        names = [i.name for i in self.session.get_inputs()]
        if missing or names != [INPUT_NAME] or "logits" not in self.outputs:
            raise OnnxFileError(
                f"ONNX file {self.path}: malformed ssgrl export (metadata missing {missing}, "
                f"inputs {names}, outputs {self.outputs})"
            )
        try:
            json.loads(meta["class_names"])
            json.loads(meta["preprocessing"])
            if "thresholds" in meta:
                json.loads(meta["thresholds"])
        except json.JSONDecodeError as err:
            raise OnnxFileError(
                f"ONNX file {self.path}: metadata is not valid JSON ({err})"
            ) from None

    # --- the Engine attributes; typed forms built on first use (they import PyTorch) ----------

    @property
    def preprocessing(self) -> Preprocessing:
        if self._preprocessing is None:
            from ssgrl.data.transforms import Preprocessing

            self._preprocessing = Preprocessing.from_dict(self.preprocessing_dict)
        return self._preprocessing

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing) -> None:
        self._preprocessing = value

    @property
    def thresholds(self) -> Thresholds | None:
        if self._thresholds is None and self.thresholds_dict is not None:
            from ssgrl.checkpoint import Thresholds

            th = self.thresholds_dict
            self._thresholds = Thresholds(
                values=[float(v) for v in th["values"]],
                fitted_on=str(th["fitted_on"]),
                method=str(th["method"]),
                notes=[str(n) for n in th.get("notes") or []],
            )
        return self._thresholds

    @thresholds.setter
    def thresholds(self, value: Thresholds | None) -> None:
        self._thresholds = value

    # --- running ------------------------------------------------------------------------------

    def _input(self, images: Any) -> np.ndarray:
        if hasattr(images, "detach"):  # a torch.Tensor, without importing torch
            images = images.detach().cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.path.name} takes images (batch, {', '.join(map(str, self.input_shape))})"
                f", got {tuple(x.shape)}"
            )
        return x

    def run(self, images: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The named outputs (default all) for normalised images (B, 3, S, S)."""
        names = list(self.outputs if outputs is None else outputs)
        values = self.session.run(names, {INPUT_NAME: self._input(images)})
        return dict(zip(names, values, strict=True))

    def logits(self, images: Any) -> np.ndarray:
        """Normalised images (B, 3, S, S) float32 (numpy or torch) -> logits (B, C) float32."""
        return np.asarray(self.run(images, ["logits"])["logits"], dtype=np.float32)

    def logits_and_attention(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Logits (B, C) and attention maps (B, C, h, w) (SSGRL files exported with them)."""
        if "attention" not in self.outputs:
            raise ValueError(
                f"{self.path.name} has no attention output (a baseline, or exported with "
                "--no-attention)"
            )
        out = self.run(images, ["logits", "attention"])
        return out["logits"], out["attention"]


# --- preprocessing without PyTorch --------------------------------------------------------------

_RESAMPLE = {"bilinear": 2, "bicubic": 3, "nearest": 0}  # PIL.Image.Resampling values


def preprocess(image: Image.Image, preprocessing: Preprocessing | Mapping[str, Any]) -> np.ndarray:
    """One image as the network's input (3, S, S) float32, with Pillow and numpy only: the same
    decoding (``ssgrl.data.decode.decode_image``: EXIF orientation, alpha over white, 8-bit RGB),
    resize, centre crop and normalisation as the ``Predictor`` (``eval_transform``), equal to it
    within float rounding. ``preprocessing``: a ``Preprocessing`` or its dict
    (``OnnxEngine.preprocessing_dict``). With its ``jpeg_draft``, a JPEG from ``Image.open`` that
    is not loaded yet is decoded at reduced scale, as the ``Predictor`` decodes files."""
    from ssgrl.data.decode import decode_image

    pre = preprocessing if isinstance(preprocessing, Mapping) else preprocessing.to_dict()
    size = int(pre["image_size"])
    resize = int(pre.get("resize") or size)
    interpolation = str(pre.get("interpolation", "bilinear"))
    if interpolation not in _RESAMPLE:
        raise ValueError(f"preprocessing: interpolation {interpolation!r} is not supported")
    draft = (resize, resize) if pre.get("jpeg_draft") else None
    img = decode_image(image, draft)
    if img.size != (resize, resize):
        img = img.resize((resize, resize), resample=_RESAMPLE[interpolation])
    if resize != size:
        top = left = round((resize - size) / 2.0)  # as torchvision's CenterCrop
        img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.uint8).astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(pre["mean"], dtype=np.float32)
    std = np.asarray(pre["std"], dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))
