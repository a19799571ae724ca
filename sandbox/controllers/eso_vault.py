"""ESO's Vault provider, sandbox-sized: read a store's config, log in, read KV secrets.

Kubernetes auth works as on a cluster: a token for the store's service account comes from the
API server's TokenRequest endpoint, ``auth.kubernetes.login`` hands it to OpenBao, and OpenBao
checks it with a TokenReview against the same API server. Tokens are cached per store until
shortly before their TTL ends; fetched secret values are returned to the caller and not kept.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import hvac
import hvac.exceptions
import requests

from phases.kube import SECRETS, SERVICES, KubeClient, KubeError
from sandbox.controllers.kube import JSON
from sandbox.kubelet import resolve_service_url

TOKEN_REQUEST_SECONDS: Final = 600
# Renew a cached Vault token this long before it expires; tokens without a TTL are re-checked anyway.
TOKEN_EXPIRY_MARGIN: Final = 10.0
UNLIMITED_TOKEN_CACHE_SECONDS: Final = 300.0
VAULT_TIMEOUT_SECONDS: Final = 5


class InvalidProviderConfig(Exception):
    """The store's spec cannot work (ESO reason InvalidProviderConfig)."""


class ProviderError(Exception):
    """Talking to Vault failed (login, permission, missing path, unreachable)."""


@dataclass(frozen=True)
class KubernetesAuth:
    mount_path: str
    role: str
    service_account: tuple[str, str] | None  # (namespace, name)
    audiences: tuple[str, ...]
    jwt_secret: tuple[str, str, str] | None  # (namespace, name, key)


@dataclass(frozen=True)
class TokenAuth:
    secret: tuple[str, str, str]  # (namespace, name, key)


@dataclass(frozen=True)
class VaultStore:
    """What the ES controller needs from a (Cluster)SecretStore with a ``vault`` provider."""

    identity: str  # e.g. "ClusterSecretStore/vault-backend"
    server: str
    mount: str
    kv_version: str
    vault_namespace: str | None
    ca_bundle: bytes | None
    auth: KubernetesAuth | TokenAuth
    fingerprint: str

    @classmethod
    def from_object(cls, store: JSON) -> VaultStore:
        kind = str(store.get("kind") or "SecretStore")
        metadata = store.get("metadata") or {}
        store_namespace = metadata.get("namespace")
        provider = ((store.get("spec") or {}).get("provider")) or {}
        vault = provider.get("vault")
        if not isinstance(vault, dict):
            names = ", ".join(sorted(provider)) or "none"
            raise InvalidProviderConfig(f"only the vault provider is supported by the sandbox (got {names})")
        server = str(vault.get("server") or "")
        if not server.startswith(("http://", "https://")):
            raise InvalidProviderConfig(f"invalid vault server address {server!r}")
        version = str(vault.get("version") or "v2")
        if version not in ("v1", "v2"):
            raise InvalidProviderConfig(f"invalid KV version {version!r}")
        auth_spec = vault.get("auth") or {}
        auth: KubernetesAuth | TokenAuth
        if auth_spec.get("kubernetes"):
            auth = _kubernetes_auth(auth_spec["kubernetes"], kind, store_namespace)
        elif auth_spec.get("tokenSecretRef"):
            auth = TokenAuth(
                _secret_ref(auth_spec["tokenSecretRef"], kind, store_namespace, "tokenSecretRef")
            )
        else:
            raise InvalidProviderConfig(
                "no supported auth method: use auth.kubernetes or auth.tokenSecretRef"
            )
        ca_bundle = base64.b64decode(vault["caBundle"]) if vault.get("caBundle") else None
        fingerprint = hashlib.sha256(json.dumps(vault, sort_keys=True).encode()).hexdigest()
        return cls(
            identity=f"{kind}/{store_namespace}/{metadata.get('name')}"
            if store_namespace
            else f"{kind}/{metadata.get('name')}",
            server=server.rstrip("/"),
            mount=str(vault.get("path") or "secret").strip("/"),
            kv_version=version,
            vault_namespace=str(vault["namespace"]) if vault.get("namespace") else None,
            ca_bundle=ca_bundle,
            auth=auth,
            fingerprint=fingerprint,
        )

    def relative_key(self, key: str) -> str:
        """ESO accepts ``myapp`` and ``secret/myapp`` alike when the store's path is ``secret``."""
        key = key.strip("/")
        prefix = self.mount + "/"
        if key.startswith(prefix):
            key = key[len(prefix) :]
        if self.kv_version == "v2" and key.startswith("data/"):
            key = key[len("data/") :]
        return key


