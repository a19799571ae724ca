"""An emulated Kubernetes API server for tests and ``--sandbox`` mode, built on kmock 0.8.

``ClusterEmulator`` subclasses ``kmock.KubernetesEmulator`` but serves every Kubernetes URL itself,
because nearly every piece of kmock's built-in emulation needed fixing for the real ``kubernetes``
client and kubectl (see /work/shared/notes/platform-facts.md). What it keeps from kmock: the aiohttp
server (``kmock.Server``), request recording (``emulator._requests`` plus a compact thread-safe view,
:class:`RecordedRequest`) and kmock's DSL for non-Kubernetes paths.

What it provides, in the shape a real API server answers:

* discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/G``, ``/apis/G/V``, ``/version``) with kinds,
  verbs, scopes and short names for the built-in types in :data:`BUILTIN_RESOURCES`, plus a minimal
  ``/openapi/v3`` that only tells kubectl the server validates fields itself (``kubectl create -f``
  and client-side ``kubectl apply`` refuse to run without OpenAPI);
* namespaced creates need an existing, non-terminating namespace; a fresh emulator has the
  namespaces of a fresh k3s (:data:`DEFAULT_NAMESPACES`) and nothing of Flux or ESO;
* create (201, 409 AlreadyExists, 422 Invalid), get, list (``kind: XList``, global resourceVersion,
  label and field selectors), PUT, PATCH (merge, JSON patch, strategic treated as merge; apply 415),
  delete (finalizers, namespace cascade), deletecollection, ``dryRun=All``;
* metadata: uid, a global resourceVersion counter, creationTimestamp, generation bumped only on
  spec changes, optimistic concurrency (stale resourceVersion -> 409 Conflict);
* the ``status`` subresource split (main endpoint ignores ``.status``; ``/status`` changes only it);
* Secrets: ``stringData`` folded into ``data``;
* CustomResourceDefinitions register and unregister their resources dynamically;
* watch as chunked JSON lines honouring ``timeoutSeconds``, ``resourceVersion`` (410 Gone when
  compacted), ``allowWatchBookmarks`` and ``sendInitialEvents`` (so ``kubectl wait`` works);
* ServiceAccount TokenRequest and TokenReview (:mod:`sandbox.emulator_tokens`): a real OpenBao
  dev server's Kubernetes auth method logs in with ``kubernetes_host`` set to this emulator;
* fault injection, dropping watches and compaction for reliability tests.

Deliberate simplifications: no authentication or RBAC (any bearer token is accepted), no
admission, no garbage collection by ownerReferences, deleting a CRD removes its objects at once
even if they carry finalizers, list ``limit``/``continue`` are ignored (one page), strategic merge
patch is a JSON merge patch, server-side apply answers 415, and kubectl gets plain lists rather
than server-side Tables (``kubectl get`` prints NAME and AGE only).

Concurrency: all state lives on the server's asyncio loop and is only touched from it. Public
methods of ``ClusterEmulator`` may be called from any thread: they hop onto the loop when it runs.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import inspect
import json
import logging
import os
import pathlib
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar, cast

import aiohttp.web
import kmock
import yaml

from sandbox.emulator_model import (
    BUILTIN_RESOURCES,
    ApiError,
    JsonObject,
    JsonPatchError,
    ResourceType,
    Selector,
    diff_objects,
    error_for_code,
    fold_string_data,
    json_patch,
    merge_patch,
    resource_types_from_crd,
    validate_crd,
)
from sandbox.emulator_tokens import ServiceAccountTokens, decode_token_claims

__all__ = [
    "BUILTIN_RESOURCES",
    "DEFAULT_NAMESPACES",
    "ApiError",
    "ClusterEmulator",
    "EmulatorThread",
    "Fault",
    "RecordedRequest",
    "ResourceType",
    "crd_manifest",
    "decode_token_claims",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a fresh k3s cluster has; namespaced creates into a missing namespace fail as on a real server.
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
SERVER_VERSION: Final[JsonObject] = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.4+k3s1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-08-01T00:00:00Z",
    "goVersion": "go1.24.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
INITIAL_EVENTS_END_ANNOTATION: Final = "k8s.io/initial-events-end"
MUTATING_VERBS: Final = frozenset({"create", "update", "patch", "delete"})

_CORE_NAMESPACES = ("", "namespaces")
_CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
_SECRETS = ("", "secrets")
_PODS = ("", "pods")
_SERVICEACCOUNTS = ("", "serviceaccounts")
_TOKENREVIEWS = ("authentication.k8s.io", "tokenreviews")
# Types whose creates keep the posted status (kubelets register nodes with their status).
_KEEPS_STATUS_ON_CREATE = frozenset({("", "nodes")})
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Public value types ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """A compact, immutable record of one HTTP request the emulator received.

    ``verb`` is the Kubernetes verb: list, watch, get, create, update, patch, delete (including
    deletecollection), or ``other`` for non-resource URLs such as discovery and ``/version``.
    """

    method: str
    path: str
    query: dict[str, str] = dataclasses.field(hash=False)
    user_agent: str = ""
    verb: str = "other"

    @property
    def is_mutating(self) -> bool:
        return self.verb in MUTATING_VERBS


@dataclasses.dataclass
class Fault:
    """An injected failure: the next ``times`` matching requests wait ``delay`` s, then fail with ``status``.

    ``status=None`` only delays the request and then serves it normally.
    """

    status: int | None
    times: int
    delay: float = 0.0
    method: str | None = None
    path_contains: str | None = None
    verb: str | None = None
    user_agent_contains: str | None = None
    hits: int = 0

    def matches(self, request: RecordedRequest) -> bool:
        return (
            self.hits < self.times
            and (self.method is None or self.method.upper() == request.method.upper())
            and (self.path_contains is None or self.path_contains in request.path)
            and (self.verb is None or self.verb == request.verb)
            and (self.user_agent_contains is None or self.user_agent_contains in request.user_agent)
        )


def crd_manifest(
    group: str,
    kind: str,
    plural: str,
    versions: Sequence[str],
    namespaced: bool = True,
    short_names: Sequence[str] = (),
    status: bool = True,
    categories: Sequence[str] = (),
) -> JsonObject:
    """A compact ``apiextensions.k8s.io/v1`` CustomResourceDefinition (schema: preserve unknown fields).

    The first of ``versions`` is the storage version; all are served.
    """
    version_entries: list[JsonObject] = []
    for index, version in enumerate(versions):
        entry: JsonObject = {
            "name": version,
            "served": True,
            "storage": index == 0,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
        if status:
            entry["subresources"] = {"status": {}}
        version_entries.append(entry)
    names: JsonObject = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()}
    if short_names:
        names["shortNames"] = list(short_names)
    if categories:
        names["categories"] = list(categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": version_entries,
        },
    }


# --- Internal structures ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Route:
    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_route(path: str) -> _Route | None:
    """Parse a Kubernetes API path; unlike kmock 0.8 this handles ``/api/v1/namespaces[/NAME]``."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    return _Route(
        group=group,
        version=version,
        plural=rest[0] if rest else None,
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def _verb_for(method: str, route: _Route | None, query: Mapping[str, str]) -> str:
    if route is None or route.plural is None:
        return "other"
    watching = query.get("watch") in ("true", "1")
    return {
        "GET": "watch" if watching else ("get" if route.name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method.upper(), "other")


_KMOCK_ACTIONS: Final[Mapping[str, Any]] = {
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "get": kmock.action.FETCH,
    "create": kmock.action.CREATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
}


@dataclasses.dataclass(frozen=True)
class _Event:
    resource_version: int
    storage_key: tuple[str, str]
    type: str  # ADDED, MODIFIED, DELETED
    old: JsonObject | None
    new: JsonObject


@dataclasses.dataclass(eq=False)
class _Watcher:
    resource: ResourceType
    namespace: str | None
    selector: Selector
    queue: asyncio.Queue[_Event | None] = dataclasses.field(default_factory=asyncio.Queue)


class _StopWatch(Exception):
    """The client went away or the watch was dropped."""


# --- The emulator ----------------------------------------------------------------------------------------


class ClusterEmulator(kmock.KubernetesEmulator):
    """A kmock-based Kubernetes API server that real clients and kubectl can use (see the module doc)."""

    def __init__(
        self,
        *,
        default_namespaces: Sequence[str] = DEFAULT_NAMESPACES,
        history_limit: int = 10_000,
        request_log_limit: int | None = None,
    ) -> None:
        """``history_limit`` bounds the watch history (older resourceVersions get 410 Gone);
        ``request_log_limit`` bounds the request records (None keeps all, as tests want;
        a long-running ``--sandbox`` session should set it).
        """
        super().__init__()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        # storage key (group, plural) -> namespace ("" when cluster-scoped) -> name -> object.
        # Stored objects are never mutated in place: every change stores a new dict, so the watch
        # history and concurrent readers can share them safely.
        self._store: dict[tuple[str, str], dict[str, dict[str, JsonObject]]] = {}
        self._resource_version = 0
        self._history: collections.deque[_Event] = collections.deque()
        self._history_limit = history_limit
        self._compacted_rv = 0  # watches from an older resourceVersion get 410 Gone
        self._watchers: dict[tuple[str, str], set[_Watcher]] = collections.defaultdict(set)
        self._tokens = ServiceAccountTokens()
        self._faults: list[Fault] = []
        self._recorded: collections.deque[RecordedRequest] = collections.deque(maxlen=request_log_limit)
        self._request_log_limit = request_log_limit
        self._record_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        for resource in BUILTIN_RESOURCES:
            self.register_resource(resource)
        namespaces = self._type_for_key(_CORE_NAMESPACES)
        for namespace in default_namespaces:
            self._create(namespaces, None, {"metadata": {"name": namespace}}, dry_run=False)

    # --- Thread hopping ----------------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Tell the emulator which loop serves it (``EmulatorThread`` does this), or detach with None."""
        self._loop = loop
        self._loop_thread_id = threading.get_ident() if loop is not None else None

    def _on_loop(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        if self._loop is None or threading.get_ident() == self._loop_thread_id or self._loop.is_closed():
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # --- Resource registry -------------------------------------------------------------------------------

    def register_resource(self, resource: ResourceType) -> None:
        def register() -> None:
            self._types[(resource.group, resource.version, resource.plural)] = resource
            self._store.setdefault(resource.storage_key, {})
            # Mirror into kmock's own registry, for anyone introspecting ``emulator.resources``.
            self.resources[kmock.resource(resource.group, resource.version, resource.plural)] = (
                kmock.ResourceInfo(
                    namespaced=resource.namespaced,
                    kind=resource.kind,
                    singular=resource.singular,
                    verbs=set(resource.verbs),
                    shortnames=set(resource.short_names),
                    categories=set(resource.categories),
                    subresources=set(resource.subresources),
                )
            )

        self._on_loop(register)

    def unregister_resource(self, group: str, version: str, plural: str) -> None:
        def unregister() -> None:
            self._types.pop((group, version, plural), None)
            key = kmock.resource(group, version, plural)
            if key in self.resources:
                del self.resources[key]

        self._on_loop(unregister)

    def resource_types(self) -> list[ResourceType]:
        return self._on_loop(lambda: list(self._types.values()))

    def _type_for_key(self, storage_key: tuple[str, str]) -> ResourceType:
        for resource in self._types.values():
            if resource.storage_key == storage_key:
                return resource
        raise KeyError(storage_key)

    def _resolve_type(self, api_version: str, plural_or_kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        if (group, version, plural_or_kind) in self._types:
            return self._types[(group, version, plural_or_kind)]
        for resource in self._types.values():
            if (resource.group, resource.version) == (group, version) and resource.kind == plural_or_kind:
                return resource
        raise ApiError(
            404, "NotFound", f'the server doesn\'t have a resource type "{plural_or_kind}" in {api_version}'
        )

    # --- Object access for tests and simulated controllers (any thread) ---------------------------------

    def get_object(
        self, api_version: str, plural: str, namespace: str | None, name: str
    ) -> JsonObject | None:
        def read() -> JsonObject | None:
            try:
                resource = self._resolve_type(api_version, plural)
            except ApiError:
                return None
            obj = self._stored(resource, namespace, name)
            return copy.deepcopy(self._present(resource, obj)) if obj is not None else None

        return self._on_loop(read)

    def list_objects(self, api_version: str, plural: str, namespace: str | None = None) -> list[JsonObject]:
        def read() -> list[JsonObject]:
            try:
                resource = self._resolve_type(api_version, plural)
            except ApiError:
                return []
            return [
                copy.deepcopy(self._present(resource, obj)) for obj in self._iter_objects(resource, namespace)
            ]

        return self._on_loop(read)

    def create_object(self, manifest: Mapping[str, Any]) -> JsonObject:
        """Create ``manifest`` as a client would (raises :class:`ApiError`); its kind picks the resource."""

        def create() -> JsonObject:
            resource = self._resolve_type(manifest.get("apiVersion", ""), manifest.get("kind", ""))
            namespace = (manifest.get("metadata") or {}).get("namespace") if resource.namespaced else None
            if resource.namespaced and namespace is None:
                namespace = "default"
            return copy.deepcopy(
                self._create(resource, namespace, copy.deepcopy(dict(manifest)), dry_run=False)
            )

        return self._on_loop(create)

    @property
    def current_resource_version(self) -> int:
        return self._resource_version

    # --- Reliability controls (any thread) ---------------------------------------------------------------

    def inject_fault(
        self,
        *,
        status: int | None,
        times: int = 1,
        delay: float = 0.0,
        method: str | None = None,
        path_contains: str | None = None,
        verb: str | None = None,
        user_agent_contains: str | None = None,
    ) -> Fault:
        """Make the next ``times`` matching requests wait ``delay`` s and then fail with ``status``."""
        fault = Fault(
            status=status,
            times=times,
            delay=delay,
            method=method,
            path_contains=path_contains,
            verb=verb,
            user_agent_contains=user_agent_contains,
        )
        with self._record_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._record_lock:
            self._faults.clear()

    def drop_watches(self) -> int:
        """End every open watch stream (as a connection loss would); returns how many were open."""

        def drop() -> int:
            watchers = [watcher for group in self._watchers.values() for watcher in group]
            for watcher in watchers:
                watcher.queue.put_nowait(None)
            self._watchers.clear()
            return len(watchers)

        return self._on_loop(drop)

    def compact(self) -> int:
        """Forget the event history: watches from an older resourceVersion now get 410 Gone."""

        def forget() -> int:
            self._history.clear()
            self._compacted_rv = self._resource_version
            return self._compacted_rv

        return self._on_loop(forget)

    # --- Request records (any thread) ----------------------------------------------------------------------

    def recorded_requests(self) -> list[RecordedRequest]:
        with self._record_lock:
            return list(self._recorded)

    def clear_recorded_requests(self) -> None:
        with self._record_lock:
            self._recorded.clear()

    # --- HTTP entry point -------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        query = dict(raw_request.query)
        route = _parse_route(raw_request.path)
        recorded = RecordedRequest(
            method=raw_request.method,
            path=raw_request.path,
            query=query,
            user_agent=raw_request.headers.get("User-Agent", ""),
            verb=_verb_for(raw_request.method, route, query),
        )
        with self._record_lock:
            self._recorded.append(recorded)
            fault = next((fault for fault in self._faults if fault.matches(recorded)), None)
            if fault is not None:
                fault.hits += 1
        kmock_request = self._kmock_request(raw_request, route, recorded, body)
        self._requests.append(kmock_request)
        if self._request_log_limit is not None and len(self._requests) > self._request_log_limit:
            del self._requests[: len(self._requests) - self._request_log_limit]
        try:
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    raise error_for_code(fault.status)
            return await self._dispatch(raw_request, route, query, body, kmock_request)
        except ApiError as exc:
            return self._error_response(exc)
        except Exception as exc:
            log.exception("emulator failed on %s %s", raw_request.method, raw_request.path)
            return self._error_response(ApiError(500, "InternalError", f"emulator error: {exc!r}"))

    def _kmock_request(
        self,
        raw_request: aiohttp.web.BaseRequest,
        route: _Route | None,
        recorded: RecordedRequest,
        body: bytes,
    ) -> Any:
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        resource = (
            kmock.resource(route.group, route.version, route.plural) if route and route.plural else None
        )
        return kmock.Request(
            id=len(self._requests),
            method=raw_request.method,
            url=raw_request.url,
            params=recorded.query,
            headers=dict(raw_request.headers),
            body=body,
            text=body.decode(errors="replace"),
            data=data,
            action=_KMOCK_ACTIONS.get(recorded.verb),
            resource=resource,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            subresource=route.subresource if route else None,
            raw_request=raw_request,
        )

    @staticmethod
    def _error_response(error: ApiError) -> aiohttp.web.Response:
        response = aiohttp.web.json_response(error.status(), status=error.code)
        for header, value in error.headers.items():
            response.headers[header] = value
        return response

    async def _dispatch(
        self,
        raw_request: aiohttp.web.BaseRequest,
        route: _Route | None,
        query: dict[str, str],
        body: bytes,
        kmock_request: Any,
    ) -> aiohttp.web.StreamResponse:
        method = raw_request.method.upper()
        path = raw_request.path.rstrip("/") or "/"
        if method == "GET":
            discovery = self._discovery(path, route)
            if discovery is not None:
                return aiohttp.web.json_response(discovery)
            if path in ("/healthz", "/livez", "/readyz"):
                return aiohttp.web.Response(text="ok")
        if route is not None and route.plural is not None:
            return await self._serve_resource(raw_request, route, query, body)
        try:
            # Anything else goes to kmock's DSL, so tests can still add reactions for odd paths.
            response: aiohttp.web.StreamResponse = await super()._handle(kmock_request)
            return response
        except (NotImplementedError, kmock.KubernetesError) as exc:
            raise ApiError(404, "NotFound", "the server could not find the requested resource") from exc

    # --- Discovery -------------------------------------------------------------------------------------

    def _discovery(self, path: str, route: _Route | None) -> JsonObject | None:
        if path == "/version":
            return dict(SERVER_VERSION)
        if path == "/openapi/v3":
            return self._openapi_index()
        if path.startswith("/openapi/v3/"):
            return self._openapi_document(path.removeprefix("/openapi/v3/"))
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
                ],
            }
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._api_groups()}
        if path.startswith("/apis/") and path.count("/") == 2:
            group_name = path.split("/")[2]
            for group in self._api_groups():
                if group["name"] == group_name:
                    return {"kind": "APIGroup", "apiVersion": "v1", **group}
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route is not None and route.plural is None:
            resources = [
                entry
                for resource in self._types.values()
                if (resource.group, resource.version) == (route.group, route.version)
                for entry in resource.discovery_entries()
            ]
            if not resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            group_version = f"{route.group}/{route.version}" if route.group else route.version
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": resources,
            }
        return None

    def _group_versions(self) -> dict[str, list[ResourceType]]:
        by_path: dict[str, list[ResourceType]] = {}
        for resource in self._types.values():
            prefix = (
                f"apis/{resource.group}/{resource.version}" if resource.group else f"api/{resource.version}"
            )
            by_path.setdefault(prefix, []).append(resource)
        return by_path

    def _openapi_index(self) -> JsonObject:
        # kubectl reads OpenAPI v3 only to learn that the server validates fields itself
        # (the ``fieldValidation`` parameter); without it, ``kubectl create -f`` refuses to run.
        paths: JsonObject = {}
        for prefix, resources in self._group_versions().items():
            fingerprint = "|".join(sorted(f"{r.plural}:{r.kind}" for r in resources))
            digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16].upper()
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest}"}
        return {"paths": paths}

    def _openapi_document(self, prefix: str) -> JsonObject:
        resources = self._group_versions().get(prefix)
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        field_validation = {
            "name": "fieldValidation",
            "in": "query",
            "schema": {"type": "string", "uniqueItems": True},
        }
        paths: JsonObject = {}
        for resource in resources:
            gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
            namespace_part = "namespaces/{namespace}/" if resource.namespaced else ""
            collection = f"/{prefix}/{namespace_part}{resource.plural}"
            operation = {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [field_validation],
                "responses": {},
            }
            paths[collection] = {"post": operation}
            paths[f"{collection}/{{name}}"] = {"patch": operation, "put": operation}
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths,
        }

    def _api_groups(self) -> list[JsonObject]:
        versions_by_group: dict[str, list[str]] = {}
        for resource in self._types.values():
            if resource.group:
                versions = versions_by_group.setdefault(resource.group, [])
                if resource.version not in versions:
                    versions.append(resource.version)
        groups: list[JsonObject] = []
        for group, versions in versions_by_group.items():
            preferred = self._preferred_version(group, versions)
            groups.append(
                {
                    "name": group,
                    "versions": [
                        {"groupVersion": f"{group}/{version}", "version": version} for version in versions
                    ],
                    "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
                }
            )
        return groups

    def _preferred_version(self, group: str, versions: list[str]) -> str:
        # For CRDs the storage version is preferred, as kubectl then reads what controllers write.
        for crd in self._iter_objects_by_key(_CRDS, None):
            spec = crd.get("spec") or {}
            if spec.get("group") == group:
                for version in spec.get("versions") or []:
                    if version.get("storage") and version.get("name") in versions:
                        return str(version["name"])
        return versions[0]

    # --- Resource requests -----------------------------------------------------------------------------

    async def _serve_resource(
        self, raw_request: aiohttp.web.BaseRequest, route: _Route, query: dict[str, str], body: bytes
    ) -> aiohttp.web.StreamResponse:
        assert route.plural is not None
        resource = self._types.get((route.group, route.version, route.plural))
        if resource is None or (route.namespace is not None and not resource.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource is not None and route.subresource not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = raw_request.method.upper()
        dry_run = query.get("dryRun") == "All"
        namespace = route.namespace if resource.namespaced else None

        if route.name is None:
            if method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch_response(raw_request, resource, namespace, query)
            if method == "GET" and "list" in resource.verbs:
                return aiohttp.web.json_response(self._list_response(resource, namespace, query))
            if method == "POST" and "create" in resource.verbs:
                payload = self._parse_json(body, raw_request.content_type)
                if resource.storage_key == _TOKENREVIEWS:
                    return aiohttp.web.json_response(self._token_review(payload), status=201)
                if resource.namespaced and namespace is None:
                    raise self._method_not_allowed()
                created = self._create(resource, namespace, payload, dry_run=dry_run)
                return aiohttp.web.json_response(self._present(resource, created), status=201)
            if method == "DELETE" and "deletecollection" in resource.verbs:
                return aiohttp.web.json_response(self._delete_collection(resource, namespace, query, dry_run))
            raise self._method_not_allowed()

        if resource.namespaced and namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource == "token":
            if method != "POST":
                raise self._method_not_allowed()
            assert namespace is not None
            token = self._token_request(namespace, route.name, self._parse_json(body))
            return aiohttp.web.json_response(token, status=201)
        if method == "GET" and query.get("watch") in ("true", "1"):
            named_query = dict(query)
            name_term = f"metadata.name={route.name}"
            named_query["fieldSelector"] = ",".join(filter(None, [query.get("fieldSelector", ""), name_term]))
            return await self._watch_response(raw_request, resource, namespace, named_query)
        if method == "GET":
            return aiohttp.web.json_response(
                self._present(resource, self._require(resource, namespace, route.name))
            )
        if method == "PUT":
            replaced = self._replace(
                resource,
                namespace,
                route.name,
                self._parse_json(body, raw_request.content_type),
                route.subresource,
                dry_run=dry_run,
            )
            return aiohttp.web.json_response(self._present(resource, replaced))
        if method == "PATCH":
            patched = self._patch(
                resource,
                namespace,
                route.name,
                raw_request.content_type,
                body,
                route.subresource,
                dry_run=dry_run,
            )
            return aiohttp.web.json_response(self._present(resource, patched))
        if method == "DELETE" and route.subresource is None:
            options = self._parse_json(body) if body.strip() else {}
            deleted = self._delete(resource, namespace, route.name, options, dry_run=dry_run)
            return aiohttp.web.json_response(self._present(resource, deleted))
        raise self._method_not_allowed()

    @staticmethod
    def _method_not_allowed() -> ApiError:
        return ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    @staticmethod
    def _parse_json(body: bytes, content_type: str = "application/json") -> Any:
        if not body.strip():
            return {}
        try:
            if content_type in ("application/yaml", "text/yaml"):
                return yaml.safe_load(body)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the request body cannot be decoded: {exc}") from exc

    # --- Storage ---------------------------------------------------------------------------------------

    def _present(self, resource: ResourceType, obj: JsonObject) -> JsonObject:
        """The object as seen through ``resource``'s version (all versions share one store)."""
        if obj.get("apiVersion") == resource.api_version:
            return obj
        return {**obj, "apiVersion": resource.api_version}

    def _stored(self, resource: ResourceType, namespace: str | None, name: str) -> JsonObject | None:
        return self._store.get(resource.storage_key, {}).get(namespace or "", {}).get(name)

    def _require(self, resource: ResourceType, namespace: str | None, name: str) -> JsonObject:
        obj = self._stored(resource, namespace, name)
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    @staticmethod
    def _not_found(resource: ResourceType, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{resource.qualified_plural} "{name}" not found',
            details={"name": name, "group": resource.group, "kind": resource.plural},
        )

    def _iter_objects(self, resource: ResourceType, namespace: str | None) -> Iterator[JsonObject]:
        return self._iter_objects_by_key(resource.storage_key, namespace)

    def _iter_objects_by_key(
        self, storage_key: tuple[str, str], namespace: str | None
    ) -> Iterator[JsonObject]:
        by_namespace = self._store.get(storage_key, {})
        namespaces = [namespace] if namespace is not None else sorted(by_namespace)
        for ns in namespaces:
            objects = by_namespace.get(ns, {})
            for name in sorted(objects):
                yield objects[name]

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _commit(
        self, resource: ResourceType, event_type: str, old: JsonObject | None, new: JsonObject
    ) -> None:
        metadata = new["metadata"]
        objects = self._store.setdefault(resource.storage_key, {}).setdefault(
            metadata.get("namespace") or "", {}
        )
        if event_type == "DELETED":
            objects.pop(metadata["name"], None)
        else:
            objects[metadata["name"]] = new
        event = _Event(int(metadata["resourceVersion"]), resource.storage_key, event_type, old, new)
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self._compacted_rv = self._history.popleft().resource_version
        for watcher in self._watchers.get(resource.storage_key, ()):
            watcher.queue.put_nowait(event)

    def _check_name(self, resource: ResourceType, name: str) -> None:
        if resource.group == "rbac.authorization.k8s.io":
            valid = "/" not in name and "%" not in name and name not in (".", "..")
        elif resource.storage_key == _CORE_NAMESPACES:
            valid = bool(_DNS_LABEL.match(name))
        else:
            valid = bool(_DNS_SUBDOMAIN.match(name))
        if not valid:
            raise self._invalid(resource, name, f'metadata.name: Invalid value: "{name}": must be a DNS name')

    @staticmethod
    def _invalid(resource: ResourceType, name: str, problem: str) -> ApiError:
        return ApiError(
            422,
            "Invalid",
            f'{resource.kind} "{name}" is invalid: {problem}',
            details={"name": name, "group": resource.group, "kind": resource.kind},
        )

    def _create(
        self, resource: ResourceType, namespace: str | None, body: Any, *, dry_run: bool
    ) -> JsonObject:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        metadata = body.get("metadata") or {}
        name = metadata.get("name") or ""
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + secrets.token_hex(3)[:5]
        if not name:
            raise self._invalid(
                resource, "", "metadata.name: Required value: name or generateName is required"
            )
        self._check_name(resource, name)
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if body_namespace and body_namespace != namespace:
                raise self._invalid(
                    resource,
                    name,
                    "metadata.namespace: Invalid value: "
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            assert namespace is not None
            self._check_namespace_accepts(namespace)
        if self._stored(resource, namespace, name) is not None:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource.qualified_plural} "{name}" already exists',
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )
        if resource.storage_key == _CRDS:
            validate_crd({**body, "metadata": {**metadata, "name": name}})

        obj = copy.deepcopy(body)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        new_metadata = obj["metadata"] = dict(obj.get("metadata") or {})
        for server_owned in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "managedFields",
        ):
            new_metadata.pop(server_owned, None)
        new_metadata["name"] = name
        if resource.namespaced:
            new_metadata["namespace"] = namespace
        else:
            new_metadata.pop("namespace", None)
        new_metadata["uid"] = str(uuid.uuid4())
        new_metadata["creationTimestamp"] = _now()
        new_metadata["generation"] = 1
        if resource.has_status and resource.storage_key not in _KEEPS_STATUS_ON_CREATE:
            obj.pop("status", None)
        self._apply_type_rules(resource, obj, None)
        if dry_run:
            new_metadata["resourceVersion"] = str(self._resource_version)
            return obj
        new_metadata["resourceVersion"] = self._next_resource_version()
        self._commit(resource, "ADDED", None, obj)
        if resource.storage_key == _CRDS:
            self._register_crd(obj)
        return obj

    def _check_namespace_accepts(self, namespace: str) -> None:
        namespace_obj = self._stored(self._type_for_key(_CORE_NAMESPACES), None, namespace)
        if namespace_obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if namespace_obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _apply_type_rules(self, resource: ResourceType, obj: JsonObject, old: JsonObject | None) -> None:
        """What a real server's strategies do for specific built-in types."""
        if resource.storage_key == _SECRETS:
            fold_string_data(obj)
        elif resource.storage_key == _PODS and old is None:
            obj["status"] = {"phase": "Pending"}
        elif resource.storage_key == _CORE_NAMESPACES:
            spec = obj.setdefault("spec", {})
            spec.setdefault("finalizers", ["kubernetes"])
            if old is None:
                obj["status"] = {"phase": "Active"}
        elif resource.storage_key == _CRDS:
            names = obj["spec"]["names"]
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", f"{names['kind']}List")
            obj["status"] = {
                "acceptedNames": dict(names),
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {
                        "type": condition,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": _now(),
                    }
                    for condition, reason, message in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    )
                ],
            }

    def _replace(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None,
        *,
        dry_run: bool,
    ) -> JsonObject:
        old = self._require(resource, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        body_metadata = body.get("metadata") or {}
        if body_metadata.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({body_metadata['name']}) "
                f"does not match the name on the URL ({name})",
            )
        if resource.namespaced and body_metadata.get("namespace") not in (None, namespace):
            raise self._invalid(
                resource, name, "metadata.namespace: Invalid value: does not match the namespace on the URL"
            )
        expected_rv = body_metadata.get("resourceVersion")
        if expected_rv not in (None, "") and str(expected_rv) != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.qualified_plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )

        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new["apiVersion"] = resource.api_version
            new["kind"] = resource.kind
            new_metadata = new["metadata"] = dict(new.get("metadata") or {})
            old_metadata = old["metadata"]
            for immutable in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if immutable in old_metadata:
                    new_metadata[immutable] = old_metadata[immutable]
            for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if server_owned in old_metadata:
                    new_metadata[server_owned] = old_metadata[server_owned]
                else:
                    new_metadata.pop(server_owned, None)
            if resource.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if resource.storage_key == _CRDS:
                validate_crd(new)
            self._apply_type_rules(resource, new, old)

        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        changes = diff_objects(old, new)
        if not changes.anything_changed:
            return (
                old  # a no-op write neither bumps resourceVersion nor notifies watchers, as on a real server
            )
        if changes.spec_changed and subresource != "status":
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(resource, "MODIFIED", old, new)
        if resource.storage_key == _CRDS:
            self._register_crd(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource, new)
        return new

    def _patch(
        self,
        resource: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: bytes,
        subresource: str | None,
        *,
        dry_run: bool,
    ) -> JsonObject:
        if content_type in ("application/apply-patch+yaml", "application/apply-patch+cbor"):
            raise ApiError(415, "UnsupportedMediaType", "server-side apply is not supported by this emulator")
        if content_type not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/json-patch+json",
        ):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"application/json-patch+json, application/merge-patch+json, "
                f'application/strategic-merge-patch+json (got "{content_type}")',
            )
        patch = self._parse_json(body)
        current = self._require(resource, namespace, name)
        if content_type == "application/json-patch+json":
            try:
                patched = json_patch(current, patch)
            except JsonPatchError as exc:
                raise ApiError(exc.code, "Invalid" if exc.code == 422 else "BadRequest", str(exc)) from exc
        else:
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            if content_type == "application/strategic-merge-patch+json":
                patch = _strip_patch_directives(patch)
            patched = merge_patch(current, patch)
        return self._replace(resource, namespace, name, patched, subresource, dry_run=dry_run)

    def _delete(
        self, resource: ResourceType, namespace: str | None, name: str, options: Any, *, dry_run: bool
    ) -> JsonObject:
        old = self._require(resource, namespace, name)
        preconditions = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) and preconditions[key] != old["metadata"].get(key):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {resource.qualified_plural} "{name}": '
                    f"Precondition failed: {key} in precondition: {preconditions[key]}, "
                    f"{key} in object meta: {old['metadata'].get(key)}",
                )
        if dry_run:
            return old
        if old["metadata"].get("deletionTimestamp"):
            return old  # already terminating; finalizers still pending
        if resource.storage_key == _CORE_NAMESPACES:
            return self._delete_namespace(resource, old)
        if old["metadata"].get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            new["metadata"]["resourceVersion"] = self._next_resource_version()
            self._commit(resource, "MODIFIED", old, new)
            return new
        return self._remove(resource, old)

    def _remove(self, resource: ResourceType, obj: JsonObject) -> JsonObject:
        """Finally remove ``obj`` (no finalizers left) and run what depends on its removal."""
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(resource, "DELETED", obj, final)
        if resource.storage_key == _CRDS:
            self._unregister_crd(final)
        namespace = final["metadata"].get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)
        return final

    def _delete_namespace(self, resource: ResourceType, old: JsonObject) -> JsonObject:
        # A real namespace controller deletes the content, then drops the "kubernetes" finalizer.
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = _now()
        terminating["metadata"]["deletionGracePeriodSeconds"] = 0
        terminating["status"] = {"phase": "Terminating"}
        terminating["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(resource, "MODIFIED", old, terminating)
        name = old["metadata"]["name"]
        for storage_key, by_namespace in list(self._store.items()):
            contained = list(by_namespace.get(name, {}).values())
            if not contained:
                continue
            try:
                contained_type = self._type_for_key(storage_key)
            except KeyError:  # a CRD stopped serving every version: nothing can read these anyway
                by_namespace.pop(name, None)
                continue
            for obj in contained:
                if self._stored(contained_type, name, obj["metadata"]["name"]) is not None:
                    self._delete(contained_type, name, obj["metadata"]["name"], {}, dry_run=False)
        return self._maybe_finish_namespace(name) or terminating

    def _maybe_finish_namespace(self, name: str) -> JsonObject | None:
        namespaces = self._type_for_key(_CORE_NAMESPACES)
        namespace_obj = self._stored(namespaces, None, name)
        if namespace_obj is None or not namespace_obj["metadata"].get("deletionTimestamp"):
            return None
        if any(by_namespace.get(name) for by_namespace in self._store.values()):
            return None
        if namespace_obj["metadata"].get("finalizers"):
            return None
        final = copy.deepcopy(namespace_obj)
        final["spec"] = {**final.get("spec", {}), "finalizers": []}
        final["metadata"]["resourceVersion"] = self._next_resource_version()
        self._commit(namespaces, "DELETED", namespace_obj, final)
        return final

    def _delete_collection(
        self, resource: ResourceType, namespace: str | None, query: Mapping[str, str], dry_run: bool
    ) -> JsonObject:
        selector = Selector.parse(query.get("labelSelector", ""), query.get("fieldSelector", ""))
        victims = [obj for obj in self._iter_objects(resource, namespace) if selector.matches(obj)]
        deleted = [
            self._present(
                resource,
                self._delete(
                    resource, obj["metadata"].get("namespace"), obj["metadata"]["name"], {}, dry_run=dry_run
                ),
            )
            for obj in victims
        ]
        return self._list_body(resource, deleted)

    # --- CRDs ------------------------------------------------------------------------------------------

    def _register_crd(self, crd: JsonObject) -> None:
        crd_name = crd["metadata"]["name"]
        served = resource_types_from_crd(crd)
        for key, resource in list(self._types.items()):
            if resource.crd_name == crd_name and resource not in served:
                del self._types[key]
        for resource in served:
            self.register_resource(resource)

    def _unregister_crd(self, crd: JsonObject) -> None:
        crd_name = crd["metadata"]["name"]
        spec = crd.get("spec") or {}
        storage_key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        types = [resource for resource in self._types.values() if resource.crd_name == crd_name]
        if types:
            # Custom objects go with their definition (at once, even with finalizers: a simplification).
            for obj in list(self._iter_objects(types[0], None)):
                self._remove(types[0], obj)
        for resource in types:
            self.unregister_resource(resource.group, resource.version, resource.plural)
        for watcher in self._watchers.pop(storage_key, set()):
            watcher.queue.put_nowait(None)
        self._store.pop(storage_key, None)

    # --- Lists and watches ------------------------------------------------------------------------------

    def _list_body(self, resource: ResourceType, items: list[JsonObject]) -> JsonObject:
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": items,
        }

    def _list_response(
        self, resource: ResourceType, namespace: str | None, query: Mapping[str, str]
    ) -> JsonObject:
        selector = Selector.parse(query.get("labelSelector", ""), query.get("fieldSelector", ""))
        items = [
            self._present(resource, obj)
            for obj in self._iter_objects(resource, namespace)
            if selector.matches(obj)
        ]
        return self._list_body(resource, items)

    def _watch_event(self, watcher: _Watcher, event: _Event) -> JsonObject | None:
        """Translate a stored event into what this watcher sees (selectors can turn MODIFIED into ADDED)."""
        namespace = event.new["metadata"].get("namespace")
        if watcher.namespace is not None and namespace != watcher.namespace:
            return None
        matches_new = watcher.selector.matches(event.new)
        if event.type == "MODIFIED":
            matches_old = event.old is not None and watcher.selector.matches(event.old)
            if matches_old and matches_new:
                event_type = "MODIFIED"
            elif matches_new:
                event_type = "ADDED"
            elif matches_old:
                event_type = "DELETED"
            else:
                return None
        elif matches_new:
            event_type = event.type
        else:
            return None
        return {"type": event_type, "object": self._present(watcher.resource, event.new)}

    def _bookmark(self, resource: ResourceType, *, initial_events_end: bool) -> JsonObject:
        metadata: JsonObject = {"resourceVersion": str(self._resource_version)}
        if initial_events_end:
            metadata["annotations"] = {INITIAL_EVENTS_END_ANNOTATION: "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata},
        }

    async def _watch_response(
        self,
        raw_request: aiohttp.web.BaseRequest,
        resource: ResourceType,
        namespace: str | None,
        query: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        selector = Selector.parse(query.get("labelSelector", ""), query.get("fieldSelector", ""))
        requested_rv = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid timeoutSeconds: {query['timeoutSeconds']!r}") from exc
        if send_initial and (not bookmarks or query.get("resourceVersionMatch") != "NotOlderThan"):
            raise ApiError(
                422,
                "Invalid",
                "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )

        watcher = _Watcher(resource, namespace, selector)
        # Everything up to registering the watcher is synchronous, so no event can slip in between.
        initial: list[JsonObject] = []
        gone = False
        if send_initial or requested_rv in ("", "0"):
            initial = [
                {"type": "ADDED", "object": self._present(resource, obj)}
                for obj in self._iter_objects(resource, namespace)
                if selector.matches(obj)
            ]
        else:
            try:
                since = int(requested_rv)
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion: {requested_rv!r}") from exc
            if since < self._compacted_rv:
                gone = True
            else:
                for event in self._history:
                    if event.resource_version > since and event.storage_key == resource.storage_key:
                        translated = self._watch_event(watcher, event)
                        if translated is not None:
                            initial.append(translated)
        if send_initial:
            initial.append(self._bookmark(resource, initial_events_end=True))
        if not gone:
            self._watchers[resource.storage_key].add(watcher)

        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            await response.prepare(raw_request)
            if gone:
                expired = ApiError(
                    410,
                    "Expired",
                    f"too old resource version: {requested_rv} ({self._compacted_rv})",
                )
                await self._write_event(raw_request, response, {"type": "ERROR", "object": expired.status()})
            else:
                for item in initial:
                    await self._write_event(raw_request, response, item)
                await self._stream_events(raw_request, response, watcher, timeout, bookmarks)
        except _StopWatch:
            pass
        finally:
            self._watchers.get(resource.storage_key, set()).discard(watcher)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _stream_events(
        self,
        raw_request: aiohttp.web.BaseRequest,
        response: aiohttp.web.StreamResponse,
        watcher: _Watcher,
        duration: float | None,
        bookmarks: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration if duration is not None else None
        while True:
            remaining = deadline - loop.time() if deadline is not None else None
            if remaining is not None and remaining <= 0:
                if bookmarks:
                    await self._write_event(
                        raw_request, response, self._bookmark(watcher.resource, initial_events_end=False)
                    )
                return
            # Wake up at least every second to notice clients that hung up.
            wait = min(remaining, 1.0) if remaining is not None else 1.0
            try:
                event = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                transport = raw_request.transport
                if transport is None or transport.is_closing():
                    return
                continue
            if event is None:
                return
            translated = self._watch_event(watcher, event)
            if translated is not None:
                await self._write_event(raw_request, response, translated)

    @staticmethod
    async def _write_event(
        raw_request: aiohttp.web.BaseRequest, response: aiohttp.web.StreamResponse, event: JsonObject
    ) -> None:
        transport = raw_request.transport
        if transport is None or transport.is_closing():
            raise _StopWatch
        try:
            await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        except (ConnectionError, RuntimeError) as exc:
            raise _StopWatch from exc

    # --- Service-account tokens -------------------------------------------------------------------------

    def _token_request(self, namespace: str, name: str, body: Any) -> JsonObject:
        account = self._require(self._type_for_key(_SERVICEACCOUNTS), namespace, name)
        return self._tokens.issue(namespace, name, account["metadata"]["uid"], body)

    def _token_review(self, body: Any) -> JsonObject:
        return self._tokens.review(body, self._service_account_uid)

    def _service_account_uid(self, namespace: str, name: str) -> str | None:
        account = self._stored(self._type_for_key(_SERVICEACCOUNTS), namespace, name)
        return str(account["metadata"]["uid"]) if account is not None else None


def _strip_patch_directives(patch: Any) -> Any:
    """Drop strategic-merge directives (``$patch``, ``$retainKeys``, ...) we do not interpret."""
    if isinstance(patch, dict):
        return {
            key: _strip_patch_directives(value) for key, value in patch.items() if not key.startswith("$")
        }
    if isinstance(patch, list):
        return [_strip_patch_directives(item) for item in patch]
    return patch


# --- Thread runner ---------------------------------------------------------------------------------------


class _EmulatorServer(kmock.Server):
    """``kmock.Server`` without its aiohttp client and process-wide DNS patch.

    kmock 0.8 patches ``aiohttp.TCPConnector._resolve_host`` globally on enter and raises on exit
    unless servers exit in reverse order, which breaks several emulators in one process.
    """

    async def __aenter__(self) -> _EmulatorServer:
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.handler.servers.remove(self)
        server, self._managed_server = self._managed_server, None
        assert server is not None
        await server.__aexit__(exc_type, exc_value, traceback)


class EmulatorThread:
    """Serve a :class:`ClusterEmulator` over HTTP from a daemon thread with its own asyncio loop."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, emulator: ClusterEmulator | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.emulator = emulator if emulator is not None else ClusterEmulator()
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            raise RuntimeError("the emulator thread was already started")
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the Kubernetes emulator did not start within 30 s")
        if self._startup_error is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._startup_error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); a daemon thread has nobody else to tell
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                log.exception("the Kubernetes emulator thread crashed")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self.emulator.attach_loop(self._loop)
        try:
            async with (
                self.emulator,
                _EmulatorServer(self.emulator, host=self.host, port=self.port or None) as server,
            ):
                self.port = server.port
                self.url = f"http://{self.host}:{server.port}"
                self._ready.set()
                await self._stop_requested.wait()
                # Open watches would otherwise hold aiohttp's graceful shutdown for a minute.
                self.emulator.drop_watches()
                await asyncio.sleep(0)
        finally:
            self.emulator.attach_loop(None)

    def stop(self) -> None:
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or not thread.is_alive():
            return
        if loop is not None and stop_requested is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close between the check and the call
                loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout=30)

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def call(self, fn_or_coro: Callable[[], T] | Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine, or a callable (sync or async), on the emulator's loop and return its result."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the emulator is not running")

        async def run() -> T:
            if inspect.iscoroutine(fn_or_coro):
                return cast(T, await fn_or_coro)
            result = cast(Callable[[], Any], fn_or_coro)()
            if inspect.isawaitable(result):
                return cast(T, await result)
            return cast(T, result)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), loop)
        return future.result(timeout)

    def requests(self) -> list[RecordedRequest]:
        return self.emulator.recorded_requests()

    def clear_requests(self) -> None:
        self.emulator.clear_recorded_requests()

    def write_kubeconfig(
        self,
        path: pathlib.Path,
        *,
        context: str = "sandbox",
        cluster: str = "sandbox",
        user: str = "sandbox-admin",
    ) -> pathlib.Path:
        if not self.url:
            raise RuntimeError("start the emulator before writing a kubeconfig for it")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster, "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": {"token": f"{user}-token"}}],
            "contexts": [
                {"name": context, "context": {"cluster": cluster, "user": user, "namespace": "default"}}
            ],
            "current-context": context,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 from the start: a kubeconfig holds credentials.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        path.chmod(0o600)
        return path

    def get_object(
        self, api_version: str, plural: str, namespace: str | None, name: str
    ) -> JsonObject | None:
        return self.emulator.get_object(api_version, plural, namespace, name)

    def objects(self, api_version: str, plural: str, namespace: str | None = None) -> list[JsonObject]:
        return self.emulator.list_objects(api_version, plural, namespace)

    def create_object(self, manifest: Mapping[str, Any]) -> JsonObject:
        return self.emulator.create_object(manifest)
