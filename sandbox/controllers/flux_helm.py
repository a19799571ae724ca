"""helm-controller for ``HelmRelease`` (helm.toolkit.fluxcd.io/v2), minimal.

Nothing is rendered or installed: the sandbox has no charts. A release "installs" on its first
reconcile and "upgrades" on each new generation, with the status fields and conditions Flux
writes, so the UI and the flux shim see what they would see on a cluster. Suspend, dependsOn
and ``reconcile.fluxcd.io/requestedAt`` behave as in Flux.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from phases.kube import HELM_RELEASES
from sandbox.controllers.kube import JSON, object_key, split_key
from sandbox.controllers.runtime import Controller, ControllerContext
from sandbox.controllers.status import (
    READY,
    REQUESTED_AT_ANNOTATION,
    annotation,
    condition,
    generation,
    is_ready,
    now_rfc3339,
    set_condition,
    status_patch,
)

RELEASED: Final = "Released"
MAX_HISTORY: Final = 5


class HelmReleaseController(Controller):
    name = "helmrelease"
    primary = HELM_RELEASES

    def __init__(self, context: ControllerContext) -> None:
        super().__init__(context)
        self.objects.add_handler(self._on_dependency_event)

    def _on_dependency_event(self, _kind: str, changed: JSON) -> None:
        changed_key = object_key(changed)
        for release in self.objects.items():
            if changed_key in _dependency_keys(release):
                self.queue.add(object_key(release))

    def reconcile(self, key: str, obj: JSON) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return
        namespace, name = split_key(key)
        assert namespace is not None
        status: JSON = obj.get("status") or {}
        observed = generation(obj)
        requested_at = annotation(obj, REQUESTED_AT_ANNOTATION)
        new_status: JSON = dict(status)
        if requested_at is not None:
            new_status["lastHandledReconcileAt"] = requested_at
        conditions = list(status.get("conditions") or [])

        waiting_for = self._unready_dependency(obj)
        if waiting_for is not None:
            message = f"dependency '{waiting_for}' is not ready"
            new_status["conditions"] = set_condition(
                conditions, READY, "False", "DependencyNotReady", message, observed_generation=observed
            )
            self._write(namespace, name, status, new_status)
            return

        released = condition(obj, RELEASED)
        if status.get("lastAttemptedGeneration") == observed and released is not None:
            # Already released at this generation: at most a reconcile request to acknowledge, or
            # Ready to restore after a dependency came back.
            new_status["conditions"] = set_condition(
                conditions,
                READY,
                str(released.get("status")),
                str(released.get("reason")),
                str(released.get("message")),
                observed_generation=observed,
            )
            self._write(namespace, name, status, new_status)
            return

        chart_spec = (spec.get("chart") or {}).get("spec") or {}
        chart_name = str(chart_spec.get("chart") or (spec.get("chartRef") or {}).get("name") or name)
        chart_version = str(chart_spec.get("version") or "latest")
        release_name = str(spec.get("releaseName") or name)
        storage_namespace = str(spec.get("storageNamespace") or spec.get("targetNamespace") or namespace)
        release_revision = int(status.get("lastReleaseRevision") or 0) + 1
        action = "install" if release_revision == 1 else "upgrade"
        reason = "InstallSucceeded" if action == "install" else "UpgradeSucceeded"
        message = (
            f"Helm {action} succeeded for release {storage_namespace}/{release_name}.v{release_revision} "
            f"with chart {chart_name}@{chart_version}"
        )
        config_digest = (
            "sha256:"
            + hashlib.sha256(json.dumps(spec.get("values") or {}, sort_keys=True).encode()).hexdigest()
        )
        now = now_rfc3339()
        snapshot = {
            "apiVersion": HELM_RELEASES.api_version,
            "chartName": chart_name,
            "chartVersion": chart_version,
            "configDigest": config_digest,
            "digest": "sha256:"
            + hashlib.sha256(
                f"{release_name}{release_revision}{chart_version}{config_digest}".encode()
            ).hexdigest(),
            "firstDeployed": now,
            "lastDeployed": now,
            "name": release_name,
            "namespace": storage_namespace,
            "status": "deployed",
            "version": release_revision,
        }
        history = [dict(item, status="superseded") for item in status.get("history") or []]
        conditions = set_condition(
            conditions, RELEASED, "True", reason, message, observed_generation=observed
        )
        conditions = set_condition(conditions, READY, "True", reason, message, observed_generation=observed)
        new_status.update(
            {
                "conditions": conditions,
                "observedGeneration": observed,
                "lastAttemptedGeneration": observed,
                "lastAttemptedRevision": chart_version,
                "lastAttemptedConfigDigest": config_digest,
                "lastAttemptedReleaseAction": action,
                "lastReleaseRevision": release_revision,
                "storageNamespace": storage_namespace,
                "history": [snapshot, *history][:MAX_HISTORY],
            }
        )
        if chart_spec:
            source_namespace = (chart_spec.get("sourceRef") or {}).get("namespace") or namespace
            new_status["helmChart"] = f"{source_namespace}/{namespace}-{name}"
        self.log.info("HelmRelease %s: %s", key, message)
        self._write(namespace, name, status, new_status)

    def _unready_dependency(self, obj: JSON) -> str | None:
        for dependency_key in _dependency_keys(obj):
            dependency = self.objects.get(dependency_key)
            if dependency is None or not is_ready(dependency):
                return dependency_key
        return None

    def _write(self, namespace: str, name: str, old: JSON, new: JSON) -> None:
        patch = status_patch(old, new)
        if patch:
            self.patch_status(f"{namespace}/{name}", patch)


def _dependency_keys(obj: JSON) -> list[str]:
    own_namespace = (obj.get("metadata") or {}).get("namespace")
    return [
        f"{dependency.get('namespace') or own_namespace}/{dependency['name']}"
        for dependency in (obj.get("spec") or {}).get("dependsOn") or []
        if isinstance(dependency, dict) and dependency.get("name")
    ]
