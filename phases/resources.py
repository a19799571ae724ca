"""The resource tree's model: Flux, ESO and Vault state as plain, comparable nodes with cross-links.

Pure data, no I/O: watchers feed it Kubernetes objects, a Vault lister feeds it KV paths (names only, never
values), widgets read it. Every mutation returns the keys whose *rendering* may have changed: the node
itself plus every linked node whose link text changed (the Kustomization that applies an ExternalSecret,
the Vault path it reads, the ExternalSecrets reading a path that appeared or vanished). A UI can therefore
update exactly those rows. A mutation that changes nothing returns an empty set.

Links kept both ways, each with a reverse index so a change costs O(links), not O(nodes):

* ExternalSecret -> Kustomization, from the labels ``kustomize.toolkit.fluxcd.io/name`` and ``/namespace``
  the kustomize-controller stamps on what it applies;
* ExternalSecret -> Vault KV paths it reads (``data[].remoteRef.key`` and ``dataFrom[].extract.key``),
  normalised the way ESO's Vault provider does: relative to the store's mount, so ``secret/myapp`` and
  ``myapp`` are the same path for a store whose ``path`` is ``secret``;
* ExternalSecret -> its (Cluster)SecretStore, so a store whose mount changes re-normalises its readers.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

from phases.health import health_of

NodeKey = tuple[str, str, str]  # (kind, namespace or "", name)
NodeHealth = Literal["ready", "not-ready", "progressing", "suspended", "unknown", "missing"]
ConditionRow = tuple[str, str, str, str]  # (type, status, reason, message)
SourceState = Literal["loading", "ok", "missing", "unreachable", "error"]
VaultState = Literal["unknown", "ok", "sealed", "unreachable"]

GIT_REPOSITORY: Final = "GitRepository"
KUSTOMIZATION: Final = "Kustomization"
HELM_RELEASE: Final = "HelmRelease"
CLUSTER_SECRET_STORE: Final = "ClusterSecretStore"
SECRET_STORE: Final = "SecretStore"
EXTERNAL_SECRET: Final = "ExternalSecret"
VAULT_PATH: Final = "VaultPath"  # synthetic: one KV path under the listed Vault mount

FLUX_KINDS: Final = (GIT_REPOSITORY, KUSTOMIZATION, HELM_RELEASE)
ESO_KINDS: Final = (CLUSTER_SECRET_STORE, EXTERNAL_SECRET)
KUBERNETES_KINDS: Final = FLUX_KINDS + ESO_KINDS
HEALTHS: Final[tuple[NodeHealth, ...]] = (
    "ready",
    "not-ready",
    "progressing",
    "suspended",
    "unknown",
    "missing",
)

APPLIED_BY_NAME_LABEL: Final = "kustomize.toolkit.fluxcd.io/name"
APPLIED_BY_NAMESPACE_LABEL: Final = "kustomize.toolkit.fluxcd.io/namespace"
DEFAULT_VAULT_MOUNT: Final = "secret"


class ResourceNode(NamedTuple):
    """One object as the tree shows it. Equality is what "changed" means for :class:`ResourceModel`.

    A NamedTuple, not a frozen dataclass: a re-list builds thousands of nodes and compares each with the
    one it replaces, and a tuple is built and compared in C (a frozen dataclass's ``__init__`` is ~4x
    slower, a quarter of a 5,000-object load).
    """

    kind: str
    namespace: str
    name: str
    health: NodeHealth
    message: str
    suspended: bool = False
    revision: str = ""  # lastAppliedRevision, or the source artifact's revision
    last_reconcile: str = ""  # status.lastHandledReconcileAt
    conditions: tuple[ConditionRow, ...] = ()
    source_ref: NodeKey | None = None  # Flux sourceRef / chart source; ESO secretStoreRef
    target_secret: str = ""  # ExternalSecret: the Secret it writes
    vault_refs: tuple[str, ...] = ()  # ExternalSecret: KV paths it reads, relative to vault_mount
    vault_mount: str = ""  # ExternalSecret: the mount vault_refs are relative to
    applied_by: NodeKey | None = None  # the Kustomization that applied this object
    refresh_time: str = ""  # ExternalSecret: status.refreshTime (last successful sync)
    vault_keys: tuple[str, ...] = ()  # VaultPath: key names (values are never fetched)

    @property
    def key(self) -> NodeKey:
        return (self.kind, self.namespace, self.name)


def node_key(kind: str, namespace: str | None, name: str) -> NodeKey:
    return (kind, namespace or "", name)


def vault_path_key(path: str) -> NodeKey:
    return (VAULT_PATH, "", path)


def short_revision(revision: str) -> str:
    """``main@sha1:0123456789ab…`` -> ``main@0123456`` (also tags/versions: ``6.5.0@sha256:…``);
    a bare digest -> its first 7 hex digits; chart versions and other short strings unchanged."""
    if not revision:
        return ""
    ref, at, digest = revision.rpartition("@")
    if not at:  # no "@": a bare digest ("sha256:…"), a legacy "main/0123…", or a chart version
        ref, digest = "", revision
    algorithm, colon, hexdigits = digest.partition(":")
    if colon and algorithm.startswith("sha"):
        return f"{ref}@{hexdigits[:7]}" if ref else hexdigits[:7]
    branch, slash, legacy = digest.rpartition("/")
    if slash and _looks_like_digest(legacy):
        return f"{branch}/{legacy[:7]}"
    return revision if len(revision) <= 24 else revision[:23] + "…"


def _looks_like_digest(text: str) -> bool:
    return len(text) >= 12 and all(char in "0123456789abcdef" for char in text)


def normalise_vault_key(key: str, mount: str, kv_version: str = "v2") -> str:
    """The KV path ESO's Vault provider reads for ``remoteRef.key`` on a store with path ``mount``."""
    path = key.strip().strip("/")
    prefix = mount.strip("/") + "/"
    if mount and path.startswith(prefix):
        path = path[len(prefix) :]
    if kv_version == "v2" and path.startswith("data/"):
        path = path[len("data/") :]
    return path


