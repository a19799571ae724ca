"""The simulated Flux controllers against the real emulator, a real Git remote and the real CRD schemas.

Every test starts the controllers before any CRD exists (as the sandbox does), then installs the
upstream CRDs from ``shared/crds``. Every object the controllers write is validated against those
schemas, made strict the way a real API server is: fields the schema does not declare would be
pruned, so they fail here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import pytest
import yaml
from kubernetes import client as kube_client

from phases.git import GitRepo
from sandbox.controllers import USER_AGENT, ControllerSet
from sandbox.emulator import EmulatorThread
from sandbox.git_server import GitHttpServer

CRDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "crds"
FLUX_CRD_FILES = (
    "source.toolkit.fluxcd.io_gitrepositories.yaml",
    "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    "helm.toolkit.fluxcd.io_helmreleases.yaml",
)
ESO_CRD_FILES = ("external-secrets.io_externalsecrets.yaml", "external-secrets.io_clustersecretstores.yaml")
SOURCE_API = "source.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"
HELM_API = "helm.toolkit.fluxcd.io/v2"
RESYNC_SECONDS = 0.2
GIT_SECRET = "git-auth"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

T = TypeVar("T")


# -- shared helpers (the ESO tests import these) --------------------------------------------------------


def wait_for(probe: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def ready_condition(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == "Ready":
            return dict(item)
    return None


def _strict(schema: Any) -> Any:
    """A copy of an OpenAPI schema where objects with declared properties reject undeclared ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        raise ValueError(f"{value!r} is not RFC 3339")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


# jsonschema checks "date-time" only with an optional extra installed: check it ourselves.
_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checkers["date-time"] = (_is_rfc3339, ValueError)


class CrdSchemas:
    """The upstream CRDs: installable into the emulator, and validators for their served versions."""

    def __init__(self, directory: Path = CRDS_DIR) -> None:
        self.manifests: dict[str, dict[str, Any]] = {}
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        for path in sorted(directory.glob("*.yaml")):
            crd = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            self.manifests[path.name] = crd
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    validator_class = jsonschema.validators.validator_for(
                        schema, default=jsonschema.Draft7Validator
                    )
                    self._validators[(f"{group}/{version['name']}", kind)] = validator_class(
                        schema, format_checker=_FORMATS
                    )

    def install(self, emulator: EmulatorThread, *files: str) -> None:
        for name in files:
            emulator.create_object(copy.deepcopy(self.manifests[name]))

    def validate(self, obj: dict[str, Any], *, status_only: bool = False) -> None:
        """Raise if ``obj`` (spec and the status our controllers wrote) breaks its CRD's schema.

        ``status_only`` checks what the controllers wrote and leaves out a spec the test chose
        to differ from what a real API server admits (a ``file://`` GitRepository URL).
        """
        validator = self._validators[(obj["apiVersion"], obj["kind"])]
        if status_only:
            obj = {key: obj[key] for key in ("apiVersion", "kind", "metadata", "status") if key in obj}
        errors = sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path))
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert not errors, "\n".join(
            f"{where} {'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors
        )


@functools.cache
def crd_schemas() -> CrdSchemas:
    return CrdSchemas()


@contextlib.contextmanager
def running_controllers(kubeconfig: Path, workdir: Path) -> Iterator[ControllerSet]:
    """The simulated controllers with a short resync, settled while no CRD is installed yet."""
    controller_set = ControllerSet(kubeconfig, workdir, resync_seconds=RESYNC_SECONDS).start()
    try:
        assert controller_set.wait_idle(5), "controllers should settle while no CRD is installed"
        yield controller_set
    finally:
        controller_set.stop()


@pytest.fixture
def controllers(kubeconfig: Path, tmp_path: Path) -> Iterator[ControllerSet]:
    with running_controllers(kubeconfig, tmp_path / "controllers") as controller_set:
        yield controller_set


def merge_patch(
    api: kube_client.ApiClient, api_version: str, plural: str, namespace: str, name: str, patch: Any
) -> None:
    group, version = api_version.split("/")
    kube_client.CustomObjectsApi(api).patch_namespaced_custom_object(
        group, version, namespace, plural, name, patch, _content_type="application/merge-patch+json"
    )


