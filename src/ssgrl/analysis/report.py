"""``ssgrl report RUN_DIR``: one self-contained HTML page about a tested run.

Everything is in the file (PNG images as base64 ``data:`` URLs, inline CSS, no script, no
external URL), so it opens offline and can be mailed. Sections, each with a stable id:

- ``summary``: the test metrics and the protocol card;
- ``per-class-ap``: per-class AP bars;
- ``pr-curves``: a precision-recall curve per class;
- ``threshold-curves``: F1 against the probability threshold per class, the global threshold and
  the checkpoint's fitted per-class threshold (when it has one) marked;
- ``cooccurrence``: how often the model predicts two labels together minus how often they occur
  together, and the pairs it over-predicts most (where the graph may be over-used);
- ``label-graph``: the adjacency the model's GGNN uses (from the checkpoint);
- ``attention``: for each class the best- and the worst-scored test image that has the class,
  with the class's attention map (a model without attention says so here).

The predictions are the run's saved test logits; the checkpoint (the run's tested one) and the
test images (found through the run's config) are needed only for the attention examples.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from ssgrl.analysis.compare import CARD_KEYS, CompareError, ScoredRun, _card_value, load_run
from ssgrl.metrics import sigmoid
from ssgrl.viz import report_plots

_THUMB = 160  # px, the longer side of an attention example

SECTION_IDS = (
    "summary",
    "per-class-ap",
    "pr-curves",
    "threshold-curves",
    "cooccurrence",
    "label-graph",
    "attention",
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1300px}
h1{margin-bottom:4px} section{margin:28px 0} img{max-width:100%;height:auto}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left} th{background:#f3f3f3}
.note{color:#555;font-size:13px} .examples{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:4px;max-width:340px}
figcaption{font-size:12px;color:#444} .all-examples{display:flex;flex-wrap:wrap;gap:8px 28px}
.class-examples h3{margin:8px 0 4px}
"""


class ReportError(ValueError):
    """A run that cannot be reported as given; the message says what is missing."""


@dataclass(frozen=True)
class GraphView:
    """The GraphLike that ``ssgrl.viz.graph.plot_graph`` draws."""

    matrix: np.ndarray
    classes: list[str]
    split: str
    num_images: int


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{_b64(png)}" alt="{escape(alt)}">'


def find_checkpoint(run: ScoredRun) -> Path | None:
    """The tested checkpoint: as the test's config names it, else in the run's checkpoints/."""
    run_dir = run.path.parent if run.path.name == "test" else run.path
    candidates: list[Path] = []
    if run.checkpoint:
        candidates += [Path(run.checkpoint), run_dir / "checkpoints" / Path(run.checkpoint).name]
    candidates += [run_dir / "checkpoints" / "best.ckpt", run_dir / "checkpoints" / "last.ckpt"]
    return next((p for p in candidates if p.is_file()), None)


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def _summary(run: ScoredRun, checkpoint: Path | None) -> str:
    m = run.metrics
    rows = "".join(
        f"<tr><th>{k}</th><td>{m[k]:.2f}</td></tr>"
        for k in ("mAP", "CF1", "OF1", "CP", "CR", "OP", "OR")
        if isinstance(m.get(k), int | float)
    )
    card = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(_card_value(run.protocol.get(k)))}</td></tr>"
        for k in CARD_KEYS
        if k in run.protocol
    )
    net = ", ".join(f"{k}={v}" for k, v in run.model.items()) or "unknown"
    return (
        f"<p>Run <code>{escape(str(run.path))}</code>; checkpoint "
        f"<code>{escape(str(checkpoint) if checkpoint else 'not found')}</code>; model: "
        f"{escape(net)}.</p>"
        f"<table><tr><th>metric (test, %)</th><th></th></tr>{rows}</table>"
        f"<h3>Protocol card</h3><table>{card}</table>"
    )


def _thresholds(checkpoint: Path | None) -> tuple[list[float] | None, str]:
    if checkpoint is None:
        return None, "no checkpoint found: no fitted thresholds to mark"
    from ssgrl.checkpoint import read_checkpoint

    _, meta = read_checkpoint(checkpoint)
    th = meta.thresholds
    if th is None:
        return None, "the checkpoint has no fitted per-class thresholds (`ssgrl calibrate`)"
    return list(th.values), f"fitted per-class thresholds: {th.method}, fitted on {th.fitted_on}"


