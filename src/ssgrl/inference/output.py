"""The one shape a prediction takes, in JSON lines, CSV and HTTP alike: per label its score, the
threshold used and whether it is predicted, labels sorted by score (the list of
``{label, score}`` objects users know from image-classification pipelines)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def label_scores(
    probabilities: np.ndarray, class_names: Sequence[str], thresholds: np.ndarray
) -> list[dict[str, Any]]:
    """``[{"label", "score", "threshold", "predicted"}, ...]`` best first (ties: class order)."""
    order = np.argsort(-probabilities, kind="stable")
    return [
        {
            "label": class_names[i],
            "score": round(float(probabilities[i]), 6),
            "threshold": round(float(thresholds[i]), 6),
            "predicted": bool(probabilities[i] >= thresholds[i]),
        }
        for i in order
    ]


def prediction_record(
    image: str,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    thresholds: np.ndarray,
    top_k: int | None = None,
) -> dict[str, Any]:
    """One image's result: ``predicted`` (the labels at or above their thresholds, best first,
    at most ``top_k``) and ``labels`` (every class with its score, threshold and decision)."""
    scores = label_scores(probabilities, class_names, thresholds)
    predicted = [s["label"] for s in scores if s["predicted"]]
    if top_k is not None:
        predicted = predicted[:top_k]
        chosen = set(predicted)
        for s in scores:
            s["predicted"] = s["label"] in chosen
    return {"image": image, "predicted": predicted, "labels": scores}


__all__ = ["label_scores", "prediction_record"]
