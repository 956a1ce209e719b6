"""Label co-occurrence graph: hand-computed counts, ignore handling, options, provenance."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

import numpy as np
import pytest

from ssgrl.graph import LabelGraph, build_label_graph, matrix_sha256

CLASSES = ("a", "b", "c", "d")
# 4 images x 4 classes; -1 = ignore. Class d never occurs.
TARGETS = np.array(
    [
        [1, 1, 0, 0],  # img0: a b
        [1, 0, 1, 0],  # img1: a c
        [1, 1, -1, 0],  # img2: a b, c ignored (not present)
        [0, 1, 1, 0],  # img3: b c
    ],
    dtype=np.int8,
)
# counts: a = 3 (img0-2), b = 3 (img0, 2, 3), c = 2 (img1, 3), d = 0
# pairs:  a&b = 2 (img0, 2), a&c = 1 (img1; img2 has c ignored), b&c = 1 (img3)
# M[i, j] = count(i and j) / count(i):
#   a: [1, 2/3, 1/3, 0]   b: [2/3, 1, 1/3, 0]   c: [1/2, 1/2, 1, 0]   d: [0, 0, 0, diag]
HAND = np.array(
    [
        [1, 2 / 3, 1 / 3, 0],
        [2 / 3, 1, 1 / 3, 0],
        [1 / 2, 1 / 2, 1, 0],
        [0, 0, 0, 1],
    ],
    dtype=np.float64,
)


def loop_oracle(targets: np.ndarray, diagonal: int = 1) -> np.ndarray:
    """P(j | i) by explicit counting over images (float64)."""
    n, c = targets.shape
    m = np.zeros((c, c))
    for i in range(c):
        has_i = [k for k in range(n) if targets[k, i] == 1]
        for j in range(c):
            if i == j:
                m[i, j] = diagonal
            elif has_i:
                m[i, j] = sum(1 for k in has_i if targets[k, j] == 1) / len(has_i)
    return m


def mlgcn_oracle(
    m: np.ndarray, threshold: float | None, p: float | None, diagonal: int
) -> np.ndarray:
    """ML-GCN eq. 8 by loops: binarise off-diagonal, rows' off-diagonal sum to p, diagonal 1-p."""
    c = m.shape[0]
    a = m.copy()
    if threshold is not None:
        for i in range(c):
            for j in range(c):
                if i != j:
                    a[i, j] = 1.0 if m[i, j] >= threshold else 0.0
    if p is not None:
        out = np.zeros_like(a)
        for i in range(c):
            total = sum(a[i, j] for j in range(c) if j != i)
            for j in range(c):
                if j != i and total > 0:
                    out[i, j] = p * a[i, j] / total
            out[i, i] = (1 - p) if diagonal == 1 else 0.0
        return out
    return a


def test_hand_computed_example() -> None:
    g = build_label_graph(TARGETS, CLASSES, split="train")
    assert g.matrix.dtype == np.float32 and g.matrix.shape == (4, 4)
    np.testing.assert_array_equal(g.matrix, HAND.astype(np.float32))
    assert g.matrix[0, 2] != g.matrix[2, 0]  # P(c|a) = 1/3, P(a|c) = 1/2: not symmetrised
    assert g.classes == CLASSES and g.split == "train" and g.num_images == 4
    assert g.options == {"diagonal": 1, "threshold": None, "reweight": None}


def test_ignore_is_not_present() -> None:
    as_absent = np.where(TARGETS == -1, 0, TARGETS)
    as_present = np.where(TARGETS == -1, 1, TARGETS)
    g = build_label_graph(TARGETS, CLASSES, "train").matrix
    np.testing.assert_array_equal(g, build_label_graph(as_absent, CLASSES, "train").matrix)
    assert not np.array_equal(g, build_label_graph(as_present, CLASSES, "train").matrix)


def test_never_occurring_class_has_zero_row_without_nan() -> None:
    for diagonal in (1, 0):
        m = build_label_graph(TARGETS, CLASSES, "train", diagonal=diagonal).matrix
        assert np.isfinite(m).all()
        np.testing.assert_array_equal(m[3, :3], 0)
        np.testing.assert_array_equal(m[:, 3][:3], 0)
        assert m[3, 3] == diagonal
    empty = build_label_graph(np.zeros((0, 4), np.int8), CLASSES, "train")
    np.testing.assert_array_equal(empty.matrix, np.eye(4, dtype=np.float32))
    assert empty.num_images == 0


def test_diagonal_zero() -> None:
    m = build_label_graph(TARGETS, CLASSES, "train", diagonal=0).matrix
    expected = HAND.copy()
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(m, expected.astype(np.float32))


