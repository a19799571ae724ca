"""A simulated node agent for the sandbox: what k3s's kubelet and controller-manager would do.

It talks to the API server like any client (``phases.kube.KubeClient`` over HTTP, user agent
``gitops-tui-sandbox/kubelet``), with list+watch and a periodic resync:

* Deployments and StatefulSets get Pods (owned by them) and a status written through
  ``/status``; nothing is scheduled, started or ready until a Ready Node exists (``k3s install``).
* A Pod whose container needs a Secret or ConfigMap that does not exist stays Pending with
  ``CreateContainerConfigError``, as on a real node (apps wait for External Secrets).
* Services get a ClusterIP.
* The OpenBao/Vault StatefulSet runs a REAL OpenBao server (raft storage under
  ``root/vault``, kept across sandbox restarts). Its Service becomes ``127.0.0.1:<port>``:
  on a k3s server node ClusterIPs are reachable; here the ClusterIP is loopback. The pod is
  Running but Ready only once OpenBao is unsealed (the chart's readiness probe runs
  ``bao status``, which fails while sealed). If the process dies the pod goes not ready and
  the server is restarted (sealed again, like a restarted pod). Deleting or scaling the
  StatefulSet to zero stops the server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from phases.kube import (
    DEPLOYMENTS,
    NODES,
    PODS,
    SECRETS,
    SERVICES,
    STATEFUL_SETS,
    KubeClient,
    KubeError,
    KubeGone,
    ResourceType,
    preload_client,
)
from sandbox.openbao import OpenBaoServer, OpenBaoServerError
from sandbox.ports import port_is_free
from sandbox.shims import CONFIG_MAPS

log = logging.getLogger(__name__)

USER_AGENT: Final = "gitops-tui-sandbox/kubelet"
MANAGED_ANNOTATION: Final = "sandbox.gitops-tui/managed-by"
VAULT_APP_NAMES: Final = frozenset({"openbao", "vault"})
# OpenBao health codes that the chart's readiness probe (`bao status`) accepts: active, standby,
# performance standby, DR secondary. Sealed (503) and uninitialised (501) are not ready.
VAULT_READY_CODES: Final = frozenset({200, 429, 472, 473})
WATCHED: Final = (NODES, DEPLOYMENTS, STATEFUL_SETS, SERVICES, PODS, SECRETS, CONFIG_MAPS)
WATCH_SECONDS: Final = 20
VAULT_POLL_INTERVAL: Final = 0.25
PORT_FILE: Final = "sandbox-port"

JSON = dict[str, Any]

# Kubernetes' alphabet for generated names (no vowels, no look-alikes).
_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _safe_hash(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_NAME_ALPHABET[byte % len(_NAME_ALPHABET)] for byte in digest[:length])


def _template_hash(workload: Mapping[str, Any]) -> str:
    template = (workload.get("spec") or {}).get("template") or {}
    return _safe_hash(json.dumps(template, sort_keys=True), 10)


def _ip(prefix: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return f"{prefix}.{digest[0] % 250 + 2}.{digest[1] % 250 + 2}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata: Mapping[str, Any] = obj.get("metadata") or {}
    return metadata


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return (str(_meta(obj).get("namespace") or ""), str(_meta(obj)["name"]))


def is_vault_statefulset(statefulset: Mapping[str, Any]) -> bool:
    labels = _meta(statefulset).get("labels") or {}
    return labels.get("app.kubernetes.io/name") in VAULT_APP_NAMES


@dataclass
class _ContainerView:
    """What the kubelet decided about one pod's containers."""

    phase: str  # Pending or Running
    ready: bool
    scheduled: bool
    waiting_reason: str = ""
    waiting_message: str = ""
    restarts: int = 0
    last_terminated: JSON | None = None


@dataclass
class _VaultProcess:
    """The OpenBao server behind one StatefulSet's pod 0."""

    owner: tuple[str, str]
    server: OpenBaoServer
    restarts: int = 0
    died_at: float | None = None
    last_terminated: JSON | None = None
    started_at: str = field(default_factory=_now)
    reported_ready: bool = False
    readiness_probe: JSON | None = None


