"""ResourceWatcher against the emulated API server over real HTTP: list, watch, recovery, load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from phases.kube import EXTERNAL_SECRETS, KUSTOMIZATIONS, KubeClient, ResourceType
from phases.resources import EXTERNAL_SECRET, KUSTOMIZATION, ResourceModel
from phases.watch import ResourceWatcher, WatchBatch, apply_batch
from sandbox.emulator import EmulatorThread, crd_manifest

KUSTOMIZATION_CRD = crd_manifest("kustomize.toolkit.fluxcd.io", "Kustomization", "kustomizations", ["v1"])
EXTERNALSECRET_CRD = crd_manifest("external-secrets.io", "ExternalSecret", "externalsecrets", ["v1"])
NAMESPACE = "flux-system"


def kustomization(name: str) -> dict[str, Any]:
    return {
        "apiVersion": KUSTOMIZATIONS.api_version,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "interval": "10m",
            "path": f"./{name}",
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
        },
    }


class Recorder:
    """The watcher's callback: applies each batch to a model (as the app does) and lets tests wait."""

    def __init__(self) -> None:
        self.model = ResourceModel()
        self.batches: list[WatchBatch] = []
        self._cond = threading.Condition()

    def __call__(self, batch: WatchBatch) -> None:
        with self._cond:
            self.batches.append(batch)
            apply_batch(self.model, batch)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 8.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), f"timed out; batches: {self.batches}"

    def names(self, kind: str = KUSTOMIZATION) -> list[str]:
        with self._cond:
            return [node.name for node in self.model.nodes(kind)]

    def batches_for(self, resource: ResourceType) -> list[WatchBatch]:
        with self._cond:
            return [batch for batch in self.batches if batch.resource == resource]


@pytest.fixture
def kube(kubeconfig: Path) -> KubeClient:
    return KubeClient(kubeconfig, timeout=5)


@pytest.fixture
def flux_namespace(emulator: EmulatorThread) -> None:
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})


@pytest.fixture
def crds(emulator: EmulatorThread, flux_namespace: None) -> None:
    emulator.create_object(KUSTOMIZATION_CRD)
    emulator.create_object(EXTERNALSECRET_CRD)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def start_watcher(kube: KubeClient, recorder: Recorder) -> Iterator[Callable[..., ResourceWatcher]]:
    started: list[ResourceWatcher] = []

    def start(resources: tuple[ResourceType, ...] = (KUSTOMIZATIONS,), **options: Any) -> ResourceWatcher:
        watcher = ResourceWatcher(kube, resources, recorder, **options)
        watcher.start()
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def emulator_names(emulator: EmulatorThread) -> list[str]:
    objects = emulator.objects(KUSTOMIZATIONS.api_version, KUSTOMIZATIONS.plural, NAMESPACE)
    return sorted(obj["metadata"]["name"] for obj in objects)


def watch_requests(emulator: EmulatorThread) -> int:
    return sum(1 for request in emulator.requests() if request.verb == "watch")


def wait_for_watches(emulator: EmulatorThread, count: int) -> None:
    """Wait until ``count`` watch streams were opened (and registered: the loop has moved on)."""
    deadline = time.monotonic() + 5
    while watch_requests(emulator) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watch_requests(emulator) == count
    emulator.call(lambda: None)


@pytest.mark.usefixtures("crds")
def test_initial_list_is_delivered_as_one_full_batch_per_type(
    emulator: EmulatorThread,
    kube: KubeClient,
    recorder: Recorder,
    start_watcher: Callable[..., ResourceWatcher],
) -> None:
    for name in ("apps", "infra", "base"):
        kube.create(KUSTOMIZATIONS, kustomization(name), NAMESPACE)

    start_watcher((KUSTOMIZATIONS, EXTERNAL_SECRETS))
    recorder.wait_for(lambda: len(recorder.batches) >= 2)

    first = recorder.batches_for(KUSTOMIZATIONS)[0]
    assert first.is_relist
    assert sorted(obj["metadata"]["name"] for obj in first.objects or ()) == ["apps", "base", "infra"]
    assert first.status is not None and first.status.state == "ok"
    assert recorder.names() == ["apps", "base", "infra"]
    assert recorder.batches_for(EXTERNAL_SECRETS)[0].objects == ()
    assert recorder.model.source_state(EXTERNAL_SECRET) == ("ok", "")


