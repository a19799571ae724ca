"""The Kubernetes client the phases drive: generic REST over the official client.

One small surface (get, list, create, merge-patch, delete, ensure, watch) for
every resource type, core or custom, so the phases need no per-kind API class.
Blocking: the engine calls it through ``asyncio.to_thread``. Errors become
``KubeError`` subclasses whose messages are meant for a human.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3

from phases.errors import GitOpsError

USER_AGENT: Final = "gitops-tui/0.1"


@dataclass(frozen=True)
class ResourceType:
    api_version: str  # "v1", "apps/v1", "kustomize.toolkit.fluxcd.io/v1"
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def describe(self, name: str, namespace: str | None = None) -> str:
        return f"{self.kind} {namespace}/{name}" if self.namespaced and namespace else f"{self.kind} {name}"


NAMESPACES = ResourceType("v1", "Namespace", "namespaces", namespaced=False)
NODES = ResourceType("v1", "Node", "nodes", namespaced=False)
SECRETS = ResourceType("v1", "Secret", "secrets")
SERVICES = ResourceType("v1", "Service", "services")
SERVICE_ACCOUNTS = ResourceType("v1", "ServiceAccount", "serviceaccounts")
PODS = ResourceType("v1", "Pod", "pods")
EVENTS = ResourceType("v1", "Event", "events")
DEPLOYMENTS = ResourceType("apps/v1", "Deployment", "deployments")
STATEFUL_SETS = ResourceType("apps/v1", "StatefulSet", "statefulsets")
CRDS = ResourceType("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)
GIT_REPOSITORIES = ResourceType("source.toolkit.fluxcd.io/v1", "GitRepository", "gitrepositories")
KUSTOMIZATIONS = ResourceType("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "kustomizations")
HELM_RELEASES = ResourceType("helm.toolkit.fluxcd.io/v2", "HelmRelease", "helmreleases")
EXTERNAL_SECRETS = ResourceType("external-secrets.io/v1", "ExternalSecret", "externalsecrets")
CLUSTER_SECRET_STORES = ResourceType(
    "external-secrets.io/v1", "ClusterSecretStore", "clustersecretstores", namespaced=False
)


class KubeError(GitOpsError):
    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnreachable(KubeError):
    """The API server did not answer (connection refused, timeout, TLS)."""


class KubeNotFound(KubeError):
    pass


class KubeResourceMissing(KubeNotFound):
    """The resource type itself is not served: a CRD not installed yet."""


class KubeConflict(KubeError):
    pass


class KubeForbidden(KubeError):
    pass


class KubeGone(KubeError):
    """410: the resourceVersion a watch resumed from is too old; re-list."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


