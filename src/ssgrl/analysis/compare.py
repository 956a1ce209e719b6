"""Compare tested runs on the same test images, with paired bootstrap intervals.

A run is a directory of ``ssgrl fit`` whose ``test/`` holds what ``ssgrl test`` wrote
(``metrics.json`` with the protocol card, ``test_logits.npy``, ``test_targets.npy``,
``test_ids.json``), or that ``test/`` directory itself. Runs are paired image by image: their
image ids (or, for runs written before ids were saved, their targets) must agree row by row.
Protocol facts that change what a number means (dataset, split, AP mode, difficult policy,
input size, crop, threshold) must agree too, unless the caller allows a mismatch: then they are
flagged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ssgrl.analysis.bootstrap import (
    Interval,
    Replicates,
    bootstrap_run,
    percentile_interval,
    resample_counts,
    resample_indices,
)
from ssgrl.metrics import compute_metrics
from ssgrl.metrics.ap import AP_MODES, APMode

# protocol-card keys that must agree for numbers to be comparable
PROTOCOL_KEYS = (
    "dataset",
    "split",
    "num_images",
    "dataset_options",
    "difficult_policy",
    "ap_mode",
    "input_size",
    "crop_policy",
    "threshold",
)
# the card rows shown side by side (the keys above first)
CARD_KEYS = (
    *PROTOCOL_KEYS,
    "backbone",
    "trained_stages",
    "pretrained",
    "graph_split",
    "precision",
    "decode",
    "features",
    "checkpoint_selected_on",
)
METRICS = ("mAP", "CF1", "OF1")


class CompareError(ValueError):
    """Runs that cannot be compared as given; the message says which and what to do."""


@dataclass
class ScoredRun:
    """One run's saved test predictions and its protocol card."""

    name: str
    path: Path  # the directory holding the test metrics.json
    protocol: dict[str, Any]
    metrics: dict[str, Any]
    classes: list[str]
    logits: npt.NDArray[np.float64]  # (N, C)
    targets: npt.NDArray[np.int8]  # (N, C)
    ids: list[str] | None
    checkpoint: str | None = None
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def ap_mode(self) -> APMode:
        mode = self.protocol.get("ap_mode") or self.metrics.get("ap_mode") or "noninterp"
        if mode not in AP_MODES:
            raise CompareError(f"{self.path}/metrics.json: unknown ap_mode {mode!r}")
        return mode  # type: ignore[no-any-return]

    @property
    def threshold(self) -> float:
        return float(self.protocol.get("threshold", self.metrics.get("threshold", 0.5)))


def find_test_dir(run: Path) -> Path:
    """The folder with a run's test results: RUN itself or RUN/test."""
    for candidate in (run, run / "test"):
        meta = candidate / "metrics.json"
        if meta.is_file() and (candidate / "test_logits.npy").is_file():
            return candidate
    if not run.exists():
        raise CompareError(f"{run}: no such run directory")
    raise CompareError(
        f"{run}: no test results (test_logits.npy and metrics.json, in the run or its test/); "
        f"test the run first: ssgrl test --config {run / 'config.yaml'} --ckpt_path "
        f"{run / 'checkpoints' / 'best.ckpt'} --run_dir {run / 'test'}"
    )


def load_run(run: str | Path, name: str | None = None) -> ScoredRun:
    """Read one run's test metrics, protocol card, logits, targets and image ids."""
    folder = find_test_dir(Path(run))
    meta_path = folder / "metrics.json"
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise CompareError(f"{meta_path}: not valid JSON ({err})") from None
    if meta.get("stage") != "test" or not meta.get("metrics"):
        raise CompareError(
            f"{meta_path}: not the metrics of a labelled test split (stage {meta.get('stage')!r})"
        )
    targets_path = folder / "test_targets.npy"
    if not targets_path.is_file():
        raise CompareError(
            f"{folder}: no test_targets.npy (a split without labels cannot be scored)"
        )
    logits = np.load(folder / "test_logits.npy", allow_pickle=False).astype(np.float64)
    targets = np.load(targets_path, allow_pickle=False).astype(np.int8)
    metrics = meta["metrics"]
    classes = list(metrics["per_class_AP"])
    if logits.shape != targets.shape or logits.shape[1] != len(classes):
        raise CompareError(
            f"{folder}: test_logits.npy {logits.shape}, test_targets.npy {targets.shape} and "
            f"the {len(classes)} classes of metrics.json do not agree"
        )
    ids = None
    ids_path = folder / "test_ids.json"
    if ids_path.is_file():
        ids = [str(i) for i in json.loads(ids_path.read_text())["ids"]]
        if len(ids) != logits.shape[0]:
            raise CompareError(
                f"{ids_path}: {len(ids)} ids for {logits.shape[0]} rows of test_logits.npy"
            )
    run_dir = folder.parent if folder.name == "test" else folder
    config = _read_yaml(folder / "config.yaml")
    return ScoredRun(
        name=name or run_dir.name,
        path=folder,
        protocol=dict(meta.get("protocol") or {}),
        metrics=metrics,
        classes=classes,
        logits=logits,
        targets=targets,
        ids=ids,
        checkpoint=(config or {}).get("ckpt_path"),
        model=((config or {}).get("model") or {}).get("net") or {},
    )


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    import yaml

    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else None


