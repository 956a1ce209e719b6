"""`ssgrl demo` end to end at a tiny size: every artefact it promises, with consistent contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

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
        "graph_s",
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
    # the ablation: SSGRL, SSGRL without the graph and the chosen baseline, compared with paired
    # bootstrap intervals against SSGRL; its table is in report.md; report.html for SSGRL
    ablation = summary["ablation"]
    assert ablation["reference"] == "ssgrl" and ablation["resamples"] == 1000
    assert list(ablation["runs"]) == ["ssgrl", "no-graph", "baseline"]
    assert set(ablation["differences"]) == {"no-graph", "baseline"}
    assert ablation["runs"]["ssgrl"]["mAP"]["value"] == pytest.approx(summary["ssgrl"]["mAP"])
    assert ablation["runs"]["baseline"]["mAP"]["value"] == pytest.approx(summary["baseline"]["mAP"])
    for name, diff in ablation["differences"].items():
        mAP = diff["mAP"]
        assert mAP["low"] <= mAP["value"] <= mAP["high"], name
    no_graph = yaml.safe_load(
        (Path(summary["ablation_runs"]["no-graph"]) / "config.yaml").read_text()
    )
    assert (
        no_graph["model"]["net"]["arch"] == "ssgrl" and no_graph["model"]["net"]["ggnn_steps"] == 0
    )
    assert "## Ablation with 95% paired bootstrap intervals" in report
    assert "| no-graph |" in report and "ΔmAP vs ssgrl" in report
    for name in ("compare.md", "compare.html", "compare.json", "report.html"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert '<section id="attention">' in page and "data:image/png;base64," in page
    assert summary["wall_time_s"]["compare_s"] >= 0 and summary["wall_time_s"]["report_html_s"] >= 0
    # a second run never writes into a used folder
    assert main(args) == 2


@pytest.mark.slow
def test_demo_runs_through_the_cli_pipeline(tmp_path: Path) -> None:
    """Every demo model is an `ssgrl fit` + `ssgrl test` run: resolved config.yaml (data section
    and learning rate included), metrics.json with the protocol card, best/last checkpoints,
    TensorBoard; a run's config.yaml trains again with `ssgrl fit`; later runs read the
    backbone features the first one computed."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--num-train", "32", "--num-val", "16", "--num-test", "16"]
    args += ["--image-size", "64", "--epochs", "1", "--explain", "1", "--no-progress"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    runs = {name: Path(path) for name, path in summary["runs"].items()}
    assert set(runs) == {"ssgrl", "baseline_lr0.001", "baseline_lr0.003", "baseline_lr0.01"}
    for name, run in runs.items():
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["data"]["dataset"] == "synthetic"
        assert config["data"]["dataset_options"]["num_train"] == 32
        arch = "ssgrl" if name == "ssgrl" else "baseline"
        assert config["model"]["net"]["arch"] == arch
        lr = summary["ssgrl_lr"] if arch == "ssgrl" else float(name.removeprefix("baseline_lr"))
        assert config["model"]["optim"]["lr"] == pytest.approx(lr)
        assert (run / "checkpoints" / "best.ckpt").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert list(run.glob("events.out.tfevents.*"))
        tested = json.loads((run / "test" / "metrics.json").read_text())
        assert tested["protocol"]["split"] == "test"
        assert tested["protocol"]["checkpoint_selected_on"] == "val mAP on split 'val'"
        reported = summary["baseline_lr_candidates"].get(f"{lr:g}", summary["ssgrl"])
        assert tested["metrics"]["mAP"] == pytest.approx(
            summary["ssgrl"]["mAP"] if name == "ssgrl" else reported["test_mAP"]
        )
        fitted = json.loads((run / "metrics.json").read_text())
        computed = sum(r["computed"] for r in fitted["feature_cache"])
        assert computed == (48 if name == "ssgrl" else 0)  # 32 train + 16 val, once
    rerun = tmp_path / "rerun"
    config = runs["baseline_lr0.003"] / "config.yaml"
    assert main(["fit", "--config", str(config), "--run_dir", str(rerun)]) == 0
    again = json.loads((rerun / "metrics.json").read_text())
    first = json.loads((runs["baseline_lr0.003"] / "metrics.json").read_text())
    assert again["best_val_mAP"] == pytest.approx(first["best_val_mAP"], abs=1e-6)
