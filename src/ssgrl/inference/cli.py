"""``ssgrl predict --checkpoint CKPT INPUT...``: one JSON line (or CSV row) per image."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import IO

from tqdm.auto import tqdm

from ssgrl.inference.predictor import Prediction, Predictor, collect_inputs, select_labels


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively) or text files of paths (.txt/.lst, one per line)",
    )
    parser.add_argument("--checkpoint", required=True, help="an ssgrl checkpoint (.ckpt)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="labels are the classes with probability >= this (default 0.5)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="keep at most the K best labels per image"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default 16)"
    )
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default jsonl)"
    )
    parser.add_argument(
        "--output", "-o", default=None, help="write here instead of standard output"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class _Writer:
    def __init__(self, stream: IO[str], fmt: str, class_names: list[str]) -> None:
        self.stream, self.fmt, self.class_names = stream, fmt, class_names
        self.csv = csv.writer(stream) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["image", "labels", "error", *class_names])

    def write(self, pred: Prediction, labels: list[str]) -> None:
        if self.csv is not None:
            values = [] if pred.probabilities is None else [f"{v:.6f}" for v in pred.probabilities]
            self.csv.writerow([pred.image, "|".join(labels), pred.error or "", *values])
        elif pred.error is not None:
            self.stream.write(json.dumps({"image": pred.image, "error": pred.error}) + "\n")
        else:
            assert pred.probabilities is not None
            named = {
                n: round(float(v), 6)
                for n, v in zip(self.class_names, pred.probabilities, strict=True)
            }
            self.stream.write(
                json.dumps({"image": pred.image, "labels": labels, "scores": named}) + "\n"
            )
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("ssgrl predict: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if args.top_k is not None and args.top_k < 1:
        print("ssgrl predict: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(args.checkpoint, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"ssgrl predict: error: {err}", file=sys.stderr)
        return 2
    paths = collect_inputs(args.inputs)
    if not paths:
        print(f"ssgrl predict: error: no images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    try:
        out: IO[str] = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    except OSError as err:
        print(f"ssgrl predict: error: cannot write {args.output}: {err}", file=sys.stderr)
        return 2
    writer = _Writer(out, args.format, predictor.class_names)
    failed = done = 0
    start = time.perf_counter()
    try:
        bar = tqdm(
            total=len(paths),
            unit="img",
            desc="predict",
            disable=args.no_progress or None,
            file=sys.stderr,
        )
        for pred in predictor.predict_paths(paths, batch_size=args.batch_size):
            labels: list[str] = []
            if pred.error is not None:
                failed += 1
                print(f"ssgrl predict: {pred.error}", file=sys.stderr)
            else:
                assert pred.probabilities is not None
                done += 1
                labels = select_labels(
                    pred.probabilities, predictor.class_names, args.threshold, args.top_k
                )
            writer.write(pred, labels)
            bar.update(1)
        bar.close()
    finally:
        if args.output:
            out.close()
    elapsed = time.perf_counter() - start
    rate = done / elapsed if elapsed > 0 else float("inf")
    print(
        f"predicted {done} image(s), {failed} failed, in {elapsed:.2f} s: {rate:.1f} images/s",
        file=sys.stderr,
    )
    return 1 if failed else 0
