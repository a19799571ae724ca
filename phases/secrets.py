"""Secret values held in locked buffers that can be wiped.

Our code never turns a secret into a ``str`` or ``bytes``: it lives in a :class:`phases.memory.LockedBuffer`
(mlocked, excluded from core dumps and from forked children) that ``wipe()`` zeroes and unmaps. Code that
must hand the value on gets a short-lived read-only view through ``exposed()`` and writes it straight into
another locked buffer, a socket or a pipe. When the store is wiped after phase 2 (with the sweep switched
on by ``phases.memory.harden_process``), the process's own memory is scanned for any copy left elsewhere.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final, Protocol

from phases import memory

REDACTED: Final = "••••••"

_log = logging.getLogger(__name__)


class DeclaredSecretLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def env(self) -> str: ...


class SecretWiped(RuntimeError):
    """A secret was used after it was wiped."""


# Every SecretValue alive and not wiped: what the log redaction replaces.
_held: weakref.WeakSet[SecretValue] = weakref.WeakSet()
_held_lock = threading.Lock()


class SecretValue:
    """A secret in locked, zeroable memory. ``repr``/``str`` never show it.

    ``SecretValue(name, data)`` copies ``data`` into locked memory; a ``bytearray`` passed in is zeroed (its
    ownership moves here, as before when the bytearray itself was kept).
    """

    __slots__ = ("__weakref__", "_buffer", "_forms", "_length", "_wiped", "name")

    def __init__(self, name: str, buffer: bytes | bytearray | memoryview = b"") -> None:
        self.name = name
        self._forms: memory.NeedleSet | None = None
        self._wiped = False
        with memoryview(buffer) as source, source.cast("B") as octets:
            self._length = len(octets)
            self._buffer = memory.LockedBuffer(self._length)
            self._buffer.view[: self._length] = octets
        if isinstance(buffer, bytearray):
            buffer[:] = bytes(len(buffer))
        with _held_lock:
            _held.add(self)

    @classmethod
    def from_bytes(cls, name: str, data: bytes | bytearray | memoryview) -> SecretValue:
        """A copy of ``data`` in locked memory (``data`` itself is left as it is)."""
        with memoryview(data) as view:
            return cls(name, view)

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else f"{self._length} bytes"
        return f"SecretValue({self.name!r}, {state})"

    __str__ = __repr__

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return not self._wiped and self._length > 0

    def __eq__(self, other: object) -> bool:  # identity only: comparing values would copy them
        return self is other

    __hash__ = object.__hash__

    def __reduce__(self) -> Any:
        raise TypeError("a SecretValue cannot be pickled or copied")

    @property
    def wiped(self) -> bool:
        return self._wiped

    @contextmanager
    def exposed(self) -> Iterator[memoryview]:
        """A read-only view of the bytes (in locked memory), valid only inside the ``with`` block."""
        if self._wiped:
            raise SecretWiped(f"secret {self.name!r} was already wiped")
        with self._buffer.view[: self._length] as part:
            view = part.toreadonly()
        try:
            yield view
        finally:
            view.release()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._wiped:
            raise SecretWiped(f"secret {self.name!r} was already wiped")
        with memoryview(data) as source, source.cast("B") as octets:
            size = len(octets)
            needed = self._length + size
            if needed > self._buffer.capacity:
                larger = memory.LockedBuffer(max(needed, self._buffer.capacity * 2))
                larger.view[: self._length] = self._buffer.view[: self._length]
                self._buffer.close()
                self._buffer = larger
            self._buffer.view[self._length : needed] = octets
            self._length = needed
        self._drop_forms()

    def forms(self) -> memory.NeedleSet:
        """The value's text forms (raw, JSON, URL-encoded, base64), kept in locked memory, for redaction."""
        if self._wiped:
            raise SecretWiped(f"secret {self.name!r} was already wiped")
        if self._forms is None:
            forms = memory.NeedleSet()
            forms.add(self, memory.TEXT_FORMS, halves=False)
            self._forms = forms
        return self._forms

    def _drop_forms(self) -> None:
        if self._forms is not None:
            self._forms.wipe()
            self._forms = None

    def wipe(self) -> None:
        """Zero the buffer in place and unmap it."""
        self._drop_forms()
        self._buffer.close()
        self._length = 0
        self._wiped = True
        with _held_lock:
            _held.discard(self)


