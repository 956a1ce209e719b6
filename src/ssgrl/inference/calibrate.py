"""``ssgrl calibrate --checkpoint CKPT --config CFG [--precision 0.9] [--out NEW.ckpt]``: fit
per-class decision thresholds of an existing checkpoint on the validation split.

The validation split is scored by ``ssgrl validate`` itself (``ssgrl.engine.cli.run_cli``, in a
run directory of its own with its ``metrics.json`` and logits), the thresholds are fitted on its
predictions (``ssgrl.inference.thresholds``), and a *new* checkpoint is written: the original's
bytes with the thresholds in its metadata (``CheckpointMeta.thresholds``). No existing file is
ever replaced; the test split is never read.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ssgrl.checkpoint import CheckpointError, attach_meta, read_checkpoint, save_atomically
from ssgrl.inference.thresholds import fit_thresholds, metrics_at_thresholds, probabilities

PROG = "ssgrl calibrate"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="the ssgrl checkpoint (.ckpt)")
    parser.add_argument(
        "--config",
        required=True,
        help="the run's config (e.g. RUN/config.yaml): where the validation split is",
    )
    parser.add_argument(
        "--precision",
        type=float,
        default=None,
        help="per class, the lowest threshold whose validation precision is >= this (e.g. 0.9); "
        "a class that never reaches it keeps its max-F1 threshold (a note says so). "
        "Default: the threshold of maximal F1",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="the new checkpoint (default <checkpoint stem>.calibrated.ckpt next to it); "
        "an existing file is never overwritten",
    )
    parser.add_argument(
        "--run_dir",
        default=None,
        help="the validation run's directory (default runs/<time>-calibrate)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="-- OVERRIDE",
        help="after `--`: options for the validation run, as for `ssgrl validate` "
        "(e.g. -- --trainer.accelerator gpu)",
    )


def default_out(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.calibrated.ckpt")


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.precision is not None and not 0.0 < args.precision <= 1.0:
        return _error(f"--precision must be in (0, 1], got {args.precision}")
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else default_out(ckpt)
    try:
        raw, meta = read_checkpoint(ckpt)
    except (FileNotFoundError, CheckpointError) as err:
        return _error(str(err))
    if out.exists():
        return _error(f"{out} exists; it is never overwritten: choose another --out")
    overrides = list(args.overrides)

    from ssgrl.engine.cli import new_run_dir, parse_config, run_cli

    try:
        config = parse_config(args.config, *overrides)
    except (ValueError, FileNotFoundError) as err:
        return _error(f"config {args.config}: {err}")
    val_split, test_split = config.data.val_split, config.data.test_split
    if val_split is None:
        return _error(f"config {args.config} has no validation split (data.val_split is null)")
    if val_split == test_split:
        return _error(
            f"config {args.config}: the validation split {val_split!r} is the test split; "
            "thresholds are never fitted on the test split"
        )
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir("runs", "calibrate")
    try:
        cli = run_cli(
            [
                "validate",
                "--config",
                str(args.config),
                "--ckpt_path",
                str(ckpt),
                "--run_dir",
                str(run_dir),
                *overrides,
            ]
        )
    except SystemExit as err:
        if err.code in (0, None):
            return _error("the validation run stopped before scoring the validation split")
        return _error(f"the validation run failed ({err.code})")
    module = cli.model
    dm = cli.datamodule
    val = module.results.get("val") or {}
    if val.get("target") is None:
        return _error(f"the validation split {val_split!r} has no labels: nothing to fit on")
    assert dm.split_names["val"] == val_split != dm.split_names["test"]

    targets = val["target"]
    probs = probabilities(val["logits"])
    fitted_on = f"{dm.dataset}:{val_split}, {len(targets)} images, ssgrl calibrate of {ckpt.name}"
    global_threshold = module.evaluation.threshold
    fit = fit_thresholds(
        probs,
        targets,
        meta.class_names,
        fitted_on,
        precision=args.precision,
        global_threshold=global_threshold,
    )
    attach_meta(raw, dataclasses.replace(meta, thresholds=fit.thresholds))
    try:
        save_atomically(raw, out)
    except FileExistsError:
        return _error(f"{out} exists; it is never overwritten: choose another --out")

    from ssgrl.engine.module import write_json

    at_global = metrics_at_thresholds(probs, targets, [global_threshold] * len(meta.class_names))
    at_fitted = metrics_at_thresholds(probs, targets, fit.thresholds.values)
    write_json(
        cli.run_dir / "thresholds.json",
        {
            **fit.to_dict(),
            "checkpoint": str(ckpt),
            "written_to": str(out),
            "at_global_threshold": {"threshold": global_threshold, **at_global},
            "at_fitted_thresholds": at_fitted,
        },
    )
    print(f"thresholds ({fit.thresholds.method}) fitted on {fitted_on}:\n")
    print(fit.table())
    print(
        f"\nvalidation CF1 / OF1: {at_global['CF1']:.2f} / {at_global['OF1']:.2f} at "
        f"{global_threshold:g}, {at_fitted['CF1']:.2f} / {at_fitted['OF1']:.2f} at the fitted "
        "thresholds (fitted on this split: optimistic; `ssgrl test` the new checkpoint)"
    )
    print(f"written {out} (the table: {cli.run_dir / 'thresholds.json'})")
    return 0
