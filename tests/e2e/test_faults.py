"""Faults against the sandbox, each followed by a re-run that succeeds.

Vault faults (a real OpenBao run by the sandbox's kubelet): unreachable at the start of phase 2, killed
between two secret writes, sealed again after phase 1, a token without permission. Each gives a clear
line in the headless output, leaves the state saved, wipes the secrets, and the next run completes.

Kubernetes API faults at the headless level (``tui.cli.main``): connection refused, a timeout, 401, 403,
404, 409 and 500 answers (the emulator's fault injection), and a CRD missing because a component is
not installed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from phases.bootstrap import build_engine
from phases.config import Config, merge_documents
from phases.engine import StepContext
from phases.events import Event, RunFinished
from phases.kube import CRDS, SECRETS, STATEFUL_SETS, KubeClient
from phases.platform import ROOT_TOKEN_KEY
from sandbox.settings import config_overrides, sandbox_path_env
from sandbox.world import SandboxWorld
from tests.support.bootstrap import DEMO_VALUES, bootstrapped_sync, sandbox_config, secret_store
from tui.cli import main
from tui.headless import HeadlessPrinter

APP_AGENT = "gitops-tui/"
Hook = Callable[[], None]


# -- helpers ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    events: list[Event]
    output: str  # what the headless printer showed

    @property
    def finished(self) -> RunFinished:
        last = self.events[-1]
        assert isinstance(last, RunFinished)
        return last

    def steps(self, kind: type[Event]) -> list[str]:
        return [event.key for event in self.events if isinstance(event, kind)]  # type: ignore[attr-defined]


async def run_headless(
    config: Config,
    env: dict[str, str],
    values: dict[str, bytes] | None = None,
    *,
    before_check: dict[str, Hook] | None = None,
) -> Run:
    """One bootstrap, printed as the headless mode prints it; ``before_check`` runs a hook (in a thread)
    just before the named step's idempotence check, i.e. at that point of the run."""
    store = secret_store(values or {})
    engine = build_engine(config, secrets=store, command_env=env)
    if before_check:
        engine.phases = tuple(_hooked(phase, before_check) for phase in engine.phases)
    out = io.StringIO()
    printer = HeadlessPrinter(out, colour=False)
    printer.config_warnings(config)
    events = []
    async for event in engine.run():
        printer.handle(event)
        events.append(event)
    assert store.held() == [], "every secret is wiped at the end of a run, failed or not"
    return Run(events, out.getvalue())


def _hooked(phase: Any, hooks: dict[str, Hook]) -> Any:
    steps = []
    for step in phase.steps:
        hook = hooks.get(f"{phase.number}/{step.id}")
        if hook is not None:

            async def check(ctx: StepContext, _hook: Hook = hook, _check: Any = step.check) -> bool:
                await ctx.to_thread(_hook)
                result: bool = await _check(ctx)
                return result

            step = dataclasses.replace(step, check=check)
        steps.append(step)
    return dataclasses.replace(phase, steps=tuple(steps))


def saved_step(config: Config, key: str) -> dict[str, Any]:
    state = json.loads((config.engine.resolved_state_dir() / "state.json").read_text())
    record: dict[str, Any] = state["steps"][key]
    return record


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    host, _, port = url.removeprefix("http://").partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class VaultBench:
    """A sandbox world plus the handles a test needs to break its Vault."""

    def __init__(self, world: SandboxWorld) -> None:
        self.world = world
        self.config, self.env = sandbox_config(world)
        self.kube = KubeClient(self.config.cluster.resolved_kubeconfig(), user_agent="test/1")

    def root_token(self) -> str:
        secret = self.kube.get(SECRETS, self.config.vault.init_secret, self.config.vault.namespace)
        assert secret is not None
        return base64.b64decode(secret["data"][ROOT_TOKEN_KEY]).decode()  # a test may hold it as text

    def set_root_token(self, token: str) -> None:
        data = {ROOT_TOKEN_KEY: base64.b64encode(token.encode()).decode()}
        self.kube.merge_patch(SECRETS, self.config.vault.init_secret, {"data": data}, "vault")

    def vault(self, token: str | None = None) -> hvac.Client:
        url = self.world.vault_url
        assert url is not None, "OpenBao is not running"
        return hvac.Client(url=url, token=token or self.root_token())

    def scale_vault(self, replicas: int) -> None:
        self.kube.merge_patch(STATEFUL_SETS, "vault", {"spec": {"replicas": replicas}}, "vault")
        self.world.kubelet.wake()
        if replicas:
            wait_until(lambda: self.world.vault_url, "OpenBao to run again")
        else:
            wait_until(lambda: self.world.kubelet.vault_pid is None, "OpenBao to stop")

    def wait_for_restart(self, old_pid: int) -> None:
        wait_until(lambda: self.world.kubelet.vault_pid not in (None, old_pid), "OpenBao to restart")
        url = self.world.kubelet.vault_url
        assert url is not None
        wait_until(lambda: answers(url), "OpenBao to answer")


