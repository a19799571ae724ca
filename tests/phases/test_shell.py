"""run_command against real child processes (sh, seq, cat)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from phases import shell
from phases.secrets import SecretValue
from phases.shell import (
    BATCH_MAX_LINES,
    MAX_LINE_CHARS,
    TAIL_LINES,
    CommandFailed,
    CommandNotFound,
    CommandTimedOut,
    kill_all_children,
    live_process_groups,
    run_command,
    which,
)

_PR_SET_CHILD_SUBREAPER = 36

# Prints the background grandchild's pid, then the leader's, then waits.
GROUP_SCRIPT = 'sleep 100 & echo "grandchild $!"; echo "leader $$"; wait'


class Recorder:
    """An on_output sink that keeps every batch with its arrival time."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str], float]] = []
        self.pids: dict[str, int] = {}
        self.pids_seen = asyncio.Event()

    def __call__(self, stream: str, lines: Sequence[str]) -> None:
        self.batches.append((stream, list(lines), time.monotonic()))
        for line in lines:
            role, _, pid = line.partition(" ")
            if role in ("grandchild", "leader") and pid.isdigit():
                self.pids[role] = int(pid)
        if len(self.pids) == 2:
            self.pids_seen.set()

    def lines(self, stream: str = "stdout") -> list[str]:
        return [line for name, batch, _ in self.batches if name == stream for line in batch]


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Orphaned grandchildren are re-parented to this process, so a test can reap them and
    read how they died (PID 1 in this sandbox never reaps orphans)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not available")
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def assert_reaped(pid: int) -> None:
    """Our direct child is gone: not running, and not a zombie waiting for us."""
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still there"


