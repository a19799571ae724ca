"""Reading health from status the way the flux CLI and ESO do.

Flux: an object is Ready when its ``Ready`` condition is True *and* it was
observed at the object's current generation (otherwise the condition is stale).
ESO: an ExternalSecret is synced when ``Ready`` is True with reason
``SecretSynced``; a store is usable when ``Ready`` is True.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Health = Literal["ready", "not-ready", "progressing", "suspended", "unknown"]

RECONCILE_ANNOTATION = "reconcile.fluxcd.io/requestedAt"
FORCE_SYNC_ANNOTATION = "force-sync"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    observed_generation: int | None
    last_transition_time: str

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def conditions(obj: Mapping[str, Any]) -> list[Condition]:
    status = obj.get("status")
    raw = status.get("conditions") if isinstance(status, Mapping) else None
    if not isinstance(raw, list):
        return []
    parsed: list[Condition] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        generation = item.get("observedGeneration")
        parsed.append(
            Condition(
                type=str(item.get("type", "")),
                status=str(item.get("status", "Unknown")),
                reason=str(item.get("reason", "") or ""),
                message=str(item.get("message", "") or ""),
                observed_generation=generation if isinstance(generation, int) else None,
                last_transition_time=str(item.get("lastTransitionTime", "") or ""),
            )
        )
    return parsed


def condition(obj: Mapping[str, Any], kind: str = "Ready") -> Condition | None:
    return next((c for c in conditions(obj) if c.type == kind), None)


def generation(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("generation")
    return value if isinstance(value, int) else None


def observed_generation(obj: Mapping[str, Any]) -> int | None:
    status = obj.get("status")
    value = status.get("observedGeneration") if isinstance(status, Mapping) else None
    return value if isinstance(value, int) else None


def is_suspended(obj: Mapping[str, Any]) -> bool:
    spec = obj.get("spec")
    return bool(spec.get("suspend")) if isinstance(spec, Mapping) else False


def generation_lag(obj: Mapping[str, Any], ready: Condition) -> str:
    """Why ``ready`` speaks of an older generation than the object's, or "" when it is current."""
    wanted = generation(obj)
    seen = ready.observed_generation if ready.observed_generation is not None else observed_generation(obj)
    if wanted is not None and seen is not None and seen < wanted:
        return f"reconciliation in progress (generation {wanted}, observed {seen})"
    return ""


def flux_ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(ready, message) with the flux CLI's semantics, including the generation check."""
    ready = condition(obj)
    if ready is None:
        return False, "waiting to be reconciled"
    lag = generation_lag(obj, ready)
    if lag:
        return False, lag
    if not ready.is_true:
        return False, ready.message or ready.reason or "not ready"
    return True, ready.message or ready.reason


def externalsecret_synced(obj: Mapping[str, Any]) -> tuple[bool, str]:
    ready = condition(obj)
    if ready is None:
        return False, "not synced yet"
    if ready.is_true and ready.reason in ("SecretSynced", ""):
        return True, ready.message or "secret synced"
    return False, ready.message or ready.reason or "not synced"


def store_ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    ready = condition(obj)
    if ready is None:
        return False, "not validated yet"
    return ready.is_true, ready.message or ready.reason


def workload_ready(obj: Mapping[str, Any]) -> bool:
    """A Deployment or StatefulSet whose wanted replicas are all ready at its current generation."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    wanted = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0) or 0
    observed = status.get("observedGeneration")
    current = generation(obj)
    if current is not None and isinstance(observed, int) and observed < current:
        return False
    return bool(ready >= wanted)


def node_ready(obj: Mapping[str, Any]) -> bool:
    ready = condition(obj)
    return ready is not None and ready.is_true


def health_of(obj: Mapping[str, Any]) -> tuple[Health, str]:
    """A tree-friendly health and message for any object we show."""
    kind = str(obj.get("kind", ""))
    if kind in ("Kustomization", "GitRepository", "HelmRelease", "HelmRepository", "OCIRepository"):
        if is_suspended(obj):
            return "suspended", "suspended"
        ok, message = flux_ready(obj)
        if ok:
            return "ready", message
        ready = condition(obj)
        reconciling = condition(obj, "Reconciling")
        if ready is None or ready.status == "Unknown" or (reconciling is not None and reconciling.is_true):
            return "progressing", message
        if "in progress" in message:
            return "progressing", message
        return "not-ready", message
    if kind == "ExternalSecret":
        ok, message = externalsecret_synced(obj)
        if ok:
            return "ready", message
        return ("progressing" if condition(obj) is None else "not-ready"), message
    if kind in ("ClusterSecretStore", "SecretStore"):
        ok, message = store_ready(obj)
        if ok:
            return "ready", message
        return ("progressing" if condition(obj) is None else "not-ready"), message
    if kind in ("Deployment", "StatefulSet"):
        return ("ready", "available") if workload_ready(obj) else ("progressing", "replicas not ready")
    ready = condition(obj)
    if ready is None:
        return "unknown", ""
    return ("ready" if ready.is_true else "not-ready"), ready.message or ready.reason
