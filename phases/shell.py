"""Async child processes for the engine.

Every command runs in its own session (so its own process group) with stdin on
/dev/null unless data is given, stdout and stderr on pipes read concurrently, and
output delivered to a sink in batches of lines. A command's process group never
outlives it: on normal exit stray background processes are killed, on timeout or
cancellation the whole group gets SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``.
Live groups are tracked so ``kill_all_children()`` can end them from a signal
handler or at interpreter exit.

Children are started with ``posix_spawn`` (through ctypes) so that secrets reach them without
a copy in our memory: ``secret_env`` entries are ``K=V`` strings assembled in locked buffers
and the child's ``envp`` points straight into them (``subprocess`` would build its own
``bytes`` copy), and :func:`secret_pipe` hands a child a pre-filled pipe as ``/dev/fd/N``
(e.g. a Terraform var-file) instead of any environment variable.

Output lines are decoded as UTF-8 (invalid bytes replaced), split on ``\\n`` with a
trailing ``\\r`` removed. A line longer than ``MAX_LINE_CHARS`` characters is
delivered as consecutive pieces of exactly ``MAX_LINE_CHARS`` characters plus a
shorter last piece; joining the pieces gives the line back.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import contextvars
import ctypes
import errno
import fcntl
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from phases import memory
from phases.errors import GitOpsError
from phases.secrets import SecretValue

__all__ = [
    "BATCH_INTERVAL_SECONDS",
    "BATCH_MAX_LINES",
    "KILL_GRACE_SECONDS",
    "MAX_LINE_CHARS",
    "TAIL_LINES",
    "CommandError",
    "CommandFailed",
    "CommandNotFound",
    "CommandResult",
    "CommandTimedOut",
    "LineSink",
    "install_hint",
    "kill_all_children",
    "live_process_groups",
    "run_command",
    "secret_pipe",
    "tracked_process_group",
    "which",
]

logger = logging.getLogger(__name__)

StreamName = Literal["stdout", "stderr"]
LineSink = Callable[[str, Sequence[str]], None]
"""Receives ``(stream, lines)``: stream is "stdout" or "stderr", lines have no newline."""

KILL_GRACE_SECONDS: float = 2.0
"""Time between SIGTERM and SIGKILL when stopping a command. Read at each stop, so it can be changed."""

BATCH_INTERVAL_SECONDS: Final = 0.05
BATCH_MAX_LINES: Final = 1000
MAX_LINE_CHARS: Final = 64 * 1024
TAIL_LINES: Final = 40

_READ_CHUNK: Final = 256 * 1024
# After a kill, pipes normally close at once; a process that escaped the group
# (its own setsid) may hold them open, and we will not wait for it forever.
_DRAIN_AFTER_KILL_SECONDS: Final = 1.0
_EXIT_POLL_SECONDS: Final = 0.05

_INSTALL_HINTS: Final[Mapping[str, str]] = {
    "flux": "install the Flux CLI: https://fluxcd.io/flux/installation/",
    "helm": "install Helm: https://helm.sh/docs/intro/install/",
    "kubectl": "install kubectl: https://kubernetes.io/docs/tasks/tools/",
    "k3s": "install k3s: https://docs.k3s.io/quick-start",
    "terraform": "install Terraform: https://developer.hashicorp.com/terraform/install",
    "git": "install git with your package manager: https://git-scm.com/downloads",
    "bao": "install the OpenBao CLI: https://openbao.org/docs/install/",
}
_DEFAULT_HINT: Final = "check that it is installed and on PATH"

# Process group ids of children that may still be running. Plain set operations
# are atomic under the GIL, and readers take a tuple() snapshot, so a signal
# handler or another thread can read it at any time.
_live_groups: set[int] = set()


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    duration: float
    output_tail: tuple[str, ...]
    """The last ``TAIL_LINES`` lines of stdout and stderr combined, for error messages."""


class CommandError(GitOpsError):
    """A command could not run or did not succeed. ``str()`` is one line for a human."""

    def __init__(self, argv: Sequence[str], message: str) -> None:
        super().__init__(message)
        self.argv: tuple[str, ...] = tuple(argv)


class CommandNotFound(CommandError):
    def __init__(self, argv: Sequence[str]) -> None:
        self.program = argv[0]
        self.hint = install_hint(self.program)
        super().__init__(argv, f"{self.program} was not found on PATH; {self.hint}")


class CommandFailed(CommandError):
    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.returncode = result.returncode
        message = f"{_label(result.argv)} {_describe_exit(result.returncode)}"
        last_lines = _last_meaningful_lines(result.output_tail)
        if last_lines:
            message += ": " + " | ".join(last_lines)
        super().__init__(result.argv, message)


class CommandTimedOut(CommandError):
    def __init__(self, result: CommandResult, timeout: float) -> None:
        self.result = result
        self.timeout = timeout
        super().__init__(result.argv, f"{_label(result.argv)} timed out after {timeout:g} s and was stopped")


def which(name: str, *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """Where the child would find ``name``: searched on ``env["PATH"]`` if given, else our PATH.

    A name containing a slash is checked as a path (relative to ``cwd`` when given).
    """
    if os.sep in name:
        candidate = Path(name)
        if cwd is not None and not candidate.is_absolute():
            candidate = cwd / candidate
        return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None
    search_path = env["PATH"] if env is not None and "PATH" in env else os.environ.get("PATH", os.defpath)
    found = shutil.which(name, path=search_path)
    return Path(found) if found is not None else None


def install_hint(program: str) -> str:
    """How to get ``program`` ("install the Flux CLI: https://..."), for "not found" messages."""
    return _INSTALL_HINTS.get(Path(program).name, _DEFAULT_HINT)


@contextlib.contextmanager
def tracked_process_group(pgid: int) -> Iterator[None]:
    """Register a process group started elsewhere (e.g. by the git client) for ``kill_all_children``."""
    _live_groups.add(pgid)
    try:
        yield
    finally:
        _live_groups.discard(pgid)


def live_process_groups() -> frozenset[int]:
    """Process group ids of the commands currently running."""
    return frozenset(_live_groups)


def kill_all_children(*, grace: float = 0.0) -> int:
    """Kill every live child process group; returns how many groups were signalled.

    Synchronous and lock-free, so it is safe in a signal handler and at exit. With
    ``grace`` > 0 the groups get SIGTERM first and this call sleeps that long before
    SIGKILL. The ``run_command`` calls that own the groups still reap their leaders.
    """
    groups = tuple(_live_groups)
    if grace > 0:
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        time.sleep(grace)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    return len(groups)


# No child may survive the interpreter, however it exits normally.
atexit.register(kill_all_children)


async def run_command(
    argv: Sequence[str],
    *,
    on_output: LineSink | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Mapping[str, SecretValue] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    stdin_data: bytes | None = None,
) -> CommandResult:
    """Run ``argv`` (no shell) and stream its output to ``on_output``.

    ``env`` is merged over our environment; ``secret_env`` entries go only into the
    child's environment (never argv, never a message). Raises ``CommandNotFound``
    before spawning when the program is missing, ``CommandFailed`` on a non-zero
    exit when ``check`` is true, ``CommandTimedOut`` after ``timeout`` seconds. If the
    awaiting task is cancelled the process group is stopped and CancelledError
    re-raised. An exception raised by ``on_output`` kills the command and propagates.
    """
    command = tuple(argv)
    if not command:
        raise ValueError("run_command needs a program to run")
    _check_runnable(command, env=env, cwd=cwd)

    started = time.monotonic()
    process = await _spawn(
        command, env=env, secret_env=secret_env, cwd=cwd, with_stdin=stdin_data is not None
    )
    pgid = process.pid  # start_new_session: the leader's pid is the group id
    _live_groups.add(pgid)
    logger.debug("started %s (pid %d)", _label(command), pgid)

    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def kill_group() -> None:
        _signal_group(pgid, signal.SIGKILL)

    assert process.stdout is not None and process.stderr is not None
    pumps = (
        _LinePump("stdout", on_output, tail, kill_group),
        _LinePump("stderr", on_output, tail, kill_group),
    )
    tasks = [
        asyncio.create_task(_pump(process.stdout, pumps[0])),
        asyncio.create_task(_pump(process.stderr, pumps[1])),
    ]
    if stdin_data is not None:
        assert process.stdin is not None
        tasks.append(asyncio.create_task(_feed_stdin(process.stdin, stdin_data)))

    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                returncode = await _leader_exit(process)
                # Whatever the leader left running in its group (`cmd &`) must not outlive it,
                # and it may be holding our pipes open.
                kill_group()
                await asyncio.gather(*tasks)
                await process.wait()  # lets the transport close its pipes
        except TimeoutError:
            timed_out = True
            returncode = await _stop(process, pgid, tasks)
        except BaseException:  # cancellation, or a failure of ours: never leave the group behind
            await _stop(process, pgid, tasks)
            raise
    finally:
        _live_groups.discard(pgid)
        for task in tasks:
            task.cancel()
        process.close()

    result = CommandResult(
        argv=command, returncode=returncode, duration=time.monotonic() - started, output_tail=tuple(tail)
    )
    logger.debug("%s %s after %.3f s", _label(command), _describe_exit(returncode), result.duration)
    for pump in pumps:
        if pump.sink_error is not None:
            raise pump.sink_error
    if timed_out:
        assert timeout is not None
        raise CommandTimedOut(result, timeout)
    if check and returncode != 0:
        raise CommandFailed(result)
    return result


def _check_runnable(command: tuple[str, ...], *, env: Mapping[str, str] | None, cwd: Path | None) -> None:
    """Fail with a clear message before spawning (a few stat calls; no need to leave the loop)."""
    if which(command[0], env=env, cwd=cwd) is None:
        raise CommandNotFound(command)
    if cwd is not None and not cwd.is_dir():
        raise CommandError(command, f"cannot run {_label(command)}: directory {cwd} does not exist")


async def _spawn(
    command: tuple[str, ...],
    *,
    env: Mapping[str, str] | None,
    secret_env: Mapping[str, SecretValue] | None,
    cwd: Path | None,
    with_stdin: bool,
) -> _Child:
    """posix_spawn the command in a new session, with its environment pointing into our buffers."""
    program = _resolve(command, env=env, cwd=cwd)
    child_env = _child_environment(env, secret_env)
    loop = asyncio.get_running_loop()
    ends: list[int] = []  # every pipe end we still own
    try:
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC) if with_stdin else (-1, -1)
        ends += [fd for fd in (stdin_read, stdin_write) if fd >= 0]
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        ends += [stdout_read, stdout_write]
        stderr_read, stderr_write = os.pipe2(os.O_CLOEXEC)
        ends += [stderr_read, stderr_write]
        pid, error = _posix_spawn(
            program,
            command,
            child_env,
            stdin=stdin_read,
            stdout=stdout_write,
            stderr=stderr_write,
            extra=_inherited_fds.get(),
            cwd=cwd,
        )
    except OSError as failure:  # no pipes left, or no usable posix_spawn in this C library
        for fd in ends:
            os.close(fd)
        raise CommandError(
            command, f"cannot start {_label(command)}: {failure.strerror or failure}"
        ) from None
    except BaseException:
        for fd in ends:
            os.close(fd)
        raise
    finally:
        # The child has its own copy of the environment now (or never started): zero ours at once.
        child_env.wipe()
    for fd in (stdin_read, stdout_write, stderr_write):
        if fd >= 0:
            os.close(fd)
            ends.remove(fd)
    if error:
        for fd in ends:
            os.close(fd)
        if error == errno.ENOENT:
            raise CommandNotFound(command)
        raise CommandError(command, f"cannot start {_label(command)}: {os.strerror(error)}")
    return await _Child.attach(loop, pid, stdin_write, stdout_read, stderr_read)


class _ChildEnvironment:
    """``envp`` for posix_spawn: plain ``K=V`` strings, and secret ones assembled in locked buffers."""

    def __init__(self) -> None:
        self._plain: list[Any] = []  # ctypes string buffers, kept alive while the pointers are used
        self._secret: list[memory.LockedBuffer] = []
        self._pointers: list[int] = []

    def add_plain(self, key: bytes, value: bytes) -> None:
        entry = ctypes.create_string_buffer(key + b"=" + value)
        self._plain.append(entry)
        self._pointers.append(ctypes.addressof(entry))

    def add_secret(self, key: bytes, secret: SecretValue) -> None:
        with secret.exposed() as view:
            if memory.find_byte(view, 0) != -1:
                raise ValueError(
                    f"the secret for {os.fsdecode(key)} contains a NUL byte, so it cannot be an env value"
                )
            entry = memory.LockedBuffer(len(key) + len(view) + 2)  # zero-filled: the NUL is already there
            self._secret.append(entry)
            entry.view[: len(key)] = key
            entry.view[len(key)] = 0x3D
            entry.view[len(key) + 1 : len(key) + 1 + len(view)] = view
        self._pointers.append(entry.address)

    def envp(self) -> Any:
        return (ctypes.c_void_p * (len(self._pointers) + 1))(*self._pointers, None)

    def __len__(self) -> int:
        return len(self._pointers)

    def wipe(self) -> None:
        for entry in self._secret:
            entry.close()
        self._secret.clear()
        self._plain.clear()
        self._pointers.clear()


def _resolve(command: tuple[str, ...], *, env: Mapping[str, str] | None, cwd: Path | None) -> str:
    """The program's absolute path, found as the child would find it (its PATH, relative to ``cwd``)."""
    program = which(command[0], env=env, cwd=cwd)
    if program is None:  # removed since _check_runnable looked
        raise CommandNotFound(command)
    return str(program.absolute())


