"""Build the objects a Flux Kustomization applies from a Git tree: a small subset of kustomize.

Given every file of a revision (repository-relative POSIX paths), ``build_manifests`` does what
kustomize-controller does for ``spec.path``: when the directory has a ``kustomization.yaml`` it
follows ``resources:`` (files and directories, recursively), and applies the ``namespace``,
``commonLabels``, ``labels`` and ``commonAnnotations`` transformers; otherwise it takes every
``*.yaml``/``*.yml`` below the path, entering sub-directories through their own
kustomization file when they have one (what Flux's generated kustomization does).
Anything else kustomize can do (patches, generators, images, remote bases) fails the build
with a clear message instead of being silently ignored.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any, Final

import yaml

from sandbox.controllers.kube import JSON

KUSTOMIZATION_FILES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUSTOMIZE_CONFIG_GROUP: Final = "kustomize.config.k8s.io"
MANIFEST_SUFFIXES: Final = (".yaml", ".yml")
SUPPORTED_FIELDS: Final = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "resources",
        "bases",
        "namespace",
        "commonLabels",
        "labels",
        "commonAnnotations",
    }
)


class BuildError(Exception):
    """The manifests at a path cannot be built (missing path, bad YAML, unsupported kustomize feature)."""


class _Tree:
    """Files and directories of one revision, addressed by normalised repository-relative paths."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = {_normalise(path): content for path, content in files.items()}
        self.directories: set[str] = {""}
        for path in self.files:
            parent = posixpath.dirname(path)
            while parent not in self.directories:
                self.directories.add(parent)
                parent = posixpath.dirname(parent)

    def entries(self, directory: str) -> tuple[list[str], list[str]]:
        """The files and the sub-directories directly inside ``directory``, sorted."""
        files = sorted(path for path in self.files if posixpath.dirname(path) == directory)
        subdirs = sorted(path for path in self.directories if path and posixpath.dirname(path) == directory)
        return files, subdirs


def _normalise(path: str) -> str:
    cleaned = posixpath.normpath("/" + path.strip()).lstrip("/")
    return "" if cleaned == "." else cleaned


def build_manifests(files: Mapping[str, bytes], path: str) -> list[JSON]:
    """The objects below ``path`` (``./clusters/prod`` and ``clusters/prod`` are the same)."""
    tree = _Tree(files)
    root = _normalise(path or "./")
    if root not in tree.directories:
        raise BuildError(f"kustomization path not found: stat {path}: no such file or directory")
    objects = _directory(tree, root, stack=())
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        identity = _identity(obj)
        if identity in seen:
            api_version, kind, namespace, name = identity
            where = f"{namespace}/{name}" if namespace else name
            raise BuildError(
                f"may not add resource with an already registered id: {kind}.{api_version} {where}"
            )
        seen.add(identity)
    return objects


def _identity(obj: JSON) -> tuple[str, str, str, str]:
    metadata = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind")), str(metadata.get("namespace") or ""), str(metadata.get("name"))


def _kustomization_file(tree: _Tree, directory: str) -> str | None:
    for name in KUSTOMIZATION_FILES:
        candidate = posixpath.join(directory, name) if directory else name
        if candidate in tree.files:
            return candidate
    return None


def _directory(tree: _Tree, directory: str, stack: tuple[str, ...]) -> list[JSON]:
    if directory in stack:
        raise BuildError(f"cycle detected: {' -> '.join((*stack, directory))}")
    kustomization = _kustomization_file(tree, directory)
    if kustomization is not None:
        return _kustomize(tree, directory, kustomization, (*stack, directory))
    files, subdirs = tree.entries(directory)
    objects: list[JSON] = []
    for file in files:
        if file.endswith(MANIFEST_SUFFIXES):
            objects.extend(_load(tree, file))
    for subdir in subdirs:
        objects.extend(_directory(tree, subdir, (*stack, directory)))
    return objects


def _kustomize(tree: _Tree, directory: str, kustomization: str, stack: tuple[str, ...]) -> list[JSON]:
    try:
        spec = yaml.safe_load(tree.files[kustomization]) or {}
    except yaml.YAMLError as error:
        raise BuildError(f"{kustomization}: invalid YAML: {_first_line(error)}") from error
    if not isinstance(spec, dict):
        raise BuildError(f"{kustomization}: expected a mapping")
    unsupported = sorted(set(spec) - SUPPORTED_FIELDS)
    if unsupported:
        raise BuildError(
            f"{kustomization}: kustomize field(s) {', '.join(unsupported)} not supported by the sandbox"
        )
    objects: list[JSON] = []
    for entry in [*(spec.get("resources") or []), *(spec.get("bases") or [])]:
        reference = str(entry)
        if "://" in reference or reference.startswith(("github.com/", "git@")):
            raise BuildError(f"{kustomization}: remote resource {reference!r} not supported by the sandbox")
        target = posixpath.normpath(posixpath.join(directory, reference))
        if target.startswith("..") or target.startswith("/"):
            raise BuildError(f"{kustomization}: resource {reference!r} is outside the repository")
        target = "" if target == "." else target
        if target in tree.files:
            objects.extend(_load(tree, target))
        elif target in tree.directories:
            objects.extend(_directory(tree, target, stack))
        else:
            raise BuildError(
                f"accumulating resources from '{reference}': open {target}: no such file or directory"
            )
    _transform(objects, spec)
    return objects


def _transform(objects: Iterable[JSON], spec: Mapping[str, Any]) -> None:
    namespace = spec.get("namespace")
    labels: dict[str, str] = {str(k): str(v) for k, v in (spec.get("commonLabels") or {}).items()}
    for entry in spec.get("labels") or []:
        if isinstance(entry, dict):
            labels.update({str(k): str(v) for k, v in (entry.get("pairs") or {}).items()})
    annotations = {str(k): str(v) for k, v in (spec.get("commonAnnotations") or {}).items()}
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        if namespace:
            # Cluster-scoped kinds lose the namespace again when applied (their scope is known then).
            metadata["namespace"] = str(namespace)
        if labels:
            metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        if annotations:
            metadata["annotations"] = {**(metadata.get("annotations") or {}), **annotations}


def _load(tree: _Tree, path: str) -> list[JSON]:
    try:
        documents = list(yaml.safe_load_all(tree.files[path]))
    except yaml.YAMLError as error:
        raise BuildError(f"{path}: invalid YAML: {_first_line(error)}") from error
    objects: list[JSON] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise BuildError(f"{path}: expected a Kubernetes object, got {type(document).__name__}")
        if str(document.get("kind", "")).endswith("List") and isinstance(document.get("items"), list):
            candidates = list(document["items"])
        else:
            candidates = [document]
        for candidate in candidates:
            api_version = str(candidate.get("apiVersion") or "")
            if candidate.get("kind") == "Kustomization" and api_version.startswith(
                KUSTOMIZE_CONFIG_GROUP + "/"
            ):
                continue
            name = (candidate.get("metadata") or {}).get("name")
            if not api_version or not candidate.get("kind") or not name:
                raise BuildError(f"{path}: every object needs apiVersion, kind and metadata.name")
            objects.append(copy.deepcopy(candidate))
    return objects


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
