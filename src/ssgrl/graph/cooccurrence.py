"""The label co-occurrence graph M[i, j] = P(j | i) of a training split, with provenance.

SSGRL (reference choice): M[i, j] = count(i and j) / count(i) from the TRAINING labels, diagonal 1,
no threshold, no symmetrisation; the model uses A_in = M and A_out = M^T. A target of -1 (ignore)
is not counted as present. A class that never occurs gets a zero row (its diagonal still follows
``diagonal``), never NaN.

ML-GCN style options: ``threshold`` t binarises the off-diagonal entries (M >= t -> 1, else 0);
``reweight`` p then rescales each row's off-diagonal entries to sum to p and sets the diagonal to
1 - p (ML-GCN paper, eq. 8). Their released ``gen_A`` differs: it normalises *columns*
(``A * 0.25 / (A.sum(0) + 1e-6)``) and adds the identity (diagonal 1). Rows are used here because
row c of A_in is what node c aggregates in the GGNN, so node c's neighbour weights sum to p; a
row with no neighbours stays zero (the explicit form of their ``+ 1e-6``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

GRAPH_NPY = "graph.npy"
GRAPH_JSON = "graph.json"


def matrix_sha256(matrix: np.ndarray) -> str:
    """Hex sha256 of the float32 C-order bytes of ``matrix``."""
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).hexdigest()


@dataclass
class LabelGraph:
    """(C, C) float32 ``matrix`` over ``classes``, counted on ``num_images`` images of ``split``."""

    matrix: np.ndarray
    classes: tuple[str, ...]
    split: str
    num_images: int
    sha256: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        self.classes = tuple(self.classes)
        c = len(self.classes)
        if self.matrix.shape != (c, c):
            raise ValueError(
                f"label graph of split {self.split!r}: matrix has shape {self.matrix.shape}, "
                f"expected ({c}, {c}) for {c} classes"
            )
        actual = matrix_sha256(self.matrix)
        if actual != self.sha256:
            raise ValueError(
                f"label graph of split {self.split!r}: sha256 of the matrix is {actual}, but "
                f"the recorded sha256 is {self.sha256}; the matrix was modified or the record "
                "is corrupt"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record: classes, split, num_images, sha256, options, matrix (nested lists)."""
        return {
            "classes": list(self.classes),
            "split": self.split,
            "num_images": self.num_images,
            "sha256": self.sha256,
            "options": dict(self.options),
            "matrix": self.matrix.tolist(),  # float32 -> float is exact, and so is the way back
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> LabelGraph:
        """Inverse of ``to_dict``; raises if a key is missing or the sha256 does not match."""
        missing = [
            k for k in ("classes", "split", "num_images", "sha256", "matrix") if k not in record
        ]
        if missing:
            raise ValueError(f"label graph record lacks the key(s) {', '.join(missing)}")
        return cls(
            matrix=np.asarray(record["matrix"], dtype=np.float32),
            classes=tuple(str(c) for c in record["classes"]),
            split=str(record["split"]),
            num_images=int(record["num_images"]),
            sha256=str(record["sha256"]),
            options=dict(record.get("options") or {}),
        )

    @classmethod
    def load(cls, path: str | Path) -> LabelGraph:
        """Read a ``graph.json`` (or the directory holding one) written by ``save``."""
        path = Path(path)
        if path.is_dir():
            path = path / GRAPH_JSON
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no label graph here; write one with `ssgrl graph`"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
        try:
            return cls.from_dict(record)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``graph.npy`` and ``graph.json`` into ``out_dir``; returns their paths by name."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"npy": out / GRAPH_NPY, "json": out / GRAPH_JSON}
        np.save(paths["npy"], self.matrix, allow_pickle=False)
        paths["json"].write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return paths


@dataclass(frozen=True)
class GraphOptions:
    """How the graph is built from training labels: the config's ``model.graph`` section.

    ``file``: use a ``graph.json`` written by ``ssgrl graph`` instead of counting; it must have
    been counted on this very training split (same classes, split, image count, options),
    else it is refused with what differs."""

    diagonal: Literal[0, 1] = 1
    threshold: float | None = None
    reweight: float | None = None
    file: str | None = None


class GraphMismatchError(ValueError):
    """A saved graph that does not belong to the data it is used with."""


def graph_from_labels(
    targets: np.ndarray, classes: Sequence[str], split: str, options: GraphOptions
) -> LabelGraph:
    """The one way a run gets its label graph (``fit``, ``ssgrl graph`` and the demo)."""
    counted = _count(targets, classes, split, options)
    if options.file is None:
        return counted
    saved = LabelGraph.load(options.file)
    differences = graph_differences(saved, counted)
    if differences:
        raise GraphMismatchError(
            f"model.graph.file {options.file} does not belong to this training data: "
            + "; ".join(differences)
            + ". Rebuild it with `ssgrl graph --config YOUR_CONFIG --out DIR`"
        )
    return saved


def graph_differences(saved: LabelGraph | dict[str, Any], expected: LabelGraph) -> list[str]:
    """What differs between a saved graph (or its provenance record) and the graph of the data:
    class list, split, image count, options, matrix (sha256)."""
    record = saved.to_dict() if isinstance(saved, LabelGraph) else dict(saved)
    out: list[str] = []
    classes = list(record.get("classes") or [])
    if classes != list(expected.classes):
        missing = [c for c in expected.classes if c not in classes]
        extra = [c for c in classes if c not in expected.classes]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "another order"
        out.append(f"classes differ ({detail})")
    if record.get("split") != expected.split:
        out.append(f"counted on split {record.get('split')!r}, this is {expected.split!r}")
    if record.get("num_images") != expected.num_images:
        out.append(
            f"{record.get('num_images')} images counted, this split has {expected.num_images}"
        )
    options = {
        k: (record.get("options") or {}).get(k) for k in ("diagonal", "threshold", "reweight")
    }
    if options != {k: expected.options.get(k) for k in options}:
        out.append(f"options {options}, configured {expected.options}")
    if not out and record.get("sha256") != expected.sha256:
        out.append("same split and options but other labels (matrix sha256 differs)")
    return out


def _count(
    targets: np.ndarray, classes: Sequence[str], split: str, options: GraphOptions
) -> LabelGraph:
    return build_label_graph(
        targets,
        classes,
        split=split,
        diagonal=options.diagonal,
        threshold=options.threshold,
        reweight=options.reweight,
    )


def build_label_graph(
    targets: np.ndarray,
    classes: Sequence[str],
    split: str,
    diagonal: Literal[1, 0] = 1,
    threshold: float | None = None,
    reweight: float | None = None,
) -> LabelGraph:
    """M[i, j] = P(j | i) over the images of ``targets`` (N, C) in {1, 0, -1} (see module doc)."""
    targets = np.asarray(targets)
    c = len(classes)
    if targets.ndim != 2 or targets.shape[1] != c:
        raise ValueError(
            f"split {split!r}: targets have shape {targets.shape}, expected (images, {c}) for "
            f"{c} classes"
        )
    if not np.isin(targets, (1, 0, -1)).all():
        raise ValueError(f"split {split!r}: targets must be 1 (present), 0 (absent) or -1 (ignore)")
    if diagonal not in (0, 1):
        raise ValueError(f"diagonal must be 0 or 1, got {diagonal!r}")
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if reweight is not None and not 0.0 <= reweight <= 1.0:
        raise ValueError(f"reweight p must lie in [0, 1], got {reweight}")

    present = (targets == 1).astype(np.int64)  # (N, C); -1 (ignore) is not present
    both = present.T @ present  # (C, C) count(i and j); diagonal = count(i)
    count = np.diag(both).copy()  # (C,)
    m = np.zeros((c, c), dtype=np.float64)
    seen = count > 0
    m[seen] = both[seen] / count[seen, None]  # P(j | i); rows of unseen classes stay 0
    off = ~np.eye(c, dtype=bool)
    if threshold is not None:
        m[off] = (m[off] >= threshold).astype(np.float64)
    if reweight is not None:
        m[~off] = 0.0
        row = m.sum(axis=1, keepdims=True)  # (C, 1) off-diagonal mass
        m = np.divide(m * reweight, row, out=np.zeros_like(m), where=row > 0)
        self_weight = 1.0 - reweight
    else:
        self_weight = 1.0
    np.fill_diagonal(m, self_weight if diagonal == 1 else 0.0)

    matrix = m.astype(np.float32)
    return LabelGraph(
        matrix=matrix,
        classes=tuple(str(x) for x in classes),
        split=split,
        num_images=int(targets.shape[0]),
        sha256=matrix_sha256(matrix),
        options={"diagonal": int(diagonal), "threshold": threshold, "reweight": reweight},
    )
