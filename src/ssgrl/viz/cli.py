"""``ssgrl explain --checkpoint CKPT IMAGE --out FILE.png``: one attention overlay per class."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ssgrl.data.decode import ImageDecodeError
from ssgrl.inference.predictor import Predictor
from ssgrl.viz.attention import render_explanation


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="the image to explain")
    parser.add_argument("--checkpoint", required=True, help="an ssgrl checkpoint of an SSGRL model")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument(
        "--classes", nargs="+", default=None, help="classes to show (default: the predicted ones)"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="predicted = probability >= this (default 0.5)"
    )
    parser.add_argument(
        "--max-classes", type=int, default=12, help="at most this many tiles (default 12)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")


def choose_classes(
    probs: np.ndarray, names: list[str], wanted: list[str] | None, threshold: float, limit: int
) -> tuple[list[int], str | None]:
    """Indices to draw, best first, and a note when nothing passed the threshold."""
    if wanted:
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; the model knows {names}")
        return [names.index(c) for c in wanted], None
    order = [int(i) for i in np.argsort(-probs, kind="stable")]
    chosen = [i for i in order if probs[i] >= threshold][:limit]
    if chosen:
        return chosen, None
    return order[:1], f"no class reaches {threshold:g}; showing the most likely one"


def run(args: argparse.Namespace) -> int:
    try:
        predictor = Predictor(args.checkpoint, device=args.device)
        image = predictor.open(args.image)
        probs, attention, view = predictor.explain(image)
        idx, note = choose_classes(
            probs, predictor.class_names, args.classes, args.threshold, args.max_classes
        )
    except (FileNotFoundError, ValueError, RuntimeError, ImageDecodeError) as err:
        print(f"ssgrl explain: error: {err}", file=sys.stderr)
        return 2
    title = f"{Path(args.image).name}" + (f" ({note})" if note else "")
    render_explanation(
        view,
        attention[idx],
        [predictor.class_names[i] for i in idx],
        [float(probs[i]) for i in idx],
        out_path=Path(args.out),
        title=title,
    )
    print(
        f"wrote {args.out}: " + ", ".join(f"{predictor.class_names[i]} {probs[i]:.2f}" for i in idx)
    )
    return 0