# -- reading objects -----------------------------------------------------------------------------------------
# Objects arrive as parsed JSON, so dicts: exact ``dict`` checks are several times cheaper than
# ``isinstance(x, Mapping)``, which matters when a re-list parses thousands of objects.

_EMPTY: Final[dict[str, Any]] = {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _revision(kind: str, status: dict[str, Any]) -> str:
    revision = _text(status.get("lastAppliedRevision")) or _text(
        _dict(status.get("artifact")).get("revision")
    )
    if revision or kind != HELM_RELEASE:
        return revision
    history = status.get("history")  # helm-controller v2 records releases here
    if isinstance(history, list) and history:
        revision = _text(_dict(history[0]).get("chartVersion"))
    return revision or _text(status.get("lastAttemptedRevision"))


def _condition_rows(status: dict[str, Any]) -> tuple[ConditionRow, ...]:
    """Same reading as :func:`phases.health.conditions` (non-dict entries skipped), as plain tuples."""
    raw = status.get("conditions")
    if not isinstance(raw, list) or not raw:
        return ()
    return tuple(
        [
            (
                _text(item.get("type", "")),
                _text(item.get("status", "Unknown")),
                _text(item.get("reason") or ""),
                _text(item.get("message") or ""),
            )
            for item in raw
            if isinstance(item, dict)
        ]
    )


def _ref(ref: Any, default_kind: str, own_namespace: str) -> NodeKey | None:
    ref = _dict(ref)
    name = _text(ref.get("name"))
    if not name:
        return None
    kind = _text(ref.get("kind")) or default_kind
    namespace = "" if kind == CLUSTER_SECRET_STORE else (_text(ref.get("namespace")) or own_namespace)
    return (kind, namespace, name)


def _source_ref(kind: str, spec: dict[str, Any], namespace: str) -> NodeKey | None:
    if kind == KUSTOMIZATION:
        return _ref(spec.get("sourceRef"), GIT_REPOSITORY, namespace)
    if kind == HELM_RELEASE:
        chart_spec = _dict(_dict(spec.get("chart")).get("spec"))
        return _ref(chart_spec.get("sourceRef"), "HelmRepository", namespace) or _ref(
            spec.get("chartRef"), "OCIRepository", namespace
        )
    if kind == EXTERNAL_SECRET:
        return _ref(spec.get("secretStoreRef"), SECRET_STORE, namespace)
    return None


def _remote_keys(spec: dict[str, Any]) -> tuple[str, ...]:
    """Raw KV keys an ExternalSecret reads; ``dataFrom[].find`` searches are not single paths, so skipped."""
    keys: list[str] = []
    data = spec.get("data")
    for item in data if isinstance(data, list) else ():
        key = _text(_dict(_dict(item).get("remoteRef")).get("key"))
        if key:
            keys.append(key)
    data_from = spec.get("dataFrom")
    for item in data_from if isinstance(data_from, list) else ():
        key = _text(_dict(_dict(item).get("extract")).get("key"))
        if key:
            keys.append(key)
    return tuple(keys)


def _store_vault_mount(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(mount, KV version) of a store with a Vault provider; None for any other provider."""
    vault = _dict(_dict(_dict(obj.get("spec")).get("provider")).get("vault"))
    if not vault:
        return None
    return (_text(vault.get("path")).strip("/") or DEFAULT_VAULT_MOUNT, _text(vault.get("version")) or "v2")


_FLUX_HEALTH_KINDS: Final = frozenset({*FLUX_KINDS, "HelmRepository", "OCIRepository"})


def _ready_fast(
    kind: str, metadata: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]
) -> tuple[NodeHealth, str] | None:
    """The healthy case of :func:`phases.health.health_of`, read without building Condition objects.

    Most objects are healthy, and a re-list parses thousands. None whenever the answer is not plainly
    "ready": :func:`health_of` then decides, so it stays the one definition (a test checks they agree).
    """
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    ready = None
    for condition in conditions:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            ready = condition
            break
    if ready is None or ready.get("status") != "True":
        return None
    message, reason = ready.get("message") or "", ready.get("reason") or ""
    if not isinstance(message, str) or not isinstance(reason, str):
        return None
    if kind in _FLUX_HEALTH_KINDS:
        if spec.get("suspend"):
            return None
        wanted = metadata.get("generation")
        seen = ready.get("observedGeneration")
        if not isinstance(seen, int):
            seen = status.get("observedGeneration")
        if isinstance(wanted, int) and isinstance(seen, int) and seen < wanted:
            return None
        return "ready", message or reason
    if kind == EXTERNAL_SECRET:
        return ("ready", message or "secret synced") if reason in ("SecretSynced", "") else None
    if kind in (CLUSTER_SECRET_STORE, SECRET_STORE):
        return "ready", message or reason
    return None


def _parse(
    obj: Mapping[str, Any],
    key: NodeKey,
    metadata: dict[str, Any],
    spec: dict[str, Any],
    vault_refs: tuple[str, ...] = (),
    vault_mount: str = "",
    source_ref: NodeKey | None = None,
) -> ResourceNode:
    """``obj`` as a node; ``metadata`` and ``spec`` are its parts, already read by the caller."""
    kind, namespace, name = key
    status = _dict(obj.get("status"))
    health_and_message = _ready_fast(kind, metadata, spec, status)
    if health_and_message is None:
        health_and_message = health_of(obj if obj.get("kind") == kind else {**obj, "kind": kind})
    health, message = health_and_message
    applied_by = None
    labels = metadata.get("labels")
    if isinstance(labels, dict):
        applied_name = _text(labels.get(APPLIED_BY_NAME_LABEL))
        if applied_name:
            applied_by = (
                KUSTOMIZATION,
                _text(labels.get(APPLIED_BY_NAMESPACE_LABEL)) or namespace,
                applied_name,
            )
    target = ""
    if kind == EXTERNAL_SECRET:
        target = _text(_dict(spec.get("target")).get("name")) or name  # ESO defaults to its own name
    return ResourceNode(
        kind,
        namespace,
        name,
        health,
        message,
        bool(spec.get("suspend")),
        _revision(kind, status),
        _text(status.get("lastHandledReconcileAt")),
        _condition_rows(status),
        source_ref if source_ref is not None else _source_ref(kind, spec, namespace),
        target,
        vault_refs,
        vault_mount,
        applied_by,
        _text(status.get("refreshTime")),
    )


# -- the model -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultSummary:
    state: VaultState
    mount: str
    message: str  # the error when sealed/unreachable


class ResourceModel:
    """Every node the tree shows, keyed by :data:`NodeKey`, plus the link indexes. Not thread-safe:
    mutate it from one thread (the UI thread), fed by watcher batches marshalled there."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[NodeKey, ResourceNode]] = {}
        self._sorted: dict[str, list[ResourceNode]] = {}  # per-kind cache, dropped on any change
        self._key_versions: dict[str, int] = {}  # per kind, bumped when a key is added or removed
        self._counts: dict[str, Counter[NodeHealth]] = {}
        self._source_states: dict[str, tuple[SourceState, str]] = {}
        # Links and their reverse indexes.
        self._applied: dict[NodeKey, set[NodeKey]] = {}  # Kustomization -> ExternalSecrets it applied
        self._readers: dict[str, set[NodeKey]] = {}  # KV path (listed mount) -> ExternalSecrets
        self._read_paths: dict[NodeKey, frozenset[str]] = {}  # ExternalSecret -> its entries in _readers
        self._by_store: dict[NodeKey, set[NodeKey]] = {}  # store -> ExternalSecrets using it
        self._remote_keys: dict[NodeKey, tuple[str, ...]] = {}  # ExternalSecret -> raw remoteRef keys
        self._store_mounts: dict[NodeKey, tuple[str, str] | None] = {}
        self._versions: dict[NodeKey, str] = {}  # resourceVersion last parsed, to skip unchanged objects
        # Vault paths whose node may be stale, refreshed once at the end of each mutation: a re-list of
        # 2,500 ExternalSecrets reading 1,500 paths then rebuilds each path node once, not once per reader.
        self._dirty_paths: set[str] = set()
        # Vault: what the last listing said.
        self._vault_mount = DEFAULT_VAULT_MOUNT
        self._vault_paths: dict[str, tuple[str, ...]] | None = None
        self._vault_error: str | None = None

    # -- mutations -------------------------------------------------------------------------------------------
    # Each public mutation gathers the keys to re-render in one set that the internals add to, then
    # refreshes the Vault paths it touched (_flush).

    def upsert(self, obj: Mapping[str, Any], kind: str | None = None) -> set[NodeKey]:
        """Add or update one object (its ``kind`` field, or ``kind``). Returns the keys to re-render."""
        changed: set[NodeKey] = set()
        self._upsert(obj, kind or _text(obj.get("kind")), changed)
        return self._flush(changed)

    def _upsert(self, obj: Mapping[str, Any], kind: str, changed: set[NodeKey]) -> NodeKey | None:
        if kind == VAULT_PATH:
            raise ValueError("Vault paths come from set_vault_paths, not from objects")
        metadata = _dict(obj.get("metadata"))
        name = _text(metadata.get("name"))
        if not kind or not name:  # nothing a tree could show or address
            return None
        key = (kind, _text(metadata.get("namespace")), name)
        version = _text(metadata.get("resourceVersion"))
        if version and self._versions.get(key) == version:
            return key  # the API server bumps resourceVersion on every write: same version, same object
        spec = _dict(obj.get("spec"))
        if kind == EXTERNAL_SECRET:
            self._remote_keys[key] = raw = _remote_keys(spec)
            store = _source_ref(kind, spec, key[1])
            node = _parse(obj, key, metadata, spec, *self._vault_refs(raw, store), source_ref=store)
        else:
            node = _parse(obj, key, metadata, spec)
        self._versions[key] = version
        self._put(node, changed)
        if kind in (CLUSTER_SECRET_STORE, SECRET_STORE):
            self._set_store_mount(key, _store_vault_mount(obj), changed)
        return key

    def delete(self, kind: str, namespace: str | None, name: str) -> set[NodeKey]:
        changed: set[NodeKey] = set()
        self._delete(node_key(kind, namespace, name), changed)
        return self._flush(changed)

    def _delete(self, key: NodeKey, changed: set[NodeKey]) -> None:
        self._versions.pop(key, None)
        self._remove(key, changed)
        if key[0] in (CLUSTER_SECRET_STORE, SECRET_STORE):
            self._set_store_mount(key, None, changed, forget=True)

    def replace_kind(self, kind: str, objs: Iterable[Mapping[str, Any]]) -> set[NodeKey]:
        """Make ``kind`` hold exactly ``objs`` (after a re-list): adds, changes and removals."""
        if kind == VAULT_PATH:
            raise ValueError("Vault paths come from set_vault_paths, not from objects")
        changed: set[NodeKey] = set()
        seen: set[NodeKey] = set()
        for obj in objs:
            key = self._upsert(obj, kind, changed)
            if key is not None:
                seen.add(key)
        for key in [key for key in self._by_kind.get(kind, {}) if key not in seen]:
            self._delete(key, changed)
        return self._flush(changed)

    def set_source_state(self, kind: str, state: SourceState, message: str = "") -> bool:
        """Record whether ``kind`` is watched fine, not installed or unreachable. True if that changed."""
        previous = self._source_states.get(kind)
        self._source_states[kind] = (state, message)
        return previous != (state, message)

    def set_vault_paths(
        self, mount: str, paths: Mapping[str, Sequence[str]] | None, error: str | None = None
    ) -> set[NodeKey]:
        """The KV paths under ``mount`` with their key names; ``paths=None`` with ``error`` when Vault
        is sealed or unreachable (the tree then shows referenced paths as unknown, not missing)."""
        mount = mount.strip("/") or DEFAULT_VAULT_MOUNT
        new_paths = (
            None if paths is None else {path.strip("/"): tuple(sorted(keys)) for path, keys in paths.items()}
        )
        new_error = None if new_paths is not None else (error or "Vault state unknown")
        changed: set[NodeKey] = set()
        old_paths = self._vault_paths
        dirty = self._dirty_paths
        if mount != self._vault_mount:
            # ExternalSecrets relying on the default mount, and every path node, are relative to it.
            self._vault_mount = mount
            externalsecrets = self._by_kind.get(EXTERNAL_SECRET, {})
            for key in list(externalsecrets):
                self._put(self._with_vault_refs(externalsecrets[key]), changed)
                self._link_paths(key, externalsecrets[key], changed)
                changed.add(key)  # whether its refs exist in the listing may change with the mount
            dirty.update(key[2] for key in self._by_kind.get(VAULT_PATH, {}))
            dirty.update(old_paths or ())
            dirty.update(new_paths or ())
        elif (old_paths is None) != (new_paths is None) or new_error != self._vault_error:
            # Listed <-> not listed, or why not: every path's state (and unknown paths' message) changes.
            dirty.update(old_paths or ())
            dirty.update(new_paths or ())
            dirty.update(self._readers)
        elif old_paths is not None and new_paths is not None:
            # A fresh listing of the same mount (every poll): only the paths whose keys differ.
            dirty.update(path for path, keys in new_paths.items() if old_paths.get(path) != keys)
            dirty.update(path for path in old_paths if path not in new_paths)
        self._vault_paths = new_paths
        self._vault_error = new_error
        return self._flush(changed)

    # -- queries ---------------------------------------------------------------------------------------------

    def get(self, key: NodeKey) -> ResourceNode | None:
        return self._by_kind.get(key[0], {}).get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 3 and self.get(key) is not None

    def __len__(self) -> int:
        return sum(len(nodes) for nodes in self._by_kind.values())

    def keys(self) -> set[NodeKey]:
        return {key for nodes in self._by_kind.values() for key in nodes}

    def keys_version(self, kind: str) -> int:
        """A number that changes whenever a key of ``kind`` is added or removed (not when a node changes):
        a view that saw the same number has the same keys, so a burst of updates needs no membership work."""
        return self._key_versions.get(kind, 0)

    def sorted_keys(self, kind: str) -> list[NodeKey]:
        """The keys of ``kind`` in :meth:`nodes` order: within one kind a key's own order is (namespace,
        name), so this sorts tuples in C without building a list of nodes."""
        return sorted(self._by_kind.get(kind, ()))

    def nodes(self, kind: str) -> list[ResourceNode]:
        """The nodes of ``kind`` sorted by (namespace, name); do not mutate the returned list."""
        cached = self._sorted.get(kind)
        if cached is None:
            cached = sorted(self._by_kind.get(kind, {}).values(), key=_sort_key)
            self._sorted[kind] = cached
        return cached

    def externalsecrets_applied_by(self, kustomization: NodeKey) -> list[NodeKey]:
        return sorted(self._applied.get(kustomization, ()))

    def applies_any(self, kustomization: NodeKey) -> bool:
        """Whether ``kustomization`` applied any ExternalSecret (no list built)."""
        return kustomization in self._applied

    def readers_of(self, vault_path: str) -> list[NodeKey]:
        """ExternalSecrets reading ``vault_path`` (relative to the listed mount)."""
        return sorted(self._readers.get(vault_path.strip("/"), ()))

    def is_read(self, vault_path: str) -> bool:
        """Whether any ExternalSecret reads ``vault_path`` (no list built)."""
        return vault_path.strip("/") in self._readers

    def vault_path_exists(self, path: str) -> bool | None:
        """Whether Vault listed ``path`` under the current mount; None when Vault could not be listed."""
        if self._vault_paths is None:
            return None
        return path.strip("/") in self._vault_paths

    def vault_ref_exists(self, node: ResourceNode, path: str) -> bool | None:
        """Like :meth:`vault_path_exists` for one of ``node``'s refs; None when it reads another mount."""
        if node.vault_mount != self._vault_mount:
            return None
        return self.vault_path_exists(path)

    def vault_summary(self) -> VaultSummary:
        if self._vault_paths is not None:
            return VaultSummary("ok", self._vault_mount, "")
        if self._vault_error is None:
            return VaultSummary("unknown", self._vault_mount, "")
        state: VaultState = "sealed" if "sealed" in self._vault_error.lower() else "unreachable"
        return VaultSummary(state, self._vault_mount, self._vault_error)

    def source_state(self, kind: str) -> tuple[SourceState, str]:
        return self._source_states.get(kind, ("loading", ""))

    def summary_counts(self) -> dict[str, dict[NodeHealth, int]]:
        """Per kind (every Kubernetes kind and VaultPath, even when empty): nodes per health."""
        empty: Counter[NodeHealth] = Counter()
        return {
            kind: {health: self._counts.get(kind, empty)[health] for health in HEALTHS}
            for kind in (*KUBERNETES_KINDS, VAULT_PATH)
        }

    # -- internals -------------------------------------------------------------------------------------------

    def _flush(self, changed: set[NodeKey]) -> set[NodeKey]:
        """Refresh the Vault path nodes the mutation touched; returns ``changed``."""
        dirty = self._dirty_paths
        if dirty:
            for path in dirty:
                self._refresh_vault_path(path, changed)
            dirty.clear()
        return changed

    def _put(self, node: ResourceNode, changed: set[NodeKey]) -> None:
        kind = node.kind
        key = (kind, node.namespace, node.name)
        nodes = self._by_kind.get(kind)
        if nodes is None:
            nodes = self._by_kind[kind] = {}
        old = nodes.get(key)
        if old == node:
            return
        nodes[key] = node
        self._sorted.pop(kind, None)
        if old is None:
            self._key_versions[kind] = self._key_versions.get(kind, 0) + 1
        counts = self._counts.get(kind)
        if counts is None:
            counts = self._counts[kind] = Counter()
        if old is not None:
            counts[old.health] -= 1
        counts[node.health] += 1
        changed.add(key)
        if kind == EXTERNAL_SECRET:
            self._relink_externalsecret(key, old, node, changed)
        elif kind == VAULT_PATH and (old is None or old.health != node.health):
            changed.update(self._readers.get(node.name, ()))  # their "exists"/"missing" line changes

    def _remove(self, key: NodeKey, changed: set[NodeKey]) -> None:
        nodes = self._by_kind.get(key[0], {})
        old = nodes.pop(key, None)
        if old is None:
            return
        self._sorted.pop(key[0], None)
        self._key_versions[key[0]] += 1
        self._counts[key[0]][old.health] -= 1
        changed.add(key)
        if old.kind == EXTERNAL_SECRET:
            self._remote_keys.pop(key, None)
            self._relink_externalsecret(key, old, None, changed)
        elif old.kind == VAULT_PATH:
            changed.update(self._readers.get(old.name, ()))

    def _relink_externalsecret(
        self, key: NodeKey, old: ResourceNode | None, new: ResourceNode | None, changed: set[NodeKey]
    ) -> None:
        """Move ``key`` between link indexes; adds the linked nodes whose link text changed."""
        old_applier = old.applied_by if old is not None else None
        new_applier = new.applied_by if new is not None else None
        if old_applier != new_applier:
            if old_applier is not None:
                _discard(self._applied, old_applier, key)
                changed.add(old_applier)
            if new_applier is not None:
                self._applied.setdefault(new_applier, set()).add(key)
                changed.add(new_applier)
        old_store = old.source_ref if old is not None else None
        new_store = new.source_ref if new is not None else None
        if old_store != new_store:
            if old_store is not None:
                _discard(self._by_store, old_store, key)
            if new_store is not None:
                self._by_store.setdefault(new_store, set()).add(key)
        if (
            old is not None
            and new is not None
            and old.vault_refs == new.vault_refs
            and old.vault_mount == new.vault_mount
        ):
            return  # the common update: same Vault paths
        self._link_paths(key, new, changed)

    def _link_paths(self, key: NodeKey, node: ResourceNode | None, changed: set[NodeKey]) -> None:
        """Make ``_readers`` hold ``key`` for exactly the listed-mount paths ``node`` reads."""
        new_paths = self._listed_mount_refs(node)
        old_paths = self._read_paths.get(key, frozenset())
        if new_paths == old_paths:
            return
        if new_paths:
            self._read_paths[key] = new_paths
        else:
            self._read_paths.pop(key, None)
        for path in old_paths - new_paths:
            _discard(self._readers, path, key)
        for path in new_paths - old_paths:
            self._readers.setdefault(path, set()).add(key)
        for path in old_paths ^ new_paths:
            self._dirty_paths.add(path)
            changed.add(vault_path_key(path))  # its "read by" line changes even if the node does not

    def _listed_mount_refs(self, node: ResourceNode | None) -> frozenset[str]:
        if node is None or not node.vault_refs or node.vault_mount != self._vault_mount:
            return frozenset()
        return frozenset(node.vault_refs)

    def _refresh_vault_path(self, path: str, changed: set[NodeKey]) -> None:
        """Make the VaultPath node for ``path`` match the listing and its readers (or drop it)."""
        key = vault_path_key(path)
        listed = self._vault_paths.get(path) if self._vault_paths is not None else None
        if listed is None and path not in self._readers:
            self._remove(key, changed)
            return
        health: NodeHealth
        if listed is not None:
            health, message = "ready", f"{len(listed)} key{'s' if len(listed) != 1 else ''}"
        elif self._vault_paths is None:
            health, message = "unknown", self._vault_error or "Vault not listed yet"
        else:
            health, message = "missing", f"not found in Vault mount {self._vault_mount}/"
        self._put(
            ResourceNode(
                kind=VAULT_PATH,
                namespace="",
                name=path,
                health=health,
                message=message,
                vault_mount=self._vault_mount,
                vault_keys=listed or (),
            ),
            changed,
        )

    def _vault_refs(self, raw: tuple[str, ...], store: NodeKey | None) -> tuple[tuple[str, ...], str]:
        """(KV paths, mount) an ExternalSecret reading ``raw`` keys through ``store`` reads."""
        default = (self._vault_mount, "v2")  # store not seen (yet): assume the listed mount, as ESO setups do
        vault = self._store_mounts.get(store, default) if store is not None else default
        if vault is None:  # a store with another provider: no Vault paths
            return (), ""
        mount, version = vault
        paths: dict[str, None] = {}  # ordered and de-duplicated
        for key in raw:
            path = normalise_vault_key(key, mount, version)
            if path:
                paths[path] = None
        return tuple(paths), mount

    def _with_vault_refs(self, node: ResourceNode) -> ResourceNode:
        refs, mount = self._vault_refs(self._remote_keys.get(node.key, ()), node.source_ref)
        if (refs, mount) == (node.vault_refs, node.vault_mount):
            return node
        return node._replace(vault_refs=refs, vault_mount=mount)

    def _set_store_mount(
        self, store: NodeKey, vault: tuple[str, str] | None, changed: set[NodeKey], *, forget: bool = False
    ) -> None:
        if forget:
            if store not in self._store_mounts:
                return
            del self._store_mounts[store]
        elif self._store_mounts.get(store, ...) == vault:
            return
        else:
            self._store_mounts[store] = vault
        externalsecrets = self._by_kind.get(EXTERNAL_SECRET, {})
        for key in sorted(self._by_store.get(store, ())):
            if key in externalsecrets:
                self._put(self._with_vault_refs(externalsecrets[key]), changed)


def _sort_key(node: ResourceNode) -> tuple[str, str]:
    return (node.namespace, node.name)


def _discard(index: dict[Any, set[NodeKey]], owner: Any, key: NodeKey) -> None:
    members = index.get(owner)
    if members is not None:
        members.discard(key)
        if not members:
            del index[owner]


def insertion_index(sorted_keys: Sequence[NodeKey], key: NodeKey) -> int:
    """Where ``key`` goes among keys sorted like :meth:`ResourceModel.nodes` (namespace, name)."""
    return bisect.bisect_left(sorted_keys, (key[1], key[2]), key=lambda k: (k[1], k[2]))


def key_matches(key: NodeKey, filter_text: str) -> bool:
    """The resource tree's filter rule: case-insensitive substring of the kind, namespace or name."""
    needle = filter_text.strip().lower()
    return not needle or any(needle in part.lower() for part in key)