def _child_environment(
    env: Mapping[str, str] | None, secret_env: Mapping[str, SecretValue] | None
) -> _ChildEnvironment:
    """Our environment, ``env`` over it, then the secrets, as ``envp`` entries.

    A secret's ``K=V`` is assembled in a locked buffer the child's ``envp`` points into: no ``bytes`` or
    ``str`` copy of the value is made (``subprocess`` would build one). ``wipe()`` zeroes them after the
    spawn.
    """
    merged: dict[bytes, bytes] = dict(os.environb)  # the same objects Python already holds: no new copy
    for name, value in (env or {}).items():
        merged[os.fsencode(name)] = os.fsencode(value)
    child_env = _ChildEnvironment()
    try:
        secret_keys: dict[bytes, SecretValue] = {}
        for name, secret in (secret_env or {}).items():
            key = os.fsencode(name)
            if not key or b"=" in key or b"\0" in key:
                raise ValueError(f"invalid environment variable name {name!r}")
            secret_keys[key] = secret
        for key, plain in merged.items():
            if key not in secret_keys:
                child_env.add_plain(key, plain)
        for key, secret in secret_keys.items():
            child_env.add_secret(key, secret)
    except BaseException:
        child_env.wipe()
        raise
    return child_env


# -- posix_spawn through ctypes ------------------------------------------------------------------------------

