"""Bootstrapping the sandbox in-process, for the tests that start from a running cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from phases.bootstrap import build_engine
from phases.config import Config, config_from_document
from phases.events import Event, RunFinished
from phases.secrets import SecretStore, SecretValue
from sandbox.settings import config_overrides, sandbox_path_env
from sandbox.world import SandboxWorld

DEMO_VALUES: dict[str, bytes] = {
    "github_token": b"ghp_" + b"A1b2C3d4E5f6G7h8I9j0" * 2,
    "cloudflare_api_token": b"cf-Token_0123456789abcdefXYZ",
    "myapp_db_password": b"db-pass-9f8e7d6c5b",
    "myapp_api_key": b"api-key-1a2b3c4d5e",
}


def sandbox_config(world: SandboxWorld) -> tuple[Config, dict[str, str]]:
    """The app's config for ``world`` and the environment its child processes need."""
    return config_from_document(config_overrides(world.info), "sandbox"), sandbox_path_env(world.info)


def secret_store(values: Mapping[str, bytes]) -> SecretStore:
    store = SecretStore()
    for name, value in values.items():
        store.put(name, SecretValue.from_bytes(name, value), source="test")
    return store


async def run_bootstrap(
    config: Config,
    env: Mapping[str, str],
    values: Mapping[str, bytes] | None = None,
    *,
    from_phase: int = 1,
) -> list[Event]:
    store = secret_store(values or {})
    engine = build_engine(config, secrets=store, command_env=dict(env))
    events = [event async for event in engine.run(from_phase=from_phase)]
    assert store.held() == [], "every secret must be wiped by the end of the run"
    return events


async def bootstrapped(world: SandboxWorld) -> tuple[Config, dict[str, str]]:
    """Run all five phases on ``world`` with the demo values; fail the test unless they succeed."""
    config, env = sandbox_config(world)
    finished = (await run_bootstrap(config, env, DEMO_VALUES))[-1]
    assert isinstance(finished, RunFinished) and finished.status == "succeeded", finished
    return config, env


def bootstrapped_sync(world: SandboxWorld) -> tuple[Config, dict[str, str]]:
    return asyncio.run(bootstrapped(world))
