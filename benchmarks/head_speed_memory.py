"""The SSGRL head at its multiply-add floor and the ResNet-101 trunk at the machine's peak.

At the paper's inference setting (ResNet-101 with random weights, 448 px -> 14x14 -> 2x2 pooling
-> 7x7 map, N = 2048, d1 = d2 = 1024, T = 3, C = 80, batch 2), in one process, R interleaved
repeats of: a large fp32 matmul (the machine's peak), the trunk contiguous and channels_last,
our whole network, and the authors' computation (their contiguous trunk + ``ReferenceHead``,
``ssgrl.models.reference``); times are medians, and each ratio (% of peak, head overhead,
authors' / ours) is the median of that ratio within each round, so a machine whose speed drifts
between rounds moves both sides alike. Printed:

(a) the fp32 matmul peak GFLOP/s;
(b) the trunk's GFLOP/s (MACs counted by ``torch.utils.flop_counter``) contiguous, channels_last
    and channels_last through ``torch.compile`` with frozen weights (``ssgrl predict
    --compile``), as % of the peak (target >= 90%); the compiled whole network too, and what
    compiling costs once (``--no-compile`` skips these); and, as the ceiling any convolution
    library meets, the trunk's own convolutions timed as bare matmuls of the same shapes
    (im2col GEMMs, without the im2col, BatchNorm or ReLU passes);
(c) the head overhead (full - trunk) / trunk against its floor head MACs / trunk MACs (GGNN:
    C*T*(3*2N*N + 3*N*N) + the messages, output FC, decoupling, classifier); target <= 1.15x;
(d) the whole forward, authors' / ours (target >= 1.25x).

Then one training step (forward + backward of a BCE loss, no optimiser) at the paper's training
setting (576 px -> 9x9 map, layer4 and the head train, batch 4) for C = 20, 80 and 500, ours
against the reference head on the authors' contiguous trunk: the median time of
``--train-repeats`` steps (default 1: a C = 500 step takes half a minute on 2 cores) after one
warm-up, and the peak memory of the whole process (peak RSS; on CUDA the peak allocation), each
in a fresh interpreter; C = 500 must fit in 8 GiB.

    OMP_NUM_THREADS=2 python benchmarks/head_speed_memory.py [--json rows.json]

(a few minutes on 2 cores; ``--device cuda`` measures the same on a GPU, fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ssgrl.inference.predictor import compile_for_inference
from ssgrl.models import SSGRL, Backbone, build_model, model_config
from ssgrl.models.reference import ReferenceHead, reference_head_from

N = 2048  # ResNet-101 layer4 channels
EMBED_DIM = 300  # GloVe-300 as in the reference
D1 = D2 = 1024
STEPS = 3
PEAK_TARGET = 0.90  # trunk GFLOP/s / matmul peak
FLOOR_TARGET = 1.15  # head overhead / its MAC floor
RATIO_TARGET = 1.25  # authors' forward / ours
MEMORY_LIMIT_GIB = 8.0  # C = 500 training step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _ssgrl(num_classes: int, device: torch.device) -> SSGRL:
    torch.manual_seed(0)
    net = build_model(
        model_config("ssgrl-resnet101"),  # d1 = d2 = 1024, 2x2 pooling, layer4 + head train
        num_classes,
        adjacency=torch.rand(num_classes, num_classes),
        label_embeddings=torch.randn(num_classes, EMBED_DIM),
    )
    if not isinstance(net, SSGRL):  # pragma: no cover - the config is SSGRL
        raise TypeError(type(net).__name__)
    return net.to(device)


def _authors(net: SSGRL, device: torch.device) -> tuple[Backbone, ReferenceHead]:
    """Their contiguous trunk (same weights as ``net``'s) and their head computation."""
    trunk = Backbone("resnet101", pool="avg2x2", train_stages=1, channels_last=False)
    trunk.load_state_dict(net.backbone.state_dict())
    return trunk.to(device), reference_head_from(net).to(device)


def trunk_macs(size: int) -> float:
    """Multiply-adds of the ResNet-101 trunk (to layer4, + 2x2 pooling) on one image."""
    trunk = Backbone("resnet101", pool="avg2x2").eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        trunk(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2


def conv_gemms(trunk: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """(M, K, N) of every convolution of ``trunk`` on ``x`` written as a matrix product
    (im2col: M = output pixels of the batch, K = input channels x kernel area, N = output
    channels; a grouped convolution is one product per group)."""
    shapes: list[tuple[int, int, int]] = []

    def record(m: torch.nn.Module, _inp: object, out: torch.Tensor) -> None:
        assert isinstance(m, torch.nn.Conv2d)
        b, _, h, w = out.shape
        kh, kw = m.kernel_size
        shape = (b * h * w, m.in_channels // m.groups * kh * kw, m.out_channels // m.groups)
        shapes.extend([shape] * m.groups)

    hooks = [
        m.register_forward_hook(record) for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        with torch.inference_mode():
            trunk(x)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def head_floor_macs(c: int, hw: int) -> float:
    """Multiply-adds the head cannot avoid, per image (the P.f_a fold applied)."""
    decoupling = hw * N * D1 + hw * c * D1 + c * hw * N  # U f, the d1 -> 1 score, sum_wh a f
    ggnn = c * STEPS * (3 * 2 * N * N + 3 * N * N) + STEPS * 2 * c * c * N  # gates + messages
    return decoupling + ggnn + c * 2 * N * N + c * N  # + output FC, classifier


# ---------------------------------------------------------------------------------------------
# inference: one process, interleaved repeats


def inference(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    c, size, batch = args.infer_classes, args.size, args.batch
    net = _ssgrl(c, device).eval()
    trunk, ref_head = _authors(net, device)
    trunk.eval()
    ref_head.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    n_mm = 8192 if device.type == "cuda" else 3072
    a = torch.randn(n_mm, n_mm, device=device)
    b_mm = torch.randn(n_mm, n_mm, device=device)

    gemm_shapes = conv_gemms(net.backbone, x)
    operands = {  # one pair per distinct shape: the bound is not lowered by cold weights
        s: (torch.randn(s[0], s[1], device=device), torch.randn(s[1], s[2], device=device))
        for s in set(gemm_shapes)
    }

    def as_matmuls() -> None:
        for s in gemm_shapes:
            torch.mm(*operands[s])

    runs: dict[str, Callable[[], object]] = {
        "matmul": lambda: torch.mm(a, b_mm),
        "trunk as matmuls": as_matmuls,
        "trunk contiguous": lambda: trunk(x),
        "trunk channels_last": lambda: net.backbone(x),
        "ours": lambda: net(x),
        "authors": lambda: ref_head(trunk(x)),
    }
    compile_s: dict[str, float] = {}
    if args.compile:
        compiled_trunk = compile_for_inference(net.backbone)
        compiled_net = compile_for_inference(net)
        runs["trunk compiled"] = lambda: compiled_trunk(x)
        runs["ours compiled"] = lambda: compiled_net(x)
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        ours_logits, ref_logits = net(x), ref_head(trunk(x))  # also the warm-up
        diff = float((ours_logits - ref_logits).abs().max())
        scale = float(ref_logits.abs().max())
        for name, fn in runs.items():  # warm-up of each (compilation for the compiled ones)
            start = time.perf_counter()
            fn()
            if "compiled" in name:
                compile_s[name] = time.perf_counter() - start
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(_timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = 2 * n_mm**3 / med["matmul"] / 1e9
    macs = trunk_macs(size)
    hw = (size // 64) ** 2
    trunks = (
        ("contiguous", "channels_last", "compiled")
        if args.compile
        else ("contiguous", "channels_last")
    )
    target_on = trunks[-1]  # the fastest configuration ssgrl offers
    gflops = {k: 2 * macs * batch / med[f"trunk {k}"] / 1e9 for k in trunks}

    def per_round(f: Callable[[int], float]) -> float:
        """The median over rounds of a ratio of two runs of the same round: a machine whose
        speed drifts between rounds (a shared host) moves both alike."""
        return statistics.median(f(i) for i in range(args.repeats))

    share = {
        k: per_round(
            lambda i, k=k: (macs * batch * times["matmul"][i]) / (n_mm**3 * times[f"trunk {k}"][i])
        )
        for k in trunks
    }
    gemm_flops = sum(2 * m * k * n for m, k, n in gemm_shapes)
    bound = per_round(
        lambda i: gemm_flops * times["matmul"][i] / (2 * n_mm**3 * times["trunk as matmuls"][i])
    )
    of_bound = per_round(
        lambda i: (
            2
            * macs
            * batch
            * times["trunk as matmuls"][i]
            / (gemm_flops * times[f"trunk {target_on}"][i])
        )
    )
    floor = head_floor_macs(c, hw) / macs
    overhead = per_round(lambda i: times["ours"][i] / times["trunk channels_last"][i] - 1.0)
    ratio = per_round(lambda i: times["authors"][i] / times["ours"][i])
    setting = f"ResNet-101, {size} px, C = {c}, batch {batch}, median of {args.repeats}"
    rows = [
        _row("machine", "fp32 matmul peak (GFLOP/s)", f"{peak:.0f}", "", None),
        _row(
            "inference",
            f"trunk MACs per {size} px image (FlopCounterMode)",
            f"{macs / 1e9:.1f} G",
            "",
            None,
        ),
    ]
    names = {
        "contiguous": "contiguous",
        "channels_last": "channels_last (the default)",
        "compiled": "channels_last + torch.compile, frozen weights (predict --compile)",
    }
    for k in trunks:
        rows.append(
            _row(
                "inference",
                f"ResNet-101 trunk {names[k]}, {size} px, batch {batch} (GFLOP/s, % of peak)",
                f"{gflops[k]:.0f} ({share[k]:.0%})",
                f">= {PEAK_TARGET:.0%} of peak" if k == target_on else "",
                share[k] >= PEAK_TARGET if k == target_on else None,
            )
        )
    rows += [
        _row(
            "inference",
            f"the trunk's {len(gemm_shapes)} convolutions as bare matmuls of the same (M, K, N), "
            "no im2col, BatchNorm or ReLU: what a GEMM convolution can reach here "
            "(GFLOP/s, % of peak)",
            f"{gemm_flops / med['trunk as matmuls'] / 1e9:.0f} ({bound:.0%})",
            "",
            None,
        ),
        _row(
            "inference",
            f"ResNet-101 trunk {names[target_on]}, % of those matmuls",
            f"{of_bound:.0%}",
            "",
            None,
        ),
    ]
    if args.compile:
        rows.append(
            _row(
                "inference",
                f"whole network, eager / compiled ({setting}; compiled {med['ours compiled']:.2f} "
                f"s; compiling took {compile_s['ours compiled']:.0f} s once)",
                f"{med['ours'] / med['ours compiled']:.2f}x",
                "",
                None,
            )
        )
    rows += [
        _row(
            "inference",
            f"channels_last / contiguous trunk speed-up ({setting})",
            f"{med['trunk contiguous'] / med['trunk channels_last']:.2f}x",
            "",
            None,
        ),
        _row(
            "inference",
            f"head overhead (full - trunk) / trunk, vs MAC floor {floor:.1%} ({setting})",
            f"{overhead:.1%} = {overhead / floor:.2f}x floor",
            f"<= {FLOOR_TARGET:.2f}x floor",
            overhead / floor <= FLOOR_TARGET,
        ),
        _row(
            "inference",
            f"whole forward, authors' / ours ({setting}; ours {med['ours']:.2f} s, "
            f"authors' {med['authors']:.2f} s)",
            f"{ratio:.2f}x",
            f">= {RATIO_TARGET:.2f}x",
            ratio >= RATIO_TARGET,
        ),
        _row(
            "inference",
            "max |logit difference| ours vs authors' computation",
            f"{diff:.1e} (max |logit| {scale:.1f})",
            "<= 1e-4 x max |logit|",
            diff <= 1e-4 * max(scale, 1.0),
        ),
    ]
    return rows


# ---------------------------------------------------------------------------------------------
# the training step: one fresh interpreter per measurement (peak memory)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return _status_kib("VmHWM") / 2**20  # the whole process: weights, libraries and all


def train_step(kind: str, c: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    net = _ssgrl(c, device).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.train_batch, 3, args.train_size, args.train_size, generator=gen)
    x = x.to(device)
    targets = (torch.rand(args.train_batch, c, generator=gen) < 0.2).float().to(device)
    if kind == "ours":
        model: Callable[[torch.Tensor], torch.Tensor] = net
        params = list(net.parameters())
    else:
        trunk, head = _authors(net, device)
        trunk.train()
        head.train()
        del net
        params = list(trunk.parameters()) + list(head.parameters())

        def model(images: torch.Tensor) -> torch.Tensor:
            return head(trunk(images))

    def step() -> None:
        F.binary_cross_entropy_with_logits(model(x), targets).backward()
        for p in params:
            p.grad = None

    step()  # warm-up
    _reset_peak(device)
    times = [_timed(step, device) for _ in range(args.train_repeats)]
    return {"seconds": statistics.median(times), "peak_gib": _peak_gib(device)}


def training(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    setting = (
        f"{args.train_size} px, batch {args.train_batch}, layer4 + head train, "
        f"median of {args.train_repeats} after 1 warm-up"
    )
    for c in args.classes:
        result: dict[str, dict[str, Any] | None] = {}
        for kind in ("ours", "reference"):
            result[kind] = _worker({"kind": kind, "classes": c}, args)
        ours, ref = result["ours"], result["reference"]
        for kind, r in (("ours", ours), ("reference head", ref)):
            value = "failed" if r is None else f"{r['seconds']:.2f} s, peak {r['peak_gib']:.2f} GiB"
            limit = c >= 500 and kind == "ours"
            rows.append(
                _row(
                    "training",
                    f"step C = {c}, {kind} ({setting})",
                    value,
                    f"peak <= {MEMORY_LIMIT_GIB:.0f} GiB" if limit else "",
                    (r is not None and r["peak_gib"] <= MEMORY_LIMIT_GIB) if limit else None,
                )
            )
        if ours is not None and ref is not None:
            rows.append(
                _row(
                    "training",
                    f"step C = {c}, reference / ours (time, peak memory)",
                    f"{ref['seconds'] / ours['seconds']:.2f}x, "
                    f"{ref['peak_gib'] / ours['peak_gib']:.2f}x",
                    "",
                    None,
                )
            )
    return rows


def _worker(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    options = {
        "--device": args.device,
        "--train-size": args.train_size,
        "--train-batch": args.train_batch,
        "--train-repeats": args.train_repeats,
        "--threads": args.threads,
    }
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    cmd += [str(v) for item in options.items() for v in item]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"# measurement {spec} failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}")
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------
# the driver


def _row(section: str, figure: str, value: str, target: str, met: bool | None) -> dict[str, Any]:
    """One figure; ``main`` adds the command that measured it."""
    return {"section": section, "figure": figure, "value": value, "target": target, "met": met}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="inference repeats (median)")
    parser.add_argument(
        "--classes", type=int, nargs="+", default=[20, 80, 500], help="training-step C values"
    )
    parser.add_argument("--json", help="write the rows as a JSON list to this path")
    parser.add_argument("--infer-classes", type=int, default=80)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=576)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the torch.compile figures (compiling ResNet-101 takes about a minute on 2 cores)",
    )
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(train_step(spec["kind"], spec["classes"], args, device)))
        return 0

    threads = f"OMP_NUM_THREADS={torch.get_num_threads()} " if device.type == "cpu" else ""
    command = threads + shlex.join(["python", "benchmarks/head_speed_memory.py", *_no_json(argv)])
    started, load = time.time(), os.getloadavg()[0]
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} threads, device {device}, load average {load:.1f}"
    )
    rows = inference(args, device)
    _print(rows)
    if not args.skip_training:
        train_rows = training(args)
        _print(train_rows)
        rows += train_rows
    print(
        f"\n# {time.time() - started:.0f} s in all; load average {os.getloadavg()[0]:.1f} after "
        "(other processes inflate times)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{**r, "command": command} for r in rows], fh, indent=1)
    return 0


def _no_json(argv: list[str]) -> list[str]:
    """The arguments without ``--json PATH`` (where the rows go is not part of the figure)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip or a.startswith("--json="):
            skip = False
        elif a == "--json":
            skip = True
        else:
            out.append(a)
    return out


def _print(rows: list[dict[str, Any]]) -> None:
    print("\n| section | figure | value | target | met |\n|---|---|---|---|---|")
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        print(f"| {r['section']} | {r['figure']} | {r['value']} | {r['target']} | {met} |")


if __name__ == "__main__":
    raise SystemExit(main())
