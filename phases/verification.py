"""Phase 5: verify the whole system and write a summary next to the run state.

Each verification is a read-only check; when it does not hold yet, the step
waits for it (bounded) and fails with what is still wrong.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from phases.applications import unsynced_external_secrets
from phases.config import Config
from phases.engine import Phase, Step, StepContext
from phases.flux import applied_revision
from phases.health import flux_ready, store_ready
from phases.kube import CLUSTER_SECRET_STORES, KUSTOMIZATIONS
from phases.platform import Platform, wait_until
from phases.state import write_private_file

SUMMARY_FILE = "summary.json"


def build_verification_phase(config: Config, platform: Platform) -> Phase:
    kube = platform.kube
    eso = config.external_secrets
    timeout = config.engine.wait_timeout

    def kustomizations_ready() -> tuple[bool, str]:
        problems = [
            f"{k['metadata'].get('namespace')}/{k['metadata']['name']}: {flux_ready(k)[1]}"
            for k in kube.list(KUSTOMIZATIONS)
            if not flux_ready(k)[0]
        ]
        return (not problems), "; ".join(problems) or "every Kustomization Ready"

    def external_secrets_synced() -> tuple[bool, str]:
        problems = unsynced_external_secrets(kube)
        return (not problems), "; ".join(problems[:5]) or "every ExternalSecret synced"

    def store_is_ready() -> tuple[bool, str]:
        store = kube.get(CLUSTER_SECRET_STORES, eso.cluster_secret_store)
        return store_ready(store) if store is not None else (False, "ClusterSecretStore not found")

    def vault_unsealed() -> tuple[bool, str]:
        status = platform.vault().status()
        return (status.reachable and status.initialized and not status.sealed), f"Vault {status.label}"

    def environment_clean() -> tuple[bool, str]:
        left = [s.env for s in config.secrets.declared if os.environ.get(s.env)]
        return (not left), (
            f"still in the environment: {', '.join(left)}" if left else "no bootstrap env var left"
        )

    def verification(step_id: str, title: str, probe: Callable[[], tuple[bool, str]], plan: str) -> Step:
        async def check(ctx: StepContext) -> bool:
            done, message = await ctx.to_thread(probe)
            ctx.log(message)
            return done

        async def wait(ctx: StepContext) -> None:
            await wait_until(ctx, title.lower(), probe, timeout=timeout)

        return Step(step_id, title, check, wait, (plan,), done_reason="verified")

    def summary() -> dict[str, object]:
        kustomizations = [
            {
                "name": f"{k['metadata'].get('namespace')}/{k['metadata']['name']}",
                "ready": flux_ready(k)[0],
                "revision": applied_revision(k),
            }
            for k in kube.list(KUSTOMIZATIONS)
        ]
        vault_status = platform.vault().status()
        return {
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cluster": kube.server,
            "vault": {"address": platform.vault().address, "status": vault_status.label},
            "kustomizations": kustomizations,
            "external_secrets_unsynced": unsynced_external_secrets(kube),
            "cluster_secret_store_ready": store_is_ready()[0],
            "bootstrap_env_vars_left": [s.env for s in config.secrets.declared if os.environ.get(s.env)],
        }

    async def summary_check(ctx: StepContext) -> bool:
        return False  # always rewritten: it records this run

    async def summary_write(ctx: StepContext) -> None:
        data = await ctx.to_thread(summary)
        data["secrets_wiped_this_run"] = ctx.secrets.wiped_count
        sweep = ctx.secrets.last_sweep
        data["memory_sweep"] = sweep.as_dict() if sweep is not None else None
        path = config.engine.resolved_state_dir() / SUMMARY_FILE
        await ctx.to_thread(write_private_file, path, json.dumps(data, indent=2) + "\n")
        ctx.log(f"summary written to {path}")

    return Phase(
        5,
        "Verification",
        (
            verification(
                "kustomizations", "Kustomizations Ready", kustomizations_ready, "GET Kustomizations"
            ),
            verification(
                "external-secrets", "ExternalSecrets synced", external_secrets_synced, "GET ExternalSecrets"
            ),
            verification(
                "secret-store", "ClusterSecretStore Ready", store_is_ready, "GET ClusterSecretStore"
            ),
            verification("vault-unsealed", "Vault unsealed", vault_unsealed, "GET /v1/sys/health"),
            verification(
                "environment", "No bootstrap env var left", environment_clean, "read the environment"
            ),
            Step("summary", "Summary written", summary_check, summary_write, (f"write {SUMMARY_FILE}",)),
        ),
    )