# -- a Git remote -------------------------------------------------------------------------------------------


@dataclass
class Deployments:
    """A bare remote plus a working clone on ``main`` (what the sandbox's deployments repo is)."""

    remote: Path
    clone: GitRepo
    server: GitHttpServer | None = None

    @property
    def url(self) -> str:
        """The remote over smart HTTP with basic auth: the URL form the real CRD admits."""
        assert self.server is not None, "serve the remote first"
        return self.server.url_for(self.remote.name)

    @property
    def file_url(self) -> str:
        return self.remote.as_uri()

    def commit(self, files: Mapping[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) files, commit, push; return the new sha."""
        for relative, text in files.items():
            path = self.clone.path / relative
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        sha = self.clone.commit_all(message)
        self.clone.push(str(self.remote), "main")
        return sha


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployments]:
    repo = new_deployments(tmp_path, monkeypatch)
    with GitHttpServer(repo.remote.parent) as repo.server:
        yield repo


def new_deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployments:
    for variable, value in {
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(variable, value)
    remote = GitRepo.init(tmp_path / "deployments.git", bare=True)
    clone = GitRepo.init(tmp_path / "deployments", initial_branch="main")
    return Deployments(remote.path, clone)


def namespace_yaml(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def configmap_yaml(name: str, namespace: str | None, **data: str) -> str:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})


def git_repository(url: str, *, name: str = "deployments", secret: str | None = GIT_SECRET) -> dict[str, Any]:
    spec: dict[str, Any] = {"interval": "1m", "url": url, "ref": {"branch": "main"}}
    if secret:
        spec["secretRef"] = {"name": secret}
    return {
        "apiVersion": SOURCE_API,
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": spec,
    }


def kustomization(
    name: str, path: str, *, depends_on: tuple[str, ...] = (), suspend: bool = False, prune: bool = True
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "10m",
        "path": path,
        "prune": prune,
        "sourceRef": {"kind": "GitRepository", "name": "deployments"},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": dependency} for dependency in depends_on]
    if suspend:
        spec["suspend"] = True
    return {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": spec,
    }


@dataclass
class Flux:
    """A running world: emulator with Flux CRDs, controllers, a Git remote and a client for patches."""

    emulator: EmulatorThread
    api: kube_client.ApiClient
    controllers: ControllerSet
    schemas: CrdSchemas
    repo: Deployments

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = "flux-system") -> Any:
        return self.emulator.get_object(api_version, plural, namespace, name)

    def kustomization(self, name: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.get(KUSTOMIZE_API, "kustomizations", name)
        return obj

    def wait_ready(
        self, api_version: str, plural: str, name: str, *, status: str = "True", status_only: bool = False
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get(api_version, plural, name)
            ready = ready_condition(obj)
            return obj if ready is not None and ready["status"] == status else None

        obj = wait_for(probe, what=f"{plural}/{name} Ready={status}")
        self.schemas.validate(obj, status_only=status_only)
        return obj

    def wait_applied(self, name: str, sha: str) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.kustomization(name)
            status = (obj or {}).get("status") or {}
            applied = status.get("lastAppliedRevision") == f"main@sha1:{sha}"
            return obj if applied and (ready_condition(obj) or {}).get("status") == "True" else None

        obj = wait_for(probe, what=f"Kustomization {name} to apply {sha[:8]}")
        self.schemas.validate(obj)
        return obj

    def configmap(self, name: str, namespace: str) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.emulator.get_object("v1", "configmaps", namespace, name)
        return obj


@pytest.fixture
def flux(
    emulator: EmulatorThread,
    kube_api_client: kube_client.ApiClient,
    controllers: ControllerSet,
    deployments: Deployments,
) -> Flux:
    schemas = crd_schemas()
    schemas.install(emulator, *FLUX_CRD_FILES)
    emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    emulator.create_object(git_secret(GIT_SECRET))
    return Flux(emulator, kube_api_client, controllers, schemas, deployments)


def git_secret(name: str, namespace: str = "flux-system") -> dict[str, Any]:
    """Basic-auth credentials for the sandbox's Git server (any user, a non-empty password)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"username": "git", "password": "sandbox-token"},
    }


