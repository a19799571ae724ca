"""Keep a local copy of some resource types current with list + watch, the way client-go reflectors do.

One daemon thread per resource type: list (remember the list's resourceVersion), then watch from that
version with a long server-side timeout, resume after the timeout from the last version seen. Idle, that
costs one request per type every few minutes; there is no polling. Recovery:

* 410 Gone (the version was compacted) or a stream that ended before its timeout (a dropped connection,
  an API server restart): re-list, delivered as a full replacement, so nothing is lost or duplicated;
* the API server unreachable: report ``unreachable`` and retry with exponential backoff and jitter,
  keeping the last objects (the UI shows them as stale);
* the type not served (its CRD not installed): report ``missing``, deliver an empty list, re-check
  every ``missing_recheck`` seconds.

Deliveries are coalesced: a dispatcher thread hands ``on_changes`` at most one :class:`WatchBatch` per type
every ``coalesce_interval`` (50 ms), so an event burst becomes a few batches, not thousands of callbacks.
``on_changes`` runs on that dispatcher thread; a Textual app marshals it with ``call_from_thread``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from phases.kube import (
    KubeClient,
    KubeError,
    KubeGone,
    KubeNotFound,
    KubeResourceMissing,
    KubeUnreachable,
    ResourceType,
    WatchEvent,
)
from phases.resources import NodeKey, ResourceModel

__all__ = [
    "ResourceWatcher",
    "WatchBatch",
    "WatchState",
    "WatchStats",
    "WatchStatus",
    "apply_batch",
]

_log = logging.getLogger(__name__)

WatchState = Literal["ok", "unreachable", "missing", "error"]

DEFAULT_WATCH_TIMEOUT: Final = 240  # seconds a watch stays open before the server ends it and we resume
DEFAULT_COALESCE_INTERVAL: Final = 0.05
DEFAULT_MISSING_RECHECK: Final = 10.0
DEFAULT_BACKOFF_INITIAL: Final = 0.5
DEFAULT_BACKOFF_MAX: Final = 30.0
STOP_BUDGET: Final = 0.8  # stop() waits at most this long for threads, so it returns within a second
MIN_HEALTHY_WATCH: Final = 10.0  # a watch that lasted this long ends a run of early drops


@dataclass(frozen=True)
class WatchStatus:
    resource: ResourceType
    state: WatchState
    message: str = ""


@dataclass(frozen=True)
class WatchBatch:
    """What changed for one resource type since the last batch.

    Apply in order: ``objects`` first when it is not None (a full list: the type now holds exactly these),
    then ``events``. ``status`` is set when the type's watch state changed.
    """

    resource: ResourceType
    objects: tuple[dict[str, Any], ...] | None = None
    events: tuple[WatchEvent, ...] = ()
    status: WatchStatus | None = None

    @property
    def is_relist(self) -> bool:
        return self.objects is not None


@dataclass(frozen=True)
class WatchStats:
    """Counters since start(); ``requests`` is what a benchmark compares against a poller."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    batches: int = 0
    gone: int = 0  # 410s answered with a re-list
    drops: int = 0  # streams that ended before their timeout, answered with a re-list
    failures: int = 0  # failed lists/watches (unreachable, errors)

    @property
    def requests(self) -> int:
        return self.lists + self.watches


def apply_batch(model: ResourceModel, batch: WatchBatch) -> set[NodeKey]:
    """Apply ``batch`` to ``model`` (on the thread that owns the model); returns the keys to re-render."""
    kind = batch.resource.kind
    changed: set[NodeKey] = set()
    if batch.objects is not None:
        changed |= model.replace_kind(kind, batch.objects)
    for event in batch.events:
        if event.type == "DELETED":
            metadata = event.object.get("metadata") or {}
            changed |= model.delete(kind, metadata.get("namespace"), str(metadata.get("name", "")))
        elif event.type in ("ADDED", "MODIFIED"):
            changed |= model.upsert(event.object, kind)
    if batch.status is not None:
        model.set_source_state(kind, batch.status.state, batch.status.message)
    return changed


@dataclass
class _Pending:
    objects: list[dict[str, Any]] | None = None
    events: list[WatchEvent] = field(default_factory=list)
    status: WatchStatus | None = None


