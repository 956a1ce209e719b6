"""Speed and peak memory of the SSGRL head against a naive port of the reference code (CPU).

The paper's configuration: ResNet-101 (layer4 + head train), 448 px -> 14x14 -> 2x2 pooling ->
7x7 map, N = 2048, d1 = d2 = 1024, batch 4, C = 20 (VOC) and C = 80 (COCO). Measured:

- the backbone alone and the full model on images (forward under ``no_grad`` = inference;
  forward + backward of a BCE loss in train mode = one training step without the optimiser);
- the head alone on a precomputed (B, 2048, 7, 7) feature map that requires grad (as layer4's
  output does in training): ours (``SSGRL.head``) and ``NaiveHead``, a line-by-line port of the
  reference code whose decoupling materialises (B, HW, C, d2) through ``fc_3`` and
  (B, HW, C, N) by ``.repeat()``.

Every measurement runs in its own fresh interpreter: build, then reset the kernel's peak-RSS
mark (``/proc/self/clear_refs``), then 1 warm-up + R timed runs. Peak memory is the peak RSS
over that window minus the RSS right after building (weights and inputs excluded). Times are
the fastest of the timed runs (wall clock; the least disturbed by other processes) and the
median process CPU time (all threads). Usage (a few minutes on 2 cores):

    OMP_NUM_THREADS=2 python benchmarks/head_speed_memory.py [--repeats 3] [--classes 20 80]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ssgrl.models import SSGRL, Backbone, build_model, model_config

FEATURE_DIM = 2048  # ResNet-101 layer4 channels, N
EMBED_DIM = 300  # GloVe-300 as in the reference
KINDS = ("backbone", "full", "head", "naive")


# ---------------------------------------------------------------------------------------------
# the naive head: the reference code (semantic.py, ggnn.py, models.py, element_wise_layer.py),
# ported to Python 3 without changing how it computes


class NaiveSemantic(nn.Module):
    def __init__(self, num_classes: int, image_feature_dim: int, word_feature_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_feature_dim = image_feature_dim
        self.fc_1 = nn.Linear(image_feature_dim, 1024, bias=False)
        self.fc_2 = nn.Linear(word_feature_dim, 1024, bias=False)
        self.fc_3 = nn.Linear(1024, 1024)
        self.fc_a = nn.Linear(1024, 1)

    def forward(
        self, batch_size: int, img_feature_map: torch.Tensor, word_features: torch.Tensor
    ) -> torch.Tensor:
        c, n, s = self.num_classes, self.image_feature_dim, img_feature_map.size()[3]
        img_feature_map = torch.transpose(torch.transpose(img_feature_map, 1, 2), 2, 3)
        f_wh = img_feature_map.contiguous().view(batch_size * s * s, -1)
        f_wh = self.fc_1(f_wh).view(batch_size * s * s, 1, -1).repeat(1, c, 1)  # (B*HW, C, d)
        f_wd = self.fc_2(word_features).view(1, c, 1024).repeat(batch_size * s * s, 1, 1)
        lb_feature = self.fc_3(torch.tanh(f_wh * f_wd).view(-1, 1024))  # (B*HW*C, d2)
        coefficient = self.fc_a(lb_feature)
        coefficient = torch.transpose(
            torch.transpose(coefficient.view(batch_size, s, s, c), 2, 3), 1, 2
        ).view(batch_size, c, -1)
        coefficient = F.softmax(coefficient, dim=2)
        coefficient = coefficient.view(batch_size, c, s, s)
        coefficient = torch.transpose(torch.transpose(coefficient, 1, 2), 2, 3)
        coefficient = coefficient.view(batch_size, s, s, c, 1).repeat(1, 1, 1, 1, n)  # (B,h,w,C,N)
        weighted = img_feature_map.view(batch_size, s, s, 1, n).repeat(1, 1, 1, c, 1) * coefficient
        return torch.sum(torch.sum(weighted, 1), 1)  # (B, C, N)


class NaiveGGNN(nn.Module):
    _in_matrix: torch.Tensor
    _out_matrix: torch.Tensor

    def __init__(self, input_dim: int, time_step: int, matrix: torch.Tensor) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.time_step = time_step
        self.register_buffer("_in_matrix", matrix.clone())
        self.register_buffer("_out_matrix", matrix.t().contiguous())
        self.fc_eq3_w = nn.Linear(2 * input_dim, input_dim)
        self.fc_eq3_u = nn.Linear(input_dim, input_dim)
        self.fc_eq4_w = nn.Linear(2 * input_dim, input_dim)
        self.fc_eq4_u = nn.Linear(input_dim, input_dim)
        self.fc_eq5_w = nn.Linear(2 * input_dim, input_dim)
        self.fc_eq5_u = nn.Linear(input_dim, input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size = x.size()[0]
        node_num = self._in_matrix.size()[0]
        nodes = x.view(batch_size, node_num, self.input_dim)
        batch_in = self._in_matrix.repeat(batch_size, 1).view(batch_size, node_num, -1)
        batch_out = self._out_matrix.repeat(batch_size, 1).view(batch_size, node_num, -1)
        for _ in range(self.time_step):
            av = torch.cat((torch.bmm(batch_in, nodes), torch.bmm(batch_out, nodes)), 2)
            av = av.view(batch_size * node_num, -1)
            flat = nodes.reshape(batch_size * node_num, -1)
            zv = torch.sigmoid(self.fc_eq3_w(av) + self.fc_eq3_u(flat))
            # the later reference commit's reset gate (U_r); the cost is the same either way
            rv = torch.sigmoid(self.fc_eq4_w(av) + self.fc_eq4_u(flat))
            hv = torch.tanh(self.fc_eq5_w(av) + self.fc_eq5_u(rv * flat))
            flat = (1 - zv) * flat + zv * hv
            nodes = flat.view(batch_size, node_num, -1)
        return nodes


class NaiveHead(nn.Module):
    """Feature map (B, N, s, s) -> logits (B, C), as the reference SSGRL.forward computes it."""

    def __init__(self, adjacency: torch.Tensor, word_features: torch.Tensor, steps: int = 3):
        super().__init__()
        c = adjacency.shape[0]
        self.num_classes = c
        self.register_buffer("word_features", word_features.clone())
        self.word_semantic = NaiveSemantic(c, FEATURE_DIM, word_features.shape[1])
        self.graph_net = NaiveGGNN(FEATURE_DIM, steps, adjacency)
        self.fc_output = nn.Linear(2 * FEATURE_DIM, FEATURE_DIM)
        self.classifier_weight = nn.Parameter(torch.randn(c, FEATURE_DIM) * FEATURE_DIM**-0.5)
        self.classifier_bias = nn.Parameter(torch.zeros(c))

    def forward(self, img_feature_map: torch.Tensor) -> torch.Tensor:
        batch_size = img_feature_map.size()[0]
        graph_net_input = self.word_semantic(batch_size, img_feature_map, self.word_features)
        graph_net_feature = self.graph_net(graph_net_input)
        output = torch.cat(
            (
                graph_net_feature.reshape(batch_size * self.num_classes, -1),
                graph_net_input.view(-1, FEATURE_DIM),
            ),
            1,
        )
        output = torch.tanh(self.fc_output(output))
        output = output.contiguous().view(batch_size, self.num_classes, FEATURE_DIM)
        x = output * self.classifier_weight  # Element_Wise_Layer
        return torch.sum(x, 2) + self.classifier_bias


def naive_from(net: SSGRL) -> NaiveHead:
    """A NaiveHead holding exactly ``net``'s head weights (same function, other computation)."""
    naive = NaiveHead(net.graph.get_buffer("adjacency"), net.get_buffer("label_embeddings"))
    d, g = net.decoupling, net.graph
    pairs = {
        "word_semantic.fc_1": d.U,
        "word_semantic.fc_2": d.V,
        "word_semantic.fc_3": d.P,
        "word_semantic.fc_a": d.f_a,
        "graph_net.fc_eq3_w": g.W_z,
        "graph_net.fc_eq3_u": g.U_z,
        "graph_net.fc_eq4_w": g.W_r,
        "graph_net.fc_eq4_u": g.U_r,
        "graph_net.fc_eq5_w": g.W,
        "graph_net.fc_eq5_u": g.U,
        "fc_output": net.fc_out,
    }
    with torch.no_grad():
        for name, ours in pairs.items():
            naive.get_submodule(name).load_state_dict(ours.state_dict())
        naive.classifier_weight.copy_(net.classifier_weight)
        naive.classifier_bias.copy_(net.classifier_bias)
    return naive


