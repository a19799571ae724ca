"""API load at idle: the app's ResourceWatcher vs a 5-second poller of the same resources (>= 10x fewer).

Everything talks HTTP to the sandbox's emulated API server (``sandbox.emulator.EmulatorThread``), whose
request log counts each client's requests by user agent. Side by side, for the same window (300 s;
``--quick``: 20 s):

* ``watcher``: ``phases.watch.ResourceWatcher`` on the five types the tree shows (GitRepositories,
  Kustomizations, HelmReleases, ClusterSecretStores, ExternalSecrets), CRDs installed, a dozen objects;
* ``poller``: lists the same five types every 5 seconds;
* ``app``: the real ``GitOpsApp`` (headless) on the same emulator, Vault reachable through its Service (a
  real OpenBao dev server), tree open: every request it makes while idle (watcher, Vault address lookups);
* ``app_before_bootstrap``: the same app on a second emulator with no Flux/ESO CRDs and no Vault Service,
  i.e. a fresh sandbox before ``b``: what the tree costs while it waits for the CRDs to appear.

With ``--quick`` the 300-second figures are extrapolated from the 20-second window: the poller's and the
re-checks' counts scale with time; the watcher's add one re-watch per type (a watch lasts 0.8-1.0 x 240 s,
so within 300 s each type renews at most once).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path
from typing import Any, Final

from bench.core import BenchContext, Figure, isolated_env
from phases.config import load_config
from phases.kube import (
    CLUSTER_SECRET_STORES,
    EXTERNAL_SECRETS,
    GIT_REPOSITORIES,
    HELM_RELEASES,
    KUSTOMIZATIONS,
    USER_AGENT,
    KubeClient,
    ResourceType,
)
from phases.resources import ResourceModel
from phases.watch import (
    DEFAULT_MISSING_RECHECK,
    DEFAULT_WATCH_TIMEOUT,
    ResourceWatcher,
    WatchBatch,
    apply_batch,
)
from sandbox.emulator import EmulatorThread, crd_manifest
from sandbox.openbao import OpenBaoServer
from tui.app import GitOpsApp

TREE_TYPES: Final = (GIT_REPOSITORIES, KUSTOMIZATIONS, HELM_RELEASES, CLUSTER_SECRET_STORES, EXTERNAL_SECRETS)
POLL_INTERVAL: Final = 5.0
TARGET_WINDOW: Final = 300.0
WATCHER_AGENT: Final = "gitops-tui-bench/watcher"
POLLER_AGENT: Final = "gitops-tui-bench/poller"


def install_world(emulator: EmulatorThread, *, vault_port: int | None) -> None:
    """Namespaces, the Flux and ESO CRDs, a dozen objects and (optionally) the vault Service."""
    for namespace in ("flux-system", "external-secrets-system", "vault", "myapp"):
        emulator.create_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for resource in TREE_TYPES:
        group, _, version = resource.api_version.rpartition("/")
        emulator.create_object(
            crd_manifest(group, resource.kind, resource.plural, [version], namespaced=resource.namespaced)
        )
    emulator.create_object(
        {
            "apiVersion": GIT_REPOSITORIES.api_version,
            "kind": "GitRepository",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"interval": "1m", "url": "http://git.example/deployments", "ref": {"branch": "main"}},
        }
    )
    for name in ("flux-system", "infrastructure", "production"):
        emulator.create_object(
            {
                "apiVersion": KUSTOMIZATIONS.api_version,
                "kind": "Kustomization",
                "metadata": {"name": name, "namespace": "flux-system"},
                "spec": {
                    "interval": "10m",
                    "path": f"./{name}",
                    "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                },
            }
        )
    emulator.create_object(
        {
            "apiVersion": CLUSTER_SECRET_STORES.api_version,
            "kind": "ClusterSecretStore",
            "metadata": {"name": "vault-backend"},
            "spec": {
                "provider": {
                    "vault": {"server": "http://vault.vault:8200", "path": "secret", "version": "v2"}
                }
            },
        }
    )
    for index in range(6):
        emulator.create_object(
            {
                "apiVersion": EXTERNAL_SECRETS.api_version,
                "kind": "ExternalSecret",
                "metadata": {"name": f"myapp-{index}", "namespace": "myapp"},
                "spec": {
                    "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault-backend"},
                    "target": {"name": f"myapp-{index}"},
                    "data": [
                        {
                            "secretKey": "password",
                            "remoteRef": {"key": f"myapp/{index}", "property": "password"},
                        }
                    ],
                },
            }
        )
    if vault_port is not None:
        emulator.create_object(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "vault", "namespace": "vault"},
                "spec": {
                    "clusterIP": "127.0.0.1",
                    "ports": [{"name": "http", "port": vault_port, "targetPort": vault_port}],
                },
            }
        )


class Poller(threading.Thread):
    """Lists every type every ``interval`` seconds, as a UI without watches would."""

    def __init__(self, kube: KubeClient, resources: tuple[ResourceType, ...], interval: float) -> None:
        super().__init__(name="bench-poller", daemon=True)
        self.kube = kube
        self.resources = resources
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_poll = time.monotonic()
        while not self.stop_event.is_set():
            for resource in self.resources:
                self.kube.list(resource)
            next_poll += self.interval
            self.stop_event.wait(max(0.0, next_poll - time.monotonic()))


def count(emulator: EmulatorThread, agent: str) -> int:
    return sum(1 for request in emulator.requests() if request.user_agent == agent)


def verbs(emulator: EmulatorThread, agent: str) -> dict[str, int]:
    counted: dict[str, int] = {}
    for request in emulator.requests():
        if request.user_agent == agent:
            counted[request.verb] = counted.get(request.verb, 0) + 1
    return counted


def write_config(directory: Path, kubeconfig: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gitops-tui.toml"
    path.write_text(
        f'[cluster]\nkubeconfig = "{kubeconfig}"\ncontext = "sandbox"\n'
        f'[deployments]\nclone_dir = "{directory / "no-clone"}"\n'
        f'[engine]\nstate_dir = "{directory / "state"}"\n',
        encoding="utf-8",
    )
    return path


async def run_app(config_path: Path, window: float, started: threading.Event) -> None:
    app = GitOpsApp(load_config(str(config_path)))
    async with app.run_test(size=(120, 40)):
        started.set()
        await asyncio.sleep(window)


async def run(ctx: BenchContext) -> list[Figure]:
    window = 20.0 if ctx.quick else TARGET_WINDOW
    import os

    os.environ.update(isolated_env(ctx.workdir / "home"))
    with (
        OpenBaoServer.dev(ctx.workdir / "openbao") as bao,
        EmulatorThread() as emulator,
        EmulatorThread() as fresh,
    ):
        install_world(emulator, vault_port=bao.port)
        kubeconfig = emulator.write_kubeconfig(ctx.workdir / "kubeconfig")
        fresh_kubeconfig = fresh.write_kubeconfig(ctx.workdir / "fresh-kubeconfig")
        emulator.clear_requests()
        fresh.clear_requests()

        model = ResourceModel()
        lock = threading.Lock()

        def on_changes(batch: WatchBatch) -> None:
            with lock:
                apply_batch(model, batch)

        watcher = ResourceWatcher(KubeClient(kubeconfig, user_agent=WATCHER_AGENT), TREE_TYPES, on_changes)
        poller = Poller(KubeClient(kubeconfig, user_agent=POLLER_AGENT), TREE_TYPES, POLL_INTERVAL)
        ctx.log(f"api_load: watching, polling and idling the app for {window:g} s")
        start = time.monotonic()
        watcher.start()
        poller.start()
        app_started = threading.Event()
        await asyncio.gather(
            run_app(write_config(ctx.workdir / "app", kubeconfig), window, app_started),
            run_app(write_config(ctx.workdir / "fresh", fresh_kubeconfig), window, threading.Event()),
        )
        elapsed = time.monotonic() - start
        stats = watcher.stats()  # before stop(): stopping interrupts the open watches
        poller.stop_event.set()
        watcher.stop()
        poller.join(timeout=10)
        watched = count(emulator, WATCHER_AGENT)
        polled = count(emulator, POLLER_AGENT)
        app_requests = count(emulator, USER_AGENT)
        app_verbs = verbs(emulator, USER_AGENT)
        fresh_requests = count(fresh, USER_AGENT)
        fresh_verbs = verbs(fresh, USER_AGENT)
        with lock:
            seen = len(model)

    types = len(TREE_TYPES)
    if ctx.quick:
        scale = TARGET_WINDOW / elapsed
        renewals = types * math.floor(TARGET_WINDOW / (0.8 * DEFAULT_WATCH_TIMEOUT))
        watcher_300 = watched + renewals
        poller_300 = (polled - types) / elapsed * TARGET_WINDOW + types  # one round at t=0, then periodic
        app_300 = app_requests + renewals
        # Before bootstrap the types are re-checked every DEFAULT_MISSING_RECHECK s: it scales with time.
        fresh_300 = fresh_requests * scale
        how = f"extrapolated from {elapsed:.0f} s (+{renewals} re-watches)"
    else:
        watcher_300, poller_300, app_300, fresh_300 = (
            watched,
            float(polled),
            app_requests,
            float(fresh_requests),
        )
        how = f"measured over {elapsed:.0f} s"

    def describe(counted: dict[str, Any]) -> str:
        return ", ".join(f"{verb} {number}" for verb, number in sorted(counted.items()))

    return [
        Figure(
            "api_window", elapsed, "s", "-", "how long the watcher, the poller and the apps ran side by side"
        ),
        Figure(
            "api_requests_watcher",
            watched,
            "requests",
            "-",
            f"ResourceWatcher, 5 types, {seen} objects seen; lists {stats.lists}, watches {stats.watches}, "
            f"drops {stats.drops}, failures {stats.failures}",
        ),
        Figure("api_requests_poller", polled, "requests", "-", f"5 types listed every {POLL_INTERVAL:g} s"),
        Figure(
            "api_load_ratio",
            poller_300 / max(1, watcher_300),
            "x",
            ">=10",
            f"poller/watcher over 300 s, {how}",
        ),
        Figure(
            "api_requests_app_idle",
            app_requests,
            "requests",
            "-",
            f"GitOpsApp idle, tree open: {describe(app_verbs)}",
        ),
        Figure(
            "api_load_ratio_app",
            poller_300 / max(1, app_300),
            "x",
            ">=10",
            f"poller/whole app over 300 s, {how}",
        ),
        Figure(
            "api_requests_app_before_bootstrap",
            fresh_requests,
            "requests",
            "-",
            f"GitOpsApp idle on a cluster without Flux/ESO CRDs nor Vault: {describe(fresh_verbs)}; "
            f"types re-checked every {DEFAULT_MISSING_RECHECK:g} s",
        ),
        Figure(
            "api_load_ratio_app_before_bootstrap",
            poller_300 / max(1.0, fresh_300),
            "x",
            "-",
            f"poller/app before bootstrap over 300 s, {how}",
        ),
    ]
