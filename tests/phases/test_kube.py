"""KubeClient's generic surface against the emulated API server over real HTTP.

The contract the sandbox's tools and controllers rely on as much as the phases do: any call
through ``request`` (decoded or streamed), errors that carry the server's own words and the
request, ``apply``/``ensure``, whole-status writes, filtered watches that another thread can end,
discovery through ``RestMapper``, and ``close()``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from phases.kube import (
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    SECRETS,
    KubeClient,
    KubeConflict,
    KubeError,
    KubeGone,
    KubeNoKindMatch,
    KubeNotFound,
    KubeResourceMissing,
    KubeUnreachable,
    ResourceType,
    RestMapper,
    WatchEvent,
    preload_client,
)
from sandbox.emulator import EmulatorThread, crd_manifest
from sandbox.ports import free_port

CONFIG_MAPS = ResourceType("v1", "ConfigMap", "configmaps")
WIDGETS = ResourceType("example.com/v1", "Widget", "widgets")
AGENT = "gitops-tui-test/kube"


@pytest.fixture
def kube(kubeconfig: Path) -> KubeClient:
    return KubeClient(kubeconfig, timeout=5, user_agent=AGENT)


def config_map(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def secret(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "stringData": {"key": "value"},
    }


def test_resource_types_name_their_group_version_and_api_resource() -> None:
    assert (SECRETS.group, SECRETS.version, SECRETS.group_resource) == ("", "v1", "secrets")
    assert (DEPLOYMENTS.group, DEPLOYMENTS.version) == ("apps", "v1")
    assert DEPLOYMENTS.group_resource == "deployments.apps"
    assert CRDS.group_resource == "customresourcedefinitions.apiextensions.k8s.io"


def test_request_sends_json_with_the_user_agent_and_decodes_the_answer(
    kube: KubeClient, emulator: EmulatorThread
) -> None:
    created = kube.request(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"t": "a"}}},
    )
    assert created["metadata"]["name"] == "team-a"
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})

    # A query as pairs (repeatable keys) or as a mapping.
    for query in ([("labelSelector", "t=a")], {"labelSelector": "t=a"}):
        listing = kube.request("GET", "/api/v1/namespaces", query=query)
        assert [item["metadata"]["name"] for item in listing["items"]] == ["team-a"]

    mine = [r for r in emulator.requests() if r.user_agent == AGENT]
    assert [(r.method, r.verb) for r in mine] == [("POST", "create"), ("GET", "list"), ("GET", "list")]
    assert mine[1].query == {"labelSelector": "t=a"}


def test_a_streamed_request_comes_back_unread(kube: KubeClient) -> None:
    response = kube.request("GET", "/version", stream=True)
    try:
        assert response.status == 200
        assert b"gitVersion" in response.data
    finally:
        response.release_conn()
    with pytest.raises(KubeNotFound):  # the status is checked before anything is streamed
        kube.request("GET", "/api/v1/namespaces/default/secrets/missing", stream=True)


def test_errors_carry_the_servers_message_and_the_request(kube: KubeClient) -> None:
    with pytest.raises(KubeNotFound) as missing:
        kube.request("GET", "/api/v1/namespaces/default/secrets/nope", what="the nope Secret")
    error = missing.value
    assert error.status == 404
    assert error.detail == 'secrets "nope" not found'
    assert str(error) == 'the nope Secret: secrets "nope" not found'
    assert error.method == "GET"
    assert error.url == f"{kube.server}/api/v1/namespaces/default/secrets/nope"

    kube.create(CONFIG_MAPS, config_map("twice", {}), "default")
    with pytest.raises(KubeConflict) as conflict:
        kube.create(CONFIG_MAPS, config_map("twice", {}), "default")
    assert conflict.value.status == 409
    assert conflict.value.detail == 'configmaps "twice" already exists'
    assert (conflict.value.method, conflict.value.url) == (
        "POST",
        f"{kube.server}/api/v1/namespaces/default/configmaps",
    )


def test_an_unreachable_server_is_reported_with_the_request(kubeconfig: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{free_port()}"
    closed = tmp_path / "closed-kubeconfig"
    closed.write_text(yaml.safe_dump(config), encoding="utf-8")
    kube = KubeClient(closed, timeout=2)

    with pytest.raises(KubeUnreachable) as refused:
        kube.get(SECRETS, "any", "default")
    error = refused.value
    assert error.status is None
    assert error.detail == "connection refused"
    assert str(error).endswith("unreachable: connection refused")
    assert error.method == "GET"
    assert error.url is not None and error.url.endswith("/api/v1/namespaces/default/secrets/any")

    with pytest.raises(KubeUnreachable) as no_config:
        KubeClient(tmp_path / "missing").get(SECRETS, "any", "default")
    assert no_config.value.url is None  # no request was sent
    assert no_config.value.detail == str(no_config.value)


def test_apply_says_what_it_did_and_ensure_whether_anything_changed(kube: KubeClient) -> None:
    created, outcome = kube.apply(CONFIG_MAPS, config_map("settings", {"a": "1"}))
    assert outcome == "created" and created["data"] == {"a": "1"}
    assert kube.apply(CONFIG_MAPS, config_map("settings", {"a": "1"}))[1] == "unchanged"
    configured, outcome = kube.apply(CONFIG_MAPS, config_map("settings", {"b": "2"}))
    assert outcome == "configured" and configured["data"] == {"a": "1", "b": "2"}  # a merge patch

    assert kube.ensure(CONFIG_MAPS, config_map("settings", {"b": "2"}))[1] is False
    assert kube.ensure(CONFIG_MAPS, config_map("settings", {"c": "3"}))[1] is True
    assert kube.ensure(CONFIG_MAPS, config_map("other", {}))[1] is True


def test_replace_status_drops_what_a_merge_patch_would_keep(kube: KubeClient) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }
    kube.create(DEPLOYMENTS, deployment, "default")
    ready = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    merged = kube.merge_patch(DEPLOYMENTS, "app", {"status": ready}, "default", subresource="status")
    assert merged["status"] == ready

    replaced = kube.replace_status(DEPLOYMENTS, "app", {"replicas": 2, "unavailableReplicas": 2}, "default")
    assert replaced["status"] == {"replicas": 2, "unavailableReplicas": 2}
    live = kube.get(DEPLOYMENTS, "app", "default")
    assert live is not None and live["status"] == {"replicas": 2, "unavailableReplicas": 2}
    assert live["spec"]["replicas"] == 2  # only the status subresource was written

    with pytest.raises(KubeNotFound):
        kube.replace_status(DEPLOYMENTS, "gone", {}, "default")


def test_a_watch_filters_by_label_and_another_thread_can_end_it(
    kube: KubeClient, emulator: EmulatorThread
) -> None:
    _, version = kube.list_with_version(SECRETS, "default")
    responses: list[Any] = []
    events: list[WatchEvent] = []
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            for event in kube.watch(
                SECRETS,
                "default",
                resource_version=version,
                timeout_seconds=30,
                label_selector="team=a",
                opened=responses.append,
            ):
                events.append(event)
        except KubeError as error:  # a connection shut down mid-stream may read as "dropped"
            failures.append(error)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not responses and time.monotonic() < deadline:
        time.sleep(0.01)
    assert responses, "opened() was not called"
    emulator.create_object(secret("other", {"team": "b"}))
    emulator.create_object(secret("mine", {"team": "a"}))
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    responses[0].shutdown()  # what a stopping watcher does from its own thread
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 2  # not the 30 s server timeout
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "mine")]
    assert events[0].object["kind"] == "Secret"
    assert all(isinstance(failure, KubeUnreachable) for failure in failures)


def test_a_watch_from_a_compacted_version_is_gone(kube: KubeClient, emulator: EmulatorThread) -> None:
    _, version = kube.list_with_version(SECRETS, "default")
    emulator.create_object(secret("first", {}))
    emulator.create_object(secret("second", {}))
    emulator.emulator.compact()
    with pytest.raises(KubeGone) as gone:
        list(kube.watch(SECRETS, "default", resource_version=version, timeout_seconds=5))
    assert gone.value.status == 410


def test_the_rest_mapper_follows_discovery_as_crds_come_and_go(
    kube: KubeClient, emulator: EmulatorThread
) -> None:
    now = [100.0]
    mapper = RestMapper(kube, clock=lambda: now[0])
    assert mapper.resource_for("v1", "ConfigMap") == CONFIG_MAPS
    assert mapper.resource_for("apps/v1", "Deployment") == DEPLOYMENTS
    assert mapper.resource_for("v1", "Namespace") == NAMESPACES

    with pytest.raises(KubeNoKindMatch) as unknown:
        mapper.resource_for("example.com/v1", "Widget")
    assert isinstance(unknown.value, KubeResourceMissing) and unknown.value.status == 404
    assert str(unknown.value) == 'no matches for kind "Widget" in version "example.com/v1"'
    assert (unknown.value.api_version, unknown.value.kind) == ("example.com/v1", "Widget")

    emulator.create_object(crd_manifest("example.com", "Widget", "widgets", ["v1"]))
    now[0] += 1  # a miss reads discovery again, unless it just did
    assert mapper.resource_for("example.com/v1", "Widget") == WIDGETS

    discovery_reads = len([r for r in emulator.requests() if r.path == "/apis/example.com/v1"])
    assert mapper.resource_for("example.com/v1", "Widget") == WIDGETS  # cached
    assert len([r for r in emulator.requests() if r.path == "/apis/example.com/v1"]) == discovery_reads
    mapper.invalidate()
    assert mapper.resource_for("example.com/v1", "Widget") == WIDGETS
    assert len([r for r in emulator.requests() if r.path == "/apis/example.com/v1"]) == discovery_reads + 1


def test_close_drops_every_threads_connections_and_the_client_reconnects(kube: KubeClient) -> None:
    preload_client()  # harmless when already imported
    kube.create(CONFIG_MAPS, config_map("shared", {}), "default")
    seen: list[Any] = []
    worker = threading.Thread(target=lambda: seen.append(kube.get(CONFIG_MAPS, "shared", "default")))
    worker.start()
    worker.join(10)
    assert seen and seen[0] is not None
    kube.close()
    kube.close()
    assert kube.get(CONFIG_MAPS, "shared", "default") is not None
