"""Controller machinery: shared informers (list + watch + cache), work queues, worker loops.

Modelled on client-go, scaled down: an informer lists a resource, then watches it from the
list's resourceVersion, re-listing after a 410 or any error; a resource whose CRD is not
installed yet (404) is retried quietly every resync. Handlers turn events into keys on a
controller's work queue; one worker per controller reconciles keys one at a time, and a
periodic resync re-queues every cached key so time-based work (intervals, retries) happens
without tight polling.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from phases.kube import KubeClient, KubeError, KubeGone, KubeNotFound, ResourceType, WatchEvent
from sandbox.controllers.kube import JSON, connect, object_key, split_key

# Server-side watch timeout: long enough to be cheap, short enough to notice a silent server.
WATCH_TIMEOUT_SECONDS: Final = 30
EventHandler = Callable[[str, JSON], None]


class WorkQueue:
    """A de-duplicating queue of keys with delayed adds; tracks in-flight work for idleness."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._ready: dict[str, None] = {}  # insertion-ordered set
        self._delayed: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._in_flight = 0
        self._closed = False

    def add(self, key: str, *, delay: float = 0.0) -> None:
        with self._condition:
            if self._closed:
                return
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._sequence), key))
            else:
                self._ready[key] = None
            self._condition.notify()

    def get(self, timeout: float) -> str | None:
        """The next ready key, or None after ``timeout`` seconds or once closed."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self._ready[heapq.heappop(self._delayed)[2]] = None
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    self._in_flight += 1
                    return key
                wait = deadline - now
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - now)
                if wait <= 0:
                    return None
                self._condition.wait(wait)
            return None

    def done(self) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify_all()

    def idle(self) -> bool:
        """No ready key and nothing being processed (delayed keys are future work, not pending)."""
        with self._condition:
            return not self._ready and self._in_flight == 0

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Informer:
    """Lists and watches one resource, keeps a cache of its objects, and calls handlers."""

    def __init__(
        self,
        kubeconfig: Path,
        rtype: ResourceType,
        *,
        stop: threading.Event,
        resync_seconds: float,
        label_selector: str | None = None,
    ) -> None:
        self.rtype = rtype
        self.label_selector = label_selector
        self._kubeconfig = kubeconfig
        self._stop = stop
        self._resync_seconds = resync_seconds
        self._handlers: list[EventHandler] = []
        self._cache: dict[str, JSON] = {}
        self._lock = threading.Lock()
        self._active_response: Any = None
        self._client: KubeClient | None = None
        self._last_problem = ""
        self.synced = threading.Event()
        self.installed = False
        self.log = logging.getLogger(f"sandbox.controllers.informer.{rtype.plural}")
        self.thread = threading.Thread(target=self._run, name=f"informer-{rtype.plural}", daemon=True)

    # -- cache access (any thread) -------------------------------------------------------------

    def add_handler(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def get(self, key: str) -> JSON | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._cache.values())

    def cached_keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def remember(self, obj: JSON) -> None:
        """Store an object we just wrote, so the next reconcile does not act on a stale copy."""
        key = object_key(obj)
        with self._lock:
            if not _is_older(obj, self._cache.get(key)):
                self._cache[key] = obj

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._client = connect(self._kubeconfig)
        self.thread.start()

    def interrupt(self) -> None:
        """Unblock a watch read so the thread notices ``stop`` promptly."""
        with self._lock:
            response = self._active_response
        if response is not None:
            _shutdown(response)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as error:  # never let the thread die: log, wait, re-list
                if not self._stop.is_set():
                    self._problem(f"unexpected error: {error!r}", exc_info=True)
                    self._stop.wait(self._resync_seconds)

    def _list_and_watch(self) -> None:
        assert self._client is not None
        try:
            items, version = self._client.list_with_version(self.rtype, label_selector=self.label_selector)
        except KubeNotFound:
            # The CRD is not installed (yet, or any more): nothing is served, so nothing exists.
            if self.installed:
                self.log.info("%s is no longer served", self.rtype.group_resource)
            self.installed = False
            self._replace_all([])
            self.synced.set()
            self._stop.wait(self._resync_seconds)
            return
        except KubeError as error:
            self._problem(f"list failed: {error.detail}")
            self._stop.wait(self._resync_seconds)
            return
        if not self.installed:
            self.log.debug("%s is served", self.rtype.group_resource)
        self.installed = True
        self._last_problem = ""
        self._replace_all(items)
        self.synced.set()
        while not self._stop.is_set():
            try:
                version = self._watch(version)
            except KubeError as error:
                # 410 Gone and 404 (the CRD went away) are routine: the re-list sorts them out.
                if not (isinstance(error, KubeGone | KubeNotFound) or self._stop.is_set()):
                    self._problem(f"watch failed: {error.detail}")
                    self._stop.wait(min(self._resync_seconds, 1.0))
                return  # re-list: after 410 Gone or an error the cache may have missed events

    def _watch(self, version: str) -> str:
        """Stream events from ``version`` until the server ends the watch; return the last version."""
        assert self._client is not None

        def opened(response: Any) -> None:
            with self._lock:
                self._active_response = response
            if self._stop.is_set():  # stop() ran before we registered: close it ourselves
                _shutdown(response)

        events = self._client.watch(
            self.rtype,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            label_selector=self.label_selector,
            opened=opened,
        )
        try:
            for event in events:  # ERROR events (410 Gone among them) raise their KubeError
                if self._stop.is_set():
                    break
                version = self._handle_event(event, version)
        finally:
            events.close()
            with self._lock:
                self._active_response = None
        return version

    def _handle_event(self, event: WatchEvent, version: str) -> str:
        obj = event.object
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if event.type == "BOOKMARK":
            return new_version
        key = object_key(obj)
        with self._lock:
            if event.type == "DELETED":
                self._cache.pop(key, None)
            elif not _is_older(obj, self._cache.get(key)):  # we may have remembered our own newer write
                self._cache[key] = obj
        self._dispatch("DELETED" if event.type == "DELETED" else "MODIFIED", obj)
        return new_version

    def _replace_all(self, items: list[JSON]) -> None:
        fresh = {object_key(obj): obj for obj in items}
        with self._lock:
            gone = [obj for key, obj in self._cache.items() if key not in fresh]
            self._cache = fresh
        for obj in gone:
            self._dispatch("DELETED", obj)
        for obj in fresh.values():
            self._dispatch("MODIFIED", obj)

    def _dispatch(self, kind: str, obj: JSON) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:
                self.log.exception("event handler failed")

    def _problem(self, message: str, *, exc_info: bool = False) -> None:
        # Repeated identical failures (an API server that is down) are logged once.
        if message != self._last_problem:
            self.log.warning("%s: %s", self.rtype.group_resource, message, exc_info=exc_info)
            self._last_problem = message


def _is_older(candidate: JSON, cached: JSON | None) -> bool:
    """True when ``cached`` is a later version of the same object than ``candidate``.

    resourceVersions are opaque in general; when both are integers (etcd's, and the emulator's)
    they are ordered, otherwise nothing is assumed and the candidate wins.
    """
    if cached is None:
        return False
    candidate_meta, cached_meta = candidate.get("metadata") or {}, cached.get("metadata") or {}
    if candidate_meta.get("uid") != cached_meta.get("uid"):
        return False  # a re-created object: the new one is what counts
    try:
        return int(str(cached_meta.get("resourceVersion"))) > int(str(candidate_meta.get("resourceVersion")))
    except (TypeError, ValueError):
        return False


def _shutdown(response: Any) -> None:
    """Unblock a read of ``response`` in another thread (urllib3 >= 2.3); best effort: the watch
    ends at its server timeout anyway."""
    try:
        response.shutdown()
    except Exception:
        logging.getLogger("sandbox.controllers").debug("could not interrupt a watch", exc_info=True)


class InformerRegistry:
    """One informer per (resource, selector), shared by every controller that needs it."""

    def __init__(self, kubeconfig: Path, stop: threading.Event, resync_seconds: float) -> None:
        self._kubeconfig = kubeconfig
        self._stop = stop
        self._resync_seconds = resync_seconds
        self._informers: dict[tuple[ResourceType, str | None], Informer] = {}

    def informer(self, rtype: ResourceType, *, label_selector: str | None = None) -> Informer:
        key = (rtype, label_selector)
        if key not in self._informers:
            self._informers[key] = Informer(
                self._kubeconfig,
                rtype,
                stop=self._stop,
                resync_seconds=self._resync_seconds,
                label_selector=label_selector,
            )
        return self._informers[key]

    def __iter__(self) -> Iterator[Informer]:
        return iter(self._informers.values())


@dataclass(frozen=True)
class ControllerContext:
    """What the controllers of one set share: the cluster, a work folder, the informers, the resync."""

    kubeconfig: Path
    workdir: Path
    informers: InformerRegistry
    resync_seconds: float


class Controller:
    """Reconciles the keys of one primary resource; subclasses implement ``reconcile``."""

    name: str = "controller"
    primary: ResourceType

    def __init__(self, context: ControllerContext) -> None:
        self.kubeconfig = context.kubeconfig
        self.workdir = context.workdir
        self.resync_seconds = context.resync_seconds
        self.log = logging.getLogger(f"sandbox.controllers.{self.name}")
        self.queue = WorkQueue()
        self.objects = context.informers.informer(self.primary)
        self.objects.add_handler(self._on_primary_event)
        self._informers = context.informers
        self._tombstones: dict[str, JSON] = {}
        self._tombstone_lock = threading.Lock()
        self._last_error: dict[str, str] = {}
        self._stop: threading.Event | None = None
        self._client: KubeClient | None = None
        self.thread = threading.Thread(target=self._work, name=f"controller-{self.name}", daemon=True)

    @property
    def client(self) -> KubeClient:
        assert self._client is not None, "controller not started"
        return self._client

    def informer(self, rtype: ResourceType, *, label_selector: str | None = None) -> Informer:
        return self._informers.informer(rtype, label_selector=label_selector)

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self._client = connect(self.kubeconfig)
        self.thread.start()

    def close(self) -> None:
        self.queue.close()
        if self._client is not None:
            self._client.close()

    def idle(self) -> bool:
        return self.objects.synced.is_set() and self.queue.idle()

    # -- hooks -----------------------------------------------------------------------------------

    def reconcile(self, key: str, obj: JSON) -> None:
        raise NotImplementedError

    def patch_status(self, key: str, patch: JSON) -> None:
        """Merge ``patch`` into the status of the primary object ``key`` and cache what the server says."""
        namespace, name = split_key(key)
        self.objects.remember(
            self.client.merge_patch(self.primary, name, {"status": patch}, namespace, subresource="status")
        )

    def finalize(self, key: str, last_seen: JSON) -> None:
        """Called once after an object was deleted (the last state we saw)."""

    # -- internals -------------------------------------------------------------------------------

    def _on_primary_event(self, kind: str, obj: JSON) -> None:
        key = object_key(obj)
        if kind == "DELETED":
            with self._tombstone_lock:
                self._tombstones[key] = obj
        self.queue.add(key)

    def _work(self) -> None:
        assert self._stop is not None
        next_resync = time.monotonic() + self.resync_seconds
        while not self._stop.is_set():
            key = self.queue.get(timeout=max(0.0, next_resync - time.monotonic()))
            if time.monotonic() >= next_resync:
                next_resync = time.monotonic() + self.resync_seconds
                for cached in self.objects.cached_keys():
                    self.queue.add(cached)
            if key is None:
                continue
            try:
                self._process(key)
            finally:
                self.queue.done()

    def _process(self, key: str) -> None:
        try:
            obj = self.objects.get(key)
            if obj is None:
                with self._tombstone_lock:
                    last_seen = self._tombstones.pop(key, None)
                if last_seen is not None:
                    self.finalize(key, last_seen)
                return
            with self._tombstone_lock:  # deleted and re-created before we got to it
                self._tombstones.pop(key, None)
            self.reconcile(key, obj)
            self._last_error.pop(key, None)
        except Exception as error:
            if self._stop is not None and self._stop.is_set():
                return  # clients are closing under us: not a failure worth reporting
            # Log each distinct failure once per object; the resync retries it.
            message = error.detail if isinstance(error, KubeError) else repr(error)
            if self._last_error.get(key) != message:
                self._last_error[key] = message
                self.log.warning(
                    "reconciling %s %s failed: %s",
                    self.primary.kind,
                    key,
                    message,
                    exc_info=not isinstance(error, KubeError),
                )