class KubeClient:
    def __init__(
        self,
        kubeconfig: Path,
        *,
        context: str | None = None,
        timeout: float = 30.0,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context or None
        self.timeout = timeout
        self.user_agent = user_agent
        self._local = threading.local()  # the pooled client is not shared across threads
        self._server = ""

    # -- plumbing ------------------------------------------------------------------------

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            from kubernetes import config as kube_config  # heavy import, only when first needed

            if not self.kubeconfig.is_file():
                raise KubeUnreachable(
                    f"kubeconfig {self.kubeconfig} does not exist (is the cluster installed?)"
                )
            try:
                api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=str(self.kubeconfig), context=self.context, persist_config=False
                )
            except Exception as error:  # the loader raises ConfigException, ValueError, YAML errors
                raise KubeUnreachable(f"cannot load kubeconfig {self.kubeconfig}: {error}") from None
            api.user_agent = self.user_agent
            self._server = str(api.configuration.host)
            self._local.api = api
        return api

    @property
    def server(self) -> str:
        self._api()
        return self._server

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        what: str = "",
        stream: bool = False,
        timeout: float | None = None,
    ) -> Any:
        api = self._api()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        method, url, header_params, serialized, _ = api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            if stream:
                return api.rest_client.pool_manager.request(
                    method,
                    url,
                    headers=header_params,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=self.timeout, read=timeout),
                )
            response = api.call_api(
                method,
                url,
                header_params=header_params,
                body=serialized,
                _request_timeout=timeout or self.timeout,
            )
            response.read()
        except Exception as error:
            raise self._transport_error(error) from None
        return self._decode(response.status, response.data, what or path)

    def _transport_error(self, error: Exception) -> KubeError:
        from kubernetes.client.exceptions import ApiException

        if isinstance(error, ApiException):
            return self._status_error(error.status or 0, (error.body or "").encode(), "request")
        cause = error
        if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
            cause = error.reason
        detail = str(cause).split(": ", 1)[-1] if str(cause) else type(cause).__name__
        if isinstance(cause, urllib3.exceptions.NewConnectionError) or "refused" in str(cause).lower():
            detail = "connection refused"
        elif isinstance(cause, urllib3.exceptions.TimeoutError):
            detail = "timed out"
        return KubeUnreachable(f"Kubernetes API {self._server or self.kubeconfig} unreachable: {detail}")

    def _decode(self, status: int, data: bytes, what: str) -> Any:
        if 200 <= status < 300:
            return json.loads(data) if data else None
        raise self._status_error(status, data, what)

    def _status_error(self, status: int, data: bytes, what: str) -> KubeError:
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {}
        message = payload.get("message") if isinstance(payload, dict) else None
        reason = payload.get("reason") if isinstance(payload, dict) else None
        text = f"{what}: {message or reason or f'HTTP {status}'}"
        if status == 404:
            return KubeNotFound(text, status=status, reason=reason)
        if status == 409:
            return KubeConflict(text, status=status, reason=reason)
        if status == 410:
            return KubeGone(text, status=status, reason=reason)
        if status in (401, 403):
            return KubeForbidden(f"{text} (check the kubeconfig's credentials and RBAC)", status=status)
        return KubeError(text, status=status, reason=reason)

    # -- operations ----------------------------------------------------------------------

    def version(self) -> str:
        data = self._request("GET", "/version", what="server version")
        return str(data.get("gitVersion", "unknown"))

    def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._request(
                "GET", resource.path(namespace, name), what=resource.describe(name, namespace)
            )
        except KubeNotFound:
            return None
        return result

    def list(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        return list(self.list_with_version(resource, namespace, label_selector=label_selector)[0])

    def list_with_version(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        query = {"labelSelector": label_selector} if label_selector else None
        try:
            data = self._request("GET", resource.path(namespace), query=query, what=f"list {resource.plural}")
        except KubeNotFound as error:
            raise KubeResourceMissing(
                f"{resource.kind} ({resource.api_version}) is not served by the cluster: is it installed?",
                status=404,
            ) from error
        items = data.get("items") or []
        for item in items:  # list items omit kind/apiVersion on real servers
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return items, str((data.get("metadata") or {}).get("resourceVersion", ""))

    def resource_served(self, resource: ResourceType) -> bool:
        try:
            self._request("GET", resource.path(), query={"limit": "1"}, what=f"list {resource.plural}")
        except KubeNotFound:
            return False
        return True

    def create(
        self, resource: ResourceType, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name", ""))
        result: dict[str, Any] = self._request(
            "POST",
            resource.path(namespace),
            body=dict(body),
            what=f"create {resource.describe(name, namespace)}",
        )
        return result

    def merge_patch(
        self,
        resource: ResourceType,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "PATCH",
            resource.path(namespace, name, subresource),
            body=dict(patch),
            content_type="application/merge-patch+json",
            what=f"patch {resource.describe(name, namespace)}",
        )
        return result

    def delete(self, resource: ResourceType, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            self._request(
                "DELETE", resource.path(namespace, name), what=f"delete {resource.describe(name, namespace)}"
            )
        except KubeNotFound:
            return False
        return True

    def ensure(self, resource: ResourceType, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object, or merge-patch it to match ``body``. Returns (object, changed)."""
        metadata = body.get("metadata", {})
        name, namespace = str(metadata["name"]), metadata.get("namespace")
        current = self.get(resource, name, namespace)
        if current is None:
            try:
                return self.create(resource, body, namespace), True
            except KubeConflict:
                current = self.get(resource, name, namespace)
                if current is None:
                    raise
        if _contains(current, body):
            return current, False
        return self.merge_patch(resource, name, body, namespace), True

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        timeout_seconds: int = 60,
    ) -> Iterator[WatchEvent]:
        """Stream watch events until the server ends the stream. Raises KubeGone on 410."""
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        response = self._request(
            "GET", resource.path(namespace), query=query, stream=True, timeout=timeout_seconds + 5
        )
        try:
            if response.status >= 300:
                raise self._status_error(response.status, response.read(), f"watch {resource.plural}")
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield self._watch_event(line, resource)
            if buffer.strip():
                yield self._watch_event(buffer, resource)
        except urllib3.exceptions.HTTPError as error:
            raise KubeUnreachable(f"watch of {resource.plural} dropped: {error}") from None
        finally:
            response.release_conn()

    def _watch_event(self, line: bytes, resource: ResourceType) -> WatchEvent:
        event = json.loads(line)
        if event.get("type") == "ERROR":
            status = event.get("object", {})
            raise self._status_error(
                int(status.get("code", 500)), json.dumps(status).encode(), f"watch {resource.plural}"
            )
        obj = event.get("object") or {}
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        return WatchEvent(str(event.get("type")), obj)


def _contains(current: Any, wanted: Any) -> bool:
    """True when every key/value of ``wanted`` is already in ``current`` (a merge patch would be a no-op)."""
    if isinstance(wanted, Mapping):
        if not isinstance(current, Mapping):
            return False
        return all(key in current and _contains(current[key], value) for key, value in wanted.items())
    return bool(current == wanted)
