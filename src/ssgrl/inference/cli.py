"""``ssgrl predict --checkpoint CKPT INPUT...``: one JSON line (or CSV row) per image.

Labels are decided per class by the checkpoint's fitted thresholds (``CheckpointMeta.thresholds``)
when it has them, else at 0.5; ``--threshold`` sets one value for every class instead. Which
thresholds are used is printed on standard error.

JSON lines: ``ssgrl.inference.output.prediction_record`` per image, ``{"image", "predicted",
"labels": [{"label", "score", "threshold", "predicted"}, ...]}`` (labels best first), or
``{"image", "error"}``. CSV: one row per image, columns ``image``, ``predicted`` (the predicted
labels best first, joined by ``|``), ``error``, then one score column per class (named after the
class, in class order), then one ``<class>:threshold`` column per class (the threshold used).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from typing import IO

import numpy as np
from tqdm.auto import tqdm

from ssgrl.inference.output import prediction_record
from ssgrl.inference.predictor import (
    Prediction,
    Predictor,
    collect_inputs,
    default_num_workers,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively) or text files of paths (.txt/.lst, one per line)",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="an ssgrl checkpoint (.ckpt) or an exported .onnx"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one threshold for every class: labels are the classes with probability >= this "
        "(default: the checkpoint's fitted per-class thresholds, else 0.5)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="what runs the network (default auto: onnx for a .onnx file, else torch)",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="keep at most the K best labels per image"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per forward pass (default 16)"
    )
    parser.add_argument(
        "--num-workers",
        "--num_workers",
        dest="num_workers",
        type=int,
        default=None,
        help="worker processes that decode and preprocess images while the network runs "
        "(default: on a GPU one per CPU beyond the first, at most 4; on the CPU 0 below 4 "
        f"CPUs, then one per 4 CPUs: {default_num_workers()} here for the CPU; "
        "0: decode in this process)",
    )
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default jsonl)"
    )
    parser.add_argument(
        "--output", "-o", default=None, help="write here instead of standard output"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the network through torch.compile with frozen weights (BatchNorm folded, "
        "weights pre-packed): faster per image after a one-off compilation of tens of seconds "
        "on a CPU; for many images. PyTorch checkpoints only",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def csv_header(class_names: list[str]) -> list[str]:
    """``image, predicted, error, <class>... (scores), <class>:threshold...``"""
    return ["image", "predicted", "error", *class_names, *(f"{c}:threshold" for c in class_names)]


class _Writer:
    def __init__(
        self,
        stream: IO[str],
        fmt: str,
        class_names: list[str],
        thresholds: np.ndarray,
        top_k: int | None,
    ) -> None:
        self.stream, self.fmt, self.class_names = stream, fmt, class_names
        self.thresholds, self.top_k = thresholds, top_k
        self.csv = csv.writer(stream) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(csv_header(class_names))
        self.threshold_cells = [f"{t:.6f}" for t in thresholds]

    def write(self, pred: Prediction) -> None:
        if pred.error is not None:
            if self.csv is not None:
                empty = [""] * len(self.class_names)
                self.csv.writerow([pred.image, "", pred.error, *empty, *self.threshold_cells])
            else:
                self.stream.write(json.dumps({"image": pred.image, "error": pred.error}) + "\n")
        else:
            assert pred.probabilities is not None
            record = prediction_record(
                pred.image, pred.probabilities, self.class_names, self.thresholds, self.top_k
            )
            if self.csv is not None:
                scores = [f"{v:.6f}" for v in pred.probabilities]
                self.csv.writerow(
                    [pred.image, "|".join(record["predicted"]), "", *scores, *self.threshold_cells]
                )
            else:
                self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("ssgrl predict: error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    if args.num_workers is not None and args.num_workers < 0:
        print("ssgrl predict: error: --num-workers must be >= 0", file=sys.stderr)
        return 2
    if args.top_k is not None and args.top_k < 1:
        print("ssgrl predict: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            engine=args.engine,
            threshold=args.threshold,
            compile=args.compile,
        )
    except (FileNotFoundError, ImportError, ValueError, RuntimeError) as err:
        print(f"ssgrl predict: error: {err}", file=sys.stderr)
        return 2
    print(f"ssgrl predict: thresholds: {predictor.threshold_source}", file=sys.stderr)
    paths = collect_inputs(args.inputs)
    if not paths:
        print(f"ssgrl predict: error: no images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    try:
        out: IO[str] = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    except OSError as err:
        print(f"ssgrl predict: error: cannot write {args.output}: {err}", file=sys.stderr)
        return 2
    writer = _Writer(out, args.format, predictor.class_names, predictor.thresholds, args.top_k)
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
        for pred in predictor.predict_paths(
            paths, batch_size=args.batch_size, num_workers=args.num_workers
        ):
            if pred.error is not None:
                failed += 1
                print(f"ssgrl predict: {pred.error}", file=sys.stderr)
            else:
                done += 1
            writer.write(pred)
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