@pytest.fixture
def vault_bench(sandbox_world: SandboxWorld) -> Iterator[VaultBench]:
    yield VaultBench(sandbox_world)


# -- Vault -----------------------------------------------------------------------------------------------


async def test_vault_unreachable_at_the_start_of_phase_2(vault_bench: VaultBench) -> None:
    bench = vault_bench
    run = await run_headless(
        bench.config, bench.env, DEMO_VALUES, before_check={"2/write-secrets": lambda: bench.scale_vault(0)}
    )
    assert (run.finished.status, run.finished.failed_step) == ("failed", "2/write-secrets")
    line = next(line for line in run.output.splitlines() if line.startswith("  ✘ Secrets written"))
    assert "cannot reach Vault at http://127.0.0.1:" in line and "connection refused" in line, line
    assert "run the same command again" in run.output
    record = saved_step(bench.config, "2/write-secrets")
    assert record["status"] == "failed" and "cannot reach Vault" in record["error"]

    await asyncio.to_thread(bench.scale_vault, 1)  # Vault is back, sealed, as after a pod restart
    again = await run_headless(bench.config, bench.env, DEMO_VALUES)
    assert again.finished.status == "succeeded", again.output[-3000:]
    assert "✔ Vault unsealed" in again.output and "✔ Secrets written to secret/" in again.output


async def test_vault_killed_between_two_secret_writes(vault_bench: VaultBench) -> None:
    bench = vault_bench
    killed: list[int] = []

    class KillAfterFirstWrite(logging.Handler):
        """Runs in the writing thread right after a path is written: the next write meets a dead Vault."""

        def emit(self, record: logging.LogRecord) -> None:
            pid = bench.world.kubelet.vault_pid
            if not killed and record.getMessage().startswith("wrote keys") and pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    handler = KillAfterFirstWrite(logging.INFO)
    vault_log = logging.getLogger("phases.vault")
    level = vault_log.level
    vault_log.setLevel(logging.INFO)
    vault_log.addHandler(handler)
    try:
        run = await run_headless(bench.config, bench.env, DEMO_VALUES)
    finally:
        vault_log.removeHandler(handler)
        vault_log.setLevel(level)
    assert killed, "the hook never ran"
    assert (run.finished.status, run.finished.failed_step) == ("failed", "2/write-secrets"), run.output
    assert "wrote secret/github keys token" in run.output  # the first path made it
    line = next(line for line in run.output.splitlines() if line.startswith("  ✘ Secrets written"))
    assert "cannot reach Vault at http://127.0.0.1:" in line, line
    assert saved_step(bench.config, "2/write-secrets")["status"] == "failed"

    # Run again at once, while the kubelet restarts OpenBao: phase 1 waits for Vault to answer (sealed),
    # unseals it, and phase 2 writes only what is missing.
    again = await run_headless(bench.config, bench.env, DEMO_VALUES)
    assert again.finished.status == "succeeded", again.output[-3000:]
    assert "✔ Vault unsealed" in again.output
    assert "not in Vault yet: secret/cloudflare (api_token); secret/myapp" in again.output


async def test_vault_sealed_again_after_phase_1(vault_bench: VaultBench) -> None:
    bench = vault_bench

    def seal() -> None:
        bench.vault().sys.seal()

    run = await run_headless(bench.config, bench.env, DEMO_VALUES, before_check={"2/write-secrets": seal})
    assert (run.finished.status, run.finished.failed_step) == ("failed", "2/write-secrets")
    line = next(line for line in run.output.splitlines() if line.startswith("  ✘ Secrets written"))
    assert "is sealed" in line, line
    assert saved_step(bench.config, "2/write-secrets")["status"] == "failed"

    again = await run_headless(bench.config, bench.env, DEMO_VALUES)
    assert again.finished.status == "succeeded", again.output[-3000:]
    assert "✔ Vault unsealed" in again.output


