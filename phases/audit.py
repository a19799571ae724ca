"""The day-2 audit log: one JSON line per action in ``<state dir>/audit.jsonl``.

Each line says who (OS user and host), when, what, on which object, the result, its message and how
long it took. The file is created 0600 in a 0700 directory and only ever appended to: an entry is one
``write()`` on a descriptor opened with ``O_APPEND``, so two writers (two threads, two sessions)
interleave whole lines, never parts of lines. Readers skip a line they cannot parse (a crash
mid-write, a hand edit) instead of refusing the whole log. Messages and reasons go through the
caller's redactor before they are written, so a secret that somehow reached an error message stays
out of the file.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from phases.state import ensure_private_dir

AUDIT_FILE: Final = "audit.jsonl"
MAX_TEXT: Final = 2000  # longer messages are cut: an entry stays one small write
DEFAULT_READ_LIMIT: Final = 1000
_READ_BLOCK: Final = 65536

Redactor = Callable[[str], str]


@dataclass(frozen=True)
class AuditEntry:
    time: str  # RFC 3339, UTC, milliseconds
    user: str
    host: str
    action: str  # suspend, resume, reconcile, reconcile-with-source, force-sync
    kind: str
    namespace: str
    name: str
    result: str  # succeeded, failed, timed-out, cancelled, suspended
    message: str = ""
    duration: float = 0.0  # seconds
    revision: str = ""
    reason: str = ""  # the reason given for a suspend

    @property
    def who(self) -> str:
        return f"{self.user}@{self.host}"

    @property
    def target(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def ok(self) -> bool:
        return self.result == "succeeded"

    def to_json_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Any) -> AuditEntry:
        """Parse one decoded line; ValueError when it is not an entry."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in data:
                if spec.name in _REQUIRED:
                    raise ValueError(f"missing {spec.name!r}")
                continue
            value = data[spec.name]
            if spec.name == "duration":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("duration is not a number")
                value = float(value)
            elif not isinstance(value, str):
                raise ValueError(f"{spec.name!r} is not a string")
            values[spec.name] = value
        return cls(**values)


_REQUIRED: Final = frozenset({"time", "user", "host", "action", "kind", "namespace", "name", "result"})


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        return str(os.getuid())


def current_host() -> str:
    return socket.gethostname() or "localhost"


def current_actor() -> str:
    """``user@host``: who runs this gitops-tui, as written into the audit log and suspend annotations."""
    return f"{current_user()}@{current_host()}"


def utc_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def audit_path(state_dir: Path) -> Path:
    return state_dir / AUDIT_FILE


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class AuditLog:
    """Appends entries to ``<state_dir>/audit.jsonl`` as ``user@host``, redacting free text first."""

    def __init__(
        self,
        state_dir: Path,
        *,
        redact: Redactor | None = None,
        user: str | None = None,
        host: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = audit_path(state_dir)
        self.redact: Redactor = redact or (lambda text: text)
        self.user = user or current_user()
        self.host = host or current_host()
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def actor(self) -> str:
        return f"{self.user}@{self.host}"

    def record(
        self,
        *,
        action: str,
        kind: str,
        namespace: str,
        name: str,
        result: str,
        message: str = "",
        duration: float = 0.0,
        revision: str = "",
        reason: str = "",
    ) -> AuditEntry:
        """Append one entry stamped now, as this log's user and host; returns what was written."""
        entry = AuditEntry(
            time=utc_timestamp(self._clock()),
            user=self.user,
            host=self.host,
            action=action,
            kind=kind,
            namespace=namespace,
            name=name,
            result=result,
            message=message,
            duration=round(duration, 3),
            revision=revision,
            reason=reason,
        )
        return self.append(entry)

    def append(self, entry: AuditEntry) -> AuditEntry:
        redacted = AuditEntry(
            **{
                **asdict(entry),
                "message": _cut(self.redact(entry.message)),
                "reason": _cut(self.redact(entry.reason)),
            }
        )
        append_entry(self.path, redacted)
        return redacted

    def read(self, limit: int = DEFAULT_READ_LIMIT) -> list[AuditEntry]:
        return read_audit(self.path, limit)


def append_entry(path: Path, entry: AuditEntry) -> None:
    """Append ``entry`` as one line with a single ``write()`` (O_APPEND), creating the file 0600."""
    ensure_private_dir(path.parent)
    line = (entry.to_json_line() + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(descriptor).st_mode & 0o077:  # an older or hand-made file: make it private
            with contextlib.suppress(PermissionError):
                os.fchmod(descriptor, 0o600)
        written = os.write(descriptor, line)
        if written != len(line):  # a full disk: the partial line is skipped by readers
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
    finally:
        os.close(descriptor)


def read_audit(path: Path, limit: int = DEFAULT_READ_LIMIT) -> list[AuditEntry]:
    """The last ``limit`` entries, newest first; lines that do not parse are skipped; [] without a file.

    Reads from the end of the file, so a long log costs only what is returned.
    """
    if limit <= 0:
        return []
    entries: list[AuditEntry] = []
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return []
    with handle:
        for raw in _lines_from_end(handle):
            try:
                entries.append(AuditEntry.from_json(json.loads(raw)))
            except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                continue
            if len(entries) >= limit:
                break
    return entries


def _lines_from_end(handle: BinaryIO) -> Iterator[bytes]:
    """Non-blank lines of ``handle``, last first, reading backwards block by block."""
    handle.seek(0, os.SEEK_END)
    position = handle.tell()
    head = b""  # the start of a line whose beginning lies in an earlier block
    while position > 0:
        step = min(_READ_BLOCK, position)
        position -= step
        handle.seek(position)
        lines = (handle.read(step) + head).split(b"\n")
        head = lines[0]
        for line in reversed(lines[1:]):
            if line.strip():
                yield line
    if head.strip():
        yield head
