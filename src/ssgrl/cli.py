"""The ``ssgrl`` command. Thin: each sub-command lives next to the code it drives.

``fit``/``validate``/``test`` go to LightningCLI (``ssgrl.engine.cli``); every other
sub-command is a module with ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

LIGHTNING_COMMANDS = ("fit", "validate", "test")

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("ssgrl.inference.cli", "predict the labels of images, folders or path lists"),
    "explain": ("ssgrl.viz.cli", "draw one attention-map overlay per class for an image"),
    "export": ("ssgrl.inference.export", "export a checkpoint to ONNX (onnxruntime, no PyTorch)"),
    "serve": ("ssgrl.inference.server", "an HTTP service and web page: labels and attention"),
    "metrics": ("ssgrl.metrics.cli", "score saved predictions (mAP, CP/CR/CF1, OP/OR/OF1)"),
    "graph": ("ssgrl.graph.cli", "build the label co-occurrence graph of a split"),
    "demo": (
        "ssgrl.demo",
        "generate data, train SSGRL, SSGRL without the graph and a baseline, compare, report",
    ),
    "import-official": ("ssgrl.engine.official", "convert the authors' released checkpoint"),
    "calibrate": ("ssgrl.inference.calibrate", "fit per-class thresholds on the validation split"),
    "make-photos": ("ssgrl.data.photos", "build a small real-photo dataset (offline collages)"),
    "compare": (
        "ssgrl.analysis.compare",
        "compare tested runs: mAP/CF1/OF1 with paired bootstrap intervals, per-class differences",
    ),
    "ablate": ("ssgrl.analysis.ablate", "train and test model variants, then compare them"),
    "report": ("ssgrl.analysis.report", "a self-contained HTML report of a tested run"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssgrl",
        description="SSGRL multi-label image recognition. "
        "Training commands: ssgrl {fit,validate,test} --config FILE [--help].",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(
            name, help=f"{name} with a YAML config (LightningCLI; see `ssgrl {name} --help`)"
        )
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).configure(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from ssgrl.engine.cli import lightning_main

        return lightning_main(argv)
    if argv and argv[0] in COMMANDS:  # build only the parser that is needed: imports are slow
        module = importlib.import_module(COMMANDS[argv[0]][0])
        parser = argparse.ArgumentParser(prog=f"ssgrl {argv[0]}", description=COMMANDS[argv[0]][1])
        module.configure(parser)
        return int(module.run(parser.parse_args(argv[1:])))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