_POSIX_SPAWN_SETSIGDEF: Final = 0x04
_POSIX_SPAWN_SETSIGMASK: Final = 0x08
_POSIX_SPAWN_SETSID: Final = 0x80  # glibc >= 2.26
_CHILD_FD_BASE: Final = 3  # fds handed over by secret_pipe are 3, 4, ... in the child
_HIGH_FD: Final = 64  # our ends of those pipes live above this, so the dup2s never collide
_F_SETPIPE_SZ: Final = 1031
_STRUCT_ROOM: Final = 1024  # bytes for posix_spawn_file_actions_t / posix_spawnattr_t / sigset_t


class _Spawn:
    """glibc's posix_spawn family, resolved once."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        pointer, integer = ctypes.c_void_p, ctypes.c_int

        def function(name: str, *argtypes: Any) -> Any:
            found = getattr(libc, name, None)
            if found is not None:
                found.restype = integer
                found.argtypes = list(argtypes)
            return found

        self.spawn = function("posix_spawn", pointer, ctypes.c_char_p, pointer, pointer, pointer, pointer)
        self.actions_init = function("posix_spawn_file_actions_init", pointer)
        self.actions_destroy = function("posix_spawn_file_actions_destroy", pointer)
        self.add_dup2 = function("posix_spawn_file_actions_adddup2", pointer, integer, integer)
        self.add_open = function(
            "posix_spawn_file_actions_addopen", pointer, integer, ctypes.c_char_p, integer, ctypes.c_uint
        )
        self.add_chdir = function("posix_spawn_file_actions_addchdir_np", pointer, ctypes.c_char_p)
        self.add_closefrom = function("posix_spawn_file_actions_addclosefrom_np", pointer, integer)
        self.attr_init = function("posix_spawnattr_init", pointer)
        self.attr_destroy = function("posix_spawnattr_destroy", pointer)
        self.set_flags = function("posix_spawnattr_setflags", pointer, ctypes.c_short)
        self.set_sigmask = function("posix_spawnattr_setsigmask", pointer, pointer)
        self.set_sigdefault = function("posix_spawnattr_setsigdefault", pointer, pointer)
        self.sigemptyset = function("sigemptyset", pointer)
        self.sigaddset = function("sigaddset", pointer, integer)
        if self.spawn is None or self.add_chdir is None:
            raise OSError("this C library has no posix_spawn with chdir (glibc >= 2.29 needed)")


_spawn_library: _Spawn | None = None


def _posix_spawn(
    path: str,
    argv: Sequence[str],
    child_env: _ChildEnvironment,
    *,
    stdin: int,
    stdout: int,
    stderr: int,
    extra: Sequence[int],
    cwd: Path | None,
) -> tuple[int, int]:
    """(pid, 0), or (0, errno) when the program could not be started."""
    global _spawn_library
    if _spawn_library is None:
        _spawn_library = _Spawn()
    lib = _spawn_library
    actions = ctypes.create_string_buffer(_STRUCT_ROOM)
    attributes = ctypes.create_string_buffer(_STRUCT_ROOM)
    signals = ctypes.create_string_buffer(_STRUCT_ROOM)
    lib.actions_init(actions)
    lib.attr_init(attributes)
    try:
        if stdin >= 0:
            lib.add_dup2(actions, stdin, 0)
        else:
            lib.add_open(actions, 0, b"/dev/null", os.O_RDONLY, 0)
        lib.add_dup2(actions, stdout, 1)
        lib.add_dup2(actions, stderr, 2)
        for index, fd in enumerate(extra):
            lib.add_dup2(actions, fd, _CHILD_FD_BASE + index)  # dup2 clears close-on-exec on the copy
        if cwd is not None:
            lib.add_chdir(actions, os.fsencode(cwd))
        if lib.add_closefrom is not None:  # like subprocess's close_fds (glibc >= 2.34)
            lib.add_closefrom(actions, _CHILD_FD_BASE + len(extra))
        lib.set_flags(attributes, _POSIX_SPAWN_SETSID | _POSIX_SPAWN_SETSIGMASK | _POSIX_SPAWN_SETSIGDEF)
        lib.sigemptyset(signals)
        lib.set_sigmask(attributes, signals)
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; children expect defaults
            lib.sigaddset(signals, int(signum))
        lib.set_sigdefault(attributes, signals)
        arguments = [os.fsencode(argument) for argument in argv]
        argv_array = (ctypes.c_char_p * (len(arguments) + 1))(*arguments, None)
        envp = child_env.envp()
        pid = ctypes.c_int(0)
        error = lib.spawn(ctypes.byref(pid), os.fsencode(path), actions, attributes, argv_array, envp)
        return (0, error) if error else (pid.value, 0)
    finally:
        lib.actions_destroy(actions)
        lib.attr_destroy(attributes)


_inherited_fds: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "gitops_tui_inherited_fds", default=()
)


@contextlib.contextmanager
def secret_pipe(content: memoryview) -> Iterator[str]:
    """A pipe pre-filled with ``content``; yields ``/dev/fd/N``, the path the children see it at.

    Only commands started by :func:`run_command` in this context (this task) get the pipe, as fd N; the
    content goes from ``content`` (e.g. a locked buffer) to the kernel's pipe buffer without a copy in our
    memory. A pipe is read once: use it for one command. At most 1 MiB.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        if len(content) > 65536:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, len(content))
        written = 0
        while written < len(content):
            with content[written:] as rest:
                written += os.write(write_end, rest)
        os.close(write_end)
        write_end = -1
        high = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
        os.close(read_end)
        read_end = high
        current = _inherited_fds.get()
        token = _inherited_fds.set((*current, read_end))
        try:
            yield f"/dev/fd/{_CHILD_FD_BASE + len(current)}"
        finally:
            _inherited_fds.reset(token)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)


