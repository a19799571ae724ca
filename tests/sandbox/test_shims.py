"""The k3s, flux and helm stand-ins, run as the engine runs them: executables on PATH, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.emulator import EmulatorThread
from sandbox.kubelet import Kubelet
from sandbox.shims import (
    Flag,
    UsageError,
    decode_release,
    parse_duration,
    parse_flags,
    read_argv_log,
    set_values,
    write_shims,
)

Run = Callable[..., subprocess.CompletedProcess[str]]
CORE, APPS, CRDS = "v1", "apps/v1", "apiextensions.k8s.io/v1"
ESO_INSTALL = (
    *("helm", "upgrade", "--install", "external-secrets", "external-secrets/external-secrets"),
    *("--namespace", "external-secrets-system", "--create-namespace"),
)
FLUX_INSTALL_LINES = (
    "✚ generating manifests",
    "► installing components in flux-system namespace",
    "◎ verifying installation",
    "✔ install finished",
)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    write_shims(tmp_path / "bin", argv_log=tmp_path / "argv.log", root=tmp_path)
    return tmp_path / "bin"


@pytest.fixture
def run(bin_dir: Path, kubeconfig: Path, tmp_path: Path) -> Run:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("GITOPS_TUI_SANDBOX_ARGV_LOG", None)

    def run_tool(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / tool), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run_tool


@pytest.fixture
def node_agent(kubeconfig: Path, tmp_path: Path) -> Iterator[Kubelet]:
    with Kubelet(kubeconfig, tmp_path, resync_period=0.5) as kubelet:
        yield kubelet


def test_generated_scripts_are_executable_python_pointing_at_our_main(bin_dir: Path, tmp_path: Path) -> None:
    for tool in ("k3s", "flux", "helm"):
        script = bin_dir / tool
        assert os.access(script, os.X_OK)
        text = script.read_text()
        assert text.startswith("#!/")
        assert f"main({tool!r}, sys.argv[1:])" in text
        assert str(tmp_path / "argv.log") in text
    assert (bin_dir / "kubectl").resolve().is_file()


def test_k3s_install_registers_a_ready_node_idempotently(run: Run, emulator: EmulatorThread) -> None:
    first = run("k3s", "install")
    second = run("k3s", "install")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "[INFO]  Using v1.31.4+k3s1 as release" in first.stdout
    nodes = emulator.objects(CORE, "nodes")
    assert [n["metadata"]["name"] for n in nodes] == ["sandbox"]
    status = nodes[0]["status"]
    assert {"type": "Ready", "status": "True"}.items() <= next(
        c for c in status["conditions"] if c["type"] == "Ready"
    ).items()
    assert status["nodeInfo"]["kubeletVersion"] == "v1.31.4+k3s1"
    names = {n["metadata"]["name"] for n in emulator.objects(CORE, "namespaces")}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_k3s_version_and_kubectl_passthrough(run: Run) -> None:
    version = run("k3s", "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("k3s version v1.31.4+k3s1")
    assert run("k3s", "install").returncode == 0
    nodes = run("k3s", "kubectl", "get", "nodes", "-o", "name")
    assert nodes.returncode == 0, nodes.stderr
    assert nodes.stdout.strip() == "node/sandbox"
    bogus = run("k3s", "frobnicate")
    assert bogus.returncode == 1
    assert "unknown command" in bogus.stderr


def test_flux_check_fails_before_install_and_passes_after(
    run: Run, emulator: EmulatorThread, node_agent: Kubelet
) -> None:
    assert run("k3s", "install").returncode == 0
    pre = run("flux", "check", "--pre")
    before = run("flux", "check")
    install = run("flux", "install", "--namespace=flux-system")
    after = run("flux", "check")
    again = run("flux", "install")

    assert pre.returncode == 0, pre.stderr
    assert "✔ prerequisites checks passed" in pre.stdout
    assert before.returncode == 1
    assert 'source-controller: deployments.apps "source-controller" not found' in before.stderr
    assert "kustomizations.kustomize.toolkit.fluxcd.io" in before.stderr
    assert install.returncode == 0, install.stderr
    for line in FLUX_INSTALL_LINES:
        assert line in install.stdout
    assert after.returncode == 0, after.stderr
    assert "✔ all checks passed" in after.stdout
    assert again.returncode == 0
    assert "Deployment/flux-system/source-controller unchanged" in again.stdout

    crds = {c["metadata"]["name"] for c in emulator.objects(CRDS, "customresourcedefinitions")}
    assert {
        "gitrepositories.source.toolkit.fluxcd.io",
        "helmrepositories.source.toolkit.fluxcd.io",
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "helmreleases.helm.toolkit.fluxcd.io",
    } <= crds
    for name in ("source-controller", "kustomize-controller", "helm-controller", "notification-controller"):
        deployment = emulator.get_object(APPS, "deployments", "flux-system", name)
        assert deployment is not None
        assert deployment["metadata"]["labels"]["app"] == name
        assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flux"
        assert deployment["status"]["readyReplicas"] == 1
        assert emulator.get_object(CORE, "serviceaccounts", "flux-system", name) is not None


def test_flux_install_without_a_node_times_out_like_the_real_one(run: Run, node_agent: Kubelet) -> None:
    result = run("flux", "install", "--timeout=1s")
    assert result.returncode == 1
    assert "✗ install failed: timeout waiting for: [Deployment/flux-system/source-controller" in result.stderr


def test_flux_uninstall_removes_what_install_created(
    run: Run, emulator: EmulatorThread, node_agent: Kubelet
) -> None:
    assert run("k3s", "install").returncode == 0
    assert run("flux", "install").returncode == 0
    refused = run("flux", "uninstall")  # no --silent and no "y" on stdin
    removed = run("flux", "uninstall", "--silent")

    assert refused.returncode == 1
    assert removed.returncode == 0, removed.stderr
    assert "✔ uninstall finished" in removed.stdout
    assert emulator.get_object(APPS, "deployments", "flux-system", "source-controller") is None
    assert (
        emulator.get_object(
            CRDS, "customresourcedefinitions", None, "kustomizations.kustomize.toolkit.fluxcd.io"
        )
        is None
    )
    assert emulator.get_object(CORE, "namespaces", None, "flux-system") is None


def test_flux_other_subcommands_are_refused(run: Run) -> None:
    result = run("flux", "reconcile", "kustomization", "production")
    assert result.returncode == 1
    assert "not supported in the sandbox" in result.stderr
    assert run("flux", "--version").stdout.strip() == "flux version 2.4.0"


def test_helm_installs_external_secrets_as_a_helm3_release(
    run: Run, emulator: EmulatorThread, node_agent: Kubelet, tmp_path: Path
) -> None:
    assert run("k3s", "install").returncode == 0
    no_repo = run(*ESO_INSTALL)
    added = run(
        "helm", "repo", "add", "external-secrets", "https://charts.external-secrets.io", "--force-update"
    )
    install = run(*ESO_INSTALL, "--set", "installCRDs=true", "--wait", "--timeout", "1m")

    assert no_repo.returncode == 1
    assert "Error: INSTALLATION FAILED: repo external-secrets not found" in no_repo.stderr
    assert added.returncode == 0
    repos = json.loads((tmp_path / "helm-repos.json").read_text())
    assert repos == {"external-secrets": "https://charts.external-secrets.io"}
    assert install.returncode == 0, install.stderr
    assert 'Release "external-secrets" does not exist. Installing it now.' in install.stdout
    assert "STATUS: deployed" in install.stdout

    crds = {c["metadata"]["name"]: c for c in emulator.objects(CRDS, "customresourcedefinitions")}
    for plural, short in (("externalsecrets", "es"), ("clustersecretstores", "css"), ("secretstores", "ss")):
        crd = crds[f"{plural}.external-secrets.io"]
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
    assert crds["clustersecretstores.external-secrets.io"]["spec"]["scope"] == "Cluster"
    for name in ("external-secrets", "external-secrets-webhook", "external-secrets-cert-controller"):
        deployment = emulator.get_object(APPS, "deployments", "external-secrets-system", name)
        assert deployment is not None and deployment["status"]["readyReplicas"] == 1
    assert emulator.get_object(CORE, "serviceaccounts", "external-secrets-system", "external-secrets")

    secret = emulator.get_object(
        CORE, "secrets", "external-secrets-system", "sh.helm.release.v1.external-secrets.v1"
    )
    assert secret is not None
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["labels"] == {
        "owner": "helm",
        "name": "external-secrets",
        "status": "deployed",
        "version": "1",
    }
    release = decode_release(secret)
    assert release["info"]["status"] == "deployed"
    assert release["config"] == {"installCRDs": True}
    assert release["chart"]["metadata"]["name"] == "external-secrets"


def test_helm_status_list_upgrade_and_uninstall(run: Run, emulator: EmulatorThread) -> None:
    assert run("helm", "repo", "add", "openbao", "https://openbao.github.io/openbao-helm").returncode == 0
    missing = run("helm", "status", "vault", "-n", "vault")
    first = run(
        "helm", "upgrade", "--install", "vault", "openbao/openbao", "-n", "vault", "--create-namespace"
    )
    second = run(
        "helm", "upgrade", "--install", "vault", "openbao/openbao", "-n", "vault", "--version", "0.13.2"
    )
    status = run("helm", "status", "vault", "-n", "vault")
    listing = run("helm", "list", "-A", "-o", "json")

    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: release: not found"
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert 'Release "vault" has been upgraded. Happy Helming!' in second.stdout
    assert status.returncode == 0
    assert "REVISION: 2" in status.stdout
    assert "STATUS: deployed" in status.stdout
    rows = json.loads(listing.stdout)
    assert [(r["name"], r["namespace"], r["revision"], r["status"], r["chart"]) for r in rows] == [
        ("vault", "vault", "2", "deployed", "openbao-0.13.2")
    ]
    v1 = emulator.get_object(CORE, "secrets", "vault", "sh.helm.release.v1.vault.v1")
    assert v1 is not None and v1["metadata"]["labels"]["status"] == "superseded"
    statefulset = emulator.get_object(APPS, "statefulsets", "vault", "vault")
    assert statefulset is not None
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["metadata"]["labels"]["app.kubernetes.io/name"] == "openbao"
    service = emulator.get_object(CORE, "services", "vault", "vault")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0] == {
        "name": "http",
        "port": 8200,
        "targetPort": 8200,
        "protocol": "TCP",
    }

    removed = run("helm", "uninstall", "vault", "-n", "vault")
    again = run("helm", "uninstall", "vault", "-n", "vault")
    assert removed.returncode == 0
    assert removed.stdout.strip() == 'release "vault" uninstalled'
    assert emulator.get_object(APPS, "statefulsets", "vault", "vault") is None
    assert [s for s in emulator.objects(CORE, "secrets", "vault") if s["type"] == "helm.sh/release.v1"] == []
    assert again.returncode == 1
    assert "release: not found" in again.stderr


def test_helm_rejects_unknown_charts_and_bad_usage(run: Run) -> None:
    assert run("helm", "repo", "add", "bitnami", "https://charts.bitnami.com/bitnami").returncode == 0
    unknown = run("helm", "upgrade", "--install", "db", "bitnami/postgresql", "-n", "default")
    one_argument = run("helm", "upgrade", "--install", "db")
    no_namespace = run("helm", "upgrade", "--install", "es", "bitnami/external-secrets", "-n", "nowhere")
    bad_flag = run("helm", "upgrade", "--install", "db", "bitnami/postgresql", "--frobnicate")

    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: INSTALLATION FAILED: chart not found"
    assert one_argument.returncode == 1
    assert '"helm upgrade" requires 2 arguments' in one_argument.stderr
    assert no_namespace.returncode == 1
    assert 'namespaces "nowhere" not found' in no_namespace.stderr
    assert bad_flag.returncode == 1
    assert "unknown flag: --frobnicate" in bad_flag.stderr


def test_helm_wait_without_a_node_fails_with_a_deadline_and_marks_the_release_failed(
    run: Run, emulator: EmulatorThread, node_agent: Kubelet
) -> None:
    assert (
        run("helm", "repo", "add", "external-secrets", "https://charts.external-secrets.io").returncode == 0
    )
    result = run(*ESO_INSTALL, "--wait", "--timeout", "1s")

    assert result.returncode == 1
    assert result.stderr.strip() == "Error: INSTALLATION FAILED: context deadline exceeded"
    secret = emulator.get_object(
        CORE, "secrets", "external-secrets-system", "sh.helm.release.v1.external-secrets.v1"
    )
    assert secret is not None and secret["metadata"]["labels"]["status"] == "failed"


def test_helm_reports_an_unreachable_cluster(bin_dir: Path, tmp_path: Path) -> None:
    with EmulatorThread() as stopped_soon:
        config = stopped_soon.write_kubeconfig(tmp_path / "gone.kubeconfig")
    result = subprocess.run(
        [str(bin_dir / "helm"), "list", "-A"],
        env={**os.environ, "KUBECONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: Kubernetes cluster unreachable:")
    assert "connection refused" in result.stderr


def test_every_invocation_is_recorded_in_the_argv_log(run: Run, tmp_path: Path) -> None:
    run("helm", "version", "--short")
    run("flux", "--version")
    run("k3s", "--version")

    entries = list(read_argv_log(tmp_path / "argv.log"))
    assert [(e["tool"], e["argv"]) for e in entries] == [
        ("helm", ["version", "--short"]),
        ("flux", ["--version"]),
        ("k3s", ["--version"]),
    ]
    assert all(e["ppid"] == os.getpid() and e["cwd"] == str(tmp_path) and e["pid"] > 0 for e in entries)
    assert entries[0]["time"] <= entries[1]["time"] <= entries[2]["time"]
    assert (tmp_path / "argv.log").stat().st_mode & 0o777 == 0o600


def test_flag_parsing_follows_cobra() -> None:
    flags = (
        Flag("namespace", "n", default="default"),
        Flag("wait", takes_value=False),
        Flag("set", repeatable=True),
    )
    parsed = parse_flags(["x", "-n", "vault", "--wait", "--set=a=1", "--set", "b=2", "y"], flags)
    assert parsed.positionals == ["x", "y"]
    assert parsed.options == {"namespace": "vault", "wait": True, "set": ["a=1", "b=2"]}
    assert parse_flags(["--namespace=ns", "-nother"], flags).options["namespace"] == "other"
    with pytest.raises(UsageError, match="unknown flag: --nope"):
        parse_flags(["--nope"], flags)
    with pytest.raises(UsageError, match="flag needs an argument"):
        parse_flags(["--namespace"], flags)


def test_set_values_and_durations() -> None:
    values: dict[str, object] = {}
    set_values(values, ["server.dev.enabled=true,replicas=3", r"annotations.a\.b/c=x"])
    set_values(values, ["tag=007"], as_string=True)
    assert values == {
        "server": {"dev": {"enabled": True}},
        "replicas": 3,
        "annotations": {"a.b/c": "x"},
        "tag": "007",
    }
    assert parse_duration("5m") == 300
    assert parse_duration("1m30s") == 90
    assert parse_duration("10m") == 600
    with pytest.raises(UsageError):
        parse_duration("soon")
