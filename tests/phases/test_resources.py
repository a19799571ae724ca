"""The resource tree model: parsing, change sets, links both ways, Vault paths, odd objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phases.health import health_of
from phases.resources import (
    APPLIED_BY_NAME_LABEL,
    APPLIED_BY_NAMESPACE_LABEL,
    CLUSTER_SECRET_STORE,
    EXTERNAL_SECRET,
    GIT_REPOSITORY,
    HELM_RELEASE,
    KUSTOMIZATION,
    VAULT_PATH,
    ResourceModel,
    normalise_vault_key,
    short_revision,
    vault_path_key,
)

FLUX_NS = "flux-system"
SHA = "0123456789abcdef0123456789abcdef01234567"
K_APPS = (KUSTOMIZATION, FLUX_NS, "apps")
K_INFRA = (KUSTOMIZATION, FLUX_NS, "infra")
ES_DB = (EXTERNAL_SECRET, "shop", "db")


def ready(
    message: str = "Applied revision", *, status: str = "True", reason: str = "Succeeded"
) -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message, "observedGeneration": 1}


def kustomization(name: str, *, rv: str = "", **status: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": FLUX_NS, "generation": 1}
    if rv:
        metadata["resourceVersion"] = rv
    return {
        "kind": KUSTOMIZATION,
        "metadata": metadata,
        "spec": {"sourceRef": {"kind": GIT_REPOSITORY, "name": "platform"}, "path": f"./{name}"},
        "status": {"conditions": [ready()], "lastAppliedRevision": f"main@sha1:{SHA}", **status},
    }


def store(name: str = "vault", mount: str = "secret") -> dict[str, Any]:
    return {
        "kind": CLUSTER_SECRET_STORE,
        "metadata": {"name": name},
        "spec": {"provider": {"vault": {"server": "http://vault:8200", "path": mount, "version": "v2"}}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": "ok"}]},
    }


def externalsecret(
    name: str = "db",
    namespace: str = "shop",
    *,
    keys: tuple[str, ...] = ("secret/shop/db",),
    applied_by: str | None = "apps",
    store_name: str = "vault",
    synced: bool = True,
) -> dict[str, Any]:
    labels = {APPLIED_BY_NAME_LABEL: applied_by, APPLIED_BY_NAMESPACE_LABEL: FLUX_NS} if applied_by else {}
    condition = {"type": "Ready", "status": "True" if synced else "False", "reason": "SecretSynced"}
    if not synced:
        condition.update(reason="SecretSyncedError", message="could not get secret data from provider")
    return {
        "kind": EXTERNAL_SECRET,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "secretStoreRef": {"kind": CLUSTER_SECRET_STORE, "name": store_name},
            "target": {"name": f"{name}-credentials"},
            "data": [{"secretKey": f"k{i}", "remoteRef": {"key": key}} for i, key in enumerate(keys)],
        },
        "status": {"conditions": [condition], "refreshTime": "2026-08-01T10:00:00Z"},
    }


@pytest.fixture
def model() -> ResourceModel:
    return ResourceModel()


# -- parsing ------------------------------------------------------------------------------------------------


def test_a_kustomization_becomes_a_node_with_its_status_fields(model: ResourceModel) -> None:
    obj = kustomization("apps", lastHandledReconcileAt="2026-08-01T10:00:00Z")

    assert model.upsert(obj) == {K_APPS}

    node = model.get(K_APPS)
    assert node is not None
    assert (node.health, node.message) == ("ready", "Applied revision")
    assert node.revision == f"main@sha1:{SHA}"
    assert node.last_reconcile == "2026-08-01T10:00:00Z"
    assert node.conditions == (("Ready", "True", "Succeeded", "Applied revision"),)
    assert node.source_ref == (GIT_REPOSITORY, FLUX_NS, "platform")
    assert not node.suspended
    assert K_APPS in model and len(model) == 1


def test_suspension_and_failure_show_in_health(model: ResourceModel) -> None:
    suspended = kustomization("apps")
    suspended["spec"]["suspend"] = True
    failing = kustomization("infra")
    failing["status"]["conditions"] = [ready("kustomize build failed", status="False", reason="BuildFailed")]

    model.upsert(suspended)
    model.upsert(failing)

    apps, infra = model.get(K_APPS), model.get(K_INFRA)
    assert apps is not None and (apps.health, apps.suspended) == ("suspended", True)
    assert infra is not None and (infra.health, infra.message) == ("not-ready", "kustomize build failed")


def test_revisions_come_from_the_artifact_or_helm_history(model: ResourceModel) -> None:
    repo = {
        "kind": GIT_REPOSITORY,
        "metadata": {"name": "platform", "namespace": FLUX_NS},
        "status": {"artifact": {"revision": f"main@sha1:{SHA}"}, "conditions": [ready()]},
    }
    release = {
        "kind": HELM_RELEASE,
        "metadata": {"name": "podinfo", "namespace": "apps"},
        "spec": {"chart": {"spec": {"sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}}},
        "status": {"history": [{"chartVersion": "6.5.0"}], "conditions": [ready()]},
    }
    model.upsert(repo)
    model.upsert(release)

    assert model.get((GIT_REPOSITORY, FLUX_NS, "platform")).revision == f"main@sha1:{SHA}"  # type: ignore[union-attr]
    helm = model.get((HELM_RELEASE, "apps", "podinfo"))
    assert helm is not None and helm.revision == "6.5.0"
    assert helm.source_ref == ("HelmRepository", "apps", "podinfo")


def test_an_externalsecret_records_target_store_refresh_time_and_vault_refs(model: ResourceModel) -> None:
    model.upsert(externalsecret(keys=("secret/shop/db", "shop/db", "/secret/data/shop/api/")))

    node = model.get(ES_DB)
    assert node is not None
    assert node.health == "ready"
    assert node.target_secret == "db-credentials"
    assert node.source_ref == (CLUSTER_SECRET_STORE, "", "vault")
    assert node.refresh_time == "2026-08-01T10:00:00Z"
    assert node.vault_refs == ("shop/db", "shop/api")  # normalised and de-duplicated
    assert node.vault_mount == "secret"
    assert node.applied_by == K_APPS


def test_target_secret_defaults_to_the_externalsecret_name(model: ResourceModel) -> None:
    obj = externalsecret()
    del obj["spec"]["target"]
    model.upsert(obj)
    assert model.get(ES_DB).target_secret == "db"  # type: ignore[union-attr]


def test_datafrom_extract_keys_are_vault_refs_too(model: ResourceModel) -> None:
    obj = externalsecret(keys=())
    obj["spec"]["dataFrom"] = [{"extract": {"key": "secret/shop/all"}}, {"find": {"path": "shop"}}]
    model.upsert(obj)
    assert model.get(ES_DB).vault_refs == ("shop/all",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "mount", "expected"),
    [
        ("secret/myapp", "secret", "myapp"),
        ("myapp", "secret", "myapp"),
        ("/secret/myapp/", "secret", "myapp"),
        ("secret/data/myapp", "secret", "myapp"),
        ("secretive/myapp", "secret", "secretive/myapp"),
        ("kv/team/app", "kv", "team/app"),
    ],
)
def test_vault_keys_are_normalised_like_eso_does(key: str, mount: str, expected: str) -> None:
    assert normalise_vault_key(key, mount) == expected


@pytest.mark.parametrize(
    ("revision", "short"),
    [
        (f"main@sha1:{SHA}", "main@0123456"),
        (f"sha256:{SHA}", "0123456"),
        (f"6.5.0@sha256:{SHA}", "6.5.0@0123456"),
        (f"main/{SHA}", "main/0123456"),
        ("6.5.0", "6.5.0"),
        ("", ""),
    ],
)
def test_short_revision(revision: str, short: str) -> None:
    assert short_revision(revision) == short


# -- change sets --------------------------------------------------------------------------------------------


def test_an_identical_upsert_returns_no_change(model: ResourceModel) -> None:
    obj = kustomization("apps")
    model.upsert(obj)

    assert model.upsert(copy.deepcopy(obj)) == set()

    obj["status"]["conditions"][0]["message"] = "Applied revision: main@sha1:fedcba"
    assert model.upsert(obj) == {K_APPS}


def test_an_unchanged_resource_version_is_not_parsed_again(model: ResourceModel) -> None:
    model.upsert(kustomization("apps", rv="41"))
    assert model.upsert(kustomization("apps", rv="41")) == set()
    changed = kustomization("apps", rv="42")
    changed["status"]["conditions"] = [ready("broken", status="False", reason="BuildFailed")]
    assert model.upsert(changed) == {K_APPS}
    assert model.get(K_APPS).health == "not-ready"  # type: ignore[union-attr]


def test_delete_returns_the_key_once(model: ResourceModel) -> None:
    model.upsert(kustomization("apps"))
    assert model.delete(KUSTOMIZATION, FLUX_NS, "apps") == {K_APPS}
    assert model.delete(KUSTOMIZATION, FLUX_NS, "apps") == set()
    assert model.get(K_APPS) is None


def test_replace_kind_reports_adds_changes_and_removals(model: ResourceModel) -> None:
    model.replace_kind(KUSTOMIZATION, [kustomization("apps"), kustomization("infra"), kustomization("old")])
    changed_infra = kustomization("infra")
    changed_infra["spec"]["suspend"] = True

    changed = model.replace_kind(KUSTOMIZATION, [kustomization("apps"), changed_infra, kustomization("new")])

    assert changed == {K_INFRA, (KUSTOMIZATION, FLUX_NS, "old"), (KUSTOMIZATION, FLUX_NS, "new")}
    assert [node.name for node in model.nodes(KUSTOMIZATION)] == ["apps", "infra", "new"]
    assert model.replace_kind(KUSTOMIZATION, []) == {
        K_APPS,
        K_INFRA,
        (KUSTOMIZATION, FLUX_NS, "new"),
    }
    assert model.nodes(KUSTOMIZATION) == []


def test_replace_kind_uses_the_given_kind_for_list_items_without_one(model: ResourceModel) -> None:
    item = kustomization("apps")
    del item["kind"]
    assert model.replace_kind(KUSTOMIZATION, [item]) == {K_APPS}
    assert model.get(K_APPS).health == "ready"  # type: ignore[union-attr]


def test_nodes_are_sorted_by_namespace_then_name(model: ResourceModel) -> None:
    for name, namespace in [("b", "z"), ("a", "z"), ("c", "a")]:
        model.upsert(externalsecret(name, namespace, applied_by=None))
    assert [(n.namespace, n.name) for n in model.nodes(EXTERNAL_SECRET)] == [
        ("a", "c"),
        ("z", "a"),
        ("z", "b"),
    ]


# -- links --------------------------------------------------------------------------------------------------


def test_kustomization_and_externalsecret_are_linked_both_ways(model: ResourceModel) -> None:
    model.upsert(kustomization("apps"))
    model.upsert(kustomization("infra"))

    assert model.upsert(externalsecret()) >= {ES_DB, K_APPS}
    assert model.externalsecrets_applied_by(K_APPS) == [ES_DB]
    assert model.get(ES_DB).applied_by == K_APPS  # type: ignore[union-attr]

    moved = model.upsert(externalsecret(applied_by="infra"))
    assert {ES_DB, K_APPS, K_INFRA} <= moved
    assert model.externalsecrets_applied_by(K_APPS) == []
    assert model.externalsecrets_applied_by(K_INFRA) == [ES_DB]

    assert K_INFRA in model.delete(EXTERNAL_SECRET, "shop", "db")
    assert model.externalsecrets_applied_by(K_INFRA) == []


def test_a_health_change_does_not_touch_the_linked_kustomization(model: ResourceModel) -> None:
    model.upsert(kustomization("apps"))
    model.upsert(externalsecret())
    assert model.upsert(externalsecret(synced=False)) == {ES_DB}
    assert model.get(ES_DB).health == "not-ready"  # type: ignore[union-attr]


def test_vault_listing_links_paths_and_readers_both_ways(model: ResourceModel) -> None:
    model.upsert(externalsecret(keys=("secret/shop/db", "shop/missing")))

    changed = model.set_vault_paths("secret", {"shop/db": ["password", "user"], "other": ["token"]}, None)

    db, missing, other = vault_path_key("shop/db"), vault_path_key("shop/missing"), vault_path_key("other")
    assert {db, missing, other, ES_DB} <= changed
    assert model.vault_path_exists("shop/db") is True
    assert model.vault_path_exists("/shop/missing") is False
    assert model.readers_of("shop/db") == [ES_DB]
    assert model.readers_of("other") == []
    db_node, missing_node = model.get(db), model.get(missing)
    assert db_node is not None and (db_node.health, db_node.vault_keys) == ("ready", ("password", "user"))
    assert missing_node is not None and missing_node.health == "missing"
    assert [node.name for node in model.nodes(VAULT_PATH)] == ["other", "shop/db", "shop/missing"]

    # The reader goes away: the missing path (only there because it was read) goes with it.
    changed = model.delete(EXTERNAL_SECRET, "shop", "db")
    assert {ES_DB, db, missing} <= changed
    assert model.get(missing) is None
    assert model.readers_of("shop/db") == []
    assert model.get(db) is not None  # still listed by Vault


def test_a_path_appearing_in_vault_re_renders_its_readers(model: ResourceModel) -> None:
    model.set_vault_paths("secret", {}, None)
    model.upsert(externalsecret())
    assert model.get(vault_path_key("shop/db")).health == "missing"  # type: ignore[union-attr]

    changed = model.set_vault_paths("secret", {"shop/db": ["password"]}, None)

    assert changed == {vault_path_key("shop/db"), ES_DB}
    assert model.set_vault_paths("secret", {"shop/db": ["password"]}, None) == set()


def test_sealed_vault_makes_existence_unknown(model: ResourceModel) -> None:
    model.upsert(externalsecret())
    model.set_vault_paths("secret", {"shop/db": ["password"], "other": ["x"]}, None)

    changed = model.set_vault_paths("secret", None, "Vault at http://vault:8200 is sealed")

    summary = model.vault_summary()
    assert (summary.state, summary.mount) == ("sealed", "secret")
    assert "sealed" in summary.message
    assert model.vault_path_exists("shop/db") is None
    node = model.get(vault_path_key("shop/db"))
    assert node is not None and node.health == "unknown"
    assert model.get(vault_path_key("other")) is None  # only known from the listing
    assert {vault_path_key("shop/db"), vault_path_key("other"), ES_DB} <= changed
    model.set_vault_paths("secret", None, "connection refused")
    assert model.vault_summary().state == "unreachable"


def test_vault_state_is_unknown_before_any_listing(model: ResourceModel) -> None:
    model.upsert(externalsecret())
    assert model.vault_summary().state == "unknown"
    assert model.vault_path_exists("shop/db") is None
    assert model.get(vault_path_key("shop/db")).health == "unknown"  # type: ignore[union-attr]


def test_a_store_mount_change_renormalises_its_externalsecrets(model: ResourceModel) -> None:
    model.upsert(store(mount="secret"))
    model.upsert(externalsecret(keys=("kv/shop/db",)))
    assert model.get(ES_DB).vault_refs == ("kv/shop/db",)  # type: ignore[union-attr]

    changed = model.upsert(store(mount="kv"))

    es = model.get(ES_DB)
    assert es is not None and (es.vault_refs, es.vault_mount) == (("shop/db",), "kv")
    assert ES_DB in changed
    assert model.vault_ref_exists(es, "shop/db") is None  # Vault listing is of "secret", not "kv"
    assert model.readers_of("kv/shop/db") == []


def test_a_store_with_another_provider_means_no_vault_refs(model: ResourceModel) -> None:
    aws = {"kind": CLUSTER_SECRET_STORE, "metadata": {"name": "vault"}, "spec": {"provider": {"aws": {}}}}
    model.upsert(aws)
    model.upsert(externalsecret())
    assert model.get(ES_DB).vault_refs == ()  # type: ignore[union-attr]
    assert model.readers_of("shop/db") == []


def test_listing_another_mount_relinks_every_externalsecret(model: ResourceModel) -> None:
    model.upsert(externalsecret(keys=("team/db",), store_name="unknown-store"))
    model.set_vault_paths("secret", {"team/db": ["x"]}, None)
    assert model.readers_of("team/db") == [ES_DB]

    changed = model.set_vault_paths("kv", {"team/db": ["x"]}, None)

    assert ES_DB in changed
    assert model.get(ES_DB).vault_mount == "kv"  # type: ignore[union-attr]
    assert model.readers_of("team/db") == [ES_DB]
    assert model.get(vault_path_key("team/db")).vault_mount == "kv"  # type: ignore[union-attr]


def test_listing_another_mount_drops_readers_of_the_old_one(model: ResourceModel) -> None:
    model.upsert(store(mount="secret"))
    model.upsert(externalsecret(keys=("secret/shop/db",)))
    model.set_vault_paths("secret", {"shop/db": ["password"]}, None)
    assert model.readers_of("shop/db") == [ES_DB]

    changed = model.set_vault_paths("kv", {"shop/db": ["token"]}, None)

    # The ExternalSecret still reads secret/shop/db through its store: not kv/shop/db.
    assert model.readers_of("shop/db") == []
    assert ES_DB in changed and vault_path_key("shop/db") in changed
    node = model.get(vault_path_key("shop/db"))
    assert node is not None and (node.health, node.vault_mount, node.vault_keys) == (
        "ready",
        "kv",
        ("token",),
    )
    es = model.get(ES_DB)
    assert es is not None and model.vault_ref_exists(es, "shop/db") is None  # another mount than listed


def test_a_paths_readers_are_linked_once_however_many_arrive(model: ResourceModel) -> None:
    many = [externalsecret(f"app{i}", keys=("secret/shared",)) for i in range(50)]
    changed = model.replace_kind(EXTERNAL_SECRET, many)
    shared = vault_path_key("shared")
    assert shared in changed
    assert len(model.readers_of("shared")) == 50 and model.is_read("/shared/")
    node = model.get(shared)
    assert node is not None and node.health == "unknown"  # not listed yet
    assert model.applies_any(K_APPS) and not model.applies_any(K_INFRA)


def test_an_unchanged_vault_listing_changes_nothing(model: ResourceModel) -> None:
    model.upsert(externalsecret(keys=("secret/shop/db", "secret/shop/gone")))
    listing = {"shop/db": ["password"], "other": ["x"]}
    assert model.set_vault_paths("secret", listing, None)
    assert model.set_vault_paths("secret", dict(listing), None) == set()  # every poll, same answer

    changed = model.set_vault_paths("secret", {"shop/db": ["password", "user"]}, None)

    assert changed == {vault_path_key("shop/db"), vault_path_key("other")}  # keys changed; one vanished
    assert model.get(vault_path_key("other")) is None
    assert model.set_vault_paths("secret", None, "connection refused")  # unreachable: all unknown
    assert model.set_vault_paths("secret", None, "connection refused") == set()
    assert model.set_vault_paths("secret", None, "Vault is sealed") >= {vault_path_key("shop/gone")}


def test_keys_version_moves_only_when_keys_come_or_go(model: ResourceModel) -> None:
    before = model.keys_version(KUSTOMIZATION)
    model.upsert(kustomization("apps"))
    added = model.keys_version(KUSTOMIZATION)
    assert added != before
    model.upsert(failing_kustomization("apps"))  # an update of the same key
    assert model.keys_version(KUSTOMIZATION) == added
    model.delete(KUSTOMIZATION, FLUX_NS, "apps")
    assert model.keys_version(KUSTOMIZATION) not in (before, added)
    assert model.keys_version(EXTERNAL_SECRET) == 0


def test_sorted_keys_follow_the_nodes_order(model: ResourceModel) -> None:
    for name, namespace in [("b", "z"), ("a", "z"), ("c", "a")]:
        model.upsert(externalsecret(name, namespace, applied_by=None))
    assert model.sorted_keys(EXTERNAL_SECRET) == [node.key for node in model.nodes(EXTERNAL_SECRET)]
    assert model.sorted_keys(HELM_RELEASE) == []


def failing_kustomization(name: str) -> dict[str, Any]:
    obj = kustomization(name)
    obj["status"]["conditions"] = [ready("broken", status="False", reason="BuildFailed")]
    return obj


# -- counts and states --------------------------------------------------------------------------------------


def test_summary_counts_follow_every_change(model: ResourceModel) -> None:
    failing = kustomization("infra")
    failing["status"]["conditions"] = [ready("x", status="False", reason="BuildFailed")]
    model.replace_kind(KUSTOMIZATION, [kustomization("apps"), failing])
    counts = model.summary_counts()
    assert counts[KUSTOMIZATION]["ready"] == 1 and counts[KUSTOMIZATION]["not-ready"] == 1
    assert sum(counts[HELM_RELEASE].values()) == 0

    model.upsert(kustomization("infra"))
    model.delete(KUSTOMIZATION, FLUX_NS, "apps")
    counts = model.summary_counts()
    assert counts[KUSTOMIZATION] == {
        "ready": 1,
        "not-ready": 0,
        "progressing": 0,
        "suspended": 0,
        "unknown": 0,
        "missing": 0,
    }


def test_source_state_is_loading_until_reported(model: ResourceModel) -> None:
    assert model.source_state(KUSTOMIZATION) == ("loading", "")
    assert model.set_source_state(KUSTOMIZATION, "missing", "CRD not installed") is True
    assert model.set_source_state(KUSTOMIZATION, "missing", "CRD not installed") is False
    assert model.source_state(KUSTOMIZATION) == ("missing", "CRD not installed")


# -- health: the model's fast path must agree with phases.health -------------------------------------------

_condition = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Ready", "Ready", "Reconciling", 5]),
        "status": st.sampled_from(["True", "True", "False", "Unknown", True]),
    },
    optional={
        "reason": st.sampled_from([None, "", "SecretSynced", "ReconciliationSucceeded", "Failed", 3]),
        "message": st.sampled_from([None, "", "Applied revision", 7]),
        "observedGeneration": st.sampled_from([None, 1, 2, "2"]),
    },
)
_objects = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {"name": st.just("x")}, optional={"generation": st.sampled_from([None, 1, 2, "2"])}
        ),
    },
    optional={
        "spec": st.fixed_dictionaries({}, optional={"suspend": st.sampled_from([None, False, True, "yes"])}),
        "status": st.one_of(
            st.just("odd"),
            st.fixed_dictionaries(
                {},
                optional={
                    "conditions": st.one_of(st.lists(st.one_of(_condition, st.just("junk")), max_size=3)),
                    "observedGeneration": st.sampled_from([None, 1, 2]),
                },
            ),
        ),
    },
)


_READY_TRUE = {"type": "Ready", "status": "True", "reason": "Failed", "observedGeneration": 1}


@settings(max_examples=500, deadline=None)
@example(
    obj={"metadata": {"name": "x"}, "spec": {"suspend": True}, "status": {"conditions": [_READY_TRUE]}},
    kind=KUSTOMIZATION,
)
@example(
    obj={"metadata": {"name": "x", "generation": 2}, "status": {"conditions": [_READY_TRUE]}},
    kind=HELM_RELEASE,
)
@example(obj={"metadata": {"name": "x"}, "status": {"conditions": [_READY_TRUE]}}, kind=EXTERNAL_SECRET)
@given(
    obj=_objects,
    kind=st.sampled_from(
        [KUSTOMIZATION, GIT_REPOSITORY, HELM_RELEASE, EXTERNAL_SECRET, CLUSTER_SECRET_STORE]
    ),
)
def test_node_health_is_exactly_what_health_of_says(obj: dict[str, Any], kind: str) -> None:
    model = ResourceModel()
    model.upsert(obj, kind)
    node = model.get((kind, "", "x"))
    assert node is not None
    assert (node.health, node.message) == health_of({**obj, "kind": kind})


# -- odd objects --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [None, "weird", [], {"conditions": "not a list"}, {"conditions": [None, 3, "x", {"type": 7}]}],
    ids=["missing", "string", "list", "conditions-string", "junk-conditions"],
)
def test_odd_status_never_breaks_parsing(model: ResourceModel, status: Any) -> None:
    obj: dict[str, Any] = {"kind": KUSTOMIZATION, "metadata": {"name": "odd", "namespace": FLUX_NS}}
    if status is not None:
        obj["status"] = status
    assert model.upsert(obj) == {(KUSTOMIZATION, FLUX_NS, "odd")}
    node = model.get((KUSTOMIZATION, FLUX_NS, "odd"))
    assert node is not None and node.health == "progressing"
    assert node.revision == "" and node.last_reconcile == ""


def test_unknown_condition_types_and_huge_messages_are_kept(model: ResourceModel) -> None:
    huge = "x" * 10_240
    obj = kustomization("apps")
    obj["status"]["conditions"] = [
        {"type": "Ready", "status": "False", "reason": "Failed", "message": huge, "observedGeneration": 1},
        {"type": "FancyNewThing", "status": "Maybe"},
    ]
    model.upsert(obj)
    node = model.get(K_APPS)
    assert node is not None
    assert node.message == huge
    assert node.conditions[1] == ("FancyNewThing", "Maybe", "", "")


def test_odd_specs_and_metadata_are_tolerated(model: ResourceModel) -> None:
    assert model.upsert({"kind": KUSTOMIZATION}) == set()  # no name: nothing to address
    assert model.upsert({"metadata": {"name": "kindless"}}) == set()
    odd_es = {
        "kind": EXTERNAL_SECRET,
        "metadata": {"name": "odd", "namespace": "shop", "labels": "not-a-map"},
        "spec": {"data": "nope", "dataFrom": [None, {"extract": "x"}], "target": [], "secretStoreRef": 5},
    }
    assert model.upsert(odd_es) == {(EXTERNAL_SECRET, "shop", "odd")}
    node = model.get((EXTERNAL_SECRET, "shop", "odd"))
    assert node is not None
    assert (node.vault_refs, node.applied_by, node.source_ref, node.target_secret) == ((), None, None, "odd")
    with pytest.raises(ValueError, match="set_vault_paths"):
        model.upsert({"kind": VAULT_PATH, "metadata": {"name": "x"}})


def test_five_thousand_objects_load() -> None:
    # Scale only; timing lives in the benchmarks.
    model = ResourceModel()
    kustomizations = [kustomization(f"k{i:04d}", rv=str(i)) for i in range(2_500)]
    externalsecrets = []
    for i in range(2_500):
        obj = externalsecret(
            f"e{i:04d}", f"ns{i % 40}", keys=(f"secret/app{i % 300}",), applied_by=f"k{i % 100:04d}"
        )
        obj["metadata"]["resourceVersion"] = str(10_000 + i)
        externalsecrets.append(obj)

    assert len(model.replace_kind(KUSTOMIZATION, kustomizations)) == 2_500
    model.replace_kind(EXTERNAL_SECRET, externalsecrets)
    model.set_vault_paths("secret", {f"app{i}": ["v"] for i in range(200)}, None)

    assert len(model.nodes(KUSTOMIZATION)) == 2_500 and len(model.nodes(EXTERNAL_SECRET)) == 2_500
    assert len(model.nodes(VAULT_PATH)) == 300
    assert len(model.externalsecrets_applied_by((KUSTOMIZATION, FLUX_NS, "k0001"))) == 25
    assert model.summary_counts()[VAULT_PATH]["missing"] == 100
    assert model.replace_kind(EXTERNAL_SECRET, externalsecrets) == set()  # a re-list of the same state
