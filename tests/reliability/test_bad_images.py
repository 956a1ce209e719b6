"""Unusable training images (empty, truncated, not an image) are all named at start-up, or
skipped with each remaining image still seen exactly once per epoch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssgrl.cli import main
from ssgrl.data.registry import load_split
from ssgrl.data.scan import check_image_file, scan_split

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
QUIET = ["--trainer.enable_progress_bar", "false"]


def _png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


BAD = {
    "empty.png": (b"", "empty file"),
    "cut.png": (_png_bytes(1)[:200], "not a readable image"),
    "cut.jpg": (_jpeg_bytes(2)[:-300], "truncated JPEG"),
    "text.jpg": (b"this is not an image\n" * 10, "not a readable image"),
}


def _dataset(root: Path, n_good: int = 12) -> list[str]:
    """A manifest dataset: n_good valid PNGs (+ one JPEG) and the BAD files, all in train.csv."""
    (root / "img").mkdir(parents=True)
    lines, good = ["image,labels"], []
    for i in range(n_good):
        name = f"img/good{i}.png" if i else "img/good0.jpg"
        (root / name).write_bytes(_png_bytes(10 + i) if i else _jpeg_bytes(10))
        lines.append(f"{name},{'cat' if i % 2 else 'dog'}")
        good.append(name)
    for name in BAD:
        (root / "img" / name).write_bytes(BAD[name][0])
        lines.append(f"img/{name},cat")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    val = ["image,labels", *(f"img/good{i}.png,{'cat' if i % 2 else 'dog'}" for i in (1, 2, 3, 4))]
    (root / "val.csv").write_text("\n".join(val) + "\n")
    return good


def test_each_defect_is_named(tmp_path: Path) -> None:
    good = _dataset(tmp_path)
    for name, (_, reason) in BAD.items():
        assert reason in (check_image_file(tmp_path / "img" / name) or "")
    assert check_image_file(tmp_path / "img" / "missing.png") == "no such file"
    split = load_split("manifest", "train", tmp_path)
    bad = scan_split(split)
    assert sorted(Path(b.path).name for b in bad) == sorted(BAD)
    rest = split.without([b.index for b in bad])
    assert rest.ids == good  # every valid image once, in order, no neighbour in a gap
    assert np.array_equal(rest.targets, split.targets[: len(good)])
    assert rest.load_image(3).size == (32, 32)
    assert rest.paths is not None and [p.name for p in rest.paths] == [Path(g).name for g in good]


def _fit(root: Path, run: Path, *extra: str) -> int:
    args = ["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET]
    args += ["--data.dataset", "manifest", "--data.root", str(root), "--data.image_size", "32"]
    args += ["--data.dataset_options", "{}", "--data.batch_size", "4", *extra]
    return main(args)


@pytest.mark.slow
def test_error_names_every_bad_image_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert _fit(tmp_path / "data", run) == 2
    err = capsys.readouterr().err
    assert "4 unusable image(s)" in err and "on_bad_image: skip" in err
    for name in BAD:
        assert name in err
    assert not (run / "checkpoints").exists()  # nothing trained


@pytest.mark.slow
def test_skip_trains_on_the_rest_once_per_epoch(tmp_path: Path) -> None:
    good = _dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert _fit(tmp_path / "data", run, "--data.on_bad_image", "skip") == 0
    listed = (run / "bad_images.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[1].split(":")[0]).name for line in listed) == sorted(BAD)
    reports = json.loads((run / "metrics.json").read_text())["feature_cache"]
    train = next(r for r in reports if r["role"] == "train")
    assert train["computed"] == len(good)  # the valid images, each once
