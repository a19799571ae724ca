"""Start-up: exec -> first full frame of gitops-tui vs a minimal Textual app, under a pty (<= 1.25x).

Each program is started with ``pty.fork`` on a 120x40 pseudo-terminal (TERM=xterm-256color, an empty HOME),
and its output is read until the footer's ``Quit`` appears: the footer is laid out last, so that is the first
full frame. The clock starts just before the fork. Runs alternate (app, yardstick, app, ...) and the
medians are compared:

* ``gitops-tui --config C``, C pointing at a kubeconfig that does not exist: the UI with no cluster and no
  sandbox (what every start costs);
* ``gitops-tui --sandbox --sandbox-dir D``: the issue's case; the sandbox (an emulated cluster, OpenBao, a
  Git server in a child process) is prepared once and then restarted for each run, as a user's second start;
* ``python bench/minimal_app.py``: one line of text and a footer.

Then, cheaply, what gitops-tui imports before its first frame (one more run with ``-X importtime``, its
stderr in a file read when the frame appears), and the import times of textual, kubernetes and hvac alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from bench.core import (
    REPO_ROOT,
    VENV_BIN,
    BenchContext,
    Figure,
    isolated_env,
    median,
    write_unreachable_config,
)

COLUMNS: Final = 120
ROWS: Final = 40
MARKER: Final = b"Quit"
_ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P^_][^\x1b]*\x1b\\|\x1b[@-Z\\-_]"
)
HEAVY: Final = ("kubernetes", "hvac", "urllib3", "requests", "yaml", "sh", "aiohttp", "kmock")


class StartupFailed(RuntimeError):
    pass


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def first_frame(argv: Sequence[str], env: dict[str, str], *, timeout: float = 60.0) -> tuple[float, float]:
    """(ms from fork to the first frame showing MARKER, the monotonic time it was seen)."""
    start = time.perf_counter()
    pid, master = pty.fork()
    if pid == 0:  # the child: size the terminal, then become the program
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
            os.chdir(env.get("HOME", "/"))
            os.execve(argv[0], list(argv), env)  # noqa: S606  # our own argv, no shell
        finally:
            os._exit(127)
    seen = b""
    elapsed: float | None = None
    seen_at = 0.0
    deadline = time.monotonic() + timeout
    try:
        while elapsed is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartupFailed(f"no frame with {MARKER!r} within {timeout:g} s: {_plain(seen)[-400:]!r}")
            ready, _, _ = select.select([master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise StartupFailed(f"{argv[0]} exited before its first frame: {_plain(seen)[-400:]!r}")
            seen += chunk
            if MARKER in _plain(seen[-16384:]):
                elapsed = (time.perf_counter() - start) * 1000
                seen_at = time.monotonic()
    finally:
        _stop(pid, master)
    return elapsed, seen_at


def _plain(data: bytes) -> bytes:
    return _ESCAPES.sub(b"", data)


def _stop(pid: int, master: int) -> None:
    """Quit the program as a user would (ctrl+q), then make sure it and its children are gone."""
    children = _children(pid)
    with contextlib.suppress(OSError):
        os.write(master, b"\x11")
    deadline = time.monotonic() + 15
    exited = False
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                os.read(master, 65536)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            exited = True
            break
    if not exited:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    for child in children:  # e.g. the sandbox, in its own session
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
    os.close(master)


def heavy_imports_before(log: Path, seen_at: float) -> dict[str, str]:
    """Heavy packages whose first import began before the frame was seen -> the thread that imported it
    (from bench/app_wrapper.py's log)."""
    found: dict[str, str] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        stamp, thread, package = line.split(" ", 2)
        if package in HEAVY and float(stamp) < seen_at:
            found.setdefault(package, thread.split("_")[0].split("-")[0])
    return found


def import_time_ms(statement: str, modules: Sequence[str] | None = None) -> float:
    """Top-level cumulative import time of ``statement`` in a fresh interpreter (only ``modules``, if given),
    from ``-X importtime``, median of 3."""
    times = []
    for _ in range(3):
        completed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
        )
        total = 0
        for line in completed.stderr.splitlines():
            parts = line.split("|")
            if len(parts) != 3 or parts[2].startswith("  ") or not parts[1].strip().isdigit():
                continue
            if modules is None or parts[2].strip() in modules:
                total += int(parts[1])
        times.append(total / 1000)
    return median(times)


def _with_retry(measure: Callable[[], float], ctx: BenchContext, sandbox_dir: Path) -> float:
    """One retry: the sandbox's start sometimes fails (noted with its log's tail, as a finding)."""
    try:
        return measure()
    except StartupFailed as error:
        log = sandbox_dir / "sandbox.log"
        tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
        ctx.notes.append(f"--sandbox start failed once, retried: {error}; sandbox.log: {' | '.join(tail)}")
        return measure()


