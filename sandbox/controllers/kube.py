"""The controllers' Kubernetes access: ``phases.kube``'s generic REST client, with their user agent.

The controllers handle custom resources, core objects and any kind a Git repository may contain,
so they work with plain dicts, ``ResourceType``s and discovery (``RestMapper``) instead of the
generated typed APIs. Every request goes over HTTP through the official client and carries the
controllers' user agent, so tests can tell our calls from the app's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from phases.kube import KubeClient, ResourceType

USER_AGENT: Final = "gitops-tui-sandbox/controllers"
# Plain requests are small and local; a stuck server must not block a controller for long.
REQUEST_TIMEOUT: Final = 15.0

JSON = dict[str, Any]

# The one resource type the controllers need that the app does not.
SECRET_STORES: Final = ResourceType("external-secrets.io/v1", "SecretStore", "secretstores")


def connect(kubeconfig: Path) -> KubeClient:
    """A client for one controller or informer (each thread gets its own connections)."""
    return KubeClient(kubeconfig, timeout=REQUEST_TIMEOUT, user_agent=USER_AGENT)


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (or just ``name`` for cluster-scoped objects)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def split_key(key: str) -> tuple[str | None, str]:
    namespace, _, name = key.rpartition("/")
    return namespace or None, name
