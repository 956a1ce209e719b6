"""`ssgrl ablate` and `ssgrl compare` through the command line on tiny fitted runs.

One module fixture runs `ssgrl ablate` on the tiny config with two cheap variants (SSGRL and
the baseline, one epoch, sharing one feature cache); the compare tests reuse those runs.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from ssgrl.analysis.ablate import cache_args
from ssgrl.analysis.bootstrap import resample_counts, resample_indices, weighted_average_precision
from ssgrl.cli import main
from ssgrl.metrics import compute_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]


def ablated(base: Path) -> Path:
    """The tiny ablation (ssgrl, baseline), run once per session (test_report reuses it)."""
    out = base / "h4-ablate"
    if not (out / "ablation.json").is_file():
        args = ["ablate", "--config", str(TINY), "--variants", "ssgrl,baseline"]
        assert main([*args, "--out", str(out), "--bootstrap", "200", "--", *QUIET]) == 0
    return out


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ablated(tmp_path_factory.getbasetemp())


def test_ablate_trains_each_variant_through_fit_and_test(ablation: Path) -> None:
    data = json.loads((ablation / "ablation.json").read_text())
    assert list(data["variants"]) == ["ssgrl", "baseline"]
    for name, arch in (("ssgrl", "ssgrl"), ("baseline", "baseline")):
        run = ablation / name
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["net"]["arch"] == arch
        assert config["trainer"]["max_epochs"] == 1  # the overrides after -- reach every fit
        # one shared feature cache: exact, since the tiny config's backbone is frozen
        assert Path(config["feature_cache_dir"]) == ablation / "features"
        assert (run / "checkpoints" / "best.ckpt").is_file()
        tested = json.loads((run / "test" / "metrics.json").read_text())
        assert tested["stage"] == "test"
        ids = json.loads((run / "test" / "test_ids.json").read_text())["ids"]
        assert len(ids) == tested["metrics"]["num_images"] == 16
    # the second variant read every image's features from the cache the first one filled
    fitted = json.loads((ablation / "baseline" / "metrics.json").read_text())
    assert all(r["computed"] == 0 for r in fitted["feature_cache"]), fitted["feature_cache"]
    comparison = data["comparison"]
    assert comparison["reference"] == "ssgrl" and comparison["resamples"] == 200
    for name in ("ssgrl", "baseline"):
        saved = json.loads((ablation / name / "test" / "metrics.json").read_text())
        assert comparison["runs"][name]["mAP"]["value"] == pytest.approx(saved["metrics"]["mAP"])
    md = (ablation / "ablation.md").read_text()
    assert "| baseline | backbone + global average pooling + linear |" in md
    assert "ΔmAP vs ssgrl" in md
    html = (ablation / "ablation.html").read_text()
    assert 'id="compare-summary"' in html and "http" not in html


def test_ablate_refuses_an_unknown_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ablate", "--config", str(TINY), "--variants", "ssgrl,no-such-thing"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no-such-thing" in err and "baseline" in err  # lists the known ones


def test_compare_cli_tables_intervals_and_files(
    ablation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [str(ablation / "ssgrl"), str(ablation / "baseline")]
    md, html, js = tmp_path / "c.md", tmp_path / "c.html", tmp_path / "c.json"
    args = ["compare", *runs, "--reference", "baseline", "--bootstrap", "300", "--seed", "3"]
    assert main([*args, "--markdown", str(md), "--html", str(html), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "reference: baseline" in out and "Protocol cards" in out
    data = json.loads(js.read_text())
    # the point values are the metrics module's on the saved logits
    logits = np.load(ablation / "ssgrl" / "test" / "test_logits.npy")
    targets = np.load(ablation / "ssgrl" / "test" / "test_targets.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = compute_metrics(logits, targets, top_k=None, logits=True)
    ssgrl = data["runs"]["ssgrl"]
    assert ssgrl["mAP"]["value"] == pytest.approx(point["mAP"])
    assert ssgrl["CF1"]["value"] == pytest.approx(point["CF1"])
    # the interval is the percentile interval of the per-replicate mAP (seed 3, 300 resamples)
    weights = resample_counts(resample_indices(16, 300, 3), 16)
    ap = weighted_average_precision(logits, targets, weights, "noninterp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = 100 * np.nanmean(ap, axis=1)
    assert ssgrl["mAP"]["low"] == pytest.approx(np.nanpercentile(maps, 2.5))
    assert ssgrl["mAP"]["high"] == pytest.approx(np.nanpercentile(maps, 97.5))
    diff = data["differences"]["ssgrl"]["mAP"]
    assert diff["value"] == pytest.approx(
        ssgrl["mAP"]["value"] - data["runs"]["baseline"]["mAP"]["value"]
    )
    assert diff["low"] <= diff["value"] <= diff["high"]
    # per-class differences sorted by size, undefined classes (no positive in 16 images) last
    rows = data["per_class"]["ssgrl"]
    sizes = [abs(r["difference"]["value"]) for r in rows if r["difference"] is not None]
    assert sizes == sorted(sizes, reverse=True)
    assert all(r["difference"] is None for r in rows[len(sizes) :])
    assert (
        md.read_text().count("| --- |") >= 1
        and "Per-class AP: ssgrl against baseline" in md.read_text()
    )
    page = html.read_text()
    for section in ("compare-summary", "compare-protocol", "compare-per-class-ssgrl"):
        assert f'id="{section}"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_compare_refuses_a_protocol_mismatch_unless_allowed(
    ablation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "voc07"
    shutil.copytree(ablation / "baseline" / "test", other)
    meta = json.loads((other / "metrics.json").read_text())
    meta["protocol"]["ap_mode"] = "voc07"
    meta["protocol"]["input_size"] = 448
    (other / "metrics.json").write_text(json.dumps(meta))
    runs = [str(ablation / "ssgrl"), str(other)]
    assert main(["compare", *runs, "--bootstrap", "50"]) == 2
    err = capsys.readouterr().err
    assert "ap_mode differs" in err and "input_size differs" in err
    assert "--allow-protocol-mismatch" in err
    assert main(["compare", *runs, "--bootstrap", "50", "--allow-protocol-mismatch"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: protocols differ" in out and "(DIFFERS)" in out


def test_compare_refuses_runs_on_other_images(
    ablation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "shuffled"
    shutil.copytree(ablation / "baseline" / "test", other)
    ids = json.loads((other / "test_ids.json").read_text())
    ids["ids"] = ids["ids"][::-1]
    (other / "test_ids.json").write_text(json.dumps(ids))
    assert main(["compare", str(ablation / "ssgrl"), str(other), "--bootstrap", "50"]) == 2
    err = capsys.readouterr().err
    assert "different test images: row 0" in err and "test_ids.json" in err
    # a run that was never tested: the message says how to test it
    untested = tmp_path / "untested"
    untested.mkdir()
    assert main(["compare", str(ablation / "ssgrl"), str(untested)]) == 2
    assert "ssgrl test --config" in capsys.readouterr().err


def test_ablate_shares_the_users_feature_cache_folder_when_given(tmp_path: Path) -> None:
    """A cache folder among the overrides is the one every variant uses (not OUT/features)."""
    own = cache_args(str(TINY), [], tmp_path)
    assert own == ["--cache_features", "true", "--feature_cache_dir", str(tmp_path / "features")]
    given = ["--feature_cache_dir", str(tmp_path / "mine")]
    assert cache_args(str(TINY), given, tmp_path) == ["--cache_features", "true"]
    assert cache_args(str(TINY), [f"--feature_cache_dir={tmp_path}"], tmp_path)[-1] == "true"
