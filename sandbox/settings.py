"""The configuration and environment the app uses to run against a sandbox world."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sandbox.world import SandboxInfo

# The sandbox is fast: nothing should take a minute, and a stuck wait should fail quickly.
SANDBOX_WAIT_TIMEOUT = 60.0


def config_overrides(info: SandboxInfo) -> dict[str, Any]:
    """Nested config tables (the app's TOML schema) that point the engine at the sandbox."""
    return {
        "cluster": {"kubeconfig": str(info.kubeconfig), "context": "sandbox"},
        "k3s": {"install_command": ["k3s", "install"]},
        "vault": {"kubernetes_host": info.api_url, "kubernetes_ca_cert": str(info.ca_cert)},
        "deployments": {"url": info.remote_url, "branch": "main", "clone_dir": str(info.clone_dir)},
        "engine": {"state_dir": str(info.state_dir), "wait_timeout": SANDBOX_WAIT_TIMEOUT},
    }


def sandbox_path_env(info: SandboxInfo, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"PATH": ...}`` with the sandbox's ``bin/`` first, so ``k3s``/``flux``/``helm`` are its stand-ins."""
    current = (os.environ if environ is None else environ).get("PATH", os.defpath)
    parts = [part for part in current.split(os.pathsep) if part and part != str(info.bin_dir)]
    return {"PATH": os.pathsep.join([str(info.bin_dir), *parts])}
