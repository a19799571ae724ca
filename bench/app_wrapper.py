"""gitops-tui as the start-up benchmark runs it for its diagnostics: ``python bench/app_wrapper.py ARGS``.

Environment switches (all optional; without them this is plain ``gitops-tui ARGS``):

* ``GITOPS_BENCH_IMPORT_LOG=PATH``: append ``<monotonic seconds> <thread> <module>`` to PATH when a package
  is first imported (an audit hook), so the benchmark can tell what was imported before the first frame;
* ``GITOPS_BENCH_NO_AFTER_PAINT=1``: skip ``GitOpsApp._after_first_paint`` (phase list, watcher, Vault poll),
  to measure what that work costs the first frame (it now waits for the footer's first frame).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _log_imports(path: str) -> None:
    log = Path(path).open("a", buffering=1, encoding="utf-8")  # noqa: SIM115  # open for the process's lifetime
    seen: set[str] = set()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "import":
            top = str(args[0]).split(".")[0]
            if top not in seen:
                seen.add(top)
                log.write(f"{time.monotonic():.6f} {threading.current_thread().name} {top}\n")

    sys.addaudithook(hook)


if __name__ == "__main__":
    if os.environ.get("GITOPS_BENCH_IMPORT_LOG"):
        _log_imports(os.environ["GITOPS_BENCH_IMPORT_LOG"])
    if os.environ.get("GITOPS_BENCH_NO_AFTER_PAINT") == "1":
        import tui.app

        tui.app.GitOpsApp._after_first_paint = lambda self: None  # type: ignore[method-assign]
    from tui.cli import main

    sys.exit(main(sys.argv[1:]))
