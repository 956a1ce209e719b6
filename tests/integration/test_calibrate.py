"""Per-class thresholds end to end, through ``ssgrl.cli.main`` on tiny generated data: fitted at
the end of ``fit`` into best.ckpt and last.ckpt, refitted by ``ssgrl calibrate`` into a new file
(max-F1 or a precision target, never overwriting, never on the test split), reported next to the
global threshold by ``ssgrl test``, and used by ``ssgrl predict`` unless ``--threshold`` is given.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ssgrl.checkpoint import read_checkpoint
from ssgrl.cli import main
from ssgrl.data.registry import load_split
from ssgrl.inference.predictor import Predictor
from ssgrl.inference.thresholds import fit_thresholds, metrics_at_thresholds, probabilities

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}
QUIET = ["--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "fit"
    assert main(["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET]) == 0
    return run


@pytest.fixture(scope="module")
def calibrated(fitted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``ssgrl calibrate`` of best.ckpt with the default output: (new checkpoint, run dir)."""
    run = tmp_path_factory.mktemp("runs") / "calibrate"
    ckpt = fitted / "checkpoints" / "best.ckpt"
    args = ["calibrate", "--checkpoint", str(ckpt), "--config", str(fitted / "config.yaml")]
    assert main([*args, "--run_dir", str(run), "--", *QUIET]) == 0
    return fitted / "checkpoints" / "best.calibrated.ckpt", run


def _images(folder: Path, n: int) -> list[Path]:
    split = load_split("synthetic", "test", **DATA)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i}.png"
        split.load_image(i).save(path)
        paths.append(path)
    return paths


def test_fit_writes_thresholds_into_best_and_last(fitted: Path) -> None:
    for name in ("best.ckpt", "last.ckpt"):
        raw, meta = read_checkpoint(fitted / "checkpoints" / name)
        th = meta.thresholds
        assert th is not None, name
        assert th.fitted_on == f"synthetic:val, epoch {raw['epoch']}, {DATA['num_val']} images"
        assert th.method == "max-F1"
        assert len(th.values) == meta.num_classes and all(0 <= v <= 1 for v in th.values)
    protocol = json.loads((fitted / "metrics.json").read_text())["protocol"]
    assert protocol["thresholds"]["global"] == 0.5


def test_fit_thresholds_are_those_of_the_checkpoints_own_val_predictions(
    fitted: Path, calibrated: tuple[Path, Path]
) -> None:
    # calibrate's validation run scored best.ckpt's weights on val: refitting its logits gives
    # the thresholds fit stored in best.ckpt (same weights, same cached features)
    _, run = calibrated
    logits, targets = np.load(run / "val_logits.npy"), np.load(run / "val_targets.npy")
    _, meta = read_checkpoint(fitted / "checkpoints" / "best.ckpt")
    assert meta.thresholds is not None
    refit = fit_thresholds(probabilities(logits), targets, meta.class_names)
    np.testing.assert_allclose(refit.thresholds.values, meta.thresholds.values, atol=1e-6)


def test_calibrate_writes_a_new_checkpoint(fitted: Path, calibrated: tuple[Path, Path]) -> None:
    new, run = calibrated
    original = fitted / "checkpoints" / "best.ckpt"
    raw_old, meta_old = read_checkpoint(original)
    raw_new, meta_new = read_checkpoint(new)
    th = meta_new.thresholds
    assert th is not None and th.method == "max-F1"
    assert th.fitted_on.startswith(f"synthetic:val, {DATA['num_val']} images")
    # the weights and everything else are the original's
    assert raw_new["state_dict"].keys() == raw_old["state_dict"].keys()
    for k, v in raw_old["state_dict"].items():
        assert torch.equal(raw_new["state_dict"][k], v), k
    assert dataclasses.replace(meta_new, thresholds=None) == dataclasses.replace(
        meta_old, thresholds=None
    )
    # exact: the fitted thresholds reproduce the reported validation F1 on the same logits
    logits, targets = np.load(run / "val_logits.npy"), np.load(run / "val_targets.npy")
    probs = probabilities(logits)
    report = json.loads((run / "thresholds.json").read_text())
    assert report["written_to"] == str(new)
    assert [c["threshold"] for c in report["classes"]] == th.values
    pred = probs >= np.asarray(th.values)
    for c, row in enumerate(report["classes"]):
        if not row["fitted"]:
            assert row["threshold"] == 0.5 and row["note"]
            continue
        tp = int((pred[:, c] & (targets[:, c] == 1)).sum())
        pp = int((pred[:, c] & (targets[:, c] >= 0)).sum())
        assert row["f1"] == 2 * tp / (pp + row["positives"])
    assert report["at_fitted_thresholds"] == pytest.approx(
        metrics_at_thresholds(probs, targets, th.values)
    )


