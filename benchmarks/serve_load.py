"""Load on ``ssgrl serve`` over loopback: requests/s and p50/p95 latency of ``POST /predict``.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/serve_load.py \
        [--checkpoint demo_out/latest/ssgrl/checkpoints/best.ckpt] [--requests 200] \
        [--concurrency 8] [--batch-sizes 1,16]

For each ``--batch-sizes`` value, starts ``ssgrl serve --batch-size B`` as a subprocess on
127.0.0.1 (a free port; never any other address), warms it up with ``--concurrency`` requests,
then sends ``--requests`` requests of one PNG (a synthetic test scene of the checkpoint's input
size), at most ``--concurrency`` in flight, from an httpx client in this process, and reads the
server's batching counters from ``/health``. Bounded: the count is fixed, and each run stops
after ``--max-seconds``. ``--batch-sizes 1`` is the service without batching (one forward per
image). Client and server share the machine's cores. Without a checkpoint (and no demo run),
the tiny config is fitted first (about 25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_CKPT = REPO / "demo_out" / "latest" / "ssgrl" / "checkpoints" / "best.ckpt"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tiny_checkpoint(tmp: Path) -> Path:
    from ssgrl.cli import main

    run = tmp / "tiny"
    args = ["fit", "--config", str(REPO / "configs" / "tiny.yaml"), "--run_dir", str(run)]
    if main([*args, "--trainer.enable_progress_bar", "false"]) != 0:
        raise SystemExit("fitting the tiny config failed")
    return run / "checkpoints" / "best.ckpt"


def scene_png(image_size: int) -> bytes:
    from ssgrl.data.registry import load_split

    split = load_split("synthetic", "test", num_test=8, image_size=image_size, seed=0)
    buffer = io.BytesIO()
    split.load_image(3).save(buffer, format="PNG")
    return buffer.getvalue()


def start_server(checkpoint: Path, port: int, batch_size: int, log: Path) -> subprocess.Popen[Any]:
    command = [sys.executable, "-m", "ssgrl.cli", "serve", "--checkpoint", str(checkpoint)]
    command += ["--host", HOST, "--port", str(port), "--batch-size", str(batch_size)]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ssgrl serve exited: {log.read_text()}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=2.0).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("ssgrl serve did not start in 120 s")


async def load(
    url: str, body: bytes, requests: int, concurrency: int, max_seconds: float
) -> tuple[list[float], int, float]:
    """Latencies (s) of the answered requests, the number of failures, and the wall time."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0
    headers = {"content-type": "image/png"}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:

        async def one() -> None:
            nonlocal failures
            async with gate:
                start = time.perf_counter()
                try:
                    response = await client.post("/predict", content=body, headers=headers)
                    ok = (
                        response.status_code == 200 and "error" not in response.json()["results"][0]
                    )
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures += 1

        start = time.perf_counter()
        tasks = [asyncio.create_task(one()) for _ in range(requests)]
        _, pending = await asyncio.wait(tasks, timeout=max_seconds)
        for task in pending:
            task.cancel()
        failures += len(pending)
        return latencies, failures, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the demo's SSGRL, else tiny")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,16", help="server --batch-size values")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="per run")
    args = parser.parse_args()
    if args.requests < 1 or not 1 <= args.concurrency <= 64:
        raise SystemExit("--requests >= 1 and 1 <= --concurrency <= 64")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        elif DEMO_CKPT.is_file():
            checkpoint = DEMO_CKPT.resolve()
        else:
            checkpoint = tiny_checkpoint(tmp)
        from ssgrl.inference.predictor import Predictor

        image_size = Predictor(checkpoint).preprocessing.image_size
        body = scene_png(image_size)
        print(
            f"checkpoint {checkpoint} ({image_size} px), one {len(body)}-byte PNG, "
            f"{args.requests} requests, {args.concurrency} at a time, loopback; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
        )
        print(
            "| server --batch-size | requests/s | p50 ms | p95 ms | failed | forwards | mean batch |"
        )
        print("|---|---|---|---|---|---|---|")
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            port = free_port()
            process = start_server(checkpoint, port, batch_size, tmp / f"serve-{batch_size}.log")
            url = f"http://{HOST}:{port}"
            try:
                asyncio.run(load(url, body, args.concurrency, args.concurrency, 60.0))  # warm-up
                before = httpx.get(url + "/health").json()["batching"]
                latencies, failures, wall = asyncio.run(
                    load(url, body, args.requests, args.concurrency, args.max_seconds)
                )
                after = httpx.get(url + "/health").json()["batching"]
            finally:
                process.terminate()
                process.wait(timeout=30)
            forwards = after["forwards"] - before["forwards"]
            images = after["images"] - before["images"]
            ms = np.array(latencies) * 1000.0
            p50, p95 = np.percentile(ms, [50, 95]) if len(ms) else (float("nan"),) * 2
            print(
                f"| {batch_size} | {len(latencies) / wall:.1f} | {p50:.0f} | {p95:.0f} | "
                f"{failures} | {forwards} | {images / max(forwards, 1):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
