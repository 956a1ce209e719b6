"""`ssgrl metrics` end to end: files in tmp_path, JSON and table output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ssgrl.cli import main
from ssgrl.metrics import average_precision, compute_metrics

SSGRL = Path(sys.executable).parent / "ssgrl"


def write_inputs(tmp_path: Path, seed: int = 0, n: int = 40, c: int = 5) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, c))
    targets = (rng.random((n, c)) < 0.4).astype(np.int8)
    targets[0] = 1  # every class has a positive
    targets[1, 0] = -1
    np.save(tmp_path / "scores.npy", probs)
    np.save(tmp_path / "targets.npy", targets)
    return tmp_path / "scores.npy", tmp_path / "targets.npy"


def assert_close(got: object, expected: object) -> None:
    """Recursive equality with a float tolerance (pytest.approx rejects nested dicts)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for key, value in expected.items():
            assert_close(got[key], value)
    elif isinstance(expected, float):
        assert isinstance(got, float) and got == pytest.approx(expected, abs=1e-9)
    else:
        assert got == expected


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["metrics", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_matches_api_and_sklearn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores, targets = write_inputs(tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n\nbird\ncar\nbus\n", encoding="utf-8")  # blank line skipped
    code, out, err = run_cli(
        capsys, "--scores", scores, "--targets", targets, "--classes", classes, "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    s, t = np.load(scores), np.load(targets)
    assert_close(result, compute_metrics(s, t, class_names=["cat", "dog", "bird", "car", "bus"]))
    keep = t[:, 0] >= 0  # sklearn oracle for class 0 with its ignored row removed
    assert result["per_class_AP"]["cat"] == pytest.approx(
        100 * average_precision_score(t[keep, 0], s[keep, 0])
    )
    assert set(result) >= {"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "top3", "num_images"}
    assert set(result) >= {"top3_mlgcn", "topk", "topk_mlgcn", "top_k_variants"}
    assert set(result["top_k_variants"]) == {"top3", "top3_mlgcn"}
    assert result["top_k"] == result["top_k_effective"] == 3
    assert result["topk_mlgcn"] == result["top3_mlgcn"] != result["top3"]
    assert result["ap_mode"] == "noninterp" and result["num_images"] == 40


def test_options_reach_the_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores, targets = write_inputs(tmp_path, seed=1)
    code, out, _ = run_cli(
        capsys,
        "--scores", scores, "--targets", targets,
        "--ap-mode", "voc07", "--threshold", "0.3", "--top-k", "2", "--json",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    s, t = np.load(scores), np.load(targets)
    expected = compute_metrics(s, t, ap_mode="voc07", threshold=0.3, top_k=2)
    assert_close(result, expected)
    assert "top2" in result and "top2_mlgcn" in result and result["threshold"] == 0.3
    code, out, _ = run_cli(
        capsys, "--scores", scores, "--targets", targets, "--top-k", "0", "--json"
    )
    off = json.loads(out)
    assert code == 0 and off["top_k"] is None and off["top_k_effective"] is None
    assert not {"top3", "top3_mlgcn", "topk", "topk_mlgcn", "top_k_variants"} & set(off)


def test_top_k_above_class_count_is_clamped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores, targets = write_inputs(tmp_path, seed=6, c=2)
    code, out, err = run_cli(capsys, "--scores", scores, "--targets", targets, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["top_k"] == 3 and result["top_k_effective"] == 2
    assert "top2" in result and "top2_mlgcn" in result and "top3" not in result
    assert_close(result, compute_metrics(np.load(scores), np.load(targets), top_k=3))
    code, out, _ = run_cli(capsys, "--scores", scores, "--targets", targets)
    assert code == 0 and "top-2 ML-GCN" in out and "clamped" in out
    code, out, err = run_cli(capsys, "--scores", scores, "--targets", targets, "--top-k", "-1")
    assert code == 2 and out == "" and "--top-k" in err


def test_logits_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    probs_path, targets = write_inputs(tmp_path, seed=2)
    probs = np.load(probs_path)
    logits_path = tmp_path / "logits.npy"
    np.save(logits_path, np.log(probs / (1 - probs)))
    code, out, err = run_cli(capsys, "--scores", logits_path, "--targets", targets)
    assert code == 2 and out == ""
    assert "logits.npy" in err and "--logits" in err
    code, out, _ = run_cli(
        capsys, "--scores", logits_path, "--targets", targets, "--logits", "--json"
    )
    assert code == 0
    from_logits = json.loads(out)
    code, out, _ = run_cli(capsys, "--scores", probs_path, "--targets", targets, "--json")
    assert_close(from_logits, json.loads(out))


def test_table_output_and_undefined_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores, targets = write_inputs(tmp_path, seed=3)
    t = np.load(targets)
    t[:, 2] = np.where(t[:, 2] == 1, -1, t[:, 2])  # class 2 keeps no positive
    np.save(targets, t)
    code, out, err = run_cli(capsys, "--scores", scores, "--targets", targets)
    assert code == 0
    assert "mAP" in out and "CF1" in out and "top-3" in out and "top-3 ML-GCN" in out
    assert "class_2" in out and "undefined" in out
    assert "warning" in err and "class_2" in err
    code, out, _ = run_cli(capsys, "--scores", scores, "--targets", targets, "--json")
    result = json.loads(out)
    assert result["per_class_AP"]["class_2"] is None and result["undefined_classes"] == ["class_2"]
    ap = average_precision(np.load(scores), t)
    assert result["mAP"] == pytest.approx(100 * np.nanmean(ap))
    assert "NaN" not in out


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing_scores", "missing.npy"),
        ("shape_mismatch", "targets.npy"),
        ("one_dimensional", "scores.npy"),
        ("bad_target", "row 3, column 1"),
        ("bad_classes", "classes.txt"),
        ("not_npy", "scores.npy"),
        ("all_undefined", "no class has a positive"),
    ],
)
def test_bad_inputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, needle: str
) -> None:
    scores, targets = write_inputs(tmp_path, seed=4)
    extra: list[str | Path] = []
    if case == "missing_scores":
        scores = tmp_path / "missing.npy"
    elif case == "shape_mismatch":
        np.save(targets, np.load(targets)[:, :3])
    elif case == "one_dimensional":
        np.save(scores, np.load(scores)[:, 0])
    elif case == "bad_target":
        t = np.load(targets)
        t[3, 1] = 2
        np.save(targets, t)
    elif case == "bad_classes":
        (tmp_path / "classes.txt").write_text("a\nb\n", encoding="utf-8")
        extra = ["--classes", tmp_path / "classes.txt"]
    elif case == "not_npy":
        scores.write_text("0.1,0.2\n", encoding="utf-8")
    elif case == "all_undefined":
        np.save(targets, np.zeros((40, 5), dtype=np.int8))
    code, out, err = run_cli(capsys, "--scores", scores, "--targets", targets, *extra)
    assert code == 2 and out == ""
    assert err.startswith("ssgrl metrics: error:") and needle in err


def test_console_script(tmp_path: Path) -> None:
    scores, targets = write_inputs(tmp_path, seed=5)
    proc = subprocess.run(
        [str(SSGRL), "metrics", "--scores", str(scores), "--targets", str(targets), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert_close(result, compute_metrics(np.load(scores), np.load(targets)))
    proc = subprocess.run(
        [str(SSGRL), "metrics", "--scores", str(tmp_path / "nope.npy"), "--targets", str(targets)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "nope.npy" in proc.stderr
