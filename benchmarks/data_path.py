"""The data path: does decoding JPEG files keep the network waiting?

    OMP_NUM_THREADS=2 python benchmarks/data_path.py [--quick] [--json out.json]

Three measurements, each on JPEG files of 640 x 480 px (COCO's usual size; scikit-image's four
photos resized, quality 90):

- **predict**: ``Predictor.predict_paths`` (what ``ssgrl predict`` runs: open, decode,
  resize/crop/normalise, network, sigmoid) as a new checkpoint runs it (JPEG draft decoding,
  ``default_num_workers()`` DataLoader workers: 0 on the CPU below 4 CPUs), against the same
  network (``engine.logits``) on pre-decoded, normalised tensors at the same batch size.
  Target: files >= 85% of tensors. Also printed: a full decode (checkpoints written before
  ``jpeg_draft``) and 1 decoding worker.
- **features**: ``compute_features`` (the backbone pass of ``FeatureCaching`` in ``ssgrl fit``)
  on an ``ImageDataset`` of the files, against the backbone on pre-decoded tensors; same target
  and variants.
- **training loader**: images/s the training DataLoader delivers with the paper's transforms
  (resize 640, random square crop of side 640/576/512/384/320, resize 576, normalise) with 0, 1
  and 2 workers, per worker: divide a GPU's training images/s by it to size ``num_workers``.

Models: the demo's SSGRL (EfficientNet-Lite0, d1 = d2 = 256, 16 classes, 224 px, batch 16) and
the paper's (ResNet-101, C = 80, 448 px, batch 4), random weights (speed does not depend on
them). Rounds alternate the variants, so a busy neighbour slows all alike (Lite0's are short,
48 images, and three times as many); each share of the
tensors' throughput is the median over rounds of that round's files / tensors ratio (a machine
whose speed drifts between rounds moves both alike); images/s are medians too, the best round
is printed as well. Worker start-up is included in the file figures (``ssgrl predict`` pays it
too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssgrl.checkpoint import CheckpointMeta, EmbeddingInfo, Model
from ssgrl.data.base import file_split
from ssgrl.data.datamodule import ImageDataset
from ssgrl.data.transforms import (
    Preprocessing,
    eval_pixels,
    normalize_batch,
    train_transform,
)
from ssgrl.engine.features import compute_features
from ssgrl.inference.predictor import Predictor, default_num_workers
from ssgrl.models import default_preprocessing
from ssgrl.models.factory import ModelConfig, build_model

TARGET = 0.85
COMMAND = "OMP_NUM_THREADS=2 python benchmarks/data_path.py"


@dataclass(frozen=True)
class Setting:
    name: str
    backbone: str
    classes: int
    size: int
    d: int
    batch: int
    images: int  # per measurement
    round_scale: int = 1  # rounds of this model per --rounds (short rounds pair better)


def jpeg_files(folder: Path, count: int) -> list[Path]:
    """``count`` 640 x 480 JPEG photos (quality 90)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:04d}.jpg"
        photo = Image.fromarray(photos[i % len(photos)]).resize(
            (640, 480), Image.Resampling.BICUBIC
        )
        photo.save(path, quality=90)
        paths.append(path)
    return paths


def build(setting: Setting, jpeg_draft: bool = True) -> Model:
    """An SSGRL model of ``setting`` with random weights, eval mode."""
    torch.manual_seed(0)
    config = ModelConfig(
        arch="ssgrl", backbone=setting.backbone, train_stages=0, d1=setting.d, d2=setting.d
    )
    c = setting.classes
    net = build_model(config, c, torch.rand(c, c), torch.randn(c, 50)).eval()
    norm: dict[str, Any] = default_preprocessing(setting.backbone)
    pre = Preprocessing(
        setting.size,
        setting.size,
        tuple(norm["mean"]),  # type: ignore[arg-type]
        tuple(norm["std"]),  # type: ignore[arg-type]
        str(norm["interpolation"]),
        jpeg_draft,
    )
    meta = CheckpointMeta(
        class_names=[f"class{i}" for i in range(c)],
        model=config,
        preprocessing=pre,
        embeddings=EmbeddingInfo("random", 50),
    )
    return Model(net, meta).eval()


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of this process and its
    finished children, the decoding workers): their difference over a run is what other
    processes took from it."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return busy, own


