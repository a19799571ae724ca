"""Running the `gitops-tui` program in a child process, and its descendants read from /proc (to prove an
interrupted gitops-tui leaves none behind)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "tui.cli"]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "CLOUDFLARE_", "MYAPP_", "GITOPS_"))
    }
    env.update(
        {
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "NO_COLOR": "1",
        }
    )
    return env


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def still_running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and not zombie(pid)]


def run_headless_without_a_cluster(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`gitops-tui bootstrap --headless` with well-formed secrets in its environment and a k3s installer that
    fails at once: a run that ends in phase 1 (exit 1) without any cluster."""
    config = tmp_path / "c.toml"
    config.write_text(
        f"[engine]\nstate_dir = '{tmp_path / 'state'}'\nwait_timeout = 1\n"
        f"[cluster]\nkubeconfig = '{tmp_path / 'none'}'\n"
        "[k3s]\ninstall_command = ['false']\n"
    )
    env = clean_env(tmp_path)
    env.update({s: "x" * 40 for s in ("MYAPP_DB_PASSWORD", "MYAPP_API_KEY")})
    env.update({"GITHUB_TOKEN": "ghp_" + "a" * 36, "CLOUDFLARE_API_TOKEN": "c" * 40})
    return subprocess.run(
        [*CLI, "bootstrap", "--headless", "--config", str(config), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
