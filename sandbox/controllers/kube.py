"""A small generic REST layer over the official ``kubernetes`` client.

The controllers handle custom resources, core objects and any kind a Git repository
may contain, so they work with plain dicts and REST paths instead of the generated
typed APIs. Every request goes over HTTP through ``ApiClient`` and carries the
controllers' user agent, so tests can tell our calls from the app's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubernetes import config as kube_config

USER_AGENT: Final = "gitops-tui-sandbox/controllers"
# Plain requests are small and local; a stuck server must not block a controller for long.
REQUEST_TIMEOUT: Final = (5.0, 15.0)

JSON = dict[str, Any]


class KubeError(Exception):
    """An API call failed: HTTP status (0 when no response) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: group/version/plural, and how objects of it are addressed."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str = "") -> str:
        path = f"{self.collection_path(namespace if self.namespaced else None)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def describe(self) -> str:
        """The resource name the API server uses in messages, e.g. ``secrets`` or ``kustomizations.x.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


SECRETS: Final = ResourceType("", "v1", "secrets", "Secret")
SERVICES: Final = ResourceType("", "v1", "services", "Service")
GIT_REPOSITORIES: Final = ResourceType("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
KUSTOMIZATIONS: Final = ResourceType("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")
HELM_RELEASES: Final = ResourceType("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")
EXTERNAL_SECRETS: Final = ResourceType("external-secrets.io", "v1", "externalsecrets", "ExternalSecret")
CLUSTER_SECRET_STORES: Final = ResourceType(
    "external-secrets.io", "v1", "clustersecretstores", "ClusterSecretStore", namespaced=False
)
SECRET_STORES: Final = ResourceType("external-secrets.io", "v1", "secretstores", "SecretStore")


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (or just ``name`` for cluster-scoped objects)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def split_key(key: str) -> tuple[str | None, str]:
    namespace, _, name = key.rpartition("/")
    return namespace or None, name


class KubeClient:
    """Generic JSON requests against the API server, one ``ApiClient`` per instance."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), persist_config=False
        )
        self.api.user_agent = USER_AGENT

    def close(self) -> None:
        self.api.close()

    def open(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
    ) -> Any:
        """Send a request and return the raw urllib3 response (status already checked)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            serialized = self.api.param_serialize(
                method,
                path,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*serialized, _request_timeout=timeout)
        except Exception as error:  # connection refused, timeouts, TLS: all "no answer"
            raise KubeError(0, f"{method} {path}: {type(error).__name__}: {error}") from error
        if not 200 <= response.status <= 299:
            data = response.read()
            raise KubeError(response.status, _status_message(data, response.status, method, path))
        return response.response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        raw = self.open(method, path, query=query, body=body, content_type=content_type)
        try:
            data = raw.data
        finally:
            raw.release_conn()
        if not data:
            return {}
        decoded = json.loads(data)
        return decoded if isinstance(decoded, dict) else {}

    # -- conveniences --------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.request("GET", rtype.object_path(namespace, name))
        except KubeError as error:
            if error.not_found:
                return None
            raise

    def list(self, rtype: ResourceType, *, label_selector: str | None = None) -> tuple[list[JSON], str]:
        query = [("labelSelector", label_selector)] if label_selector else []
        listing = self.request("GET", rtype.collection_path(), query=query)
        version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        return list(listing.get("items") or []), version

    def create(self, rtype: ResourceType, namespace: str | None, body: JSON) -> JSON:
        return self.request("POST", rtype.collection_path(namespace), body=body)

    def merge_patch(
        self, rtype: ResourceType, namespace: str | None, name: str, patch: JSON, subresource: str = ""
    ) -> JSON:
        return self.request(
            "PATCH",
            rtype.object_path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def patch_status(self, rtype: ResourceType, namespace: str | None, name: str, status: JSON) -> JSON:
        return self.merge_patch(rtype, namespace, name, {"status": status}, subresource="status")

    def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        """Delete an object; False when it was already gone."""
        try:
            self.request(
                "DELETE",
                rtype.object_path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.not_found:
                return False
            raise
        return True


def _status_message(data: bytes, status: int, method: str, path: str) -> str:
    """The ``message`` of a Kubernetes Status body, or a short fallback."""
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return f"{method} {path}: HTTP {status}"


# -- discovery -----------------------------------------------------------------------------------


class NoKindMatch(KubeError):
    """The API server serves no resource for this apiVersion/kind (e.g. its CRD is not installed)."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(404, f'no matches for kind "{kind}" in version "{api_version}"')
        self.api_version = api_version
        self.kind = kind


class RestMapper:
    """Maps apiVersion/kind to a ResourceType through API discovery, with a short-lived cache.

    CRDs come and go while the sandbox runs, so a miss re-reads discovery once before
    reporting the kind as unknown, and ``invalidate()`` drops everything.
    """

    def __init__(self, client: KubeClient, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, ResourceType]]] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def resource_for(self, api_version: str, kind: str) -> ResourceType:
        kinds = self._kinds(api_version, refresh=False)
        if kind not in kinds:
            kinds = self._kinds(api_version, refresh=True)
        if kind not in kinds:
            raise NoKindMatch(api_version, kind)
        return kinds[kind]

    def _kinds(self, api_version: str, *, refresh: bool) -> dict[str, ResourceType]:
        with self._lock:
            cached = self._cache.get(api_version)
        # A refresh within the same instant would read the same answer again.
        if cached is not None and not (refresh and self._clock() - cached[0] > 0.05):
            return cached[1]
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = self._client.request("GET", path)
        except KubeError as error:
            if not error.not_found:
                raise
            listing = {}
        kinds: dict[str, ResourceType] = {}
        for resource in listing.get("resources") or []:
            name = str(resource.get("name") or "")
            if not name or "/" in name:  # subresources such as "secrets/status"
                continue
            kinds[str(resource.get("kind"))] = ResourceType(
                group, version, name, str(resource.get("kind")), bool(resource.get("namespaced"))
            )
        with self._lock:
            self._cache[api_version] = (self._clock(), kinds)
        return kinds