def _unique_names(runs: list[ScoredRun]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            run.name = f"{run.name}#{count + 1}"


@dataclass(frozen=True)
class Estimate:
    """A point value and its 95% paired-bootstrap interval (percent)."""

    value: float
    low: float
    high: float
    defined: int  # replicates in which the statistic was defined

    @classmethod
    def of(cls, value: float, replicates: npt.ArrayLike, level: float) -> Estimate:
        iv: Interval = percentile_interval(replicates, level)
        return cls(float(value), iv.low, iv.high, iv.defined)

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0.0 or self.high < 0.0)

    def text(self, signed: bool = False, digits: int = 2) -> str:
        if math.isnan(self.value):
            return "undefined"
        fmt = f"{'+' if signed else ''}.{digits}f"
        if math.isnan(self.low):
            return f"{self.value:{fmt}} [undefined]"
        return f"{self.value:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "defined": self.defined}


@dataclass
class ClassDifference:
    name: str
    reference: float | None
    run: float | None
    difference: Estimate | None


@dataclass
class Comparison:
    """Everything ``ssgrl compare`` prints and writes."""

    runs: list[ScoredRun]
    reference: str
    resamples: int
    seed: int
    level: float
    estimates: dict[str, dict[str, Estimate]]  # run -> metric -> estimate
    differences: dict[str, dict[str, Estimate]]  # run (not the reference) -> metric -> diff
    per_class: dict[str, list[ClassDifference]]  # run -> classes sorted by |difference|
    protocol_mismatches: list[str]
    pairing: str  # how the images were paired

    @property
    def num_images(self) -> int:
        return int(self.runs[0].logits.shape[0])

    def significant_classes(self, run: str) -> list[ClassDifference]:
        return [
            d
            for d in self.per_class[run]
            if d.difference is not None and d.difference.excludes_zero
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "num_images": self.num_images,
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "pairing": self.pairing,
            "protocol_mismatches": self.protocol_mismatches,
            "runs": {
                run.name: {
                    "path": str(run.path),
                    "ap_mode": run.ap_mode,
                    "threshold": run.threshold,
                    **{k: e.to_dict() for k, e in self.estimates[run.name].items()},
                }
                for run in self.runs
            },
            "differences": {
                name: {k: e.to_dict() for k, e in diffs.items()}
                for name, diffs in self.differences.items()
            },
            "per_class": {
                name: [
                    {
                        "class": d.name,
                        "reference_AP": d.reference,
                        "AP": d.run,
                        "difference": None if d.difference is None else d.difference.to_dict(),
                    }
                    for d in diffs
                ]
                for name, diffs in self.per_class.items()
            },
        }


def protocol_mismatches(runs: list[ScoredRun]) -> list[str]:
    """One line per protocol key on which the runs disagree."""
    lines = []
    for key in PROTOCOL_KEYS:
        values = {run.name: run.protocol.get(key) for run in runs}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            shown = ", ".join(f"{name}: {_card_value(v)}" for name, v in values.items())
            lines.append(f"{key} differs ({shown})")
    return lines


