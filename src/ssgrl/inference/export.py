"""``ssgrl export --checkpoint CKPT --format onnx --out model.onnx``: the whole network (backbone
and head) as one ONNX file that onnxruntime runs without PyTorch.

The graph takes ``images`` (batch, 3, S, S): float32, RGB, resized, centre-cropped and normalised
as the checkpoint's preprocessing says (the batch dimension is dynamic, S is fixed). It gives
``logits`` (batch, C) and, for SSGRL, ``attention`` (batch, C, h, w): the per-class attention
maps, which the logits need anyway (the softmax is part of the head), so the second output costs
one transpose. In the decoupling, P, b and f_a are folded into one d1 -> 1 map (exact: nothing
non-linear separates them); the file holds that vector, not the d1 x d2 matrix P.

Everything needed to use the file travels in its ``metadata_props`` (``METADATA_KEYS``): class
names, preprocessing, the fitted per-class thresholds (absent when the checkpoint has none), the
ssgrl version, the opset and the source checkpoint's sha256.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript), the one that
torch 2.14 recommends and uses by default, at ONNX opset ``DEFAULT_OPSET`` (torch's default
today, pinned here so the files do not change with a torch upgrade).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssgrl.checkpoint import Model, load_model, package_version
from ssgrl.models.decoupling import SemanticDecoupling
from ssgrl.models.ssgrl import SSGRL
from ssgrl.provenance import sha256_file

PROG = "ssgrl export"
DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's own (torchlib) opset: below it, it cannot convert
FORMAT_VERSION = 1
INPUT_NAME = "images"
TOLERANCE = 1e-4  # max |logit difference| between onnxruntime and PyTorch accepted by the check
METADATA_KEYS = (
    "ssgrl_onnx_format",  # "1"
    "class_names",  # JSON list, the order of the logits
    "preprocessing",  # JSON of Preprocessing.to_dict()
    "thresholds",  # JSON {values, fitted_on, method, notes}; absent when none were fitted
    "ssgrl_version",
    "opset",
    "source_sha256",  # of the checkpoint file (absent when the model did not come from a file)
    "source_name",  # the checkpoint's file name
    "model_config",  # JSON of ModelConfig.to_dict()
    "outputs",  # JSON list: ["logits"] or ["logits", "attention"]
    "exporter",  # torch / onnxscript versions
    "check_max_abs_diff",  # onnxruntime vs PyTorch on a random batch (absent without the check)
)


class ExportError(RuntimeError):
    """The export failed, or the exported file does not reproduce the PyTorch logits."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    opset: int
    outputs: tuple[str, ...]
    input_shape: tuple[int | str, ...]
    output_shapes: dict[str, tuple[int | str, ...]]
    max_abs_diff: float | None  # onnxruntime vs PyTorch on the check batch; None if not checked
    seconds: float
    size_bytes: int


class _Exportable(nn.Module):
    """What the exporter traces: a copy of the network with the decoupling folded, in eval mode,
    giving (logits,) or (logits, attention).

    The network sits under ``net``: ``torch.export`` cannot trace SSGRL as its root module,
    because the root becomes an ``fx.GraphModule`` whose own ``graph`` attribute hides
    ``SSGRL.graph`` (the GGNN)."""

    def __init__(self, net: nn.Module, attention: bool) -> None:
        super().__init__()
        net = copy.deepcopy(net).eval()  # the caller's model is left as it is
        has_attention = isinstance(net, SSGRL) and net.has_attention
        if isinstance(net, SSGRL) and isinstance(net.decoupling, SemanticDecoupling):
            net.decoupling = net.decoupling.folded()  # type: ignore[assignment]
        self.net = net
        self.attention = attention and has_attention
        self.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.attention:
            return tuple(self.net.forward_with_attention(images))  # type: ignore[operator]
        return (self.net(images),)


