"""The clients one run drives (Kubernetes, Vault), created lazily, plus waiting helpers.

Steps close over one ``Platform``. Everything blocking here is called from the
engine through ``StepContext.to_thread``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from phases.config import Config
from phases.engine import StepContext, StepError
from phases.errors import GitOpsError
from phases.kube import SERVICES, KubeClient
from phases.secrets import SecretValue

if TYPE_CHECKING:
    from phases.vault import VaultClient

_log = logging.getLogger(__name__)

ROOT_TOKEN_KEY = "VAULT_ROOT_TOKEN"
UNSEAL_KEY_PREFIX = "VAULT_UNSEAL_KEY_"


class Platform:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.kube = KubeClient(
            config.cluster.resolved_kubeconfig(),
            context=config.cluster.context or None,
            timeout=config.cluster.request_timeout,
        )
        self._vault: VaultClient | None = None
        self._root_token: SecretValue | None = None
        self._warned_insecure = False

    # -- Vault ---------------------------------------------------------------------------

    def vault_address(self) -> str:
        """The configured address, else the ``vault`` Service (a k3s server node reaches ClusterIPs)."""
        if self.config.vault.address:
            return self.config.vault.address.rstrip("/")
        vault = self.config.vault
        service = self.kube.get(SERVICES, vault.service, vault.namespace)
        if service is None:
            raise StepError(
                f"Service {vault.namespace}/{vault.service} not found: is Vault installed (phase 1)?"
            )
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        ports = (service.get("spec") or {}).get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") in ("http", "https", "api")), None)
        port = port or (ports[0].get("port") if ports else 8200)
        if not cluster_ip or cluster_ip == "None":
            raise StepError(
                f"Service {vault.namespace}/{vault.service} has no ClusterIP yet; "
                "set vault.address in the config"
            )
        scheme = "https" if any(p.get("name") == "https" for p in ports) else "http"
        address = f"{scheme}://{cluster_ip}:{port}"
        if not _tcp_reachable(cluster_ip, int(port)):
            # Two usual causes: Vault's pod is down, or this host cannot reach ClusterIPs.
            raise StepError(
                f"Vault's Service address {address} does not answer: is the Vault pod running "
                f"(`kubectl get pods -n {vault.namespace}`)? If this host cannot reach ClusterIPs, run "
                f"gitops-tui on a k3s server node, or set vault.address (e.g. after "
                f"`kubectl port-forward -n {vault.namespace} svc/{vault.service} 8200:{port}`)"
            )
        return address

    def vault(self) -> VaultClient:
        if self._vault is None:
            from phases.vault import VaultClient

            vault = self.config.vault
            ca_cert = vault.ca_cert or os.environ.get("VAULT_CACERT") or None
            address = self.vault_address()
            warning = vault.tls_warning()
            if warning and not self._warned_insecure:  # once: the client is rebuilt after every restart
                self._warned_insecure = True
                _log.warning("%s (%s)", warning, address)
            self._vault = VaultClient(address, ca_cert=ca_cert, verify=vault.verify_tls)
        return self._vault

    def forget_vault(self) -> None:
        """Resolve the address again next time (after a restart the Service may point elsewhere)."""
        self._vault = None

    def init_keys(self) -> dict[str, SecretValue] | None:
        """The init keys Secret's values, each in a SecretValue (the caller wipes them); None when missing.

        Read into locked memory, never through the Kubernetes client's copies (root token and unseal keys).
        """
        from phases.infrastructure import read_secret  # it imports this module

        vault = self.config.vault
        return read_secret(self.kube, vault.init_secret, vault.namespace)

    def has_init_keys(self) -> bool:
        from phases.infrastructure import secret_exists  # it imports this module

        return secret_exists(self.kube, self.config.vault.init_secret, self.config.vault.namespace)

    def unseal_keys(self) -> list[SecretValue]:
        """The stored unseal keys (the caller wipes them)."""
        values = self.init_keys()
        if values is None:
            raise StepError(self._missing_init_keys())
        keys = [value for name, value in sorted(values.items()) if name.startswith(UNSEAL_KEY_PREFIX)]
        for name, value in values.items():
            if not name.startswith(UNSEAL_KEY_PREFIX):
                value.wipe()
        if not keys:
            raise StepError(f"{self._init_secret_name()} holds no {UNSEAL_KEY_PREFIX}* keys")
        return keys

    def root_token(self) -> SecretValue:
        """The root token, read once and kept in locked memory until :meth:`close`.

        Not handed to ``memory.sweep_later``: the read copies nothing, and this may run after phase 2 (day 2,
        the UI's own Platform), where remembered forms would only make the end of the run sweep again.
        """
        if self._root_token is None or not self._root_token:
            values = self.init_keys() or {}
            token = values.pop(ROOT_TOKEN_KEY, None)
            for value in values.values():
                value.wipe()
            if token is None:
                raise StepError(self._missing_init_keys())
            self._root_token = token
        return self._root_token

    def authenticated_vault(self) -> VaultClient:
        client = self.vault()
        client.set_token(self.root_token())
        return client

    def _init_secret_name(self) -> str:
        return f"Secret {self.config.vault.namespace}/{self.config.vault.init_secret}"

    def _missing_init_keys(self) -> str:
        return (
            f"{self._init_secret_name()} with the Vault init keys is missing; restore it "
            f"({ROOT_TOKEN_KEY}, {UNSEAL_KEY_PREFIX}1..N) to let gitops-tui unseal and configure Vault"
        )

    def forget_root_token(self) -> None:
        """Wipe the cached root token: the next Vault call reads it again (the admin may have replaced it)."""
        if self._root_token is not None:
            self._root_token.wipe()
            self._root_token = None

    def close(self) -> None:
        """Wipe the root token; the Vault client that held it is dropped with it."""
        self.forget_root_token()
        if self._vault is not None:
            self._vault.close()
            self._vault = None


def _tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_of(url: str) -> str:
    return urlparse(url).hostname or url


async def wait_until(
    ctx: StepContext,
    what: str,
    probe: Callable[[], tuple[bool, str]],
    *,
    timeout: float,
    interval: float = 0.5,
) -> str:
    """Poll ``probe`` (run in a thread) until it reports done; log each new message; StepError on timeout."""
    deadline = time.monotonic() + timeout
    last_message = ""
    ctx.log(f"waiting for {what} (up to {timeout:g} s)")
    while True:
        try:
            done, message = await ctx.to_thread(probe)
        except GitOpsError as error:  # a transient API or Vault error: keep waiting, show why
            done, message = False, str(error)
        if message and message != last_message:
            ctx.log(f"  {what}: {message}")
            last_message = message
        if done:
            return message
        if time.monotonic() >= deadline:
            raise StepError(
                f"timed out after {timeout:g} s waiting for {what}: {last_message or 'no status'}"
            )
        await asyncio.sleep(interval)
