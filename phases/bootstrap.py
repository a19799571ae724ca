"""The five phases of ../shared/seed/gitops-workflow.md, assembled for one configuration."""

from __future__ import annotations

from phases.applications import build_applications_phase
from phases.config import Config
from phases.engine import Engine, EngineOptions, Phase, Prompter, SecretRequest
from phases.flux_auth import build_flux_auth_phase
from phases.infrastructure import build_infrastructure_phase
from phases.platform import Platform
from phases.secret_population import build_secret_population_phase
from phases.secrets import SecretStore, pattern_mismatch
from phases.state import StateStore
from phases.verification import build_verification_phase


def build_phases(config: Config, platform: Platform) -> list[Phase]:
    return [
        build_infrastructure_phase(config, platform),
        build_secret_population_phase(config, platform),
        build_flux_auth_phase(config, platform),
        build_applications_phase(config, platform),
        build_verification_phase(config, platform),
    ]


def secret_requests(config: Config) -> tuple[SecretRequest, ...]:
    return tuple(
        SecretRequest(s.name, s.env, s.description, s.pattern, provided=False)
        for s in config.secrets.declared
    )


def build_engine(
    config: Config,
    *,
    platform: Platform | None = None,
    secrets: SecretStore | None = None,
    prompter: Prompter | None = None,
    command_env: dict[str, str] | None = None,
) -> Engine:
    """An engine for the bootstrap. The caller takes the declared env vars into ``secrets`` first."""
    platform = platform or Platform(config)
    env = {"KUBECONFIG": str(config.cluster.resolved_kubeconfig()), **(command_env or {})}
    return Engine(
        build_phases(config, platform),
        store=StateStore(config.engine.resolved_state_dir()),
        secrets=secrets,
        prompter=prompter,
        options=EngineOptions(
            command_env=env,
            command_timeout=config.engine.command_timeout,
            declared_secrets=secret_requests(config),
        ),
    )


def take_declared_secrets(config: Config, store: SecretStore) -> list[str]:
    """Move the declared env vars into buffers; returns problems (invalid values), naming variables only."""
    store.take_env(config.secrets.declared)
    problems = []
    for secret in config.secrets.declared:
        value = store.get(secret.name)
        if value is not None and pattern_mismatch(value, secret.pattern):
            problems.append(f"${secret.env} does not look like a {secret.description or secret.name}")
    return problems
