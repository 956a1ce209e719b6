"""ssgrl: Semantic-Specific Graph Representation Learning for multi-label image recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ssgrl.checkpoint import Model


def load_model(path: Any) -> Model:
    """The model of an ssgrl checkpoint file, in eval mode on the CPU: ``model(x)`` gives
    logits, ``model.class_names``, ``model.preprocessing`` and ``model.thresholds`` come from
    the checkpoint (see ``ssgrl.checkpoint``)."""
    from ssgrl.checkpoint import load_model as _load

    return _load(path)


__all__ = ["__version__", "load_model"]