# Values taken by take_env_early(), by variable, until a SecretStore takes them.
_early: dict[str, SecretValue] = {}
_early_lock = threading.Lock()


def take_env_early(declared: Iterable[DeclaredSecretLike]) -> list[str]:
    """Take the declared variables out of the environment now, at start-up; returns the variables found.

    Call it before anything reads the environment: code that copies ``os.environ`` (a child's environment
    built from ``os.environ.items()``, a sandbox or a UI started first) leaves ``str`` copies of every value,
    and a child started before the intake inherits them. The values wait in locked buffers until
    :meth:`SecretStore.take_env` (or :func:`take_from_env`) asks for them; what is never asked for is wiped
    at exit.
    """
    found: list[str] = []
    for secret in declared:
        with _early_lock:
            if secret.env in _early:
                continue
        value = _take_from_environment(secret.env)
        if value is not None:
            with _early_lock:
                _early[secret.env] = value
            found.append(secret.env)
    return found


@atexit.register
def _wipe_early() -> None:
    with _early_lock:
        values = list(_early.values())
        _early.clear()
    for value in values:
        value.wipe()


def take_from_env(variable: str) -> SecretValue | None:
    """Copy an environment variable into a SecretValue and remove it from every copy of the environment.

    The value is zeroed in Python's ``os.environ`` object, in the C library's environment and in the
    process's initial environment block (what ``/proc/PID/environ`` shows), then unset. A value taken
    earlier by :func:`take_env_early` is handed over instead. Returns None when the variable is unset or
    empty.
    """
    with _early_lock:
        early = _early.pop(variable, None)
    if early is not None and early:
        return early
    return _take_from_environment(variable)


def _take_from_environment(variable: str) -> SecretValue | None:
    key = os.fsencode(variable)
    raw = os.environb.get(key)
    value = SecretValue.from_bytes(variable, raw) if raw else None
    del raw
    memory.scrub_environment_variable(variable)
    return value


def _redact(text: str, values: Iterable[SecretValue]) -> str:
    if not text:
        return text
    encoded = bytearray(text, "utf-8", "surrogateescape")
    try:
        changed = False
        for value in values:
            if value:
                changed = value.forms().redact(encoded, REDACTED.encode()) or changed
        return encoded.decode("utf-8", "surrogateescape") if changed else text
    finally:
        encoded[:] = bytes(len(encoded))


def redact_held(text: str) -> str:
    """``text`` with every SecretValue alive in this process (any form: raw, JSON, URL, base64) replaced."""
    with _held_lock:
        values = list(_held)
    return _redact(text, values) if values else text


