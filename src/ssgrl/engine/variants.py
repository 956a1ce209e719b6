"""The ablation registry: each variant of SSGRL (and the baselines) as ``ssgrl fit`` overrides.

A variant's ``args`` are appended to ``ssgrl fit --config CFG.yaml``; they change one idea and
leave the rest of the config (data, backbone, optimisation, seed) as it is, so runs of the same
config differ only in what the variant names. ``ssgrl ablate`` trains a list of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    name: str  # e.g. "identity-graph"
    description: str  # one line for tables/reports
    args: tuple[
        str, ...
    ]  # `ssgrl fit` command-line overrides, e.g. ("--model.net.arch", "baseline")


def _v(name: str, description: str, *args: str) -> Variant:
    return Variant(name, description, tuple(args))


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _v("ssgrl", "SSGRL as configured (the reference of the comparisons)"),
        _v(
            "baseline",
            "backbone + global average pooling + linear",
            "--model.net.arch",
            "baseline",
        ),
        _v(
            "baseline-gmp",
            "backbone + global max pooling + linear",
            "--model.net.arch",
            "baseline",
            "--model.net.global_pool",
            "max",
        ),
        _v(
            "no-graph",
            "SSGRL with T = 0 GGNN steps: no message passing",
            "--model.net.ggnn_steps",
            "0",
        ),
        _v(
            "identity-graph",
            "SSGRL with the identity adjacency: each class hears only itself",
            "--model.net.adjacency",
            "identity",
        ),
        _v(
            "uniform-graph",
            "SSGRL with a uniform adjacency (1/C): each class hears the mean of all",
            "--model.net.adjacency",
            "uniform",
        ),
        _v(
            "learned-graph",
            "SSGRL with the adjacency trained, initialised from the label statistics",
            "--model.net.learn_adjacency",
            "true",
        ),
        _v(
            "mlgcn-graph",
            "SSGRL on ML-GCN's graph: P(j|i) thresholded at 0.4, re-weighted with p = 0.2",
            "--model.graph.threshold",
            "0.4",
            "--model.graph.reweight",
            "0.2",
        ),
        _v(
            "no-decoupling",
            "SSGRL without semantic decoupling: one pooled feature projected per class",
            "--model.net.semantic_decoupling",
            "false",
        ),
        _v(
            "onehot-embeddings",
            "SSGRL with one-hot label embeddings (no word semantics)",
            "--model.embeddings.source",
            "onehot",
        ),
        _v(
            "learned-embeddings",
            "SSGRL with the label embeddings trained (initialised as configured)",
            "--model.net.learn_embeddings",
            "true",
        ),
        _v("focal", "SSGRL trained with the focal loss (gamma 2)", "--model.loss.name", "focal"),
        _v(
            "asl",
            "SSGRL trained with the asymmetric loss (gamma- 4, gamma+ 1, clip 0.05)",
            "--model.loss.name",
            "asl",
        ),
    )
}


def variant(name: str) -> Variant:
    """The registered variant ``name``; a ValueError lists the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}"
        ) from None


__all__ = ["VARIANTS", "Variant", "variant"]