def check_pairing(runs: list[ScoredRun], allow_mismatch: bool) -> str:
    """Raise CompareError unless every run scored the same images in the same order; return how
    that was verified."""
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes:
            raise CompareError(
                f"runs {first.name} ({first.path}) and {run.name} ({run.path}) have different "
                f"classes ({len(first.classes)} vs {len(run.classes)}; first differing: "
                f"{_first_difference(first.classes, run.classes)}): compare runs of one label space"
            )
        if run.logits.shape[0] != first.logits.shape[0]:
            raise CompareError(
                f"runs {first.name} and {run.name} scored different test sets "
                f"({first.logits.shape[0]} vs {run.logits.shape[0]} images): a paired comparison "
                "needs the same test images"
            )
    with_ids = [run for run in runs if run.ids is not None]
    if len(with_ids) == len(runs):
        for run in runs[1:]:
            if run.ids != first.ids:
                assert run.ids is not None and first.ids is not None
                row = next(
                    i for i, (a, b) in enumerate(zip(first.ids, run.ids, strict=True)) if a != b
                )
                raise CompareError(
                    f"runs {first.name} and {run.name} scored different test images: row {row} "
                    f"is {first.ids[row]!r} in {first.path / 'test_ids.json'} but "
                    f"{run.ids[row]!r} in {run.path / 'test_ids.json'}; test both on the same "
                    "split"
                )
        targets_differ = [r.name for r in runs[1:] if not np.array_equal(r.targets, first.targets)]
        if targets_differ and not allow_mismatch:
            raise CompareError(
                f"runs {', '.join(targets_differ)} have other test targets than {first.name} for "
                "the same images (a different difficult policy or label file?); pass "
                "--allow-protocol-mismatch to score each run against its own targets"
            )
        return "by image id (test_ids.json)" + (
            "; each run scored against its own targets" if targets_differ else ""
        )
    for run in runs[1:]:
        if not np.array_equal(run.targets, first.targets):
            row, col = (int(v) for v in np.argwhere(run.targets != first.targets)[0])
            raise CompareError(
                f"runs {first.name} and {run.name} have different test targets (first at row "
                f"{row}, class {first.classes[col]!r}) and {'neither' if not with_ids else 'not every run'}"
                " saved its image ids: they cannot be paired; test them again with this ssgrl"
            )
    return "by targets (some runs have no test_ids.json: identical target matrices, same order)"


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"#{i} {x!r} vs {y!r}"
    return f"#{min(len(a), len(b))}"


def compare_runs(
    runs: list[ScoredRun],
    reference: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    allow_protocol_mismatch: bool = False,
) -> Comparison:
    """Point metrics, paired bootstrap intervals and per-class differences of tested runs."""
    if not runs:
        raise CompareError("give at least one run directory")
    _unique_names(runs)
    names = [run.name for run in runs]
    ref_name = names[0] if reference is None else _resolve_reference(reference, runs)
    mismatches = protocol_mismatches(runs)
    if mismatches and not allow_protocol_mismatch:
        raise CompareError(
            "the runs were not evaluated under one protocol: "
            + "; ".join(mismatches)
            + ". Re-test them under one protocol, or pass --allow-protocol-mismatch to compare "
            "them anyway (the mismatch is flagged in every output)"
        )
    pairing = check_pairing(runs, allow_protocol_mismatch)
    n = runs[0].logits.shape[0]
    weights = resample_counts(resample_indices(n, resamples, seed), n)
    replicates: dict[str, Replicates] = {}
    estimates: dict[str, dict[str, Estimate]] = {}
    points: dict[str, dict[str, Any]] = {}
    for run in runs:
        point = compute_metrics(
            run.logits,
            run.targets,
            run.classes,
            ap_mode=run.ap_mode,
            threshold=run.threshold,
            top_k=None,
            logits=True,
        )
        saved = run.metrics.get("mAP")
        same_mode = run.metrics.get("ap_mode", run.ap_mode) == run.ap_mode
        if saved is not None and same_mode and abs(float(saved) - point["mAP"]) > 1e-3:
            raise CompareError(
                f"{run.path}: test_logits.npy gives mAP {point['mAP']:.4f} but metrics.json says "
                f"{float(saved):.4f}: the files do not belong together"
            )
        points[run.name] = point
        reps = bootstrap_run(run.logits, run.targets, weights, run.ap_mode, run.threshold)
        replicates[run.name] = reps
        estimates[run.name] = {m: Estimate.of(point[m], getattr(reps, m), level) for m in METRICS}
    ref = replicates[ref_name]
    differences: dict[str, dict[str, Estimate]] = {}
    per_class: dict[str, list[ClassDifference]] = {}
    for run in runs:
        if run.name == ref_name:
            continue
        reps = replicates[run.name]
        differences[run.name] = {
            m: Estimate.of(
                points[run.name][m] - points[ref_name][m],
                getattr(reps, m) - getattr(ref, m),
                level,
            )
            for m in METRICS
        }
        rows = []
        for j, cls in enumerate(run.classes):
            a = points[ref_name]["per_class_AP"][cls]
            b = points[run.name]["per_class_AP"][cls]
            diff = None
            if a is not None and b is not None:
                diff = Estimate.of(b - a, reps.per_class_ap[:, j] - ref.per_class_ap[:, j], level)
            rows.append(ClassDifference(cls, a, b, diff))
        rows.sort(key=lambda d: -1.0 if d.difference is None else -abs(d.difference.value))
        per_class[run.name] = rows
    return Comparison(
        runs=runs,
        reference=ref_name,
        resamples=resamples,
        seed=seed,
        level=level,
        estimates=estimates,
        differences=differences,
        per_class=per_class,
        protocol_mismatches=mismatches,
        pairing=pairing,
    )