class _Backoff:
    """Exponential backoff with jitter, so many clients do not retry in lockstep after an outage."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        base = min(self.maximum, self.initial * 2.0 ** (self.failures - 1))
        return base * random.uniform(0.5, 1.0)  # noqa: S311  # jitter, not security

    def reset(self) -> None:
        self.failures = 0


class ResourceWatcher:
    """Watch ``resources`` and report changes to ``on_changes`` as :class:`WatchBatch` es."""

    def __init__(
        self,
        kube: KubeClient,
        resources: Sequence[ResourceType],
        on_changes: Callable[[WatchBatch], None],
        *,
        namespace: str | None = None,
        watch_timeout: int = DEFAULT_WATCH_TIMEOUT,
        coalesce_interval: float = DEFAULT_COALESCE_INTERVAL,
        missing_recheck: float = DEFAULT_MISSING_RECHECK,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ) -> None:
        self.kube = kube
        self.resources = tuple(dict.fromkeys(resources))
        self.on_changes = on_changes
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self.coalesce_interval = coalesce_interval
        self.missing_recheck = missing_recheck
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._stop = threading.Event()
        # One per type: retry_now() cuts a type's back-off or "not installed" wait short.
        self._wake = {resource: threading.Event() for resource in self.resources}
        self._cond = threading.Condition()
        self._pending: dict[ResourceType, _Pending] = {}
        self._last_delivery: dict[ResourceType, float] = {}
        self._reported: dict[ResourceType, tuple[WatchState, str]] = {}
        self._streams: dict[ResourceType, Any] = {}  # the open watch responses
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._stats: dict[str, int] = dict.fromkeys(WatchStats.__dataclass_fields__, 0)
        self._stats_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("this ResourceWatcher was already started")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="watch-dispatch", daemon=True)
        self._threads.append(self._dispatcher)
        for resource in self.resources:
            self._threads.append(
                threading.Thread(
                    target=self._watch_loop, args=(resource,), name=f"watch-{resource.plural}", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop watching; returns within a second and starts no further batch.

        A batch the dispatcher was already handing to ``on_changes`` may still complete: stop() does not
        wait for it, because the callback may be blocked on the very thread calling stop()
        (``call_from_thread`` from the UI thread), which would deadlock.
        """
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        with self._cond:
            self._pending.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + STOP_BUDGET
        current = threading.current_thread()
        workers = [t for t in self._threads if t is not current and t is not self._dispatcher]
        # Interrupt again while waiting: a stream may only now have received its response to shut.
        while workers and time.monotonic() < deadline:
            for response in list(self._streams.values()):
                _interrupt(response)
            workers[0].join(min(0.05, max(0.0, deadline - time.monotonic())))
            workers = [t for t in workers if t.is_alive()]

    def retry_now(self) -> None:
        """Re-check the types that are missing or unreachable now (e.g. after a phase installed a CRD)."""
        for wake in self._wake.values():
            wake.set()

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def stats(self) -> WatchStats:
        with self._stats_lock:
            return WatchStats(**self._stats)

    def status(self, resource: ResourceType) -> WatchStatus | None:
        """The last state reported for ``resource`` (None before its first list finished)."""
        reported = self._reported.get(resource)
        return None if reported is None else WatchStatus(resource, *reported)

    # -- one thread per resource type --------------------------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += amount

    def _watch_loop(self, resource: ResourceType) -> None:
        failures = _Backoff(self.backoff_initial, self.backoff_max)  # unreachable / errors
        drops = _Backoff(self.backoff_initial, self.backoff_max)  # streams the server keeps closing early
        version = ""
        need_list = True
        while not self._stop.is_set():
            delay = 0.0
            try:
                if need_list:
                    self._count("lists")
                    items, version = self.kube.list_with_version(resource, self.namespace)
                    if self._stop.is_set():
                        return
                    self._push(resource, objects=items, status=WatchStatus(resource, "ok"))
                    need_list = False
                    failures.reset()
                version, ended_early, elapsed = self._watch_once(resource, version)
                if elapsed >= MIN_HEALTHY_WATCH:
                    drops.reset()
                if ended_early and not self._stop.is_set():
                    self._count("drops")
                    need_list = True
                    # Re-list at once after a drop, but do not spin on a server that keeps closing at once.
                    delay = drops.next_delay() if drops.failures else 0.0
                    drops.failures = max(drops.failures, 1)
            except KubeGone:
                self._count("gone")
                need_list = True
            except KubeResourceMissing as error:
                self._count("failures")
                need_list = True
                newly_missing = self._reported.get(resource, ("ok", ""))[0] != "missing"
                # The type has no objects now; say so once, not on every re-check.
                objects: list[dict[str, Any]] | None = [] if newly_missing else None
                self._push(resource, objects=objects, status=WatchStatus(resource, "missing", str(error)))
                delay = self.missing_recheck
            except KubeNotFound:  # the CRD went away mid-watch; the re-list reports "missing"
                need_list = True
            except KubeUnreachable as error:
                self._count("failures")
                if need_list:  # only a failed list means the server is unreachable; a broken watch re-lists
                    self._push(resource, status=WatchStatus(resource, "unreachable", str(error)))
                    delay = failures.next_delay()
                need_list = True
            except KubeError as error:
                self._count("failures")
                need_list = True
                self._push(resource, status=WatchStatus(resource, "error", str(error)))
                delay = failures.next_delay()
            except Exception as error:  # a bug must not end the thread and leave the type frozen
                _log.exception("watching %s failed", resource.plural)
                self._count("failures")
                need_list = True
                self._push(resource, status=WatchStatus(resource, "error", f"internal error: {error}"))
                delay = failures.next_delay()
            if delay:
                self._wake[resource].wait(delay)
                self._wake[resource].clear()
                if self._stop.is_set():
                    return

    def _watch_once(self, resource: ResourceType, version: str) -> tuple[str, bool, float]:
        """Stream one watch: (last resourceVersion seen, ended before its timeout, seconds it lasted)."""
        # Spread re-watches of many types (and many clients) instead of renewing them all at once.
        timeout = max(1, round(self.watch_timeout * random.uniform(0.8, 1.0)))  # noqa: S311  # not security
        self._count("watches")
        started = time.monotonic()

        def opened(response: Any) -> None:  # kept so stop() can shut the socket a read blocks on
            self._streams[resource] = response
            if self._stop.is_set():
                _interrupt(response)

        stream = self.kube.watch(
            resource, self.namespace, resource_version=version, timeout_seconds=timeout, opened=opened
        )
        try:
            for event in stream:
                if self._stop.is_set():
                    break
                metadata = event.object.get("metadata") or {}
                version = str(metadata.get("resourceVersion") or version)
                if event.type != "BOOKMARK":
                    self._count("events")
                    self._push(resource, event=event)
        finally:
            self._streams.pop(resource, None)
        elapsed = time.monotonic() - started
        return version, elapsed < timeout - min(5.0, timeout * 0.1), elapsed

    # -- coalescing and delivery -------------------------------------------------------------------------

    def _push(
        self,
        resource: ResourceType,
        *,
        objects: list[dict[str, Any]] | None = None,
        event: WatchEvent | None = None,
        status: WatchStatus | None = None,
    ) -> None:
        with self._cond:
            if self._stop.is_set():
                return
            if status is not None:
                reported = (status.state, status.message)
                if self._reported.get(resource) == reported:
                    status = None
                else:
                    self._reported[resource] = reported
            if objects is None and event is None and status is None:
                return
            pending = self._pending.setdefault(resource, _Pending())
            if objects is not None:
                pending.objects = objects  # a full list supersedes whatever was waiting
                pending.events.clear()
            if event is not None:
                pending.events.append(event)
            if status is not None:
                pending.status = status
            self._cond.notify()

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                batches = self._due_batches()
                while not batches and not self._stop.is_set():
                    self._cond.wait(self._wait_time())
                    batches = self._due_batches()
                if self._stop.is_set():
                    return
            for batch in batches:
                if self._stop.is_set():
                    return
                self._count("batches")
                try:
                    self.on_changes(batch)
                except Exception:  # the consumer's bug; keep delivering the other types
                    _log.exception("on_changes failed for a %s batch", batch.resource.plural)

    def _due_batches(self) -> list[WatchBatch]:
        """Pop the pending changes of every type whose last delivery is at least one interval ago."""
        now = time.monotonic()
        batches: list[WatchBatch] = []
        for resource in list(self._pending):
            if now - self._last_delivery.get(resource, -1e9) >= self.coalesce_interval:
                pending = self._pending.pop(resource)
                self._last_delivery[resource] = now
                batches.append(
                    WatchBatch(
                        resource=resource,
                        objects=tuple(pending.objects) if pending.objects is not None else None,
                        events=tuple(pending.events),
                        status=pending.status,
                    )
                )
        return batches

    def _wait_time(self) -> float | None:
        if not self._pending:
            return None
        now = time.monotonic()
        due = min(
            self._last_delivery.get(resource, -1e9) + self.coalesce_interval for resource in self._pending
        )
        return max(0.0, due - now)


def _interrupt(response: Any) -> None:
    """Unblock a thread reading a watch by shutting its HTTP response's socket (urllib3 >= 2.3).

    Best effort: when that fails the thread still ends when the server closes the stream (at most the
    watch timeout later), and it delivers nothing after stop().
    """
    try:
        shutdown = getattr(response, "shutdown", None)
        if callable(shutdown):
            shutdown()
    except Exception:  # interrupting is an optimisation; never let it break stop()
        _log.debug("could not interrupt a watch stream", exc_info=True)
