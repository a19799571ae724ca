"""The real program in a real terminal (tmux), as over SSH: keys and a dropped session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import clean_env, descendants, still_running, zombie

TMUX = shutil.which("tmux")


class Terminal:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env

    def tmux(self, *args: str) -> str:
        result = subprocess.run(["tmux", *args], capture_output=True, text=True, env=self.env, timeout=30)
        return result.stdout

    def start(self, argv: list[str], width: int = 80, height: int = 24) -> int:
        command = " ".join(f"'{part}'" for part in argv)
        self.tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), command)
        # Keep the pane after the program exits, so a failure shows its last screen.
        self.tmux("set-option", "-t", self.name, "remain-on-exit", "on")
        return int(self.tmux("list-panes", "-t", self.name, "-F", "#{pane_pid}").split()[0])

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait(self, condition: Callable[[str], bool], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out; screen:\n{self.screen()}")

    def close(self) -> None:
        self.tmux("kill-session", "-t", self.name)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    assert TMUX, "tmux is part of the machine image and of the dev setup"
    env = clean_env(tmp_path)
    env["TMUX_TMPDIR"] = str(tmp_path)
    env["TERM"] = "xterm-256color"
    term = Terminal(f"gt{os.getpid()}", env)
    yield term
    term.close()


def test_dropped_ssh_session_stops_the_run_cleanly(terminal: Terminal, tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    pid = terminal.start(
        [
            sys.executable,
            "-m",
            "tui.cli",
            "bootstrap",
            "--sandbox",
            "--demo-secrets",
            "--sandbox-dir",
            str(sandbox),
        ]
    )
    terminal.wait(lambda text: "Run the bootstrap" in text, timeout=120)
    terminal.keys("y")
    state_file = sandbox / "state" / "state.json"

    def flux_done() -> bool:
        try:
            steps = json.loads(state_file.read_text())["steps"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(steps.get("1/flux", {}).get("status") == "done")

    deadline = time.monotonic() + 60
    while not flux_done() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert flux_done(), terminal.screen()
    children = descendants(pid)
    assert children, "the sandbox (and its OpenBao) run as children"
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and not zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or zombie(pid)
    time.sleep(0.5)
    assert still_running(children) == []
    state = json.loads(state_file.read_text())
    assert state["status"] in ("interrupted", "succeeded")  # never left "running"