def test_calibrate_never_overwrites(
    fitted: Path,
    calibrated: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = fitted / "checkpoints" / "best.ckpt"
    args = ["calibrate", "--checkpoint", str(ckpt), "--config", str(fitted / "config.yaml")]
    existing = tmp_path / "taken.ckpt"
    existing.write_bytes(b"precious")
    assert main([*args, "--out", str(existing), "--run_dir", str(tmp_path / "r1")]) == 2
    assert existing.read_bytes() == b"precious"
    assert "never overwritten" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()  # refused before any validation ran
    # the default output (<stem>.calibrated.ckpt) exists after the first calibration: refused
    default, _ = calibrated
    before = default.read_bytes()
    assert main([*args, "--run_dir", str(tmp_path / "r2")]) == 2
    assert "best.calibrated.ckpt exists" in capsys.readouterr().err
    assert default.read_bytes() == before and not (tmp_path / "r2").exists()


def test_calibrate_precision_target(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = fitted / "checkpoints" / "last.ckpt"
    out = tmp_path / "precise.ckpt"
    args = ["calibrate", "--checkpoint", str(ckpt), "--config", str(fitted / "config.yaml")]
    args += ["--precision", "0.9", "--out", str(out), "--run_dir", str(tmp_path / "run")]
    assert main([*args, "--", *QUIET]) == 0
    printed = capsys.readouterr().out
    _, meta = read_checkpoint(out)
    th = meta.thresholds
    assert th is not None and th.method == "lowest with precision >= 0.9, else max-F1"
    report = json.loads((tmp_path / "run" / "thresholds.json").read_text())
    logits = np.load(tmp_path / "run" / "val_logits.npy")
    targets = np.load(tmp_path / "run" / "val_targets.npy")
    expected = fit_thresholds(probabilities(logits), targets, meta.class_names, precision=0.9)
    assert th.values == expected.thresholds.values
    for row in report["classes"]:
        if row["fitted"] and not row["note"]:
            assert row["precision"] >= 0.9
        elif row["fitted"]:
            assert "no threshold reaches precision 0.9" in row["note"]
            assert f"{row['name']}: {row['note']}" in th.notes
    # the per-class table: class, threshold, precision, recall, F1, note
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("class"))
    assert lines[header].split() == ["class", "threshold", "precision", "recall", "F1", "note"]
    names = [line.split()[0] for line in lines[header + 1 : header + 1 + meta.num_classes]]
    assert names == meta.class_names


def test_calibrate_never_fits_on_the_test_split(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load((fitted / "config.yaml").read_text())
    ckpt = str(fitted / "checkpoints" / "best.ckpt")
    for val_split, message in (("test", "never fitted on the test split"), (None, "no validation")):
        config["data"]["val_split"] = val_split
        path = tmp_path / f"config_{val_split}.yaml"
        path.write_text(yaml.safe_dump(config))
        out = tmp_path / f"{val_split}.ckpt"
        args = ["calibrate", "--checkpoint", ckpt, "--config", str(path), "--out", str(out)]
        assert main([*args, "--run_dir", str(tmp_path / f"run_{val_split}")]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_test_reports_global_and_fitted_thresholds(fitted: Path, tmp_path: Path) -> None:
    ckpt = fitted / "checkpoints" / "best.ckpt"
    before = ckpt.read_bytes()
    run = tmp_path / "test"
    args = ["test", "--config", str(fitted / "config.yaml"), "--ckpt_path", str(ckpt)]
    assert main([*args, "--run_dir", str(run), *QUIET]) == 0
    result = json.loads((run / "metrics.json").read_text())
    m = result["metrics"]
    _, meta = read_checkpoint(ckpt)
    th = meta.thresholds
    assert th is not None and ":val" in th.fitted_on
    logits, targets = np.load(run / "test_logits.npy"), np.load(run / "test_targets.npy")
    probs = probabilities(logits)
    fitted_block = m["at_fitted_thresholds"]
    assert fitted_block["fitted_on"] == th.fitted_on and fitted_block["method"] == th.method
    expected = metrics_at_thresholds(probs, targets, th.values)
    for key in ("CP", "CR", "CF1", "OP", "OR", "OF1"):
        assert fitted_block[key] == pytest.approx(expected[key], abs=1e-9)
    # the global block is still there, at 0.5
    at_half = metrics_at_thresholds(probs, targets, [0.5] * meta.num_classes)
    assert m["CF1"] == pytest.approx(at_half["CF1"], abs=1e-9)
    assert result["protocol"]["thresholds"] == {
        "global": 0.5,
        "fitted": {"fitted_on": th.fitted_on, "method": th.method},
    }
    # testing fits nothing: the checkpoint is untouched, its thresholds still from val
    assert ckpt.read_bytes() == before


def test_test_says_when_the_checkpoint_has_no_thresholds(fitted: Path, tmp_path: Path) -> None:
    raw, meta = read_checkpoint(fitted / "checkpoints" / "best.ckpt")
    raw["ssgrl"] = dataclasses.replace(meta, thresholds=None).to_dict()
    bare = tmp_path / "bare.ckpt"
    torch.save(raw, bare)
    run = tmp_path / "test"
    args = ["test", "--config", str(fitted / "config.yaml"), "--ckpt_path", str(bare)]
    assert main([*args, "--run_dir", str(run), *QUIET]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["metrics"]["at_fitted_thresholds"] is None
    card = result["protocol"]["thresholds"]
    assert card["fitted"] is None and "no fitted thresholds" in card["note"]


def _check_record(
    record: dict, probs: np.ndarray, names: list[str], thresholds: np.ndarray
) -> None:
    """A JSON-lines record against the probabilities and thresholds, by hand."""
    labels = record["labels"]
    assert [entry["label"] for entry in labels] == [
        names[i] for i in np.argsort(-probs, kind="stable")
    ]
    for entry in labels:
        c = names.index(entry["label"])
        assert entry["score"] == pytest.approx(float(probs[c]), abs=1e-6)
        assert entry["threshold"] == round(float(thresholds[c]), 6)
        assert entry["predicted"] == bool(probs[c] >= thresholds[c])
    assert record["predicted"] == [e["label"] for e in labels if e["predicted"]]


def test_predict_uses_fitted_thresholds_unless_threshold_given(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = fitted / "checkpoints" / "best.ckpt"
    paths = _images(tmp_path / "imgs", 4)
    _, meta = read_checkpoint(ckpt)
    assert meta.thresholds is not None
    fitted_values = np.asarray(meta.thresholds.values)
    predictor = Predictor(ckpt)
    probs = {p.name: predictor.predict_images([Image.open(p).convert("RGB")])[0] for p in paths}
    base = ["predict", "--checkpoint", str(ckpt), str(tmp_path / "imgs"), "--no-progress"]

    assert main(base) == 0
    captured = capsys.readouterr()
    assert f"fitted on {meta.thresholds.fitted_on}" in captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == 4
    for record in records:
        _check_record(record, probs[Path(record["image"]).name], meta.class_names, fitted_values)
    assert any(r["predicted"] for r in records)  # low fitted thresholds: something is predicted

    assert main([*base, "--threshold", "0.2"]) == 0
    captured = capsys.readouterr()
    assert "one threshold for every class: 0.2 (given)" in captured.err
    flat = np.full(meta.num_classes, 0.2)
    for line in captured.out.splitlines():
        record = json.loads(line)
        _check_record(record, probs[Path(record["image"]).name], meta.class_names, flat)


def test_predict_csv_has_scores_and_thresholds(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = fitted / "checkpoints" / "best.ckpt"
    (path,) = _images(tmp_path / "imgs", 1)
    missing = tmp_path / "imgs" / "missing.png"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(path),
                str(missing),
                "--format",
                "csv",
                "--no-progress",
            ]
        )
        == 1
    )
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    _, meta = read_checkpoint(ckpt)
    assert meta.thresholds is not None
    names = meta.class_names
    assert rows[0] == ["image", "predicted", "error", *names, *(f"{c}:threshold" for c in names)]
    good, bad = rows[1], rows[2]
    scores = np.array([float(v) for v in good[3 : 3 + len(names)]])
    thresholds = np.array([float(v) for v in good[3 + len(names) :]])
    np.testing.assert_allclose(thresholds, meta.thresholds.values, atol=1e-6)
    probs = Predictor(ckpt).predict_images([Image.open(path).convert("RGB")])[0]
    np.testing.assert_allclose(scores, probs, atol=1e-6)
    values = np.asarray(meta.thresholds.values)
    expected = [names[i] for i in np.argsort(-probs, kind="stable") if probs[i] >= values[i]]
    assert good[1] == "|".join(expected) and good[2] == ""
    assert bad[0] == str(missing) and bad[1] == "" and "missing.png" in bad[2]
    assert bad[3 : 3 + len(names)] == [""] * len(names)
