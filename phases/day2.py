"""Day-2 actions with the flux CLI's semantics: suspend, resume, reconcile (optionally with its source),
bulk suspend/resume of Kustomizations, and ExternalSecret force-sync.

UI-free and blocking: the app runs each call in a worker thread. A call makes its mutating requests
through the given :class:`~phases.kube.KubeClient` (so they carry its ``gitops-tui/…`` user agent), then
polls the object until its controller reports, passing every new status line to ``progress``. A wait
ends after ``timeout`` seconds with a message naming what it waited for, or as soon as ``cancel`` is set.
Expected failures (not found, an API error, the controller reporting a failure, a timeout, a cancel) come
back as an :class:`ActionResult`, never as an exception, so the UI and the audit log handle one type.
Reconciling a suspended object is refused with a :class:`SuspendedObject` result (the controller would
ignore the request and a naive wait would hang), which the UI turns into "resume and reconcile?".

Nothing here reads a Secret: force-sync only annotates the ExternalSecret and reads its status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from phases.audit import AuditLog, current_actor
from phases.config import EngineConfig
from phases.errors import GitOpsError
from phases.flux import RequestState, applied_revision, request_state
from phases.health import (
    FORCE_SYNC_ANNOTATION,
    RECONCILE_ANNOTATION,
    Condition,
    condition,
    is_suspended,
)
from phases.kube import (
    EXTERNAL_SECRETS,
    GIT_REPOSITORIES,
    HELM_RELEASES,
    KUSTOMIZATIONS,
    KubeClient,
    ResourceType,
)
from phases.manifests import now_rfc3339_nano
from phases.resources import (
    EXTERNAL_SECRET,
    GIT_REPOSITORY,
    HELM_RELEASE,
    KUSTOMIZATION,
    NodeKey,
    ResourceModel,
    key_matches,
)

_log = logging.getLogger(__name__)

Action = Literal["suspend", "resume", "reconcile", "reconcile-with-source", "force-sync"]
BulkAction = Literal["suspend", "resume"]
Outcome = Literal["succeeded", "failed", "timed-out", "cancelled", "suspended"]
Progress = Callable[[str], None]
_WaitState = RequestState
_Probe = Callable[[], tuple[_WaitState, str, dict[str, Any] | None]]

ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
SUSPEND_REASON_ANNOTATION: Final = "gitops-tui/suspend-reason"
SUSPENDED_BY_ANNOTATION: Final = "gitops-tui/suspended-by"
SUSPENDED_AT_ANNOTATION: Final = "gitops-tui/suspended-at"
SUSPEND_ANNOTATIONS: Final = (SUSPEND_REASON_ANNOTATION, SUSPENDED_BY_ANNOTATION, SUSPENDED_AT_ANNOTATION)
MAX_REASON_LENGTH: Final = 500

DEFAULT_WAIT_TIMEOUT: Final = EngineConfig.wait_timeout
DEFAULT_POLL_INTERVAL: Final = EngineConfig.poll_interval
# ESO writes no "request handled" marker: an ExternalSecret that was already failing and fails the same
# way again shows no change, so after this long the unchanged error is the answer.
STILL_FAILING_AFTER: Final = 10.0

RESOURCE_TYPES: Final[Mapping[str, ResourceType]] = {
    KUSTOMIZATION: KUSTOMIZATIONS,
    HELM_RELEASE: HELM_RELEASES,
    GIT_REPOSITORY: GIT_REPOSITORIES,
    EXTERNAL_SECRET: EXTERNAL_SECRETS,
}
_FLUX_TARGETS: Final = frozenset({KUSTOMIZATION, HELM_RELEASE, GIT_REPOSITORY})
ACTION_KINDS: Final[Mapping[Action, frozenset[str]]] = {
    "suspend": _FLUX_TARGETS,
    "resume": _FLUX_TARGETS,
    "reconcile": _FLUX_TARGETS,
    "reconcile-with-source": frozenset({KUSTOMIZATION, HELM_RELEASE}),
    "force-sync": frozenset({EXTERNAL_SECRET}),
}
_TITLES: Final[Mapping[Action, str]] = {
    "suspend": "Suspend",
    "resume": "Resume",
    "reconcile": "Reconcile",
    "reconcile-with-source": "Reconcile with source",
    "force-sync": "Force-sync",
}
_PLURALS: Final[Mapping[str, str]] = {
    KUSTOMIZATION: "Kustomizations",
    HELM_RELEASE: "HelmReleases",
    GIT_REPOSITORY: "GitRepositories",
    EXTERNAL_SECRET: "ExternalSecrets",
}


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionResult:
    """What one action did to one object. ``ok`` is True exactly when ``outcome`` is ``succeeded``."""

    action: Action
    key: NodeKey
    ok: bool
    message: str
    revision: str = ""  # the applied revision (Flux), when the object reports one
    duration: float = 0.0  # seconds, API calls and wait included
    outcome: Outcome = "succeeded"

    def __post_init__(self) -> None:
        if self.ok != (self.outcome == "succeeded"):
            raise ValueError(f"ok={self.ok} contradicts outcome {self.outcome!r}")

    @property
    def target(self) -> str:
        return describe_key(self.key)

    @property
    def summary(self) -> str:
        """One line for the log: ``Reconcile Kustomization flux-system/apps: <message>``."""
        return f"{_TITLES[self.action]} {self.target}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class SuspendedObject(ActionResult):
    """Nothing was done: ``suspended_key`` (the object itself, or its source for ``W``) is suspended.

    Offer "resume and reconcile": the same call again with ``resume_suspended=True``.
    """

    suspended_key: NodeKey
    ok: bool = False
    outcome: Outcome = "suspended"


def applies_to(action: Action, kind: str) -> bool:
    """Whether ``action`` can target an object of ``kind`` (for greying out keys)."""
    return kind in ACTION_KINDS[action]


def describe_key(key: NodeKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def revision_of(obj: Mapping[str, Any]) -> str:
    """The revision an object reports: lastAppliedRevision, the artifact's, or a release's chart version."""
    revision = applied_revision(dict(obj))
    if revision or obj.get("kind") != HELM_RELEASE:
        return revision
    status = _dict(obj.get("status"))
    history = status.get("history")
    if isinstance(history, list) and history and isinstance(history[0], dict):
        revision = str(history[0].get("chartVersion") or "")
    return revision or str(status.get("lastAttemptedRevision") or "")


# -- describing an action before it runs ---------------------------------------------------------------------


def describe(
    action: Action,
    keys: Sequence[NodeKey],
    *,
    reason: str | None = None,
    actor: str | None = None,
    model: ResourceModel | None = None,
    resume_suspended: bool = False,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
) -> tuple[str, list[str]]:
    """The confirmation's title and the API calls ``action`` on ``keys`` will make, in order.

    ``model`` (the tree's) names each object's source for ``reconcile-with-source`` and says which
    objects are suspended when ``resume_suspended`` is set. Several keys describe :func:`bulk`.
    """
    if not keys:
        raise ValueError("nothing to describe: no objects")
    for key in keys:
        _check_target(action, key)
    if len(keys) > 1 and action not in get_args(BulkAction):
        raise ValueError(f"{action} acts on one object at a time")
    title = f"{_TITLES[action]} {describe_key(keys[0]) if len(keys) == 1 else _count(keys)}"
    if action == "reconcile-with-source":
        title = f"Reconcile {describe_key(keys[0])} and its source"
    limit = f"(up to {timeout:g} s)"
    calls: list[str] = []
    if action == "suspend":
        text = _clean_reason(reason)
        for key in keys:
            call = f"PATCH {describe_key(key)} spec.suspend=true"
            if text:
                call += (
                    f", metadata.annotations[{SUSPEND_REASON_ANNOTATION}]={_quoted(text)}"
                    f", [{SUSPENDED_BY_ANNOTATION}]={actor or '<you>'}, [{SUSPENDED_AT_ANNOTATION}]=<now>"
                )
            calls.append(call)
    elif action == "resume":
        calls += [_resume_patch_text(key) for key in keys]
        calls += [f"GET {describe_key(key)} until {_handled_text()} {limit}" for key in keys]
    elif action == "reconcile":
        calls += _reconcile_calls(keys[0], resume_suspended and _suspended_in(model, keys[0]), limit)
    elif action == "reconcile-with-source":
        key = keys[0]
        source = _source_in(model, key)
        if source is None:
            calls.append(
                f"GET {describe_key(key)} for its sourceRef, then PATCH that GitRepository's metadata."
                f"annotations[{RECONCILE_ANNOTATION}]=<now> and GET it until {_handled_text()} {limit}"
            )
        elif source[0] != GIT_REPOSITORY:
            return title, [
                f"nothing: the source is a {source[0]}, and only GitRepository sources are supported"
            ]
        else:
            calls += _reconcile_calls(source, resume_suspended and _suspended_in(model, source), limit)
        calls += _reconcile_calls(key, resume_suspended and _suspended_in(model, key), limit)
    else:
        target = describe_key(keys[0])
        calls += [
            f"PATCH {target} metadata.annotations[{FORCE_SYNC_ANNOTATION}]=<now>",
            f"GET {target} until status.refreshTime changes (SecretSynced) or SecretSyncedError {limit}",
        ]
    return title, calls


def _count(keys: Sequence[NodeKey]) -> str:
    kinds = {key[0] for key in keys}
    noun = _PLURALS.get(next(iter(kinds)), "objects") if len(kinds) == 1 else "objects"
    return f"{len(keys)} {noun}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _handled_text() -> str:
    return "status.lastHandledReconcileAt=<now> and Ready=True at the current generation"


def _resume_patch_text(key: NodeKey) -> str:
    return (
        f"PATCH {describe_key(key)} spec.suspend=false, metadata.annotations[{RECONCILE_ANNOTATION}]=<now>, "
        "remove the gitops-tui/suspend-* annotations if present"
    )


def _reconcile_calls(key: NodeKey, resume: bool, limit: str) -> list[str]:
    patch = (
        _resume_patch_text(key)
        if resume
        else f"PATCH {describe_key(key)} metadata.annotations[{RECONCILE_ANNOTATION}]=<now>"
    )
    return [patch, f"GET {describe_key(key)} until {_handled_text()} {limit}"]


def _suspended_in(model: ResourceModel | None, key: NodeKey) -> bool:
    node = model.get(key) if model is not None else None
    return node is not None and node.suspended


def _source_in(model: ResourceModel | None, key: NodeKey) -> NodeKey | None:
    node = model.get(key) if model is not None else None
    return node.source_ref if node is not None else None


# -- the actions ---------------------------------------------------------------------------------------------


def suspend(
    kube: KubeClient,
    key: NodeKey,
    *,
    reason: str | None,
    actor: str,
    audit: AuditLog | None = None,
    progress: Progress | None = None,
) -> ActionResult:
    """``flux suspend``: merge-patch ``spec.suspend=true``; with a reason, annotate reason, who and when."""
    _check_target("suspend", key)
    result = _suspend(kube, key, _clean_reason(reason), actor, _started())
    return _finish(result, audit, progress, reason=_clean_reason(reason))


def resume(
    kube: KubeClient,
    key: NodeKey,
    *,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = DEFAULT_POLL_INTERVAL,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    audit: AuditLog | None = None,
) -> ActionResult:
    """``flux resume``: ``spec.suspend=false`` and a reconcile request in one patch, then wait until the
    controller handled the request with Ready at the new generation; reports the applied revision."""
    _check_target("resume", key)
    waiter = _Waiter(timeout, interval, progress, cancel)
    return _finish(_resume(kube, [key], waiter)[0], audit, progress)


def reconcile(
    kube: KubeClient,
    key: NodeKey,
    *,
    resume_suspended: bool = False,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = DEFAULT_POLL_INTERVAL,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    audit: AuditLog | None = None,
) -> ActionResult:
    """``flux reconcile``: annotate ``requestedAt``, wait for ``lastHandledReconcileAt`` and Ready.

    A suspended object gives :class:`SuspendedObject` and no call is made; with ``resume_suspended`` it
    is resumed instead (a :func:`resume`, reported as such).
    """
    _check_target("reconcile", key)
    waiter = _Waiter(timeout, interval, progress, cancel)
    started = _started()
    result = _reconcile_flux(kube, key, "reconcile", resume_suspended, waiter, started)
    return _finish(result, audit, progress)


def reconcile_with_source(
    kube: KubeClient,
    key: NodeKey,
    *,
    resume_suspended: bool = False,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = DEFAULT_POLL_INTERVAL,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    audit: AuditLog | None = None,
) -> ActionResult:
    """``flux reconcile … --with-source``: the GitRepository in ``sourceRef`` first (awaited), then the
    object. Either one suspended gives :class:`SuspendedObject` unless ``resume_suspended``."""
    _check_target("reconcile-with-source", key)
    waiter = _Waiter(timeout, interval, progress, cancel)
    result = _reconcile_with_source(kube, key, resume_suspended, waiter, _started())
    return _finish(result, audit, progress)


def force_sync(
    kube: KubeClient,
    key: NodeKey,
    *,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = DEFAULT_POLL_INTERVAL,
    still_failing_after: float = STILL_FAILING_AFTER,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    audit: AuditLog | None = None,
) -> ActionResult:
    """ESO force-sync: a new ``force-sync`` annotation value, then wait until ``status.refreshTime``
    changes (SecretSynced) or the sync fails (the SecretSyncedError message)."""
    _check_target("force-sync", key)
    waiter = _Waiter(timeout, interval, progress, cancel)
    result = _force_sync(kube, key, still_failing_after, waiter, _started())
    return _finish(result, audit, progress)


# -- bulk ----------------------------------------------------------------------------------------------------


def plan_bulk(
    source: ResourceModel | Iterable[Mapping[str, Any]], action: BulkAction, filter_text: str = ""
) -> list[NodeKey]:
    """The Kustomizations a bulk ``action`` would change: all of them, or those matching the tree's filter
    (:func:`key_matches`), leaving out those already suspended (suspend) or not suspended (resume)."""
    if action not in get_args(BulkAction):
        raise ValueError(f"no bulk {action}")
    states: list[tuple[NodeKey, bool]]
    if isinstance(source, ResourceModel):
        states = [(node.key, node.suspended) for node in source.nodes(KUSTOMIZATION)]
    else:
        states = [
            (
                (KUSTOMIZATION, str(meta.get("namespace") or ""), str(meta.get("name") or "")),
                is_suspended(obj),
            )
            for obj in source
            if obj.get("kind", KUSTOMIZATION) == KUSTOMIZATION
            and isinstance(meta := obj.get("metadata"), dict)
            and meta.get("name")
        ]
    wanted_suspended = action == "resume"
    return sorted(
        key for key, suspended in states if suspended == wanted_suspended and key_matches(key, filter_text)
    )


def bulk(
    kube: KubeClient,
    keys: Sequence[NodeKey],
    action: BulkAction,
    *,
    reason: str | None = None,
    actor: str = "",
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    interval: float = DEFAULT_POLL_INTERVAL,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    audit: AuditLog | None = None,
) -> list[ActionResult]:
    """Suspend or resume each of ``keys``; one result per key, in order.

    Resume patches every object first and then waits for all of them together (one ``timeout`` for
    the lot), so dependent Kustomizations come up as fast as their dependencies allow. A cancel stops
    the remaining patches (their results say "not started") and the waits.
    """
    if action not in get_args(BulkAction):
        raise ValueError(f"no bulk {action}")
    for key in keys:
        _check_target(action, key)
    waiter = _Waiter(timeout, interval, progress, cancel)
    text = _clean_reason(reason)
    if action == "suspend":
        results = []
        for key in keys:
            if waiter.cancelled:
                results.append(_not_started(action, key))
            else:
                results.append(_suspend(kube, key, text, actor or current_actor(), _started()))
    else:
        results = _resume(kube, keys, waiter)
    return [
        _finish(result, audit, progress, reason=text if action == "suspend" else "") for result in results
    ]


# -- implementation ------------------------------------------------------------------------------------------


def _check_target(action: Action, key: NodeKey) -> None:
    if action not in ACTION_KINDS:
        raise ValueError(f"unknown action {action!r}")
    if not applies_to(action, key[0]):
        raise ValueError(
            f"{action} does not apply to {key[0]} (only {', '.join(sorted(ACTION_KINDS[action]))})"
        )


def _clean_reason(reason: str | None) -> str:
    """One line, trimmed and bounded: it becomes an annotation value shown in one-line UIs."""
    text = " ".join((reason or "").split())
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


def _started() -> float:
    return time.monotonic()


def _utc_now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _type_of(key: NodeKey) -> ResourceType:
    return RESOURCE_TYPES[key[0]]


def _get(kube: KubeClient, key: NodeKey) -> dict[str, Any] | None:
    return kube.get(_type_of(key), key[2], key[1] or None)


def _patch(kube: KubeClient, key: NodeKey, patch: Mapping[str, Any]) -> dict[str, Any]:
    return kube.merge_patch(_type_of(key), key[2], patch, key[1] or None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _annotations(obj: Mapping[str, Any]) -> dict[str, Any]:
    return _dict(_dict(obj.get("metadata")).get("annotations"))


def _result(
    action: Action, key: NodeKey, outcome: Outcome, message: str, started: float, revision: str = ""
) -> ActionResult:
    return ActionResult(
        action=action,
        key=key,
        ok=outcome == "succeeded",
        message=message,
        revision=revision,
        duration=time.monotonic() - started,
        outcome=outcome,
    )


def _not_found(action: Action, key: NodeKey, started: float) -> ActionResult:
    return _result(action, key, "failed", f"{describe_key(key)} not found", started)


def _not_started(action: Action, key: NodeKey) -> ActionResult:
    return _result(action, key, "cancelled", "not started: cancelled", time.monotonic())


def _finish(
    result: ActionResult, audit: AuditLog | None, progress: Progress | None, *, reason: str = ""
) -> ActionResult:
    """Report the result on the progress line and record it in the audit log."""
    if progress is not None:
        progress(result.summary)
    if audit is not None:
        kind, namespace, name = result.key
        try:
            audit.record(
                action=result.action,
                kind=kind,
                namespace=namespace,
                name=name,
                result=result.outcome,
                message=result.message,
                duration=result.duration,
                revision=result.revision,
                reason=reason,
            )
        except OSError as error:  # the action is done; losing its record must not hide its result
            _log.warning("audit log %s not written: %s", audit.path, error)
            if progress is not None:
                progress(f"warning: audit log {audit.path} not written: {error}")
    return result


def _suspend(kube: KubeClient, key: NodeKey, reason: str, actor: str, started: float) -> ActionResult:
    try:
        current = _get(kube, key)
        if current is None:
            return _not_found("suspend", key, started)
        annotations: dict[str, Any]
        if reason:
            annotations = {
                SUSPEND_REASON_ANNOTATION: reason,
                SUSPENDED_BY_ANNOTATION: actor,
                SUSPENDED_AT_ANNOTATION: _utc_now_rfc3339(),
            }
        else:  # no reason now: a stale one from an earlier suspend would mislead
            annotations = {name: None for name in SUSPEND_ANNOTATIONS if name in _annotations(current)}
        patch: dict[str, Any] = {"spec": {"suspend": True}}
        if annotations:
            patch["metadata"] = {"annotations": annotations}
        patched = _patch(kube, key, patch)
    except GitOpsError as error:
        return _result("suspend", key, "failed", str(error), started)
    message = "suspended" + (f" ({reason})" if reason else "")
    if is_suspended(current):
        message = "already suspended" + (f"; reason now: {reason}" if reason else "")
    return _result("suspend", key, "succeeded", message, started, revision_of(patched))


def _resume(kube: KubeClient, keys: Sequence[NodeKey], waiter: _Waiter) -> list[ActionResult]:
    """Unsuspend and request a reconcile of each key in one patch each, then await them all."""
    results: dict[NodeKey, ActionResult] = {}
    probes: dict[NodeKey, _Probe] = {}
    started: dict[NodeKey, float] = {}
    for key in keys:
        started[key] = _started()
        if waiter.cancelled:
            results[key] = _not_started("resume", key)
            continue
        try:
            current = _get(kube, key)
            if current is None:
                results[key] = _not_found("resume", key, started[key])
                continue
            token = now_rfc3339_nano()
            # One patch, so the controller never sees the object resumed without the request to await.
            annotations: dict[str, Any] = {RECONCILE_ANNOTATION: token}
            annotations |= {name: None for name in SUSPEND_ANNOTATIONS if name in _annotations(current)}
            _patch(kube, key, {"spec": {"suspend": False}, "metadata": {"annotations": annotations}})
        except GitOpsError as error:
            results[key] = _result("resume", key, "failed", str(error), started[key])
            continue
        waiter.say(f"{describe_key(key)}: resumed, reconciliation requested")
        probes[key] = _flux_probe(kube, key, token)
    waited = waiter.wait_all(probes, {key: f"{describe_key(key)} to reconcile" for key in probes})
    for key, end in waited.items():
        message = end.message if end.outcome != "succeeded" else f"resumed; {end.message}"
        revision = revision_of(end.obj) if end.obj is not None else ""
        results[key] = _result("resume", key, end.outcome, message, started[key], revision)
    return [results[key] for key in keys]


def _reconcile_flux(
    kube: KubeClient, key: NodeKey, action: Action, resume_suspended: bool, waiter: _Waiter, started: float
) -> ActionResult:
    """Request and await one reconcile of ``key`` (a suspended one: refused, or resumed)."""
    try:
        current = _get(kube, key)
        if current is None:
            return _not_found(action, key, started)
        if is_suspended(current):
            if resume_suspended:
                return _resume(kube, [key], waiter)[0]
            return _suspended(action, key, key, started)
        token = now_rfc3339_nano()
        _patch(kube, key, {"metadata": {"annotations": {RECONCILE_ANNOTATION: token}}})
    except GitOpsError as error:
        return _result(action, key, "failed", str(error), started)
    waiter.say(f"{describe_key(key)}: reconciliation requested")
    end = waiter.wait_all({key: _flux_probe(kube, key, token)}, {key: f"{describe_key(key)} to reconcile"})[
        key
    ]
    revision = revision_of(end.obj) if end.obj is not None else ""
    return _result(action, key, end.outcome, end.message, started, revision)


def _suspended(action: Action, key: NodeKey, suspended_key: NodeKey, started: float) -> SuspendedObject:
    which = "it" if suspended_key == key else f"its source {describe_key(suspended_key)}"
    return SuspendedObject(
        action=action,
        key=key,
        suspended_key=suspended_key,
        message=(
            f"{describe_key(suspended_key)} is suspended, so Flux would ignore the request: "
            f"resume {which} to reconcile"
        ),
        duration=time.monotonic() - started,
    )


def _reconcile_with_source(
    kube: KubeClient, key: NodeKey, resume_suspended: bool, waiter: _Waiter, started: float
) -> ActionResult:
    action: Action = "reconcile-with-source"
    try:
        current = _get(kube, key)
        if current is None:
            return _not_found(action, key, started)
        source = _git_source(current, key)
        if isinstance(source, str):
            return _result(action, key, "failed", source, started)
        source_obj = _get(kube, source)
    except GitOpsError as error:
        return _result(action, key, "failed", str(error), started)
    if source_obj is None:
        return _result(action, key, "failed", f"its source {describe_key(source)} not found", started)
    if not resume_suspended:  # refuse before touching anything, whichever of the two is suspended
        for suspended_key, obj in ((source, source_obj), (key, current)):
            if is_suspended(obj):
                return _suspended(action, key, suspended_key, started)
    first = _reconcile_flux(kube, source, action, resume_suspended, waiter, _started())
    if not first.ok:
        return _result(action, key, first.outcome, f"source {first.target}: {first.message}", started)
    second = _reconcile_flux(kube, key, action, resume_suspended, waiter, _started())
    message = f"{second.message} (source {describe_key(source)}: {first.revision or first.message})"
    return _result(action, key, second.outcome, message, started, second.revision)


def _git_source(obj: Mapping[str, Any], key: NodeKey) -> NodeKey | str:
    """The GitRepository a Kustomization's ``sourceRef`` (a HelmRelease's chart ``sourceRef``) names,
    or why there is none we can reconcile."""
    spec = _dict(obj.get("spec"))
    if key[0] == HELM_RELEASE:
        ref = _dict(_dict(spec.get("chart")).get("spec")).get("sourceRef") or spec.get("chartRef")
    else:
        ref = spec.get("sourceRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        return f"{describe_key(key)} has no sourceRef"
    kind = str(ref.get("kind") or GIT_REPOSITORY)
    if kind != GIT_REPOSITORY:
        return f"its source is a {kind}, and only GitRepository sources are supported"
    return (GIT_REPOSITORY, str(ref.get("namespace") or key[1]), str(ref["name"]))


def _force_sync(
    kube: KubeClient, key: NodeKey, still_failing_after: float, waiter: _Waiter, started: float
) -> ActionResult:
    action: Action = "force-sync"
    try:
        current = _get(kube, key)
        if current is None:
            return _not_found(action, key, started)
        _patch(kube, key, {"metadata": {"annotations": {FORCE_SYNC_ANNOTATION: now_rfc3339_nano()}}})
    except GitOpsError as error:
        return _result(action, key, "failed", str(error), started)
    waiter.say(f"{describe_key(key)}: sync requested")
    baseline = _SyncMarks.of(current)
    patched_at = time.monotonic()

    def probe() -> tuple[_WaitState, str, dict[str, Any] | None]:
        obj = _get(kube, key)
        if obj is None:
            return "failed", f"{describe_key(key)} was deleted", None
        state, message = baseline.judge(obj, time.monotonic() - patched_at >= still_failing_after)
        return state, message, obj

    end = waiter.wait_all({key: probe}, {key: f"{describe_key(key)} to sync"})[key]
    return _result(action, key, end.outcome, end.message, started)


@dataclass(frozen=True)
class _SyncMarks:
    """What an ExternalSecret's status said before a force-sync, to tell a new sync from the last one."""

    refresh_time: str
    synced_version: (
        str  # ESO's syncedResourceVersion: changes on a sync of new metadata, even within a second
    )
    ready: Condition | None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> _SyncMarks:
        status = _dict(obj.get("status"))
        return cls(
            str(status.get("refreshTime") or ""),
            str(status.get("syncedResourceVersion") or ""),
            condition(obj),
        )

    def judge(self, obj: Mapping[str, Any], grace_over: bool) -> tuple[_WaitState, str]:
        now = _SyncMarks.of(obj)
        ready = now.ready
        synced = (now.refresh_time, now.synced_version) != (self.refresh_time, self.synced_version)
        if synced and ready is not None and ready.is_true:
            return "done", f"{ready.reason or 'SecretSynced'}: {ready.message or 'secret synced'}"
        if ready is not None and ready.status == "False":
            error = f"{ready.reason or 'SecretSyncedError'}: {ready.message or 'sync failed'}"
            if ready != self.ready:
                return "failed", error
            if grace_over:
                return "failed", f"still failing: {error}"
            return "pending", f"waiting for the controller (last sync failed: {ready.message})"
        return "pending", "sync requested, waiting for the controller"


