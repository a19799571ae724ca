"""Phase 1: k3s, Flux, Vault (initialised, keys stored, unsealed, KV v2) and External Secrets.

The two Secrets that hold secrets (the bootstrap Git credentials and the Vault init keys) are written by
:func:`store_secret`: the request, base64 values included, is assembled in a locked buffer and written to
the API server's socket, and the answer (which echoes the data) is read into a locked buffer and zeroed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from typing import Any

from phases import manifests, memory
from phases.config import Config
from phases.engine import Phase, Step, StepContext, StepError
from phases.health import flux_ready, node_ready, workload_ready
from phases.kube import (
    CRDS,
    DEPLOYMENTS,
    GIT_REPOSITORIES,
    KUSTOMIZATIONS,
    NAMESPACES,
    NODES,
    SECRETS,
    STATEFUL_SETS,
    KubeClient,
    KubeError,
    KubeUnreachable,
    status_error,
)
from phases.platform import ROOT_TOKEN_KEY, UNSEAL_KEY_PREFIX, Platform, wait_until
from phases.secrets import SecretValue

_log = logging.getLogger(__name__)

FLUX_CRDS = ("gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io")
FLUX_CONTROLLERS = ("source-controller", "kustomize-controller")
ESO_CRDS = ("externalsecrets.external-secrets.io", "clustersecretstores.external-secrets.io")


def build_infrastructure_phase(config: Config, platform: Platform) -> Phase:
    kube = platform.kube
    flux, vault, eso = config.flux, config.vault, config.external_secrets
    timeout = config.engine.wait_timeout

    def missing_crds(names: tuple[str, ...]) -> list[str]:
        return [name for name in names if kube.get(CRDS, name) is None]

    def unready_workloads(namespace: str, names: tuple[str, ...]) -> list[str]:
        unready = []
        for name in names:
            obj = kube.get(DEPLOYMENTS, name, namespace)
            if obj is None or not workload_ready(obj):
                unready.append(name)
        return unready

    # -- k3s ---------------------------------------------------------------------------

    def cluster_ready() -> tuple[bool, str]:
        try:
            nodes = kube.list(NODES)
        except KubeError as error:
            return False, str(error)
        ready = [n["metadata"]["name"] for n in nodes if node_ready(n)]
        if ready:
            return True, f"node {', '.join(ready)} Ready"
        return False, "no node is Ready yet" if nodes else "no node registered yet"

    async def k3s_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(cluster_ready)
        return done

    async def k3s_install(ctx: StepContext) -> None:
        await ctx.run(config.k3s.install_command)
        await wait_until(ctx, "the node to be Ready", cluster_ready, timeout=config.k3s.node_ready_timeout)

    # -- Flux --------------------------------------------------------------------------

    def flux_installed() -> tuple[bool, str]:
        crds = missing_crds(FLUX_CRDS)
        if crds:
            return False, f"missing CRDs: {', '.join(crds)}"
        unready = unready_workloads(flux.namespace, FLUX_CONTROLLERS)
        if unready:
            return False, f"controllers not ready: {', '.join(unready)}"
        return True, "controllers ready"

    async def flux_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(flux_installed)
        return done

    async def flux_install(ctx: StepContext) -> None:
        await ctx.run(["flux", "install", f"--namespace={flux.namespace}"])
        await wait_until(ctx, "the Flux controllers", flux_installed, timeout=timeout)

    # -- Flux syncing the deployments repo with the bootstrap credentials --------------

    def source_configured() -> bool:
        repo = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        if repo is None or (repo.get("spec") or {}).get("url") != config.deployments.url:
            return False
        secret_name = ((repo.get("spec") or {}).get("secretRef") or {}).get("name")
        if not secret_name or not secret_exists(kube, secret_name, flux.namespace):  # values not kept
            return False
        return kube.get(KUSTOMIZATIONS, flux.infra_kustomization, flux.namespace) is not None

    def source_ready() -> tuple[bool, str]:
        repo = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        return flux_ready(repo) if repo is not None else (False, "GitRepository not found")

    async def flux_source_check(ctx: StepContext) -> bool:
        return await ctx.to_thread(source_configured)

    async def flux_source_apply(ctx: StepContext) -> None:
        if not config.deployments.url:
            raise StepError(
                "deployments.url is not set in the config: Flux needs the deployments repository URL"
            )
        token = ctx.secret(flux.token_secret)
        repo = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        current_ref = ((repo or {}).get("spec") or {}).get("secretRef", {}).get("name")
        # Phase 3 may already have switched Flux to the ExternalSecret: never switch it back.
        secret_name = current_ref if current_ref == flux.git_auth_secret else flux.bootstrap_secret
        if secret_name == flux.bootstrap_secret:
            ctx.log(f"ensure Secret {flux.namespace}/{flux.bootstrap_secret} (bootstrap Git credentials)")
            manifest = manifests.bootstrap_git_secret(config, {})
            data: dict[str, SecretValue | str] = {"username": flux.git_username, "password": token}
            await ctx.to_thread(store_secret, kube, manifest, data)
        ctx.log(f"ensure GitRepository {flux.namespace}/{flux.git_repository} -> {config.deployments.url}")
        await ctx.to_thread(kube.ensure, GIT_REPOSITORIES, manifests.git_repository(config, secret_name))
        ctx.log(f"ensure Kustomization {flux.namespace}/{flux.infra_kustomization} ({flux.infra_path})")
        await ctx.to_thread(
            kube.ensure,
            KUSTOMIZATIONS,
            manifests.kustomization(config, flux.infra_kustomization, flux.infra_path),
        )
        await wait_until(ctx, "the GitRepository to be Ready", source_ready, timeout=timeout)

    # -- Vault -------------------------------------------------------------------------

    def vault_answering() -> tuple[bool, str]:
        # Not the pod's readiness: the chart's probe fails until Vault is unsealed, which comes later.
        sts = kube.get(STATEFUL_SETS, vault.service, vault.namespace)
        if sts is None:
            return False, f"StatefulSet {vault.namespace}/{vault.service} not found"
        try:
            status = platform.vault().status()
        except StepError as error:  # no Service address yet, or it does not answer (the pod restarting)
            platform.forget_vault()
            return False, str(error)
        if not status.reachable:
            platform.forget_vault()
            return False, f"Vault API not answering yet ({status.error})"
        return True, f"Vault API answering ({status.label})"

    async def vault_install_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(vault_answering)
        return done

    # Name the Service and StatefulSet as configured, whatever the chart would derive. No --wait:
    # the chart's readiness probe fails until Vault is unsealed, which is a later step.
    vault_helm = helm_install_commands(
        vault.chart_repo_name, vault.chart_repo_url, vault.release, vault.chart, vault.namespace,
        values={"fullnameOverride": vault.service}, wait=False,
    )  # fmt: skip

    async def vault_install(ctx: StepContext) -> None:
        for argv in vault_helm:
            await ctx.run(argv)
        await wait_until(ctx, "the Vault API", vault_answering, timeout=timeout)

    async def vault_init_check(ctx: StepContext) -> bool:
        status = await ctx.to_thread(lambda: platform.vault().status())
        if not status.reachable:
            raise StepError(f"Vault at {platform.vault().address} is unreachable: {status.error}")
        has_keys = await ctx.to_thread(platform.has_init_keys)
        if status.initialized and not has_keys:
            raise StepError(
                f"Vault at {platform.vault().address} is already initialised but Secret "
                f"{vault.namespace}/{vault.init_secret} is missing: gitops-tui cannot unseal it. "
                f"Restore the Secret ({ROOT_TOKEN_KEY}, {UNSEAL_KEY_PREFIX}1..N) and run again."
            )
        return bool(status.initialized)

    async def vault_initialize(ctx: StepContext) -> None:
        # The keys exist only in this process until stored: make sure storing them can work first.
        if await ctx.to_thread(kube.get, NAMESPACES, vault.namespace) is None:
            await ctx.to_thread(kube.ensure, NAMESPACES, manifests.namespace(vault.namespace))
        ctx.log(f"initialising Vault ({vault.key_shares} key shares, threshold {vault.key_threshold})")
        result = await ctx.to_thread(
            platform.vault().initialize, shares=vault.key_shares, threshold=vault.key_threshold
        )
        data: dict[str, SecretValue | str] = {ROOT_TOKEN_KEY: result.root_token}
        for index, key in enumerate(result.unseal_keys, start=1):
            data[f"{UNSEAL_KEY_PREFIX}{index}"] = key
        try:
            body = manifests.vault_init_keys_secret(config, {})
            last_error: Exception | None = None
            for _attempt in range(5):
                try:
                    await ctx.to_thread(store_secret, kube, body, data)
                    last_error = None
                    break
                except KubeError as error:
                    last_error = error
                    ctx.log(f"storing the init keys failed, retrying: {error}")
                    await asyncio.sleep(2.0)
            if last_error is not None:
                raise StepError(
                    f"Vault was initialised but storing its keys in Secret "
                    f"{vault.namespace}/{vault.init_secret} "
                    f"failed: {last_error}. Do not re-initialise: fix the cluster and run again to retry."
                )
            ctx.log(f"init keys stored in Secret {vault.namespace}/{vault.init_secret}")
        finally:
            data.clear()
            memory.sweep_later([result.root_token, *result.unseal_keys])
            result.root_token.wipe()
            for key in result.unseal_keys:
                key.wipe()

    def vault_unsealed() -> tuple[bool, str]:
        status = platform.vault().status()
        return (status.reachable and status.initialized and not status.sealed), status.label

    async def vault_unseal_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(vault_unsealed)
        return done

    async def vault_unseal(ctx: StepContext) -> None:
        keys = await ctx.to_thread(platform.unseal_keys)
        try:
            ctx.log(f"unsealing Vault with keys from Secret {vault.namespace}/{vault.init_secret}")
            status = await ctx.to_thread(platform.vault().unseal, keys)
        finally:
            # Read into locked memory, so no copy should exist: the sweep after phase 2 checks that too.
            memory.sweep_later(keys)
            for key in keys:
                key.wipe()
        if status.sealed:
            raise StepError("Vault is still sealed after using every stored unseal key")

    async def kv_check(ctx: StepContext) -> bool:
        return await ctx.to_thread(lambda: platform.authenticated_vault().kv2_enabled(vault.kv_mount))

    async def kv_enable(ctx: StepContext) -> None:
        await ctx.to_thread(lambda: platform.authenticated_vault().enable_kv2(vault.kv_mount))

    # -- External Secrets Operator ---------------------------------------------------------

    def eso_installed() -> tuple[bool, str]:
        crds = missing_crds(ESO_CRDS)
        if crds:
            return False, f"missing CRDs: {', '.join(crds)}"
        unready = unready_workloads(eso.namespace, (eso.release,))
        if unready:
            return False, f"not ready: {', '.join(unready)}"
        return True, "operator ready"

    async def eso_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(eso_installed)
        return done

    eso_helm = helm_install_commands(
        eso.chart_repo_name, eso.chart_repo_url, eso.release, eso.chart, eso.namespace,
        values={"installCRDs": "true"}, wait=True,
    )  # fmt: skip

    async def eso_install(ctx: StepContext) -> None:
        for argv in eso_helm:
            await ctx.run(argv)
        await wait_until(ctx, "the External Secrets Operator", eso_installed, timeout=timeout)

    install_cmd = " ".join(config.k3s.install_command)
    return Phase(
        1,
        "Infrastructure",
        (
            Step(
                "k3s", "k3s installed, node Ready", k3s_check, k3s_install, (install_cmd, "GET /api/v1/nodes")
            ),
            Step(
                "flux",
                "Flux controllers and CRDs",
                flux_check,
                flux_install,
                (
                    f"flux install --namespace={flux.namespace}",
                    "GET CRDs and Deployments in " + flux.namespace,
                ),
            ),
            Step(
                "flux-source",
                "Flux syncs the deployments repo",
                flux_source_check,
                flux_source_apply,
                (
                    f"create Secret {flux.namespace}/{flux.bootstrap_secret} (bootstrap Git auth)",
                    f"create GitRepository {flux.namespace}/{flux.git_repository} ({config.deployments.url})",
                    f"create Kustomization {flux.namespace}/{flux.infra_kustomization} ({flux.infra_path})",
                ),
                needs_secrets=(flux.token_secret,),
            ),
            Step(
                "vault-install",
                "Vault installed (Helm)",
                vault_install_check,
                vault_install,
                (*(" ".join(argv) for argv in vault_helm), "GET /v1/sys/health"),
            ),
            Step(
                "vault-init",
                "Vault initialised, keys stored",
                vault_init_check,
                vault_initialize,
                (
                    f"PUT /v1/sys/init (shares={vault.key_shares}, threshold={vault.key_threshold})",
                    f"create Secret {vault.namespace}/{vault.init_secret}",
                ),
            ),
            Step(
                "vault-unseal",
                "Vault unsealed",
                vault_unseal_check,
                vault_unseal,
                (f"read Secret {vault.namespace}/{vault.init_secret}", "PUT /v1/sys/unseal (per key)"),
            ),
            Step(
                "vault-kv",
                f"KV v2 at {vault.kv_mount}/",
                kv_check,
                kv_enable,
                (f"POST /v1/sys/mounts/{vault.kv_mount} (type kv, version 2)",),
            ),
            Step(
                "eso-install",
                "External Secrets Operator",
                eso_check,
                eso_install,
                tuple(" ".join(argv) for argv in eso_helm),
            ),
        ),
    )


def helm_install_commands(
    repo_name: str,
    repo_url: str,
    release: str,
    chart: str,
    namespace: str,
    *,
    values: dict[str, str],
    wait: bool,
) -> list[list[str]]:
    """`helm repo add` then an idempotent `helm upgrade --install` (the same argv runs and is planned)."""
    install = ["helm", "upgrade", "--install", release, chart, "--namespace", namespace, "--create-namespace"]
    for key, value in values.items():
        install += ["--set", f"{key}={value}"]
    install += ["--wait", "--timeout", "10m"] if wait else ["--timeout", "10m"]
    return [["helm", "repo", "add", repo_name, repo_url, "--force-update"], install]


# -- Secrets written from locked buffers ---------------------------------------------------------------------


class _Base64Of:
    """A Secret ``data`` value: the base64 of a SecretValue, written straight into the request buffer."""

    __slots__ = ("secret",)

    def __init__(self, secret: SecretValue) -> None:
        self.secret = secret


def _write_secret_value(value: object, out: memory.LockedWriter) -> None:
    if not isinstance(value, _Base64Of):
        raise TypeError(f"cannot put a {type(value).__name__} in a Secret")
    with value.secret.exposed() as view:
        out.write_byte(0x22)
        memory.write_base64(out, view)
        out.write_byte(0x22)


def store_secret(
    kube: KubeClient, manifest: Mapping[str, Any], data: Mapping[str, SecretValue | str]
) -> None:
    """Create the Secret ``manifest`` with ``data`` (merge-patch it when it exists), copying no secret.

    The JSON body, base64 included, is assembled in a locked buffer and written to the API server's socket
    with the kubeconfig's credentials; the answer (a real API server echoes the data) is read into a locked
    buffer and zeroed. ``str`` values are not secret (e.g. a username). Raises KubeError like KubeClient.
    """
    metadata = manifest["metadata"]
    name, namespace = str(metadata["name"]), str(metadata["namespace"])
    body = dict(manifest)
    body["data"] = {
        key: _Base64Of(value) if isinstance(value, SecretValue) else base64.b64encode(value.encode()).decode()
        for key, value in data.items()
    }
    configuration = kube._api().configuration  # the kubeconfig as the official client loaded it
    if getattr(configuration, "proxy", None):
        _log.warning(
            "the kubeconfig uses a proxy: Secret %s/%s is sent by the Kubernetes client", namespace, name
        )
        _store_with_client(kube, manifest, data)
        return
    pool = _kube_pool(configuration)
    try:
        what = f"create {SECRETS.describe(name, namespace)}"
        status, detail = _send_json(pool, "POST", SECRETS.path(namespace), body, kube, configuration)
        if status == 409:  # it exists: make its data ours
            what = f"patch {SECRETS.describe(name, namespace)}"
            status, detail = _send_json(
                pool, "PATCH", SECRETS.path(namespace, name), body, kube, configuration, merge_patch=True
            )
        if not 200 <= status < 300:
            raise status_error(status, detail, what)
    finally:
        pool.close()


def _kube_pool(configuration: Any) -> memory.HttpPool:
    host = str(configuration.host)
    context = None
    if host.startswith("https://"):
        context = memory.tls_context(
            verify=bool(configuration.verify_ssl),
            ca_file=configuration.ssl_ca_cert or None,
            cert_file=configuration.cert_file or None,
            key_file=configuration.key_file or None,
        )
        if configuration.assert_hostname is False:
            context.check_hostname = False
    return memory.HttpPool(
        host, ssl_context=context, server_hostname=configuration.tls_server_name or None, max_idle=0
    )


def _send_json(
    pool: memory.HttpPool,
    method: str,
    path: str,
    body: Mapping[str, Any],
    kube: KubeClient,
    configuration: Any,
    *,
    merge_patch: bool = False,
) -> tuple[int, bytes]:
    """(status, error body): the body is returned only for a failure (a Status, which holds no data)."""
    content_type = "application/merge-patch+json" if merge_patch else "application/json"
    with memory.LockedWriter() as payload:
        memory.write_json(payload, body, default=_write_secret_value)
        with payload.view() as view:
            answer = _exchange(pool, method, path, kube, configuration, view, content_type)
    try:
        return answer.status, (b"" if 200 <= answer.status < 300 else answer.body_bytes())
    finally:
        answer.close()


def _exchange(
    pool: memory.HttpPool,
    method: str,
    path: str,
    kube: KubeClient,
    configuration: Any,
    payload: memoryview | None = None,
    content_type: str = "application/json",
) -> memory.HttpAnswer:
    """One request with the kubeconfig's credentials, assembled in a locked buffer; the answer is in one."""
    headers = {
        "Host": pool.host_header,
        "User-Agent": kube.user_agent,
        "Accept": "application/json",
        "Connection": "close",
    }
    if payload is not None:
        headers["Content-Type"] = content_type
    bearer = (configuration.auth_settings().get("BearerToken") or {}).get("value")
    if bearer:
        headers["Authorization"] = str(bearer)
    with memory.LockedWriter() as request:
        request.write_ascii(f"{method} {pool.base_path}{path} HTTP/1.1\r\n")
        for header, value in headers.items():
            if "\r" in value or "\n" in value:
                raise KubeError(f"invalid {header} header from the kubeconfig")
            request.write(f"{header}: {value}\r\n".encode("latin-1"))
        request.write_ascii(f"Content-Length: {len(payload) if payload is not None else 0}\r\n\r\n")
        if payload is not None:
            request.write(payload)
        try:
            with request.view() as wire:
                return pool.exchange(wire, method=method, timeout=kube.timeout)
        except OSError as error:
            reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
            raise KubeUnreachable(f"Kubernetes API {configuration.host} unreachable: {reason}") from None


