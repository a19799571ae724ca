"""The Kubernetes objects gitops-tui creates, built from the configuration.

Current APIs only: Flux ``source.toolkit.fluxcd.io/v1`` and
``kustomize.toolkit.fluxcd.io/v1``; ESO ``external-secrets.io/v1``. Tests
validate every object built here against the real CRD schemas.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from phases.config import Config

MANAGED_BY = {"app.kubernetes.io/managed-by": "gitops-tui"}


def now_rfc3339_nano() -> str:
    """The timestamp format the flux CLI writes into reconcile.fluxcd.io/requestedAt."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(MANAGED_BY)}}


def git_repository(config: Config, secret_name: str) -> dict[str, Any]:
    flux = config.flux
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": flux.git_repository, "namespace": flux.namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "interval": flux.interval,
            "url": config.deployments.url,
            "ref": {"branch": config.deployments.branch},
            "secretRef": {"name": secret_name},
        },
    }


def kustomization(
    config: Config, name: str, path: str, *, depends_on: tuple[str, ...] = ()
) -> dict[str, Any]:
    flux = config.flux
    spec: dict[str, Any] = {
        "interval": "10m",
        "retryInterval": "1m",
        "path": path,
        "prune": True,
        "wait": False,
        "timeout": "5m",
        "sourceRef": {"kind": "GitRepository", "name": flux.git_repository},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": dependency} for dependency in depends_on]
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": flux.namespace, "labels": dict(MANAGED_BY)},
        "spec": spec,
    }


def cluster_secret_store(config: Config, vault_cluster_address: str) -> dict[str, Any]:
    vault, eso = config.vault, config.external_secrets
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": eso.cluster_secret_store, "labels": dict(MANAGED_BY)},
        "spec": {
            "provider": {
                "vault": {
                    "server": vault_cluster_address,
                    "path": vault.kv_mount,
                    "version": "v2",
                    "auth": {
                        "kubernetes": {
                            "mountPath": vault.auth_mount,
                            "role": vault.role,
                            "serviceAccountRef": {"name": eso.service_account, "namespace": eso.namespace},
                        }
                    },
                }
            }
        },
    }


def git_auth_external_secret(config: Config) -> dict[str, Any]:
    """flux-system/flux-git-auth: the Flux Git credentials, synced from the token in Vault."""
    flux, eso = config.flux, config.external_secrets
    token = config.token_secret()
    assert token is not None  # the config loader guarantees flux.token_secret is declared
    return {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": flux.git_auth_secret, "namespace": flux.namespace, "labels": dict(MANAGED_BY)},
        "spec": {
            "refreshInterval": eso.refresh_interval,
            "secretStoreRef": {"name": eso.cluster_secret_store, "kind": "ClusterSecretStore"},
            "target": {
                "name": flux.git_auth_secret,
                "creationPolicy": "Owner",
                "template": {
                    "type": "Opaque",
                    "data": {"username": flux.git_username, "password": "{{ .token }}"},
                },
            },
            "data": [
                {
                    "secretKey": "token",
                    "remoteRef": {"key": token.vault_path, "property": token.vault_key},
                }
            ],
        },
    }


def vault_init_keys_secret(config: Config, data: dict[str, str]) -> dict[str, Any]:
    """The Secret holding the init keys; ``data`` is already base64 (built by the caller from buffers)."""
    return _opaque_secret(config.vault.init_secret, config.vault.namespace, dict(MANAGED_BY), data)


def bootstrap_git_secret(config: Config, data: dict[str, str]) -> dict[str, Any]:
    labels = {**MANAGED_BY, "gitops-tui/role": "bootstrap-git-auth"}
    return _opaque_secret(config.flux.bootstrap_secret, config.flux.namespace, labels, data)


def _opaque_secret(name: str, namespace: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }
