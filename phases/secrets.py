"""Secret values held in mutable buffers that can be wiped.

Our code never turns a secret into a ``str``: it lives in a ``bytearray`` that is
zeroed in place by ``wipe()``. Code that must hand the value to a library gets a
short-lived view through ``exposed()``. The memory-hygiene work (locked pages,
no core dumps, scanning our own memory) builds on this type.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

REDACTED: Final = "••••••"


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