class SecretRedactionFilter(logging.Filter):
    """Replaces held secret values in a record's message and exception text with a marker."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def _redact_record(record: logging.LogRecord) -> None:
    with _held_lock:
        if not _held:
            return
    if not getattr(record, "_gitops_tui_redacted", False):
        record._gitops_tui_redacted = True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to logging's own error handling
            message = None
        if message is not None:
            redacted = redact_held(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        if record.stack_info:
            record.stack_info = redact_held(record.stack_info)
    # Another handler may have formatted the exception already (the record is shared): redact that text.
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_held(record.exc_text)


_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record at creation (a record factory), whatever handler writes it. Idempotent."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _factory_installed = True


class SecretStore:
    """The bootstrap secrets held during a run, by declared name."""

    def __init__(self) -> None:
        self._values: dict[str, SecretValue] = {}
        self.sources: dict[str, str] = {}  # name -> "env" | "prompt", for the prompt's listing
        self.wiped_count = 0
        self.last_sweep: memory.SweepReport | None = None  # the self-scan after the last wipe, if any ran

    def take_env(self, declared: Iterable[DeclaredSecretLike]) -> list[str]:
        """Move every declared env var into a buffer; returns the names found."""
        found: list[str] = []
        for secret in declared:
            value = take_from_env(secret.env)
            if value is not None:
                self.put(secret.name, value, source="env")
                found.append(secret.name)
        return found

    def put(self, name: str, value: SecretValue, *, source: str) -> None:
        previous = self._values.get(name)
        if previous is not None and previous is not value:
            previous.wipe()
        self._values[name] = value
        self.sources[name] = source

    def get(self, name: str) -> SecretValue | None:
        value = self._values.get(name)
        return value if value else None

    def missing(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if self.get(name) is None]

    def held(self) -> list[str]:
        return [name for name, value in self._values.items() if value]

    def wipe_all(self) -> int:
        """Zero every buffer, then (sweep on) scan memory in this thread; returns how many were wiped.

        On an event loop that must keep going (the UI's), use :meth:`wipe_buffers` and run the sweep in a
        worker thread, as the engine does.
        """
        count, sweep = self.wipe_buffers()
        if sweep is not None:
            sweep.run()
            memory.pause_point("after-sweep")
        return count

    def wipe_buffers(self) -> tuple[int, PendingSweep | None]:
        """Zero every buffer now; returns how many were wiped and the memory sweep still to run, if any.

        With the sweep on (``phases.memory.harden_process``), the values' forms are first copied into locked
        memory (with those :func:`phases.memory.sweep_later` remembered); :meth:`PendingSweep.run` then scans
        the process's writable memory, zeroes every copy found and sets ``last_sweep``. Test-only pause
        points surround it.
        """
        held = [value for value in self._values.values() if not value.wiped]
        needles: memory.NeedleSet | None = None
        if memory.sweep_enabled():
            pending = memory.take_pending_needles()
            if held or pending is not None:
                memory.pause_point("before-wipe")
                needles = memory.NeedleSet()
                for value in held:
                    needles.add(value)
                if pending is not None:
                    needles.merge(pending)
        count = 0
        for value in held:
            value.wipe()
            count += 1
        self._values.clear()
        self.wiped_count += count
        if needles is None:
            return count, None
        return count, PendingSweep(self, needles, count, [value.name for value in held])

    def redact(self, text: str) -> str:
        """Replace any held secret value inside ``text`` (raw, JSON, URL or base64 form) with a marker."""
        if not self._values or not text:
            return text
        return _redact(text, self._values.values())


class PendingSweep:
    """The scan that follows a wipe (the values are zeroed already); :meth:`run` it once, in any thread.

    It takes about half a second per 100 MB: on a UI loop, run it in a worker thread (``asyncio.to_thread``);
    its searches release the GIL. Until it ran, the forms to look for wait in locked memory. The caller
    passes the test-only ``after-sweep`` pause point, in the main thread (a pause must restore the SIGCONT
    handler, which only the main thread can).
    """

    def __init__(self, store: SecretStore, needles: memory.NeedleSet, count: int, primary: list[str]) -> None:
        self._store = store
        self._needles: memory.NeedleSet | None = needles
        self._count = count
        self._primary = primary

    def run(self) -> memory.SweepReport | None:
        """Scan, zero every copy found, set the store's ``last_sweep`` and log it; None if it already ran."""
        needles, self._needles = self._needles, None
        if needles is None:
            return None
        report = memory.sweep(needles, secrets_wiped=self._count, primary=self._primary)
        self._store.last_sweep = report
        _log.info(
            "memory sweep: %s (%.0f MB in %.2f s)",
            report.summary(),
            report.bytes_scanned / 1e6,
            report.seconds,
        )
        return report


def pattern_mismatch(value: SecretValue, pattern: str) -> bool:
    """True when ``pattern`` is set and the value does not match it (matched on the buffer, no str copy)."""
    if not pattern:
        return False
    with value.exposed() as view:
        return re.fullmatch(pattern.encode("utf-8"), view) is None
