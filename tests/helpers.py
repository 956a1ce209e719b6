"""Test-only helpers that the package itself does not need (importable as ``helpers``: the test
root is on ``sys.path``, as for ``fixtures_voc``). ``save_split_as_manifest`` writes any split as
PNG files plus the ``manifest`` dataset's CSV and class list, so a test can round-trip generated
data through the manifest reader.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ssgrl.data.base import PRESENT, Split


def save_split_as_manifest(split: Split, out_dir: Path) -> Path:
    """Write ``split`` as PNG files plus ``manifest.csv`` (``image,labels``; labels joined by "|",
    paths relative to the manifest) and ``classes.txt``; return the manifest's path.

    Only present labels are written: an ignored (-1) target becomes absent.
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("".join(f"{c}\n" for c in split.classes), encoding="utf-8")
    manifest = out_dir / "manifest.csv"
    used: set[str] = set()
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "labels"])
        for i, image_id in enumerate(split.ids):
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("_") or "image"
            if stem in used:
                stem = f"{stem}_{i:06d}"
            used.add(stem)
            rel = f"images/{stem}.png"
            split.load_image(i).save(out_dir / rel, format="PNG")
            labels = [
                c for c, t in zip(split.classes, split.targets[i], strict=True) if t == PRESENT
            ]
            writer.writerow([rel, "|".join(labels)])
    return manifest
