"""Prediction throughput (images/s) of the two engines on the same checkpoint: PyTorch
(``TorchEngine``) and onnxruntime running the ``ssgrl export`` file (``OnnxEngine``), CPU.

The model: the demo's SSGRL configuration (ImageNet EfficientNet-Lite0 from the offline package,
d1 = d2 = 256, T = 3, 16 classes, 50-d label embeddings, 224 px); the head's weights are random
(speed does not depend on their values). ``--checkpoint`` measures any other checkpoint instead,
e.g. ``demo_out/latest/ssgrl/checkpoints/best.ckpt``. Measured:

- **tensors**: ``engine.logits`` on a pre-decoded, normalised batch (the network alone);
- **PNG files**: ``Predictor.predict_paths`` end to end (open + decode + resize/crop/normalise
  + network + sigmoid) on 64 PNG photos of 300x451 to 512x512 px (scikit-image samples);

at batch 1 and 16. Both engines use ``torch.get_num_threads()`` threads (``OMP_NUM_THREADS``).
Each figure is the best (and the median) of ``--rounds`` rounds of at least ``--images`` images,
after one warm-up; the engines alternate within a round, so a busy neighbour slows both alike,
and the best round is the least disturbed one (as in ``head_speed_memory.py``). The
``logits only`` row is the same network exported with ``--no-attention``: what the second
output (attention maps) costs. Usage (about 3 minutes on 2 cores):

    OMP_NUM_THREADS=2 python benchmarks/predict_throughput.py [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, load_model, write_checkpoint
from ssgrl.data.transforms import Preprocessing
from ssgrl.engine.pretrained import load_backbone_weights
from ssgrl.inference.export import export_onnx
from ssgrl.inference.onnx_engine import OnnxEngine
from ssgrl.inference.predictor import Predictor, TorchEngine
from ssgrl.models import default_preprocessing
from ssgrl.models.factory import ModelConfig, build_model

NUM_CLASSES = 16  # the demo's synthetic classes
EMBED_DIM = 50  # GloVe 6B 50-d, as the demo
IMAGE_SIZE = 224
DEMO_CONFIG = ModelConfig(
    arch="ssgrl", backbone="tf_efficientnet_lite0", train_stages=0, d1=256, d2=256, ggnn_steps=3
)


def demo_checkpoint(folder: Path) -> Path:
    """The demo's SSGRL architecture with the ImageNet Lite0 backbone and a random head."""
    torch.manual_seed(0)
    net = build_model(
        DEMO_CONFIG,
        NUM_CLASSES,
        torch.rand(NUM_CLASSES, NUM_CLASSES),
        torch.randn(NUM_CLASSES, EMBED_DIM),
    ).eval()
    load_backbone_weights(net.backbone, "efficientnet-lite0")
    norm: dict[str, Any] = default_preprocessing(DEMO_CONFIG.backbone)
    meta = CheckpointMeta(
        class_names=[f"class{i}" for i in range(NUM_CLASSES)],
        model=DEMO_CONFIG,
        preprocessing=Preprocessing(
            IMAGE_SIZE,
            IMAGE_SIZE,
            tuple(norm["mean"]),  # type: ignore[arg-type]
            tuple(norm["std"]),  # type: ignore[arg-type]
            str(norm["interpolation"]),
        ),
        embeddings=EmbeddingInfo("random", EMBED_DIM),
        pretrained="efficientnet-lite0",
    )
    return write_checkpoint(net, meta, folder / "model.ckpt")


def png_files(folder: Path, count: int) -> list[Path]:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(photos[i % len(photos)]).save(path)
        paths.append(path)
    return paths


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process): their
    difference over a run is what other processes took from it."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy, own.ru_utime + own.ru_stime


