"""GPU throughput of the paper's SSGRL (ResNet-101, C = 80, 2x2 pooling after layer4): training
and inference images/s at 448 and 576 px, bf16 autocast, channels_last, eager and
``torch.compile``. Random weights (speed does not depend on them). Never part of CI.

    python benchmarks/gpu.py --device cuda [--batch 32] [--steps 20] [--json out.json]
    OMP_NUM_THREADS=2 python benchmarks/gpu.py --device cpu --smoke    # every code path, tiny

- **train**: ``model.train()``, forward under ``torch.autocast(bf16)``, BCE-with-logits on
  random 0/1 targets, backward, ``torch.optim.Adam`` step; layer4 and the head train,
  conv1..layer3 frozen with their BatchNorm in eval mode (``train_stages: 1``, the paper's).
- **inference**: ``model.eval()`` under ``torch.inference_mode`` and the same autocast.
- Inputs are channels_last (B, 3, S, S) float tensors already on the device: the figures are the
  network's, not the data path's (``data_path.py`` measures that one).
- ``--compile``: ``eager``, ``compiled`` (``torch.compile``, default mode) or ``both``; the
  first compiled call's seconds (compilation) are printed apart.

Each figure: ``--warmup`` untimed iterations, then ``--steps`` timed ones between
``torch.cuda.synchronize()`` calls; peak memory from ``torch.cuda.max_memory_allocated``.
``--smoke`` runs every code path once at a tiny size (batch 1, 64 px, 1 step, no warm-up) to
show it works where no GPU is at hand: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssgrl.models.factory import ModelConfig, build_model

CLASSES = 80
CONFIG = ModelConfig(arch="ssgrl", backbone="resnet101", pool="avg2x2", train_stages=1)
COMMAND = "python benchmarks/gpu.py --device cuda"


def build(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    net = build_model(CONFIG, CLASSES, torch.rand(CLASSES, CLASSES), torch.randn(CLASSES, 300))
    return net.to(device=device, memory_format=torch.channels_last)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            logits = model(x)  # (B, C)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()
        optimizer.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16):
            model(x)

    return step


def run(
    step: Callable[[], None], device: torch.device, warmup: int, steps: int
) -> tuple[float, float, float]:
    """(seconds of the first call, seconds per timed step, peak memory GiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    first = time.perf_counter() - start
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    per_step = (time.perf_counter() - start) / steps
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    )
    return first, per_step, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1 or cpu (with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="batch 1, 64 px, 1 step: paths only")
    parser.add_argument("--sizes", default="448,576", help="image sizes (default 448,576)")
    parser.add_argument("--batch", type=int, default=32, help="inference batch (default 32)")
    parser.add_argument("--train-batch", type=int, default=16, help="training batch (default 16)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", choices=("eager", "compiled", "both"), default="both")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: CUDA is not available here (torch "
            f"{torch.__version__}, torch.cuda.is_available() is False): run it on a machine "
            "with an NVIDIA GPU, or `--device cpu --smoke` to check the code paths",
            file=sys.stderr,
        )
        return 2
    if device.type == "cpu" and not args.smoke:
        print(
            "benchmarks/gpu.py: --device cpu only with --smoke (a CPU would take hours)",
            file=sys.stderr,
        )
        return 2
    sizes = [64] if args.smoke else [int(s) for s in args.sizes.split(",")]
    batch, train_batch = (1, 1) if args.smoke else (args.batch, args.train_batch)
    warmup, steps = (0, 1) if args.smoke else (args.warmup, args.steps)
    modes = ["eager", "compiled"] if args.compile == "both" else [args.compile]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU (smoke test: the figures mean nothing)"
    print(
        f"{name}, torch {torch.__version__}, SSGRL ResNet-101, C = {CLASSES}, bf16 autocast, channels_last"
    )
    print(
        f"{'pass':<10}{'size':>5}{'batch':>6}{'mode':>10}{'images/s':>10}{'first call s':>14}{'peak GiB':>10}"
    )

    rows: list[dict[str, Any]] = []
    tag = " (smoke, cpu)" if args.smoke else ""
    command = COMMAND if not args.smoke else "python benchmarks/gpu.py --device cpu --smoke"
    for size in sizes:
        for mode in modes:
            model = build(device)
            net: nn.Module = torch.compile(model) if mode == "compiled" else model  # type: ignore[assignment]
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=1e-4)
            for what, b in (("train", train_batch), ("inference", batch)):
                x = torch.randn(b, 3, size, size, device=device).contiguous(
                    memory_format=torch.channels_last
                )
                if what == "train":
                    model.train()
                    y = torch.randint(0, 2, (b, CLASSES), device=device).float()
                    step = train_step(net, optimizer, x, y)
                else:
                    model.eval()
                    step = infer_step(net, x)
                first, per_step, peak = run(step, device, warmup, steps)
                rate = b / per_step
                print(
                    f"{what:<10}{size:>5}{b:>6}{mode:>10}{rate:>10.1f}{first:>14.2f}{peak:>10.2f}"
                )
                rows.append(
                    {
                        "section": "gpu",
                        "figure": f"{what} images/s, {size} px, batch {b}, bf16 channels_last, {mode}{tag}",
                        "value": f"{rate:.1f} images/s (first call {first:.1f} s"
                        + (f", peak {peak:.1f} GiB)" if peak == peak else ")"),
                        "target": "printed",
                        "met": None,
                        "command": command,
                    }
                )
            del model, net, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