async def test_a_vault_token_without_permission(vault_bench: VaultBench) -> None:
    bench = vault_bench
    root: list[str] = []

    def weaken_the_token() -> None:
        # Right after init and unseal, before the app first reads its token from the init-keys Secret:
        # a token that may manage mounts (phase 1) but not read or write the KV paths (phase 2).
        root.append(bench.root_token())
        client = bench.vault(root[0])
        client.sys.create_or_update_acl_policy(
            name="mounts-only",
            policy='path "sys/mounts" { capabilities = ["read"] }\n'
            'path "sys/mounts/*" { capabilities = ["create", "read", "update"] }\n',
        )
        weak = client.auth.token.create(policies=["mounts-only"], no_default_policy=True)
        bench.set_root_token(weak["auth"]["client_token"])

    run = await run_headless(
        bench.config, bench.env, DEMO_VALUES, before_check={"1/vault-kv": weaken_the_token}
    )
    assert (run.finished.status, run.finished.failed_step) == ("failed", "2/write-secrets"), run.output
    line = next(line for line in run.output.splitlines() if line.startswith("  ✘ Secrets written"))
    assert "permission denied" in line and "secret/metadata/github" in line, line
    assert "policies" in line, line
    assert saved_step(bench.config, "2/write-secrets")["status"] == "failed"

    bench.set_root_token(root[0])
    again = await run_headless(bench.config, bench.env, DEMO_VALUES)
    assert again.finished.status == "succeeded", again.output[-3000:]
    assert "✔ Secrets written to secret/" in again.output


# -- Kubernetes API, at the headless level -------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    """One bootstrapped sandbox for the whole module, and a config file pointing ``gitops-tui`` at it."""

    world: SandboxWorld
    config: Config
    document: dict[str, Any]
    root: Path

    def config_file(self, name: str, **changes: dict[str, Any]) -> str:
        path = self.root / f"{name}.toml"
        path.write_text(to_toml(merge_documents(self.document, changes)))
        return str(path)

    def headless(self, capsys: pytest.CaptureFixture[str], config: str, *extra: str) -> tuple[int, str]:
        code = main(["bootstrap", "--headless", "--quiet", "--config", config, *extra])
        captured = capsys.readouterr()
        return code, captured.out + captured.err


def to_toml(document: dict[str, Any]) -> str:
    """The small subset of TOML the sandbox's overrides need: tables of strings, numbers and string lists."""
    lines = []
    for table, values in document.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def failure_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("  ✘ ")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("kube-faults")
    world = SandboxWorld(root / "sandbox")
    world.start()
    try:
        config, _ = bootstrapped_sync(world)
        yield Cluster(world, config, config_overrides(world.info), root)
    finally:
        world.stop()