def _cooccurrence(run: ScoredRun, thresholds: np.ndarray, top: int = 10) -> str:
    probs = sigmoid(run.logits)  # (N, C)
    valid = run.targets >= 0
    pred = ((probs >= thresholds[None, :]) & valid).astype(np.float64)
    true = ((run.targets == 1) & valid).astype(np.float64)
    n, c = pred.shape
    predicted_pairs = pred.T @ pred  # (C, C) images with both labels predicted
    true_pairs = true.T @ true  # (C, C) images with both labels present
    diff = (predicted_pairs - true_pairs) / max(n, 1)
    np.fill_diagonal(diff, 0.0)
    png = report_plots.cooccurrence_png(
        run.classes, diff, "predicted minus true co-occurrence (red: predicted together too often)"
    )
    iu = np.triu_indices(c, k=1)
    excess = predicted_pairs[iu] - true_pairs[iu]
    order = np.argsort(-excess, kind="stable")[:top]
    rows = "".join(
        f"<tr><td>{escape(run.classes[iu[0][k]])} + {escape(run.classes[iu[1][k]])}</td>"
        f"<td>{int(predicted_pairs[iu][k])}</td><td>{int(true_pairs[iu][k])}</td>"
        f"<td>{int(excess[k]):+d}</td></tr>"
        for k in order
        if excess[k] > 0
    )
    table = (
        "<table><tr><th>pair</th><th>predicted together</th><th>truly together</th>"
        f"<th>excess</th></tr>{rows}</table>"
        if rows
        else "<p>No pair is predicted together more often than it occurs.</p>"
    )
    return (
        f"{_img(png, 'co-occurrence difference')}<h3>Pairs predicted together more often than "
        f"they occur (of {n} test images)</h3>{table}"
    )


