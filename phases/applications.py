"""Phase 4: the apps Kustomization reconciled and Ready, every ExternalSecret synced."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phases import manifests
from phases.config import Config
from phases.engine import Phase, Step, StepContext
from phases.flux import applied_revision, reconcile_state, request_reconcile
from phases.health import externalsecret_synced, flux_ready
from phases.kube import EXTERNAL_SECRETS, GIT_REPOSITORIES, KUSTOMIZATIONS, KubeClient
from phases.platform import Platform, wait_until


def unsynced_external_secrets(kube: KubeClient) -> list[str]:
    """Every ExternalSecret that is not synced to its target Secret, with the reason.

    From the ExternalSecrets' status alone: the target Secrets hold the values, and reading them would bring
    copies back into this process after the post-phase-2 sweep.
    """
    problems = []
    for obj in kube.list(EXTERNAL_SECRETS):
        metadata = obj.get("metadata") or {}
        name, namespace = metadata.get("name", "?"), metadata.get("namespace", "?")
        synced, message = target_synced(obj)
        if not synced:
            problems.append(f"{namespace}/{name}: {message}")
    return problems


def target_synced(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """(synced, message) for an ExternalSecret: Ready (SecretSynced) and bound to its target Secret.

    ESO sets ``status.binding.name`` to the Secret it wrote and keeps Ready only while that Secret is
    current (it recreates a deleted one), so no Secret needs to be read.
    """
    synced, message = externalsecret_synced(obj)
    if not synced:
        return False, message
    target = ((obj.get("spec") or {}).get("target") or {}).get("name") or (obj.get("metadata") or {}).get(
        "name"
    )
    bound = ((obj.get("status") or {}).get("binding") or {}).get("name")
    if bound != target:
        return False, f"synced, but not bound to its target Secret {target} yet"
    return True, message


def build_applications_phase(config: Config, platform: Platform) -> Phase:
    kube = platform.kube
    flux = config.flux
    timeout = config.engine.wait_timeout
    apps = manifests.kustomization(
        config, flux.apps_kustomization, flux.apps_path, depends_on=(flux.infra_kustomization,)
    )

    def apps_current() -> bool:
        obj = kube.get(KUSTOMIZATIONS, flux.apps_kustomization, flux.namespace)
        source = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        if obj is None or source is None or (obj.get("spec") or {}) != apps["spec"]:
            return False
        return flux_ready(obj)[0] and applied_revision(obj) == applied_revision(source)

    async def apps_check(ctx: StepContext) -> bool:
        return await ctx.to_thread(apps_current)

    async def apps_apply(ctx: StepContext) -> None:
        ctx.log(f"ensure Kustomization {flux.namespace}/{flux.apps_kustomization} ({flux.apps_path})")
        await ctx.to_thread(kube.ensure, KUSTOMIZATIONS, apps)
        token = await ctx.to_thread(
            request_reconcile, kube, KUSTOMIZATIONS, flux.apps_kustomization, flux.namespace
        )
        message = await wait_until(
            ctx,
            f"Kustomization {flux.apps_kustomization}",
            lambda: reconcile_state(kube, KUSTOMIZATIONS, flux.apps_kustomization, flux.namespace, token),
            timeout=timeout,
        )
        ctx.log(message)

    def secrets_state() -> tuple[bool, str]:
        problems = unsynced_external_secrets(kube)
        if problems:
            return False, f"{len(problems)} not synced: " + "; ".join(problems[:5])
        return True, "every ExternalSecret synced"

    async def secrets_check(ctx: StepContext) -> bool:
        done, _ = await ctx.to_thread(secrets_state)
        return done

    async def secrets_wait(ctx: StepContext) -> None:
        await wait_until(ctx, "the application ExternalSecrets", secrets_state, timeout=timeout)

    return Phase(
        4,
        "Applications",
        (
            Step(
                "apps-kustomization",
                f"Kustomization {flux.apps_kustomization} Ready",
                apps_check,
                apps_apply,
                (
                    f"create Kustomization {flux.namespace}/{flux.apps_kustomization} ({flux.apps_path})",
                    "PATCH metadata.annotations[reconcile.fluxcd.io/requestedAt]",
                ),
            ),
            Step(
                "app-secrets",
                "Application ExternalSecrets synced",
                secrets_check,
                secrets_wait,
                ("GET ExternalSecrets (all namespaces): Ready and bound to their target Secrets",),
            ),
        ),
    )
