"""A small multi-label dataset of real photographs, built offline (``ssgrl make-photos OUT``).

Honestly: a *collage* of real photos. The photographs are the sample images that ship inside
the wheels of scikit-image (``skimage/data``), scikit-learn (``sklearn/datasets/images``) and
matplotlib (``mpl-data/sample_data``); nothing is downloaded. Each image of the dataset is one
real-photo background (a random square crop of a texture or of an object-free part of a photo)
with crops of object photographs pasted on it: random scale, position (partly outside the
frame), partial crops, horizontal flips, colour jitter and occasional greyscale; later pastes
occlude earlier ones, distractor patches (object-free parts of the same photos, textures)
occlude and confuse, and some whole images are blurred or lose resolution. Images belong to a hidden *scene* (space, cafe, garden, street) that sets
the background and the probability of each class, so the labels co-occur (rocket with person,
cup with coins, ...) as they do in real collections.

Labels follow what is visible: a class is present when at least ``VISIBLE_MIN`` of one of its
pasted crops is visible (not covered by a later paste, not outside the frame), ignored (the
manifest's ``ignore`` column, target -1) when its crops are visible only below that, absent
otherwise. Each split's ``<split>_placements.jsonl`` records every paste (source, source box,
destination box, order, visible fraction) so the labels can be checked against the layout.

Deterministic: each image has its own random stream ``(seed, split, index)``, so the same seed
gives the same files (byte for byte with the same Pillow) and a smaller dataset is a prefix of a
larger one.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ssgrl.provenance import sha256_file

VISIBLE_MIN = 0.4  # a pasted crop this visible (fraction of its pasted area) labels its class
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Source:
    """One photograph shipped inside an installed package."""

    name: str
    package: str  # the importable package whose data folder holds the file
    file: str  # path inside that package
    licence: str
    credit: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "astronaut",
            "skimage.data",
            "astronaut.png",
            "public domain",
            "NASA: astronaut Eileen Collins (skimage.data.astronaut)",
        ),
        Source(
            "chelsea",
            "skimage.data",
            "chelsea.png",
            "CC0",
            "Stefan van der Walt: Chelsea the cat (skimage.data.chelsea)",
        ),
        Source(
            "coffee",
            "skimage.data",
            "coffee.png",
            "CC0",
            "Rachel Michetti, courtesy of Pikolo Espresso Bar (skimage.data.coffee)",
        ),
        Source(
            "rocket",
            "skimage.data",
            "rocket.jpg",
            "public domain",
            "SpaceX: Falcon 9 launching DSCOVR (skimage.data.rocket)",
        ),
        Source(
            "camera",
            "skimage.data",
            "camera.png",
            "CC0",
            "Lav Varshney: photographer with a camera (skimage.data.camera)",
        ),
        Source(
            "coins",
            "skimage.data",
            "coins.png",
            "no known copyright restrictions",
            "Brooklyn Museum: Greek coins from Pompeii (skimage.data.coins)",
        ),
        Source(
            "clock",
            "skimage.data",
            "clock_motion.png",
            "public domain",
            "Stefan van der Walt: motion-blurred wall clock (skimage.data.clock)",
        ),
        Source(
            "motorcycle",
            "skimage.data",
            "motorcycle_left.png",
            "Middlebury 2014 stereo data set as scikit-image ships it (check its terms)",
            "Scharstein et al.: motorcycle (skimage.data.stereo_motorcycle)",
        ),
        Source(
            "brick",
            "skimage.data",
            "brick.png",
            "CC0",
            "CC0Textures Bricks25 (skimage.data.brick)",
        ),
        Source(
            "grass",
            "skimage.data",
            "grass.png",
            "CC0",
            "linolafett on DeviantArt (skimage.data.grass)",
        ),
        Source(
            "gravel",
            "skimage.data",
            "gravel.png",
            "CC0",
            "CC0Textures Gravel04 (skimage.data.gravel)",
        ),
        Source(
            "hubble",
            "skimage.data",
            "hubble_deep_field.jpg",
            "public domain",
            "NASA: Hubble eXtreme Deep Field (skimage.data.hubble_deep_field)",
        ),
        Source(
            "moon",
            "skimage.data",
            "moon.png",
            "none stated in scikit-image's docstring",
            "surface of the moon (skimage.data.moon)",
        ),
        Source(
            "china",
            "sklearn.datasets.images",
            "china.jpg",
            "CC BY 2.0",
            "danielbuechele on Flickr: Summer Palace tower (sklearn load_sample_images)",
        ),
        Source(
            "flower",
            "sklearn.datasets.images",
            "flower.jpg",
            "CC BY 2.0",
            "vultilion on Flickr: dahlia (sklearn load_sample_images)",
        ),
        Source(
            "hopper",
            "matplotlib",
            "mpl-data/sample_data/grace_hopper.jpg",
            "public domain (US Navy photograph)",
            "Grace Hopper portrait (matplotlib sample data)",
        ),
    )
}

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in source pixels


@dataclass(frozen=True)
class Region:
    """A box of a source photo: an object of ``label``, or an object-free part (label None)."""

    source: str
    box: Box
    label: str | None = None


# the objects: each box holds the object and little else of another class
OBJECTS: dict[str, tuple[Region, ...]] = {
    "person": (
        Region("astronaut", (0, 0, 340, 512), "person"),
        Region("hopper", (100, 0, 512, 600), "person"),
        Region("camera", (0, 40, 310, 512), "person"),
    ),
    "cat": (Region("chelsea", (40, 0, 451, 300), "cat"),),
    "cup": (Region("coffee", (70, 0, 500, 395), "cup"),),
    "rocket": (Region("rocket", (250, 110, 390, 427), "rocket"),),
    "flower": (Region("flower", (150, 60, 460, 380), "flower"),),
    "building": (Region("china", (55, 15, 370, 420), "building"),),
    "motorcycle": (Region("motorcycle", (85, 100, 705, 465), "motorcycle"),),
    "coins": (Region("coins", (0, 0, 384, 303), "coins"),),
    "clock": (Region("clock", (110, 60, 300, 240), "clock"),),
}
CLASSES: tuple[str, ...] = tuple(sorted(OBJECTS))

# object-free parts of the photos and textures: backgrounds and distractor patches
PATCHES: dict[str, Region] = {
    "hubble": Region("hubble", (0, 0, 1000, 872)),
    "moon": Region("moon", (0, 0, 512, 512)),
    "night-sky": Region("rocket", (0, 0, 640, 105)),
    "launch-tower": Region("rocket", (0, 0, 125, 427)),
    "wood-table": Region("coffee", (495, 0, 600, 400)),
    "brick": Region("brick", (0, 0, 512, 512)),
    "grass": Region("grass", (0, 0, 512, 512)),
    "gravel": Region("gravel", (0, 0, 512, 512)),
    "bokeh": Region("flower", (0, 0, 140, 427)),
    "trees-lake": Region("china", (380, 200, 640, 427)),
    "sky-lake": Region("china", (380, 0, 640, 200)),
    "garage-floor": Region("motorcycle", (0, 440, 741, 500)),
    "garage-shelves": Region("motorcycle", (390, 0, 741, 95)),
    "flag": Region("hopper", (0, 0, 95, 330)),
}
TEXTURES = frozenset({"brick", "grass", "gravel"})  # greyscale: given a random colour cast
DISTRACTORS = (
    "launch-tower",
    "wood-table",
    "brick",
    "grass",
    "gravel",
    "bokeh",
    "sky-lake",
    "garage-shelves",
    "flag",
)


@dataclass(frozen=True)
class Scene:
    """A hidden context: its backgrounds, the probability of each class (others: BASE_RATE) and
    a preferred photo per class (taken with probability PREFER)."""

    name: str
    backgrounds: tuple[str, ...]
    probs: dict[str, float]
    prefer: dict[str, str]


BASE_RATE = 0.04
PREFER = 0.7
SCENES: tuple[Scene, ...] = (
    Scene(
        "space",
        ("hubble", "moon", "night-sky"),
        {"rocket": 0.8, "person": 0.55, "clock": 0.1},
        {"person": "astronaut"},
    ),
    Scene(
        "cafe",
        ("wood-table", "brick"),
        {"cup": 0.85, "coins": 0.5, "clock": 0.4, "cat": 0.35, "person": 0.25},
        {"person": "hopper"},
    ),
    Scene(
        "garden",
        ("grass", "bokeh", "trees-lake"),
        {"flower": 0.85, "cat": 0.45, "building": 0.4, "person": 0.25},
        {"person": "camera"},
    ),
    Scene(
        "street",
        ("gravel", "brick", "garage-floor"),
        {"motorcycle": 0.8, "person": 0.55, "building": 0.45, "clock": 0.15},
        {},
    ),
)


@dataclass(frozen=True)
class Paste:
    """One pasted crop, in paint order: what was taken from where and where it went."""

    kind: str  # "object" or "distractor"
    label: str | None
    region: str  # "<source>" for objects, the PATCHES name for distractors
    crop: Box  # the part of the source photo taken (source pixels)
    dest: Box  # where it went on the canvas (may extend past the frame)
    flipped: bool
    visible: float  # fraction of dest's area visible in the finished image


@dataclass(frozen=True)
class Composite:
    """One generated image and its record."""

    image: Image.Image
    scene: str
    background: str
    pastes: tuple[Paste, ...]
    labels: tuple[str, ...]
    ignore: tuple[str, ...]


class MissingPhotosError(RuntimeError):
    """A package that ships the photographs is not installed."""


def source_path(source: Source) -> Path:
    """The file of ``source`` inside its installed package (no download)."""
    try:
        root = resources.files(source.package)
    except ModuleNotFoundError as err:
        raise MissingPhotosError(
            f"photo {source.name!r} ships with the package {source.package.split('.')[0]!r}, "
            "which is not installed: pip install 'ssgrl[photos]'"
        ) from err
    path = Path(str(root.joinpath(source.file)))
    if not path.is_file():
        raise MissingPhotosError(
            f"photo {source.name!r}: {path} is missing from the installed "
            f"{source.package.split('.')[0]} (expected its bundled sample data)"
        )
    return path


def load_sources(names: Sequence[str] | None = None) -> dict[str, Image.Image]:
    """The source photos as RGB images (greyscale ones converted), by name."""
    out: dict[str, Image.Image] = {}
    for name in names or SOURCES:
        with Image.open(source_path(SOURCES[name])) as im:
            out[name] = im.convert("RGB")
    return out


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _jitter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Brightness, contrast and saturation jitter; greyscale one time in seven."""
    image = ImageEnhance.Brightness(image).enhance(_uniform(rng, 0.6, 1.4))
    image = ImageEnhance.Contrast(image).enhance(_uniform(rng, 0.6, 1.4))
    image = ImageEnhance.Color(image).enhance(_uniform(rng, 0.4, 1.6))
    if rng.random() < 0.15:
        image = ImageOps.grayscale(image).convert("RGB")
    return image