class _Child:
    """What run_command needs of a started child: pid, pipes as asyncio streams, returncode, wait()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._loop = loop
        self._exited: asyncio.Future[int] = loop.create_future()
        self._transports: list[asyncio.BaseTransport] = []
        self._pidfd = -1

    @classmethod
    async def attach(
        cls, loop: asyncio.AbstractEventLoop, pid: int, stdin: int, stdout: int, stderr: int
    ) -> _Child:
        child = cls(loop, pid)
        child._watch_exit()
        try:
            child.stdout = await child._reader(stdout)
            stdout = -1
            child.stderr = await child._reader(stderr)
            stderr = -1
            if stdin >= 0:
                pipe = os.fdopen(stdin, "wb", buffering=0)
                stdin = -1
                transport, protocol = await loop.connect_write_pipe(
                    lambda: asyncio.streams.FlowControlMixin(loop=loop), pipe
                )
                child._transports.append(transport)
                child.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        except BaseException:
            for fd in (stdin, stdout, stderr):
                if fd >= 0:
                    os.close(fd)
            child.close()
            raise
        return child

    async def _reader(self, fd: int) -> asyncio.StreamReader:
        reader = asyncio.StreamReader(limit=_READ_CHUNK, loop=self._loop)
        pipe = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await self._loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=self._loop), pipe
        )
        self._transports.append(transport)
        return reader

    def _watch_exit(self) -> None:
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (Linux < 5.3): a thread waits instead
            waiter = self._loop.run_in_executor(None, os.waitpid, self.pid, 0)
            waiter.add_done_callback(self._waited)
            return
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # someone else reaped it: the status is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._exit_with(status)

    def _waited(self, waiter: asyncio.Future[tuple[int, int]]) -> None:
        try:
            _, status = waiter.result()
        except ChildProcessError:
            status = 255 << 8
        self._exit_with(status)

    def _exit_with(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def close(self) -> None:
        """Close our pipe ends (the exit watch goes on until the child is reaped)."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()


