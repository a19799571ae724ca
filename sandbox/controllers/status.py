"""Status helpers shared by the controllers: conditions, timestamps, durations, merge patches."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sandbox.controllers.kube import JSON

READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
REQUESTED_AT_ANNOTATION: Final = "reconcile.fluxcd.io/requestedAt"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def now_rfc3339() -> str:
    """Kubernetes ``metav1.Time``: RFC 3339, UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string such as ``1h0m0s``, ``90s`` or ``0``; ValueError if malformed."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(body) or position == 0:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def generation(obj: Mapping[str, Any]) -> int:
    # The emulator bumps metadata.generation on spec changes; a missing value counts as the first.
    return int((obj.get("metadata") or {}).get("generation") or 1)


def annotation(obj: Mapping[str, Any], name: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(name)
    return None if value is None else str(value)


def condition(obj: Mapping[str, Any], type_: str) -> JSON | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(item, dict) and item.get("type") == type_:
            return item
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    ready = condition(obj, READY)
    return ready is not None and ready.get("status") == "True"


def set_condition(
    conditions: list[JSON],
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
) -> list[JSON]:
    """A copy of ``conditions`` with one condition set; lastTransitionTime moves only when status does."""
    result = [dict(item) for item in conditions if item.get("type") != type_]
    previous = next((item for item in conditions if item.get("type") == type_), None)
    transition = (
        str(previous["lastTransitionTime"])
        if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime")
        else now_rfc3339()
    )
    new: JSON = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        new["observedGeneration"] = observed_generation
    position = next((i for i, item in enumerate(conditions) if item.get("type") == type_), None)
    if position is None:
        # Flux keeps Ready first, the other ("abnormal") conditions after it.
        result.insert(0, new) if type_ == READY else result.append(new)
    else:
        result.insert(position, new)
    return result


def remove_condition(conditions: list[JSON], type_: str) -> list[JSON]:
    return [dict(item) for item in conditions if item.get("type") != type_]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, returning a new document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def changes_anything(live: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    return bool(merge_patch(dict(live), dict(patch)) != dict(live))


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> JSON:
    """A merge patch turning status ``old`` into ``new`` (top-level keys; removed keys become null)."""
    patch: JSON = {key: value for key, value in new.items() if old.get(key) != value}
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