def _resolve_reference(reference: str, runs: list[ScoredRun]) -> str:
    for run in runs:
        if reference == run.name:
            return run.name
    target = Path(reference).resolve()
    for run in runs:
        if target in (run.path.resolve(), run.path.parent.resolve()):
            return run.name
    raise CompareError(
        f"--reference {reference!r} is none of the compared runs "
        f"({', '.join(run.name for run in runs)}): give one of their names or directories"
    )


# -- rendering ---------------------------------------------------------------------------------


def _card_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def _title(c: Comparison) -> str:
    first = c.runs[0].protocol
    where = f"{first.get('dataset', '?')}/{first.get('split', '?')}"
    return (
        f"{len(c.runs)} runs on {c.num_images} test images ({where}), "
        f"{len(c.runs[0].classes)} classes; {100 * c.level:g}% paired bootstrap intervals "
        f"({c.resamples} resamples over test images, seed {c.seed}); reference: {c.reference}"
    )


def _tables(c: Comparison, top: int | None) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(id, title, header, rows) of every table, shared by the three renderers."""
    out: list[tuple[str, str, list[str], list[list[str]]]] = []
    header = ["run", *[f"{m} [{100 * c.level:g}% CI]" for m in METRICS]]
    header += [f"Δ{m} vs {c.reference}" for m in METRICS]
    rows = []
    for run in c.runs:
        est = c.estimates[run.name]
        row = [run.name, *[est[m].text() for m in METRICS]]
        if run.name == c.reference:
            row += ["(reference)"] * len(METRICS)
        else:
            diffs = c.differences[run.name]
            row += [
                diffs[m].text(signed=True) + (" *" if diffs[m].excludes_zero else "")
                for m in METRICS
            ]
        rows.append(row)
    out.append(("summary", "Metrics and differences against the reference", header, rows))
    card_rows = []
    mismatched = {line.split(" ")[0] for line in c.protocol_mismatches}
    for key in CARD_KEYS:
        values = [_card_value(run.protocol.get(key)) for run in c.runs]
        flag = " (DIFFERS)" if key in mismatched else ""
        card_rows.append([key + flag, *values])
    out.append(("protocol", "Protocol cards", ["", *[run.name for run in c.runs]], card_rows))
    for name, class_diffs in c.per_class.items():
        shown = class_diffs if top is None else class_diffs[:top]
        rows = []
        for d in shown:
            rows.append(
                [
                    d.name,
                    "undefined" if d.reference is None else f"{d.reference:.2f}",
                    "undefined" if d.run is None else f"{d.run:.2f}",
                    "undefined" if d.difference is None else d.difference.text(signed=True),
                    "yes" if d.difference is not None and d.difference.excludes_zero else "",
                ]
            )
        title = f"Per-class AP: {name} against {c.reference}, sorted by the size of the difference"
        if top is not None and len(class_diffs) > top:
            title += f" (the {top} largest of {len(class_diffs)})"
        header = ["class", f"AP {c.reference}", f"AP {name}", "ΔAP [CI]", "CI excludes 0"]
        out.append((f"per-class-{_slug(name)}", title, header, rows))
    return out


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def _notes(c: Comparison) -> list[str]:
    notes = [f"Images paired {c.pairing}."]
    if c.protocol_mismatches:
        notes.append(
            "WARNING: protocols differ (--allow-protocol-mismatch): "
            + "; ".join(c.protocol_mismatches)
        )
    for name in c.per_class:
        sig = c.significant_classes(name)
        listed = ", ".join(f"{d.name} ({d.difference.value:+.2f})" for d in sig if d.difference)
        notes.append(
            f"{name} vs {c.reference}: {len(sig)} classes whose AP-difference interval excludes "
            f"zero" + (f": {listed}" if listed else "")
        )
    notes.append(
        "* = the interval of the difference excludes zero. Percentile intervals; each replicate "
        "resamples the test images with replacement, the same images for every run. A class "
        "without positives in a replicate is left out of that replicate's mAP (as in "
        "ssgrl.metrics) and of its own interval."
    )
    return notes


def format_terminal(c: Comparison, top: int | None = 10) -> str:
    lines = [_title(c), ""]
    for table_id, title, header, rows in _tables(c, top):
        if table_id == "protocol":  # long card values cut for the terminal
            rows = [[_cut(cell, 40) for cell in row] for row in rows]
        lines += [title, *_aligned([header, *rows]), ""]
    lines += _notes(c)
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def format_markdown(c: Comparison, top: int | None = None) -> str:
    lines = [f"**{_title(c)}**", ""]
    for _, title, header, rows in _tables(c, top):
        lines += [f"#### {title}", "", _md_row(header), _md_row(["---"] * len(header))]
        lines += [_md_row(r) for r in rows] + [""]
    lines += [f"- {note}" for note in _notes(c)]
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


HTML_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f3f3f3} td.sig{background:#fff3c4}
.warn{color:#a00;font-weight:bold} .note{color:#555;font-size:13px}
"""


