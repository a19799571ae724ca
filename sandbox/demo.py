"""Throwaway secret values for the sandbox (``--demo-secrets``): never for a real cluster."""

from __future__ import annotations

import secrets
import string

from phases.config import Config
from phases.secrets import SecretStore, SecretValue, pattern_mismatch

_ALPHABET = string.ascii_letters + string.digits


def demo_value(pattern: str) -> bytes:
    """A random value that satisfies the declared pattern for the default kinds of secret."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(36))
    prefix = "ghp_" if "gh[" in pattern else ""
    return (prefix + body).encode()


def demo_secret_values(config: Config, store: SecretStore) -> list[str]:
    """Fill every declared secret not already held; returns the names filled."""
    filled = []
    for secret in config.secrets.declared:
        if store.get(secret.name) is not None:
            continue
        value = SecretValue.from_bytes(secret.name, demo_value(secret.pattern))
        if pattern_mismatch(value, secret.pattern):
            value.wipe()
            raise ValueError(f"cannot generate a demo value for {secret.name}: pattern {secret.pattern!r}")
        store.put(secret.name, value, source="demo")
        filled.append(secret.name)
    return filled