def test_threshold_and_reweight_by_hand() -> None:
    t = build_label_graph(TARGETS, CLASSES, "train", threshold=0.5).matrix
    # off-diagonal >= 0.5: a->b (2/3), b->a (2/3), c->a (1/2), c->b (1/2)
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(t, expected)

    r = build_label_graph(TARGETS, CLASSES, "train", threshold=0.5, reweight=0.2).matrix
    # each row's neighbours share p = 0.2, self 1 - p = 0.8; d has no neighbours
    expected = np.array(
        [[0.8, 0.2, 0, 0], [0.2, 0.8, 0, 0], [0.1, 0.1, 0.8, 0], [0, 0, 0, 0.8]], np.float32
    )
    np.testing.assert_allclose(r, expected, rtol=0, atol=1e-7)
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(np.where(off, r, 0).sum(axis=1), [0.2, 0.2, 0.2, 0], atol=1e-7)

    # reweight without threshold keeps the proportions: row a [2/3, 1/3] -> [0.1333, 0.0667]
    w = build_label_graph(TARGETS, CLASSES, "train", reweight=0.2).matrix
    np.testing.assert_allclose(w[0], [0.8, 0.2 * 2 / 3, 0.2 / 3, 0], atol=1e-7)


@pytest.mark.parametrize(
    ("diagonal", "threshold", "reweight"),
    [
        (1, None, None),
        (0, None, None),
        (1, 0.4, None),
        (1, 0.4, 0.25),
        (0, 0.3, 0.25),
        (1, None, 0.5),
    ],
)
def test_against_loop_oracle(
    diagonal: Literal[1, 0], threshold: float | None, reweight: float | None
) -> None:
    rng = np.random.default_rng(0)
    targets = rng.choice([1, 0, 0, -1], size=(60, 7)).astype(np.int8)
    targets[:, 5] = np.where(targets[:, 5] == 1, 0, targets[:, 5])  # class 5 never present
    m = loop_oracle(targets, diagonal)
    expected = mlgcn_oracle(m, threshold, reweight, diagonal)
    got = build_label_graph(
        targets, list("abcdefg"), "train", diagonal=diagonal, threshold=threshold, reweight=reweight
    )
    np.testing.assert_allclose(got.matrix, expected.astype(np.float32), rtol=0, atol=1e-7)
    assert got.options == {"diagonal": diagonal, "threshold": threshold, "reweight": reweight}


def test_rebuild_is_byte_identical(tmp_path) -> None:
    rng = np.random.default_rng(1)
    targets = rng.choice([1, 0, -1], size=(200, 20)).astype(np.int8)
    names = [f"class{i}" for i in range(20)]
    g1 = build_label_graph(targets, names, "trainval")
    g2 = build_label_graph(targets.copy(), list(names), "trainval")
    assert g1.sha256 == g2.sha256 == matrix_sha256(g1.matrix)
    assert g1.sha256 == hashlib.sha256(g1.matrix.astype(np.float32).tobytes()).hexdigest()

    p1, p2 = g1.save(tmp_path / "one"), g2.save(tmp_path / "two")
    assert set(p1) == {"npy", "json"}
    for key in p1:
        assert p1[key].read_bytes() == p2[key].read_bytes()
    loaded = np.load(p1["npy"])
    assert loaded.dtype == np.float32
    assert hashlib.sha256(loaded.tobytes()).hexdigest() == g1.sha256


def test_dict_and_json_round_trip(tmp_path) -> None:
    g = build_label_graph(TARGETS, CLASSES, "train", threshold=0.3, reweight=0.25)
    record = json.loads(json.dumps(g.to_dict()))
    assert set(record) == {"classes", "split", "num_images", "sha256", "options", "matrix"}
    assert record["classes"] == list(CLASSES) and record["num_images"] == 4
    back = LabelGraph.from_dict(record)
    np.testing.assert_array_equal(back.matrix, g.matrix)  # exact: float32 survives JSON
    assert back.sha256 == g.sha256 and back.options == g.options

    g.save(tmp_path)
    for path in (tmp_path, tmp_path / "graph.json"):
        assert LabelGraph.load(path).sha256 == g.sha256


def test_tampered_record_is_rejected(tmp_path) -> None:
    g = build_label_graph(TARGETS, CLASSES, "train")
    record = g.to_dict()
    record["matrix"][0][1] = 0.5
    with pytest.raises(ValueError, match="sha256"):
        LabelGraph.from_dict(record)
    del record["sha256"]
    with pytest.raises(ValueError, match="sha256"):
        LabelGraph.from_dict(record)
    (tmp_path / "graph.json").write_text('{"classes": [\n  "a",,\n]}')
    with pytest.raises(ValueError, match=r"graph\.json, line 2"):
        LabelGraph.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="ssgrl graph"):
        LabelGraph.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"targets": TARGETS[:, :3]}, r"shape \(4, 3\), expected \(images, 4\)"),
        ({"targets": np.where(TARGETS == 1, 2, TARGETS)}, "1 \\(present\\), 0 \\(absent\\)"),
        ({"diagonal": 2}, "diagonal must be 0 or 1"),
        ({"threshold": 0.0}, r"threshold must lie in \(0, 1\]"),
        ({"threshold": 1.5}, r"threshold must lie in \(0, 1\]"),
        ({"reweight": -0.1}, r"reweight p must lie in \[0, 1\]"),
    ],
)
def test_invalid_input_is_rejected(kwargs: dict, message: str) -> None:
    args = {"targets": TARGETS, "classes": CLASSES, "split": "train"} | kwargs
    with pytest.raises(ValueError, match=message):
        build_label_graph(**args)
