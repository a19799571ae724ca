"""The Kubernetes client the phases drive: generic REST over the official client.

One small surface (get, list, create, apply/ensure, merge-patch, replace-status,
delete, watch) for every resource type, core or custom, so the phases need no
per-kind API class; ``request`` for any other call and ``RestMapper`` for objects
whose type is only known by apiVersion/kind. Blocking: the engine calls it through
``asyncio.to_thread``. Errors become ``KubeError`` subclasses whose messages are
meant for a human. The sandbox's tools, kubelet and controllers use it too, each
with its own user agent.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping, Sequence
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

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def group_resource(self) -> str:
        """What the API server calls it in messages: ``secrets``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

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
    """A failed API call: ``str()`` says what failed and why, for a human.

    For callers that word errors their own way, the client also sets ``detail``, the server's own
    message (its Status ``message``) or what kept it from answering, and the ``method`` and ``url``
    of the request (None when none was sent).
    """

    method: str | None = None
    url: str | None = None

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.detail = message


class KubeUnreachable(KubeError):
    """The API server did not answer (connection refused, timeout, TLS)."""


class KubeNotFound(KubeError):
    pass


class KubeResourceMissing(KubeNotFound):
    """The resource type itself is not served: a CRD not installed yet."""


class KubeNoKindMatch(KubeResourceMissing):
    """Discovery knows no resource for this apiVersion/kind (``RestMapper``)."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f'no matches for kind "{kind}" in version "{api_version}"', status=404)
        self.api_version = api_version
        self.kind = kind


class KubeConflict(KubeError):
    pass


class KubeForbidden(KubeError):
    pass


class KubeGone(KubeError):
    """410: the resourceVersion a watch resumed from is too old; re-list."""


_STATUS_ERRORS: Final[dict[int, type[KubeError]]] = {
    401: KubeForbidden,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
}


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


def preload_client() -> None:
    """Import the official client now, rather than on a ``KubeClient``'s first call.

    Call it before starting threads that use clients: the first import racing in several threads
    (it pulls in ``requests``) can fail on a partially initialised module.
    """
    import kubernetes.config  # noqa: F401


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
        self._lock = threading.Lock()
        self._api_clients: weakref.WeakSet[Any] = weakref.WeakSet()  # every thread's, for close()
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
            with self._lock:
                self._api_clients.add(api)
        return api

    @property
    def server(self) -> str:
        self._api()
        return self._server

    def close(self) -> None:
        """Close the connections this client holds, in every thread; it reconnects if used again."""
        with self._lock:
            api_clients = list(self._api_clients)
        for api in api_clients:
            api.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        what: str = "",
        stream: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """One call to any API path: its decoded JSON (None when empty). Raises a ``KubeError``.

        ``what`` names the call in error messages (the path by default). With ``stream``, the
        urllib3 response comes back unread once its status is 2xx, to stream and then
        ``release_conn()``. ``timeout`` bounds each read; the client's timeout by default.
        """
        api = self._api()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        method, url, header_params, serialized, _ = api.param_serialize(
            method,
            path,
            query_params=list(query.items()) if isinstance(query, Mapping) else list(query or ()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = api.call_api(
                method,
                url,
                header_params=header_params,
                body=serialized,
                _request_timeout=(self.timeout, timeout or self.timeout),
            ).response
            if stream and 200 <= response.status < 300:
                return response
            try:
                data = response.data
            finally:
                response.release_conn()
        except Exception as error:
            raise self._transport_error(error, method, url) from None
        if not 200 <= response.status < 300:
            raise status_error(response.status, data, what or path, method=method, url=url)
        return json.loads(data) if data else None

    def _transport_error(self, error: Exception, method: str, url: str) -> KubeError:
        from kubernetes.client.exceptions import ApiException

        if isinstance(error, ApiException) and error.status:
            body = (error.body or "").encode()
            return status_error(error.status, body, "request", method=method, url=url)
        cause: BaseException = error
        if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
            cause = error.reason
        # Without a status, ApiException is the client's wrapping of a TLS failure.
        text = " ".join(str(error.reason).split()) if isinstance(error, ApiException) else str(cause)
        detail = text.split(": ", 1)[-1] if text else type(cause).__name__
        if isinstance(cause, urllib3.exceptions.NewConnectionError) or "refused" in text.lower():
            detail = "connection refused"
        elif isinstance(cause, urllib3.exceptions.TimeoutError):
            detail = "timed out"
        message = f"Kubernetes API {self._server or self.kubeconfig} unreachable: {detail}"
        return _about(KubeUnreachable(message), detail, method, url)

    # -- operations ----------------------------------------------------------------------

    def version(self) -> str:
        data = self.request("GET", "/version", what="server version")
        return str(data.get("gitVersion", "unknown"))

    def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request(
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
            data = self.request("GET", resource.path(namespace), query=query, what=f"list {resource.plural}")
        except KubeNotFound as error:
            raise KubeResourceMissing(_not_served(resource), status=404) from error
        items = data.get("items") or []
        for item in items:  # list items omit kind/apiVersion on real servers
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        return items, str((data.get("metadata") or {}).get("resourceVersion", ""))

    def resource_served(self, resource: ResourceType) -> bool:
        try:
            self.request("GET", resource.path(), query={"limit": "1"}, what=f"list {resource.plural}")
        except KubeNotFound:
            return False
        return True

    def create(
        self, resource: ResourceType, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        name = str(body.get("metadata", {}).get("name", ""))
        try:
            result: dict[str, Any] = self.request(
                "POST",
                resource.path(namespace),
                body=dict(body),
                what=f"create {resource.describe(name, namespace)}",
            )
        except KubeNotFound:
            # The server's words ("could not find the requested resource") do not say it is the type.
            if not self.resource_served(resource):
                raise KubeResourceMissing(_not_served(resource), status=404) from None
            raise
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
        return self._patch(resource, name, namespace, subresource, dict(patch), "merge-patch")

    def replace_status(
        self, resource: ResourceType, name: str, status: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Write the whole status (a JSON patch: a merge patch would keep fields ``status`` lacks)."""
        operations = [{"op": "add", "path": "/status", "value": dict(status)}]
        return self._patch(resource, name, namespace, "status", operations, "json-patch")

    def _patch(
        self, resource: ResourceType, name: str, namespace: str | None, sub: str | None, body: Any, kind: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH",
            resource.path(namespace, name, sub),
            body=body,
            content_type=f"application/{kind}+json",
            what=f"patch {resource.describe(name, namespace)}",
        )
        return result

    def delete(self, resource: ResourceType, name: str, namespace: str | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request(
                "DELETE", resource.path(namespace, name), what=f"delete {resource.describe(name, namespace)}"
            )
        except KubeNotFound:
            return False
        return True

    def apply(self, resource: ResourceType, body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """Create the object, or merge-patch it to match ``body`` (a client-side ``kubectl apply``).

        Returns the object and, in kubectl's words, "created", "configured" or "unchanged".
        """
        metadata = body.get("metadata", {})
        name, namespace = str(metadata["name"]), metadata.get("namespace")
        current = self.get(resource, name, namespace)
        if current is None:
            try:
                return self.create(resource, body, namespace), "created"
            except KubeConflict:
                current = self.get(resource, name, namespace)
                if current is None:
                    raise
        if contains(current, body):
            return current, "unchanged"
        return self.merge_patch(resource, name, body, namespace), "configured"

    def ensure(self, resource: ResourceType, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object, or merge-patch it to match ``body``. Returns (object, changed)."""
        result, outcome = self.apply(resource, body)
        return result, outcome != "unchanged"

    def watch(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str = "",
        timeout_seconds: int = 60,
        label_selector: str | None = None,
        opened: Callable[[Any], None] | None = None,
    ) -> Generator[WatchEvent, None, None]:
        """Stream watch events until the server ends the stream. Raises KubeGone on 410.

        ``opened`` gets the HTTP response once the server answered: its ``shutdown()`` (urllib3 >= 2.3)
        ends the stream from another thread, unblocking a read.
        """
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        if label_selector:
            query["labelSelector"] = label_selector
        response = self.request(
            "GET",
            resource.path(namespace),
            query=query,
            what=f"watch {resource.plural}",
            stream=True,
            timeout=timeout_seconds + 5,
        )
        try:
            if opened is not None:
                opened(response)
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
            raise status_error(
                int(status.get("code", 500)), json.dumps(status).encode(), f"watch {resource.plural}"
            )
        obj = event.get("object") or {}
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        return WatchEvent(str(event.get("type")), obj)


class RestMapper:
    """Maps apiVersion/kind to a ResourceType through API discovery, with a short-lived cache.

    CRDs come and go, so a miss re-reads discovery once before reporting the kind as unknown
    (``KubeNoKindMatch``), and ``invalidate()`` drops everything.
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
            raise KubeNoKindMatch(api_version, kind)
        return kinds[kind]

    def _kinds(self, api_version: str, *, refresh: bool) -> dict[str, ResourceType]:
        with self._lock:
            cached = self._cache.get(api_version)
        # A refresh within the same instant would read the same answer again.
        if cached is not None and not (refresh and self._clock() - cached[0] > 0.05):
            return cached[1]
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            listing = self._client.request("GET", path, what=f"discover {api_version}") or {}
        except KubeNotFound:
            listing = {}
        kinds: dict[str, ResourceType] = {}
        for resource in listing.get("resources") or []:
            name = str(resource.get("name") or "")
            if not name or "/" in name:  # subresources such as "secrets/status"
                continue
            kind = str(resource.get("kind"))
            kinds[kind] = ResourceType(api_version, kind, name, bool(resource.get("namespaced")))
        with self._lock:
            self._cache[api_version] = (self._clock(), kinds)
        return kinds


def _not_served(resource: ResourceType) -> str:
    return f"{resource.kind} ({resource.api_version}) is not served by the cluster: is it installed?"


def _about(error: KubeError, detail: str, method: str | None, url: str | None) -> KubeError:
    error.detail, error.method, error.url = detail, method, url
    return error


def contains(current: Any, wanted: Any) -> bool:
    """True when every key/value of ``wanted`` is already in ``current`` (a merge patch would be a no-op)."""
    if isinstance(wanted, Mapping):
        if not isinstance(current, Mapping):
            return False
        return all(key in current and contains(current[key], value) for key, value in wanted.items())
    return bool(current == wanted)


def status_error(
    status: int, data: bytes, what: str, *, method: str | None = None, url: str | None = None
) -> KubeError:
    """The API server's Status answer as the KubeError for its code (a Status never quotes Secret data)."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {}
    message = payload.get("message") if isinstance(payload, dict) else None
    reason = payload.get("reason") if isinstance(payload, dict) else None
    text = f"{what}: {message or reason or f'HTTP {status}'}"
    error_type = _STATUS_ERRORS.get(status, KubeError)
    if error_type is KubeForbidden:
        text += " (check the kubeconfig's credentials and RBAC)"
    detail = str(message or reason or f"HTTP {status}")
    return _about(error_type(text, status=status, reason=reason), detail, method, url)