def rate(run: Callable[[], int], min_images: int, per_call: int) -> float:
    """Images/s of ``run`` (returns the images it did) called until ``min_images`` are done."""
    calls = max(1, math.ceil(min_images / per_call))
    start = time.perf_counter()
    done = sum(run() for _ in range(calls))
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="default: the demo's Lite0 SSGRL")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--images", type=int, default=64, help="images per round (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {threads}, "
        f"load average {load_before:.2f}"
    )
    results: list[dict[str, Any]] = []
    busy_start, own_start = cpu_seconds()
    wall_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = Path(args.checkpoint) if args.checkpoint else demo_checkpoint(tmp)
        model = load_model(ckpt)
        start = time.perf_counter()
        exported = export_onnx(model, tmp / "model.onnx", source=ckpt)
        export_s = time.perf_counter() - start
        print(
            f"checkpoint {ckpt.name if args.checkpoint else '(demo config, random head)'}: "
            f"{model.meta.model.arch} {model.meta.model.backbone}, {model.meta.num_classes} "
            f"classes, {model.preprocessing.image_size} px; export {export_s:.1f} s, "
            f"{exported.size_bytes / 2**20:.1f} MiB, check max |logit diff| "
            f"{exported.max_abs_diff:.2g}"
        )
        engines: dict[str, Any] = {
            "torch": TorchEngine(model),
            "onnxruntime": OnnxEngine(exported.path),
        }
        if "attention" in exported.outputs:
            logits_only = export_onnx(
                model, tmp / "logits.onnx", source=ckpt, attention=False, check=False
            )
            engines["onnxruntime, logits only"] = OnnxEngine(logits_only.path)
        size = model.preprocessing.image_size
        gen = torch.Generator().manual_seed(0)

        for batch in args.batch_sizes:  # --- pre-decoded tensors
            x = torch.randn(batch, 3, size, size, generator=gen)
            outs = {name: e.logits(x) for name, e in engines.items()}  # warm-up
            diff = max(float(np.abs(o - outs["torch"]).max()) for o in outs.values())
            rates: dict[str, list[float]] = {name: [] for name in engines}
            for _ in range(args.rounds):
                for name, engine in engines.items():

                    def run(engine: Any = engine, x: torch.Tensor = x) -> int:
                        engine.logits(x)
                        return int(x.shape[0])

                    rates[name].append(rate(run, args.images, batch))
            for name, values in rates.items():
                results.append(
                    {"input": "tensors", "batch": batch, "engine": name, "rates": values}
                )
            print(f"tensors, batch {batch}: max |logit diff| between engines {diff:.2g}")

        paths = png_files(tmp / "png", args.images)  # --- PNG files, end to end
        predictors = {
            "torch": Predictor(ckpt, engine="torch"),
            "onnxruntime": Predictor(exported.path, engine="onnx"),
        }
        for batch in args.batch_sizes:
            rates = {name: [] for name in predictors}
            for p in predictors.values():  # warm-up
                list(p.predict_paths(paths[:batch], batch_size=batch))
            for _ in range(args.rounds):
                for name, p in predictors.items():

                    def run_all(p: Predictor = p, batch: int = batch) -> int:
                        return len(list(p.predict_paths(paths, batch_size=batch)))

                    rates[name].append(rate(run_all, len(paths), len(paths)))
            for name, values in rates.items():
                results.append(
                    {"input": "PNG files", "batch": batch, "engine": name, "rates": values}
                )

    print()
    print("| input | batch | engine | images/s, best round | median | vs torch (best) |")
    print("|---|---|---|---|---|---|")
    best = {(r["input"], r["batch"], r["engine"]): max(r["rates"]) for r in results}
    for r in results:
        top = best[(r["input"], r["batch"], r["engine"])]
        ref = best[(r["input"], r["batch"], "torch")]
        print(
            f"| {r['input']} | {r['batch']} | {r['engine']} | {top:.1f} | "
            f"{statistics.median(r['rates']):.1f} | {top / ref:.2f}x |"
        )
    busy_end, own_end = cpu_seconds()
    others = (busy_end - busy_start) - (own_end - own_start)
    wall = time.perf_counter() - wall_start
    print(
        f"\nother processes used {others:.0f} CPU s during the {wall:.0f} s run "
        f"({100 * others / wall:.0f}% of one core); load average after: "
        f"{os.getloadavg()[0]:.2f} (before: {load_before:.2f})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "threads": threads,
                    "export_s": export_s,
                    "other_processes_cpu_s": others,
                    "wall_s": wall,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
