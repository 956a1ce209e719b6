"""Label co-occurrence statistics and label embeddings, each with provenance.

``build_label_graph`` counts M[i, j] = P(j | i) on a training split; ``embed_class_names`` turns
class names into word vectors x_c (GloVe, MiniLM or one-hot).
"""

from __future__ import annotations

from ssgrl.graph.cooccurrence import (
    GraphMismatchError,
    GraphOptions,
    LabelGraph,
    build_label_graph,
    graph_differences,
    graph_from_labels,
    matrix_sha256,
)
from ssgrl.graph.embeddings import (
    SOURCES,
    EmbeddingOptions,
    LabelEmbeddings,
    embed_class_names,
    segment,
    tokenize_class_name,
)

__all__ = [
    "SOURCES",
    "EmbeddingOptions",
    "GraphMismatchError",
    "GraphOptions",
    "LabelEmbeddings",
    "LabelGraph",
    "build_label_graph",
    "embed_class_names",
    "graph_differences",
    "graph_from_labels",
    "matrix_sha256",
    "segment",
    "tokenize_class_name",
]