def _degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The whole photo: a blur (three in ten) and a loss of resolution (three in ten)."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(_uniform(rng, 0.5, 1.5)))
    if rng.random() < 0.3:
        side = max(8, round(image.width * _uniform(rng, 0.35, 0.7)))
        image = image.resize((side, side), Image.Resampling.BILINEAR).resize(
            image.size, Image.Resampling.BILINEAR
        )
    return image


def _tint(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random colour cast (for the greyscale textures)."""
    gain = rng.uniform(0.6, 1.2, size=3)
    arr = np.asarray(image, dtype=np.float32) * gain[None, None, :]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _sub_box(box: Box, rng: np.random.Generator, partial: bool) -> Box:
    """``box`` itself, or (partial) a random part of it, 50-100% of each side."""
    x0, y0, x1, y1 = box
    if not partial:
        return box
    w, h = x1 - x0, y1 - y0
    cw, ch = max(1, round(w * _uniform(rng, 0.5, 1.0))), max(1, round(h * _uniform(rng, 0.5, 1.0)))
    cx, cy = x0 + int(rng.integers(0, w - cw + 1)), y0 + int(rng.integers(0, h - ch + 1))
    return (cx, cy, cx + cw, cy + ch)


def _square_crop(box: Box, rng: np.random.Generator, low: float) -> Box:
    """A random square inside ``box`` whose side is ``low``-100% of the box's shorter side."""
    x0, y0, x1, y1 = box
    side = max(1, round(min(x1 - x0, y1 - y0) * _uniform(rng, low, 1.0)))
    cx = x0 + int(rng.integers(0, x1 - x0 - side + 1))
    cy = y0 + int(rng.integers(0, y1 - y0 - side + 1))
    return (cx, cy, cx + side, cy + side)


def _placement(
    crop: Box, size: int, rng: np.random.Generator, lo: float, hi: float, overflow: float
) -> Box:
    """Where a crop goes: its longer side ``lo``-``hi`` of the canvas, aspect kept, up to
    ``overflow`` of each side outside the frame."""
    w, h = crop[2] - crop[0], crop[3] - crop[1]
    scale = _uniform(rng, lo, hi) * size / max(w, h)
    dw, dh = max(2, round(w * scale)), max(2, round(h * scale))
    x0 = int(rng.integers(-int(overflow * dw), size - int((1 - overflow) * dw) + 1))
    y0 = int(rng.integers(-int(overflow * dh), size - int((1 - overflow) * dh) + 1))
    return (x0, y0, x0 + dw, y0 + dh)


def _paste(canvas: Image.Image, patch: Image.Image, dest: Box) -> None:
    canvas.paste(
        patch.resize((dest[2] - dest[0], dest[3] - dest[1]), Image.Resampling.BILINEAR), dest[:2]
    )


def visible_fractions(dests: Sequence[Box], size: int) -> list[float]:
    """For boxes painted in order on a ``size`` square canvas: the fraction of each box's area
    left visible (inside the frame, not covered by a later box)."""
    owner = np.full((size, size), -1, dtype=np.int32)  # (H, W): the last box painted there
    for i, (x0, y0, x1, y1) in enumerate(dests):
        owner[max(y0, 0) : max(min(y1, size), 0), max(x0, 0) : max(min(x1, size), 0)] = i
    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(dests))
    return [float(counts[i]) / ((x1 - x0) * (y1 - y0)) for i, (x0, y0, x1, y1) in enumerate(dests)]


