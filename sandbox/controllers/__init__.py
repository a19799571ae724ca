"""Simulated Flux and External Secrets controllers for the sandbox's emulated cluster.

They stand in for source-controller, kustomize-controller, helm-controller and ESO: they talk
to the API server only over HTTP with the real ``kubernetes`` client (user agent
``gitops-tui-sandbox/controllers``), list+watch their resources, and write status the way the
real controllers do, so the app cannot tell them from the real thing for what it uses.

    controllers = start_controllers(kubeconfig, workdir)
    ...
    controllers.stop()

The controllers start before any CRD exists and begin working once the CRDs appear.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Final

from phases.kube import CLUSTER_SECRET_STORES, preload_client
from sandbox.controllers.eso import ExternalSecretController, SecretStoreController
from sandbox.controllers.eso_vault import VaultSessions
from sandbox.controllers.flux_helm import HelmReleaseController
from sandbox.controllers.flux_kustomize import KustomizationController
from sandbox.controllers.flux_source import GitRepositoryController
from sandbox.controllers.kube import SECRET_STORES, USER_AGENT
from sandbox.controllers.runtime import Controller, ControllerContext, InformerRegistry

__all__ = ["USER_AGENT", "ControllerSet", "start_controllers"]

STOP_TIMEOUT_SECONDS: Final = 0.9
log = logging.getLogger("sandbox.controllers")


class ControllerSet:
    """Every simulated controller, sharing one informer per watched resource."""

    def __init__(self, kubeconfig: Path, workdir: Path, *, resync_seconds: float = 2.0) -> None:
        if resync_seconds <= 0:
            raise ValueError("resync_seconds must be positive")
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.resync_seconds = resync_seconds
        self._stop = threading.Event()
        self._informers = InformerRegistry(kubeconfig, self._stop, resync_seconds)
        self._sessions = VaultSessions(workdir)
        self._controllers: list[Controller] = []
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers)

    def start(self) -> ControllerSet:
        with self._lock:
            if self._started:
                raise RuntimeError("controllers already started")
            self._started = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        preload_client()  # here, not in the threads the controllers start
        context = ControllerContext(self.kubeconfig, self.workdir, self._informers, self.resync_seconds)
        sessions = self._sessions
        self._controllers = [
            GitRepositoryController(context),
            KustomizationController(context),
            HelmReleaseController(context),
            SecretStoreController(context, sessions, CLUSTER_SECRET_STORES),
            SecretStoreController(context, sessions, SECRET_STORES),
            ExternalSecretController(context, sessions),
        ]
        for informer in self._informers:
            informer.start()
        for controller in self._controllers:
            controller.start(self._stop)
        log.info("started %d controllers (resync every %.1f s)", len(self._controllers), self.resync_seconds)
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        self._stop.set()
        for informer in self._informers:
            informer.interrupt()
        for controller in self._controllers:
            controller.queue.close()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        threads = [informer.thread for informer in self._informers] + [c.thread for c in self._controllers]
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        lingering = [thread.name for thread in threads if thread.is_alive()]
        if lingering:
            # Daemon threads in the middle of a slow call (a Vault login); they exit on their own.
            log.debug("threads still finishing after stop: %s", ", ".join(lingering))
        for informer in self._informers:
            informer.close()
        for controller in self._controllers:
            controller.close()
        self._sessions.clear()

    def wait_idle(self, timeout: float) -> bool:
        """True once every informer has synced and no controller has work queued or in progress."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return self.idle()

    def idle(self) -> bool:
        return (
            self._started
            and all(informer.synced.is_set() for informer in self._informers)
            and all(controller.idle() for controller in self._controllers)
        )

    def __enter__(self) -> ControllerSet:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_controllers(kubeconfig: Path, workdir: Path) -> ControllerSet:
    """Start every simulated controller in background daemon threads; call ``stop()`` when done."""
    return ControllerSet(kubeconfig, workdir).start()
