"""Apply and prune objects the way kustomize-controller does, over plain REST.

Flux uses server-side apply; the emulator has none, so an object is created when missing and
merge-patched otherwise (only when the patch would change something, so a no-op reconcile
makes no write). Like Flux's staged apply, CustomResourceDefinitions and Namespaces go first;
then every remaining object is mapped to its REST resource before any of them is written, so
an unknown kind fails the whole stage with Flux's message and applies nothing of it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from phases.kube import KubeClient, KubeError, KubeNoKindMatch, ResourceType, RestMapper
from sandbox.controllers.kube import JSON
from sandbox.controllers.status import changes_anything

NAME_LABEL: Final = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL: Final = "kustomize.toolkit.fluxcd.io/namespace"
PRUNE_ANNOTATION: Final = "kustomize.toolkit.fluxcd.io/prune"
SSA_ANNOTATION: Final = "kustomize.toolkit.fluxcd.io/ssa"
FIRST_STAGE_KINDS: Final = ("CustomResourceDefinition", "Namespace")
DEFAULT_NAMESPACE: Final = "default"

log = logging.getLogger("sandbox.controllers.kustomization.apply")


class ApplyError(Exception):
    """Applying failed; the message is what Flux would put into the Ready condition."""


@dataclass(frozen=True)
class Owner:
    """The Kustomization that owns applied objects (through Flux's two labels)."""

    name: str
    namespace: str

    @property
    def labels(self) -> dict[str, str]:
        return {NAME_LABEL: self.name, NAMESPACE_LABEL: self.namespace}


@dataclass(frozen=True)
class InventoryEntry:
    namespace: str
    name: str
    group: str
    kind: str
    version: str

    @property
    def id(self) -> str:
        # Flux's ObjMetadata string: <namespace>_<name>_<group>_<kind> (empty parts stay empty).
        return f"{self.namespace}_{self.name}_{self.group}_{self.kind}"

    def to_status(self) -> JSON:
        return {"id": self.id, "v": self.version}

    @classmethod
    def from_status(cls, entry: JSON) -> InventoryEntry | None:
        parts = str(entry.get("id", "")).split("_")
        if len(parts) < 4:
            return None
        # RBAC names may contain underscores; namespace, group and kind never do.
        namespace, name, group, kind = parts[0], "_".join(parts[1:-2]), parts[-2], parts[-1]
        return cls(namespace, name, group, kind, str(entry.get("v", "")))

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def describe(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


class Applier:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.mapper = RestMapper(client)

    def apply(
        self, objects: Iterable[JSON], owner: Owner, *, target_namespace: str | None
    ) -> list[InventoryEntry]:
        """Apply every object; return the inventory, sorted like Flux's."""
        self.mapper.invalidate()  # CRDs may have come or gone since the last reconcile
        pending = list(objects)
        first = [obj for obj in pending if obj.get("kind") in FIRST_STAGE_KINDS]
        rest = [obj for obj in pending if obj.get("kind") not in FIRST_STAGE_KINDS]
        first.sort(key=lambda obj: (FIRST_STAGE_KINDS.index(str(obj.get("kind"))), _name(obj)))
        inventory = [
            self._apply_one(obj, rtype, owner) for obj, rtype in self._resolve(first, target_namespace)
        ]
        if any(obj.get("kind") == "CustomResourceDefinition" for obj in first):
            self.mapper.invalidate()
        resolved = self._resolve(rest, target_namespace)
        resolved.sort(key=lambda item: (item[0].get("kind", ""), _namespace(item[0]), _name(item[0])))
        inventory.extend(self._apply_one(obj, rtype, owner) for obj, rtype in resolved)
        return sorted(inventory, key=lambda entry: entry.id)

    def prune(self, stale: Iterable[InventoryEntry], owner: Owner) -> list[InventoryEntry]:
        """Delete objects that left the inventory; return those actually deleted."""
        deleted: list[InventoryEntry] = []
        for entry in sorted(stale, key=lambda item: item.id, reverse=True):
            try:
                rtype = self.mapper.resource_for(entry.api_version, entry.kind)
            except KubeNoKindMatch:
                continue  # its CRD is gone, and the object with it
            namespace = entry.namespace or None
            live = self.client.get(rtype, entry.name, namespace)
            if live is None:
                continue
            metadata = live.get("metadata") or {}
            if (metadata.get("annotations") or {}).get(PRUNE_ANNOTATION) == "disabled":
                continue
            labels = metadata.get("labels") or {}
            if any(labels.get(key) != value for key, value in owner.labels.items()):
                continue  # another owner took it over (or someone relabelled it): not ours to delete
            if self.client.delete(rtype, entry.name, namespace):
                log.info("pruned %s", entry.describe())
                deleted.append(entry)
        return deleted

    def _resolve(self, objects: list[JSON], target_namespace: str | None) -> list[tuple[JSON, ResourceType]]:
        """Map every object to its REST resource and fix its namespace; nothing is written here."""
        resolved: list[tuple[JSON, ResourceType]] = []
        for obj in objects:
            api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
            prepared = copy.deepcopy(obj)
            metadata = prepared.setdefault("metadata", {})
            try:
                rtype = self.mapper.resource_for(api_version, kind)
            except KubeError as error:  # KubeNoKindMatch among them
                raise ApplyError(f"{_describe(prepared)} dry-run failed: {error.detail}") from error
            if rtype.namespaced:
                metadata["namespace"] = target_namespace or metadata.get("namespace") or DEFAULT_NAMESPACE
            else:
                metadata.pop("namespace", None)
            resolved.append((prepared, rtype))
        return resolved

    def _apply_one(self, obj: JSON, rtype: ResourceType, owner: Owner) -> InventoryEntry:
        body = {key: value for key, value in obj.items() if key != "status"}
        metadata = body["metadata"]
        metadata["labels"] = {**(metadata.get("labels") or {}), **owner.labels}
        namespace = metadata.get("namespace")
        name = str(metadata["name"])
        entry = InventoryEntry(namespace or "", name, rtype.group, rtype.kind, rtype.version)
        ssa_policy = (metadata.get("annotations") or {}).get(SSA_ANNOTATION)
        try:
            live = self.client.get(rtype, name, namespace)
            if live is None:
                self.client.create(rtype, body, namespace)
                log.info("%s created", entry.describe())
            elif ssa_policy not in ("IfNotPresent", "Ignore"):
                patch = {
                    key: value for key, value in body.items() if key not in ("apiVersion", "kind", "metadata")
                }
                patch["metadata"] = {
                    key: metadata[key] for key in ("labels", "annotations") if metadata.get(key)
                }
                if changes_anything(live, patch):
                    self.client.merge_patch(rtype, name, patch, namespace)
                    log.info("%s configured", entry.describe())
        except KubeError as error:
            raise ApplyError(f"{entry.describe()} apply failed: {error.detail}") from error
        return entry


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _namespace(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _describe(obj: JSON) -> str:
    namespace = _namespace(obj)
    return f"{obj.get('kind')}/{namespace}/{_name(obj)}" if namespace else f"{obj.get('kind')}/{_name(obj)}"
