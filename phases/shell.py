"""Async child processes for the engine.

Every command runs in its own session (so its own process group) with stdin on
/dev/null unless data is given, stdout and stderr on pipes read concurrently, and
output delivered to a sink in batches of lines. A command's process group never
outlives it: on normal exit stray background processes are killed, on timeout or
cancellation the whole group gets SIGTERM, then SIGKILL after ``KILL_GRACE_SECONDS``.
Live groups are tracked so ``kill_all_children()`` can end them from a signal
handler or at interpreter exit.

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
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

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
) -> asyncio.subprocess.Process:
    child_env = _child_environment(env, secret_env)
    failure: CommandError | None = None
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE if with_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
            limit=_READ_CHUNK,
        )
    except FileNotFoundError:  # removed between which() and exec
        failure = CommandNotFound(command)
    except OSError as error:
        failure = CommandError(command, f"cannot start {_label(command)}: {error.strerror}")
    finally:
        # Drop our references to the secret bytes now, not when this frame dies.
        child_env.clear()
        del child_env
    # Raised outside the except block so no traceback (with Popen's env frames) is chained.
    assert failure is not None
    raise failure


def _child_environment(
    env: Mapping[str, str] | None, secret_env: Mapping[str, SecretValue] | None
) -> dict[bytes, bytes]:
    """Our environment, ``env`` over it, then the secrets: one bytes copy per secret.

    Kept small and separate so a zero-copy spawn (posix_spawn with envp pointing
    into the secret buffers) can replace it.
    """
    child_env = dict(os.environb)
    for name, value in (env or {}).items():
        child_env[os.fsencode(name)] = os.fsencode(value)
    try:
        for name, secret in (secret_env or {}).items():
            key = os.fsencode(name)
            if not key or b"=" in key or b"\0" in key:
                raise ValueError(f"invalid environment variable name {name!r}")
            with secret.exposed() as view:
                child_env[key] = bytes(view)
            if b"\0" in child_env[key]:
                raise ValueError(f"the secret for {name} contains a NUL byte, so it cannot be an env value")
    except BaseException:
        child_env.clear()
        raise
    return child_env


async def _stop(process: asyncio.subprocess.Process, pgid: int, tasks: Sequence[asyncio.Task[None]]) -> int:
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


async def _leader_exit(process: asyncio.subprocess.Process) -> int:
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