async def _stop(process: _Child, pgid: int, tasks: Sequence[asyncio.Task[None]]) -> int:
    """SIGTERM the group, SIGKILL it after the grace period, wait for the leader and the pipes."""
    try:
        if process.returncode is None:
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
    finally:
        # Even when the leader went on SIGTERM, a child that ignores it is still there.
        _signal_group(pgid, signal.SIGKILL)
    returncode = await _leader_exit(process)  # asyncio's child watcher reaps; this observes it
    _, stragglers = await asyncio.wait(tasks, timeout=_DRAIN_AFTER_KILL_SECONDS)
    for task in stragglers:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return returncode


async def _leader_exit(process: _Child) -> int:
    """The leader's exit status, as soon as it exits.

    ``Process.wait()`` also waits for the pipes to close, which never happens while a
    background child still holds them, so its ``returncode`` is checked meanwhile.
    """
    waiter = asyncio.ensure_future(process.wait())
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=_EXIT_POLL_SECONDS)
            if done:
                return waiter.result()
            if process.returncode is not None:
                return process.returncode
    finally:
        waiter.cancel()


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _pump(stream: asyncio.StreamReader, pump: _LinePump) -> None:
    try:
        while chunk := await stream.read(_READ_CHUNK):
            pump.feed(chunk)
    finally:
        pump.finish()


