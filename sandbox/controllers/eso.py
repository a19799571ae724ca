"""External Secrets Operator, sandbox-sized: (Cluster)SecretStore and ExternalSecret controllers.

Stores are validated by a real Vault login on every spec change and every resync. An
ExternalSecret syncs when it has never synced or its last sync failed, when its
``syncedResourceVersion`` (generation plus a hash of labels and annotations, as in ESO) no
longer matches, which is how the ``force-sync`` annotation works, when ``refreshInterval``
elapsed, or when its target Secret disappeared. Values read from Vault go straight into the
target Secret's body and are dropped; they are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Final

from phases.kube import CLUSTER_SECRET_STORES, EXTERNAL_SECRETS, SECRETS, KubeError, ResourceType
from sandbox.controllers.eso_template import TemplateError, render
from sandbox.controllers.eso_vault import InvalidProviderConfig, ProviderError, VaultSessions, VaultStore
from sandbox.controllers.kube import JSON, SECRET_STORES, object_key, split_key
from sandbox.controllers.runtime import Controller, ControllerContext, Informer
from sandbox.controllers.status import (
    READY,
    changes_anything,
    condition,
    generation,
    is_ready,
    now_rfc3339,
    parse_duration,
    parse_rfc3339,
    set_condition,
    status_patch,
)

MANAGED_LABEL: Final = "reconcile.external-secrets.io/managed"
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_REFRESH: Final = "1h0m0s"
SYNCED_MESSAGE: Final = "secret synced"
PROVIDER_ERROR_MESSAGE: Final = "could not get secret data from provider"


def _set_eso_condition(conditions: list[JSON], status: str, reason: str, message: str) -> list[JSON]:
    # No observedGeneration: ESO's condition schema has none (a real API server would prune it).
    return set_condition(conditions, READY, status, reason, message)


class SecretStoreController(Controller):
    """Validates ClusterSecretStores (``primary`` = CLUSTER_SECRET_STORES) or SecretStores."""

    def __init__(self, context: ControllerContext, sessions: VaultSessions, primary: ResourceType) -> None:
        self.primary = primary
        self.name = "clustersecretstore" if primary == CLUSTER_SECRET_STORES else "secretstore"
        super().__init__(context)
        self.sessions = sessions

    def reconcile(self, key: str, obj: JSON) -> None:
        status: JSON = obj.get("status") or {}
        conditions = list(status.get("conditions") or [])
        try:
            store = VaultStore.from_object(obj)
            self.sessions.validate(store, self.client)
        except InvalidProviderConfig as error:
            conditions = _set_eso_condition(conditions, "False", "InvalidProviderConfig", str(error))
        except ProviderError as error:
            conditions = _set_eso_condition(
                conditions, "False", "ValidationFailed", f"unable to validate store: {error}"
            )
        else:
            conditions = _set_eso_condition(conditions, "True", "Valid", "store validated")
        new_status = {**status, "conditions": conditions, "capabilities": "ReadWrite"}
        patch = status_patch(status, new_status)
        if not patch:
            return
        ready = next(item for item in conditions if item["type"] == READY)
        previous = condition(obj, READY)
        if previous is None or previous.get("message") != ready["message"]:
            log = self.log.info if ready["status"] == "True" else self.log.warning
            log("%s %s: %s", self.primary.kind, key, ready["message"])
        self.patch_status(key, patch)


class SyncError(Exception):
    """A sync failed; ``message`` goes into the Ready condition, ``detail`` only into the log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class ExternalSecretController(Controller):
    name = "externalsecret"
    primary = EXTERNAL_SECRETS

    def __init__(self, context: ControllerContext, sessions: VaultSessions) -> None:
        super().__init__(context)
        self.sessions = sessions
        self.cluster_stores = self.informer(CLUSTER_SECRET_STORES)
        self.namespaced_stores = self.informer(SECRET_STORES)
        self.managed_secrets: Informer = self.informer(SECRETS, label_selector=f"{MANAGED_LABEL}=true")
        self.cluster_stores.add_handler(self._on_store_event)
        self.namespaced_stores.add_handler(self._on_store_event)
        self.managed_secrets.add_handler(self._on_secret_event)

    def idle(self) -> bool:
        return super().idle() and self.managed_secrets.synced.is_set()

    # -- event fan-out -------------------------------------------------------------------------------

    def _on_store_event(self, _kind: str, store: JSON) -> None:
        store_kind = store.get("kind") or (
            "SecretStore" if (store.get("metadata") or {}).get("namespace") else ""
        )
        store_namespace = (store.get("metadata") or {}).get("namespace")
        store_name = (store.get("metadata") or {}).get("name")
        for external_secret in self.objects.items():
            ref = (external_secret.get("spec") or {}).get("secretStoreRef") or {}
            es_namespace = (external_secret.get("metadata") or {}).get("namespace")
            if ref.get("name") != store_name or (ref.get("kind") or "SecretStore") != store_kind:
                continue
            if store_kind == "SecretStore" and es_namespace != store_namespace:
                continue
            self.queue.add(object_key(external_secret))

    def _on_secret_event(self, _kind: str, secret: JSON) -> None:
        metadata = secret.get("metadata") or {}
        for owner in metadata.get("ownerReferences") or []:
            if owner.get("kind") == EXTERNAL_SECRETS.kind:
                self.queue.add(f"{metadata.get('namespace')}/{owner.get('name')}")

    # -- reconcile -----------------------------------------------------------------------------------

    def reconcile(self, key: str, obj: JSON) -> None:
        namespace, name = split_key(key)
        assert namespace is not None
        spec = obj.get("spec") or {}
        target = spec.get("target") or {}
        target_name = str(target.get("name") or name)
        policy = str(target.get("creationPolicy") or "Owner")
        status: JSON = obj.get("status") or {}
        synced_version = _synced_resource_version(obj)
        if not self._sync_due(obj, namespace, target_name, policy, synced_version):
            return
        conditions = list(status.get("conditions") or [])
        new_status: JSON = {**status, "binding": {"name": target_name}}
        try:
            self._sync(obj, namespace, target_name, policy)
        except SyncError as error:
            new_status["conditions"] = _set_eso_condition(
                conditions, "False", "SecretSyncedError", error.message
            )
            ready = condition(obj, READY)
            if ready is None or ready.get("message") != error.message or ready.get("status") != "False":
                detail = f" ({error.detail})" if error.detail != error.message else ""
                self.log.warning("ExternalSecret %s: %s%s", key, error.message, detail)
        else:
            new_status["conditions"] = _set_eso_condition(conditions, "True", "SecretSynced", SYNCED_MESSAGE)
            new_status["refreshTime"] = now_rfc3339()
            new_status["syncedResourceVersion"] = synced_version
            if not is_ready(obj):
                self.log.info("ExternalSecret %s: secret %s/%s synced", key, namespace, target_name)
        patch = status_patch(status, new_status)
        if patch:
            self.patch_status(key, patch)

    def finalize(self, key: str, last_seen: JSON) -> None:
        """An ExternalSecret with creationPolicy Owner takes its Secret with it (ESO's ownerReference)."""
        namespace, name = split_key(key)
        target = (last_seen.get("spec") or {}).get("target") or {}
        if str(target.get("creationPolicy") or "Owner") != "Owner":
            return
        target_name = str(target.get("name") or name)
        secret = self.client.get(SECRETS, target_name, namespace)
        if secret is None:
            return
        uid = (last_seen.get("metadata") or {}).get("uid")
        owned = any(
            owner.get("kind") == EXTERNAL_SECRETS.kind
            and owner.get("name") == name
            and (uid is None or owner.get("uid") == uid)
            for owner in (secret.get("metadata") or {}).get("ownerReferences") or []
        )
        if owned and self.client.delete(SECRETS, target_name, namespace):
            self.log.info("ExternalSecret %s deleted: deleted its Secret %s/%s", key, namespace, target_name)

    def _sync_due(
        self, obj: JSON, namespace: str, target_name: str, policy: str, synced_version: str
    ) -> bool:
        spec = obj.get("spec") or {}
        status: JSON = obj.get("status") or {}
        if not is_ready(obj) or status.get("syncedResourceVersion") != synced_version:
            return True  # never synced, failing (retried every resync), or spec/labels/annotations changed
        if policy in ("Owner", "Orphan") and self.managed_secrets.get(f"{namespace}/{target_name}") is None:
            return True  # the target Secret was deleted: ESO recreates it
        refresh_policy = str(spec.get("refreshPolicy") or "Periodic")
        if refresh_policy != "Periodic":
            return False  # CreatedOnce and OnChange never refresh on a timer
        try:
            interval = parse_duration(str(spec.get("refreshInterval") or DEFAULT_REFRESH))
        except ValueError:
            return False  # reported by _sync on the next spec change; nothing to refresh meanwhile
        if interval <= 0:
            return False
        refreshed = parse_rfc3339(str(status.get("refreshTime") or ""))
        return refreshed is None or (datetime.now(UTC) - refreshed).total_seconds() >= interval

    def _sync(self, obj: JSON, namespace: str, target_name: str, policy: str) -> None:
        spec = obj.get("spec") or {}
        try:
            parse_duration(str(spec.get("refreshInterval") or DEFAULT_REFRESH))
        except ValueError as error:
            raise SyncError(f"invalid refreshInterval: {error}") from error
        store = self._store(obj, namespace)
        data = self._fetch(store, spec)
        try:
            data = _apply_template((spec.get("target") or {}).get("template") or {}, data)
            if policy != "None":
                self._write_secret(obj, namespace, target_name, policy, data)
        finally:
            data.clear()  # drop the fetched values as soon as the Secret is written

    def _store(self, obj: JSON, namespace: str) -> VaultStore:
        ref = (obj.get("spec") or {}).get("secretStoreRef") or {}
        kind = str(ref.get("kind") or "SecretStore")
        store_name = str(ref.get("name") or "")
        if kind == "ClusterSecretStore":
            store = self.cluster_stores.get(store_name)
            rtype = CLUSTER_SECRET_STORES
        else:
            store = self.namespaced_stores.get(f"{namespace}/{store_name}")
            rtype = SECRET_STORES
        if store is None:
            raise SyncError(
                f'could not get {kind} "{store_name}", {rtype.group_resource} "{store_name}" not found'
            )
        if not is_ready(store):
            raise SyncError(f"the desired SecretStore {store_name} is not ready")
        try:
            return VaultStore.from_object({"kind": kind, **store})
        except InvalidProviderConfig as error:
            raise SyncError(f"the desired SecretStore {store_name} is not ready", str(error)) from error

    def _fetch(self, store: VaultStore, spec: JSON) -> dict[str, bytes]:
        """secretKey -> value bytes, for every ``data`` and ``dataFrom.extract`` entry."""
        values: dict[str, bytes] = {}
        secrets: dict[tuple[str, str | None], dict[str, Any]] = {}  # one read per Vault path and version

        def read(key: str, version: Any) -> dict[str, Any]:
            wanted = (store.relative_key(key), str(version) if version else None)
            if wanted not in secrets:
                secrets[wanted] = self.sessions.read(store, self.client, key, wanted[1])
            return secrets[wanted]

        try:
            for item in spec.get("dataFrom") or []:
                extract = item.get("extract") if isinstance(item, dict) else None
                if not extract:
                    raise SyncError(
                        PROVIDER_ERROR_MESSAGE, "only dataFrom[].extract is supported by the sandbox"
                    )
                for property_name, value in read(str(extract.get("key")), extract.get("version")).items():
                    values[str(property_name)] = _as_bytes(value)
            for item in spec.get("data") or []:
                remote = item.get("remoteRef") or {}
                key = str(remote.get("key") or "")
                values[str(item["secretKey"])] = _property(
                    read(key, remote.get("version")), remote.get("property"), key
                )
        except ProviderError as error:
            values.clear()
            raise SyncError(PROVIDER_ERROR_MESSAGE, str(error)) from error
        except SyncError:
            values.clear()
            raise
        finally:
            secrets.clear()
        return values

    def _write_secret(
        self, obj: JSON, namespace: str, target_name: str, policy: str, values: dict[str, bytes]
    ) -> None:
        spec = obj.get("spec") or {}
        template = (spec.get("target") or {}).get("template") or {}
        template_metadata = template.get("metadata") or {}
        metadata = obj.get("metadata") or {}
        desired_data = {key: base64.b64encode(value).decode() for key, value in values.items()}
        labels = {**(template_metadata.get("labels") or {}), MANAGED_LABEL: "true"}
        annotations = dict(template_metadata.get("annotations") or {})
        owner_references: list[JSON] = []
        if policy == "Owner":
            owner: JSON = {
                "apiVersion": EXTERNAL_SECRETS.api_version,
                "kind": EXTERNAL_SECRETS.kind,
                "name": metadata.get("name"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
            if metadata.get("uid"):
                owner["uid"] = metadata["uid"]
            owner_references.append(owner)
        try:
            live = self.client.get(SECRETS, target_name, namespace)
            if live is None:
                if policy == "Merge":
                    raise SyncError(
                        f"the desired secret {target_name} was not found. "
                        "With creationPolicy=Merge the secret won't be created"
                    )
                body: JSON = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": target_name, "namespace": namespace, "labels": labels},
                    "type": str(template.get("type") or "Opaque"),
                    "data": desired_data,
                }
                if annotations:
                    body["metadata"]["annotations"] = annotations
                if owner_references:
                    body["metadata"]["ownerReferences"] = owner_references
                self.managed_secrets.remember(self.client.create(SECRETS, body, namespace))
                return
            live_metadata = live.get("metadata") or {}
            for existing in live_metadata.get("ownerReferences") or []:
                if existing.get("controller") and existing.get("name") != metadata.get("name"):
                    owner_ref = f"{existing.get('kind')}/{existing.get('name')}"
                    raise SyncError(f"target secret {target_name} is owned by {owner_ref}")
            data_patch: dict[str, Any] = dict(desired_data)
            if policy in ("Owner", "Orphan"):
                # The ExternalSecret defines the whole Secret: keys it no longer lists go away.
                data_patch.update({key: None for key in live.get("data") or {} if key not in desired_data})
            patch: JSON = {"metadata": {"labels": labels}, "data": data_patch}
            if annotations:
                patch["metadata"]["annotations"] = annotations
            if owner_references:
                patch["metadata"]["ownerReferences"] = owner_references
            if changes_anything(live, patch):
                self.managed_secrets.remember(self.client.merge_patch(SECRETS, target_name, patch, namespace))
        except KubeError as error:
            raise SyncError(f"could not write secret {target_name}: {error.detail}") from error


def _apply_template(template: JSON, fetched: dict[str, bytes]) -> dict[str, bytes]:
    """The Secret's data: ``template.data`` rendered from the fetched values (ESO engine v2).

    Without a template the fetched values are the data. With one, only the templated keys are,
    unless ``mergePolicy: Merge`` keeps the fetched keys too.
    """
    if template.get("templateFrom"):
        raise SyncError("could not apply template: templateFrom is not supported by the sandbox")
    templates = template.get("data") or {}
    if not templates:
        return fetched
    try:
        values = {key: value.decode("utf-8") for key, value in fetched.items()}
        rendered = {str(key): render(str(text), values).encode() for key, text in templates.items()}
    except UnicodeDecodeError as error:
        raise SyncError("could not apply template: a fetched value is not UTF-8 text") from error
    except TemplateError as error:
        raise SyncError(f"could not apply template: {error}") from error
    finally:
        values = {}
    if template.get("mergePolicy") == "Merge":
        fetched.update(rendered)
        return fetched
    fetched.clear()
    return rendered


def _synced_resource_version(obj: JSON) -> str:
    """ESO's ``<generation>-<hash of labels and annotations>``: any metadata change forces a sync."""
    metadata = obj.get("metadata") or {}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != LAST_APPLIED_ANNOTATION
    }
    digest = hashlib.sha256(
        json.dumps(
            {"labels": metadata.get("labels") or {}, "annotations": annotations}, sort_keys=True
        ).encode()
    ).hexdigest()[:32]
    return f"{generation(obj)}-{digest}"


def _as_bytes(value: Any) -> bytes:
    # ESO stores strings as they are and anything else as its JSON encoding.
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def _property(secret: dict[str, Any], property_name: Any, key: str) -> bytes:
    """One property of a KV secret (dotted paths reach nested maps); the whole secret as JSON without one."""
    if not property_name:
        return json.dumps(secret).encode()
    name = str(property_name)
    if name in secret:
        return _as_bytes(secret[name])
    current: Any = secret
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            raise SyncError(PROVIDER_ERROR_MESSAGE, f"key {key!r} has no property {name!r}")
        current = current[part]
    return _as_bytes(current)
