"""The small-data recipe (configs/custom_small.yaml) end to end on a tiny real-photo dataset:
``ssgrl fit`` with flip-augmented cached features and early stopping on val mAP, then the
header's ``ssgrl test`` of best.ckpt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import EarlyStopping

from ssgrl.cli import main
from ssgrl.data.photos import make_photos
from ssgrl.engine.cli import run_cli

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "custom_small.yaml"
SMALL = ["--data.image_size", "64", "--trainer.accelerator", "cpu"]
QUIET = ["--trainer.enable_progress_bar", "false"]


@pytest.mark.slow
def test_recipe_fits_stops_early_and_tests(tmp_path: Path) -> None:
    data = tmp_path / "photos"
    make_photos(data, num_train=40, num_val=12, num_test=8, image_size=64, seed=0)
    cache = ["--feature_cache_dir", str(tmp_path / "features")]

    # the shipped file as a user runs it (2 epochs)
    run = tmp_path / "run"
    argv = ["fit", "--config", str(RECIPE), "--data.root", str(data), "--run_dir", str(run)]
    cli = run_cli([*argv, *SMALL, *QUIET, *cache, "--trainer.max_epochs", "2"])
    (stopper,) = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert (stopper.monitor, stopper.mode) == ("val/mAP", "max")
    assert cli.trainer.current_epoch == 2
    fitted = json.loads((run / "metrics.json").read_text())
    best = Path(fitted["best_checkpoint"])
    assert best.is_file() and 0 <= fitted["best_val_mAP"] <= 100
    # flip: each training image and its mirror went through the backbone once
    reports = {r["role"]: r for r in fitted["feature_cache"]}
    assert reports["train"]["computed"] == 2 * 40
    assert reports["val"]["computed"] == 12
    assert cli.datamodule.train_augment == "flip"
    assert cli.model.model_config.dropout > 0 and cli.model.optim.weight_decay > 0

    # the header's test command on best.ckpt: the test split's features come from the backbone
    tested = tmp_path / "test"
    test_argv = ["test", "--config", str(RECIPE), "--ckpt_path", str(best)]
    assert main([*test_argv, "--data.root", str(data), "--run_dir", str(tested), *QUIET]) == 0
    metrics = json.loads((tested / "metrics.json").read_text())
    assert 0 <= metrics["metrics"]["mAP"] <= 100
    assert metrics["protocol"]["checkpoint_selected_on"].startswith("val mAP")

    # early stopping does stop: no epoch can beat the first by min_delta, patience 1 -> the
    # second epoch is the last of at most 6 (features read back from the cache folder)
    config = yaml.safe_load(RECIPE.read_text())
    (callback,) = config["trainer"]["callbacks"]
    callback["init_args"].update(patience=1, min_delta=1000.0)
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(config))
    run2 = tmp_path / "run2"
    argv = ["fit", "--config", str(strict), "--data.root", str(data), "--run_dir", str(run2)]
    cli = run_cli([*argv, *SMALL, *QUIET, *cache, "--trainer.max_epochs", "6"])
    (stopper,) = [c for c in cli.trainer.callbacks if isinstance(c, EarlyStopping)]
    assert stopper.stopped_epoch == 1
    assert cli.trainer.current_epoch == 2
    again = json.loads((run2 / "metrics.json").read_text())
    assert {r["role"]: r["computed"] for r in again["feature_cache"]} == {"train": 0, "val": 0}