@pytest.mark.usefixtures("crds")
def test_create_patch_and_delete_arrive_as_events_without_relisting(
    kube: KubeClient, recorder: Recorder, start_watcher: Callable[..., ResourceWatcher]
) -> None:
    kube.create(KUSTOMIZATIONS, kustomization("apps"), NAMESPACE)
    watcher = start_watcher()
    recorder.wait_for(lambda: recorder.names() == ["apps"])

    kube.create(KUSTOMIZATIONS, kustomization("infra"), NAMESPACE)
    recorder.wait_for(lambda: recorder.names() == ["apps", "infra"])

    ready = {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied"}
    kube.merge_patch(
        KUSTOMIZATIONS,
        "infra",
        {"status": {"conditions": [ready], "lastAppliedRevision": "main@sha1:" + "ab" * 20}},
        NAMESPACE,
        subresource="status",
    )
    key = (KUSTOMIZATION, NAMESPACE, "infra")
    recorder.wait_for(lambda: (node := recorder.model.get(key)) is not None and node.health == "ready")
    assert recorder.model.get(key).revision.startswith("main@sha1:abab")  # type: ignore[union-attr]

    kube.delete(KUSTOMIZATIONS, "apps", NAMESPACE)
    recorder.wait_for(lambda: recorder.names() == ["infra"])

    later = recorder.batches_for(KUSTOMIZATIONS)[1:]
    assert later and all(not batch.is_relist and batch.events for batch in later)
    assert [event.type for batch in later for event in batch.events] == ["ADDED", "MODIFIED", "DELETED"]
    assert watcher.stats().lists == 1


@pytest.mark.usefixtures("crds")
def test_dropped_watch_relists_with_no_duplicate_or_lost_object(
    emulator: EmulatorThread,
    kube: KubeClient,
    recorder: Recorder,
    start_watcher: Callable[..., ResourceWatcher],
) -> None:
    for name in ("apps", "infra", "base"):
        kube.create(KUSTOMIZATIONS, kustomization(name), NAMESPACE)
    watcher = start_watcher()
    recorder.wait_for(lambda: recorder.names() == ["apps", "base", "infra"])
    wait_for_watches(emulator, 1)

    assert emulator.emulator.drop_watches() == 1
    kube.create(KUSTOMIZATIONS, kustomization("late"), NAMESPACE)
    kube.delete(KUSTOMIZATIONS, "base", NAMESPACE)

    recorder.wait_for(lambda: recorder.names() == ["apps", "infra", "late"])
    assert recorder.names() == emulator_names(emulator)
    assert len(recorder.model.nodes(KUSTOMIZATION)) == 3
    stats = watcher.stats()
    assert stats.drops >= 1 and stats.lists >= 2
    assert sum(batch.is_relist for batch in recorder.batches_for(KUSTOMIZATIONS)) >= 2


@pytest.mark.usefixtures("crds")
def test_compacted_history_answers_410_with_a_relist(
    emulator: EmulatorThread,
    kube: KubeClient,
    recorder: Recorder,
    start_watcher: Callable[..., ResourceWatcher],
) -> None:
    kube.create(KUSTOMIZATIONS, kustomization("apps"), NAMESPACE)
    # Hold the first watch long enough to change the cluster and compact behind the watcher's back.
    emulator.emulator.inject_fault(status=None, delay=1.0, verb="watch", path_contains="kustomizations")
    watcher = start_watcher()
    recorder.wait_for(lambda: recorder.names() == ["apps"])

    kube.create(KUSTOMIZATIONS, kustomization("late"), NAMESPACE)
    emulator.emulator.compact()

    recorder.wait_for(lambda: recorder.names() == ["apps", "late"])
    stats = watcher.stats()
    assert stats.gone == 1
    assert stats.lists == 2
    assert recorder.batches_for(KUSTOMIZATIONS)[-1].is_relist


@pytest.mark.usefixtures("flux_namespace")
def test_missing_crd_reports_missing_then_ok_once_installed(
    emulator: EmulatorThread, recorder: Recorder, start_watcher: Callable[..., ResourceWatcher]
) -> None:
    start_watcher(missing_recheck=0.3)
    recorder.wait_for(lambda: recorder.model.source_state(KUSTOMIZATION)[0] == "missing")
    _state, message = recorder.model.source_state(KUSTOMIZATION)
    assert "Kustomization" in message
    time.sleep(0.8)  # several re-checks
    missing_batches = [
        b for b in recorder.batches_for(KUSTOMIZATIONS) if b.status and b.status.state == "missing"
    ]
    assert len(missing_batches) == 1  # reported once, not on every re-check

    emulator.create_object(KUSTOMIZATION_CRD)
    emulator.create_object(kustomization("apps"))
    recorder.wait_for(lambda: recorder.model.source_state(KUSTOMIZATION)[0] == "ok")
    recorder.wait_for(lambda: recorder.names() == ["apps"])


@pytest.mark.usefixtures("flux_namespace")
def test_retry_now_rechecks_a_missing_type_at_once(
    emulator: EmulatorThread, recorder: Recorder, start_watcher: Callable[..., ResourceWatcher]
) -> None:
    watcher = start_watcher(missing_recheck=300)  # without retry_now the next look is minutes away
    recorder.wait_for(lambda: recorder.model.source_state(KUSTOMIZATION)[0] == "missing")
    emulator.create_object(KUSTOMIZATION_CRD)
    emulator.create_object(kustomization("apps"))
    watcher.retry_now()
    recorder.wait_for(lambda: recorder.names() == ["apps"], timeout=5)
    assert recorder.model.source_state(KUSTOMIZATION)[0] == "ok"


@pytest.mark.usefixtures("crds")
def test_unreachable_api_server_is_reported(
    emulator: EmulatorThread,
    recorder: Recorder,
    start_watcher: Callable[..., ResourceWatcher],
) -> None:
    emulator.create_object(kustomization("apps"))
    watcher = start_watcher(backoff_initial=0.1, backoff_max=0.5)
    recorder.wait_for(lambda: recorder.names() == ["apps"])
    # A watch request still on its way when the server stops would hold its shutdown open.
    wait_for_watches(emulator, 1)

    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 5
    recorder.wait_for(lambda: recorder.model.source_state(KUSTOMIZATION)[0] == "unreachable")
    assert "unreachable" in recorder.model.source_state(KUSTOMIZATION)[1]
    assert recorder.names() == ["apps"]  # the last known objects stay, shown as stale
    status = watcher.status(KUSTOMIZATIONS)
    assert status is not None and status.state == "unreachable"


@pytest.mark.usefixtures("crds")
def test_idle_watch_makes_no_requests(
    emulator: EmulatorThread, recorder: Recorder, start_watcher: Callable[..., ResourceWatcher]
) -> None:
    watcher = start_watcher((KUSTOMIZATIONS, EXTERNAL_SECRETS))
    recorder.wait_for(lambda: len(recorder.batches) >= 2)
    wait_for_watches(emulator, 2)
    emulator.clear_requests()

    time.sleep(3)

    # A 1 s poller of two types would have made 6 list requests by now.
    assert emulator.requests() == []
    assert watcher.stats().requests == 4  # one list and one watch per type, in all


@pytest.mark.usefixtures("crds")
def test_bursts_are_coalesced_into_few_batches(
    emulator: EmulatorThread, recorder: Recorder, start_watcher: Callable[..., ResourceWatcher]
) -> None:
    start_watcher()
    recorder.wait_for(lambda: len(recorder.batches) >= 1)
    wait_for_watches(emulator, 1)
    names = [f"app-{index:02d}" for index in range(40)]

    def create_all() -> None:  # on the emulator's loop: one burst of 40 events
        for name in names:
            emulator.emulator.create_object(kustomization(name))

    emulator.call(create_all)
    recorder.wait_for(lambda: recorder.names() == names)
    event_batches = recorder.batches_for(KUSTOMIZATIONS)[1:]
    assert sum(len(batch.events) for batch in event_batches) == 40
    assert len(event_batches) <= 10


@pytest.mark.usefixtures("crds")
def test_stop_is_prompt_and_nothing_is_delivered_afterwards(
    emulator: EmulatorThread,
    kube: KubeClient,
    recorder: Recorder,
    start_watcher: Callable[..., ResourceWatcher],
) -> None:
    watcher = start_watcher((KUSTOMIZATIONS, EXTERNAL_SECRETS))
    recorder.wait_for(lambda: len(recorder.batches) >= 2)
    wait_for_watches(emulator, 2)  # both threads are now blocked reading their watch streams

    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 1.0
    workers = [t for t in watcher._threads if t.name != "watch-dispatch" and t.is_alive()]
    assert workers == []  # the blocked reads were interrupted, not left to time out

    count = len(recorder.batches)
    kube.create(KUSTOMIZATIONS, kustomization("after-stop"), NAMESPACE)
    time.sleep(0.3)
    assert len(recorder.batches) == count
    assert not watcher.running