def run(ctx: BenchContext) -> list[Figure]:
    rounds = 3 if ctx.quick else 10
    sandbox_rounds = 2 if ctx.quick else 5
    env = isolated_env(ctx.workdir / "home", TERM="xterm-256color", COLORTERM="truecolor", LANG="C.UTF-8")
    env.pop("TEXTUAL_DRIVER", None)
    # An installed app has its bytecode compiled. This environment may set PYTHONDONTWRITEBYTECODE, and the
    # project is an editable install: without a cache every start would compile ~40 modules. The children
    # get a bytecode cache in the scratch directory (nothing is written into the repository).
    uncached = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(ctx.workdir / "pycache")
    config = write_unreachable_config(ctx.workdir / "config")
    python = str(VENV_BIN / "python")
    app = [str(VENV_BIN / "gitops-tui"), "--config", str(config)]
    minimal = [python, str(REPO_ROOT / "bench" / "minimal_app.py")]

    first_frame(app, env)  # warm the page cache and the bytecode caches of both
    first_frame(minimal, env)
    # The app without its after-first-paint work (watcher and Vault poll threads) runs alongside: what that
    # work costs the first frame (see bench/app_wrapper.py).
    wrapper = [python, str(REPO_ROOT / "bench" / "app_wrapper.py"), "--config", str(config)]
    quiet_env = {**env, "GITOPS_BENCH_NO_AFTER_PAINT": "1"}
    first_frame(wrapper, quiet_env)
    app_times: list[float] = []
    minimal_times: list[float] = []
    quiet_times: list[float] = []
    for _ in range(rounds):
        app_times.append(first_frame(app, env)[0])
        minimal_times.append(first_frame(minimal, env)[0])
        quiet_times.append(first_frame(wrapper, quiet_env)[0])
    app_ms, minimal_ms = median(app_times), median(minimal_times)
    uncached_app: list[float] = []
    uncached_minimal: list[float] = []
    for _ in range(max(2, rounds // 3)):
        uncached_app.append(first_frame(app, uncached)[0])
        uncached_minimal.append(first_frame(minimal, uncached)[0])
    figures = [
        Figure(
            "startup_minimal",
            minimal_ms,
            "ms",
            "-",
            f"minimal Textual app, exec -> footer drawn, median of {rounds}",
        ),
        Figure("startup_app", app_ms, "ms", "-", "gitops-tui, kubeconfig absent (no cluster, no sandbox)"),
        Figure(
            "startup_ratio",
            app_ms / minimal_ms,
            "x",
            "<=1.25",
            "gitops-tui / minimal app, same pty, alternating",
        ),
        Figure(
            "startup_ratio_no_bytecode_cache",
            median(uncached_app) / median(uncached_minimal),
            "x",
            "-",
            f"both with PYTHONDONTWRITEBYTECODE=1 (every module compiled at start): app "
            f"{median(uncached_app):.0f} ms, minimal {median(uncached_minimal):.0f} ms",
        ),
    ]

    # What the app imports before its frame (union over a few runs: it is a race with the frame).
    log = ctx.workdir / "imports.log"
    heavy: dict[str, str] = {}
    for _ in range(2 if ctx.quick else 3):
        log.unlink(missing_ok=True)
        _, seen_at = first_frame(wrapper, {**env, "GITOPS_BENCH_IMPORT_LOG": str(log)})
        heavy = {**heavy_imports_before(log, seen_at), **heavy}
    quiet_ms = median(quiet_times)
    minimal_imports = "import textual.app, textual.widgets"
    app_imports = "import tui.cli, tui.app"  # what gitops-tui imports before its first frame
    figures += [
        Figure(
            "startup_app_no_after_paint_work",
            quiet_ms,
            "ms",
            "-",
            "gitops-tui with GitOpsApp._after_first_paint skipped (no watcher, no Vault poll threads), "
            "alternating with the two above",
        ),
        Figure(
            "startup_heavy_imports_before_frame",
            float(len(heavy)),
            "count",
            "<=0",
            f"first imports of {', '.join(HEAVY)} begun before the first frame was on the terminal: "
            f"{', '.join(f'{name} (thread {thread})' for name, thread in sorted(heavy.items())) or 'none'}",
        ),
        Figure(
            "import_app_before_frame",
            import_time_ms(app_imports),
            "ms",
            "-",
            f"`{app_imports}`, fresh interpreter",
        ),
        Figure("import_minimal_app", import_time_ms(minimal_imports), "ms", "-", f"`{minimal_imports}`"),
        Figure("import_textual_app", import_time_ms("import textual.app"), "ms", "-", "fresh interpreter"),
        Figure("import_kubernetes", import_time_ms("import kubernetes"), "ms", "-", "fresh interpreter"),
        Figure("import_hvac", import_time_ms("import hvac"), "ms", "-", "fresh interpreter"),
        Figure("import_urllib3", import_time_ms("import urllib3"), "ms", "-", "fresh interpreter"),
    ]

    sandbox_dir = ctx.workdir / "sandbox"
    sandbox = [str(VENV_BIN / "gitops-tui"), "--sandbox", "--sandbox-dir", str(sandbox_dir)]
    try:
        cold = _with_retry(lambda: first_frame(sandbox, env, timeout=180)[0], ctx, sandbox_dir)  # creates it
        sandbox_times: list[float] = []
        yardstick: list[float] = []
        for _ in range(sandbox_rounds):
            sandbox_times.append(
                _with_retry(lambda: first_frame(sandbox, env, timeout=180)[0], ctx, sandbox_dir)
            )
            yardstick.append(first_frame(minimal, env)[0])
    except StartupFailed as error:
        ctx.notes.append(f"--sandbox start-up not measured: {error}")
        return figures
    sandbox_ms = median(sandbox_times)
    figures += [
        Figure(
            "startup_sandbox",
            sandbox_ms,
            "ms",
            "-",
            f"gitops-tui --sandbox, sandbox restarted, median of {sandbox_rounds}",
        ),
        Figure("startup_sandbox_first", cold, "ms", "-", "gitops-tui --sandbox creating its sandbox"),
        Figure(
            "startup_sandbox_ratio",
            sandbox_ms / median(yardstick),
            "x",
            "<=1.25",
            "gitops-tui --sandbox / minimal app",
        ),
    ]
    return figures