APP_FILES = {
    "apps/kustomization.yaml": yaml.safe_dump({"resources": ["namespace.yaml", "config"]}),
    "apps/namespace.yaml": namespace_yaml("demo"),
    # A directory without a kustomization.yaml: all its manifests, multi-document files included.
    "apps/config/settings.yaml": configmap_yaml("settings", "demo", level="info")
    + "---\n"
    + configmap_yaml("features", "demo", beta="off"),
    "apps/config/notes.txt": "not a manifest",
    "other/ignored.yaml": configmap_yaml("outside", "demo", ignored="yes"),
}


# -- GitRepository ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url_form", ["http", "file-url", "bare-path"])
def test_git_repository_becomes_ready_with_the_remote_head_as_artifact(flux: Flux, url_form: str) -> None:
    head = flux.repo.commit({"README.md": "hello\n"})
    url = {"http": flux.repo.url, "file-url": flux.repo.file_url, "bare-path": str(flux.repo.remote)}
    flux.emulator.create_object(git_repository(url[url_form]))

    # The real CRD admits only http(s)/ssh URLs: for the other forms check what the controller wrote.
    repository = flux.wait_ready(SOURCE_API, "gitrepositories", "deployments", status_only=url_form != "http")

    status = repository["status"]
    assert status["artifact"]["revision"] == f"main@sha1:{head}"
    assert status["artifact"]["digest"].startswith("sha256:")
    ready = ready_condition(repository)
    assert ready is not None
    assert (ready["reason"], ready["message"]) == (
        "Succeeded",
        f"stored artifact for revision 'main@sha1:{head}'",
    )
    assert ready["observedGeneration"] == status["observedGeneration"] == repository["metadata"]["generation"]


def test_git_repository_with_a_missing_secret_fails_authentication_until_the_secret_exists(
    flux: Flux,
) -> None:
    head = flux.repo.commit({"README.md": "hello\n"})
    flux.emulator.create_object(git_repository(flux.repo.url, secret="new-auth"))

    failing = flux.wait_ready(SOURCE_API, "gitrepositories", "deployments", status="False")
    ready = ready_condition(failing)
    assert ready is not None
    assert ready["reason"] == "AuthenticationFailed"
    assert ready["message"] == "failed to get secret 'flux-system/new-auth': secrets \"new-auth\" not found"
    assert "artifact" not in failing["status"]

    flux.emulator.create_object(git_secret("new-auth"))
    fixed = flux.wait_ready(SOURCE_API, "gitrepositories", "deployments")
    assert fixed["status"]["artifact"]["revision"] == f"main@sha1:{head}"
    assert not [item for item in fixed["status"]["conditions"] if item["type"] == "FetchFailed"]


def test_http_remote_refuses_anonymous_reads_and_the_secret_fixes_it(flux: Flux) -> None:
    head = flux.repo.commit(dict(APP_FILES))
    flux.emulator.create_object(git_repository(flux.repo.url, secret=None))

    anonymous = flux.wait_ready(SOURCE_API, "gitrepositories", "deployments", status="False")
    ready = ready_condition(anonymous)
    assert ready is not None
    assert ready["reason"] == "GitOperationFailed"
    assert f"unable to clone '{flux.repo.url}'" in ready["message"]

    patch = {"spec": {"secretRef": {"name": GIT_SECRET}}}
    merge_patch(flux.api, SOURCE_API, "gitrepositories", "flux-system", "deployments", patch)
    fetched = flux.wait_ready(SOURCE_API, "gitrepositories", "deployments")
    assert fetched["status"]["artifact"]["revision"] == f"main@sha1:{head}"
    assert "sandbox-token" not in str(fetched["status"])
    # The Kustomization reads the revision the source controller fetched over HTTP.
    flux.emulator.create_object(kustomization("apps", "./apps"))
    flux.wait_applied("apps", head)
    assert flux.configmap("settings", "demo") is not None


# -- Kustomization ------------------------------------------------------------------------------------------