def html_tables(c: Comparison, top: int | None = None) -> str:
    """The comparison as HTML fragments (sections with stable ids), for pages that embed it."""
    from html import escape

    parts = [f"<p>{escape(_title(c))}</p>"]
    for table_id, title, header, rows in _tables(c, top):
        parts.append(f'<section id="compare-{table_id}"><h3>{escape(title)}</h3><table>')
        parts.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = []
            for cell in row:
                cls = ' class="sig"' if cell.endswith(" *") or cell == "yes" else ""
                cells.append(f"<td{cls}>{escape(cell)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table></section>")
    parts.append('<section id="compare-notes"><ul>')
    for note in _notes(c):
        cls = "warn" if note.startswith("WARNING") else "note"
        parts.append(f'<li class="{cls}">{escape(note)}</li>')
    parts.append("</ul></section>")
    return "\n".join(parts)


def format_html(c: Comparison, top: int | None = None) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>ssgrl compare</title>"
        f"<style>{HTML_STYLE}</style></head><body><h1>ssgrl compare</h1>\n"
        f"{html_tables(c, top)}\n</body></html>\n"
    )


# -- the command -------------------------------------------------------------------------------


def configure(parser: Any) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="tested run directories")
    parser.add_argument(
        "--reference", default=None, help="the run the others are compared with (default: first)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")
    parser.add_argument("--markdown", default=None, metavar="FILE", help="also write Markdown")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write an HTML page")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the numbers")
    parser.add_argument(
        "--top", type=int, default=10, help="per-class rows shown in the terminal (default 10)"
    )
    parser.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="compare runs whose protocol cards differ (flagged in every output)",
    )


def run(args: Any) -> int:
    import sys

    try:
        if args.bootstrap < 1:
            raise CompareError(f"--bootstrap must be >= 1, got {args.bootstrap}")
        runs = [load_run(path) for path in args.runs]
        result = compare_runs(
            runs,
            reference=args.reference,
            resamples=args.bootstrap,
            seed=args.seed,
            allow_protocol_mismatch=args.allow_protocol_mismatch,
        )
    except CompareError as err:
        print(f"ssgrl compare: error: {err}", file=sys.stderr)
        return 2
    print(format_terminal(result, top=args.top))
    written = write_outputs(result, args.markdown, args.html, args.json)
    for path in written:
        print(f"written: {path}")
    return 0


def write_outputs(
    result: Comparison,
    markdown: str | Path | None = None,
    html: str | Path | None = None,
    json_path: str | Path | None = None,
) -> list[Path]:
    written = []
    for path, text in (
        (markdown, lambda: format_markdown(result)),
        (html, lambda: format_html(result)),
        (json_path, lambda: json.dumps(result.to_dict(), indent=2) + "\n"),
    ):
        if path is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text())
            written.append(target)
    return written