def labels_from_pastes(pastes: Sequence[Paste]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(present, ignored) class names: present when one crop of the class is at least
    VISIBLE_MIN visible; ignored when its crops show, but all below that."""
    best: dict[str, float] = {}
    for p in pastes:
        if p.kind == "object" and p.label is not None:
            best[p.label] = max(best.get(p.label, 0.0), p.visible)
    present = tuple(sorted(c for c, v in best.items() if v >= VISIBLE_MIN))
    ignored = tuple(sorted(c for c, v in best.items() if 0.0 < v < VISIBLE_MIN))
    return present, ignored


def compose(
    photos: dict[str, Image.Image], seed: int, split: str, index: int, size: int = 224
) -> Composite:
    """Image ``index`` of ``split``: deterministic in (seed, split, index)."""
    rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
    scene = SCENES[int(rng.integers(len(SCENES)))]

    # background: a random square of a texture or an object-free part of a photo
    bg_name = scene.backgrounds[int(rng.integers(len(scene.backgrounds)))]
    bg_region = PATCHES[bg_name]
    bg = photos[bg_region.source].crop(_square_crop(bg_region.box, rng, 0.5))
    if bg_region.source in TEXTURES:
        bg = _tint(bg, rng)
    if rng.random() < 0.5:
        bg = ImageOps.mirror(bg)
    canvas = _jitter(bg, rng).resize((size, size), Image.Resampling.BILINEAR)

    # which classes are pasted: the scene's probabilities, at least one
    drawn = [c for c in CLASSES if rng.random() < scene.probs.get(c, BASE_RATE)]
    if not drawn:
        drawn = [max(scene.probs, key=lambda c: scene.probs[c])]
    items: list[tuple[str, str]] = [("object", c) for c in drawn]
    items += [("object", c) for c in drawn if rng.random() < 0.1]  # a second copy
    n_distract = 1 + int(rng.choice(4, p=(0.3, 0.35, 0.25, 0.1)))
    items += [
        ("distractor", DISTRACTORS[int(rng.integers(len(DISTRACTORS)))]) for _ in range(n_distract)
    ]
    order = rng.permutation(len(items))

    planned: list[tuple[str, str | None, str, Box, Box, bool, Image.Image]] = []
    for k in order:
        kind, name = items[int(k)]
        if kind == "object":
            regions = OBJECTS[name]
            preferred = scene.prefer.get(name)
            if preferred is not None and rng.random() < PREFER:
                region = next(r for r in regions if r.source == preferred)
            else:
                region = regions[int(rng.integers(len(regions)))]
            crop = _sub_box(region.box, rng, partial=rng.random() < 0.6)
            dest = _placement(crop, size, rng, 0.15, 0.55, overflow=0.25)
            label: str | None = name
        else:
            region = PATCHES[name]
            crop = _square_crop(region.box, rng, 0.3)
            dest = _placement(crop, size, rng, 0.2, 0.5, overflow=0.1)
            label = None
        patch = photos[region.source].crop(crop)
        if region.source in TEXTURES:
            patch = _tint(patch, rng)
        flipped = bool(rng.random() < 0.5)
        if flipped:
            patch = ImageOps.mirror(patch)
        patch = _jitter(patch, rng)
        where = region.source if kind == "object" else name
        planned.append((kind, label, where, crop, dest, flipped, patch))

    for *_, dest, _, patch in planned:
        _paste(canvas, patch, dest)
    canvas = _degrade(canvas, rng)
    visible = visible_fractions([p[4] for p in planned], size)
    pastes = tuple(
        Paste(kind, label, region, crop, dest, flipped, round(v, 6))
        for (kind, label, region, crop, dest, flipped, _), v in zip(planned, visible, strict=True)
    )
    present, ignored = labels_from_pastes(pastes)
    return Composite(canvas, scene.name, bg_name, pastes, present, ignored)


@dataclass(frozen=True)
class PhotosSummary:
    """What ``make_photos`` wrote."""

    root: Path
    counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]


def make_photos(
    out: Path,
    num_train: int = 1000,
    num_val: int = 300,
    num_test: int = 500,
    image_size: int = 224,
    seed: int = 0,
) -> PhotosSummary:
    """Write the dataset to ``out`` (new or empty): ``classes.txt``, ``<split>.csv`` (the
    ``manifest`` format), ``<split>/*.jpg``, ``<split>_placements.jsonl``, ``provenance.json``
    and ``PROVENANCE.md``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"make-photos: {out} exists and is not empty; give a new folder")
    counts = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in counts.items():
        if n < 0 or (split == "train" and n == 0):
            raise ValueError(
                f"make-photos: num_{split} must be >= {int(split == 'train')}, got {n}"
            )
    if image_size < 32:
        raise ValueError(f"make-photos: image_size must be >= 32 pixels, got {image_size}")
    photos = load_sources()
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES), encoding="utf-8")
    class_counts: dict[str, dict[str, int]] = {}
    for split, n in counts.items():
        if n == 0:
            continue
        (out / split).mkdir()
        freq = dict.fromkeys(CLASSES, 0)
        with (
            open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f_csv,
            open(out / f"{split}_placements.jsonl", "w", encoding="utf-8") as f_rec,
        ):
            writer = csv.writer(f_csv, lineterminator="\n")
            writer.writerow(["image", "labels", "ignore"])
            for i in range(n):
                comp = compose(photos, seed, split, i, image_size)
                rel = f"{split}/{split}_{i:05d}.jpg"
                comp.image.save(out / rel, format="JPEG", quality=90)
                writer.writerow([rel, "|".join(comp.labels), "|".join(comp.ignore)])
                record: dict[str, Any] = {
                    "image": rel,
                    "scene": comp.scene,
                    "background": comp.background,
                    "labels": list(comp.labels),
                    "ignore": list(comp.ignore),
                    "pastes": [asdict(p) for p in comp.pastes],
                }
                f_rec.write(json.dumps(record) + "\n")
                for c in comp.labels:
                    freq[c] += 1
        class_counts[split] = freq
    _write_provenance(out, counts, class_counts, image_size, seed)
    return PhotosSummary(out, counts, class_counts)


def _write_provenance(
    out: Path,
    counts: dict[str, int],
    class_counts: dict[str, dict[str, int]],
    image_size: int,
    seed: int,
) -> None:
    sources = [
        {**asdict(s), "sha256": sha256_file(source_path(s))}
        for s in SOURCES.values()  # every photo the generator can draw from
    ]
    manifests = {
        split: hashlib.sha256((out / f"{split}.csv").read_bytes()).hexdigest()
        for split in counts
        if (out / f"{split}.csv").is_file()
    }
    info = {
        "dataset": "ssgrl real-photo collages",
        "generator": "ssgrl.data.photos",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "counts": counts,
        "classes": list(CLASSES),
        "class_counts": class_counts,
        "visible_min": VISIBLE_MIN,
        "scenes": [asdict(s) for s in SCENES],
        "manifest_sha256": manifests,
        "sources": sources,
    }
    (out / "provenance.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Real-photo collages (ssgrl make-photos)",
        "",
        f"{sum(counts.values())} images of {image_size}x{image_size} px "
        f"({', '.join(f'{n} {s}' for s, n in counts.items())}), seed {seed}, "
        f"{len(CLASSES)} classes: {', '.join(CLASSES)}.",
        "",
        "Each image is a collage of real photographs: a background (a crop of a texture or of "
        "an object-free part of a photo) with crops of object photos pasted on it at random "
        "scale and position, partly cropped, flipped, colour-jittered, occluding each other, "
        "plus distractor patches. The labels are the classes whose pasted crop is at least "
        f"{VISIBLE_MIN:.0%} visible; less visible ones are in the `ignore` column. "
        "`<split>_placements.jsonl` records every paste.",
        "",
        "The photographs ship inside the installed packages (nothing was downloaded):",
        "",
        "| photo | file | licence | credit |",
        "|---|---|---|---|",
        *(
            f"| {s.name} | {s.package.split('.')[0]}: {s.file} | {s.licence} | {s.credit} |"
            for s in SOURCES.values()
        ),
        "",
        "The generated images are derived works of these photographs: keep the credits above "
        "with them (CC BY 2.0 for the china and flower photos requires attribution).",
        "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines), encoding="utf-8")


# -- ssgrl make-photos -------------------------------------------------------------------------
def configure(parser: Any) -> None:
    parser.add_argument("out", help="output folder (new or empty)")
    parser.add_argument("--num-train", type=int, default=1000, help="default 1000")
    parser.add_argument("--num-val", type=int, default=300, help="default 300")
    parser.add_argument("--num-test", type=int, default=500, help="default 500")
    parser.add_argument("--image-size", type=int, default=224, help="pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="default 0")


def run(args: Any) -> int:
    try:
        summary = make_photos(
            Path(args.out), args.num_train, args.num_val, args.num_test, args.image_size, args.seed
        )
    except (FileExistsError, ValueError, MissingPhotosError) as err:
        print(f"ssgrl make-photos: error: {err}")
        return 2
    for split, freq in summary.class_counts.items():
        shown = ", ".join(f"{c} {n}" for c, n in freq.items())
        print(f"{split}: {summary.counts[split]} images; images per class: {shown}")
    print(f"wrote {summary.root} (manifest dataset: --data.root {summary.root})")
    return 0
