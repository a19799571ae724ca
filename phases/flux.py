"""Flux operations with the flux CLI's semantics: reconcile requests and how to tell they were handled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from phases.health import RECONCILE_ANNOTATION, condition, generation_lag, is_suspended
from phases.kube import KubeClient, ResourceType
from phases.manifests import now_rfc3339_nano


def request_reconcile(kube: KubeClient, resource: ResourceType, name: str, namespace: str) -> str:
    """Annotate the object like `flux reconcile` does; returns the requestedAt token to wait for."""
    token = now_rfc3339_nano()
    kube.merge_patch(resource, name, {"metadata": {"annotations": {RECONCILE_ANNOTATION: token}}}, namespace)
    return token


RequestState = Literal["pending", "done", "failed"]


def request_state(obj: Mapping[str, Any], token: str) -> tuple[RequestState, str]:
    """Where reconcile request ``token`` stands, as ``flux reconcile`` judges it.

    Done once the controller recorded the token in ``lastHandledReconcileAt`` and Ready is True at the
    object's current generation; failed when, by then, Ready is False (the attempt for this request
    failed: waiting on would only run into the timeout).
    """
    if is_suspended(obj):
        return "failed", "suspended meanwhile: Flux ignores the request"
    status = obj.get("status")
    if not isinstance(status, dict) or status.get("lastHandledReconcileAt") != token:
        return "pending", "reconciliation requested, waiting for the controller"
    ready = condition(obj)
    if ready is None:
        return "pending", "waiting for the Ready condition"
    lag = generation_lag(obj, ready)
    if lag:
        return "pending", lag
    if ready.is_true:
        return "done", ready.message or ready.reason or "Ready"
    if ready.status == "False":
        return "failed", ready.message or ready.reason or "not ready"
    return "pending", ready.message or "reconciliation in progress"


def reconcile_state(
    kube: KubeClient, resource: ResourceType, name: str, namespace: str, token: str
) -> tuple[bool, str]:
    """(done, message) for a bootstrap wait: done once the controller handled ``token`` and the object is
    Ready. A failed attempt is not final here: the wait goes on (the controller retries) until its timeout,
    showing the failure's message."""
    obj = kube.get(resource, name, namespace)
    if obj is None:
        return False, f"{resource.kind} {namespace}/{name} not found"
    state, message = request_state(obj, token)
    return state == "done", message


def applied_revision(obj: dict[str, object]) -> str:
    status = obj.get("status")
    if not isinstance(status, dict):
        return ""
    return str(status.get("lastAppliedRevision") or (status.get("artifact") or {}).get("revision") or "")