def _flux_probe(kube: KubeClient, key: NodeKey, token: str) -> _Probe:
    def probe() -> tuple[_WaitState, str, dict[str, Any] | None]:
        obj = _get(kube, key)
        if obj is None:
            return "failed", f"{describe_key(key)} was deleted", None
        state, message = request_state(obj, token)
        return state, message, obj

    return probe


@dataclass(frozen=True)
class _WaitEnd:
    outcome: Outcome
    message: str
    obj: dict[str, Any] | None


class _Waiter:
    """Polls probes until each is done or failed, the deadline passes, or ``cancel`` is set."""

    def __init__(
        self, timeout: float, interval: float, progress: Progress | None, cancel: threading.Event | None
    ) -> None:
        if timeout <= 0 or interval <= 0:
            raise ValueError("timeout and interval must be positive")
        self.timeout = timeout
        self.interval = interval
        self.progress = progress
        self.cancel = cancel or threading.Event()

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def wait_all(
        self, probes: Mapping[NodeKey, _Probe], what: Mapping[NodeKey, str]
    ) -> dict[NodeKey, _WaitEnd]:
        deadline = time.monotonic() + self.timeout
        pending = dict(probes)
        last: dict[NodeKey, str] = {}
        last_obj: dict[NodeKey, dict[str, Any] | None] = {}
        ends: dict[NodeKey, _WaitEnd] = {}
        while pending:
            for key, probe in list(pending.items()):
                try:
                    state, message, obj = probe()
                except GitOpsError as error:  # a transient API error: keep waiting, say why
                    state, message, obj = "pending", str(error), last_obj.get(key)
                last_obj[key] = obj
                if message and message != last.get(key):
                    self.say(f"{describe_key(key)}: {message}")
                    last[key] = message
                if state != "pending":
                    ends[key] = _WaitEnd("succeeded" if state == "done" else "failed", message, obj)
                    del pending[key]
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if self.cancelled or remaining <= 0:
                for key in pending:
                    ends[key] = self._gave_up(what[key], last.get(key, ""), last_obj.get(key))
                break
            self.cancel.wait(min(self.interval, remaining))
        return ends

    def _gave_up(self, what: str, last: str, obj: dict[str, Any] | None) -> _WaitEnd:
        status = last or "no status yet"
        if self.cancelled:
            return _WaitEnd(
                "cancelled",
                f"stopped waiting for {what} (the request stays; the controller still handles it): {status}",
                obj,
            )
        return _WaitEnd("timed-out", f"timed out after {self.timeout:g} s waiting for {what}: {status}", obj)


__all__ = [
    "ACTIONS",
    "ACTION_KINDS",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_WAIT_TIMEOUT",
    "RESOURCE_TYPES",
    "SUSPENDED_AT_ANNOTATION",
    "SUSPENDED_BY_ANNOTATION",
    "SUSPEND_ANNOTATIONS",
    "SUSPEND_REASON_ANNOTATION",
    "Action",
    "ActionResult",
    "BulkAction",
    "Outcome",
    "Progress",
    "SuspendedObject",
    "applies_to",
    "bulk",
    "describe",
    "describe_key",
    "force_sync",
    "plan_bulk",
    "reconcile",
    "reconcile_with_source",
    "resume",
    "revision_of",
    "suspend",
]
