"""End to end on tiny benchmark-layout data (VOCdevkit trees written to ``tmp_path``):

1. VOC 2012: ``ssgrl fit`` with classes that never occur in train, then ``ssgrl test`` on the
   split without public labels writes the evaluation-server files, not a made-up mAP.
2. An authors'-layout checkpoint (random, 20 VOC classes) through ``ssgrl import-official``,
   then ``predict``, ``explain`` and ``test`` on VOC 2007 with the imported weights.
3. A missing ImageNet weights file stops ``ssgrl fit`` with a message saying what to give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from fixtures_voc import make_voc_splits, write_authors_files
from helpers import TINY_LITE0_NET
from PIL import Image
from sklearn.metrics import average_precision_score

import ssgrl
from ssgrl.cli import main
from ssgrl.data.decode import open_image
from ssgrl.data.transforms import eval_transform
from ssgrl.data.voc import VOC_CLASSES
from ssgrl.engine.official import SELECTED_ON
from ssgrl.engine.pretrained import pretrained_help
from ssgrl.metrics import sigmoid

pytestmark = pytest.mark.slow
V = {name: c for c, name in enumerate(VOC_CLASSES)}
QUIET = ["--trainer.enable_progress_bar", "false"]

# VOC 2012: 5 of the 20 classes occur in train (cat only once besides a difficult one), bus
# only in val; test has images but no annotation files, as on the real server split.
TRAIN_2012 = {
    "2012_000001": [("dog", 0), ("person", 0)],
    "2012_000002": [("person", 0)],
    "2012_000003": [("cat", 0), ("car", 0)],
    "2012_000004": [("dog", 0)],
    "2012_000005": [("person", 0), ("car", 0), ("cat", 1)],  # difficult cat: ignored
    "2012_000006": [],
}
VAL_2012 = {
    "2012_000101": [("dog", 0)],
    "2012_000102": [("person", 0), ("car", 0)],
    "2012_000103": [("cat", 0)],
    "2012_000104": [("bus", 0), ("person", 0)],
}
TEST_2012 = ["2012_000203", "2012_000201", "2012_000202", "2012_000205", "2012_000204"]


def write_config(path: Path, model: dict[str, Any], data: dict[str, Any], **top: Any) -> Path:
    """A run config in the grouped schema: ``model`` holds ``net`` (the architecture),
    ``embeddings``, ``optim``, ``evaluation``; ``top`` adds top-level keys (``cache_features``)."""
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 1,
            "enable_model_summary": False,
        },
        "model": {"pretrained": "none", **model},
        "data": data,
        **top,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def tiny_voc2012_config(tmp: Path) -> Path:
    root = tmp / "voc2012"
    make_voc_splits(root, "2012", {"train": TRAIN_2012, "val": VAL_2012, "test": TEST_2012})
    return write_config(
        tmp / "voc2012.yaml",
        model={
            "net": dict(TINY_LITE0_NET),
            "embeddings": {"source": "onehot"},
            "optim": {"lr": 1e-3},
        },
        data={"dataset": "voc2012", "root": str(root), "image_size": 64, "batch_size": 4},
        cache_features=True,
    )


# --- 1. VOC 2012: fit, then test on the split without labels ------------------------------------


@pytest.fixture(scope="module")
def voc2012(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("voc2012")
    config = tiny_voc2012_config(tmp)
    fit, test = tmp / "fit", tmp / "test"
    assert main(["fit", "--config", str(config), "--run_dir", str(fit), *QUIET]) == 0
    best = fit / "checkpoints" / "best.ckpt"
    args = ["test", "--config", str(fit / "config.yaml"), "--ckpt_path", str(best)]
    assert main([*args, "--run_dir", str(test), *QUIET]) == 0
    return {"fit": fit, "test": test, "best": best, "base": tmp / "voc2012/VOCdevkit/VOC2012"}


def test_label_graph_from_train_with_unseen_classes(voc2012: dict[str, Path]) -> None:
    """P(j | i) counted by hand over TRAIN_2012; the 15 unseen classes keep only the diagonal."""
    ckpt = torch.load(voc2012["best"], map_location="cpu", weights_only=True)
    want = np.eye(20, dtype=np.float32)
    for i, j, p in [
        ("dog", "person", 1 / 2),  # dog in 1, 4; with person in 1
        ("person", "dog", 1 / 3),  # person in 1, 2, 5
        ("person", "car", 1 / 3),
        ("car", "person", 1 / 2),  # car in 3, 5
        ("car", "cat", 1 / 2),  # the difficult cat of 5 is not counted
        ("cat", "car", 1.0),  # cat (non-difficult) in 3 only
    ]:
        want[V[i], V[j]] = p
    np.testing.assert_allclose(ckpt["state_dict"]["net.graph.adjacency"].numpy(), want, atol=1e-6)
    meta = ckpt["ssgrl"]
    assert meta["class_names"] == list(VOC_CLASSES)
    assert meta["graph"]["num_images"] == len(TRAIN_2012)
    metrics = json.loads((voc2012["fit"] / "metrics.json").read_text())
    # validation: bus never occurs in train but is defined (positive) in val
    assert metrics["metrics"]["num_images"] == len(VAL_2012)
    defined = {c for c, ap in metrics["metrics"]["per_class_AP"].items() if ap is not None}
    assert defined == {"dog", "person", "car", "cat", "bus"}
    assert np.isfinite(metrics["best_val_mAP"])


def test_unlabelled_test_split_writes_submission_not_metrics(voc2012: dict[str, Path]) -> None:
    run = voc2012["test"]
    result = json.loads((run / "metrics.json").read_text())
    assert result["metrics"] is None and "not public" in result["note"]
    protocol = result["protocol"]
    assert protocol["dataset"] == "voc2012" and protocol["split"] == "test"
    assert protocol["num_images"] == len(TEST_2012) and protocol["has_labels"] is False
    assert not (run / "test_targets.npy").exists()  # no placeholder labels anywhere

    logits = np.load(run / "test_logits.npy")  # (N, 20), rows in test.txt order
    assert logits.shape == (len(TEST_2012), 20) and np.isfinite(logits).all()
    main_dir = run / "results" / "VOC2012" / "Main"
    assert result["predictions"] == str(run / "results")
    files = sorted(p.name for p in main_dir.iterdir())
    assert files == sorted(f"comp1_cls_test_{c}.txt" for c in VOC_CLASSES)
    for c, name in enumerate(VOC_CLASSES):
        rows = [
            line.split()
            for line in (main_dir / f"comp1_cls_test_{name}.txt").read_text().splitlines()
        ]
        assert [r[0] for r in rows] == TEST_2012 and all(len(r) == 2 for r in rows)
        np.testing.assert_allclose([float(r[1]) for r in rows], logits[:, c], atol=5.1e-7)

    # oracle for the order: the saved checkpoint run on each image file by id
    model = ssgrl.load_model(voc2012["best"])
    transform = eval_transform(model.preprocessing)
    x = torch.stack(
        [transform(open_image(voc2012["base"] / "JPEGImages" / f"{i}.jpg")) for i in TEST_2012]
    )  # (N, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(np.diff(expected, axis=0)).max() > 1e-4  # distinct images, distinct rows


# --- 2. the authors' checkpoint: import, predict, explain, test ---------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("official")
    files = write_authors_files(tmp / "authors", num_classes=20)
    out = tmp / "model.ckpt"
    argv = ["import-official", "--checkpoint", str(files["ckpt"]), "--adjacency", str(files["adj"])]
    argv += ["--embeddings", str(files["emb"]), "--classes", "voc", "--out", str(out)]
    assert main([*argv, "--image-size", "64", "--resize", "64"]) == 0
    files["ckpt"].unlink()  # 0.4 GB: the imported file must be enough from here on
    return {"tmp": tmp, "ckpt": out, "adj": files["adj"]}


TRAIN_2007 = {"000005": [("chair", 0)], "000007": [("car", 0), ("person", 0)]}
TEST_2007 = {
    "000001": [("dog", 0), ("person", 0)],
    "000002": [("train", 0)],
    "000004": [("car", 0), ("car", 1), ("person", 1)],  # person only difficult: ignored
    "000006": [("diningtable", 0), ("chair", 0), ("pottedplant", 0)],
    "000008": [("chair", 0), ("person", 0)],
}


def test_imported_checkpoint_predict_explain_and_test(
    imported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "voc2007"
    base = make_voc_splits(root, "2007", {"train": TRAIN_2007, "test": TEST_2007})
    config = write_config(
        tmp_path / "voc2007.yaml",
        model={
            "net": {
                "arch": "ssgrl",
                "backbone": "resnet101",
                "pool": "avg2x2",
                "train_stages": 1,
                "d1": 1024,
                "d2": 1024,
                "ggnn_steps": 3,
                "reset_gate_uses_update_weights": True,
            },
            # the imported 300-d word vectors come from the checkpoint
            "embeddings": {"source": "onehot"},
            "evaluation": {"ap_mode": "noninterp"},
        },
        data={
            "dataset": "voc2007",
            "root": str(root),
            "val_split": None,
            "image_size": 64,
            "resize": 64,
            "mean": [0.485, 0.456, 0.406],  # as the import records: ImageNet, bilinear
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bilinear",
            "batch_size": 2,
        },
    )
    ckpt = imported["ckpt"]
    images = [base / "JPEGImages" / f"{i}.jpg" for i in TEST_2007]

    # predict: one JSON line per image, the 20 classes with score, threshold and decision
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(ckpt), *map(str, images), "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["image"]).name for r in lines] == [p.name for p in images]
    scores = [{s["label"]: s["score"] for s in r["labels"]} for r in lines]
    assert all(sorted(s) == sorted(VOC_CLASSES) for s in scores)
    probs = np.array([[s[c] for c in VOC_CLASSES] for s in scores])  # (5, 20)
    assert ((probs >= 0) & (probs <= 1)).all() and probs.std(axis=0).max() > 1e-4

    # explain: a PNG with the image and two class tiles
    png = tmp_path / "explain.png"
    argv = ["explain", "--checkpoint", str(ckpt), str(images[0]), "--out", str(png)]
    assert main([*argv, "--classes", "dog", "person"]) == 0
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.width > picture.height

    # test: the module builds network, classes and preprocessing from the checkpoint alone,
    # and Lightning restores the imported weights into it
    run = tmp_path / "test"
    argv = ["test", "--config", str(config), "--ckpt_path", str(ckpt), "--run_dir", str(run)]
    assert main([*argv, *QUIET]) == 0
    result = json.loads((run / "metrics.json").read_text())
    m, protocol = result["metrics"], result["protocol"]
    assert m["num_images"] == len(TEST_2007) and protocol["num_images"] == len(TEST_2007)
    assert protocol["split"] == "test" and protocol["has_labels"] is True
    assert protocol["checkpoint_selected_on"] == SELECTED_ON
    assert protocol["pretrained"].startswith("official:")
    logits, targets = np.load(run / "test_logits.npy"), np.load(run / "test_targets.npy")
    assert targets[2, V["person"]] == -1 and targets[2, V["car"]] == 1
    # the Lightning test loop and `ssgrl predict` agree image by image (JSON rounds to 1e-6;
    # batches of 2, 2, 1 against one of 5 change float32 sums in the random ResNet-101)
    np.testing.assert_allclose(sigmoid(logits), probs, atol=3e-5)
    # and the mAP is scikit-learn's AP over the non-ignored entries of each defined class
    aps = []
    for c in range(20):
        keep = targets[:, c] >= 0
        if (targets[keep, c] == 1).any():
            aps.append(average_precision_score(targets[keep, c], logits[keep, c]))
    assert len(aps) == m["num_classes_defined"] == 7
    assert m["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-6)
    # the graph the model used is the authors' prob.npy, not the one of this train split
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    np.testing.assert_array_equal(state["net.graph.adjacency"].numpy(), np.load(imported["adj"]))


# --- 3. a recipe's ImageNet weights file is missing ----------------------------------------------


def test_missing_pretrained_file_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_voc2012_config(tmp_path)
    argv = ["fit", "--config", str(config), "--run_dir", str(tmp_path / "run"), *QUIET]
    argv += ["--model.net.backbone", "resnet18", "--model.pretrained", "/nonexistent.pth"]
    capsys.readouterr()
    assert main(argv) == 2  # one message, no traceback
    message = capsys.readouterr().err
    assert "Traceback" not in message
    assert "/nonexistent.pth" in message and "no such file" in message
    assert pretrained_help("resnet18") in message
    assert "model.pretrained: PATH to an ImageNet state dict of timm's 'resnet18'" in message
    assert "model.pretrained: none" in message
    assert not (tmp_path / "run" / "checkpoints").exists()
