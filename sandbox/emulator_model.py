"""Pure helpers behind :mod:`sandbox.emulator`: resource types, API errors, selectors, patches.

Nothing here touches the network or the event loop, so everything is unit-testable and cheap.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

JsonObject = dict[str, Any]

STANDARD_VERBS: Final = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_SUBRESOURCE_VERBS: Final = ("get", "patch", "update")


class ApiError(Exception):
    """An error the emulator answers as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JsonObject | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = dict(headers or {})

    def status(self) -> JsonObject:
        body: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


# The reasons real API servers put into Status objects for the codes we answer.
REASON_BY_CODE: Final[Mapping[int, str]] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def error_for_code(code: int, message: str | None = None) -> ApiError:
    reason = REASON_BY_CODE.get(code, "InternalError" if code >= 500 else "BadRequest")
    headers = {"Retry-After": "1"} if code in (429, 503) else None
    return ApiError(code, reason, message or f"injected fault: {reason}", headers=headers)


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/plural, with what discovery reports about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ()
    # Name of the CustomResourceDefinition that registered this type; "" for built-in types.
    crd_name: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_key(self) -> tuple[str, str]:
        # All versions of one group/plural share one store, as in a real API server.
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified_plural(self) -> str:
        """What error messages call the resource, e.g. ``kustomizations.kustomize.toolkit.fluxcd.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery_entries(self) -> list[JsonObject]:
        main: JsonObject = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        sub_verbs: tuple[str, ...]
        for subresource in self.subresources:
            if subresource == "token":
                sub_kind, sub_group, sub_version, sub_verbs = (
                    "TokenRequest",
                    "authentication.k8s.io",
                    "v1",
                    ("create",),
                )
            elif subresource == "finalize":
                sub_kind, sub_group, sub_version, sub_verbs = self.kind, self.group, self.version, ("update",)
            else:
                sub_kind, sub_group, sub_version, sub_verbs = (
                    self.kind,
                    self.group,
                    self.version,
                    STATUS_SUBRESOURCE_VERBS,
                )
            entry: JsonObject = {
                "name": f"{self.plural}/{subresource}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": sub_kind,
                "verbs": list(sub_verbs),
            }
            if (sub_group, sub_version) != (self.group, self.version):
                entry["group"] = sub_group
                entry["version"] = sub_version
            entries.append(entry)
        return entries


def _builtin(
    api_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short_names: Sequence[str] = (),
    categories: Sequence[str] = (),
    subresources: Sequence[str] = (),
    verbs: Sequence[str] = STANDARD_VERBS,
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=tuple(short_names),
        categories=tuple(categories),
        verbs=tuple(verbs),
        subresources=tuple(subresources),
    )


BUILTIN_RESOURCES: Final[tuple[ResourceType, ...]] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, short_names=["ns"], subresources=["status"]),
    _builtin("v1", "nodes", "Node", namespaced=False, short_names=["no"], subresources=["status"]),
    _builtin("v1", "pods", "Pod", short_names=["po"], categories=["all"], subresources=["status"]),
    _builtin("v1", "services", "Service", short_names=["svc"], categories=["all"], subresources=["status"]),
    _builtin("v1", "endpoints", "Endpoints", short_names=["ep"]),
    _builtin("v1", "secrets", "Secret"),
    _builtin("v1", "configmaps", "ConfigMap", short_names=["cm"]),
    _builtin("v1", "serviceaccounts", "ServiceAccount", short_names=["sa"], subresources=["token"]),
    _builtin("v1", "events", "Event", short_names=["ev"]),
    _builtin(
        "apps/v1",
        "deployments",
        "Deployment",
        short_names=["deploy"],
        categories=["all"],
        subresources=["status"],
    ),
    _builtin(
        "apps/v1",
        "statefulsets",
        "StatefulSet",
        short_names=["sts"],
        categories=["all"],
        subresources=["status"],
    ),
    _builtin(
        "apps/v1", "daemonsets", "DaemonSet", short_names=["ds"], categories=["all"], subresources=["status"]
    ),
    _builtin(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=["crd", "crds"],
        subresources=["status"],
    ),
    _builtin("rbac.authorization.k8s.io/v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("authentication.k8s.io/v1", "tokenreviews", "TokenReview", namespaced=False, verbs=["create"]),
)


def resource_types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The resource types a ``CustomResourceDefinition`` serves (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    kind = names.get("kind", "")
    plural = names.get("plural", "")
    types: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=plural,
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or kind.lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                # Only status is served; a scale subresource is not emulated.
                subresources=("status",) if "status" in subresources else (),
                crd_name=(crd.get("metadata") or {}).get("name", ""),
            )
        )
    return types


def validate_crd(crd: Mapping[str, Any]) -> None:
    """Reject what a real API server would reject and what we could not serve."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    problems: list[str] = []
    for required in ("group", "scope"):
        if not spec.get(required):
            problems.append(f"spec.{required}: Required value")
    for required in ("plural", "kind"):
        if not names.get(required):
            problems.append(f"spec.names.{required}: Required value")
    if spec.get("scope") not in (None, "Namespaced", "Cluster"):
        problems.append('spec.scope: Unsupported value: must be "Namespaced" or "Cluster"')
    versions = spec.get("versions") or []
    if not versions or sum(1 for version in versions if version.get("storage")) != 1:
        problems.append(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
        )
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        problems.append(f'metadata.name: Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
    if problems:
        raise ApiError(
            422,
            "Invalid",
            f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: ' + ", ".join(problems),
            details={"name": name, "group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition"},
        )


# --- Selectors -------------------------------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*$")

LabelPredicate = Callable[[Mapping[str, str]], bool]


def _split_selector(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` parentheses."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> LabelPredicate:
    if match := _SET_TERM.match(term):
        negated_prefix, key, operator, raw_values = match.groups()
        if negated_prefix:
            raise ValueError(term)
        values = frozenset(value.strip() for value in raw_values.split(",") if value.strip())
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negation, key = match.groups()
        if negation:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise ValueError(term)


@dataclass(frozen=True)
class Selector:
    """A parsed ``labelSelector`` + ``fieldSelector`` pair; empty selectors match everything."""

    label_terms: tuple[LabelPredicate, ...] = ()
    field_terms: tuple[tuple[str, str, str], ...] = ()  # (path, operator, value)
    exact_name: str | None = None

    @classmethod
    def parse(cls, label_selector: str = "", field_selector: str = "") -> Selector:
        try:
            label_terms = tuple(_label_term(term) for term in _split_selector(label_selector))
        except ValueError as exc:
            raise ApiError(
                400, "BadRequest", f'unable to parse requirement: invalid label selector term "{exc}"'
            ) from exc
        field_terms: list[tuple[str, str, str]] = []
        for term in _split_selector(field_selector):
            match = re.match(r"^\s*([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
            if match is None:
                raise ApiError(
                    400, "BadRequest", f'invalid selector: "{field_selector}"; can\'t understand "{term}"'
                )
            path, operator, value = match.groups()
            field_terms.append((path, "!=" if operator == "!=" else "=", value))
        exact_name = next(
            (value for path, op, value in field_terms if path == "metadata.name" and op == "="), None
        )
        return cls(tuple(label_terms), tuple(field_terms), exact_name)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        if not all(term(labels) for term in self.label_terms):
            return False
        for path, operator, expected in self.field_terms:
            actual = _field_value(obj, path)
            if (actual == expected) != (operator == "="):
                return False
        return True


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


# --- Patches ---------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonObject = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class JsonPatchError(Exception):
    """A JSON patch that cannot be applied; ``code`` says how a real server answers it."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {pointer!r}", code=400)
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _list_index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    if not token.isdigit():
        raise JsonPatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if for_insert else len(container) - 1
    if index > limit:
        raise JsonPatchError(f"array index {index} out of bounds")
    return index


def _resolve_parent(document: Any, tokens: list[str]) -> Any:
    current = document
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise JsonPatchError(f"doc is missing path: /{'/'.join(tokens)}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, for_insert=False)]
        else:
            raise JsonPatchError(f"doc is missing path: /{'/'.join(tokens)}")
    return current


def _get_pointer(document: Any, pointer: str) -> Any:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return document
    parent = _resolve_parent(document, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise JsonPatchError(f"doc is missing path: {pointer}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_list_index(parent, last, for_insert=False)]
    raise JsonPatchError(f"doc is missing path: {pointer}")


def _add(document: Any, pointer: str, value: Any) -> Any:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return copy.deepcopy(value)
    parent = _resolve_parent(document, tokens)
    if isinstance(parent, dict):
        parent[tokens[-1]] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, tokens[-1], for_insert=True), copy.deepcopy(value))
    else:
        raise JsonPatchError(f"doc is missing path: {pointer}")
    return document


def _remove(document: Any, pointer: str) -> Any:
    tokens = _pointer_tokens(pointer)
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent = _resolve_parent(document, tokens)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise JsonPatchError(f"unable to remove nonexistent key: {tokens[-1]}: missing value")
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_list_index(parent, tokens[-1], for_insert=False)]
    else:
        raise JsonPatchError(f"doc is missing path: {pointer}")
    return document


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) applied to a copy of ``document``."""
    if not isinstance(operations, list):
        raise JsonPatchError("a JSON patch must be a list of operations", code=400)
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise JsonPatchError(f"invalid JSON patch operation: {operation!r}", code=400)
        op, path = operation["op"], operation["path"]
        if op == "add":
            result = _add(result, path, operation.get("value"))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            _get_pointer(result, path)  # replace requires the target to exist
            result = (
                _add(_remove(result, path), path, operation.get("value")) if path else operation.get("value")
            )
        elif op == "move":
            value = _get_pointer(result, operation["from"])
            result = _add(_remove(result, operation["from"]), path, value)
        elif op == "copy":
            result = _add(result, path, _get_pointer(result, operation["from"]))
        elif op == "test":
            if _get_pointer(result, path) != operation.get("value"):
                raise JsonPatchError(f"testing value {path} failed: test failed")
        else:
            raise JsonPatchError(f"unexpected kind of JSON patch operation: {op!r}", code=400)
    return result


# --- Secrets ---------------------------------------------------------------------------------------------


def fold_string_data(secret: JsonObject) -> JsonObject:
    """Move ``stringData`` into base64 ``data`` (``stringData`` wins) and check ``data`` is base64."""
    string_data = secret.pop("stringData", None) or {}
    data: JsonObject = dict(secret.get("data") or {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key, value in data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ApiError(
                400,
                "BadRequest",
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at key {key!r}',
            ) from exc
    if data:
        secret["data"] = data
    else:
        secret.pop("data", None)
    secret.setdefault("type", "Opaque")
    return secret


@dataclass
class FieldChanges:
    """Which parts of an object an update changed (drives generation bumps)."""

    spec_changed: bool = False
    anything_changed: bool = False
    changed_keys: set[str] = field(default_factory=set)


def generation_content(obj: Mapping[str, Any]) -> Any:
    """What a generation bump watches: ``spec``, or every top-level field but metadata/status/type info."""
    if "spec" in obj:
        return obj["spec"]
    return {
        key: value for key, value in obj.items() if key not in ("metadata", "status", "apiVersion", "kind")
    }


def diff_objects(
    old: Mapping[str, Any], new: Mapping[str, Any], *, ignore: Iterable[str] = ()
) -> FieldChanges:
    ignored = set(ignore)
    old_meta = {k: v for k, v in (old.get("metadata") or {}).items() if k not in ignored}
    new_meta = {k: v for k, v in (new.get("metadata") or {}).items() if k not in ignored}
    changed = {key for key in set(old) | set(new) if key != "metadata" and old.get(key) != new.get(key)}
    if old_meta != new_meta:
        changed.add("metadata")
    return FieldChanges(
        spec_changed=generation_content(old) != generation_content(new),
        anything_changed=bool(changed),
        changed_keys=changed,
    )
