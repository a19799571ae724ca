"""The sandbox world: an embedded platform the unchanged gitops-tui engine can bootstrap.

``SandboxWorld(root).start()`` brings up, all on this machine:

* an emulated Kubernetes API (:mod:`sandbox.emulator`) and a kubeconfig for it (context ``sandbox``);
* a simulated node agent (:mod:`sandbox.kubelet`) that makes workloads ready once ``k3s install``
  has registered the node, and runs a REAL OpenBao server for the Vault StatefulSet;
* simulated Flux and External Secrets controllers (:mod:`sandbox.controllers`);
* ``k3s``, ``flux`` and ``helm`` stand-ins in ``root/bin`` (:mod:`sandbox.shims`);
* a bare Git remote with a sample ``deployments`` history and a working clone of it.

Persistence and restarts: the emulated API keeps its objects in memory, so the world saves them
to ``root/cluster-state.json`` (mode 0600: it holds Secrets, as etcd would) every couple of
seconds when they change and on stop, and loads them back on the next start. A restarted
sandbox therefore resumes: same objects (with new uids and resourceVersions), same Git repos,
same OpenBao raft data. OpenBao comes back sealed, as a restarted pod would, and the engine
unseals it with the keys kept in the cluster Secret. Objects written in the last ~2 s before
a crash (SIGKILL) may be lost; a clean stop loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from phases.kube import KubeClient, KubeNotFound, ResourceType
from phases.state import ensure_private_dir, write_private_file
from sandbox.emulator import ApiError, EmulatorThread
from sandbox.git_server import GitHttpServer
from sandbox.kubelet import Kubelet
from sandbox.ports import port_is_free
from sandbox.sample_repo import create_sample_repo
from sandbox.shims import write_shims

log = logging.getLogger(__name__)

CA_CERT_SOURCE: Final = Path(__file__).resolve().parent / "data" / "sandbox-ca.pem"
STATE_FILE: Final = "cluster-state.json"
API_PORT_FILE: Final = "api-port"
GIT_PORT_FILE: Final = "git-port"
SNAPSHOT_INTERVAL: Final = 2.0
STATE_FORMAT: Final = 1
# Not worth keeping across restarts: events are noise, token reviews are never stored.
_UNSAVED: Final = frozenset({("", "events"), ("authentication.k8s.io", "tokenreviews")})
# Types whose status the emulator computes itself on create.
_SERVER_STATUS: Final = frozenset({("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")})
_SERVER_METADATA: Final = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


@dataclass(frozen=True)
class SandboxInfo:
    """Where everything of one sandbox lives (all paths under ``root``)."""

    root: Path
    api_url: str
    kubeconfig: Path
    bin_dir: Path
    remote_path: Path
    remote_url: str
    clone_dir: Path
    ca_cert: Path
    argv_log: Path
    env_file: Path
    state_dir: Path

    def to_json(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> SandboxInfo:
        """The inverse of :meth:`to_json` (e.g. for the ``READY`` line of ``python -m sandbox serve``)."""
        urls = ("api_url", "remote_url")
        values: dict[str, Any] = {
            name: data[name] if name in urls else Path(data[name]) for name in cls.__dataclass_fields__
        }
        return cls(**values)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class SandboxWorld:
    """Start, stop and restart one sandbox rooted at ``root``."""

    def __init__(self, root: Path, *, api_port: int = 0) -> None:
        self.root = Path(root).resolve()
        self._api_port = api_port
        self._emulator: EmulatorThread | None = None
        self._info: SandboxInfo | None = None
        self._kubelet: Kubelet | None = None
        self._controllers: _Stoppable | None = None
        self._git_server: GitHttpServer | None = None
        self._vault_url: str | None = None
        self._env_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._snapshot_stop = threading.Event()
        self._snapshot_thread: threading.Thread | None = None
        self._last_state = ""

    # -- public surface ----------------------------------------------------------------------------

    @property
    def info(self) -> SandboxInfo:
        if self._info is None:
            raise RuntimeError("the sandbox is not started")
        return self._info

    @property
    def emulator(self) -> EmulatorThread:
        if self._emulator is None:
            raise RuntimeError("the sandbox is not started")
        return self._emulator

    @property
    def kubelet(self) -> Kubelet:
        if self._kubelet is None:
            raise RuntimeError("the sandbox is not started")
        return self._kubelet

    @property
    def vault_url(self) -> str | None:
        """Where OpenBao answers once the Vault chart is installed (else None)."""
        return self._vault_url

    def start(self) -> SandboxInfo:
        """Bring everything up (reusing the repos, OpenBao data and saved cluster state in ``root``)."""
        if self._info is not None:
            return self._info
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop controllers, kubelet (and OpenBao) and the API, saving the cluster state; idempotent."""
        self._snapshot_stop.set()
        if self._snapshot_thread is not None:
            self._snapshot_thread.join(timeout=30)
            self._snapshot_thread = None
        controllers, self._controllers = self._controllers, None
        if controllers is not None:
            with _logged("stopping the controllers"):
                controllers.stop()
        kubelet, self._kubelet = self._kubelet, None
        if kubelet is not None:
            with _logged("stopping the kubelet"):
                kubelet.stop()
        git_server, self._git_server = self._git_server, None
        if git_server is not None:
            git_server.stop()
        emulator, self._emulator = self._emulator, None
        if emulator is not None:
            if self._info is not None:
                with _logged("saving the cluster state"):
                    self.save_state(emulator)
            emulator.stop()
        self._info = None

    def __enter__(self) -> SandboxWorld:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------------------

    def _start(self) -> SandboxInfo:
        root = ensure_private_dir(self.root)
        bin_dir, state_dir = root / "bin", root / "state"
        for folder in (bin_dir, state_dir):
            folder.mkdir(exist_ok=True)
        remote_path, clone_dir = root / "deployments.git", root / "deployments"
        create_sample_repo(remote_path, clone_dir)
        # Flux accepts only http(s)/ssh URLs: the remote is served over smart HTTP with basic auth.
        self._git_server = self._start_git_server()
        ca_cert = root / "sandbox-ca.pem"
        shutil.copyfile(CA_CERT_SOURCE, ca_cert)

        self._snapshot_stop.clear()
        emulator = self._start_emulator()
        self._emulator = emulator
        kubeconfig = emulator.write_kubeconfig(root / "kubeconfig", context="sandbox")
        self._restore_state(emulator, kubeconfig)
        argv_log = root / "argv.log"
        write_shims(bin_dir, argv_log=argv_log, root=root)
        self._info = SandboxInfo(
            root=root,
            api_url=emulator.url,
            kubeconfig=kubeconfig,
            bin_dir=bin_dir,
            remote_path=remote_path,
            remote_url=self._git_server.url_for(remote_path.name),
            clone_dir=clone_dir,
            ca_cert=ca_cert,
            argv_log=argv_log,
            env_file=root / "sandbox.env",
            state_dir=state_dir,
        )
        self._write_env_file()
        self._kubelet = Kubelet(kubeconfig, root, on_vault_address=self._vault_address_changed).start()
        from sandbox.controllers import start_controllers  # imported late: they pull in the most code

        controllers_dir = root / "controllers"
        controllers_dir.mkdir(exist_ok=True)
        self._controllers = start_controllers(kubeconfig, controllers_dir)
        self._snapshot_thread = threading.Thread(
            target=self._snapshot_loop, name="sandbox-snapshots", daemon=True
        )
        self._snapshot_thread.start()
        log.info("sandbox started in %s (API %s)", root, emulator.url)
        return self._info

    def _start_emulator(self) -> EmulatorThread:
        """Serve the API on the requested port, else on the previous run's (so URLs survive restarts)."""
        port_file = self.root / API_PORT_FILE
        port = self._api_port
        if not port:
            with contextlib.suppress(OSError, ValueError):
                previous = int(port_file.read_text(encoding="utf-8").strip())
                if port_is_free(previous):
                    port = previous
        try:
            emulator = EmulatorThread(host="127.0.0.1", port=port).start()
        except RuntimeError:
            if self._api_port or not port:
                raise
            emulator = EmulatorThread(host="127.0.0.1", port=0).start()  # lost a race for the old port
        port_file.write_text(f"{emulator.port}\n", encoding="utf-8")
        return emulator

    def _start_git_server(self) -> GitHttpServer:
        """Serve the bare repos on the previous run's port when free (the GitRepository URL keeps working)."""
        port_file = self.root / GIT_PORT_FILE
        port = 0
        with contextlib.suppress(OSError, ValueError):
            previous = int(port_file.read_text(encoding="utf-8").strip())
            if port_is_free(previous):
                port = previous
        try:
            server = GitHttpServer(self.root, port=port).start()
        except OSError:
            server = GitHttpServer(self.root, port=0).start()
        port_file.write_text(f"{server.port}\n", encoding="utf-8")
        return server

    # -- sandbox.env -------------------------------------------------------------------------------

    def _vault_address_changed(self, url: str | None) -> None:
        self._vault_url = url
        if self._info is not None:
            self._write_env_file()

    def _write_env_file(self) -> None:
        info = self.info
        lines = [
            "# gitops-tui sandbox: load it with `. " + shlex.quote(str(info.env_file)) + "`",
            f"export KUBECONFIG={shlex.quote(str(info.kubeconfig))}",
        ]
        if self._vault_url:
            lines.append(f"export VAULT_ADDR={shlex.quote(self._vault_url)}")
        else:
            lines.append("# VAULT_ADDR is written here once the Vault chart is installed and OpenBao runs.")
        lines += [
            "# VAULT_TOKEN is deliberately not written: the root token lives only in the cluster Secret",
            "# vault/vault-init-keys. Read it when you need it with:",
            '#   export VAULT_TOKEN="$(kubectl get secret -n vault vault-init-keys'
            " -o jsonpath='{.data.VAULT_ROOT_TOKEN}' | base64 -d)\"",
            f"export GITOPS_TUI_SANDBOX_REMOTE={shlex.quote(info.remote_url)}",
            f"export GITOPS_TUI_SANDBOX_CLONE={shlex.quote(str(info.clone_dir))}",
            f'export PATH={shlex.quote(str(info.bin_dir))}:"$PATH"',
        ]
        with self._env_lock:
            write_private_file(info.env_file, "\n".join(lines) + "\n")

    # -- cluster state -----------------------------------------------------------------------------

    def snapshot(self, emulator: EmulatorThread | None = None) -> dict[str, Any]:
        """Every stored object (but events), CRDs first, then namespaces, then the rest."""
        emulator = emulator or self.emulator
        seen: set[tuple[str, str]] = set()
        crds: list[dict[str, Any]] = []
        namespaces: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for resource in emulator.emulator.resource_types():
            if resource.storage_key in seen or resource.storage_key in _UNSAVED:
                continue
            seen.add(resource.storage_key)
            for obj in emulator.objects(resource.api_version, resource.plural):
                if (obj.get("metadata") or {}).get("deletionTimestamp"):
                    continue  # on its way out
                entry = {"plural": resource.plural, "namespaced": resource.namespaced, "object": obj}
                if resource.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                    crds.append(entry)
                elif resource.storage_key == ("", "namespaces"):
                    namespaces.append(entry)
                else:
                    others.append(entry)
        by_name = sorted(
            others, key=lambda e: (e["object"]["apiVersion"], e["plural"], _object_key(e["object"]))
        )
        return {"format": STATE_FORMAT, "objects": [*crds, *namespaces, *by_name]}

    def save_state(self, emulator: EmulatorThread | None = None) -> bool:
        """Write ``cluster-state.json`` if the objects changed since the last write; True if written."""
        with self._state_lock:
            state = self.snapshot(emulator)
            # Server-assigned versions change on every no-op-free write; compare what a restore keeps.
            comparable = json.dumps([_restorable(e["object"]) for e in state["objects"]], sort_keys=True)
            if comparable == self._last_state:
                return False
            write_private_file(self.root / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")
            self._last_state = comparable
            return True

    def _snapshot_loop(self) -> None:
        while not self._snapshot_stop.wait(SNAPSHOT_INTERVAL):
            emulator = self._emulator
            if emulator is None:
                return
            with _logged("saving the cluster state"):
                self.save_state(emulator)

    def _restore_state(self, emulator: EmulatorThread, kubeconfig: Path) -> None:
        path = self.root / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except ValueError:
            broken = path.with_suffix(".json.broken")
            path.replace(broken)
            log.error("the saved cluster state was unreadable; moved it to %s and started empty", broken)
            return
        cluster = KubeClient(kubeconfig, user_agent="gitops-tui-sandbox/restore")
        restored = 0
        try:
            for entry in state.get("objects") or []:
                obj: dict[str, Any] = entry["object"]
                body = _restorable(obj)
                status = body.pop("status", None)
                try:
                    created = emulator.create_object(body)
                except ApiError as error:
                    if error.code != 409:  # the default namespaces exist already
                        log.warning("could not restore %s: %s", _object_key(obj), error.message)
                    continue
                restored += 1
                group = obj["apiVersion"].rpartition("/")[0]
                if status and (group, entry["plural"]) not in _SERVER_STATUS and "status" not in created:
                    resource = ResourceType(
                        obj["apiVersion"], obj["kind"], entry["plural"], bool(entry["namespaced"])
                    )
                    metadata = obj["metadata"]
                    # A type without a status subresource (404) kept the status on create.
                    with contextlib.suppress(KubeNotFound):
                        cluster.replace_status(resource, metadata["name"], status, metadata.get("namespace"))
        finally:
            cluster.close()
        self._last_state = ""
        log.info("restored %d objects from %s", restored, path)


def _restorable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the API server assigns (so it can be created again)."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_METADATA}
    return {**obj, "metadata": metadata}


def _object_key(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{metadata.get('name')}"


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Log and swallow a failure: stopping must go on with the next part."""
    try:
        yield
    except Exception:
        log.exception("failed %s", what)