def test_kustomization_applies_its_path_with_flux_labels_and_inventory(flux: Flux) -> None:
    head = flux.repo.commit(dict(APP_FILES))
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.emulator.create_object(kustomization("apps", "./apps"))

    applied = flux.wait_applied("apps", head)

    status = applied["status"]
    assert status["lastAttemptedRevision"] == f"main@sha1:{head}"
    assert status["observedGeneration"] == applied["metadata"]["generation"]
    ready = ready_condition(applied)
    assert ready is not None
    assert (ready["reason"], ready["message"]) == (
        "ReconciliationSucceeded",
        f"Applied revision: main@sha1:{head}",
    )
    assert not [item for item in status["conditions"] if item["type"] == "Reconciling"]
    assert sorted(entry["id"] for entry in status["inventory"]["entries"]) == [
        "_demo__Namespace",
        "demo_features__ConfigMap",
        "demo_settings__ConfigMap",
    ]
    assert {entry["v"] for entry in status["inventory"]["entries"]} == {"v1"}
    settings = flux.configmap("settings", "demo")
    assert settings is not None
    assert settings["data"] == {"level": "info"}
    for obj in (settings, flux.configmap("features", "demo"), flux.get("v1", "namespaces", "demo", None)):
        assert obj is not None
        assert obj["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"
        assert obj["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"] == "flux-system"
    assert flux.configmap("outside", "demo") is None  # outside spec.path

    # Everything the controllers wrote went over HTTP under their own user agent.
    writes = [r for r in flux.emulator.requests() if r.is_mutating and r.user_agent == USER_AGENT]
    assert any(r.method == "POST" and r.path.endswith("/namespaces/demo/configmaps") for r in writes)
    assert any(r.path.endswith("/kustomizations/apps/status") for r in writes)


def test_new_commit_and_requested_at_apply_the_new_revision(flux: Flux) -> None:
    first = flux.repo.commit(dict(APP_FILES))
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.emulator.create_object(kustomization("apps", "./apps"))
    flux.wait_applied("apps", first)

    second = flux.repo.commit(
        {"apps/config/settings.yaml": configmap_yaml("settings", "demo", level="debug")}, "debug logging"
    )
    requested_at = "2026-01-02T03:04:05.123456789Z"
    annotations = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested_at}}}
    merge_patch(flux.api, SOURCE_API, "gitrepositories", "flux-system", "deployments", annotations)
    merge_patch(flux.api, KUSTOMIZE_API, "kustomizations", "flux-system", "apps", annotations)

    applied = flux.wait_applied("apps", second)
    wait_for(
        lambda: (
            (flux.kustomization("apps") or {}).get("status", {}).get("lastHandledReconcileAt") == requested_at
        ),
        what="lastHandledReconcileAt",
    )
    source = wait_for(
        lambda: (
            (obj := flux.get(SOURCE_API, "gitrepositories", "deployments"))["status"].get(
                "lastHandledReconcileAt"
            )
            == requested_at
            and obj
        ),
        what="the source to handle the reconcile request",
    )
    flux.schemas.validate(source)
    assert flux.configmap("settings", "demo")["data"] == {"level": "debug"}  # type: ignore[index]
    # The second file of the old multi-document settings.yaml is gone from the revision: pruned.
    assert flux.configmap("features", "demo") is None
    assert applied["status"]["lastAppliedRevision"] == f"main@sha1:{second}"


def test_suspended_kustomization_applies_nothing_until_resumed(flux: Flux) -> None:
    first = flux.repo.commit(dict(APP_FILES))
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.emulator.create_object(kustomization("apps", "./apps"))
    flux.wait_applied("apps", first)

    merge_patch(flux.api, KUSTOMIZE_API, "kustomizations", "flux-system", "apps", {"spec": {"suspend": True}})
    second = flux.repo.commit({"apps/config/extra.yaml": configmap_yaml("extra", "demo", added="yes")})
    wait_for(
        lambda: (
            flux.get(SOURCE_API, "gitrepositories", "deployments")["status"]["artifact"]["revision"]
            == f"main@sha1:{second}"
        ),
        what="the source to see the new commit",
    )
    time.sleep(5 * RESYNC_SECONDS)  # several resyncs, each of which would have applied it
    assert flux.controllers.wait_idle(5)
    assert flux.configmap("extra", "demo") is None
    suspended = flux.kustomization("apps")
    assert suspended is not None
    assert suspended["status"]["lastAppliedRevision"] == f"main@sha1:{first}"

    merge_patch(
        flux.api, KUSTOMIZE_API, "kustomizations", "flux-system", "apps", {"spec": {"suspend": False}}
    )
    flux.wait_applied("apps", second)
    assert flux.configmap("extra", "demo") is not None


