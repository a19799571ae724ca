"""Day-2 actions against a bootstrapped sandbox: emulated API, simulated Flux and ESO controllers, OpenBao.

The sandbox is bootstrapped once per module (in-process, as tests/e2e does); every test leaves the Flux
objects resumed and the fault list empty, whatever it did, so the tests do not depend on their order.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import hvac
import pytest

from phases.audit import AuditLog, read_audit
from phases.bootstrap import build_engine
from phases.config import Config, config_from_document
from phases.day2 import (
    SUSPEND_ANNOTATIONS,
    SUSPEND_REASON_ANNOTATION,
    SUSPENDED_AT_ANNOTATION,
    SUSPENDED_BY_ANNOTATION,
    ActionResult,
    SuspendedObject,
    bulk,
    describe,
    describe_key,
    force_sync,
    plan_bulk,
    reconcile,
    reconcile_with_source,
    resume,
    suspend,
)
from phases.events import RunFinished
from phases.flux import request_state
from phases.health import FORCE_SYNC_ANNOTATION, RECONCILE_ANNOTATION, flux_ready, is_suspended
from phases.kube import (
    EXTERNAL_SECRETS,
    GIT_REPOSITORIES,
    HELM_RELEASES,
    KUSTOMIZATIONS,
    SECRETS,
    USER_AGENT,
    KubeClient,
    ResourceType,
)
from phases.platform import Platform
from phases.resources import (
    EXTERNAL_SECRET,
    GIT_REPOSITORY,
    HELM_RELEASE,
    KUSTOMIZATION,
    NodeKey,
    ResourceModel,
)
from phases.secrets import SecretStore
from sandbox.demo import demo_secret_values
from sandbox.settings import config_overrides, sandbox_path_env
from sandbox.world import SandboxWorld
from tests.support import crds

NS = "flux-system"
APPS: NodeKey = (KUSTOMIZATION, NS, "production")
INFRA: NodeKey = (KUSTOMIZATION, NS, "flux-system")
REPO: NodeKey = (GIT_REPOSITORY, NS, "flux-system")
RELEASE: NodeKey = (HELM_RELEASE, NS, "podinfo")
MYAPP_SECRETS: NodeKey = (EXTERNAL_SECRET, "myapp", "myapp-secrets")
TYPES: dict[str, ResourceType] = {
    KUSTOMIZATION: KUSTOMIZATIONS,
    GIT_REPOSITORY: GIT_REPOSITORIES,
    HELM_RELEASE: HELM_RELEASES,
    EXTERNAL_SECRET: EXTERNAL_SECRETS,
}
CONTROLLERS_AGENT = "gitops-tui-sandbox/controllers"


class WaitOptions(TypedDict):
    timeout: float
    interval: float


FAST = WaitOptions(timeout=30.0, interval=0.05)  # the sandbox answers in well under a second


@dataclass
class Cluster:
    world: SandboxWorld
    config: Config
    kube: KubeClient  # the app's client: user agent gitops-tui/…
    test_client: KubeClient  # the test's own reads and set-ups

    def get(self, key: NodeKey) -> dict[str, Any]:
        obj = self.test_client.get(TYPES[key[0]], key[2], key[1])
        assert obj is not None, key
        return obj

    def patch(self, key: NodeKey, patch: dict[str, Any]) -> None:
        self.test_client.merge_patch(TYPES[key[0]], key[2], patch, key[1])

    def app_requests(self, *, mutating: bool = True) -> list[str]:
        return [
            f"{r.method} {r.path}"
            for r in self.world.emulator.requests()
            if r.user_agent.startswith(USER_AGENT) and (r.is_mutating or not mutating)
        ]

    def stall_controller(self, key: NodeKey) -> None:
        """The controller's status writes for ``key`` fail from now on, as with a wedged controller."""
        self.world.emulator.emulator.inject_fault(
            status=500,
            times=10**6,
            method="PATCH",
            path_contains=f"/{TYPES[key[0]].plural}/{key[2]}/status",
            user_agent_contains=CONTROLLERS_AGENT,
        )

    def vault(self) -> hvac.Client:
        platform = Platform(self.config)
        try:
            with platform.root_token().exposed() as token:
                return hvac.Client(url=platform.vault().address, token=bytes(token).decode())
        finally:
            platform.close()


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object minus what the server and the controllers change on their own."""
    result = copy.deepcopy(obj)
    result.pop("status", None)
    for field in ("resourceVersion", "generation", "managedFields"):
        result["metadata"].pop(field, None)
    return result


def podinfo_release() -> dict[str, Any]:
    return {
        "apiVersion": HELM_RELEASES.api_version,
        "kind": "HelmRelease",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "interval": "10m",
            "chart": {
                "spec": {
                    "chart": "podinfo",
                    "version": "6.5.0",
                    "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
                }
            },
            "values": {"replicaCount": 1},
        },
    }


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    world = SandboxWorld(tmp_path_factory.mktemp("day2") / "sandbox")
    world.start()
    try:
        config = config_from_document(config_overrides(world.info), "sandbox")
        store = SecretStore()
        demo_secret_values(config, store)
        engine = build_engine(config, secrets=store, command_env=sandbox_path_env(world.info))

        async def run() -> list[Any]:
            return [event async for event in engine.run()]

        last = asyncio.run(run())[-1]
        assert isinstance(last, RunFinished) and last.status == "succeeded", last
        cluster = Cluster(
            world,
            config,
            KubeClient(config.cluster.resolved_kubeconfig()),
            KubeClient(config.cluster.resolved_kubeconfig(), user_agent="day2-test/1"),
        )
        release = podinfo_release()
        crds.validate(release)
        cluster.test_client.create(HELM_RELEASES, release, NS)
        wait_for("the HelmRelease", lambda: flux_ready(cluster.get(RELEASE))[0])
        yield cluster
    finally:
        world.stop()


@pytest.fixture
def cluster(bootstrapped: Cluster) -> Iterator[Cluster]:
    emulator = bootstrapped.world.emulator
    emulator.emulator.clear_faults()
    emulator.clear_requests()
    yield bootstrapped
    emulator.emulator.clear_faults()
    for resource in (GIT_REPOSITORIES, KUSTOMIZATIONS, HELM_RELEASES):
        for obj in bootstrapped.test_client.list(resource):
            if is_suspended(obj):
                meta = obj["metadata"]
                bootstrapped.test_client.merge_patch(
                    resource, meta["name"], {"spec": {"suspend": False}}, meta["namespace"]
                )


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "state", user="alice", host="ops-1")


# -- suspend and resume --------------------------------------------------------------------------------------


def test_suspend_with_a_reason_changes_exactly_spec_suspend_and_three_annotations(
    cluster: Cluster, audit: AuditLog
) -> None:
    before = cluster.get(APPS)
    result = suspend(
        cluster.kube, APPS, reason="  DB migration,\n back at 14:00 ", actor="alice@ops-1", audit=audit
    )
    after = cluster.get(APPS)

    assert (result.ok, result.outcome, result.action, result.key) == (True, "succeeded", "suspend", APPS)
    assert result.revision == before["status"]["lastAppliedRevision"]
    annotations = after["metadata"]["annotations"]
    suspended_at = datetime.fromisoformat(annotations[SUSPENDED_AT_ANNOTATION].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - suspended_at).total_seconds()) < 10
    expected = comparable(before)
    expected["spec"]["suspend"] = True
    expected["metadata"].setdefault("annotations", {}).update(
        {
            SUSPEND_REASON_ANNOTATION: "DB migration, back at 14:00",  # one line: it is shown in one line
            SUSPENDED_BY_ANNOTATION: "alice@ops-1",
            SUSPENDED_AT_ANNOTATION: annotations[SUSPENDED_AT_ANNOTATION],
        }
    )
    assert comparable(after) == expected
    crds.validate(after)
    assert cluster.app_requests() == [f"PATCH {KUSTOMIZATIONS.path(NS, 'production')}"]
    [entry] = read_audit(audit.path)
    assert (entry.action, entry.target, entry.result, entry.who) == (
        "suspend",
        "Kustomization flux-system/production",
        "succeeded",
        "alice@ops-1",
    )
    assert entry.reason == "DB migration, back at 14:00"


@pytest.mark.parametrize("key", [REPO, RELEASE], ids=["GitRepository", "HelmRelease"])
def test_suspend_without_a_reason_changes_only_spec_suspend_and_drops_a_stale_reason(
    cluster: Cluster, key: NodeKey
) -> None:
    cluster.patch(key, {"metadata": {"annotations": {SUSPEND_REASON_ANNOTATION: "from last week"}}})
    before = cluster.get(key)

    result = suspend(cluster.kube, key, reason="", actor="alice@ops-1")

    after = cluster.get(key)
    assert result.ok and result.message == "suspended"
    expected = comparable(before)
    expected["spec"]["suspend"] = True
    del expected["metadata"]["annotations"][SUSPEND_REASON_ANNOTATION]
    assert comparable(after) == expected
    crds.validate(after)


def test_resume_clears_the_annotations_reconciles_and_reports_the_revision(
    cluster: Cluster, audit: AuditLog
) -> None:
    suspend(cluster.kube, APPS, reason="maintenance", actor="alice@ops-1")
    lines: list[str] = []

    result = resume(cluster.kube, APPS, progress=lines.append, audit=audit, **FAST)

    obj = cluster.get(APPS)
    source_revision = cluster.get(REPO)["status"]["artifact"]["revision"]
    assert (result.ok, result.action) == (True, "resume"), result.message
    assert result.revision == source_revision
    assert result.message == f"resumed; Applied revision: {source_revision}"
    assert not is_suspended(obj)
    annotations = obj["metadata"]["annotations"]
    assert not set(SUSPEND_ANNOTATIONS) & set(annotations)
    assert obj["status"]["lastHandledReconcileAt"] == annotations[RECONCILE_ANNOTATION]
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == obj["metadata"]["generation"]
    crds.validate(obj)
    assert lines[0] == "Kustomization flux-system/production: resumed, reconciliation requested"
    assert lines[-1] == f"Resume Kustomization flux-system/production: {result.message}"
    assert [entry.action for entry in read_audit(audit.path)] == ["resume"]


# -- reconcile -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [APPS, REPO, RELEASE], ids=["Kustomization", "GitRepository", "HelmRelease"])
def test_reconcile_waits_until_the_request_is_handled_and_ready(cluster: Cluster, key: NodeKey) -> None:
    lines: list[str] = []

    result = reconcile(cluster.kube, key, progress=lines.append, **FAST)

    obj = cluster.get(key)
    token = obj["metadata"]["annotations"][RECONCILE_ANNOTATION]
    assert result.ok, result.message
    assert obj["status"]["lastHandledReconcileAt"] == token
    assert flux_ready(obj)[0]
    assert result.revision and result.revision in (
        obj["status"].get("lastAppliedRevision"),
        obj["status"].get("artifact", {}).get("revision"),
        "6.5.0",  # the HelmRelease's chart version
    )
    assert cluster.app_requests() == [f"PATCH {TYPES[key[0]].path(key[1], key[2])}"]
    assert "reconciliation requested" in lines[0]


def test_reconciling_a_suspended_object_is_refused_then_resume_and_reconcile(cluster: Cluster) -> None:
    cluster.patch(APPS, {"spec": {"suspend": True}})
    cluster.world.emulator.clear_requests()

    refused = reconcile(cluster.kube, APPS, **FAST)

    assert isinstance(refused, SuspendedObject)
    assert (refused.ok, refused.outcome, refused.suspended_key) == (False, "suspended", APPS)
    assert "is suspended" in refused.message and "resume it" in refused.message
    assert cluster.app_requests() == []  # nothing was requested that Flux would ignore

    resumed = reconcile(cluster.kube, APPS, resume_suspended=True, **FAST)

    assert (resumed.ok, resumed.action) == (True, "resume"), resumed.message
    obj = cluster.get(APPS)
    assert not is_suspended(obj)
    assert obj["status"]["lastHandledReconcileAt"] == obj["metadata"]["annotations"][RECONCILE_ANNOTATION]


def test_reconcile_with_source_reconciles_the_git_repository_first(cluster: Cluster) -> None:
    result = reconcile_with_source(cluster.kube, APPS, **FAST)

    assert (result.ok, result.action) == (True, "reconcile-with-source"), result.message
    repo, apps = cluster.get(REPO), cluster.get(APPS)
    repo_token = repo["metadata"]["annotations"][RECONCILE_ANNOTATION]
    apps_token = apps["metadata"]["annotations"][RECONCILE_ANNOTATION]
    assert repo["status"]["lastHandledReconcileAt"] == repo_token
    assert apps["status"]["lastHandledReconcileAt"] == apps_token
    assert repo_token < apps_token  # RFC3339Nano in UTC sorts by time
    assert cluster.app_requests() == [
        f"PATCH {GIT_REPOSITORIES.path(NS, 'flux-system')}",
        f"PATCH {KUSTOMIZATIONS.path(NS, 'production')}",
    ]
    # The Kustomization was asked only once the source had handled its request.
    reads = cluster.app_requests(mutating=False)
    apps_patch = reads.index(f"PATCH {KUSTOMIZATIONS.path(NS, 'production')}")
    assert f"GET {GIT_REPOSITORIES.path(NS, 'flux-system')}" in reads[:apps_patch]
    assert result.revision == repo["status"]["artifact"]["revision"]


def test_reconcile_with_a_suspended_source_names_the_source(cluster: Cluster) -> None:
    cluster.patch(REPO, {"spec": {"suspend": True}})
    cluster.world.emulator.clear_requests()

    refused = reconcile_with_source(cluster.kube, APPS, **FAST)

    assert isinstance(refused, SuspendedObject) and refused.suspended_key == REPO
    assert "GitRepository flux-system/flux-system is suspended" in refused.message
    assert cluster.app_requests() == []

    done = reconcile_with_source(cluster.kube, APPS, resume_suspended=True, **FAST)

    assert done.ok, done.message
    assert not is_suspended(cluster.get(REPO))


def test_a_failed_reconcile_reports_the_controller_message_without_waiting_for_the_timeout(
    cluster: Cluster,
) -> None:
    broken = {
        "apiVersion": KUSTOMIZATIONS.api_version,
        "kind": "Kustomization",
        "metadata": {"name": "broken", "namespace": NS},
        "spec": {
            "interval": "10m",
            "path": "./clusters/production/apps",
            "prune": False,
            "sourceRef": {"kind": "GitRepository", "name": "missing"},
        },
    }
    crds.validate(broken)
    cluster.test_client.create(KUSTOMIZATIONS, broken, NS)
    try:
        result = reconcile(cluster.kube, (KUSTOMIZATION, NS, "broken"), timeout=30.0, interval=0.05)
    finally:
        cluster.test_client.delete(KUSTOMIZATIONS, "broken", NS)

    assert (result.ok, result.outcome) == (False, "failed")
    assert "GitRepository/flux-system/missing" in result.message and "not found" in result.message
    assert result.duration < 10


def test_a_wait_times_out_with_a_clear_message(cluster: Cluster, audit: AuditLog) -> None:
    cluster.stall_controller(APPS)

    result = reconcile(cluster.kube, APPS, timeout=1.5, interval=0.05, audit=audit)

    assert (result.ok, result.outcome) == (False, "timed-out")
    assert result.message == (
        "timed out after 1.5 s waiting for Kustomization flux-system/production to reconcile: "
        "reconciliation requested, waiting for the controller"
    )
    assert 1.5 <= result.duration < 5
    assert read_audit(audit.path)[0].result == "timed-out"


def test_cancel_stops_a_wait(cluster: Cluster) -> None:
    cluster.stall_controller(APPS)
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        result = reconcile(cluster.kube, APPS, timeout=60.0, interval=0.05, cancel=cancel)
    finally:
        timer.cancel()

    assert (result.ok, result.outcome) == (False, "cancelled")
    assert result.message.startswith("stopped waiting for Kustomization flux-system/production to reconcile")
    assert 0.5 <= result.duration < 3


# -- bulk ----------------------------------------------------------------------------------------------------


def test_bulk_suspend_and_resume_every_kustomization(cluster: Cluster, audit: AuditLog) -> None:
    keys = plan_bulk(cluster.test_client.list(KUSTOMIZATIONS), "suspend")
    assert keys == [INFRA, APPS]

    suspended = bulk(cluster.kube, keys, "suspend", reason="freeze", actor="alice@ops-1", audit=audit)

    assert [(r.key, r.ok) for r in suspended] == [(INFRA, True), (APPS, True)]
    for key in keys:
        obj = cluster.get(key)
        assert is_suspended(obj) and obj["metadata"]["annotations"][SUSPEND_REASON_ANNOTATION] == "freeze"
        crds.validate(obj)
    assert plan_bulk(cluster.test_client.list(KUSTOMIZATIONS), "suspend") == []
    assert plan_bulk(cluster.test_client.list(KUSTOMIZATIONS), "resume") == keys

    cluster.world.emulator.clear_requests()
    lines: list[str] = []
    resumed = bulk(cluster.kube, keys, "resume", progress=lines.append, audit=audit, **FAST)

    assert [(r.key, r.action, r.ok) for r in resumed] == [(INFRA, "resume", True), (APPS, "resume", True)]
    revision = cluster.get(REPO)["status"]["artifact"]["revision"]
    assert {r.revision for r in resumed} == {revision}
    for key in keys:
        obj = cluster.get(key)
        assert not is_suspended(obj) and not set(SUSPEND_ANNOTATIONS) & set(obj["metadata"]["annotations"])
    # Both patched before either was awaited (production depends on flux-system), then awaited together.
    paths = [KUSTOMIZATIONS.path(NS, key[2]) for key in keys]
    assert cluster.app_requests(mutating=False)[:4] == [
        f"GET {paths[0]}",
        f"PATCH {paths[0]}",
        f"GET {paths[1]}",
        f"PATCH {paths[1]}",
    ]
    assert lines[:2] == [f"{describe_key(key)}: resumed, reconciliation requested" for key in keys]
    entries = read_audit(audit.path)
    assert [(e.action, e.name) for e in entries] == [
        ("resume", "production"),
        ("resume", "flux-system"),
        ("suspend", "production"),
        ("suspend", "flux-system"),
    ]


def test_bulk_over_the_tree_filter(cluster: Cluster) -> None:
    model = ResourceModel()
    model.replace_kind(KUSTOMIZATION, cluster.test_client.list(KUSTOMIZATIONS))
    keys = plan_bulk(model, "suspend", " PROD ")
    assert keys == [APPS]

    results = bulk(cluster.kube, keys, "suspend", actor="alice@ops-1")

    assert [r.ok for r in results] == [True]
    assert is_suspended(cluster.get(APPS)) and not is_suspended(cluster.get(INFRA))
    model.replace_kind(KUSTOMIZATION, cluster.test_client.list(KUSTOMIZATIONS))
    assert plan_bulk(model, "resume", "prod") == [APPS]
    assert plan_bulk(model, "resume", "flux-system") == [APPS]  # the namespace matches too, as in the tree
    assert plan_bulk(model, "resume", "nothing-matches") == []


def test_a_cancelled_bulk_resume_does_not_start_the_rest(cluster: Cluster) -> None:
    keys = [INFRA, APPS]
    for key in keys:
        cluster.patch(key, {"spec": {"suspend": True}})
    cancel = threading.Event()
    cancel.set()

    results = bulk(cluster.kube, keys, "resume", cancel=cancel, **FAST)

    assert [(r.outcome, r.message) for r in results] == [("cancelled", "not started: cancelled")] * 2
    assert all(is_suspended(cluster.get(key)) for key in keys)
    assert cluster.app_requests() == []


# -- ExternalSecret force-sync -------------------------------------------------------------------------------


def secret_value(cluster: Cluster, namespace: str, name: str, key: str) -> bytes:
    secret = cluster.test_client.get(SECRETS, name, namespace)
    assert secret is not None
    return base64.b64decode(secret["data"][key])


def test_force_sync_brings_a_new_vault_value_into_the_secret(cluster: Cluster, audit: AuditLog) -> None:
    before = cluster.get(MYAPP_SECRETS)["status"]["refreshTime"]
    # refreshTime has whole seconds: make sure the next sync falls in a later second.
    wait_for("a new second", lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > before)
    new_value = f"api-key-rotated-{time.time_ns()}"
    kv = cluster.vault().secrets.kv.v2
    stored = kv.read_secret_version(path="myapp", mount_point="secret", raise_on_deleted_version=True)
    kv.create_or_update_secret(
        path="myapp", secret={**stored["data"]["data"], "api_key": new_value}, mount_point="secret"
    )
    cluster.world.emulator.clear_requests()  # reading the root token above is the test's doing

    result = force_sync(cluster.kube, MYAPP_SECRETS, audit=audit, **FAST)

    assert (result.ok, result.action) == (True, "force-sync"), result.message
    assert result.message == "SecretSynced: secret synced"
    obj = cluster.get(MYAPP_SECRETS)
    assert obj["status"]["refreshTime"] > before
    assert FORCE_SYNC_ANNOTATION in obj["metadata"]["annotations"]
    crds.validate(obj)
    assert secret_value(cluster, "myapp", "myapp-secrets", "api-key") == new_value.encode()
    # The action annotated the ExternalSecret, and never read or wrote a Secret.
    assert cluster.app_requests() == [f"PATCH {EXTERNAL_SECRETS.path('myapp', 'myapp-secrets')}"]
    assert not [call for call in cluster.app_requests(mutating=False) if "/secrets" in call]
    assert read_audit(audit.path)[0].message == "SecretSynced: secret synced"


def test_force_sync_reports_the_sync_error(cluster: Cluster) -> None:
    vault = cluster.vault()
    vault.secrets.kv.v2.create_or_update_secret(
        path="day2-probe", secret={"value": "one"}, mount_point="secret"
    )
    probe = {
        "apiVersion": EXTERNAL_SECRETS.api_version,
        "kind": "ExternalSecret",
        "metadata": {"name": "day2-probe", "namespace": "myapp"},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault-backend"},
            "target": {"name": "day2-probe"},
            "data": [{"secretKey": "value", "remoteRef": {"key": "day2-probe", "property": "value"}}],
        },
    }
    crds.validate(probe)
    key: NodeKey = (EXTERNAL_SECRET, "myapp", "day2-probe")
    cluster.test_client.create(EXTERNAL_SECRETS, probe, "myapp")
    try:
        wait_for("the first sync", lambda: cluster.get(key).get("status", {}).get("refreshTime"))
        vault.secrets.kv.v2.delete_metadata_and_all_versions(path="day2-probe", mount_point="secret")

        failed = force_sync(cluster.kube, key, **FAST)

        assert (failed.ok, failed.outcome) == (False, "failed")
        assert failed.message.startswith("SecretSyncedError: ")
        ready = next(c for c in cluster.get(key)["status"]["conditions"] if c["type"] == "Ready")
        assert failed.message == f"SecretSyncedError: {ready['message']}"

        # Already failing the same way: no status change to wait for, so the unchanged error is the answer.
        again = force_sync(cluster.kube, key, still_failing_after=1.0, **FAST)

        assert (again.outcome, again.message) == ("failed", f"still failing: {failed.message}")
        assert 1.0 <= again.duration < 5
    finally:
        cluster.test_client.delete(EXTERNAL_SECRETS, "day2-probe", "myapp")


# -- misuse --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "key"),
    [
        (force_sync, APPS),
        (reconcile_with_source, REPO),
        (reconcile, MYAPP_SECRETS),
    ],
)
def test_an_action_on_a_kind_it_does_not_apply_to_is_a_programming_error(action: Any, key: NodeKey) -> None:
    with pytest.raises(ValueError, match="does not apply"):
        action(KubeClient(Path("/nonexistent")), key)


def test_a_missing_object_is_a_failed_result(cluster: Cluster) -> None:
    result: ActionResult = reconcile(cluster.kube, (KUSTOMIZATION, NS, "gone"), **FAST)
    assert (result.ok, result.message) == (False, "Kustomization flux-system/gone not found")


def test_reconcile_with_source_needs_a_git_repository_source(cluster: Cluster) -> None:
    result = reconcile_with_source(cluster.kube, RELEASE, **FAST)

    assert (result.ok, result.outcome) == (False, "failed")
    assert result.message == "its source is a HelmRepository, and only GitRepository sources are supported"
    assert cluster.app_requests() == []


# -- describe and the request state (no cluster) -------------------------------------------------------------


def tree_model(*, apps_suspended: bool = False, repo_suspended: bool = False) -> ResourceModel:
    model = ResourceModel()
    model.upsert(
        {
            "kind": KUSTOMIZATION,
            "metadata": {"name": "production", "namespace": NS},
            "spec": {
                "suspend": apps_suspended,
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        }
    )
    model.upsert(
        {
            "kind": GIT_REPOSITORY,
            "metadata": {"name": "flux-system", "namespace": NS},
            "spec": {"suspend": repo_suspended},
        }
    )
    model.upsert(
        {
            "kind": HELM_RELEASE,
            "metadata": {"name": "podinfo", "namespace": NS},
            "spec": {
                "chart": {
                    "spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}
                }
            },
        }
    )
    return model


def test_describe_names_every_call_in_order() -> None:
    apps, repo = "Kustomization flux-system/production", "GitRepository flux-system/flux-system"
    requested = f"metadata.annotations[{RECONCILE_ANNOTATION}]=<now>"
    until = "until status.lastHandledReconcileAt=<now> and Ready=True at the current generation (up to 60 s)"

    assert describe("suspend", [APPS]) == (f"Suspend {apps}", [f"PATCH {apps} spec.suspend=true"])
    _, [call] = describe("suspend", [APPS], reason='say "hi"', actor="alice@ops-1")
    assert call == (
        f'PATCH {apps} spec.suspend=true, metadata.annotations[{SUSPEND_REASON_ANNOTATION}]="say \\"hi\\"", '
        f"[{SUSPENDED_BY_ANNOTATION}]=alice@ops-1, [{SUSPENDED_AT_ANNOTATION}]=<now>"
    )
    assert describe("reconcile", [APPS], timeout=60) == (
        f"Reconcile {apps}",
        [f"PATCH {apps} {requested}", f"GET {apps} {until}"],
    )
    title, calls = describe("reconcile-with-source", [APPS], model=tree_model(), timeout=60)
    assert title == f"Reconcile {apps} and its source"
    assert calls == [
        f"PATCH {repo} {requested}",
        f"GET {repo} {until}",
        f"PATCH {apps} {requested}",
        f"GET {apps} {until}",
    ]
    resume_patch = (
        f"PATCH {repo} spec.suspend=false, {requested}, "
        "remove the gitops-tui/suspend-* annotations if present"
    )
    _, calls = describe(
        "reconcile-with-source",
        [APPS],
        model=tree_model(repo_suspended=True),
        resume_suspended=True,
        timeout=60,
    )
    assert calls[0] == resume_patch and calls[2] == f"PATCH {apps} {requested}"
    _, calls = describe("reconcile-with-source", [RELEASE], model=tree_model())
    assert calls == ["nothing: the source is a HelmRepository, and only GitRepository sources are supported"]
    title, calls = describe("resume", [INFRA, APPS], timeout=60)
    assert title == "Resume 2 Kustomizations"
    assert [call.split(" spec.")[0].split(" until")[0] for call in calls] == [
        "PATCH Kustomization flux-system/flux-system",
        f"PATCH {apps}",
        "GET Kustomization flux-system/flux-system",
        f"GET {apps}",
    ]
    assert describe("force-sync", [MYAPP_SECRETS], timeout=60)[1] == [
        f"PATCH ExternalSecret myapp/myapp-secrets metadata.annotations[{FORCE_SYNC_ANNOTATION}]=<now>",
        "GET ExternalSecret myapp/myapp-secrets until status.refreshTime changes (SecretSynced) or "
        "SecretSyncedError (up to 60 s)",
    ]
    with pytest.raises(ValueError, match="one object at a time"):
        describe("reconcile", [INFRA, APPS])
    with pytest.raises(ValueError, match="does not apply"):
        describe("force-sync", [APPS])


def test_plan_bulk_reads_the_tree_model_or_raw_objects() -> None:
    model = tree_model(apps_suspended=True)
    assert plan_bulk(model, "resume") == [APPS]
    assert plan_bulk(model, "suspend") == []
    objects = [
        {"kind": KUSTOMIZATION, "metadata": {"name": "b", "namespace": "x"}, "spec": {}},
        {"kind": KUSTOMIZATION, "metadata": {"name": "a", "namespace": "x"}, "spec": {"suspend": False}},
        {"kind": GIT_REPOSITORY, "metadata": {"name": "c", "namespace": "x"}},  # not a Kustomization
        {"kind": KUSTOMIZATION, "metadata": {}},  # no name: nothing to address
    ]
    assert plan_bulk(objects, "suspend") == [(KUSTOMIZATION, "x", "a"), (KUSTOMIZATION, "x", "b")]
    assert plan_bulk(objects, "suspend", "B") == [(KUSTOMIZATION, "x", "b")]


def flux_object(
    *, generation: int = 2, handled: str = "t1", ready: str = "True", seen: int = 2
) -> dict[str, Any]:
    return {
        "kind": KUSTOMIZATION,
        "metadata": {"name": "a", "namespace": "x", "generation": generation},
        "spec": {},
        "status": {
            "lastHandledReconcileAt": handled,
            "conditions": [
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "R",
                    "message": f"ready={ready}",
                    "observedGeneration": seen,
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (flux_object(), ("done", "ready=True")),
        (flux_object(handled="t0"), ("pending", "reconciliation requested, waiting for the controller")),
        (flux_object(seen=1), ("pending", "reconciliation in progress (generation 2, observed 1)")),
        (
            flux_object(seen=1, ready="False"),
            ("pending", "reconciliation in progress (generation 2, observed 1)"),
        ),
        (flux_object(ready="Unknown"), ("pending", "ready=Unknown")),
        (flux_object(ready="False"), ("failed", "ready=False")),
        (
            {**flux_object(), "spec": {"suspend": True}},
            ("failed", "suspended meanwhile: Flux ignores the request"),
        ),
    ],
    ids=["ready", "not-handled", "stale-generation", "stale-failure", "in-progress", "failed", "suspended"],
)
def test_flux_request_state(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert request_state(obj, "t1") == expected