def read_secret(kube: KubeClient, name: str, namespace: str) -> dict[str, SecretValue] | None:
    """A Secret's ``data``, each value decoded into a SecretValue named after its key; None when missing.

    The answer (base64 data included) is read into locked memory and zeroed; nothing is copied. Reading it
    through the official client would leave copies of the values (its HTTP, JSON and ``str`` layers) in this
    process, after the post-phase-2 sweep too. Raises KubeError like KubeClient.
    """
    configuration = kube._api().configuration
    if getattr(configuration, "proxy", None):
        _log.warning(
            "the kubeconfig uses a proxy: Secret %s/%s is read by the Kubernetes client", namespace, name
        )
        return _read_with_client(kube, name, namespace)
    pool = _kube_pool(configuration)
    try:
        answer = _exchange(pool, "GET", SECRETS.path(namespace, name), kube, configuration)
    finally:
        pool.close()
    what = f"get {SECRETS.describe(name, namespace)}"
    try:
        if answer.status == 404:
            return None
        if not 200 <= answer.status < 300:
            raise status_error(answer.status, answer.body_bytes(), what)  # a Status: it holds no data
        values: dict[str, SecretValue] = {}
        try:
            with answer.body() as document:
                for item in memory.json_values(document):
                    if item.kind == "string" and len(item.path) == 2 and item.path[0] == "data":
                        key = str(item.path[1])
                        with document[item.start : item.end] as encoded:
                            values[key] = _decoded(key, encoded)
        except ValueError as error:
            for value in values.values():
                value.wipe()
            raise KubeError(f"{what}: unreadable answer ({error})") from None
        return values
    finally:
        answer.close()