def _label_graph(checkpoint: Path | None, model: Any) -> str:
    from ssgrl.viz.graph import plot_graph

    if model is None:
        return f"<p>No checkpoint found ({escape(str(checkpoint))}): the graph is in it.</p>"
    graph = getattr(model.net, "graph", None)
    adjacency = getattr(graph, "adjacency", None)
    if adjacency is None:
        return "<p>This model has no label graph (a baseline: global pooling + linear).</p>"
    prov = model.meta.graph or {}
    view = GraphView(
        adjacency.detach().float().cpu().numpy(),
        list(model.class_names),
        str(prov.get("split", "unknown")),
        int(prov.get("num_images", 0) or 0),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.png"
        plot_graph(view, path, value_label="adjacency A[i, j]")
        png = path.read_bytes()
    steps = getattr(model.meta.model, "ggnn_steps", None)
    note = " The GGNN runs T = 0 steps: this graph is not used." if steps == 0 else f" T = {steps}."
    return f"{_img(png, 'label graph')}<p class='note'>The adjacency of the checkpoint.{note}</p>"


def _attention(
    run: ScoredRun, checkpoint: Path | None, model: Any, per_class: int, config: dict[str, Any]
) -> str:
    from PIL import Image

    from ssgrl.viz.attention import overlay_attention

    if model is None:
        return f"<p>No checkpoint found: attention needs the model ({escape(str(checkpoint))}).</p>"
    has_attention = bool(getattr(model.net, "has_attention", hasattr(model.net, "decoupling")))
    if not hasattr(model.net, "decoupling"):
        return (
            "<p>This model has no attention maps: it is a baseline (global pooling + linear), "
            "which pools one feature for all classes.</p>"
        )
    if not has_attention:
        return (
            "<p>This model has no attention maps: it was trained without semantic decoupling "
            "(model.net.semantic_decoupling false), one pooled feature projected per class.</p>"
        )
    split = _test_split(run, config)
    rows = _split_rows(run, split)
    chosen: dict[int, list[tuple[str, int]]] = {}  # class -> [(kind, row)]
    for j in range(len(run.classes)):
        positives = np.flatnonzero(run.targets[:, j] == 1)
        if positives.size == 0:
            continue
        by_score = positives[np.argsort(-run.logits[positives, j], kind="stable")]
        picks = [("best", int(r)) for r in by_score[:per_class]]
        worst = [int(r) for r in by_score[::-1][:per_class] if int(r) not in by_score[:per_class]]
        chosen[j] = picks + [("worst", r) for r in worst]
    needed = sorted({r for picks in chosen.values() for _, r in picks})
    from ssgrl.inference.predictor import Predictor

    predictor = Predictor(model=model)
    draft = predictor.preprocessing.draft_size  # decoded as the model decodes files
    images = {r: split.load_image(rows[r], draft) for r in needed}
    maps: dict[int, np.ndarray] = {}
    probs: dict[int, np.ndarray] = {}
    for start in range(0, len(needed), 16):
        batch = needed[start : start + 16]
        p, a = predictor.attention([images[r] for r in batch])
        for k, r in enumerate(batch):
            probs[r], maps[r] = p[k], a[k]
    blocks = []
    for j, picks in chosen.items():
        name = run.classes[j]
        figures = []
        for kind, r in picks:
            view = predictor.view(images[r])
            view.thumbnail((_THUMB, _THUMB))
            pair = Image.new("RGB", (2 * view.width + 4, view.height), "white")
            pair.paste(view, (0, 0))  # the image as the model saw it | its attention for the class
            pair.paste(overlay_attention(view, maps[r][j]), (view.width + 4, 0))
            buffer = io.BytesIO()
            pair.save(buffer, format="PNG")
            image_id = run.ids[r] if run.ids else str(rows[r])
            figures.append(
                f"<figure>{_img(buffer.getvalue(), f'{name} {kind}')}<figcaption>{kind}-scored "
                f"image with {escape(name)}: {escape(image_id)}, p = {probs[r][j]:.3f}"
                "</figcaption></figure>"
            )
        blocks.append(
            f'<div class="class-examples"><h3 id="attention-{escape(name)}">{escape(name)}</h3>'
            f"<div class='examples'>{''.join(figures)}</div></div>"
        )
    return (
        "<p class='note'>For each class: the test images that have it with the highest and the "
        "lowest score, as the model saw them, and the class's attention over them (normalised "
        "to its peak).</p><div class='all-examples'>" + "".join(blocks) + "</div>"
    )


def _test_split(run: ScoredRun, config: dict[str, Any]) -> Any:
    from ssgrl.data.registry import load_split

    data = config.get("data") or {}
    dataset = data.get("dataset")
    if not dataset:
        raise ReportError(f"{run.path / 'config.yaml'}: no data.dataset to find the test images")
    split_name = data.get("test_split") or run.protocol.get("split") or "test"
    return load_split(
        dataset, split_name, root=data.get("root"), **(data.get("dataset_options") or {})
    )


def _split_rows(run: ScoredRun, split: Any) -> list[int]:
    """The split index of each row of the saved logits (by image id when saved)."""
    if run.ids is not None:
        where = {str(i): k for k, i in enumerate(split.ids)}
        missing = [i for i in run.ids if i not in where]
        if missing:
            raise ReportError(
                f"test image {missing[0]!r} of {run.path / 'test_ids.json'} is not in the split "
                "the run's config names: was the data moved?"
            )
        return [where[i] for i in run.ids]
    if len(split) != run.logits.shape[0]:
        raise ReportError(
            f"the run's config names a test split of {len(split)} images, but the run scored "
            f"{run.logits.shape[0]}"
        )
    return list(range(len(split)))


def build_report(run_dir: str | Path, per_class: int = 1) -> str:
    """The report page of a tested run, as one HTML string."""
    from ssgrl.analysis.compare import _read_yaml

    t0 = time.perf_counter()
    run = load_run(run_dir)
    checkpoint = find_checkpoint(run)
    config = _read_yaml(run.path / "config.yaml") or {}
    model = None
    if checkpoint is not None:
        from ssgrl.checkpoint import load_model

        model = load_model(checkpoint)
    fitted, threshold_note = _thresholds(checkpoint)
    global_threshold = run.threshold
    curves = [
        report_plots.operating_points(run.logits[:, j], run.targets[:, j])
        for j in range(len(run.classes))
    ]
    ap = [run.metrics["per_class_AP"].get(c) for c in run.classes]
    thresholds = np.asarray(fitted if fitted is not None else [global_threshold] * len(ap))
    sections = [
        _section("summary", "Summary", _summary(run, checkpoint)),
        _section(
            "per-class-ap",
            "Per-class AP",
            _img(
                report_plots.per_class_ap_png(
                    run.classes,
                    ap,
                    f"test AP per class ({run.ap_mode}); mAP {run.metrics['mAP']:.2f}",
                ),
                "per-class AP",
            ),
        ),
        _section(
            "pr-curves",
            "Precision-recall curves",
            _img(report_plots.pr_curves_png(run.classes, curves, ap), "precision-recall curves"),
        ),
        _section(
            "threshold-curves",
            "F1 against the threshold",
            _img(
                report_plots.threshold_curves_png(run.classes, curves, fitted, global_threshold),
                "F1 against threshold",
            )
            + f"<p class='note'>Dotted: the global threshold {global_threshold:g}. "
            + ("Dashed red: the checkpoint's fitted per-class threshold. " if fitted else "")
            + f"{escape(threshold_note)}.</p>",
        ),
        _section(
            "cooccurrence",
            "Predicted vs true label co-occurrence",
            "<p class='note'>Labels predicted at "
            + (
                "the fitted per-class thresholds"
                if fitted
                else f"probability >= {global_threshold:g}"
            )
            + ".</p>"
            + _cooccurrence(run, thresholds),
        ),
        _section("label-graph", "Label graph", _label_graph(checkpoint, model)),
        _section(
            "attention",
            "Attention: best- and worst-scored test images of each class",
            _attention(run, checkpoint, model, per_class, config),
        ),
    ]
    took = time.perf_counter() - t0
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>ssgrl report: {escape(run.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>ssgrl report: {escape(run.name)}</h1>"
        f"<p class='note'>{run.logits.shape[0]} test images, {len(run.classes)} classes; "
        f"written in {took:.1f} s by ssgrl report.</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, per_class: int = 1) -> Path:
    html = build_report(run_dir, per_class)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html)
    return path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="a tested run (its test/ or itself)")
    parser.add_argument("--out", default=None, help="the HTML file (default RUN_DIR/report.html)")
    parser.add_argument(
        "--examples", type=int, default=1, help="best and worst images per class (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    from ssgrl.engine.cli import USER_ERRORS

    try:
        if args.examples < 1:
            raise ReportError(f"--examples must be >= 1, got {args.examples}")
        path = write_report(args.run, args.out, args.examples)
    except (CompareError, ReportError, *USER_ERRORS) as err:  # type: ignore[misc]
        print(f"ssgrl report: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


__all__ = ["SECTION_IDS", "ReportError", "build_report", "write_report"]