async def _feed_stdin(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child stopped reading; its exit status says what happened
    finally:
        stdin.close()


class _LinePump:
    """Turns one pipe's bytes into lines: batched for the sink, copied into the shared tail."""

    def __init__(
        self,
        stream: StreamName,
        sink: LineSink | None,
        tail: deque[str],
        on_sink_error: Callable[[], None],
    ) -> None:
        self._stream: StreamName = stream
        self._sink = sink
        self._tail = tail
        self._on_sink_error = on_sink_error
        self._loop = asyncio.get_running_loop()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # text after the last newline
        self._pending: list[str] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self.sink_error: Exception | None = None

    def feed(self, data: bytes) -> None:
        self._take_text(self._decoder.decode(data))

    def finish(self) -> None:
        self._take_text(self._decoder.decode(b"", final=True))
        if self._partial:
            self._add_lines([self._partial])
            self._partial = ""
        self._flush()

    def _take_text(self, text: str) -> None:
        if not text:
            return
        text = self._partial + text
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        self._partial = lines.pop()
        if lines:
            if max(map(len, lines)) > MAX_LINE_CHARS:
                lines = [piece for line in lines for piece in _split_long_line(line)]
            self._add_lines(lines)
        if len(self._partial) > MAX_LINE_CHARS:
            *pieces, self._partial = _split_long_line(self._partial)
            self._add_lines(pieces)

    def _add_lines(self, lines: list[str]) -> None:
        self._tail.extend(lines)
        if self._sink is None:
            return
        pending = self._pending
        pending.extend(lines)
        if len(pending) >= BATCH_MAX_LINES:
            full = len(pending) - len(pending) % BATCH_MAX_LINES
            for start in range(0, full, BATCH_MAX_LINES):
                self._deliver(pending[start : start + BATCH_MAX_LINES])
            del pending[:full]
            self._cancel_timer()  # the batch that started the timer is gone
        if pending and self._flush_timer is None:
            self._flush_timer = self._loop.call_later(BATCH_INTERVAL_SECONDS, self._on_timer)

    def _on_timer(self) -> None:
        self._flush_timer = None
        self._flush()

    def _flush(self) -> None:
        self._cancel_timer()
        if self._pending:
            batch, self._pending = self._pending, []
            self._deliver(batch)

    def _cancel_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _deliver(self, batch: list[str]) -> None:
        if self._sink is None:
            return
        try:
            self._sink(self._stream, batch)
        except Exception as error:  # the caller's bug: stop the command and report it
            self.sink_error = error
            self._sink = None
            self._pending.clear()
            self._on_sink_error()


def _split_long_line(line: str) -> list[str]:
    return [line[start : start + MAX_LINE_CHARS] for start in range(0, len(line), MAX_LINE_CHARS)] or [""]


def _label(argv: Sequence[str]) -> str:
    """The program and its leading subcommands ("flux bootstrap git"), for messages."""
    words = [Path(argv[0]).name]
    for word in argv[1:3]:
        if not word or word.startswith("-") or "/" in word or "=" in word or len(word) > 32:
            break
        words.append(word)
    return " ".join(words)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _last_meaningful_lines(tail: Sequence[str], count: int = 3, width: int = 200) -> list[str]:
    lines = [line.strip() for line in tail if line.strip()]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines[-count:]]