def _kubernetes_auth(spec: JSON, kind: str, store_namespace: str | None) -> KubernetesAuth:
    role = str(spec.get("role") or "")
    if not role:
        raise InvalidProviderConfig("auth.kubernetes.role is required")
    account_ref = spec.get("serviceAccountRef") or {}
    service_account: tuple[str, str] | None = None
    if account_ref.get("name"):
        namespace = account_ref.get("namespace") or store_namespace
        if not namespace:
            raise InvalidProviderConfig(
                f"auth.kubernetes.serviceAccountRef.namespace is required for a {kind}"
            )
        service_account = (str(namespace), str(account_ref["name"]))
    jwt_secret = (
        _secret_ref(spec["secretRef"], kind, store_namespace, "secretRef") if spec.get("secretRef") else None
    )
    if service_account is None and jwt_secret is None:
        raise InvalidProviderConfig("auth.kubernetes needs serviceAccountRef or secretRef in the sandbox")
    return KubernetesAuth(
        mount_path=str(spec.get("mountPath") or "kubernetes").strip("/"),
        role=role,
        service_account=service_account,
        audiences=tuple(str(item) for item in account_ref.get("audiences") or ()),
        jwt_secret=jwt_secret,
    )


def _secret_ref(ref: JSON, kind: str, store_namespace: str | None, field: str) -> tuple[str, str, str]:
    namespace = ref.get("namespace") or store_namespace
    if not namespace or not ref.get("name") or not ref.get("key"):
        raise InvalidProviderConfig(f"{field} needs name, key and (for a {kind}) namespace")
    return str(namespace), str(ref["name"]), str(ref["key"])


@dataclass
class _Session:
    fingerprint: str
    token: str
    expires_at: float


