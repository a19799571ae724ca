"""Flux operations with the flux CLI's semantics: reconcile requests and how to tell they were handled."""

from __future__ import annotations

from phases.health import RECONCILE_ANNOTATION, flux_ready
from phases.kube import KubeClient, ResourceType
from phases.manifests import now_rfc3339_nano


def request_reconcile(kube: KubeClient, resource: ResourceType, name: str, namespace: str) -> str:
    """Annotate the object like `flux reconcile` does; returns the requestedAt token to wait for."""
    token = now_rfc3339_nano()
    kube.merge_patch(resource, name, {"metadata": {"annotations": {RECONCILE_ANNOTATION: token}}}, namespace)
    return token


def reconcile_state(
    kube: KubeClient, resource: ResourceType, name: str, namespace: str, token: str
) -> tuple[bool, str]:
    """(done, message): done once the controller handled ``token`` and the object is Ready."""
    obj = kube.get(resource, name, namespace)
    if obj is None:
        return False, f"{resource.kind} {namespace}/{name} not found"
    handled = (obj.get("status") or {}).get("lastHandledReconcileAt")
    if handled != token:
        return False, "reconciliation requested, waiting for the controller"
    ready, message = flux_ready(obj)
    return ready, message


def applied_revision(obj: dict[str, object]) -> str:
    status = obj.get("status")
    if not isinstance(status, dict):
        return ""
    return str(status.get("lastAppliedRevision") or (status.get("artifact") or {}).get("revision") or "")