def test_prune_deletes_objects_whose_file_was_removed(flux: Flux) -> None:
    files = dict(APP_FILES)
    files["apps/config/extra.yaml"] = configmap_yaml("extra", "demo", added="yes")
    first = flux.repo.commit(files)
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.emulator.create_object(kustomization("apps", "./apps"))
    flux.wait_applied("apps", first)
    assert flux.configmap("extra", "demo") is not None

    second = flux.repo.commit({"apps/config/extra.yaml": None}, "remove extra")

    applied = flux.wait_applied("apps", second)
    assert flux.configmap("extra", "demo") is None
    assert "demo_extra__ConfigMap" not in {entry["id"] for entry in applied["status"]["inventory"]["entries"]}
    assert flux.configmap("settings", "demo") is not None


def test_depends_on_waits_for_the_dependency_to_be_ready(flux: Flux) -> None:
    head = flux.repo.commit({**APP_FILES, "infra/namespace.yaml": namespace_yaml("infra")})
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.wait_ready(SOURCE_API, "gitrepositories", "deployments")  # Flux checks the source first
    flux.emulator.create_object(kustomization("apps", "./apps", depends_on=("infra",)))

    waiting = flux.wait_ready(KUSTOMIZE_API, "kustomizations", "apps", status="False")
    ready = ready_condition(waiting)
    assert ready is not None
    assert ready["reason"] == "DependencyNotReady"
    assert "'flux-system/infra' dependency" in ready["message"]
    assert flux.configmap("settings", "demo") is None

    # A dependency that exists but cannot become ready keeps it waiting, with Flux's message.
    flux.emulator.create_object(kustomization("infra", "./missing"))
    infra = flux.wait_ready(KUSTOMIZE_API, "kustomizations", "infra", status="False")
    assert ready_condition(infra)["reason"] == "BuildFailed"  # type: ignore[index]
    wait_for(
        lambda: (
            (ready_condition(flux.kustomization("apps")) or {}).get("message")
            == "dependency 'flux-system/infra' is not ready"
        ),
        what="apps to wait for the unready infra",
    )

    merge_patch(
        flux.api, KUSTOMIZE_API, "kustomizations", "flux-system", "infra", {"spec": {"path": "./infra"}}
    )
    flux.wait_applied("infra", head)
    flux.wait_applied("apps", head)
    assert flux.configmap("settings", "demo") is not None