# ---------------------------------------------------------------------------------------------
# one measurement, in a fresh interpreter


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _ssgrl(num_classes: int) -> SSGRL:
    torch.manual_seed(0)
    net = build_model(
        model_config("ssgrl-resnet101"),  # d1 = d2 = 1024, 2x2 pooling, layer4 + head train
        num_classes,
        adjacency=torch.rand(num_classes, num_classes),
        label_embeddings=torch.randn(num_classes, EMBED_DIM),
    )
    assert isinstance(net, SSGRL)
    return net


def measure(kind: str, num_classes: int, train: bool, args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    side = args.size // 64  # ResNet stride 32, then the 2x2 pooling
    model: nn.Module
    if kind == "backbone":
        model = Backbone("resnet101", pool="avg2x2", train_stages=1)
    elif kind == "naive":
        model = naive_from(_ssgrl(num_classes))
    else:
        model = _ssgrl(num_classes)
    if kind in ("backbone", "full"):
        inputs = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    else:  # layer4's output trains, so the head's backward reaches the feature map
        inputs = torch.randn(args.batch, FEATURE_DIM, side, side, generator=gen)
        inputs.requires_grad_(train)
    step = model.head if kind == "head" and isinstance(model, SSGRL) else model
    targets = (torch.rand(args.batch, num_classes, generator=gen) < 0.2).float()
    model.train(train)

    def run() -> None:
        if not train:
            with torch.no_grad():
                step(inputs)
            return
        out = step(inputs)
        if kind == "backbone":
            loss = out.square().mean()
        else:
            loss = F.binary_cross_entropy_with_logits(out, targets)
        loss.backward()
        model.zero_grad(set_to_none=True)
        inputs.grad = None

    reset = _reset_peak()
    baseline = _status_kib("VmRSS")
    times, cpu_times = [], []
    for i in range(args.warmup + args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak = _status_kib("VmHWM")
    return {
        "kind": kind,
        "classes": num_classes,
        "train": train,
        "seconds": min(times),
        "cpu_seconds": statistics.median(cpu_times),
        "times": times,
        "peak_mib": (peak - baseline) / 1024,
        "peak_reset": reset,
    }


def check_equivalence() -> float:
    """The naive head computes the same function as ours: max |logit difference|."""
    torch.manual_seed(0)
    net = build_model(
        model_config("ssgrl-resnet101", d1=1024, d2=1024),
        6,
        adjacency=torch.rand(6, 6),
        label_embeddings=torch.randn(6, EMBED_DIM),
    )
    assert isinstance(net, SSGRL)
    with torch.no_grad():
        net.decoupling.P.bias.normal_()
        net.classifier_bias.normal_()
    naive = naive_from(net)
    fmap = torch.randn(2, FEATURE_DIM, 3, 3)
    with torch.no_grad():
        return float((net.head(fmap) - naive(fmap)).abs().max())


# ---------------------------------------------------------------------------------------------
# the driver


def _worker(spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        json.dumps(spec),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--size",
        str(args.size),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {spec} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[20, 80])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        if spec["kind"] == "check":
            print(json.dumps({"max_abs_diff": check_equivalence()}))
        else:
            print(json.dumps(measure(spec["kind"], spec["classes"], spec["train"], args)))
        return 0

    started = time.time()
    load_before = os.getloadavg()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads"
    )
    print(
        f"# ResNet-101, {args.size} px -> {args.size // 64}x{args.size // 64} map, batch "
        f"{args.batch}, N = {FEATURE_DIM}, d1 = d2 = 1024, T = 3; fastest of {args.repeats} "
        f"runs after {args.warmup} warm-up (CPU s: median process CPU time); peak = peak RSS - RSS after build"
    )
    diff = _worker({"kind": "check"}, args)["max_abs_diff"]
    print(f"# naive head == our head on the same weights: max |logit diff| = {diff:.2e}")

    results: dict[tuple[str, int, bool], dict[str, Any]] = {}
    for train in (False, True):
        results[("backbone", 0, train)] = _worker(
            {"kind": "backbone", "classes": 1, "train": train}, args
        )
        for c in args.classes:
            for kind in ("full", "head", "naive"):
                results[(kind, c, train)] = _worker(
                    {"kind": kind, "classes": c, "train": train}, args
                )

    names = {
        "backbone": "backbone (ResNet-101)",
        "full": "full SSGRL",
        "head": "head, ours",
        "naive": "head, naive (reference)",
    }
    print()
    print(
        "| what | C | forward s | forward CPU s | forward peak MiB "
        "| fwd+bwd s | fwd+bwd CPU s | fwd+bwd peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = [("backbone", 0)] + [(k, c) for c in args.classes for k in ("full", "head", "naive")]
    for kind, c in rows:
        f, t = results[(kind, c, False)], results[(kind, c, True)]
        print(
            f"| {names[kind]} | {c or '-'} | {f['seconds']:.2f} | {f['cpu_seconds']:.2f} "
            f"| {f['peak_mib']:.0f} | {t['seconds']:.2f} | {t['cpu_seconds']:.2f} "
            f"| {t['peak_mib']:.0f} |"
        )
    print()
    print(
        "| C | pass | head share of full (head / full) | (full - backbone) / full "
        "| naive / ours time | naive / ours peak memory |"
    )
    print("|---|---|---|---|---|---|")
    back = {train: results[("backbone", 0, train)]["seconds"] for train in (False, True)}
    for c in args.classes:
        for train in (False, True):
            full = results[("full", c, train)]["seconds"]
            ours, naive = results[("head", c, train)], results[("naive", c, train)]
            print(
                f"| {c} | {'fwd+bwd' if train else 'forward'} | {ours['seconds'] / full:.0%} "
                f"| {(full - back[train]) / full:.0%} | {naive['seconds'] / ours['seconds']:.2f}x "
                f"| {naive['peak_mib'] / max(ours['peak_mib'], 1e-9):.2f}x |"
            )
    if not all(r["peak_reset"] for r in results.values()):
        print("# warning: the peak-RSS mark could not be reset; peaks include the build")
    load_after = os.getloadavg()
    print(
        f"\n# {time.time() - started:.0f} s in all; load average (1 min) {load_before[0]:.1f} "
        f"before, {load_after[0]:.1f} after (other processes on the machine inflate times)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
