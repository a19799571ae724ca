"""All five phases, headless, against the sandbox: real OpenBao, real Git remote, emulated Kubernetes API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

from phases.config import Config
from phases.events import Event, RunFinished, StepFailed, StepSkipped, StepSucceeded
from phases.kube import (
    CLUSTER_SECRET_STORES,
    EXTERNAL_SECRETS,
    GIT_REPOSITORIES,
    HELM_RELEASES,
    KUSTOMIZATIONS,
    SECRETS,
    KubeClient,
)
from phases.platform import Platform
from sandbox.world import SandboxWorld
from tests.support import crds
from tests.support.bootstrap import DEMO_VALUES, run_bootstrap, sandbox_config

APP_AGENT = "gitops-tui/"


@dataclass
class Bench:
    world: SandboxWorld
    config: Config
    command_env: dict[str, str]

    async def run(self, secrets: dict[str, bytes] | None = None, *, from_phase: int = 1) -> list[Event]:
        return await run_bootstrap(self.config, self.command_env, secrets, from_phase=from_phase)

    def app_mutations(self) -> list[str]:
        return [
            f"{r.method} {r.path}"
            for r in self.world.emulator.requests()
            if r.is_mutating and r.user_agent.startswith(APP_AGENT)
        ]


@pytest.fixture
def bench(sandbox_world: SandboxWorld) -> Iterator[Bench]:
    config, env = sandbox_config(sandbox_world)
    yield Bench(sandbox_world, config, env)


def finished(events: list[Event]) -> RunFinished:
    last = events[-1]
    assert isinstance(last, RunFinished)
    return last


def outcome(events: list[Event]) -> dict[str, str]:
    result: dict[str, str] = {}
    for event in events:
        if isinstance(event, StepSucceeded):
            result[event.key] = "done"
        elif isinstance(event, StepSkipped):
            result[event.key] = "skipped"
        elif isinstance(event, StepFailed):
            result[event.key] = "failed"
    return result


def decoded(secret: dict[str, object], key: str) -> bytes:
    data = secret.get("data")
    assert isinstance(data, dict)
    return base64.b64decode(str(data[key]))


async def test_five_phases_then_a_second_run_changes_nothing(bench: Bench) -> None:
    events = await bench.run(DEMO_VALUES)
    result = finished(events)
    assert result.status == "succeeded", (result.failed_step, result.reason)
    steps = outcome(events)
    assert all(state in ("done", "skipped") for state in steps.values()), steps
    assert steps["2/write-secrets"] == "done" and steps["3/switch-secret-ref"] == "done"

    config, kube = bench.config, KubeClient(bench.config.cluster.resolved_kubeconfig(), user_agent="test/1")
    # Vault holds every declared secret, at the declared path and key.
    platform = Platform(config)
    assert platform.vault().status().label == "unsealed"
    with platform.root_token().exposed() as token:
        reader = hvac.Client(
            url=platform.vault().address, token=bytes(token).decode()
        )  # a test may read back
    for secret in config.secrets.declared:
        stored = reader.secrets.kv.v2.read_secret_version(
            path=secret.vault_path, mount_point=config.vault.kv_mount, raise_on_deleted_version=True
        )["data"]["data"]
        assert stored[secret.vault_key].encode() == DEMO_VALUES[secret.name]
    platform.close()

    # The cluster: store Ready, Flux on the ExternalSecret, bootstrap secret gone, app secrets synced.
    store = kube.get(CLUSTER_SECRET_STORES, "vault-backend")
    assert store is not None
    repo = kube.get(GIT_REPOSITORIES, "flux-system", "flux-system")
    assert repo is not None and repo["spec"]["secretRef"]["name"] == "flux-git-auth"
    assert kube.get(EXTERNAL_SECRETS, "flux-git-auth", "flux-system") is not None
    git_auth = kube.get(SECRETS, "flux-git-auth", "flux-system")
    assert git_auth is not None and decoded(git_auth, "password") == DEMO_VALUES["github_token"]
    assert decoded(git_auth, "username") == b"git"
    assert kube.get(SECRETS, "flux-system", "flux-system") is None
    myapp = kube.get(SECRETS, "myapp-secrets", "myapp")
    assert myapp is not None and decoded(myapp, "database-password") == DEMO_VALUES["myapp_db_password"]
    cloudflared = kube.get(SECRETS, "cloudflared-credentials", "cloudflared")
    assert cloudflared is not None and decoded(cloudflared, "token") == DEMO_VALUES["cloudflare_api_token"]

    # Every Flux/ESO object, as a real API server would see it, validates against the real CRDs.
    checked = 0
    for resource in (
        GIT_REPOSITORIES,
        KUSTOMIZATIONS,
        HELM_RELEASES,
        EXTERNAL_SECRETS,
        CLUSTER_SECRET_STORES,
    ):
        for obj in kube.list(resource):
            crds.validate(obj)
            checked += 1
    assert checked >= 8

    # The state and summary files hold no secret value, in plain or base64 form.
    state_dir = config.engine.resolved_state_dir()
    written = (state_dir / "state.json").read_bytes() + (state_dir / "summary.json").read_bytes()
    for value in DEMO_VALUES.values():
        assert value not in written and base64.b64encode(value) not in written
    summary = json.loads((state_dir / "summary.json").read_text())
    assert summary["vault"]["status"] == "unsealed" and summary["external_secrets_unsynced"] == []

    # A second run: every step is checked and skipped, and the app makes no mutating API call.
    bench.world.emulator.clear_requests()
    again = await bench.run()
    assert finished(again).status == "succeeded", finished(again).reason
    second = outcome(again)
    assert {key for key, state in second.items() if state != "skipped"} == {"5/summary"}
    assert bench.app_mutations() == []


async def test_a_failure_in_phase_3_is_resumed_from_phase_3(bench: Bench) -> None:
    fault = bench.world.emulator.emulator.inject_fault(
        status=500, times=1000, method="PATCH", path_contains="/gitrepositories/flux-system",
        user_agent_contains=APP_AGENT,
    )  # fmt: skip
    events = await bench.run(DEMO_VALUES)
    result = finished(events)
    assert (result.status, result.failed_step) == ("failed", "3/switch-secret-ref")
    assert result.exit_code == 1
    assert outcome(events)["2/write-secrets"] == "done"
    state = json.loads((bench.config.engine.resolved_state_dir() / "state.json").read_text())
    assert state["steps"]["3/switch-secret-ref"]["status"] == "failed"
    assert (
        "500" in state["steps"]["3/switch-secret-ref"]["error"]
        or "Internal" in state["steps"]["3/switch-secret-ref"]["error"]
    )
    del fault
    bench.world.emulator.emulator.clear_faults()

    # No secrets this time: phase 2 is done, so none are needed.
    resumed = await bench.run()
    assert finished(resumed).status == "succeeded", finished(resumed).reason
    steps = outcome(resumed)
    assert all(steps[key] == "skipped" for key in steps if key.startswith(("1/", "2/")))
    assert steps["3/switch-secret-ref"] == "done"


def test_headless_cli_against_the_sandbox(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    sandbox_dir = tmp_path / "sandbox"
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "CLOUDFLARE_API_TOKEN")}
    env.update({"XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"})
    cli = [
        sys.executable,
        "-m",
        "tui.cli",
        "bootstrap",
        "--headless",
        "--sandbox",
        "--sandbox-dir",
        str(sandbox_dir),
    ]

    missing = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2, missing.stderr
    assert "GITHUB_TOKEN" in missing.stderr and "CLOUDFLARE_API_TOKEN" in missing.stderr

    first = subprocess.run([*cli, "--demo-secrets"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "▶ Phase 5: Verification" in first.stdout and "✔ bootstrap finished" in first.stdout

    second = subprocess.run([*cli, "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    # The sandbox restarted between the runs, as a host reboots: Vault comes back sealed and is
    # unsealed again; everything else is checked and skipped, and no secret is needed.
    assert "↷ Secrets written to secret/ (writer: vault): already done" in second.stdout
    assert "✔ Vault unsealed" in second.stdout
    assert second.stdout.count("already done") >= 14 and "✘" not in second.stdout

    argv_log = (sandbox_dir / "argv.log").read_text()
    assert "flux" in argv_log and "helm" in argv_log and "k3s" in argv_log