def test_unregistered_kind_fails_the_reconcile_until_its_crd_exists(flux: Flux) -> None:
    external_secret = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "app-secrets", "namespace": "demo"},
        "spec": {"secretStoreRef": {"name": "vault-backend", "kind": "ClusterSecretStore"}},
    }
    files = dict(APP_FILES)
    files["apps/config/externalsecret.yaml"] = yaml.safe_dump(external_secret)
    head = flux.repo.commit(files)
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.wait_ready(SOURCE_API, "gitrepositories", "deployments")
    flux.emulator.create_object(kustomization("apps", "./apps"))

    failed = flux.wait_ready(KUSTOMIZE_API, "kustomizations", "apps", status="False")
    ready = ready_condition(failed)
    assert ready is not None
    assert ready["reason"] == "ReconciliationFailed"
    assert 'no matches for kind "ExternalSecret" in version "external-secrets.io/v1"' in ready["message"]
    assert failed["status"]["lastAttemptedRevision"] == f"main@sha1:{head}"
    assert "lastAppliedRevision" not in failed["status"]
    # Like Flux: the namespace (first stage) is applied, nothing of the failed stage is.
    assert flux.get("v1", "namespaces", "demo", None) is not None
    assert flux.configmap("settings", "demo") is None

    flux.schemas.install(flux.emulator, *ESO_CRD_FILES)
    flux.wait_applied("apps", head)
    applied_secret = flux.get("external-secrets.io/v1", "externalsecrets", "app-secrets", "demo")
    assert applied_secret["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "apps"


# -- HelmRelease and the controller set -----------------------------------------------------------------


def test_helm_release_installs_then_honours_suspend_and_requested_at(flux: Flux) -> None:
    release = {
        "apiVersion": HELM_API,
        "kind": "HelmRelease",
        "metadata": {"name": "vault", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "chart": {
                "spec": {
                    "chart": "openbao",
                    "version": "0.16.2",
                    "sourceRef": {"kind": "HelmRepository", "name": "openbao"},
                }
            },
            "values": {"server": {"dev": {"enabled": True}}},
        },
    }
    flux.emulator.create_object(release)

    installed = flux.wait_ready(HELM_API, "helmreleases", "vault")
    ready = ready_condition(installed)
    assert ready is not None
    assert ready["reason"] == "InstallSucceeded"
    assert installed["status"]["lastAttemptedRevision"] == "0.16.2"
    assert installed["status"]["observedGeneration"] == installed["metadata"]["generation"]

    merge_patch(flux.api, HELM_API, "helmreleases", "flux-system", "vault", {"spec": {"suspend": True}})
    merge_patch(
        flux.api,
        HELM_API,
        "helmreleases",
        "flux-system",
        "vault",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "while-suspended"}}},
    )
    time.sleep(3 * RESYNC_SECONDS)
    assert flux.controllers.wait_idle(5)
    assert "lastHandledReconcileAt" not in flux.get(HELM_API, "helmreleases", "vault")["status"]

    merge_patch(flux.api, HELM_API, "helmreleases", "flux-system", "vault", {"spec": {"suspend": False}})
    handled = wait_for(
        lambda: (
            (obj := flux.get(HELM_API, "helmreleases", "vault"))["status"].get("lastHandledReconcileAt")
            == "while-suspended"
            and obj
        ),
        what="the reconcile request to be handled after resume",
    )
    flux.schemas.validate(handled)


def test_stop_is_prompt_idempotent_and_ends_every_thread(kubeconfig: Path, tmp_path: Path) -> None:
    controller_set = ControllerSet(kubeconfig, tmp_path / "work", resync_seconds=RESYNC_SECONDS).start()
    assert controller_set.wait_idle(5)
    started = time.monotonic()
    controller_set.stop()
    assert time.monotonic() - started < 1.0
    controller_set.stop()
    threads = [controller.thread for controller in controller_set.controllers]
    assert threads
    assert not [thread.name for thread in threads if thread.is_alive()]


def test_controllers_recover_from_dropped_watches_and_server_errors(flux: Flux) -> None:
    first = flux.repo.commit(dict(APP_FILES))
    flux.emulator.create_object(git_repository(flux.repo.url))
    flux.emulator.create_object(kustomization("apps", "./apps"))
    flux.wait_applied("apps", first)

    # The connection to the API server drops and the next requests fail: nothing crashes.
    before = len(flux.emulator.requests())
    fault = flux.emulator.emulator.inject_fault(status=500, times=6, user_agent_contains=USER_AGENT)
    flux.emulator.emulator.compact()  # and resuming a watch gets 410 Gone: informers must list again
    assert flux.emulator.emulator.drop_watches() > 0

    second = flux.repo.commit({"apps/config/extra.yaml": configmap_yaml("extra", "demo", added="yes")})
    flux.wait_applied("apps", second)
    assert flux.configmap("extra", "demo") is not None
    assert fault.hits == 6
    relists = [
        r
        for r in flux.emulator.requests()[before:]
        if r.verb == "list" and r.user_agent == USER_AGENT and r.path.endswith("/kustomizations")
    ]
    assert relists, "the Kustomization informer should have listed again after 410 Gone"
    assert all(controller.thread.is_alive() for controller in flux.controllers.controllers)