class VaultSessions:
    """Vault tokens per store, shared by the store and ExternalSecret controllers (thread-safe)."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()

    def validate(self, store: VaultStore, kube: KubeClient) -> None:
        """Log in afresh (what a store check means); the new token replaces the cached one."""
        self._login(store, kube)

    def read(
        self, store: VaultStore, kube: KubeClient, key: str, version: str | None = None
    ) -> dict[str, Any]:
        """The key/value data of a KV secret. Raises ProviderError when it cannot be read."""
        path = store.relative_key(key)
        try:
            with self._client(store, self._token(store, kube), kube) as client:
                data = self._read_data(client, store, path, version)
        except hvac.exceptions.Forbidden as error:
            self._forget(store)  # the token may have expired or lost its policy: log in again next time
            raise ProviderError(f"cannot read {store.mount}/{path}: {_vault_message(error)}") from error
        except (hvac.exceptions.VaultError, requests.RequestException) as error:
            raise ProviderError(f"cannot read {store.mount}/{path}: {_vault_message(error)}") from error
        if not isinstance(data, dict):
            raise ProviderError(f"cannot read {store.mount}/{path}: secret has no data")
        return data

    @staticmethod
    def _read_data(client: Any, store: VaultStore, path: str, version: str | None) -> Any:
        if store.kv_version == "v2":
            answer = client.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=store.mount, raise_on_deleted_version=True
            )
            return (answer.get("data") or {}).get("data")
        return client.secrets.kv.v1.read_secret(path=path, mount_point=store.mount).get("data")

    # -- internals -------------------------------------------------------------------------------------

    def _token(self, store: VaultStore, kube: KubeClient) -> str:
        with self._lock:
            session = self._sessions.get(store.identity)
        if (
            session is not None
            and session.fingerprint == store.fingerprint
            and session.expires_at > time.monotonic()
        ):
            return session.token
        return self._login(store, kube)

    def _forget(self, store: VaultStore) -> None:
        with self._lock:
            self._sessions.pop(store.identity, None)

    def _login(self, store: VaultStore, kube: KubeClient) -> str:
        if isinstance(store.auth, TokenAuth):
            token = _secret_value(kube, store.auth.secret)
            try:
                with self._client(store, token, kube) as client:
                    ttl = float((client.auth.token.lookup_self().get("data") or {}).get("ttl") or 0)
            except (hvac.exceptions.VaultError, requests.RequestException) as error:
                raise ProviderError(f"unable to validate token: {_vault_message(error)}") from error
        else:
            jwt = self._service_account_jwt(store.auth, kube)
            try:
                with self._client(store, "", kube) as client:
                    answer = client.auth.kubernetes.login(
                        role=store.auth.role, jwt=jwt, use_token=False, mount_point=store.auth.mount_path
                    )
            except (hvac.exceptions.VaultError, requests.RequestException) as error:
                raise ProviderError(
                    "unable to log in to auth method: unable to log in with Kubernetes auth: "
                    + _vault_message(error)
                ) from error
            finally:
                del jwt
            auth = answer.get("auth") or {}
            token = str(auth.get("client_token") or "")
            ttl = float(auth.get("lease_duration") or 0)
            if not token:
                raise ProviderError("unable to log in to auth method: no client token in the answer")
        lifetime = ttl - TOKEN_EXPIRY_MARGIN if ttl > TOKEN_EXPIRY_MARGIN else UNLIMITED_TOKEN_CACHE_SECONDS
        with self._lock:
            self._sessions[store.identity] = _Session(store.fingerprint, token, time.monotonic() + lifetime)
        return token

    @staticmethod
    def _service_account_jwt(auth: KubernetesAuth, kube: KubeClient) -> str:
        if auth.jwt_secret is not None:
            return _secret_value(kube, auth.jwt_secret)
        assert auth.service_account is not None
        namespace, name = auth.service_account
        spec: JSON = {"expirationSeconds": TOKEN_REQUEST_SECONDS}
        if auth.audiences:
            spec["audiences"] = list(auth.audiences)
        try:
            answer = kube.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except KubeError as error:
            raise ProviderError(f"unable to create service account token: {error.detail}") from error
        token = str(((answer or {}).get("status") or {}).get("token") or "")
        if not token:
            raise ProviderError("unable to create service account token: empty answer")
        return token

    @contextlib.contextmanager
    def _client(self, store: VaultStore, token: str, kube: KubeClient) -> Iterator[Any]:
        """An hvac client for one exchange; its HTTP session is closed afterwards."""
        verify: bool | str = True
        if store.ca_bundle is not None:
            bundle = self._workdir / "eso-ca" / f"{hashlib.sha256(store.ca_bundle).hexdigest()[:16]}.pem"
            if not bundle.exists():
                bundle.parent.mkdir(parents=True, exist_ok=True)
                bundle.write_bytes(store.ca_bundle)
            verify = str(bundle)
        # ESO runs in a pod: an in-cluster address (vault.vault.svc:8200) goes through the
        # Service, the way cluster DNS and kube-proxy would route it.
        server = resolve_service_url(
            store.server, lambda namespace, name: kube.get(SERVICES, name, namespace)
        )
        # token="" (not None) so hvac never falls back to a VAULT_TOKEN from the environment.
        client = hvac.Client(
            url=server,
            token=token,
            verify=verify,
            timeout=VAULT_TIMEOUT_SECONDS,
            namespace=store.vault_namespace,
        )
        try:
            yield client
        finally:
            client.adapter.close()


def _secret_value(kube: KubeClient, ref: tuple[str, str, str]) -> str:
    namespace, name, key = ref
    try:
        secret = kube.get(SECRETS, name, namespace)
    except KubeError as error:
        raise ProviderError(f"cannot get Secret {namespace}/{name}: {error.detail}") from error
    if secret is None:
        raise ProviderError(f'cannot get Secret {namespace}/{name}: secrets "{name}" not found')
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise ProviderError(f"cannot find secret data for key: {key!r} in Secret {namespace}/{name}")
    return base64.b64decode(encoded).decode()


def _vault_message(error: BaseException) -> str:
    """Vault's own error text (hvac adds ", on get <url>"), or the connection problem."""
    if isinstance(error, hvac.exceptions.VaultError):
        errors = getattr(error, "errors", None)
        if errors:
            return "; ".join(str(item) for item in errors)
    if isinstance(error, requests.RequestException):
        return f"cannot reach Vault: {type(error).__name__}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
