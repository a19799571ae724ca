"""OpenBaoServer runs real OpenBao processes: start, answer, persist, die cleanly, never outlive us."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import sandbox.openbao as openbao_module
from sandbox.openbao import OpenBaoServer, OpenBaoServerError
from sandbox.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def process_running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in {"Z", "X"}


def wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_running(pid):
            return True
        time.sleep(0.05)
    return False


def health(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{url}/v1/sys/health", timeout=5, **kwargs)


def wait_active(url: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while health(url).status_code != 200:
        assert time.monotonic() < deadline, "server never became active"
        time.sleep(0.02)


def fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-bao"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    path.chmod(0o755)
    return path


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken


def test_dev_server_answers_with_its_root_token_and_logs_to_its_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with OpenBaoServer.dev(tmp_path, root_token="dev-token-for-test") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        answer = health(server.url)
        assert answer.status_code == 200
        assert answer.json()["initialized"] is True
        assert answer.json()["sealed"] is False
        lookup = requests.get(
            f"{server.url}/v1/auth/token/lookup-self",
            headers={"X-Vault-Token": "dev-token-for-test"},
            timeout=5,
        )
        assert lookup.status_code == 200
    assert "OpenBao server started" in server.log_path.read_text()
    captured = capfd.readouterr()
    assert "OpenBao" not in captured.out + captured.err


def test_dev_root_token_and_our_environment_stay_off_the_child_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "our-own-token-must-not-leak")
    with OpenBaoServer.dev(tmp_path, root_token="token-off-argv") as server:
        assert server.pid is not None
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
    assert b"token-off-argv" not in cmdline
    assert b"BAO_DEV_ROOT_TOKEN_ID=token-off-argv" in environ.split(b"\0")
    assert b"our-own-token-must-not-leak" not in environ


def test_dev_server_with_tls_serves_https_signed_by_its_ca(tmp_path: Path) -> None:
    with OpenBaoServer.dev(tmp_path, tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_cert_path is not None
        assert health(server.url, verify=str(server.ca_cert_path)).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            health(server.url, verify=True)


def test_raft_server_initialises_unseals_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    server = OpenBaoServer.raft(tmp_path)
    with server:
        assert health(server.url).status_code == 501  # uninitialised
        init = requests.put(
            f"{server.url}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
        ).json()
        key, root = init["keys_base64"][0], init["root_token"]
        assert health(server.url).status_code == 503  # sealed
        assert (
            requests.put(f"{server.url}/v1/sys/unseal", json={"key": key}, timeout=5).json()["sealed"]
            is False
        )
        wait_active(server.url)
        headers = {"X-Vault-Token": root}
        mounted = requests.post(
            f"{server.url}/v1/sys/mounts/kv",
            json={"type": "kv", "options": {"version": "2"}},
            headers=headers,
            timeout=5,
        )
        assert mounted.status_code == 204
        written = requests.post(
            f"{server.url}/v1/kv/data/app", json={"data": {"k": "v"}}, headers=headers, timeout=5
        )
        assert written.status_code == 200

        url, first_pid = server.url, server.pid
        server.restart()
        assert server.url == url
        assert server.pid != first_pid
        assert first_pid is not None and not process_running(first_pid)
        assert health(server.url).status_code == 503  # sealed again after the restart

        assert (
            requests.put(f"{server.url}/v1/sys/unseal", json={"key": key}, timeout=5).json()["sealed"]
            is False
        )
        wait_active(server.url)
        read = requests.get(f"{server.url}/v1/kv/data/app", headers=headers, timeout=5)
        assert read.json()["data"]["data"] == {"k": "v"}
    assert (tmp_path / "data" / "raft").is_dir()
    config = (tmp_path / "bao.hcl").read_text()
    assert "performance_multiplier = 1" in config
    assert "disable_mlock = true" in config


def test_start_fails_fast_with_the_log_tail_when_the_process_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing = fake_binary(tmp_path, "echo 'fatal: simulated crash'\nsleep 0.3\nkill -KILL $$\n")
    monkeypatch.setattr(openbao_module, "bao_binary", lambda: crashing)
    server = OpenBaoServer.dev(tmp_path / "work")
    started = time.monotonic()
    with pytest.raises(OpenBaoServerError) as failure:
        server.start(timeout=30)
    assert time.monotonic() - started < 5
    assert "simulated crash" in str(failure.value)
    assert "killed by SIGKILL" in str(failure.value)
    assert server.pid is None


def test_start_gives_up_on_a_server_that_never_answers_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    silent = fake_binary(tmp_path, f"echo $$ > {pid_file}\necho 'waiting forever'\nexec sleep 60\n")
    monkeypatch.setattr(openbao_module, "bao_binary", lambda: silent)
    server = OpenBaoServer.dev(tmp_path / "work")
    with pytest.raises(OpenBaoServerError, match="did not answer") as failure:
        server.start(timeout=1)
    assert "waiting forever" in str(failure.value)
    assert wait_until_gone(int(pid_file.read_text()), timeout=2)


def test_start_on_a_taken_explicit_port_fails_fast_with_the_server_reason(
    tmp_path: Path, listening_socket: socket.socket
) -> None:
    taken_port = listening_socket.getsockname()[1]
    server = OpenBaoServer.raft(tmp_path, port=taken_port)
    started = time.monotonic()
    with pytest.raises(OpenBaoServerError, match="address already in use"):
        server.start()
    assert time.monotonic() - started < 10
    assert server.pid is None


def test_auto_port_retries_with_a_new_port_after_a_clash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening_socket: socket.socket
) -> None:
    taken_port = listening_socket.getsockname()[1]
    picks = iter([taken_port])
    real_pick = free_port
    monkeypatch.setattr(openbao_module, "free_port", lambda: next(picks, None) or real_pick())
    with OpenBaoServer.raft(tmp_path) as server:
        assert server.port != taken_port
        assert health(server.url).status_code == 501
    assert "address already in use" in server.log_path.read_text()


def test_a_killed_server_is_noticed_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    with OpenBaoServer.dev(tmp_path) as server:
        pid, url = server.pid, server.url
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while server.pid is not None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.restart()
        assert server.url == url
        assert health(url).status_code == 200


def test_stop_leaves_no_process_frees_the_port_and_is_idempotent(tmp_path: Path) -> None:
    server = OpenBaoServer.dev(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None and process_running(pid)
    server.stop()
    assert server.pid is None
    assert not process_running(pid)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: our health probes leave TIME_WAIT entries; only a live listener makes bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
    server.stop()
    assert server.pid is None


def test_a_server_started_from_a_short_lived_thread_survives_that_thread(tmp_path: Path) -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* exits; spawning on a dedicated thread avoids it.
    server = OpenBaoServer.dev(tmp_path)
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    try:
        time.sleep(0.3)
        assert server.pid is not None
        assert health(server.url).status_code == 200
    finally:
        server.stop()


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    launcher = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from sandbox.openbao import OpenBaoServer
        server = OpenBaoServer.dev(Path({str(tmp_path)!r}))
        server.start()
        print(server.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # die abruptly: no stop(), no atexit
        """
    )
    launched = subprocess.run(
        [sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60, check=False
    )
    assert launched.returncode == -signal.SIGKILL, launched.stderr
    bao_pid = int(launched.stdout.strip())
    assert wait_until_gone(bao_pid), f"bao process {bao_pid} outlived its parent"
