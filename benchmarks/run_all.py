"""Every benchmark, each in its own process, and one Markdown table of their figures.

    OMP_NUM_THREADS=2 python benchmarks/run_all.py [--quick] [--device cuda] [--only NAME ...]

Each script runs as ``python benchmarks/<script> --json <file> [options]`` (its output goes to
the terminal as it comes) and writes a JSON list of rows ``{"section", "figure", "value",
"target", "met", "command"}``. The table (section | figure | value | target | met | command)
is printed at the end, with each script's seconds, and written to ``--out``
(``benchmarks/results/latest.md``), the raw rows next to it (``latest.json``). A script that
fails or writes no rows gets a row saying so (met: no) and the exit status is 1.
``--device cuda`` adds ``gpu.py`` (left out otherwise: it needs a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLUMNS = ("section", "figure", "value", "target", "met", "command")


@dataclass(frozen=True)
class Script:
    name: str
    args: tuple[str, ...]  # the full run
    quick: tuple[str, ...]  # --quick
    gpu_only: bool = False


SCRIPTS = (
    Script("head_speed_memory.py", (), ("--repeats", "3", "--train-repeats", "1")),
    Script("data_path.py", ("--rounds", "3"), ("--quick",)),
    Script("metrics_speed.py", (), ("--repeats", "3")),
    Script("feature_cache.py", (), ("--num-train", "400", "--num-val", "100")),
    Script("gpu.py", ("--device", "cuda"), ("--device", "cuda", "--steps", "5"), gpu_only=True),
)


def run_script(script: Script, quick: bool, folder: Path) -> tuple[list[dict[str, Any]], float]:
    """The script's rows (or one failure row) and its wall-clock seconds."""
    out = folder / f"{script.name}.json"
    argv = [sys.executable, str(HERE / script.name), "--json", str(out)]
    argv += list(script.quick if quick else script.args)
    print(f"\n=== {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    last_lines: deque[str] = deque(maxlen=1)  # of standard error, for a failure row
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        assert proc.stderr is not None
        for line in proc.stderr:  # passed through as it comes
            sys.stderr.write(line)
            if line.strip():
                last_lines.append(line.strip())
    seconds = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    problem = ""
    if proc.returncode != 0:
        problem = f"exit status {proc.returncode}: {' '.join(last_lines)}"
    if not problem:
        try:
            rows = json.loads(out.read_text())
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                problem = f"{out.name} is not a JSON list of rows"
        except (OSError, json.JSONDecodeError) as err:
            problem = f"no readable rows ({err})"
    if problem:
        rows = [
            {
                "section": script.name.removesuffix(".py"),
                "figure": "the script",
                "value": f"failed: {problem}",
                "target": "runs",
                "met": False,
                "command": " ".join(["python", f"benchmarks/{script.name}", *argv[4:]]),
            }
        ]
    return rows, seconds


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "yes"
    if value is False:
        return "**no**"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = [cell(row.get(c)) for c in COLUMNS]
        values[-1] = f"`{values[-1]}`" if values[-1] != "-" else "-"
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's quick settings")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda adds gpu.py")
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="NAME", help="e.g. metrics_speed"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.md")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    chosen = [s for s in SCRIPTS if args.device == "cuda" or not s.gpu_only]
    if args.only:
        wanted = {n.removesuffix(".py") for n in args.only}
        unknown = wanted - {s.name.removesuffix(".py") for s in SCRIPTS}
        if unknown:
            parser.error(
                f"unknown benchmark(s) {sorted(unknown)}; expected {[s.name for s in SCRIPTS]}"
            )
        chosen = [s for s in chosen if s.name.removesuffix(".py") in wanted]

    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    durations: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in chosen:
            script_rows, seconds = run_script(script, args.quick, Path(tmp))
            rows += script_rows
            durations.append((script.name, seconds))

    total = sum(s for _, s in durations)
    header = (
        f"Benchmarks, {started:%Y-%m-%d %H:%M} UTC, {'quick' if args.quick else 'full'} run, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs, "
        f"load average before {load_before:.1f}; "
        + ", ".join(f"{name} {s:.0f} s" for name, s in durations)
        + f" (total {total / 60:.1f} min)"
    )
    text = header + "\n\n" + table(rows) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"written to {args.out} and {args.out.with_suffix('.json')}")
    return 1 if any(r.get("met") is False and r.get("figure") == "the script" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
