"""``ssgrl graph``: build the label co-occurrence graph of a training split.

    ssgrl graph --out DIR --config FILE                  # the data section of a LightningCLI YAML
    ssgrl graph --out DIR --dataset NAME [--root DIR] [--split train] [--option KEY=VALUE ...]
                [--diagonal {0,1}] [--threshold T] [--reweight P]

With ``--config``, ``data.dataset``, ``data.root``, ``data.train_split`` and
``data.dataset_options`` (or the same under ``data.init_args``; missing keys take
SSGRLDataModule's defaults) name the split; flags given as well override them and ``--option``
entries are merged over ``dataset_options``. The graph's ``split`` reads ``DATASET:SPLIT``. Writes
``graph.npy``, ``graph.json`` and ``graph.png`` into DIR and prints their paths, one a line.
Exit code 0 on success, 2 on unusable input (the message on stderr names the file or option).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ssgrl.graph.cooccurrence import build_label_graph

PROG = "ssgrl graph"
GRAPH_PNG = "graph.png"
_EVAL_SPLITS = ("val", "valid", "validation", "test")
# SSGRLDataModule's defaults for keys a config leaves out (a test keeps them in step)
DATAMODULE_DEFAULTS: dict[str, Any] = {"dataset": "synthetic", "root": None, "train_split": "train"}


class InputError(Exception):
    """A user-facing problem with the config file or the options."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for graph.npy/.json/.png")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="LightningCLI YAML whose data section names the split",
    )
    parser.add_argument("--dataset", default=None, help="dataset name, e.g. voc2007, coco2014")
    parser.add_argument("--root", default=None, help="dataset root folder")
    parser.add_argument(
        "--split", default=None, help="training split (default: data.train_split, else 'train')"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset option (VALUE is read as a YAML scalar); repeat for several",
    )
    parser.add_argument(
        "--diagonal",
        type=int,
        choices=(0, 1),
        default=1,
        help="value of M[i, i] (default: %(default)s, as in SSGRL)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="ML-GCN style: binarise off-diagonal entries at this value (e.g. 0.4)",
    )
    parser.add_argument(
        "--reweight",
        type=float,
        default=None,
        help="ML-GCN style: scale each row's off-diagonal entries to sum to p, diagonal 1 - p",
    )


def _yaml_error(path: Path, err: yaml.YAMLError) -> InputError:
    mark = getattr(err, "problem_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    return InputError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})")


def read_data_section(path: Path) -> dict[str, Any]:
    """The data module's init args from a LightningCLI YAML (``data:`` or ``data.init_args:``)."""
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise _yaml_error(path, err) from None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise InputError(
            f"{path}: expected a mapping with a 'data' section (the DataModule's args)"
        )
    data = config["data"]
    section = {k: v for k, v in data.items() if k not in ("class_path", "init_args")}
    init_args = data.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise InputError(
            f"{path}: data.init_args must be a mapping, got {type(init_args).__name__}"
        )
    section.update(init_args)
    options = section.get("dataset_options")
    if options is not None and not isinstance(options, dict):
        raise InputError(
            f"{path}: data.dataset_options must be a mapping of option: value, got {options!r}"
        )
    return section


def parse_options(entries: list[str]) -> dict[str, Any]:
    """``["num_train=8", "seed=0"]`` -> ``{"num_train": 8, "seed": 0}`` (YAML scalars)."""
    options: dict[str, Any] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--option {entry!r}: expected KEY=VALUE, e.g. --option seed=0")
        try:
            options[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise InputError(f"--option {entry!r}: VALUE is not a YAML scalar ({err})") from None
    return options


def resolve_source(args: argparse.Namespace) -> tuple[str, str | None, str, dict[str, Any]]:
    """(dataset, root, split, dataset options) from the config file and the flags."""
    section: dict[str, Any] = {}
    if args.config is not None:
        section = DATAMODULE_DEFAULTS | read_data_section(args.config)
    dataset = args.dataset if args.dataset is not None else section.get("dataset")
    if not dataset:
        raise InputError("no dataset given: pass --dataset NAME or --config FILE")
    root = args.root if args.root is not None else section.get("root")
    split = args.split if args.split is not None else section.get("train_split") or "train"
    options = dict(section.get("dataset_options") or {})
    options.update(parse_options(args.option))
    return str(dataset), None if root is None else str(root), str(split), options


def run(args: argparse.Namespace) -> int:
    from ssgrl.data.registry import load_split
    from ssgrl.viz.graph import plot_graph

    try:
        dataset, root, split_name, options = resolve_source(args)
        try:
            split = load_split(dataset, split_name, root=root, **options)
        except TypeError as exc:  # an option the loader does not take
            raise InputError(
                f"dataset {dataset!r} rejected its options {options}: {exc}; check --option "
                "and data.dataset_options"
            ) from None
        if not split.has_labels:
            raise InputError(
                f"split {split_name!r} of {dataset} has no public labels; build the graph from "
                "the training split"
            )
        graph = build_label_graph(
            split.targets,
            split.classes,
            split=f"{dataset}:{split_name}",  # as SSGRLModule records it in checkpoints
            diagonal=args.diagonal,
            threshold=args.threshold,
            reweight=args.reweight,
        )
    except (InputError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    graph.options.update({"dataset": dataset, "dataset_options": options})

    if split_name.lower() in _EVAL_SPLITS:
        print(
            f"{PROG}: warning: building the graph from the {split_name!r} split uses evaluation "
            "labels; SSGRL counts the training split only",
            file=sys.stderr,
        )
    unseen = [
        c for c, n in zip(graph.classes, (split.targets == 1).sum(axis=0), strict=True) if n == 0
    ]
    if unseen:
        print(
            f"{PROG}: warning: {len(unseen)} class(es) never occur in {split.name!r} and get "
            f"a zero row: {', '.join(unseen)}",
            file=sys.stderr,
        )
    paths = graph.save(args.out)
    paths["png"] = Path(args.out) / GRAPH_PNG
    plot_graph(graph, paths["png"])
    print(
        f"{PROG}: split {graph.split!r}: {len(graph.classes)} classes, "
        f"{graph.num_images} images, sha256 {graph.sha256}",
        file=sys.stderr,
    )
    for path in paths.values():
        print(path)
    return 0
