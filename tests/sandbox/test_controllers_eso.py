"""The simulated External Secrets controllers against the emulator and a real OpenBao dev server.

OpenBao's Kubernetes auth points at the emulator: the store controller gets a service-account
token from the emulator's TokenRequest endpoint, logs in with it, and OpenBao checks it with a
TokenReview against the emulator. Each test uses its own auth and KV mounts on the shared server.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
from kubernetes import client as kube_client

import sandbox
from sandbox.controllers import USER_AGENT, ControllerSet
from sandbox.emulator import EmulatorThread
from sandbox.git_server import GitHttpServer
from tests.fixtures.vault import DevOpenBao
from tests.sandbox.test_controllers_flux import (
    ESO_CRD_FILES,
    FLUX_CRD_FILES,
    SOURCE_API,
    CrdSchemas,
    crd_schemas,
    git_repository,
    merge_patch,
    new_deployments,
    ready_condition,
    running_controllers,
    wait_for,
)

ESO_API = "external-secrets.io/v1"
SANDBOX_CA = Path(sandbox.__file__).resolve().parent / "data" / "sandbox-ca.pem"
ESO_NAMESPACE = "external-secrets-system"
ESO_SERVICE_ACCOUNT = "external-secrets"
ROLE = "external-secrets"


@dataclass
class Eso:
    """A running world: emulator with ESO CRDs, controllers, and OpenBao mounts for this test."""

    emulator: EmulatorThread
    api: kube_client.ApiClient
    controllers: ControllerSet
    schemas: CrdSchemas
    vault: Any  # hvac.Client with the dev root token
    vault_url: str
    kv_mount: str
    auth_mount: str

    def put(self, path: str, **values: str) -> None:
        self.vault.secrets.kv.v2.create_or_update_secret(path=path, secret=values, mount_point=self.kv_mount)

    def store(self, name: str = "vault-backend", *, role: str = ROLE) -> dict[str, Any]:
        manifest = {
            "apiVersion": ESO_API,
            "kind": "ClusterSecretStore",
            "metadata": {"name": name},
            "spec": {
                "provider": {
                    "vault": {
                        "server": self.vault_url,
                        "path": self.kv_mount,
                        "version": "v2",
                        "auth": {
                            "kubernetes": {
                                "mountPath": self.auth_mount,
                                "role": role,
                                "serviceAccountRef": {
                                    "name": ESO_SERVICE_ACCOUNT,
                                    "namespace": ESO_NAMESPACE,
                                },
                            }
                        },
                    }
                }
            },
        }
        self.schemas.validate(manifest)
        return manifest

    def external_secret(
        self,
        name: str,
        data: list[tuple[str, str, str]],
        *,
        refresh: str = "1h",
        store: str = "vault-backend",
    ) -> dict[str, Any]:
        manifest = {
            "apiVersion": ESO_API,
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": "myapp"},
            "spec": {
                "refreshInterval": refresh,
                "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                "target": {"name": name, "creationPolicy": "Owner"},
                "data": [
                    {"secretKey": secret_key, "remoteRef": {"key": key, "property": prop}}
                    for secret_key, key, prop in data
                ],
            },
        }
        self.schemas.validate(manifest)
        return manifest

    def get(self, plural: str, name: str, namespace: str | None = "myapp") -> Any:
        return self.emulator.get_object(ESO_API, plural, namespace, name)

    def secret_values(self, name: str) -> dict[str, str] | None:
        secret = self.emulator.get_object("v1", "secrets", "myapp", name)
        if secret is None:
            return None
        return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}

    def wait_ready(
        self, plural: str, name: str, *, namespace: str | None = "myapp", status: str = "True"
    ) -> dict[str, Any]:
        return self.wait_ready_object(ESO_API, plural, name, namespace, status=status)

    def wait_ready_object(
        self, api_version: str, plural: str, name: str, namespace: str | None, *, status: str = "True"
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.emulator.get_object(api_version, plural, namespace, name)
            ready = ready_condition(obj)
            return obj if ready is not None and ready["status"] == status else None

        obj = wait_for(probe, what=f"{plural}/{name} Ready={status}")
        self.schemas.validate(obj)
        return obj


@pytest.fixture
def eso(
    emulator: EmulatorThread,
    kube_api_client: kube_client.ApiClient,
    kubeconfig: Path,
    tmp_path: Path,
    openbao_dev: DevOpenBao,
    unique_name: str,
) -> Iterator[Eso]:
    vault = hvac.Client(url=openbao_dev.url, token=openbao_dev.root_token)
    kv_mount, auth_mount, policy = f"kv-{unique_name}", f"k8s-{unique_name}", f"read-{unique_name}"
    vault.sys.enable_secrets_engine("kv", path=kv_mount, options={"version": "2"})
    vault.sys.enable_auth_method("kubernetes", path=auth_mount)
    vault.auth.kubernetes.configure(
        kubernetes_host=emulator.url,
        kubernetes_ca_cert=SANDBOX_CA.read_text(encoding="utf-8"),
        disable_local_ca_jwt=True,
        mount_point=auth_mount,
    )
    vault.sys.create_or_update_policy(policy, f'path "{kv_mount}/data/*" {{ capabilities = ["read"] }}')
    vault.auth.kubernetes.create_role(
        ROLE,
        bound_service_account_names=[ESO_SERVICE_ACCOUNT],
        bound_service_account_namespaces=[ESO_NAMESPACE],
        policies=[policy],
        ttl="1h",
        mount_point=auth_mount,
    )
    for namespace in (ESO_NAMESPACE, "myapp"):
        emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    emulator.create_object(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ESO_SERVICE_ACCOUNT, "namespace": ESO_NAMESPACE},
        }
    )
    schemas = crd_schemas()
    try:
        with running_controllers(kubeconfig, tmp_path / "controllers") as controllers:
            schemas.install(emulator, *ESO_CRD_FILES)
            yield Eso(
                emulator,
                kube_api_client,
                controllers,
                schemas,
                vault,
                openbao_dev.url,
                kv_mount,
                auth_mount,
            )
    finally:
        vault.sys.disable_auth_method(auth_mount)
        vault.sys.disable_secrets_engine(kv_mount)
        vault.sys.delete_policy(policy)


def test_cluster_secret_store_logs_in_with_kubernetes_auth_and_becomes_ready(eso: Eso) -> None:
    eso.emulator.create_object(eso.store())

    store = eso.wait_ready("clustersecretstores", "vault-backend", namespace=None)

    ready = ready_condition(store)
    assert ready is not None
    assert (ready["reason"], ready["message"]) == ("Valid", "store validated")
    assert store["status"]["capabilities"] == "ReadWrite"
    requests = eso.emulator.requests()
    token_requests = [
        r
        for r in requests
        if r.method == "POST"
        and r.path == f"/api/v1/namespaces/{ESO_NAMESPACE}/serviceaccounts/{ESO_SERVICE_ACCOUNT}/token"
    ]
    assert token_requests
    assert {r.user_agent for r in token_requests} == {USER_AGENT}
    # OpenBao itself checked the token with the emulator: that is the real Kubernetes auth flow.
    assert any(r.path.endswith("/tokenreviews") and r.user_agent != USER_AGENT for r in requests)


def test_external_secret_writes_its_secret_and_reports_synced(eso: Eso) -> None:
    eso.put("myapp", db_password="correct horse", api_key="battery staple")
    eso.emulator.create_object(eso.store())
    eso.emulator.create_object(
        eso.external_secret(
            "myapp-secrets",
            [
                ("database-password", "myapp", "db_password"),
                ("api-key", f"{eso.kv_mount}/myapp", "api_key"),  # ESO accepts the mount as a prefix too
            ],
        )
    )

    synced = eso.wait_ready("externalsecrets", "myapp-secrets")

    assert eso.secret_values("myapp-secrets") == {
        "database-password": "correct horse",
        "api-key": "battery staple",
    }
    ready = ready_condition(synced)
    assert ready is not None
    assert (ready["reason"], ready["message"]) == ("SecretSynced", "secret synced")
    status = synced["status"]
    assert status["binding"] == {"name": "myapp-secrets"}
    assert status["syncedResourceVersion"].startswith(f"{synced['metadata']['generation']}-")
    assert status["refreshTime"]
    secret = eso.emulator.get_object("v1", "secrets", "myapp", "myapp-secrets")
    assert secret is not None
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["reconcile.external-secrets.io/managed"] == "true"
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "ExternalSecret",
        "myapp-secrets",
        synced["metadata"]["uid"],
    )
    assert owner["controller"] is True

    # Deleting the ExternalSecret (creationPolicy Owner) deletes its Secret.
    kube_client.CustomObjectsApi(eso.api).delete_namespaced_custom_object(
        "external-secrets.io", "v1", "myapp", "externalsecrets", "myapp-secrets"
    )
    wait_for(lambda: eso.secret_values("myapp-secrets") is None, what="the owned Secret to be deleted")


def test_missing_vault_key_reports_a_sync_error_until_it_exists(eso: Eso) -> None:
    eso.emulator.create_object(eso.store())
    eso.wait_ready("clustersecretstores", "vault-backend", namespace=None)
    eso.emulator.create_object(eso.external_secret("tunnel", [("token", "cloudflare", "api_token")]))

    failing = eso.wait_ready("externalsecrets", "tunnel", status="False")

    ready = ready_condition(failing)
    assert ready is not None
    assert (ready["reason"], ready["message"]) == (
        "SecretSyncedError",
        "could not get secret data from provider",
    )
    assert eso.secret_values("tunnel") is None
    assert "refreshTime" not in failing["status"]

    eso.put("cloudflare", api_token="tunnel-token")
    eso.wait_ready("externalsecrets", "tunnel")
    assert eso.secret_values("tunnel") == {"token": "tunnel-token"}


def test_force_sync_picks_up_a_changed_vault_value_before_the_refresh_interval(eso: Eso) -> None:
    eso.put("myapp", db_password="first")
    eso.emulator.create_object(eso.store())
    eso.emulator.create_object(eso.external_secret("myapp-secrets", [("password", "myapp", "db_password")]))
    first = eso.wait_ready("externalsecrets", "myapp-secrets")
    assert eso.secret_values("myapp-secrets") == {"password": "first"}

    eso.put("myapp", db_password="second")
    # refreshTime has whole seconds: let the clock pass into a new second while resyncs run
    # (none may refresh: the interval is an hour).
    time.sleep(1.1)
    assert eso.controllers.wait_idle(5)
    assert eso.secret_values("myapp-secrets") == {"password": "first"}

    annotation = {"metadata": {"annotations": {"force-sync": str(time.time())}}}
    merge_patch(eso.api, ESO_API, "externalsecrets", "myapp", "myapp-secrets", annotation)

    wait_for(lambda: eso.secret_values("myapp-secrets") == {"password": "second"}, what="the new value")
    refreshed = eso.wait_ready("externalsecrets", "myapp-secrets")
    assert refreshed["status"]["refreshTime"] > first["status"]["refreshTime"]
    assert refreshed["status"]["syncedResourceVersion"] != first["status"]["syncedResourceVersion"]


def test_store_with_a_wrong_role_is_not_ready_and_blocks_its_external_secrets(eso: Eso) -> None:
    eso.put("myapp", db_password="value")
    eso.emulator.create_object(eso.store(role="no-such-role"))
    eso.emulator.create_object(eso.external_secret("myapp-secrets", [("password", "myapp", "db_password")]))

    store = eso.wait_ready("clustersecretstores", "vault-backend", namespace=None, status="False")
    ready = ready_condition(store)
    assert ready is not None
    assert ready["reason"] == "ValidationFailed"
    assert "no-such-role" in ready["message"]
    blocked = eso.wait_ready("externalsecrets", "myapp-secrets", status="False")
    assert ready_condition(blocked)["message"] == "the desired SecretStore vault-backend is not ready"  # type: ignore[index]
    assert eso.secret_values("myapp-secrets") is None

    patch = {"spec": {"provider": {"vault": {"auth": {"kubernetes": {"role": ROLE}}}}}}
    kube_client.CustomObjectsApi(eso.api).patch_cluster_custom_object(
        "external-secrets.io",
        "v1",
        "clustersecretstores",
        "vault-backend",
        patch,
        _content_type="application/merge-patch+json",
    )
    eso.wait_ready("clustersecretstores", "vault-backend", namespace=None)
    eso.wait_ready("externalsecrets", "myapp-secrets")
    assert eso.secret_values("myapp-secrets") == {"password": "value"}


def test_token_secret_store_and_a_deleted_target_secret_is_recreated(eso: Eso) -> None:
    eso.put("myapp", db_password="value")
    eso.emulator.create_object(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "vault-token", "namespace": ESO_NAMESPACE},
            "stringData": {"token": eso.vault.token},
        }
    )
    store = eso.store("token-store")
    store["spec"]["provider"]["vault"]["auth"] = {
        "tokenSecretRef": {"name": "vault-token", "namespace": ESO_NAMESPACE, "key": "token"}
    }
    eso.schemas.validate(store)
    eso.emulator.create_object(store)
    eso.emulator.create_object(
        eso.external_secret("myapp-secrets", [("password", "myapp", "db_password")], store="token-store")
    )
    eso.wait_ready("clustersecretstores", "token-store", namespace=None)
    eso.wait_ready("externalsecrets", "myapp-secrets")
    assert eso.secret_values("myapp-secrets") == {"password": "value"}

    kube_client.CoreV1Api(eso.api).delete_namespaced_secret("myapp-secrets", "myapp")
    wait_for(
        lambda: eso.secret_values("myapp-secrets") == {"password": "value"}, what="the Secret to come back"
    )


def test_template_builds_the_flux_git_secret_that_the_source_controller_then_uses(
    eso: Eso, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phase 3 end to end: Vault token -> ExternalSecret (templated) -> Secret -> GitRepository auth."""
    eso.put("github", token="ghp-sandbox-token", owner="sandbox")
    eso.emulator.create_object(eso.store())
    eso.emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    git_auth = eso.external_secret("flux-git-auth", [("token", "github", "token")])
    git_auth["metadata"]["namespace"] = "flux-system"
    git_auth["spec"]["target"]["template"] = {
        "type": "Opaque",
        "data": {"username": "git", "password": "{{ .token }}", "owner": '{{ index . "token" | upper }}'},
    }
    eso.schemas.validate(git_auth)
    eso.emulator.create_object(git_auth)
    eso.wait_ready("externalsecrets", "flux-git-auth", namespace="flux-system")
    secret = eso.emulator.get_object("v1", "secrets", "flux-system", "flux-git-auth")
    assert secret is not None
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    # Only the templated keys: the fetched "token" key itself is not in the Secret.
    assert decoded == {"username": "git", "password": "ghp-sandbox-token", "owner": "GHP-SANDBOX-TOKEN"}

    repo = new_deployments(tmp_path, monkeypatch)
    head = repo.commit({"README.md": "hello\n"})
    eso.schemas.install(eso.emulator, *FLUX_CRD_FILES)
    with GitHttpServer(repo.remote.parent) as repo.server:
        eso.emulator.create_object(git_repository(repo.url, secret="flux-git-auth"))
        source = eso.wait_ready_object(SOURCE_API, "gitrepositories", "deployments", "flux-system")
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{head}"


def test_data_from_extract_and_an_unrenderable_template(eso: Eso) -> None:
    eso.put("myapp", db_password="pw", api_key="key")
    eso.emulator.create_object(eso.store())
    everything = eso.external_secret("everything", [])
    del everything["spec"]["data"]
    everything["spec"]["dataFrom"] = [{"extract": {"key": "myapp"}}]
    eso.emulator.create_object(everything)
    eso.wait_ready("externalsecrets", "everything")
    assert eso.secret_values("everything") == {"db_password": "pw", "api_key": "key"}

    broken = eso.external_secret("broken", [("password", "myapp", "db_password")])
    broken["spec"]["target"]["template"] = {"data": {"password": "{{ .password | sha256sum }}"}}
    eso.emulator.create_object(broken)
    failed = eso.wait_ready("externalsecrets", "broken", status="False")
    message = ready_condition(failed)["message"]  # type: ignore[index]
    assert message == "could not apply template: unsupported template function 'sha256sum'"
    assert eso.secret_values("broken") is None