def reap_orphan(pid: int, timeout: float = 5.0) -> int:
    """Wait for a re-parented grandchild to die; return the signal that killed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not re-parented to us yet: its parent is still alive
            reaped, status = 0, 0
        if reaped == pid:
            assert not Path(f"/proc/{pid}").exists()
            assert os.WIFSIGNALED(status), f"process {pid} exited by itself ({status})"
            return os.WTERMSIG(status)
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is still alive after {timeout} s")


async def test_streams_stdout_in_order_in_few_batches() -> None:
    recorder = Recorder()
    result = await run_command(["seq", "10000"], on_output=recorder)

    assert recorder.lines() == [str(n) for n in range(1, 10001)]
    assert all(len(batch) <= BATCH_MAX_LINES for _, batch, _ in recorder.batches)
    assert len(recorder.batches) <= 15
    assert result.returncode == 0
    assert result.output_tail == tuple(str(n) for n in range(10001 - TAIL_LINES, 10001))


async def test_a_quiet_command_gets_its_lines_delivered_before_it_exits() -> None:
    recorder = Recorder()
    await run_command(["sh", "-c", "echo early; sleep 0.6; echo late"], on_output=recorder)
    finished = time.monotonic()

    (_, first, first_at), (_, second, _) = recorder.batches
    assert (first, second) == (["early"], ["late"])
    assert finished - first_at > 0.4  # flushed by the 50 ms timer, not at EOF


async def test_stderr_is_delivered_separately_and_both_are_in_the_tail() -> None:
    recorder = Recorder()
    result = await run_command(
        ["sh", "-c", "echo out; echo err >&2; printf 'crlf\\r\\n'"], on_output=recorder
    )

    assert recorder.lines("stdout") == ["out", "crlf"]
    assert recorder.lines("stderr") == ["err"]
    assert sorted(result.output_tail) == ["crlf", "err", "out"]


async def test_non_zero_exit_raises_command_failed_with_the_last_lines() -> None:
    with pytest.raises(CommandFailed) as caught:
        await run_command(["sh", "-c", "echo starting; echo 'boom: disk full' >&2; exit 3"])

    error = caught.value
    assert error.returncode == 3
    assert sorted(error.result.output_tail) == ["boom: disk full", "starting"]
    message = str(error)
    assert "\n" not in message
    assert message.startswith("sh exited with code 3: ")
    assert "boom: disk full" in message


async def test_check_false_returns_the_failed_result() -> None:
    result = await run_command(["sh", "-c", "echo nope; exit 7"], check=False)

    assert result.returncode == 7
    assert result.output_tail == ("nope",)
    assert result.argv == ("sh", "-c", "echo nope; exit 7")
    assert result.duration > 0


async def test_stdin_data_and_extra_env_reach_the_child(tmp_path: Path) -> None:
    result = await run_command(
        ["sh", "-c", 'cat; echo "$GREETING from $(pwd)"'],
        stdin_data=b"line one\nline two\n",
        env={"GREETING": "hello"},
        cwd=tmp_path,
    )

    assert result.output_tail == ("line one", "line two", f"hello from {tmp_path}")


async def test_missing_tool_is_named_with_an_install_hint(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound) as caught:
        await run_command(["flux", "bootstrap", "git"], env={"PATH": str(tmp_path)})

    assert caught.value.program == "flux"
    assert str(caught.value) == (
        "flux was not found on PATH; install the Flux CLI: https://fluxcd.io/flux/installation/"
    )

    with pytest.raises(CommandNotFound, match=r"^no-such-tool-x1 was not found on PATH; check that it is"):
        await run_command(["no-such-tool-x1"])


def test_which_searches_the_childs_path(tmp_path: Path) -> None:
    tool = tmp_path / "helm"
    tool.write_text("#!/bin/sh\necho fake helm\n")
    tool.chmod(0o755)

    assert which("helm", env={"PATH": str(tmp_path)}) == tool
    assert which("sh", env={"PATH": str(tmp_path)}) is None
    assert which("./helm", cwd=tmp_path) == tmp_path / "helm"
    assert which("sh") is not None


async def test_timeout_stops_the_whole_group_including_a_grandchild(subreaper: None) -> None:
    recorder = Recorder()
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as caught:
        await run_command(["sh", "-c", GROUP_SCRIPT], on_output=recorder, timeout=0.5)

    assert time.monotonic() - started < 2.0  # SIGTERM worked; no need for the SIGKILL grace
    assert str(caught.value) == "sh timed out after 0.5 s and was stopped"
    assert caught.value.result.returncode == -signal.SIGTERM
    assert_reaped(recorder.pids["leader"])
    assert reap_orphan(recorder.pids["grandchild"]) == signal.SIGTERM
    assert live_process_groups() == frozenset()


async def test_a_group_that_ignores_sigterm_gets_sigkill_after_the_grace(
    subreaper: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "KILL_GRACE_SECONDS", 0.3)
    recorder = Recorder()
    started = time.monotonic()
    with pytest.raises(CommandTimedOut):
        await run_command(["sh", "-c", "trap '' TERM; " + GROUP_SCRIPT], on_output=recorder, timeout=0.3)

    assert 0.55 <= time.monotonic() - started < 2.0  # timeout + grace
    assert_reaped(recorder.pids["leader"])
    assert reap_orphan(recorder.pids["grandchild"]) == signal.SIGKILL


async def test_cancellation_stops_the_group_and_reraises(subreaper: None) -> None:
    recorder = Recorder()
    task = asyncio.create_task(run_command(["sh", "-c", GROUP_SCRIPT], on_output=recorder))
    await asyncio.wait_for(recorder.pids_seen.wait(), 5)
    assert recorder.pids["leader"] in live_process_groups()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert_reaped(recorder.pids["leader"])
    assert reap_orphan(recorder.pids["grandchild"]) == signal.SIGTERM
    assert live_process_groups() == frozenset()


async def test_background_process_left_by_a_finished_command_is_killed(subreaper: None) -> None:
    recorder = Recorder()
    started = time.monotonic()
    # The orphan keeps stdout open; without the group kill this would wait 100 s for EOF.
    result = await run_command(["sh", "-c", 'sleep 100 & echo "grandchild $!"'], on_output=recorder)

    assert result.returncode == 0
    assert time.monotonic() - started < 2.0
    assert reap_orphan(recorder.pids["grandchild"]) == signal.SIGKILL


async def test_kill_all_children_ends_every_running_command(subreaper: None) -> None:
    recorder = Recorder()
    task = asyncio.create_task(run_command(["sh", "-c", GROUP_SCRIPT], on_output=recorder))
    await asyncio.wait_for(recorder.pids_seen.wait(), 5)

    assert kill_all_children() == 1

    with pytest.raises(CommandFailed, match=r"^sh was killed by SIGKILL"):
        await task
    assert reap_orphan(recorder.pids["grandchild"]) == signal.SIGKILL
    assert live_process_groups() == frozenset()
    assert kill_all_children() == 0


async def test_secret_env_reaches_the_child_environment_only(tmp_path: Path) -> None:
    secret = b"s3cr3t-" + os.urandom(12).hex().encode()
    (tmp_path / "expected").write_bytes(secret)
    go_file = tmp_path / "go"
    seen: dict[str, bytes] = {}

    def inspect_child(stream: str, lines: Sequence[str]) -> None:
        for line in lines:
            if line.startswith("pid "):
                pid = line.removeprefix("pid ")
                seen["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes()
                seen["environ"] = Path(f"/proc/{pid}/environ").read_bytes()
                go_file.touch()

    script = (
        'echo "pid $$"; while [ ! -e go ]; do sleep 0.01; done; '
        'if [ "$API_TOKEN" = "$(cat expected)" ]; then echo OK; else echo MISMATCH; fi; exit 4'
    )
    with pytest.raises(CommandFailed) as caught:
        await run_command(
            ["sh", "-c", script],
            secret_env={"API_TOKEN": SecretValue.from_bytes("API_TOKEN", secret)},
            cwd=tmp_path,
            on_output=inspect_child,
            timeout=10,
        )

    assert caught.value.result.output_tail[-1] == "OK"
    assert b"API_TOKEN=" + secret + b"\0" in seen["environ"]
    assert secret not in seen["cmdline"]
    texts = [str(caught.value), repr(caught.value), repr(caught.value.result), repr(caught.value.args)]
    assert not any(secret.decode() in text for text in texts)
    assert "API_TOKEN" not in os.environ


async def test_a_wiped_secret_is_refused_before_spawning() -> None:
    secret = SecretValue.from_bytes("API_TOKEN", b"gone")
    secret.wipe()
    with pytest.raises(Exception, match="already wiped"):
        await run_command(["true"], secret_env={"API_TOKEN": secret})


async def test_a_line_longer_than_the_limit_arrives_intact_in_pieces(tmp_path: Path) -> None:
    # Multi-byte characters make chunk boundaries fall inside a character.
    long_line = ("0123456789abcdéf€" * 13_000)[: 200 * 1024]
    source = tmp_path / "long.txt"
    source.write_text("before\n" + long_line + "\nafter\n", encoding="utf-8")
    recorder = Recorder()

    await run_command(["cat", str(source)], on_output=recorder)

    lines = recorder.lines()
    pieces = lines[1:-1]
    assert (lines[0], lines[-1]) == ("before", "after")
    assert "".join(pieces) == long_line
    assert [len(piece) for piece in pieces[:-1]] == [MAX_LINE_CHARS] * (len(pieces) - 1)
    assert 0 < len(pieces[-1]) <= MAX_LINE_CHARS


async def test_a_line_without_end_is_streamed_in_pieces_not_held_back() -> None:
    recorder = Recorder()
    script = "head -c 300000 /dev/zero | tr '\\0' x; sleep 0.6; echo"
    await run_command(["sh", "-c", script], on_output=recorder)
    finished = time.monotonic()

    pieces = recorder.lines()
    assert "".join(pieces) == "x" * 300_000
    first_at = recorder.batches[0][2]
    assert finished - first_at > 0.4  # the first 64 Ki pieces came before the line ended


async def test_a_million_lines_stream_with_bounded_memory() -> None:
    counted = 0
    batches = 0
    next_expected = 1

    def count(stream: str, lines: Sequence[str]) -> None:
        nonlocal counted, batches, next_expected
        assert lines[0] == str(next_expected)
        next_expected += len(lines)
        counted += len(lines)
        batches += 1

    tracemalloc.start()
    try:
        result = await run_command(["seq", "1000000"], on_output=count, timeout=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert counted == 1_000_000
    assert batches <= 1_100
    assert result.output_tail == tuple(str(n) for n in range(1_000_001 - TAIL_LINES, 1_000_001))
    # Keeping the output would take well over 50 MB of str objects.
    assert peak < 16 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"


async def test_an_exception_in_the_sink_stops_the_command() -> None:
    def broken_sink(stream: str, lines: Sequence[str]) -> None:
        raise RuntimeError("sink bug")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="sink bug"):
        await run_command(["sh", "-c", "echo hi; sleep 100"], on_output=broken_sink)
    assert time.monotonic() - started < 2.0
    assert live_process_groups() == frozenset()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_leader_is_reaped_after_a_normal_exit() -> None:
    recorder = Recorder()
    await run_command(["sh", "-c", 'echo "leader $$"'], on_output=recorder)
    assert_reaped(recorder.pids["leader"])
