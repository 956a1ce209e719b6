"""`ssgrl demo` end to end at a tiny size: every artefact it promises, with consistent contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ssgrl.cli import main

KEYS = {"mAP", "per_class_AP", "CP", "CR", "CF1", "OP", "OR", "OF1", "top3"}


@pytest.mark.slow
def test_demo_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--num-train", "48", "--num-val", "24", "--num-test", "24"]
    args += ["--image-size", "96", "--epochs", "2", "--explain", "2", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["ssgrl"]) >= KEYS and set(summary["baseline"]) >= KEYS
    assert summary["ssgrl_minus_baseline_mAP"] == pytest.approx(
        summary["ssgrl"]["mAP"] - summary["baseline"]["mAP"]
    )
    ckpt = Path(summary["ssgrl_checkpoint"])
    assert ckpt.is_file() and ckpt.name in printed
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["ssgrl"]
    assert meta["model_config"]["arch"] == "ssgrl"
    for stage in (
        "generate_data_s",
        "graph_embeddings_s",
        "ssgrl_train_s",
        "ssgrl_test_s",
        "total_s",
    ):
        assert summary["wall_time_s"][stage] >= 0
    report = (out / "report.md").read_text()
    assert "| SSGRL |" in report and "baseline" in report
    assert f"{summary['ssgrl']['mAP']:.2f}" in report
    for picture in (
        "explain/test_000.png",
        "explain/test_001.png",
        "per_class_ap.png",
        "graph/graph.png",
    ):
        assert (out / picture).is_file() and f"]({picture})" in report
    assert (out / "graph" / "graph.json").is_file()
    # a second run never writes into a used folder
    assert main(args) == 2
