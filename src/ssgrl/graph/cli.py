"""``ssgrl graph``: build the label co-occurrence graph of a training split.

    ssgrl graph --out DIR --config FILE                  # a run config, as `ssgrl fit` reads it
    ssgrl graph --out DIR --dataset NAME [--root DIR] [--split train] [--option KEY=VALUE ...]
                [--diagonal {0,1}] [--threshold T] [--reweight P]

With ``--config``, the file is read by the very parser of ``ssgrl fit`` (every key checked, the
same defaults), and the graph is built by the function ``fit`` builds it with, from ``data`` (the
training split) and ``model.graph`` (diagonal, threshold, reweight): the graph a user inspects is
the graph that trains. Flags given as well override the config; ``--option`` entries are merged
over ``data.dataset_options``. The graph's ``split`` reads ``DATASET:SPLIT``. Writes
``graph.npy``, ``graph.json`` and ``graph.png`` into DIR and prints their paths, one a line.
Exit code 0 on success, 2 on unusable input (the message on stderr names the file or option).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

from ssgrl.graph.cooccurrence import GraphOptions, graph_from_labels

PROG = "ssgrl graph"
GRAPH_PNG = "graph.png"
_EVAL_SPLITS = ("val", "valid", "validation", "test")


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
        default=None,
        help="value of M[i, i] (default: model.graph.diagonal of --config, else 1, as in SSGRL)",
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


def read_run_config(path: Path) -> Any:
    """``path`` parsed by the ``ssgrl fit`` parser (a jsonargparse Namespace)."""
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    from ssgrl.engine.cli import parse_config

    try:
        return parse_config(path)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None


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


def resolve_source(
    args: argparse.Namespace,
) -> tuple[str, str | None, str, dict[str, Any], GraphOptions]:
    """(dataset, root, split, dataset options, graph options) from the config and the flags."""
    data: dict[str, Any] = {}
    graph = GraphOptions()
    if args.config is not None:
        config = read_run_config(args.config)
        data = dict(config.data)
        graph = GraphOptions(**dict(config.model.graph))
    dataset = args.dataset if args.dataset is not None else data.get("dataset")
    if not dataset:
        raise InputError("no dataset given: pass --dataset NAME or --config FILE")
    root = args.root if args.root is not None else data.get("root")
    split = args.split if args.split is not None else data.get("train_split") or "train"
    options = dict(data.get("dataset_options") or {})
    options.update(parse_options(args.option))
    graph = dataclasses.replace(
        graph,
        diagonal=graph.diagonal if args.diagonal is None else args.diagonal,
        threshold=graph.threshold if args.threshold is None else args.threshold,
        reweight=graph.reweight if args.reweight is None else args.reweight,
    )
    return str(dataset), None if root is None else str(root), str(split), options, graph


def run(args: argparse.Namespace) -> int:
    from ssgrl.data.registry import load_split
    from ssgrl.viz.graph import plot_graph

    try:
        dataset, root, split_name, options, graph_options = resolve_source(args)
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
        # the function and the split label `ssgrl fit` uses
        graph = graph_from_labels(
            split.targets, split.classes, f"{dataset}:{split_name}", graph_options
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