class Kubelet:
    """The node agent thread. ``start()``, then ``stop()`` (which also stops OpenBao)."""

    def __init__(
        self,
        kubeconfig: Path,
        root: Path,
        *,
        on_vault_address: Callable[[str | None], None] | None = None,
        resync_period: float = 2.0,
        restart_backoff: float = 1.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.root = root
        self.vault_dir = root / "vault"
        self._on_vault_address = on_vault_address
        self._resync_period = resync_period
        self._restart_backoff = restart_backoff
        self._stopping = threading.Event()
        self._dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self._vault: _VaultProcess | None = None
        self._vault_lock = threading.Lock()
        self._cluster: KubeClient | None = None
        self.sync_count = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Kubelet:
        if self._threads:
            raise RuntimeError("the kubelet was already started")
        preload_client()  # here, not in the threads below
        # One client for every thread of the kubelet (each thread gets its own connections).
        self._cluster = KubeClient(self.kubeconfig, user_agent=USER_AGENT)
        main = threading.Thread(target=self._run, name="sandbox-kubelet", daemon=True)
        self._threads.append(main)
        for resource in WATCHED:
            self._threads.append(
                threading.Thread(
                    target=self._watch_loop,
                    args=(self._cluster, resource),
                    name=f"sandbox-kubelet-watch-{resource.plural}",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop syncing and stop OpenBao; idempotent."""
        self._stopping.set()
        self._dirty.set()
        if self._threads:
            self._threads[0].join(timeout=30)
        with self._vault_lock:
            vault, self._vault = self._vault, None
        if vault is not None:
            self._notify_vault(None)
            vault.server.stop()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def vault_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of the running OpenBao server, else None."""
        vault = self._vault
        return vault.server.url if vault is not None and vault.server.pid is not None else None

    @property
    def vault_pid(self) -> int | None:
        vault = self._vault
        return vault.server.pid if vault is not None else None

    def wake(self) -> None:
        """Sync now rather than at the next resync."""
        self._dirty.set()

    # -- loops -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.clear()
            try:
                self.sync()
            except KubeError as error:
                # The API server is away (e.g. shutting down) or refused a write: try again next round.
                log.debug("kubelet sync failed: %s", error)
            except Exception:
                log.exception("kubelet sync failed")
            deadline = time.monotonic() + self._resync_period
            while not self._dirty.wait(VAULT_POLL_INTERVAL):
                if time.monotonic() >= deadline or self._vault_changed():
                    break
            # Coalesce bursts (a Helm install writes several objects in a row).
            self._stopping.wait(0.05)

    def _vault_changed(self) -> bool:
        """OpenBao died, is due for a restart, or became (un)ready: no API event tells us that."""
        vault = self._vault
        if vault is None:
            return False
        if vault.server.pid is None:
            return vault.died_at is None or time.monotonic() - vault.died_at >= self._restart_backoff
        return vault_ready(vault.server.url, vault.readiness_probe) != vault.reported_ready

    def _watch_loop(self, cluster: KubeClient, resource: ResourceType) -> None:
        """Set the dirty flag on every change of ``resource``; relist after errors or 410 Gone."""
        resource_version = ""
        while not self._stopping.is_set():
            try:
                if not resource_version:
                    resource_version = cluster.list_with_version(resource)[1]
                resource_version = self._watch_once(cluster, resource, resource_version)
            except KubeGone:
                resource_version = ""  # relist at once
            except Exception as error:  # the API server is away or the stream broke: start over
                log.debug("kubelet watch of %s failed: %r", resource.plural, error)
                resource_version = ""
                self._stopping.wait(1.0)

    def _watch_once(self, cluster: KubeClient, resource: ResourceType, resource_version: str) -> str:
        for event in cluster.watch(
            resource, resource_version=resource_version, timeout_seconds=WATCH_SECONDS
        ):
            resource_version = str(_meta(event.object).get("resourceVersion") or resource_version)
            if event.type != "BOOKMARK":
                self._dirty.set()
            if self._stopping.is_set():
                break
        return resource_version

    # -- one sync --------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring pods, workload statuses, Services and OpenBao in line with the cluster, once."""
        cluster = self._cluster
        if cluster is None:
            raise RuntimeError("start the kubelet first")
        self.sync_count += 1
        nodes = cluster.list(NODES)
        node = next((n for n in nodes if _node_ready(n)), None)
        node_name = str(_meta(node)["name"]) if node is not None else None
        deployments = cluster.list(DEPLOYMENTS)
        statefulsets = cluster.list(STATEFUL_SETS)
        pods = {_key(pod): pod for pod in cluster.list(PODS)}
        services = cluster.list(SERVICES)
        references = _References(cluster)

        self._sync_vault([s for s in statefulsets if is_vault_statefulset(s)], node_name is not None)
        owners: set[tuple[str, str, str]] = set()
        for workload in [*deployments, *statefulsets]:
            owners.add((str(workload["kind"]), *_key(workload)))
            try:
                self._sync_workload(cluster, workload, pods, node_name, references)
            except KubeError as error:  # e.g. its namespace is being deleted: the others still count
                log.debug("kubelet could not sync %s %s/%s: %s", workload["kind"], *_key(workload), error)
        for (namespace, name), pod in pods.items():
            owner = _managed_owner(pod)
            if owner is not None and (owner[0], namespace, owner[1]) not in owners:
                with contextlib.suppress(KubeError):
                    cluster.delete(PODS, name, namespace)  # garbage collection of an orphan
        for service in services:
            self._sync_service(cluster, service)

    def _sync_workload(
        self,
        cluster: KubeClient,
        workload: JSON,
        pods: Mapping[tuple[str, str], JSON],
        node_name: str | None,
        references: _References,
    ) -> None:
        kind = str(workload["kind"])
        namespace, name = _key(workload)
        spec = workload.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        revision = _template_hash(workload)
        if kind == "StatefulSet":
            wanted = [f"{name}-{ordinal}" for ordinal in range(replicas)]
            replace_outdated = (spec.get("updateStrategy") or {}).get("type") != "OnDelete"
        else:
            wanted = [f"{name}-{revision}-{_safe_hash(f'{name}/{revision}/{i}', 5)}" for i in range(replicas)]
            replace_outdated = True
        mine = {
            pod_name: pod
            for (pod_namespace, pod_name), pod in pods.items()
            if pod_namespace == namespace and _managed_owner(pod) == (kind, name)
        }
        for pod_name, existing in mine.items():
            outdated = _pod_revision(existing) != revision and replace_outdated
            if pod_name not in wanted or outdated:
                with contextlib.suppress(KubeError):
                    cluster.delete(PODS, pod_name, namespace)
        ready = updated = 0
        for ordinal, pod_name in enumerate(wanted):
            pod: JSON | None = mine.get(pod_name)
            if pod is not None and _pod_revision(pod) != revision and replace_outdated:
                pod = None  # deleted above: recreate it from the current template
            if pod is None:
                pod = self._create_pod(cluster, workload, pod_name, revision, node_name, ordinal)
            elif node_name is not None and not (pod.get("spec") or {}).get("nodeName"):
                pod = cluster.merge_patch(PODS, pod_name, {"spec": {"nodeName": node_name}}, namespace)
            view = self._container_view(workload, pod, ordinal, node_name, references)
            self._write_pod_status(cluster, pod, view)
            ready += int(view.ready)
            updated += int(_pod_revision(pod) == revision)
        self._write_workload_status(cluster, workload, replicas, ready, updated, revision)

    def _create_pod(
        self,
        cluster: KubeClient,
        workload: JSON,
        pod_name: str,
        revision: str,
        node_name: str | None,
        ordinal: int,
    ) -> JSON:
        namespace, name = _key(workload)
        kind = str(workload["kind"])
        template = (workload.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        labels = dict(template_meta.get("labels") or {})
        if kind == "StatefulSet":
            labels["controller-revision-hash"] = f"{name}-{revision}"
            labels["statefulset.kubernetes.io/pod-name"] = pod_name
            labels["apps.kubernetes.io/pod-index"] = str(ordinal)
        else:
            labels["pod-template-hash"] = revision
        pod_spec = dict(template.get("spec") or {})
        if node_name is not None:
            pod_spec["nodeName"] = node_name
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": {**(template_meta.get("annotations") or {}), MANAGED_ANNOTATION: "kubelet"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": kind,
                        "name": name,
                        "uid": _meta(workload).get("uid", ""),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        return cluster.create(PODS, pod, namespace)

    def _container_view(
        self,
        workload: JSON,
        pod: JSON,
        ordinal: int,
        node_name: str | None,
        references: _References,
    ) -> _ContainerView:
        if node_name is None:
            return _ContainerView("Pending", ready=False, scheduled=False)
        missing = references.missing_for(pod)
        if missing:
            return _ContainerView(
                "Pending",
                ready=False,
                scheduled=True,
                waiting_reason="CreateContainerConfigError",
                waiting_message=missing,
            )
        vault = self._vault
        if workload["kind"] == "StatefulSet" and is_vault_statefulset(workload):
            if ordinal > 0 or vault is None or vault.owner != _key(workload):
                return _ContainerView(
                    "Pending",
                    ready=False,
                    scheduled=True,
                    waiting_reason="ContainerCreating",
                    waiting_message="the sandbox runs one OpenBao server, for pod 0 of the first StatefulSet",
                )
            if vault.server.pid is None:
                return _ContainerView(
                    "Running",
                    ready=False,
                    scheduled=True,
                    waiting_reason="CrashLoopBackOff",
                    waiting_message="back-off restarting failed container openbao",
                    restarts=vault.restarts,
                    last_terminated=vault.last_terminated,
                )
            vault.readiness_probe = _readiness_probe(workload)
            ready = vault.reported_ready = vault_ready(vault.server.url, vault.readiness_probe)
            return _ContainerView(
                "Running",
                ready=ready,
                scheduled=True,
                restarts=vault.restarts,
                last_terminated=vault.last_terminated,
            )
        return _ContainerView("Running", ready=True, scheduled=True)

    def _write_pod_status(self, cluster: KubeClient, pod: JSON, view: _ContainerView) -> None:
        namespace, name = _key(pod)
        old: JSON = pod.get("status") or {}
        now = _now()
        old_conditions = {c.get("type"): c for c in old.get("conditions") or []}

        def condition(kind: str, ok: bool, reason: str = "") -> JSON:
            status = "True" if ok else "False"
            previous = old_conditions.get(kind)
            since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
            entry: JSON = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
            if reason:
                entry["reason"] = reason
            return entry

        if not view.scheduled:
            status: JSON = {
                "phase": "Pending",
                "conditions": [condition("PodScheduled", False, "Unschedulable")],
                "qosClass": "BestEffort",
            }
            status["conditions"][0]["message"] = (
                "0/0 nodes are available: no nodes available to schedule pods."
            )
        else:
            not_ready_reason = "" if view.ready else "ContainersNotReady"
            status = {
                "phase": view.phase,
                "conditions": [
                    condition("Initialized", True),
                    condition("Ready", view.ready, not_ready_reason),
                    condition("ContainersReady", view.ready, not_ready_reason),
                    condition("PodScheduled", True),
                ],
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": _ip("10.42", f"{namespace}/{name}"),
                "podIPs": [{"ip": _ip("10.42", f"{namespace}/{name}")}],
                "startTime": old.get("startTime") or now,
                "qosClass": "BestEffort",
                "containerStatuses": self._container_statuses(pod, view, old, now),
            }
        if status != old:
            cluster.replace_status(PODS, name, status, namespace)

    @staticmethod
    def _container_statuses(pod: JSON, view: _ContainerView, old: JSON, now: str) -> list[JSON]:
        old_by_name = {c.get("name"): c for c in old.get("containerStatuses") or []}
        statuses: list[JSON] = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = str(container.get("name"))
            previous = old_by_name.get(name) or {}
            if view.waiting_reason:
                state: JSON = {"waiting": {"reason": view.waiting_reason, "message": view.waiting_message}}
            else:
                previous_running = (previous.get("state") or {}).get("running") or {}
                same_run = previous.get("restartCount", 0) == view.restarts
                state = {
                    "running": {"startedAt": previous_running.get("startedAt", now) if same_run else now}
                }
            image = str(container.get("image", ""))
            entry: JSON = {
                "name": name,
                "image": image,
                "imageID": f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
                "containerID": f"containerd://{hashlib.sha256(f'{_key(pod)}/{name}/{view.restarts}'.encode()).hexdigest()}",
                "ready": view.ready,
                "started": "running" in state,
                "restartCount": view.restarts,
                "state": state,
            }
            if view.last_terminated:
                entry["lastState"] = {"terminated": view.last_terminated}
            statuses.append(entry)
        return statuses

    def _write_workload_status(
        self, cluster: KubeClient, workload: JSON, replicas: int, ready: int, updated: int, revision: str
    ) -> None:
        namespace, name = _key(workload)
        kind = str(workload["kind"])
        old: JSON = workload.get("status") or {}
        now = _now()
        old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
        available = ready >= replicas

        def condition(kind_: str, ok: bool, reason: str, message: str) -> JSON:
            status = "True" if ok else "False"
            previous = old_conditions.get(kind_) or {}
            unchanged = previous.get("status") == status and previous.get("reason") == reason
            return {
                "type": kind_,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": previous.get("lastUpdateTime", now) if unchanged else now,
                "lastTransitionTime": previous.get("lastTransitionTime", now) if unchanged else now,
            }

        status: JSON = {
            "observedGeneration": int(_meta(workload).get("generation") or 1),
            "replicas": replicas,
        }
        # Like the real controllers, zero counts are left out (omitempty).
        for field_name, value in (
            ("readyReplicas", ready),
            ("availableReplicas", ready),
            ("updatedReplicas", updated),
        ):
            if value:
                status[field_name] = value
        if kind == "StatefulSet":
            status["currentReplicas"] = updated
            status["currentRevision"] = status["updateRevision"] = f"{name}-{revision}"
            status["collisionCount"] = 0
        elif replicas - ready:
            status["unavailableReplicas"] = replicas - ready
        status["conditions"] = [
            condition(
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            )
        ]
        if kind == "Deployment":
            status["conditions"].append(
                condition(
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                    f'ReplicaSet "{name}-{revision}" has successfully progressed.'
                    if available
                    else f'ReplicaSet "{name}-{revision}" is progressing.',
                )
            )
        if status != old:
            resource = STATEFUL_SETS if kind == "StatefulSet" else DEPLOYMENTS
            cluster.replace_status(resource, name, status, namespace)

    # -- Services and OpenBao ----------------------------------------------------------------------

    def _sync_service(self, cluster: KubeClient, service: JSON) -> None:
        namespace, name = _key(service)
        spec = service.get("spec") or {}
        vault = self._vault
        if vault is not None and vault.owner == (namespace, name) and vault.server.pid is not None:
            ports = [dict(port) for port in spec.get("ports") or [{"name": "http", "targetPort": 8200}]]
            ports[0]["port"] = vault.server.port
            if (
                spec.get("clusterIP") != "127.0.0.1"
                or (spec.get("ports") or [{}])[0].get("port") != vault.server.port
            ):
                cluster.merge_patch(
                    SERVICES,
                    name,
                    {"spec": {"clusterIP": "127.0.0.1", "clusterIPs": ["127.0.0.1"], "ports": ports}},
                    namespace,
                )
            return
        if spec.get("clusterIP") or spec.get("type") == "ExternalName":
            return
        address = _ip("10.43", f"{namespace}/{name}")
        cluster.merge_patch(
            SERVICES, name, {"spec": {"clusterIP": address, "clusterIPs": [address]}}, namespace
        )

    def _sync_vault(self, statefulsets: Sequence[JSON], node_ready: bool) -> None:
        """Run one OpenBao server for the first OpenBao/Vault StatefulSet with replicas >= 1."""
        wanted = next(
            (s for s in statefulsets if int((s.get("spec") or {}).get("replicas", 1)) >= 1),
            None,
        )
        with self._vault_lock:
            vault = self._vault
            if vault is not None and (wanted is None or _key(wanted) != vault.owner):
                log.info("stopping OpenBao for %s/%s", *vault.owner)
                # Withdraw the address first: once the process is gone, nobody should still be sent there.
                self._vault = None
                self._notify_vault(None)
                vault.server.stop()
                vault = None
            if wanted is None or not node_ready or self._stopping.is_set():
                return
            if vault is None:
                vault = _VaultProcess(
                    _key(wanted), OpenBaoServer.raft(self.vault_dir, port=self._preferred_vault_port())
                )
                self._vault = vault
                self._start_vault(vault)
                return
            if vault.server.pid is None:
                if vault.died_at is None:
                    vault.died_at = time.monotonic()
                    vault.restarts += 1
                    vault.last_terminated = {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": vault.started_at,
                        "finishedAt": _now(),
                    }
                    log.warning("OpenBao for %s/%s died; restarting it", *vault.owner)
                    self._dirty.set()
                elif time.monotonic() - vault.died_at >= self._restart_backoff:
                    self._start_vault(vault)

    def _start_vault(self, vault: _VaultProcess) -> None:
        try:
            vault.server.stop()  # reap a dead child and close its log before starting again
            vault.server.start()
        except OpenBaoServerError:
            log.exception("OpenBao did not start")
            vault.died_at = time.monotonic()
            return
        vault.died_at = None
        vault.started_at = _now()
        self.vault_dir.mkdir(parents=True, exist_ok=True)
        (self.vault_dir / PORT_FILE).write_text(f"{vault.server.port}\n", encoding="utf-8")
        log.info("OpenBao for %s/%s serves %s (pid %s)", *vault.owner, vault.server.url, vault.server.pid)
        self._notify_vault(vault.server.url)
        self._dirty.set()

    def _preferred_vault_port(self) -> int:
        """The port of the previous run, so VAULT_ADDR stays the same across sandbox restarts."""
        with contextlib.suppress(OSError, ValueError):
            port = int((self.vault_dir / PORT_FILE).read_text(encoding="utf-8").strip())
            if 1024 <= port <= 65535 and port_is_free(port):
                return port
        return 0

    def _notify_vault(self, url: str | None) -> None:
        if self._on_vault_address is not None:
            try:
                self._on_vault_address(url)
            except Exception:
                log.exception("the vault address callback failed")


# -- helpers ---------------------------------------------------------------------------------------


def _node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _managed_owner(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the workload that owns a pod this kubelet created."""
    if (_meta(pod).get("annotations") or {}).get(MANAGED_ANNOTATION) != "kubelet":
        return None
    for reference in _meta(pod).get("ownerReferences") or []:
        if reference.get("controller"):
            return (str(reference.get("kind")), str(reference.get("name")))
    return None


def _pod_revision(pod: Mapping[str, Any]) -> str:
    labels = _meta(pod).get("labels") or {}
    if "pod-template-hash" in labels:
        return str(labels["pod-template-hash"])
    return str(labels.get("controller-revision-hash", "")).rpartition("-")[2]


def resolve_service_url(url: str, lookup_service: Callable[[str, str], Mapping[str, Any] | None]) -> str:
    """What cluster DNS and kube-proxy make of ``url`` for a pod: ``svc.ns.svc[.cluster.local]:P``
    becomes ``clusterIP:port`` of that Service; other URLs come back unchanged.

    ``lookup_service(namespace, name)`` returns the Service or None. The port is the Service port
    equal to P, else the one whose targetPort is P: the sandbox moves the vault Service's port to
    OpenBao's real port, so ``http://vault.vault.svc:8200`` still reaches it.
    """
    parts = urllib.parse.urlsplit(url)
    labels = (parts.hostname or "").rstrip(".").split(".")
    if (
        len(labels) not in (3, 5)
        or labels[2] != "svc"
        or (len(labels) == 5 and labels[3:] != ["cluster", "local"])
    ):
        return url
    service = lookup_service(labels[1], labels[0])
    if not service:
        return url
    spec = service.get("spec") or {}
    address = spec.get("clusterIP")
    if not address or address == "None":
        return url
    wanted = parts.port or (443 if parts.scheme == "https" else 80)
    ports = spec.get("ports") or []
    entry = next((p for p in ports if p.get("port") == wanted), None) or next(
        (p for p in ports if p.get("targetPort") == wanted), None
    )
    if entry is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{address}:{entry['port']}"))


def _readiness_probe(workload: Mapping[str, Any]) -> JSON | None:
    template = (workload.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    probe: JSON | None = containers[0].get("readinessProbe")
    return probe


def vault_ready(url: str, probe: Mapping[str, Any] | None) -> bool:
    """What the pod's readiness probe would say about the OpenBao server at ``url``.

    No probe: ready once running. An ``httpGet`` probe: its path answers 200-399 (the kubelet's rule;
    e.g. ``/v1/sys/health?sealedcode=204&uninitcode=204`` is ready while sealed). Otherwise the
    chart's ``bao status``, which succeeds only when unsealed.
    """
    if probe is None:
        return _http_status(f"{url}/v1/sys/health") is not None
    path = (probe.get("httpGet") or {}).get("path")
    if path:
        code = _http_status(f"{url}/{str(path).lstrip('/')}")
        return code is not None and 200 <= code < 400
    return _http_status(f"{url}/v1/sys/health") in VAULT_READY_CODES


def _http_status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0) as response:
            code: int = response.status
            return code
    except urllib.error.HTTPError as answered:
        return answered.code
    except OSError:
        return None


class _References:
    """Existence of the Secrets and ConfigMaps pods refer to, fetched at most once per sync."""

    def __init__(self, cluster: KubeClient) -> None:
        self._cluster = cluster
        self._names: dict[ResourceType, set[tuple[str, str]]] = {}

    def _exists(self, resource: ResourceType, namespace: str, name: str) -> bool:
        if resource not in self._names:
            self._names[resource] = {_key(obj) for obj in self._cluster.list(resource)}
        return (namespace, name) in self._names[resource]

    def missing_for(self, pod: Mapping[str, Any]) -> str:
        """The kubelet's message for the first missing required Secret/ConfigMap, or ""."""
        namespace = str(_meta(pod).get("namespace") or "")
        for container in (pod.get("spec") or {}).get("containers") or []:
            # envFrom[].secretRef/.configMapRef, then env[].valueFrom.secretKeyRef/.configMapKeyRef
            sources = [(source, "Ref") for source in container.get("envFrom") or []] + [
                (variable.get("valueFrom") or {}, "KeyRef") for variable in container.get("env") or []
            ]
            for source, suffix in sources:
                for field_prefix, resource in (("secret", SECRETS), ("configMap", CONFIG_MAPS)):
                    ref = source.get(field_prefix + suffix)
                    if (
                        ref
                        and not ref.get("optional")
                        and not self._exists(resource, namespace, str(ref.get("name")))
                    ):
                        return f'{field_prefix.lower()} "{ref.get("name")}" not found'
        return ""
