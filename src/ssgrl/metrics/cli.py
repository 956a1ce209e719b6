"""``ssgrl metrics``: score saved predictions against saved targets.

    ssgrl metrics --scores S.npy --targets T.npy [--ap-mode {noninterp,voc,voc07}]
                  [--threshold 0.5] [--top-k 3] [--logits] [--classes classes.txt] [--json]

S.npy: (N, C) probabilities (or logits with ``--logits``); T.npy: (N, C) of 1 / 0 / -1 (ignore).
Top-k is reported twice: plain (the k best classes of each image) and ML-GCN's rule (among the
k best and logit >= 0); a k above the number of classes is clamped to it.
Exit code 0 on success, 2 on unusable input (the message on stderr names the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from ssgrl.metrics import AP_MODES, compute_metrics, format_metrics

PROG = "ssgrl metrics"


class InputError(Exception):
    """A user-facing problem with an input file."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", type=Path, required=True, help="(N, C) .npy of probabilities")
    parser.add_argument("--targets", type=Path, required=True, help="(N, C) .npy of 1/0/-1")
    parser.add_argument(
        "--ap-mode",
        choices=AP_MODES,
        default="noninterp",
        help="noninterp: mean precision at each positive (= scikit-learn); voc: VOC2010+ "
        "all-point interpolated; voc07: VOC2007 11-point (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="predict a class when its probability is >= this (default: %(default)s)",
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=3,
        help="also score the k best classes of each image, plain and with ML-GCN's logit >= 0 "
        "rule; clamped to the number of classes; 0 turns it off (default: %(default)s)",
    )
    parser.add_argument(
        "--logits", action="store_true", help="the scores are logits: apply a sigmoid first"
    )
    parser.add_argument(
        "--classes", type=Path, default=None, help="text file with one class name per line"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {what} file {path} as a .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise InputError(f"{what} file {path} is an .npz archive; expected one .npy array")
    if arr.ndim != 2:
        raise InputError(
            f"{what} file {path} holds an array of shape {arr.shape}; expected 2-D (images, classes)"
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} file {path} holds dtype {arr.dtype}; expected numbers")
    return arr


def _load_classes(path: Path, num_classes: int) -> list[str]:
    if not path.is_file():
        raise InputError(f"classes file not found: {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    if len(names) != num_classes:
        raise InputError(
            f"classes file {path} lists {len(names)} names but the scores have {num_classes} columns"
        )
    return names


def _check_inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    scores = _load_array(args.scores, "scores")
    targets = _load_array(args.targets, "targets")
    if scores.shape != targets.shape:
        raise InputError(
            f"scores file {args.scores} has shape {scores.shape} but targets file "
            f"{args.targets} has shape {targets.shape}; expected the same (images, classes)"
        )
    bad = ~np.isfinite(scores.astype(np.float64))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"scores file {args.scores} has {int(bad.sum())} NaN/inf value(s), the first at "
            f"row {row}, column {col}"
        )
    bad = ~np.isin(targets, (1, 0, -1))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(
            f"targets file {args.targets} has value {targets[row, col]} at row {row}, "
            f"column {col}; expected 1 (present), 0 (absent) or -1 (ignore)"
        )
    if not args.logits and (scores.min() < 0 or scores.max() > 1):
        raise InputError(
            f"scores file {args.scores} has values in [{scores.min():.4g}, {scores.max():.4g}], "
            "outside [0, 1]: if they are logits, add --logits"
        )
    if not 0.0 <= args.threshold <= 1.0:
        raise InputError(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.top_k < 0:
        raise InputError(f"--top-k must be 0 (off) or a positive number, got {args.top_k}")
    names = None if args.classes is None else _load_classes(args.classes, scores.shape[1])
    return scores, targets, names


def run(args: argparse.Namespace) -> int:
    try:
        scores, targets, names = _check_inputs(args)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = compute_metrics(
                scores,
                targets,
                class_names=names,
                ap_mode=args.ap_mode,
                threshold=args.threshold,
                top_k=args.top_k or None,
                logits=args.logits,
            )
    except (InputError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    print(json.dumps(result, indent=2, allow_nan=False) if args.json else format_metrics(result))
    return 0
