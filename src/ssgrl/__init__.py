"""ssgrl: Semantic-Specific Graph Representation Learning for multi-label image recognition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ssgrl.models.ssgrl import SSGRL, Baseline


def load_model(path: Any) -> SSGRL | Baseline:
    """The model of an ssgrl checkpoint file, in eval mode, with ``class_names`` and
    ``preprocessing`` attached (see ``ssgrl.engine.checkpoint.load_model``)."""
    from ssgrl.engine.checkpoint import load_model as _load

    return _load(path)


__all__ = ["__version__", "load_model"]
