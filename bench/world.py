"""Synthetic cluster state for the tree and memory benchmarks: Flux, ESO and Vault at scale.

The objects have the shape the real API server and controllers give them (labels kustomize-controller
stamps, Ready conditions with observedGeneration, ESO refresh times), so the model parses them exactly as
it parses a real cluster's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from phases.kube import WatchEvent
from phases.resources import (
    APPLIED_BY_NAME_LABEL,
    APPLIED_BY_NAMESPACE_LABEL,
    CLUSTER_SECRET_STORE,
    EXTERNAL_SECRET,
    GIT_REPOSITORY,
    KUSTOMIZATION,
    ResourceModel,
)

FLUX_NAMESPACE: Final = "flux-system"
STORE_NAME: Final = "vault-backend"
MOUNT: Final = "secret"
TEAMS: Final = 50


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def _ready(reason: str, message: str, generation: int | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": "Ready",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


@dataclass
class World:
    """``kustomizations`` + ``externalsecrets`` objects and ``vault_paths`` listed paths (~5,000 nodes)."""

    kustomizations: int = 1000
    externalsecrets: int = 2500
    vault_paths: int = 1500
    missing_every: int = 100  # every Nth ExternalSecret also reads a path Vault does not have
    version: int = 1
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.objects = {
            GIT_REPOSITORY: [self._git_repository()],
            CLUSTER_SECRET_STORE: [self._store()],
            KUSTOMIZATION: [self.kustomization(i) for i in range(self.kustomizations)],
            EXTERNAL_SECRET: [self.externalsecret(i) for i in range(self.externalsecrets)],
        }

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    @staticmethod
    def path(index: int) -> str:
        return f"apps/team-{index % TEAMS}/app-{index}"

    def listed_paths(self) -> dict[str, tuple[str, ...]]:
        return {self.path(i): ("password", "username") for i in range(self.vault_paths)}

    def _git_repository(self) -> dict[str, Any]:
        revision = f"main@sha1:{_sha('head')}"
        return {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": GIT_REPOSITORY,
            "metadata": {
                "name": "flux-system",
                "namespace": FLUX_NAMESPACE,
                "resourceVersion": self._next_version(),
                "generation": 1,
            },
            "spec": {
                "interval": "1m",
                "url": "https://github.com/example/deployments",
                "ref": {"branch": "main"},
            },
            "status": {
                "observedGeneration": 1,
                "artifact": {"revision": revision},
                "conditions": [_ready("Succeeded", f"stored artifact for revision '{revision}'", 1)],
            },
        }

    def _store(self) -> dict[str, Any]:
        return {
            "apiVersion": "external-secrets.io/v1",
            "kind": CLUSTER_SECRET_STORE,
            "metadata": {"name": STORE_NAME, "resourceVersion": self._next_version(), "generation": 1},
            "spec": {
                "provider": {"vault": {"server": "http://vault.vault:8200", "path": MOUNT, "version": "v2"}}
            },
            "status": {"conditions": [_ready("Valid", "store validated")]},
        }

    def kustomization(self, index: int, commit: str = "first") -> dict[str, Any]:
        revision = f"main@sha1:{_sha(commit)}"
        return {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": KUSTOMIZATION,
            "metadata": {
                "name": f"apps-{index}",
                "namespace": FLUX_NAMESPACE,
                "resourceVersion": self._next_version(),
                "generation": 1,
            },
            "spec": {
                "interval": "10m",
                "path": f"./apps/{index}",
                "prune": True,
                "sourceRef": {"kind": GIT_REPOSITORY, "name": "flux-system"},
            },
            "status": {
                "observedGeneration": 1,
                "lastAppliedRevision": revision,
                "lastAttemptedRevision": revision,
                "lastHandledReconcileAt": "2026-01-01T00:00:00Z",
                "conditions": [_ready("ReconciliationSucceeded", f"Applied revision: {revision}", 1)],
            },
        }

    def externalsecret(
        self, index: int, *, refreshed: str = "2026-01-01T00:00:00Z", ready: bool = True
    ) -> dict[str, Any]:
        keys = [
            {
                "secretKey": "password",
                "remoteRef": {
                    "key": f"{MOUNT}/{self.path(index % self.vault_paths)}",
                    "property": "password",
                },
            }
        ]
        if index % self.missing_every == 0:
            keys.append(
                {"secretKey": "extra", "remoteRef": {"key": f"apps/missing/app-{index}", "property": "token"}}
            )
        condition = (
            _ready("SecretSynced", "secret synced")
            if ready
            else {
                "type": "Ready",
                "status": "False",
                "reason": "SecretSyncedError",
                "message": "could not get secret data from provider",
            }
        )
        return {
            "apiVersion": "external-secrets.io/v1",
            "kind": EXTERNAL_SECRET,
            "metadata": {
                "name": f"app-{index}",
                "namespace": f"team-{index % TEAMS}",
                "resourceVersion": self._next_version(),
                "generation": 1,
                "labels": {
                    APPLIED_BY_NAME_LABEL: f"apps-{index % self.kustomizations}",
                    APPLIED_BY_NAMESPACE_LABEL: FLUX_NAMESPACE,
                },
            },
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": CLUSTER_SECRET_STORE, "name": STORE_NAME},
                "target": {"name": f"app-{index}", "creationPolicy": "Owner"},
                "data": keys,
            },
            "status": {
                "conditions": [condition],
                "refreshTime": refreshed,
                "syncedResourceVersion": f"1-{index}",
            },
        }

    def fill(self, model: ResourceModel) -> set[tuple[str, str, str]]:
        """Feed every object and the Vault listing to ``model`` as the watcher and the Vault lister do."""
        changed: set[tuple[str, str, str]] = set()
        for kind, objects in self.objects.items():
            changed |= model.replace_kind(kind, objects)
        changed |= model.set_vault_paths(MOUNT, self.listed_paths())
        return changed

    def burst(self, size: int = 1000) -> dict[str, list[WatchEvent]]:
        """``size`` MODIFIED events as a busy cluster sends them, per kind.

        40 % Kustomizations applying a new revision (their row's revision changes), 50 % ExternalSecrets
        refreshed (nothing on their row changes), 10 % ExternalSecrets failing to sync (row and counts
        change).
        """
        revisions = int(size * 0.4)
        refreshed = int(size * 0.5)
        failing = size - revisions - refreshed
        events: dict[str, list[WatchEvent]] = {KUSTOMIZATION: [], EXTERNAL_SECRET: []}
        for i in _spread(revisions, self.kustomizations):
            events[KUSTOMIZATION].append(WatchEvent("MODIFIED", self.kustomization(i, commit="second")))
        for i in _spread(refreshed, self.externalsecrets):
            events[EXTERNAL_SECRET].append(
                WatchEvent("MODIFIED", self.externalsecret(i, refreshed="2026-01-01T01:00:00Z"))
            )
        for i in _spread(failing, self.externalsecrets, offset=1):
            events[EXTERNAL_SECRET].append(WatchEvent("MODIFIED", self.externalsecret(i, ready=False)))
        return events


def _spread(count: int, total: int, offset: int = 0) -> Iterator[int]:
    """``count`` distinct indexes spread evenly over ``range(total)``."""
    step = max(1, total // max(1, count))
    return ((offset + n * step) % total for n in range(count))
