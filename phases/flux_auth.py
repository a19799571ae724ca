"""Phase 3: Flux's Git credentials move from the bootstrap Secret to one ESO syncs from Vault."""

from __future__ import annotations

from phases import manifests
from phases.applications import target_synced
from phases.config import Config
from phases.engine import Phase, Step, StepContext, StepError
from phases.flux import reconcile_state, request_reconcile
from phases.health import flux_ready
from phases.infrastructure import secret_exists
from phases.kube import EXTERNAL_SECRETS, GIT_REPOSITORIES, SECRETS
from phases.platform import Platform, wait_until


def build_flux_auth_phase(config: Config, platform: Platform) -> Phase:
    kube = platform.kube
    flux = config.flux
    timeout = config.engine.wait_timeout
    external_secret = manifests.git_auth_external_secret(config)

    def git_auth_synced() -> tuple[bool, str]:
        # The ExternalSecret's status says it; the Secret itself (the token) is never read back.
        obj = kube.get(EXTERNAL_SECRETS, flux.git_auth_secret, flux.namespace)
        if obj is None:
            return False, "ExternalSecret not found"
        return target_synced(obj)

    async def external_secret_check(ctx: StepContext) -> bool:
        def check() -> bool:
            obj = kube.get(EXTERNAL_SECRETS, flux.git_auth_secret, flux.namespace)
            if obj is None or (obj.get("spec") or {}) != external_secret["spec"]:
                return False
            return git_auth_synced()[0]

        return await ctx.to_thread(check)

    async def external_secret_apply(ctx: StepContext) -> None:
        ctx.log(f"ensure ExternalSecret {flux.namespace}/{flux.git_auth_secret} from Vault")
        await ctx.to_thread(kube.ensure, EXTERNAL_SECRETS, external_secret)
        await wait_until(
            ctx, f"ExternalSecret {flux.git_auth_secret} to sync", git_auth_synced, timeout=timeout
        )

    def switched_and_ready() -> bool:
        repo = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        if repo is None:
            return False
        ref = ((repo.get("spec") or {}).get("secretRef") or {}).get("name")
        return ref == flux.git_auth_secret and flux_ready(repo)[0]

    async def switch_check(ctx: StepContext) -> bool:
        return await ctx.to_thread(switched_and_ready)

    async def switch_apply(ctx: StepContext) -> None:
        if await ctx.to_thread(kube.get, GIT_REPOSITORIES, flux.git_repository, flux.namespace) is None:
            raise StepError(
                f"GitRepository {flux.namespace}/{flux.git_repository} not found: run phase 1 first"
            )
        ctx.log(f"GitRepository {flux.git_repository}: secretRef -> {flux.git_auth_secret}")
        await ctx.to_thread(
            kube.merge_patch,
            GIT_REPOSITORIES,
            flux.git_repository,
            {"spec": {"secretRef": {"name": flux.git_auth_secret}}},
            flux.namespace,
        )
        token = await ctx.to_thread(
            request_reconcile, kube, GIT_REPOSITORIES, flux.git_repository, flux.namespace
        )
        await wait_until(
            ctx,
            f"GitRepository {flux.git_repository} to fetch with the new credentials",
            lambda: reconcile_state(kube, GIT_REPOSITORIES, flux.git_repository, flux.namespace, token),
            timeout=timeout,
        )

    async def cleanup_check(ctx: StepContext) -> bool:
        # It holds the GitHub token: read into locked memory and zeroed, not through the client's copies.
        return not await ctx.to_thread(secret_exists, kube, flux.bootstrap_secret, flux.namespace)

    async def cleanup_apply(ctx: StepContext) -> None:
        # Only once Flux is proven to work without it.
        if not await ctx.to_thread(switched_and_ready):
            raise StepError("Flux is not Ready with the new credentials; keeping the bootstrap secret")
        ctx.log(f"delete Secret {flux.namespace}/{flux.bootstrap_secret}")
        await ctx.to_thread(kube.delete, SECRETS, flux.bootstrap_secret, flux.namespace)

    return Phase(
        3,
        "Flux auth switch",
        (
            Step(
                "git-auth-externalsecret",
                f"ExternalSecret {flux.git_auth_secret} synced",
                external_secret_check,
                external_secret_apply,
                (f"create ExternalSecret {flux.namespace}/{flux.git_auth_secret}",),
            ),
            Step(
                "switch-secret-ref",
                "GitRepository uses the synced Secret",
                switch_check,
                switch_apply,
                (
                    f"PATCH GitRepository {flux.namespace}/{flux.git_repository} spec.secretRef",
                    "PATCH metadata.annotations[reconcile.fluxcd.io/requestedAt]",
                ),
            ),
            Step(
                "remove-bootstrap-secret",
                "Bootstrap Git secret removed",
                cleanup_check,
                cleanup_apply,
                (f"DELETE Secret {flux.namespace}/{flux.bootstrap_secret}",),
            ),
        ),
    )
