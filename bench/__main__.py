"""``python -m bench [--only NAME] [--quick] [--json PATH]``: run the benchmarks, print one line per figure.

Every line on stdout is ``name value unit target`` (target ``<=X``, ``>=X`` or ``-`` for a figure that is
reported, not judged). The same figures, with notes and whether each target was met, go to the JSON file
(default ``bench/results/latest.json``). Progress and the list of missed targets go to stderr.

Each benchmark runs in its own interpreter (``python -m bench --child NAME``), so one benchmark's memory,
imports and threads never colour another's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from bench import BENCHMARKS
from bench.core import REPO_ROOT, BenchContext, Figure, format_value

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "latest.json"
CHILD_TIMEOUT_SECONDS = 1800.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        help=f"run only this benchmark (repeatable, or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="short versions (smaller floods, 20 s idle)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        nargs="?",
        const=str(DEFAULT_JSON),
        help="print a results file (default: the latest) as a Markdown table and exit",
    )
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", metavar="PATH", help=argparse.SUPPRESS)
    return parser


def selected(only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(
            f"python -m bench: unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}"
        )
    return [name for name in BENCHMARKS if name in names]


# -- in the child: run one benchmark ------------------------------------------------------------------------


async def _awaited(outcome: Awaitable[list[Figure]]) -> list[Figure]:
    return await outcome


def run_child(name: str, quick: bool, result_file: Path) -> int:
    module = importlib.import_module(BENCHMARKS[name])
    with tempfile.TemporaryDirectory(prefix=f"gitops-bench-{name}-") as scratch:
        ctx = BenchContext(quick=quick, workdir=Path(scratch))
        outcome = module.run(ctx)
        figures: list[Figure] = asyncio.run(_awaited(outcome)) if inspect.isawaitable(outcome) else outcome
    result_file.write_text(
        json.dumps({"figures": [figure.to_json() for figure in figures], "notes": ctx.notes}),
        encoding="utf-8",
    )
    return 0


# -- in the parent: run each benchmark in its own interpreter ----------------------------------------------


def run_isolated(name: str, quick: bool) -> tuple[list[Figure], list[str], str | None, float]:
    """(figures, notes, error, seconds) of one benchmark run in a fresh interpreter."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gitops-bench-result-") as scratch:
        result_file = Path(scratch) / "result.json"
        argv = [sys.executable, "-m", "bench", "--child", name, "--result-file", str(result_file)]
        if quick:
            argv.append("--quick")
        try:
            completed = subprocess.run(
                argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr,  # a benchmark's own output is progress, never a figure line
                timeout=CHILD_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return [], [], f"timed out after {CHILD_TIMEOUT_SECONDS:g} s", time.monotonic() - started
        elapsed = time.monotonic() - started
        if completed.returncode != 0 or not result_file.exists():
            return [], [], f"exited with code {completed.returncode}", elapsed
        data = json.loads(result_file.read_text(encoding="utf-8"))
    figures = [Figure.from_json(item) for item in data["figures"]]
    return figures, [str(note) for note in data.get("notes", [])], None, elapsed


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    try:
        from importlib.metadata import version

        textual_version = version("textual")
    except Exception:
        textual_version = "unknown"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "textual": textual_version,
    }


def markdown_table(document: dict[str, Any]) -> str:
    """The figures of a results file as a Markdown table (figure, value, unit, target, met)."""
    rows = ["| figure | value | unit | target | met |", "|---|---:|---|---|---|"]
    for data in document["figures"]:
        figure = Figure.from_json(data)
        met = {True: "yes", False: "**no**", None: ""}[figure.met]
        rows.append(
            f"| `{figure.name}` | {format_value(figure.value)} | {figure.unit} | {figure.target} | {met} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            print(f"{name}: {(importlib.import_module(module).__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text(encoding="utf-8"))))
        return 0
    if args.child:
        return run_child(args.child, args.quick, Path(args.result_file))

    names = selected(args.only)
    output = Path(args.json) if args.json else DEFAULT_JSON
    started = datetime.datetime.now(datetime.UTC)
    results: list[dict[str, Any]] = []
    missed: list[Figure] = []
    failed: list[str] = []
    cpus = os.cpu_count() or 1
    for name in names:
        print(f"[bench] {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        if load_before > cpus / 2:
            print(
                f"[bench] warning: load average {load_before:.1f} on {cpus} CPUs: other work competes, "
                "times and stalls will be inflated",
                file=sys.stderr,
                flush=True,
            )
        figures, notes, error, seconds = run_isolated(name, args.quick)
        if error is not None:
            failed.append(name)
            print(f"[bench] {name} FAILED: {error}", file=sys.stderr, flush=True)
        for figure in figures:
            print(figure.line(), flush=True)
            if figure.met is False:
                missed.append(figure)
        results.append(
            {
                "benchmark": name,
                "seconds": round(seconds, 1),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "error": error,
                "notes": notes,
                "figures": [figure.to_json() for figure in figures],
            }
        )
    document = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "revision": git_revision(),
        "machine": machine(),
        "benchmarks": results,
        "figures": [figure for result in results for figure in result["figures"]],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for figure in missed:
        print(f"[bench] target missed: {figure.line()}  {figure.note}".rstrip(), file=sys.stderr)
    print(f"[bench] results written to {output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
