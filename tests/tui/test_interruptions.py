"""An interrupted bootstrap, in every phase, by each of the signals an admin's session can send.

One sandbox, one bootstrap interrupted again and again: SIGTERM in phase 1, SIGHUP (the SSH session
dropped) in phase 2, SIGINT (Ctrl+C) in phase 3, SIGTERM in phase 4, SIGHUP in phase 5. Each time the
program exits 130, leaves no child process (the sandbox, OpenBao, helm/flux shims), and leaves a state
file that parses and says "interrupted"; the next run resumes, and the last one finishes the bootstrap.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.support.processes import CLI, clean_env, descendants, still_running

INTERRUPTIONS = [
    (1, signal.SIGTERM),
    (2, signal.SIGHUP),
    (3, signal.SIGINT),
    (4, signal.SIGTERM),
    (5, signal.SIGHUP),
]


def _run_until(
    command: list[str], env: dict[str, str], marker: str, signum: int
) -> tuple[int, str, list[int]]:
    """Start gitops-tui, send ``signum`` once ``marker`` is printed; (exit code, output, its descendants)."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a signal to the test's group must not reach it
    )
    assert process.stdout is not None
    timer = threading.Timer(180, process.kill)  # a hung run fails the test instead of hanging it
    timer.start()
    seen: list[str] = []
    children: list[int] = []
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                children = descendants(process.pid)
                process.send_signal(signum)
                break
        seen.append(process.stdout.read())
        process.wait()
    finally:
        timer.cancel()
    return process.returncode, "".join(seen), children


def test_a_run_interrupted_in_each_phase_by_term_hup_or_int_resumes_and_finishes(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    sandbox = tmp_path / "sb"
    command = [*CLI, "bootstrap", "--headless", "--sandbox", "--demo-secrets", "--sandbox-dir", str(sandbox)]
    state_file = sandbox / "state" / "state.json"
    for phase, signum in INTERRUPTIONS:
        # The first step of the phase has started (its "•" line follows the phase heading at once).
        code, output, children = _run_until(command, env, f"▶ Phase {phase}:", signum)
        assert code == 130, f"phase {phase}, {signal.Signals(signum).name}:\n{output[-3000:]}"
        assert "bootstrap interrupted" in output, output[-2000:]
        assert children, "the sandbox should have been running"
        time.sleep(0.5)
        assert still_running(children) == [], f"left running after {signal.Signals(signum).name}"
        state = json.loads(state_file.read_text())
        assert state["status"] == "interrupted"
        earlier = {
            key: step["status"] for key, step in state["steps"].items() if int(key.split("/")[0]) < phase
        }
        assert all(status in ("done", "skipped") for status in earlier.values()), earlier
        assert phase == 1 or earlier, "the phases before the interrupted one are recorded as done"
        assert state_file.stat().st_mode & 0o077 == 0
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-2000:]
    assert "already done" in finished.stdout
    assert json.loads(state_file.read_text())["status"] == "succeeded"
