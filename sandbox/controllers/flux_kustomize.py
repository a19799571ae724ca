"""kustomize-controller for ``Kustomization`` (kustomize.toolkit.fluxcd.io/v1), sandbox-sized.

A reconcile applies the manifests at the source's artifact revision (read from the Git remote
with :meth:`phases.git.GitRepo.files_at`), records the inventory, prunes what left it, and
writes status the way Flux does. Work happens when something asks for it: a new generation,
a new source revision, a ``reconcile.fluxcd.io/requestedAt`` annotation, a failed previous
attempt (retried every resync), or ``spec.interval`` elapsed since the last apply (Flux's
drift correction). Otherwise a resync is a no-op that makes no API call.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Final

from phases.git import GitRepo
from phases.kube import GIT_REPOSITORIES, KUSTOMIZATIONS
from sandbox.controllers.apply import Applier, ApplyError, InventoryEntry, Owner
from sandbox.controllers.flux_source import local_repository, parse_revision
from sandbox.controllers.git_remote import mirror_path
from sandbox.controllers.kube import JSON, object_key, split_key
from sandbox.controllers.manifests import BuildError, build_manifests
from sandbox.controllers.runtime import Controller, ControllerContext
from sandbox.controllers.status import (
    READY,
    RECONCILING,
    REQUESTED_AT_ANNOTATION,
    annotation,
    condition,
    generation,
    is_ready,
    parse_duration,
    remove_condition,
    set_condition,
    status_patch,
)

DEFAULT_INTERVAL_SECONDS: Final = 600.0
TREE_CACHE_SIZE: Final = 8


class ReconcileFailure(Exception):
    def __init__(self, reason: str, message: str, revision: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.revision = revision


class KustomizationController(Controller):
    name = "kustomization"
    primary = KUSTOMIZATIONS

    def __init__(self, context: ControllerContext) -> None:
        super().__init__(context)
        self.sources = self.informer(GIT_REPOSITORIES)
        self.sources.add_handler(self._on_source_event)
        self.objects.add_handler(self._on_dependency_event)
        self._applier: Applier | None = None
        self._last_applied_at: dict[str, float] = {}
        self._trees: OrderedDict[tuple[str, str], dict[str, bytes]] = OrderedDict()
        self._tree_lock = threading.Lock()

    @property
    def applier(self) -> Applier:
        if self._applier is None:
            self._applier = Applier(self.client)
        return self._applier

    # -- event fan-out -----------------------------------------------------------------------------

    def _on_source_event(self, _kind: str, source: JSON) -> None:
        source_key = object_key(source)
        for kustomization in self.objects.items():
            if _source_key(kustomization) == source_key:
                self.queue.add(object_key(kustomization))

    def _on_dependency_event(self, _kind: str, changed: JSON) -> None:
        changed_key = object_key(changed)
        for kustomization in self.objects.items():
            if changed_key in _dependency_keys(kustomization):
                self.queue.add(object_key(kustomization))

    # -- reconcile -----------------------------------------------------------------------------------

    def reconcile(self, key: str, obj: JSON) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return  # suspended: nothing is applied and the status stays as it was
        status: JSON = obj.get("status") or {}
        observed = generation(obj)
        requested_at = annotation(obj, REQUESTED_AT_ANNOTATION)
        try:
            revision, repository = self._source_revision(obj)
        except ReconcileFailure as failure:
            self._write_failure(key, obj, failure)
            return
        if not self._needs_apply(key, obj, revision, requested_at):
            return
        namespace, name = split_key(key)
        assert namespace is not None
        if condition(obj, RECONCILING) is None:
            self._write_progressing(key, obj, revision)
        try:
            self._check_dependencies(obj)
            objects = build_manifests(
                self._tree(repository, parse_revision(revision)), str(spec.get("path") or "")
            )
            owner = Owner(name, namespace)
            inventory = self.applier.apply(
                objects, owner, target_namespace=spec.get("targetNamespace") or None
            )
            if spec.get("prune"):
                self._prune(status, inventory, owner)
        except BuildError as error:
            self._write_failure(key, obj, ReconcileFailure("BuildFailed", str(error), revision))
            return
        except ApplyError as error:
            self._write_failure(key, obj, ReconcileFailure("ReconciliationFailed", str(error), revision))
            return
        except ReconcileFailure as failure:
            failure.revision = revision
            self._write_failure(key, obj, failure)
            return
        self._last_applied_at[key] = time.monotonic()
        message = f"Applied revision: {revision}"
        conditions = remove_condition(
            list(self._fresh(key, obj).get("status", {}).get("conditions") or []), RECONCILING
        )
        conditions = set_condition(
            conditions, READY, "True", "ReconciliationSucceeded", message, observed_generation=observed
        )
        new_status = {
            **status,
            "conditions": conditions,
            "inventory": {"entries": [entry.to_status() for entry in inventory]},
            "lastAppliedRevision": revision,
            "lastAttemptedRevision": revision,
            "observedGeneration": observed,
        }
        if requested_at is not None:
            new_status["lastHandledReconcileAt"] = requested_at
        if status.get("lastAppliedRevision") != revision:
            self.log.info("Kustomization %s: applied revision %s (%d objects)", key, revision, len(inventory))
        self._patch_status(key, obj, new_status)

    def finalize(self, key: str, last_seen: JSON) -> None:
        """A deleted Kustomization with ``prune: true`` takes its objects with it (Flux's finalizer)."""
        self._last_applied_at.pop(key, None)
        spec = last_seen.get("spec") or {}
        if not spec.get("prune") or spec.get("suspend"):
            return
        namespace, name = split_key(key)
        assert namespace is not None
        stale = _inventory(last_seen.get("status") or {})
        deleted = self.applier.prune(stale, Owner(name, namespace))
        if deleted:
            self.log.info("Kustomization %s deleted: pruned %d objects", key, len(deleted))

    def _needs_apply(self, key: str, obj: JSON, revision: str, requested_at: str | None) -> bool:
        status: JSON = obj.get("status") or {}
        if not is_ready(obj) or status.get("observedGeneration") != generation(obj):
            return True  # never applied, failed, or a new spec: (re)try now
        if status.get("lastAppliedRevision") != revision:
            return True
        if requested_at is not None and requested_at != status.get("lastHandledReconcileAt"):
            return True
        last = self._last_applied_at.get(key)
        return last is None or time.monotonic() - last >= _interval_seconds(obj)

    def _source_revision(self, obj: JSON) -> tuple[str, Path]:
        source_ref = (obj.get("spec") or {}).get("sourceRef") or {}
        kind = source_ref.get("kind", "GitRepository")
        source_key = _source_key(obj)
        if kind != "GitRepository":
            raise ReconcileFailure("ArtifactFailed", f"source kind '{kind}' is not supported by the sandbox")
        source = self.sources.get(source_key)
        if source is None:
            raise ReconcileFailure("ArtifactFailed", f"Source '{kind}/{source_key}' not found")
        artifact = (source.get("status") or {}).get("artifact") or {}
        revision = artifact.get("revision")
        if not revision:
            raise ReconcileFailure("ArtifactFailed", f"Source artifact not found for '{kind}/{source_key}'")
        repository = local_repository(str((source.get("spec") or {}).get("url") or ""))
        if repository is None:
            source_namespace, source_name = split_key(source_key)
            repository = mirror_path(self.workdir, str(source_namespace), source_name)
        return str(revision), repository

    def _check_dependencies(self, obj: JSON) -> None:
        for dependency_key in _dependency_keys(obj):
            dependency = self.objects.get(dependency_key)
            if dependency is None:
                _, name = split_key(dependency_key)
                raise ReconcileFailure(
                    "DependencyNotReady",
                    f"unable to get '{dependency_key}' dependency: "
                    f'{KUSTOMIZATIONS.group_resource} "{name}" not found',
                )
            dependency_status = dependency.get("status") or {}
            if not is_ready(dependency) or dependency_status.get("observedGeneration") != generation(
                dependency
            ):
                raise ReconcileFailure("DependencyNotReady", f"dependency '{dependency_key}' is not ready")

    def _tree(self, repository: Path, sha: str) -> dict[str, bytes]:
        """Every file of the repository at ``sha`` (cached: a commit never changes)."""
        cache_key = (str(repository), sha)
        with self._tree_lock:
            if cache_key in self._trees:
                self._trees.move_to_end(cache_key)
                return self._trees[cache_key]
        try:
            files = GitRepo(repository).files_at(sha, ".")
        except Exception as error:
            raise ReconcileFailure(
                "ArtifactFailed", f"failed to read revision {sha} from {repository}: {error}"
            ) from error
        with self._tree_lock:
            self._trees[cache_key] = files
            while len(self._trees) > TREE_CACHE_SIZE:
                self._trees.popitem(last=False)
        return files

    def _prune(self, status: JSON, inventory: list[InventoryEntry], owner: Owner) -> None:
        current = {entry.id for entry in inventory}
        stale = [entry for entry in _inventory(status) if entry.id not in current]
        if stale:
            self.applier.prune(stale, owner)

    # -- status writes ---------------------------------------------------------------------------------

    def _fresh(self, key: str, obj: JSON) -> JSON:
        """The latest copy we know (our own progressing write may be newer than ``obj``)."""
        return self.objects.get(key) or obj

    def _write_progressing(self, key: str, obj: JSON, revision: str) -> None:
        status: JSON = obj.get("status") or {}
        observed = generation(obj)
        conditions = list(status.get("conditions") or [])
        conditions = set_condition(
            conditions,
            RECONCILING,
            "True",
            "Progressing",
            f"Fetching manifests for revision {revision}",
            observed_generation=observed,
        )
        conditions = set_condition(
            conditions,
            READY,
            "Unknown",
            "Progressing",
            "Reconciliation in progress",
            observed_generation=observed,
        )
        self._patch_status(key, obj, {**status, "conditions": conditions})

    def _write_failure(self, key: str, obj: JSON, failure: ReconcileFailure) -> None:
        fresh = self._fresh(key, obj)
        status: JSON = fresh.get("status") or {}
        observed = generation(obj)
        conditions = list(status.get("conditions") or [])
        retrying = next((item for item in conditions if item.get("type") == RECONCILING), None)
        if retrying is not None:
            # Flux keeps Reconciling on a failed attempt, with the reason saying it will retry.
            conditions = set_condition(
                conditions,
                RECONCILING,
                "True",
                "ProgressingWithRetry",
                str(retrying.get("message") or "Reconciliation in progress"),
                observed_generation=observed,
            )
        conditions = set_condition(
            conditions, READY, "False", failure.reason, failure.message, observed_generation=observed
        )
        new_status: JSON = {**status, "conditions": conditions}
        if failure.revision is not None:
            new_status["lastAttemptedRevision"] = failure.revision
        requested_at = annotation(obj, REQUESTED_AT_ANNOTATION)
        if requested_at is not None:
            new_status["lastHandledReconcileAt"] = requested_at
        ready = condition(fresh, READY)
        if ready is None or ready.get("message") != failure.message:
            self.log.warning("Kustomization %s: %s: %s", key, failure.reason, failure.message)
        self._patch_status(key, fresh, new_status)

    def _patch_status(self, key: str, obj: JSON, new_status: JSON) -> None:
        fresh = self._fresh(key, obj)
        patch = status_patch(fresh.get("status") or {}, new_status)
        if patch:
            self.patch_status(key, patch)


def _source_key(obj: JSON) -> str:
    source_ref = (obj.get("spec") or {}).get("sourceRef") or {}
    namespace = source_ref.get("namespace") or (obj.get("metadata") or {}).get("namespace")
    return f"{namespace}/{source_ref.get('name', '')}"


def _dependency_keys(obj: JSON) -> list[str]:
    own_namespace = (obj.get("metadata") or {}).get("namespace")
    keys = []
    for dependency in (obj.get("spec") or {}).get("dependsOn") or []:
        if isinstance(dependency, dict) and dependency.get("name"):
            keys.append(f"{dependency.get('namespace') or own_namespace}/{dependency['name']}")
    return keys


def _inventory(status: JSON) -> list[InventoryEntry]:
    entries = ((status.get("inventory") or {}).get("entries")) or []
    parsed = (InventoryEntry.from_status(entry) for entry in entries if isinstance(entry, dict))
    return [entry for entry in parsed if entry is not None]


def _interval_seconds(obj: JSON) -> float:
    try:
        seconds = parse_duration(str((obj.get("spec") or {}).get("interval") or ""))
    except ValueError:
        return DEFAULT_INTERVAL_SECONDS
    return seconds if seconds > 0 else DEFAULT_INTERVAL_SECONDS
