"""The `gitops-tui` command: version, help, plan, bad config, exit codes, interruption."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import CLI, clean_env, descendants, run_headless_without_a_cluster, still_running
from tui.cli import main


def test_main_leaves_process_wide_hardening_to_the_program_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The sweep zeroes every copy of a secret anywhere in the process: run in-process (tests, an embedding
    # app) it wiped the sandbox's own copy of the demo token and broke later bootstraps in that interpreter.
    from phases import memory

    with pytest.raises(SystemExit):
        main(["--version"])
    assert not memory.sweep_enabled()
    capsys.readouterr()
    program = (
        "import atexit, sys\n"
        "from phases import memory\n"
        "atexit.register(lambda: print('sweep enabled:', memory.sweep_enabled()))\n"
        "sys.argv = ['gitops-tui', '--version']\n"
        "from tui.cli import entry\n"
        "entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sweep enabled: True" in done.stdout


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.startswith("gitops-tui 0.1.0")
    with pytest.raises(SystemExit) as helped:
        main(["--help"])
    assert helped.value.code == 0
    text = capsys.readouterr().out
    assert "bootstrap" in text and "Exit codes: 0 ok, 1 a step failed, 2 bad usage" in text


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bootstrap", "--from-phase", "9"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as demo:
        main(["bootstrap", "--headless", "--demo-secrets"])
    assert demo.value.code == 2
    assert "--demo-secrets is only allowed with --sandbox" in capsys.readouterr().err


def test_invalid_config_names_file_key_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[vault]\nkv_mont = 'secret'\n")
    assert main(["bootstrap", "--plan", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: unknown key vault.kv_mont (did you mean 'kv_mount'?)" in err
    assert "Traceback" not in err


def test_plan_prints_every_step_and_command_and_does_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    config.write_text(
        f"[engine]\nstate_dir = '{state}'\n[deployments]\nurl = 'https://github.com/example/deployments'\n"
        f"[cluster]\nkubeconfig = '{tmp_path / 'none'}'\n"
    )
    assert main(["bootstrap", "--plan", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    for phase in ("Phase 1: Infrastructure", "Phase 2: Bootstrap secrets", "Phase 5: Verification"):
        assert phase in out
    assert "flux install --namespace=flux-system" in out
    assert "helm upgrade --install vault openbao/openbao" in out
    assert "PUT /v1/sys/init (shares=5, threshold=3)" in out
    assert "create ExternalSecret flux-system/flux-git-auth" in out
    assert not state.exists()  # nothing was done, not even a state file


def test_headless_run_without_a_cluster_fails_with_exit_1(tmp_path: Path) -> None:
    result = run_headless_without_a_cluster(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✘ k3s installed, node Ready: false exited with code 1" in result.stdout
    assert "run the same command again" in result.stdout
    assert "ghp_" not in result.stdout + result.stderr


def test_an_env_value_that_fails_its_pattern_exits_2(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["GITHUB_TOKEN"] = "not-a-github-token"
    config = tmp_path / "c.toml"
    config.write_text(
        f"[engine]\nstate_dir = '{tmp_path / 's'}'\n[cluster]\nkubeconfig = '{tmp_path / 'none'}'\n"
    )
    result = subprocess.run(
        [*CLI, "bootstrap", "--headless", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "$GITHUB_TOKEN does not look like a GitHub token" in result.stderr
    assert "not-a-github-token" not in result.stderr + result.stdout


def test_ctrl_c_during_a_sandbox_run_exits_130_and_leaves_no_process(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    process = subprocess.Popen(
        [
            *CLI,
            "bootstrap",
            "--headless",
            "--sandbox",
            "--demo-secrets",
            "--sandbox-dir",
            str(tmp_path / "sb"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + 120
    while "Vault installed" not in seen and time.monotonic() < deadline:
        seen += process.stdout.readline()
    children = descendants(process.pid)
    assert children, "the sandbox and its OpenBao should be running"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (seen + out)[-2000:] + err[-2000:]
    assert "bootstrap interrupted" in out
    time.sleep(0.5)
    alive = still_running(children)
    assert alive == [], f"left running: {alive}"
    state = (tmp_path / "sb" / "state" / "state.json").read_text()
    assert '"status": "interrupted"' in state


def test_a_second_gitops_tui_on_the_same_sandbox_refuses(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    cli = [
        *CLI,
        "bootstrap",
        "--headless",
        "--sandbox",
        "--demo-secrets",
        "--sandbox-dir",
        str(tmp_path / "sb"),
    ]
    first = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None
    try:
        while "Phase 1" not in first.stdout.readline():
            pass
        second = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another gitops-tui (pid {first.pid}) is using" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