def export_onnx(
    model: Model,
    path: str | Path,
    *,
    source: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    attention: bool = True,
    overwrite: bool = False,
    check: bool = True,
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Write ``model`` (a checkpoint's ``Model``) to ``path`` as ONNX and return what was written.

    ``source``: the checkpoint file the model came from (its sha256 and name go into the
    metadata). ``attention``: add the SSGRL ``attention`` output (ignored for the baseline
    and for SSGRL without semantic decoupling, which have none).
    ``check``: run the written file in onnxruntime on a random batch of 3 and refuse it (write
    nothing) unless every logit is within ``tolerance`` of PyTorch's. The file is written to a
    temporary name beside ``path`` and renamed: it never replaces a file unless ``overwrite``.
    """
    import onnxscript

    start = time.perf_counter()
    path = Path(path)
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset}: the PyTorch exporter writes opset {MIN_OPSET} or newer")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another path or pass --overwrite")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of the .onnx file to write")
    meta = model.meta
    size = meta.preprocessing.image_size
    module = _Exportable(model.net, attention)
    outputs = ("logits", "attention") if module.attention else ("logits",)
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_shapes=({0: batch},),
            optimize=True,
            verbose=False,
        )
    except Exception as err:
        raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: {err}") from err
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    written = program.model.opset_imports.get("")
    if written != opset:
        raise ExportError(f"the exporter wrote opset {written}, not the {opset} asked for")

    props: dict[str, str] = {
        "ssgrl_onnx_format": str(FORMAT_VERSION),
        "class_names": json.dumps(list(meta.class_names)),
        "preprocessing": json.dumps(meta.preprocessing.to_dict()),
        "ssgrl_version": package_version(),
        "opset": str(opset),
        "model_config": json.dumps(meta.model.to_dict()),
        "outputs": json.dumps(list(outputs)),
        "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=True), "
        f"onnxscript {onnxscript.__version__}",
    }
    if meta.thresholds is not None:
        th = meta.thresholds
        props["thresholds"] = json.dumps(
            {
                "values": list(th.values),
                "fitted_on": th.fitted_on,
                "method": th.method,
                "notes": list(th.notes),
            }
        )
    if source is not None:
        props["source_sha256"] = sha256_file(source)
        props["source_name"] = Path(source).name
    props = {k: props[k] for k in METADATA_KEYS if k in props}

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the file to its final name
    try:
        max_diff: float | None = None
        if check:
            _save(program, tmp, props)
            max_diff = check_onnx(model, tmp)
            if not max_diff <= tolerance:  # NaN fails too
                raise ExportError(
                    f"onnxruntime does not reproduce the PyTorch logits: max |difference| "
                    f"{max_diff:.3g} > {tolerance:g} on a random batch; nothing written"
                )
            props["check_max_abs_diff"] = f"{max_diff:.3g}"
        _save(program, tmp, props)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _install(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportResult(
        path=path,
        opset=opset,
        outputs=outputs,
        input_shape=_shape(program.model.graph.inputs[0]),
        output_shapes={str(v.name): _shape(v) for v in program.model.graph.outputs},
        max_abs_diff=max_diff,
        seconds=time.perf_counter() - start,
        size_bytes=path.stat().st_size,
    )


def _shape(value: Any) -> tuple[int | str, ...]:
    """An onnx_ir value's shape: ints, and names for the symbolic dimensions."""
    return tuple(d if isinstance(d, int) else str(d) for d in value.shape)


def _save(program: torch.onnx.ONNXProgram, path: Path, props: dict[str, str]) -> None:
    model = program.model  # an onnx_ir Model
    model.metadata_props.clear()
    model.metadata_props.update(props)
    model.doc_string = (
        "ssgrl multi-label classifier: input 'images' (batch, 3, S, S) float32 normalised RGB "
        f"(see metadata 'preprocessing'); outputs {', '.join(json.loads(props['outputs']))}; "
        "class order in metadata 'class_names'."
    )
    # one self-contained file: every ssgrl network is far below protobuf's 2 GB limit
    program.save(path, external_data=False)


def _install(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path`` atomically; without ``overwrite`` an existing file (even one
    that appeared during the export) is never replaced."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and fails if path exists
    except FileExistsError:
        raise FileExistsError(f"{path} exists; choose another path or pass --overwrite") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(
                f"{path} exists; choose another path or pass --overwrite"
            ) from None
        os.replace(tmp, path)


def check_onnx(model: Model, path: str | Path, batch_size: int = 3, seed: int = 0) -> float:
    """Max |logit difference| between onnxruntime (CPU) running ``path`` and PyTorch running
    ``model`` on the same random normalised batch (of a size other than the export example's,
    so the dynamic batch dimension is exercised)."""
    from ssgrl.inference.onnx_engine import OnnxEngine

    size = model.preprocessing.image_size
    images = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    try:
        with torch.inference_mode():
            expected = model.eval()(images).float().numpy()
    finally:
        model.train(was_training)
    got = OnnxEngine(path, "cpu").logits(images)
    return float(np.max(np.abs(got - expected)))


# --- command line ---------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export a checkpoint's whole network (backbone and head) for deployment without "
        "PyTorch. ONNX: input 'images' (batch, 3, S, S), outputs 'logits' (batch, C) and, for "
        "SSGRL, 'attention' (batch, C, h, w); class names, preprocessing and thresholds travel "
        "in the file's metadata. Run it with `ssgrl predict --engine onnx` or onnxruntime."
    )
    parser.add_argument("--checkpoint", required=True, help="an ssgrl checkpoint (.ckpt)")
    parser.add_argument(
        "--format", choices=("onnx",), default="onnx", help="output format (default onnx)"
    )
    parser.add_argument("--out", required=True, help="the file to write (e.g. model.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET}: the PyTorch exporter's "
        "default)",
    )
    parser.add_argument(
        "--no-attention",
        dest="attention",
        action="store_false",
        help="SSGRL: leave out the 'attention' output (logits only)",
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip the check that onnxruntime reproduces the PyTorch logits (within "
        f"{TOLERANCE:g}) on a random batch",
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:  # before the checkpoint is read: exporting is slow
        print(
            f"{PROG}: error: {out} exists; choose another path or pass --overwrite", file=sys.stderr
        )
        return 2
    try:
        model = load_model(args.checkpoint)
        result = export_onnx(
            model,
            out,
            source=args.checkpoint,
            opset=args.opset,
            attention=args.attention,
            overwrite=args.overwrite,
            check=args.check,
        )
    except ExportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:  # missing/unreadable checkpoint, existing --out
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2

    def dims(shape: tuple[int | str, ...]) -> str:
        return "(" + ", ".join(str(d) for d in shape) + ")"

    print(
        f"wrote {result.path} (ONNX opset {result.opset}, {result.size_bytes / 2**20:.1f} MiB, "
        f"{result.seconds:.0f} s): input {INPUT_NAME} {dims(result.input_shape)}; outputs "
        + ", ".join(f"{k} {dims(v)}" for k, v in result.output_shapes.items())
    )
    if result.max_abs_diff is not None:
        print(
            f"check: onnxruntime reproduces the PyTorch logits, max |difference| "
            f"{result.max_abs_diff:.2g} on a random batch of 3"
        )
    return 0