def images_per_s(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    done = run()
    return done / (time.perf_counter() - start)


def measure(variants: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """Images/s of each variant in each round (variants alternate within a round)."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            rates[name].append(images_per_s(run))
    return rates


def predict_and_features(
    setting: Setting, files: list[Path], rounds: int, workers: int
) -> list[dict[str, Any]]:
    rounds *= setting.round_scale
    model = build(setting)
    full = Model(
        model.net, replace(model.meta, preprocessing=replace(model.preprocessing, jpeg_draft=False))
    )
    decoders = {"draft": Predictor(model=model), "full": Predictor(model=full)}
    predictor = decoders["draft"]
    paths = files[: setting.images]
    batch = setting.batch
    calls = math.ceil(len(paths) / batch)
    x = torch.stack([predictor.transform(predictor.open(p)) for p in paths[:batch]])  # (B, 3, S, S)
    backbone = model.net.backbone
    default = default_num_workers()
    # (name, decoding, workers); the first file variant is what ssgrl does by default
    variants = [
        (f"files, JPEG draft, {default} workers (default)", "draft", default),
        (f"files, full decode, {default} workers", "full", default),
        (f"files, JPEG draft, {workers} workers", "draft", workers),
    ]
    if workers == default:
        variants.pop()

    def tensors() -> int:
        for _ in range(calls):
            predictor.engine.logits(x)
        return calls * batch

    def files_with(decode: str, w: int) -> Callable[[], int]:
        def run() -> int:
            preds = list(decoders[decode].predict_paths(paths, batch_size=batch, num_workers=w))
            assert all(p.error is None for p in preds)
            return len(preds)

        return run

    def backbone_tensors() -> int:
        with torch.inference_mode():
            for _ in range(calls):
                backbone(x)
        return calls * batch

    split = file_split(
        "bench", predictor.class_names, paths, np.zeros((len(paths), setting.classes))
    )
    pre = predictor.preprocessing
    transform = eval_pixels(pre)  # as FeatureCaching: uint8 items, normalised per batch
    datasets = {
        "draft": ImageDataset(split, transform, pre.draft_size),
        "full": ImageDataset(split, transform),
    }

    def features_with(decode: str, w: int) -> Callable[[], int]:
        def run() -> int:
            out = compute_features(
                backbone,
                datasets[decode],
                batch,
                w,
                torch.device("cpu"),
                contextlib.nullcontext,
                "",
                False,
                lambda pixels: normalize_batch(pixels, pre),
            )
            return len(out)

        return run

    tensors()  # warm-up (allocator, kernels)
    predict = measure(
        {"tensors": tensors, **{name: files_with(d, w) for name, d, w in variants}}, rounds
    )
    feats = measure(
        {"tensors": backbone_tensors, **{name: features_with(d, w) for name, d, w in variants}},
        rounds,
    )
    rows = []
    for section, rates in (("predict", predict), ("features", feats)):
        base = statistics.median(rates["tensors"])
        what = "ssgrl predict" if section == "predict" else "fit feature extraction"
        print(
            f"\n{setting.name}: {what}, batch {batch}, {len(paths)} JPEG files, {rounds} round(s)"
        )
        print(f"  {'input':<44}{'images/s median':>16}{'best':>7}{'of tensors':>12}")
        shares = {
            name: statistics.median(v / t for v, t in zip(values, rates["tensors"], strict=True))
            for name, values in rates.items()
        }
        for name, values in rates.items():
            print(
                f"  {name:<44}{statistics.median(values):>16.1f}{max(values):>7.1f}"
                f"{shares[name]:>11.0%}"
            )
        for k, (name, _, _) in enumerate(variants):
            share = shares[name]
            rows.append(
                {
                    "section": "data path",
                    "figure": f"{what}, {setting.name}, {name} / tensors (median of {rounds} rounds)",
                    "value": f"{share:.0%} ({statistics.median(rates[name]):.1f} / {base:.1f} images/s)",
                    "target": f">= {TARGET:.0%}" if k == 0 else "-",
                    "met": share >= TARGET if k == 0 else None,
                    "command": COMMAND,
                }
            )
    return rows


def training_loader(
    files: list[Path], images: int, worker_counts: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Images/s of the paper's training transforms at 576 px, after the first batch."""
    norm: dict[str, Any] = default_preprocessing("resnet101")
    pre = Preprocessing(576, 640, tuple(norm["mean"]), tuple(norm["std"]), "bilinear")  # type: ignore[arg-type]
    paths = files[:images]
    dataset = ImageDataset(
        file_split("bench", ["a"], paths, np.zeros((len(paths), 1))),
        train_transform(pre, "paper"),
    )
    batch = 8
    rows = []
    print(
        f"\ntraining DataLoader, paper transforms -> 576 px, batch {batch}, {len(paths)} JPEG files"
    )
    print(f"  {'workers':<10}{'images/s':>10}{'per worker':>12}")
    for w in worker_counts:
        loader = DataLoader(dataset, batch_size=batch, num_workers=w)
        it = iter(loader)
        next(it)  # start-up and the first batch
        start = time.perf_counter()
        done = sum(len(b["image"]) for b in it)
        rate = done / (time.perf_counter() - start)
        per = rate / w if w else rate
        print(f"  {w:<10d}{rate:>10.1f}{per:>12.1f}")
        rows.append(
            {
                "section": "data path",
                "figure": f"training loader, paper transforms, 576 px, {w} workers"
                + (" (in process)" if w == 0 else ""),
                "value": f"{rate:.1f} images/s" + (f" ({per:.1f} per worker)" if w else ""),
                "target": "printed",
                "met": None,
                "command": COMMAND,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer images and rounds (about 2 min)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per model (default 3, quick 2)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding workers of the extra variant (default: 1)",
    )
    parser.add_argument(
        "--models",
        nargs="*",
        choices=("lite0", "resnet101"),
        default=["lite0", "resnet101"],
        help="models for the predict and features figures (default both)",
    )
    parser.add_argument("--no-loader", action="store_true", help="skip the training loader")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    workers = 1 if args.workers is None else args.workers
    known = {
        "lite0": Setting(
            "Lite0 SSGRL 224 px",
            "tf_efficientnet_lite0",
            16,
            224,
            256,
            16,
            32 if args.quick else 48,
            3,
        ),
        "resnet101": Setting(
            "ResNet-101 SSGRL 448 px", "resnet101", 80, 448, 1024, 4, 8 if args.quick else 16
        ),
    }
    settings = [known[name] for name in dict.fromkeys(args.models)]
    loader_images = 0 if args.no_loader else (64 if args.quick else 128)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, default decoding "
        f"workers on the CPU: {default_num_workers()}"
    )
    rows: list[dict[str, Any]] = []
    busy_start, own_start = cpu_seconds()
    start = time.perf_counter()
    with TemporaryDirectory() as tmp:
        files = jpeg_files(Path(tmp), max([s.images for s in settings] + [loader_images]))
        for setting in settings:
            rows += predict_and_features(setting, files, rounds, workers)
        if loader_images:
            rows += training_loader(files, loader_images, (0, 1, 2))
    busy_end, own_end = cpu_seconds()
    wall = time.perf_counter() - start
    others = (busy_end - busy_start) - (own_end - own_start)
    share = others / (wall * (os.cpu_count() or 1))
    print(
        f"\nother processes used {others:.0f} CPU s during the {wall:.0f} s run ({share:.0%} of the machine)"
    )
    rows.append(
        {
            "section": "data path",
            "figure": "CPU taken by other processes during data_path.py (a quiet run: ~0%)",
            "value": f"{others:.0f} CPU s in {wall:.0f} s ({share:.0%} of the machine)",
            "target": "-",
            "met": None,
            "command": COMMAND,
        }
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
