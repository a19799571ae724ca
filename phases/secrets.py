"""Secret values held in mutable buffers that can be wiped.

Our code never turns a secret into a ``str``: it lives in a ``bytearray`` that is
zeroed in place by ``wipe()``. Code that must hand the value to a library gets a
short-lived view through ``exposed()``. The memory-hygiene work (locked pages,
no core dumps, scanning our own memory) builds on this type.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final, Protocol

REDACTED: Final = "••••••"


class DeclaredSecretLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def env(self) -> str: ...


class SecretWiped(RuntimeError):
    """A secret was used after it was wiped."""


class SecretValue:
    """A secret in a zeroable buffer. ``repr``/``str`` never show it."""

    __slots__ = ("_buffer", "_wiped", "name")

    def __init__(self, name: str, buffer: bytearray) -> None:
        self.name = name
        self._buffer = buffer
        self._wiped = False

    @classmethod
    def from_bytes(cls, name: str, data: bytes | bytearray | memoryview) -> SecretValue:
        return cls(name, bytearray(data))

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else f"{len(self._buffer)} bytes"
        return f"SecretValue({self.name!r}, {state})"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._buffer)

    def __bool__(self) -> bool:
        return not self._wiped and len(self._buffer) > 0

    def __eq__(self, other: object) -> bool:  # identity only: comparing values would copy them
        return self is other

    __hash__ = object.__hash__

    @property
    def wiped(self) -> bool:
        return self._wiped

    @contextmanager
    def exposed(self) -> Iterator[memoryview]:
        """A read-only view of the bytes, valid only inside the ``with`` block."""
        if self._wiped:
            raise SecretWiped(f"secret {self.name!r} was already wiped")
        view = memoryview(self._buffer).toreadonly()
        try:
            yield view
        finally:
            view.release()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self._wiped:
            raise SecretWiped(f"secret {self.name!r} was already wiped")
        self._buffer.extend(data)

    def wipe(self) -> None:
        """Zero the buffer in place, then drop it."""
        for index in range(len(self._buffer)):
            self._buffer[index] = 0
        self._buffer.clear()
        self._wiped = True


def take_from_env(variable: str) -> SecretValue | None:
    """Copy an environment variable into a SecretValue and remove it from the environment.

    Returns None when the variable is unset or empty.
    """
    raw = os.environb.get(variable.encode())
    if raw is None:
        return None
    os.environ.pop(variable, None)
    if not raw:
        return None
    return SecretValue.from_bytes(variable, raw)


class SecretStore:
    """The bootstrap secrets held during a run, by declared name."""

    def __init__(self) -> None:
        self._values: dict[str, SecretValue] = {}
        self.sources: dict[str, str] = {}  # name -> "env" | "prompt", for the prompt's listing
        self.wiped_count = 0

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
        """Zero every buffer; returns how many secrets were wiped."""
        count = 0
        for value in self._values.values():
            if not value.wiped:
                value.wipe()
                count += 1
        self._values.clear()
        self.wiped_count += count
        return count

    def redact(self, text: str) -> str:
        """Replace any held secret value inside ``text`` with a marker."""
        if not self._values or not text:
            return text
        encoded = text.encode("utf-8", "surrogateescape")
        changed = False
        for value in self._values.values():
            if not value:
                continue
            with value.exposed() as view:
                # bytes.find takes the buffer directly: no copy of the secret is made.
                start = encoded.find(view)
                while start != -1:
                    encoded = encoded[:start] + REDACTED.encode() + encoded[start + len(view) :]
                    changed = True
                    start = encoded.find(view, start + len(REDACTED.encode()))
        return encoded.decode("utf-8", "surrogateescape") if changed else text


def pattern_mismatch(value: SecretValue, pattern: str) -> bool:
    """True when ``pattern`` is set and the value does not match it (matched on the buffer, no str copy)."""
    if not pattern:
        return False
    with value.exposed() as view:
        return re.fullmatch(pattern.encode("utf-8"), view) is None
