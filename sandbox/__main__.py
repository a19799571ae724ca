"""Run a sandbox world as its own process.

``python -m sandbox serve --dir DIR [--api-port N]`` starts the world, prints exactly one line
``READY {json}`` (the :class:`~sandbox.world.SandboxInfo`) on stdout, and runs until SIGTERM,
SIGINT or SIGHUP, or until its parent process dies; then it stops everything (OpenBao
included) and exits 0. Logs go to ``DIR/sandbox.log``; stdout carries nothing else.

The parent-death signal (``PR_SET_PDEATHSIG``) is delivered when the parent *thread* that
spawned us exits: spawn this process from a thread that lives as long as the parent does
(e.g. the main thread or the asyncio loop's thread, not a short-lived worker).

``python -m sandbox env --dir DIR`` prints the sandbox's ``sandbox.env`` (for ``eval``/``.``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

_PR_SET_PDEATHSIG: Final = 1
PARENT_POLL_INTERVAL: Final = 1.0


def _ask_for_signal_on_parent_death() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _set_up_logging(directory: Path) -> None:
    handler = logging.FileHandler(directory / "sandbox.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # One line per API request would bury everything else (the kubelet and controllers poll).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _redirect_to_log(directory: Path, fd: int) -> None:
    """Point ``fd`` at the log: stray prints, thread tracebacks and child processes end up there."""
    log_fd = os.open(directory / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, fd)
    os.close(log_fd)


def _claim_stdout(directory: Path) -> int:
    """Send fd 1 to the log and return a private copy of the real stdout, for the READY line."""
    sys.stdout.flush()
    ready_fd = os.dup(1)
    _redirect_to_log(directory, 1)
    return ready_fd


def serve(directory: Path, api_port: int) -> int:
    parent = os.getppid()
    _ask_for_signal_on_parent_death()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 0
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _set_up_logging(directory)
    ready_fd = _claim_stdout(directory)
    log = logging.getLogger("sandbox")
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)

    from sandbox.world import SandboxWorld  # after the signal handlers: a SIGTERM during start is kept

    world = SandboxWorld(directory, api_port=api_port)
    try:
        info = world.start()
    except Exception as error:
        log.exception("the sandbox did not start")
        print(
            f"sandbox: could not start: {error} (see {directory / 'sandbox.log'})",
            file=sys.stderr,
            flush=True,
        )
        return 1
    try:
        os.write(ready_fd, f"READY {json.dumps(info.to_json())}\n".encode())
        os.close(ready_fd)
        # From now on nobody may read our stderr: a full pipe must never block a thread that logs.
        sys.stderr.flush()
        _redirect_to_log(directory, 2)
        while not stop.wait(PARENT_POLL_INTERVAL):
            if os.getppid() != parent:  # fallback when no parent-death signal came
                log.info("the parent process %d is gone: stopping", parent)
                break
    finally:
        world.stop()
        log.info("sandbox stopped")
    return 0


def print_env(directory: Path) -> int:
    env_file = directory.resolve() / "sandbox.env"
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        print(
            f"sandbox: no sandbox in {directory} "
            f"(start one with `python -m sandbox serve --dir {directory}`)",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="The gitops-tui sandbox platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run a sandbox until signalled")
    serve_parser.add_argument(
        "--dir", required=True, type=Path, help="the sandbox's folder (kept across runs)"
    )
    serve_parser.add_argument(
        "--api-port", type=int, default=0, help="port of the Kubernetes API (default: any)"
    )
    env_parser = commands.add_parser("env", help="print the sandbox's shell environment")
    env_parser.add_argument("--dir", required=True, type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "serve":
        return serve(arguments.dir.resolve(), arguments.api_port)
    return print_env(arguments.dir)


if __name__ == "__main__":
    sys.exit(main())
