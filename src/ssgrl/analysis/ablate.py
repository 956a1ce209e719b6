"""``ssgrl ablate``: train and test model variants of one config, then compare them.

Each variant (``ssgrl.engine.variants``) is one ``ssgrl fit`` of the config with the variant's
overrides, then ``ssgrl test`` of its best checkpoint, in ``OUT/<variant>/`` (and ``test/``):
the same run machinery as every other run. With a frozen backbone and a deterministic training
transform the runs share one feature cache folder (``OUT/features``): the backbone's features
are computed once and are exact for every variant. A variant whose test results already exist
in OUT is reused, so an interrupted ablation goes on where it stopped. Finally the variants are
compared (``ssgrl compare``) against ``ssgrl`` (or the first variant), written to
``OUT/ablation.md``, ``OUT/ablation.html`` and ``OUT/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssgrl.analysis.compare import (
    CompareError,
    Comparison,
    compare_runs,
    format_markdown,
    format_terminal,
    html_tables,
    load_run,
)
from ssgrl.engine.variants import VARIANTS, Variant, variant


@dataclass
class AblationRun:
    variant: Variant
    run_dir: Path
    seconds: float
    reused: bool


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the `ssgrl fit` config of every variant")
    parser.add_argument(
        "--variants",
        required=True,
        help=f"comma-separated variant names; known: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--out", default=None, help="output folder (default runs/<time>-ablate); reused if given"
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="-- FIT_OVERRIDES",
        help="after `--`: overrides for every variant's `ssgrl fit`, e.g. -- "
        "--trainer.max_epochs 5",
    )


def parse_variants(text: str) -> list[Variant]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("--variants is empty; give comma-separated names, e.g. ssgrl,baseline")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"--variants names {', '.join(duplicated)} more than once")
    return [variant(name) for name in names]


def cache_args(config: str, overrides: list[str], out: Path) -> list[str]:
    """Feature-cache options shared by every variant when caching is exact: a frozen backbone
    (model.net.train_stages 0) and a deterministic training transform (none or flip). The
    cache folder is OUT/features unless the overrides name one (then that one is used)."""
    from ssgrl.engine.cli import parse_config

    cfg = parse_config(config, *overrides)
    frozen = cfg.model.net.train_stages == 0
    deterministic = cfg.data.train_augment in ("none", "flip")
    if not (frozen and deterministic):
        return []
    if any(a == "--feature_cache_dir" or a.startswith("--feature_cache_dir=") for a in overrides):
        return ["--cache_features", "true"]
    return ["--cache_features", "true", "--feature_cache_dir", str(out / "features")]


def train_variant(
    v: Variant, config: str, overrides: list[str], out: Path, shared: list[str], progress: bool
) -> AblationRun:
    """``ssgrl fit`` + ``ssgrl test`` of one variant (reused when already tested in OUT)."""
    from ssgrl.engine.cli import lightning_main

    run = out / v.name
    if (run / "test" / "test_logits.npy").is_file() and (run / "test" / "metrics.json").is_file():
        print(f"ablate: {v.name}: reusing the tested run in {run}")
        return AblationRun(v, run, 0.0, True)
    quiet = [] if progress else ["--trainer.enable_progress_bar", "false"]
    t0 = time.perf_counter()
    fit = ["fit", "--config", config, *v.args, *overrides, *quiet, "--run_dir", str(run), *shared]
    code = lightning_main(fit)
    if code != 0:
        raise AblationError(f"variant {v.name}: `ssgrl {' '.join(fit)}` failed (exit {code})")
    fitted = json.loads((run / "metrics.json").read_text())
    ckpt = fitted.get("best_checkpoint") or fitted.get("last_checkpoint")
    test = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), *quiet]
    test += ["--run_dir", str(run / "test"), *shared]
    code = lightning_main(test)
    if code != 0:
        raise AblationError(f"variant {v.name}: `ssgrl {' '.join(test)}` failed (exit {code})")
    return AblationRun(v, run, time.perf_counter() - t0, False)


class AblationError(RuntimeError):
    """A variant's run failed; its own message was printed above."""


def ablate(
    config: str,
    variants: list[Variant],
    out: Path,
    overrides: list[str] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Comparison, list[AblationRun]]:
    """Train, test and compare ``variants`` of ``config`` in ``out``; write the tables."""
    overrides = list(overrides or [])
    out.mkdir(parents=True, exist_ok=True)
    shared = cache_args(config, overrides, out)
    runs = [train_variant(v, config, overrides, out, shared, progress) for v in variants]
    tested = [load_run(r.run_dir, name=r.variant.name) for r in runs]
    reference = "ssgrl" if any(v.name == "ssgrl" for v in variants) else variants[0].name
    result = compare_runs(tested, reference=reference, resamples=resamples, seed=seed)
    write_ablation(result, runs, out, config, overrides)
    return result, runs


def variants_markdown(runs: list[AblationRun]) -> list[str]:
    lines = ["| variant | what changes | `ssgrl fit` overrides |", "|---|---|---|"]
    for r in runs:
        args = " ".join(r.variant.args) or "(none)"
        lines.append(f"| {r.variant.name} | {r.variant.description} | `{args}` |")
    return lines


def write_ablation(
    result: Comparison, runs: list[AblationRun], out: Path, config: str, overrides: list[str]
) -> None:
    from html import escape

    head = [
        "## Ablation",
        "",
        f"Config `{config}`" + (f" with `{' '.join(overrides)}`" if overrides else "") + ".",
        "",
        *variants_markdown(runs),
        "",
    ]
    (out / "ablation.md").write_text("\n".join(head) + "\n" + format_markdown(result))
    rows = "".join(
        f"<tr><td>{escape(r.variant.name)}</td><td>{escape(r.variant.description)}</td>"
        f"<td><code>{escape(' '.join(r.variant.args) or '(none)')}</code></td></tr>"
        for r in runs
    )
    from ssgrl.analysis.compare import HTML_STYLE

    (out / "ablation.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ssgrl ablate</title>'
        f"<style>{HTML_STYLE}</style></head><body><h1>ssgrl ablate</h1>"
        f"<p>Config <code>{escape(config)}</code></p>"
        '<section id="variants"><table><tr><th>variant</th><th>what changes</th>'
        f"<th>overrides</th></tr>{rows}</table></section>\n{html_tables(result)}\n</body></html>\n"
    )
    data: dict[str, Any] = {
        "config": config,
        "overrides": overrides,
        "variants": {
            r.variant.name: {
                "description": r.variant.description,
                "args": list(r.variant.args),
                "run_dir": str(r.run_dir),
                "seconds": round(r.seconds, 2),
                "reused": r.reused,
            }
            for r in runs
        },
        "comparison": result.to_dict(),
    }
    (out / "ablation.json").write_text(json.dumps(data, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    from ssgrl.engine.cli import new_run_dir

    try:
        variants = parse_variants(args.variants)
        if not Path(args.config).is_file():
            raise ValueError(f"--config {args.config}: no such file")
        out = Path(args.out) if args.out else new_run_dir("runs", "ablate")
        result, _ = ablate(
            args.config, variants, out, args.overrides, resamples=args.bootstrap, seed=args.seed
        )
    except (ValueError, AblationError) as err:  # CompareError is a ValueError
        print(f"ssgrl ablate: error: {err}", file=sys.stderr)
        return 2
    print(format_terminal(result))
    print(f"written: {out / 'ablation.md'}, {out / 'ablation.html'}, {out / 'ablation.json'}")
    return 0


__all__ = ["AblationError", "AblationRun", "CompareError", "ablate", "parse_variants"]