def test_kubernetes_api_connection_refused(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    port = closed.getsockname()[1]
    try:
        kubeconfig = cluster.root / "refused.kubeconfig"
        text = cluster.config.cluster.resolved_kubeconfig().read_text()
        kubeconfig.write_text(text.replace(cluster.world.info.api_url, f"http://127.0.0.1:{port}"))
        # k3s "installed" (its installer is idempotent) but its API server not answering.
        refused = cluster.config_file(
            "refused",
            cluster={"kubeconfig": str(kubeconfig)},
            k3s={"install_command": ["true"], "node_ready_timeout": 1},
        )
        code, output = cluster.headless(capsys, refused)
    finally:
        closed.close()
    assert code == 1, output
    line = failure_line(output)
    assert line.startswith("  ✘ k3s installed, node Ready: timed out after 1 s waiting for the node"), line
    assert f"Kubernetes API http://127.0.0.1:{port} unreachable: connection refused" in line, line
    assert saved_step(cluster.config, "1/k3s")["status"] == "failed"

    code, output = cluster.headless(capsys, cluster.config_file("fixed"))
    assert code == 0, output
    assert "✘" not in output


# 5/kustomizations lists Kustomizations in its check: the fault hits that request of gitops-tui's.
# fault -> (answer status or None for "no answer in time", what the failure line says)
KUBE_FAULTS: dict[str, tuple[int | None, str]] = {
    "timeout": (None, "unreachable: timed out"),
    "401": (401, "list kustomizations: injected fault: Unauthorized (check the kubeconfig's"),
    "403": (403, "list kustomizations: injected fault: Forbidden (check the kubeconfig's"),
    "404": (404, "Kustomization (kustomize.toolkit.fluxcd.io/v1) is not served by the cluster"),
    "409": (409, "list kustomizations: injected fault: Conflict"),
    "500": (500, "list kustomizations: injected fault: InternalError"),
}


@pytest.mark.parametrize("fault", list(KUBE_FAULTS))
def test_kubernetes_api_faults(cluster: Cluster, capsys: pytest.CaptureFixture[str], fault: str) -> None:
    status, expected = KUBE_FAULTS[fault]
    config = cluster.config_file(f"fault-{fault}", cluster={"request_timeout": 1})
    emulator = cluster.world.emulator.emulator
    emulator.inject_fault(
        status=status, delay=2.5 if status is None else 0.0, times=100, verb="list",
        path_contains="/kustomizations", user_agent_contains=APP_AGENT,
    )  # fmt: skip
    try:
        code, output = cluster.headless(capsys, config, "--from-phase", "5")
    finally:
        emulator.clear_faults()
    assert code == 1, output
    line = failure_line(output)
    assert line.startswith("  ✘ Kustomizations Ready: "), line
    assert expected in line, line
    record = saved_step(cluster.config, "5/kustomizations")
    assert record["status"] == "failed" and expected in record["error"]

    code, output = cluster.headless(capsys, config, "--from-phase", "5")
    assert code == 0, output
    assert "✔ bootstrap finished" in output


def test_a_crd_missing_because_a_component_is_not_installed(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", sandbox_path_env(cluster.world.info)["PATH"])  # the helm stand-in
    kube = KubeClient(cluster.config.cluster.resolved_kubeconfig(), user_agent="test/1")
    assert kube.delete(CRDS, "clustersecretstores.external-secrets.io")
    config = cluster.config_file("crd")

    # Phase 1 not checked (--from-phase 2): phase 2 meets the missing type and says so.
    code, output = cluster.headless(capsys, config, "--from-phase", "2")
    assert code == 1, output
    line = failure_line(output)
    assert line.startswith("  ✘ ClusterSecretStore vault-backend Ready: "), line
    assert "ClusterSecretStore (external-secrets.io/v1) is not served by the cluster" in line, line
    assert saved_step(cluster.config, "2/secret-store")["status"] == "failed"

    # The full run checks phase 1 first: the operator's CRDs are missing, so it is installed again.
    code, output = cluster.headless(capsys, config)
    assert code == 0, output
    assert "✔ External Secrets Operator" in output and "✔ ClusterSecretStore vault-backend Ready" in output
    assert kube.get(CRDS, "clustersecretstores.external-secrets.io") is not None


async def test_the_ui_shows_a_vault_fault_and_its_retry_succeeds(vault_bench: VaultBench) -> None:
    """The same 403 from the terminal UI: the failed step says why in its details, and `r` after the
    token is fixed resumes the bootstrap to the end."""
    from tests.support.screen import screen_text
    from tests.tui.test_app import wait_for, wait_for_screen
    from tui.app import GitOpsApp
    from widgets.confirm import ConfirmScreen
    from widgets.step_details import StepDetailsScreen
    from widgets.timeline import PhaseTimeline

    bench = vault_bench
    first = await run_headless(bench.config, bench.env, DEMO_VALUES)
    assert first.finished.status == "succeeded", first.output[-3000:]
    root = bench.root_token()
    client = bench.vault(root)
    client.sys.create_or_update_acl_policy(
        name="read-nothing", policy='path "sys/mounts" { capabilities = ["read"] }\n'
    )
    bench.set_root_token(
        client.auth.token.create(policies=["read-nothing"], no_default_policy=True)["auth"]["client_token"]
    )

    app = GitOpsApp(bench.config, command_env=bench.env, sandbox=True, demo_secrets=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.last_result is not None and not app.bootstrap_running)
        assert app.last_result is not None and app.last_result.status == "failed", app.last_result
        failed = app.last_result.failed_step
        assert failed is not None and failed.startswith("2/"), failed
        timeline = app.query_one(PhaseTimeline)
        assert timeline.step_state(failed) == "failed"
        timeline.focus()
        await pilot.press("enter")
        await wait_for_screen(pilot, StepDetailsScreen)
        details = screen_text(app)
        assert "permission denied" in details and "policies" in details, details

        bench.set_root_token(root)  # the admin fixed the token
        await pilot.press("r")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.last_result is not None and app.last_result.status == "succeeded")
        assert app.secrets.held() == []
