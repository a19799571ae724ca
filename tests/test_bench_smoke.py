"""The benchmark runner works and prints its figures in the agreed format (the numbers are not checked)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"^[a-z][a-z0-9_]*"  # name
    r" (-?[0-9][0-9.e+-]*|nan)"  # value
    r" [A-Za-z/%0-9]+"  # unit
    r" ((<=|>=)-?[0-9.]+|-)$"  # target, or "-" for a figure reported but not judged
)


def test_quick_engine_overhead_prints_one_line_per_figure_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "engine_overhead", "--json", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines, completed.stderr
    for line in lines:
        assert LINE.match(line), f"not `name value unit target`: {line!r}"
    names = [line.split(" ")[0] for line in lines]
    assert "engine_50_steps" in names
    assert any(line.split(" ")[3] == "<=50" for line in lines if line.startswith("engine_50_steps "))

    document = json.loads(output.read_text(encoding="utf-8"))
    assert document["quick"] is True
    assert [result["benchmark"] for result in document["benchmarks"]] == ["engine_overhead"]
    figures = document["figures"]
    assert [figure["name"] for figure in figures] == names
    for figure in figures:
        assert set(figure) >= {"name", "value", "unit", "target", "met", "note"}
        assert figure["met"] in (True, False, None)


def test_unknown_benchmark_is_a_usage_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "no_such_benchmark"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "no_such_benchmark" in completed.stderr
