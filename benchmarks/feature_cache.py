"""Feature-cache figure: the backbone time of a second ``ssgrl fit`` (another learning rate) on
the same data, against the first one's, with a persistent ``--feature_cache_dir``.

    python benchmarks/feature_cache.py [--num-train 1600] [--num-val 400] [--image-size 224]
        [--json out.json]

Prints the seconds each run spent on features (from its metrics.json) and the ratio; the target
is a second run under 20% of the first. Runs on the CPU, one epoch each (the epochs do not
matter: features are computed before the first one).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ssgrl.engine.cli import run_cli

REPO = Path(__file__).resolve().parents[1]


def fit(run: Path, cache: Path, lr: float, args: argparse.Namespace) -> tuple[float, int, int]:
    run_cli(
        [
            *("fit", "--config", str(REPO / "configs" / "tiny.yaml"), "--run_dir", str(run)),
            *("--feature_cache_dir", str(cache), "--trainer.enable_progress_bar", "false"),
            *("--trainer.max_epochs", "1", "--model.optim.lr", str(lr)),
            *("--data.image_size", str(args.image_size), "--data.eval_batch_size", "64"),
            "--data.dataset_options",
            json.dumps(
                {
                    "num_train": args.num_train,
                    "num_val": args.num_val,
                    "num_test": 0,
                    "image_size": args.image_size,
                }
            ),
        ]
    )
    reports = json.loads((run / "metrics.json").read_text())["feature_cache"]
    return (
        sum(r["seconds"] for r in reports),
        sum(r["computed"] for r in reports),
        sum(r["from_disk"] for r in reports),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=1600)
    parser.add_argument("--num-val", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "features"
        first = fit(Path(tmp) / "first", cache, 1e-3, args)
        second = fit(Path(tmp) / "second", cache, 3e-3, args)
    print(f"{'run':<8}{'feature s':>12}{'computed':>10}{'from disk':>11}")
    for name, (sec, new, old) in (("first", first), ("second", second)):
        print(f"{name:<8}{sec:>12.2f}{new:>10d}{old:>11d}")
    share = second[0] / first[0]
    print(f"second / first feature time: {100 * share:.1f}% (target < 20%)")
    if args.json is not None:
        command = (
            f"python benchmarks/feature_cache.py --num-train {args.num_train} "
            f"--num-val {args.num_val} --image-size {args.image_size}"
        )
        images = first[1] + first[2]
        rows = [
            {
                "section": "feature cache",
                "figure": "second fit's backbone time / first's (another lr, same data)",
                "value": f"{100 * share:.1f}% ({second[0]:.2f} s / {first[0]:.2f} s)",
                "target": "< 20%",
                "met": share < 0.2,
                "command": command,
            },
            {
                "section": "feature cache",
                "figure": f"first fit's feature extraction, {images} images of {args.image_size} px",
                "value": f"{images / first[0]:.1f} images/s",
                "target": "-",
                "met": None,
                "command": command,
            },
        ]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
