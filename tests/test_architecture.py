"""The layering stays visible: phases/ is UI-free, widgets/ never call a client."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import phases

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_phases_module_never_loads_textual() -> None:
    modules = [f"phases.{m.name}" for m in pkgutil.iter_modules(phases.__path__)]
    assert "phases.engine" in modules and "phases.bootstrap" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui', 'widgets'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""


def test_import_linter_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout
