"""The path real users take, through ``ssgrl fit`` / ``ssgrl test`` as they run it: a backbone stage
fine-tuned on top of frozen ones, cached features at every precision, few classes, and
evaluation that needs nothing but the checkpoint and the evaluated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ssgrl.cli import main
from ssgrl.data.registry import load_split
from ssgrl.engine.pretrained import lite0_timm_state_dict
from ssgrl.inference.predictor import Predictor
from ssgrl.models.backbone import Backbone

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
FINETUNE = REPO / "configs" / "tiny_finetune.yaml"
QUIET = ["--trainer.enable_progress_bar", "false"]


def _backbone_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "net.backbone.body."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _trained_modules(backbone: Backbone) -> set[str]:
    """Module names (e.g. ``blocks.5.0.bn1``) whose parameters train under the freezing policy."""
    return {n.rsplit(".", 1)[0] for n, p in backbone.body.named_parameters() if p.requires_grad}


def _check_frozen_stages(
    pretrained: dict[str, torch.Tensor], after: dict[str, torch.Tensor], trained: set[str]
) -> None:
    """Frozen stages bit-identical, parameters and buffers alike; the trained stage's BatchNorm
    running statistics moved."""
    assert trained, "the policy trains nothing"
    changed = [k for k in after if not torch.equal(after[k], pretrained[k])]
    frozen_changed = [k for k in changed if k.rsplit(".", 1)[0] not in trained]
    assert frozen_changed == [], f"frozen tensors changed: {frozen_changed[:10]}"
    trained_bn = [k for k in after if k.endswith("running_mean") and k.rsplit(".", 1)[0] in trained]
    assert trained_bn, "the trained stage has no BatchNorm"
    assert all(k in changed for k in trained_bn), "the trained stage's BatchNorm did not update"


@pytest.mark.slow
def test_frozen_lite0_stages_stay_bit_identical_through_fit(tmp_path: Path) -> None:
    """``ssgrl fit`` with one trained stage, a sanity check and validation every epoch (the
    points where Lightning restores module modes): 47 of Lite0's 48 BatchNorm layers used to
    drift from the pretrained weights."""
    run = tmp_path / "run"
    args = ["fit", "--config", str(FINETUNE), "--run_dir", str(run), *QUIET]
    assert main([*args, "--trainer.num_sanity_val_steps", "1", "--trainer.max_epochs", "2"]) == 0
    after = _backbone_state(run / "checkpoints" / "last.ckpt")
    pretrained = dict(lite0_timm_state_dict())
    policy = Backbone("tf_efficientnet_lite0", train_stages=1)
    _check_frozen_stages(pretrained, after, _trained_modules(policy))
    assert set(after) <= set(pretrained)
    # and the trained stage is the last one (blocks 5-6 at stride 32), nothing before it
    assert {m.split(".")[1] for m in _trained_modules(policy)} == {"5", "6"}


@pytest.mark.slow
def test_resnet101_paper_policy_trains_layer4_only(tmp_path: Path) -> None:
    """The paper recipe's freezing: conv1..layer3 (and their BatchNorm) untouched, layer4
    trains, with the paper's 2x2 pooling; weights from a user's state-dict file."""
    weights = tmp_path / "resnet101.pth"
    torch.manual_seed(1)
    reference = timm.create_model("resnet101", features_only=True, out_indices=(-1,))
    torch.save(reference.state_dict(), weights)
    pretrained = {k: v.clone() for k, v in reference.state_dict().items()}
    del reference
    run = tmp_path / "run"
    args = [
        *("fit", "--config", str(FINETUNE), "--run_dir", str(run), *QUIET),
        *("--model.net.backbone", "resnet101", "--model.net.pool", "avg2x2"),
        *("--model.net.d1", "32", "--model.net.d2", "32", "--model.pretrained", str(weights)),
        *("--data.image_size", "64", "--data.dataset_options.image_size", "64"),
        *("--data.dataset_options.num_train", "16", "--data.dataset_options.num_val", "8"),
        *("--data.batch_size", "8", "--trainer.num_sanity_val_steps", "1"),
    ]
    assert main(args) == 0
    after = _backbone_state(run / "checkpoints" / "last.ckpt")
    policy = Backbone("resnet101", pool="avg2x2", train_stages=1)
    trained = _trained_modules(policy)
    assert {m.split(".")[0] for m in trained} == {"layer4"}
    _check_frozen_stages(pretrained, after, trained)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_cached_features_are_exact_at_every_precision(tmp_path: Path, precision: str) -> None:
    """Validation and test logits with cached features equal those of the backbone run per
    batch, under the same Trainer precision (they used to be computed in fp32 for train/val
    and under autocast for test)."""
    run = tmp_path / "fit"
    fit = ["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET]
    assert main([*fit, "--trainer.precision", precision, "--trainer.max_epochs", "1"]) == 0
    ckpt = str(run / "checkpoints" / "best.ckpt")
    logits = {}
    for command in ("validate", "test"):
        for cache in ("true", "false"):
            out = tmp_path / f"{command}-{cache}"
            args = [command, "--config", str(run / "config.yaml"), "--ckpt_path", ckpt]
            args += ["--run_dir", str(out), "--cache_features", cache, *QUIET]
            assert main(args) == 0
            stage = "val" if command == "validate" else "test"
            logits[command, cache] = np.load(out / f"{stage}_logits.npy")
            card = json.loads((out / "metrics.json").read_text())["protocol"]
            assert card["precision"] == precision
            assert card["features"].startswith("cached" if cache == "true" else "backbone run")
    for command in ("validate", "test"):
        np.testing.assert_array_equal(logits[command, "true"], logits[command, "false"])


@pytest.mark.slow
def test_two_classes_clamp_top_k(tmp_path: Path) -> None:
    """The default top_k 3 on a 2-class dataset: fit and test run, the card says k was clamped."""
    run = tmp_path / "fit"
    args = ["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET]
    assert main([*args, "--data.dataset_options.num_classes", "2"]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["metrics"]["num_classes"] == 2
    assert {"top2", "top2_mlgcn"} <= set(result["metrics"])
    card = result["protocol"]
    assert card["top_k"] == 3 and card["top_k_effective"] == 2
    assert "clamped" in card["top_k_note"]


@pytest.mark.slow
def test_feature_cache_folder_serves_later_runs_and_mirrors(tmp_path: Path) -> None:
    """A second fit (another learning rate) reads every feature from the cache folder; with
    flip augmentation each training image's mirror is cached too, and its features are those
    of the mirrored image."""
    cache = ["--feature_cache_dir", str(tmp_path / "features")]

    def fit(name: str, *extra: str) -> dict[str, dict[str, float]]:
        run = tmp_path / name
        args = ["fit", "--config", str(TINY), "--run_dir", str(run), *QUIET, *cache, *extra]
        assert main(args) == 0
        reports = json.loads((run / "metrics.json").read_text())["feature_cache"]
        return {r["role"]: r for r in reports}

    first = fit("first")
    assert first["train"]["computed"] == 48 and first["val"]["computed"] == 16
    second = fit("second", "--model.optim.lr", "0.003")
    assert second["train"]["computed"] == second["val"]["computed"] == 0
    assert second["train"]["from_disk"] == 48 and second["val"]["from_disk"] == 16
    flipped = fit("flip", "--data.train_augment", "flip")
    assert flipped["train"] == {**flipped["train"], "computed": 48, "from_disk": 48}

    # the mirrored entries are the backbone's features of the mirrored images, exactly
    files = sorted((tmp_path / "features").rglob("*.mirror.safetensors"))
    assert len(files) == 48
    from safetensors.torch import load_file

    from ssgrl.data.synthetic import load_synthetic
    from ssgrl.data.transforms import PreprocessingRequest, eval_transform
    from ssgrl.engine.build import resolve_preprocessing

    split = load_synthetic(None, "train", num_train=48, num_val=16, num_test=16, image_size=96)
    pre = resolve_preprocessing("tf_efficientnet_lite0", PreprocessingRequest(image_size=96))
    backbone = Backbone("tf_efficientnet_lite0", train_stages=0)
    backbone.body.load_state_dict(
        {k: v for k, v in lite0_timm_state_dict().items() if k in backbone.body.state_dict()}
    )
    backbone.eval()
    index = 5
    image = split.load_image(index).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    with torch.inference_mode():
        expected = backbone(eval_transform(pre)(image)[None])[0]
    cid = split.content_id(index)
    stored = next(f for f in files if f.name.startswith(cid))
    # batch of 16 there, one image here (channels_last kernels): equal up to float rounding
    scale = float(expected.abs().max())
    torch.testing.assert_close(
        load_file(str(stored))["features"], expected, atol=1e-5 * scale, rtol=1e-5
    )


# --- evaluation needs only the checkpoint and the evaluated images -----------------------------


def _write_manifest_dataset(root: Path) -> None:
    """A small real-file dataset: coloured squares whose class is the colour; one 16-bit and one
    transparent image in the test split (decoded identically in training, test and predict)."""
    rng = np.random.default_rng(0)
    colours = {"pottedplant": (40, 160, 40), "tvmonitor": (40, 40, 200), "person": (220, 60, 60)}
    names = list(colours)
    (root / "images").mkdir(parents=True)
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        lines = ["image,labels"]
        for i in range(n):
            present = [c for c in names if rng.random() < 0.5] or [names[i % 3]]
            pixels = np.full((64, 64, 3), 128, dtype=np.uint8)
            for k, c in enumerate(present):
                pixels[8 + 16 * k : 24 + 16 * k, 8:40] = colours[c]
            path = root / "images" / f"{split}_{i}.png"
            if split == "test" and i == 0:  # 16-bit gray
                gray = (pixels.mean(axis=2) * 257).astype(np.uint16)
                Image.fromarray(gray).save(path)
            elif split == "test" and i == 1:  # transparent corner over a hidden colour
                rgba = np.dstack([pixels, np.full((64, 64), 255, dtype=np.uint8)])
                rgba[:8, :8] = (255, 0, 255, 0)
                Image.fromarray(rgba, mode="RGBA").save(path)
            else:
                Image.fromarray(pixels).save(path)
            lines.append(f"images/{path.name},{'|'.join(present)}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")


def _write_glove(path: Path) -> None:
    """A GloVe text file that holds the joined names only as rare junk tokens (after 100,000
    common words), as big GloVe files do."""
    rng = np.random.default_rng(1)
    words = ["potted", "plant", "tv", "monitor", "person"]
    lines = [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=8)) for w in words]
    lines += [f"w{i:06d} " + " ".join(["0.1"] * 8) for i in range(100_000)]
    lines += [
        f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=8))
        for w in ("pottedplant", "tvmonitor")
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_test_needs_only_the_checkpoint_and_the_test_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, glove = tmp_path / "data", tmp_path / "glove.txt"
    _write_manifest_dataset(data)
    _write_glove(glove)
    run = tmp_path / "fit"
    common = [*QUIET, "--data.dataset", "manifest", "--data.root", str(data)]
    common += ["--data.image_size", "64", "--data.dataset_options", "{}"]
    args = ["fit", "--config", str(TINY), "--run_dir", str(run), *common]
    args += ["--model.embeddings.source", "glove-file", "--model.embeddings.path", str(glove)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "pottedplant <- potted + plant" in printed and "tvmonitor <- tv + monitor" in printed
    ckpt = run / "checkpoints" / "best.ckpt"
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["ssgrl"]
    words = dict(zip(meta["class_names"], meta["embeddings"]["words"], strict=True))
    assert words == {
        "pottedplant": ["potted", "plant"],
        "tvmonitor": ["tv", "monitor"],
        "person": ["person"],
    }

    def test(name: str) -> tuple[np.ndarray, dict]:
        out = tmp_path / name
        argv = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt)]
        assert main([*argv, "--run_dir", str(out), *QUIET]) == 0
        return np.load(out / "test_logits.npy"), json.loads((out / "metrics.json").read_text())

    before, metrics_before = test("test-before")
    # nothing of training is needed any more: its manifest, its images, the word vectors
    (data / "train.csv").unlink()
    for path in data.glob("images/train_*.png"):
        path.unlink()
    glove.unlink()
    after, metrics_after = test("test-after")
    np.testing.assert_array_equal(before, after)
    assert metrics_before["metrics"] == metrics_after["metrics"]

    # the 16-bit and the transparent test image score the same through `predict` (one decoder)
    paths = [data / "images" / "test_0.png", data / "images" / "test_1.png"]
    probs = [p.probabilities for p in Predictor(ckpt).predict_paths(paths)]
    split = load_split("manifest", "test", data, classes=meta["class_names"])
    order = [split.ids.index(f"images/{p.name}") for p in paths]
    expected = 1.0 / (1.0 + np.exp(-after[order].astype(np.float64)))
    np.testing.assert_allclose(np.stack(probs), expected, atol=1e-5)
