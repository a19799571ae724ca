"""Phase 1: k3s, Flux, Vault (initialised, keys stored, unsealed, KV v2) and External Secrets."""

from __future__ import annotations

import asyncio
import base64

from phases import manifests
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
    KubeError,
)
from phases.platform import ROOT_TOKEN_KEY, UNSEAL_KEY_PREFIX, Platform, wait_until

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
        if not secret_name or kube.get(SECRETS, secret_name, flux.namespace) is None:
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
        with token.exposed() as view:
            password = base64.b64encode(view).decode()
        data = {"username": base64.b64encode(flux.git_username.encode()).decode(), "password": password}
        del password
        repo = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        current_ref = ((repo or {}).get("spec") or {}).get("secretRef", {}).get("name")
        # Phase 3 may already have switched Flux to the ExternalSecret: never switch it back.
        secret_name = current_ref if current_ref == flux.git_auth_secret else flux.bootstrap_secret
        if secret_name == flux.bootstrap_secret:
            ctx.log(f"ensure Secret {flux.namespace}/{flux.bootstrap_secret} (bootstrap Git credentials)")
            await ctx.to_thread(kube.ensure, SECRETS, manifests.bootstrap_git_secret(config, data))
        data.clear()
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
        except StepError:  # no Service address yet
            platform.forget_vault()
            raise
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
        has_keys = await ctx.to_thread(platform.init_keys_secret) is not None
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
        data: dict[str, str] = {}
        try:
            with result.root_token.exposed() as view:
                data[ROOT_TOKEN_KEY] = base64.b64encode(view).decode()
            for index, key in enumerate(result.unseal_keys, start=1):
                with key.exposed() as view:
                    data[f"{UNSEAL_KEY_PREFIX}{index}"] = base64.b64encode(view).decode()
            body = manifests.vault_init_keys_secret(config, data)
            last_error: Exception | None = None
            for _attempt in range(5):
                try:
                    await ctx.to_thread(kube.ensure, SECRETS, body)
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
