"""Run state persisted between runs: per-step status, timestamps, durations and last error.

The file never holds a secret value. It is written atomically (temporary file in
the same directory, fsync, rename), created 0600 inside a 0700 directory, and a
lock file keeps a second gitops-tui from using the same state at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from phases.events import StepStatus

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
SCHEMA_VERSION = 1


class StateLocked(Exception):
    """Another gitops-tui holds the state directory."""


class StateCorrupt(Exception):
    """The state file cannot be read; it is kept aside, never overwritten silently."""


@dataclass
class StepRecord:
    status: StepStatus = "pending"
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    last_duration: float | None = None  # of the last run that did the work, for estimates
    error: str | None = None
    attempts: int = 0


@dataclass
class RunState:
    version: int = SCHEMA_VERSION
    run_id: str = ""
    status: str = "never-run"
    started_at: float | None = None
    finished_at: float | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)

    def step(self, key: str) -> StepRecord:
        return self.steps.setdefault(key, StepRecord())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        steps = {key: StepRecord(**value) for key, value in data.get("steps", {}).items()}
        return cls(
            version=int(data.get("version", SCHEMA_VERSION)),
            run_id=str(data.get("run_id", "")),
            status=str(data.get("status", "never-run")),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            steps=steps,
        )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 (and tighten it if it exists and is ours)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):
        path.chmod(0o700)
    return path


def write_private_file(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``, mode 0600."""
    ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class StateStore:
    """The state directory: state.json plus its lock.

    The lock is held per process: the CLI takes it for the whole session, and the engine taking
    it again in the same process only counts up (flock would otherwise refuse our own second fd).
    """

    _held: ClassVar[dict[Path, tuple[TextIO, int]]] = {}

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._acquired = 0

    def load(self) -> RunState:
        if not self.path.exists():
            return RunState()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return RunState.from_json(data)
        except (ValueError, TypeError) as error:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            self.path.replace(aside)
            raise StateCorrupt(
                f"{self.path}: unreadable run state ({error}); moved it to {aside} and starting fresh"
            ) from None

    def save(self, state: RunState) -> None:
        write_private_file(self.path, json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")

    def acquire(self) -> None:
        """Take the lock, or raise StateLocked naming the holder."""
        ensure_private_dir(self.directory)
        lock_path = (self.directory / LOCK_FILE).resolve()
        held = StateStore._held.get(lock_path)
        if held is not None:
            StateStore._held[lock_path] = (held[0], held[1] + 1)
            self._acquired += 1
            return
        handle = lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateLocked(
                f"another gitops-tui ({holder}) is using {self.directory}; wait for it to finish or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        lock_path.chmod(0o600)
        StateStore._held[lock_path] = (handle, 1)
        self._acquired += 1

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired -= 1
        lock_path = (self.directory / LOCK_FILE).resolve()
        handle, count = StateStore._held[lock_path]
        if count > 1:
            StateStore._held[lock_path] = (handle, count - 1)
            return
        del StateStore._held[lock_path]
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[StateStore]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()