def _decoded(name: str, encoded: memoryview) -> SecretValue:
    """A JSON string's base64 content (in locked memory) decoded into a SecretValue, through locked memory."""
    with memory.LockedWriter(len(encoded)) as text, memory.LockedWriter(len(encoded)) as plain:
        memory.json_unescape_into(encoded, text)
        with text.view() as base64_text:
            memory.decode_base64(base64_text, plain)
        with plain.view() as view:
            return SecretValue.from_bytes(name, view)


def _read_with_client(kube: KubeClient, name: str, namespace: str) -> dict[str, SecretValue] | None:
    """Through the official client: its layers copy the values (the sweep after phase 2 looks for them)."""
    secret = kube.get(SECRETS, name, namespace)
    if secret is None:
        return None
    data = secret.get("data") or {}
    values = {
        str(key): SecretValue.from_bytes(str(key), base64.b64decode(value)) for key, value in data.items()
    }
    memory.sweep_later(values.values())
    return values


def secret_exists(kube: KubeClient, name: str, namespace: str) -> bool:
    """Whether the Secret exists: read as :func:`read_secret` does, its values wiped at once."""
    values = read_secret(kube, name, namespace)
    for value in (values or {}).values():
        value.wipe()
    return values is not None


def _store_with_client(
    kube: KubeClient, manifest: Mapping[str, Any], data: Mapping[str, SecretValue | str]
) -> None:
    """Through the official client: its JSON and HTTP layers copy the values (the sweep looks for them)."""
    encoded: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, SecretValue):
            with value.exposed() as view:
                encoded[key] = base64.b64encode(view).decode()
        else:
            encoded[key] = base64.b64encode(value.encode()).decode()
    try:
        kube.ensure(SECRETS, {**manifest, "data": encoded})
    finally:
        encoded.clear()
