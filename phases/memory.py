"""Secrets in process memory: locked buffers, start-up hardening, environment scrubbing, the self-scan.

What lives here, and why (see README "Security" for the guarantees and their limits):

* :class:`LockedBuffer`: a private anonymous mapping that is ``mlock``ed (never swapped), ``MADV_DONTDUMP``
  (not in core dumps) and ``MADV_WIPEONFORK`` (a forked child sees zeros), zeroed and unmapped by
  :meth:`LockedBuffer.close`. ``SecretValue`` keeps its bytes in one. Where ``mlock`` or ``madvise`` is
  refused the buffer still works, and :func:`protection` says what is missing (logged once).
* Encoders that write a value's forms (JSON string, base64, hex, URL-encoded, UTF-16/32) byte by byte into
  a locked buffer: no ``str`` or ``bytes`` object ever holds the value.
* :func:`scrub_environment_variable`: the value is zeroed where the C library keeps it (``getenv`` +
  ``memset``), in Python's ``os.environ`` bytes object and in the initial environment block
  (``env_start``..``env_end`` of ``/proc/self/stat``), then the variable is unset.
* The sweep: :class:`NeedleSet` (the forms to look for, in locked memory) and :func:`sweep`, which reads the
  process's own writable memory through ``/proc/self/mem`` (pages in use only, per ``/proc/self/pagemap``),
  finds every form with ``memmem`` over cache-sized chunks (without the GIL), zeroes every hit and reports a
  :class:`SweepReport` ("4 secrets wiped, 0 copies found").
* :func:`harden_process`: no core dumps, not dumpable (unless ``GITOPS_TUI_ALLOW_MEMORY_READ=1``), the sweep
  switched on, log records redacted.
* A small HTTP/1.1 client (:class:`HttpPool`) that writes a request assembled in a locked buffer to the
  socket (plain or TLS) and reads the answer into a locked buffer, plus a JSON reader that finds values in
  such a buffer without decoding it (:func:`json_values`, :func:`json_unescape_into`).

Everything here is Linux-specific (``/proc``, glibc ``getenv``); elsewhere the functions degrade to what
the platform allows and say so.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import mmap
import os
import re
import resource
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

__all__ = [
    "ALLOW_MEMORY_READ_ENV",
    "MIN_NEEDLE_BYTES",
    "PAUSE_AT_ENV",
    "PAUSE_FILE_ENV",
    "TEXT_FORMS",
    "Hardening",
    "HttpAnswer",
    "HttpPool",
    "HttpProtocolError",
    "LockedBuffer",
    "LockedWriter",
    "NeedleSet",
    "Protection",
    "SweepReport",
    "code_points",
    "decode_base64",
    "enable_sweep",
    "find_byte",
    "harden_process",
    "hardening",
    "is_utf8",
    "json_unescape_into",
    "json_values",
    "pause_point",
    "protection",
    "scrub_environment_variable",
    "sweep",
    "sweep_enabled",
    "sweep_later",
    "take_pending_needles",
    "tls_context",
    "wipe_bytes_object",
    "wipe_str_object",
    "write_base64",
    "write_json",
    "write_json_string",
]

_log = logging.getLogger(__name__)

ALLOW_MEMORY_READ_ENV: Final = "GITOPS_TUI_ALLOW_MEMORY_READ"
"""``=1`` keeps the process dumpable so a test (same user) can read ``/proc/PID/mem``; also enables pauses."""
PAUSE_AT_ENV: Final = "GITOPS_TUI_PAUSE_AT"
"""Test-only: comma-separated pause points (``before-wipe``, ``after-sweep``) where the process stops."""
PAUSE_FILE_ENV: Final = "GITOPS_TUI_PAUSE_FILE"
"""Test-only: a file that gets one line ``<point> <pid>`` just before the process stops itself."""

PAGE: Final = mmap.PAGESIZE
MIN_NEEDLE_BYTES: Final = 8
"""Shorter forms are not searched: zeroing every 5-byte match in a process would destroy unrelated data."""
MIN_DISTINCT_BYTES: Final = 5
"""A value with fewer distinct bytes (``aaaaaaaa``, ``12121212``) matches ordinary memory: not searched."""
SCAN_CHUNK: Final = 128 * 1024
"""Memory is searched this much at a time: it stays in the CPU cache while every needle is looked for."""
_MADV_WIPEONFORK: Final = 18  # Linux >= 4.14; the mmap module does not name it
_PR_SET_DUMPABLE: Final = 4
_PR_GET_DUMPABLE: Final = 3
_SSL_OP_CLEANSE_PLAINTEXT: Final = 0x2  # OpenSSL >= 3.0: cleanse received plaintext after handing it over
_MAX_HEADER_BYTES: Final = 64 * 1024


# -- the C library ------------------------------------------------------------------------------------------
# PyDLL/PYFUNCTYPE calls keep the GIL: no Python thread runs (and no os.environ change happens) in between.

_pylibc = ctypes.PyDLL(None, use_errno=True)
_libc = ctypes.CDLL(None, use_errno=True)


def _function_address(function: Any) -> int:
    address = ctypes.cast(function, ctypes.c_void_p).value
    assert address is not None
    return address


_memset: Callable[[int, int, int], int] = ctypes.PYFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
)(_function_address(ctypes.memset))
_memmove: Callable[[int, int, int], int] = ctypes.PYFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t
)(_function_address(ctypes.memmove))


def _c_function(library: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(library, name, None)
    if function is not None:
        function.restype = restype
        function.argtypes = list(argtypes)
    return function


_getenv = _c_function(_pylibc, "getenv", ctypes.c_void_p, ctypes.c_char_p)
_strlen = _c_function(_pylibc, "strlen", ctypes.c_size_t, ctypes.c_void_p)
_mlock = _c_function(_libc, "mlock", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_munlock = _c_function(_libc, "munlock", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_prctl = _c_function(
    _libc, "prctl", ctypes.c_int, ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong
)


# -- protection status ------------------------------------------------------------------------------------


@dataclass
class Protection:
    """What the secret buffers actually get on this machine (all True on Linux with mlock allowed)."""

    locked: bool = True  # mlock: never written to swap
    no_dump: bool = True  # MADV_DONTDUMP: not in core dumps
    wipe_on_fork: bool = True  # MADV_WIPEONFORK: a forked child sees zeros
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.problems:
            return "secret buffers locked, excluded from core dumps and from forked children"
        return "secret buffers only partly protected: " + "; ".join(self.problems)


_protection = Protection()
_protection_lock = threading.Lock()


def protection() -> Protection:
    """The protection secret buffers got so far (a copy)."""
    with _protection_lock:
        return Protection(
            _protection.locked, _protection.no_dump, _protection.wipe_on_fork, list(_protection.problems)
        )


def _record_problem(attribute: str, message: str) -> None:
    with _protection_lock:
        if getattr(_protection, attribute):
            setattr(_protection, attribute, False)
            _protection.problems.append(message)
            _log.warning("%s", message)


# -- locked buffers ----------------------------------------------------------------------------------------

# Address -> size of every LockedBuffer alive: the sweep never reports (or zeroes) what is inside them.
_live_regions: dict[int, int] = {}


class LockedBuffer:
    """Page-aligned private anonymous memory: locked, not dumped, wiped on fork; zeroed by ``close()``."""

    __slots__ = ("__weakref__", "_closed", "_map", "address", "capacity", "view")

    def __init__(self, size: int) -> None:
        capacity = max(PAGE, -(-max(size, 1) // PAGE) * PAGE)
        self._map = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        anchor = ctypes.c_char.from_buffer(self._map)
        self.address: int = ctypes.addressof(anchor)
        del anchor
        self.capacity: int = capacity
        self._closed = False
        self._protect()
        self.view: memoryview = memoryview(self._map)
        _live_regions[self.address] = capacity

    def _protect(self) -> None:
        try:
            self._map.madvise(mmap.MADV_DONTDUMP)
        except (OSError, AttributeError) as error:
            _record_problem("no_dump", f"MADV_DONTDUMP refused ({error}): secrets could reach core dumps")
        try:
            self._map.madvise(_MADV_WIPEONFORK)
        except OSError as error:
            _record_problem(
                "wipe_on_fork", f"MADV_WIPEONFORK refused ({error}): a forked child would inherit secrets"
            )
        if _mlock is None or _mlock(self.address, self.capacity) != 0:
            reason = os.strerror(ctypes.get_errno()) if _mlock is not None else "no mlock"
            _record_problem(
                "locked",
                f"mlock refused ({reason}; raise `ulimit -l`): secret buffers may be written to swap",
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def find(self, sub: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> int:
        """``bytes.find`` on the buffer itself: the buffer is searched in place, nothing is copied."""
        return self._map.find(sub, start, self.capacity if end is None else end)

    def zero(self, start: int = 0, end: int | None = None) -> None:
        stop = self.capacity if end is None else end
        if not self._closed and stop > start:
            _memset(self.address + start, 0, stop - start)

    def move(self, destination: int, source: int, length: int) -> None:
        """memmove inside the buffer (overlap allowed; no temporary copy, unlike a memoryview assignment)."""
        if length > 0:
            if destination < 0 or source < 0 or max(destination, source) + length > self.capacity:
                raise IndexError("move outside the buffer")
            _memmove(self.address + destination, self.address + source, length)

    def close(self) -> None:
        """Zero every byte, unlock and unmap. A view someone still holds sees zeros until it is released."""
        if self._closed:
            return
        _memset(self.address, 0, self.capacity)
        self._closed = True
        _live_regions.pop(self.address, None)
        if _munlock is not None:
            _munlock(self.address, self.capacity)
        with contextlib.suppress(BufferError):
            self.view.release()
        with contextlib.suppress(BufferError):  # a slice is still alive: unmapped when it goes
            self._map.close()

    def __del__(self) -> None:
        # Not contextlib.suppress: at interpreter exit the modules may be half torn down already.
        try:
            self.close()
        except Exception:
            return

    def __repr__(self) -> str:
        return f"LockedBuffer({self.capacity} bytes{', closed' if self._closed else ''})"


class LockedWriter:
    """Bytes appended to a :class:`LockedBuffer` that grows by copy-then-wipe (no old copy stays behind)."""

    __slots__ = ("_buffer", "length")

    def __init__(self, size_hint: int = PAGE) -> None:
        self._buffer = LockedBuffer(size_hint)
        self.length = 0

    @property
    def buffer(self) -> LockedBuffer:
        return self._buffer

    def reserve(self, extra: int) -> None:
        needed = self.length + extra
        if needed <= self._buffer.capacity:
            return
        larger = LockedBuffer(max(needed, self._buffer.capacity * 2))
        _memmove(larger.address, self._buffer.address, self.length)
        self._buffer.close()
        self._buffer = larger

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with memoryview(data) as source, source.cast("B") as octets:
            size = len(octets)
            self.reserve(size)
            self._buffer.view[self.length : self.length + size] = octets
            self.length += size

    def write_byte(self, value: int) -> None:
        self.reserve(1)
        self._buffer.view[self.length] = value
        self.length += 1

    def write_ascii(self, text: str) -> None:
        """Non-secret text (HTTP framing, JSON punctuation, names)."""
        self.write(text.encode("latin-1"))

    def view(self, start: int = 0, end: int | None = None) -> memoryview:
        """A read-only view of ``[start:end]`` of what was written; release it (``with``) after use."""
        stop = self.length if end is None else min(end, self.length)
        with self._buffer.view[start:stop] as part:
            return part.toreadonly()

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        return self._buffer.find(sub, start, self.length if end is None else min(end, self.length))

    def truncate(self, length: int) -> None:
        """Forget everything from ``length`` on (zeroed)."""
        if length < self.length:
            self._buffer.zero(length, self.length)
            self.length = length

    def recv_from(self, sock: socket.socket, size: int = 16 * 1024) -> int:
        """Append what the socket has (at most ``size`` bytes) into the buffer; 0 at end of stream."""
        self.reserve(size)
        with self._buffer.view[self.length : self.length + size] as room:
            received = sock.recv_into(room, size)
        self.length += received
        return received

    def close(self) -> None:
        self._buffer.close()
        self.length = 0

    def __enter__(self) -> LockedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SecretLike(Protocol):
    """What the sweep and the encoders need of a secret (``phases.secrets.SecretValue``)."""

    name: str

    def exposed(self) -> contextlib.AbstractContextManager[memoryview]: ...

    @property
    def wiped(self) -> bool: ...


# -- zeroing immutable objects in place (the safety net's tool; never for objects still in use) --------------


def wipe_bytes_object(value: bytes) -> bool:
    """Zero the contents of a ``bytes`` object in place. Only for objects nobody will read again.

    Length 0 and 1 objects are shared singletons and are left alone. Returns True when zeroed.
    """
    if type(value) is not bytes or len(value) <= 1:
        return False
    _memset(id(value) + bytes.__basicsize__ - 1, 0, len(value))
    return True


_STR_STATE_OFFSET: Final = 32  # ob_refcnt, ob_type, length, hash; then the state bit field (3.11-3.13)


def wipe_str_object(value: str, *, max_refcount: int) -> bool:
    """Zero the characters of a compact, non-interned ``str`` in place when nobody else holds it.

    ``max_refcount`` is what ``sys.getrefcount`` reports when only the caller's references exist (a
    constant in a code object, an interned name or a string someone else keeps raises it: left alone).
    Returns True when zeroed.
    """
    # getrefcount sees the caller's references, this function's parameter and its own argument.
    if type(value) is not str or len(value) <= 1 or sys.getrefcount(value) > max_refcount + 2:
        return False
    state = ctypes.c_uint32.from_address(id(value) + _STR_STATE_OFFSET).value
    interned, kind, compact = state & 0x3, (state >> 2) & 0x7, (state >> 5) & 0x1
    if interned or not compact or kind not in (1, 2, 4):
        return False
    header = sys.getsizeof(value) - (len(value) + 1) * kind
    if header <= _STR_STATE_OFFSET:
        return False
    _memset(id(value) + header, 0, len(value) * kind)
    return True


# -- encoders: a value's forms written byte by byte into locked memory ---------------------------------------

_HEX_LOWER: Final = b"0123456789abcdef"
_HEX_UPPER: Final = b"0123456789ABCDEF"
_B64: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_JSON_SHORT: Final = {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r"}
_JSON_SHORT_TAB: Final = {**_JSON_SHORT, 0x09: b"\\t"}


def code_points(view: memoryview) -> Iterator[int]:
    """The Unicode code points of UTF-8 ``view``, one int at a time; ValueError when it is not UTF-8."""
    index, size = 0, len(view)
    while index < size:
        lead = view[index]
        if lead < 0x80:
            yield lead
            index += 1
            continue
        if 0xC2 <= lead <= 0xDF:
            extra, point, lowest = 1, lead & 0x1F, 0x80
        elif 0xE0 <= lead <= 0xEF:
            extra, point, lowest = 2, lead & 0x0F, 0x800
        elif 0xF0 <= lead <= 0xF4:
            extra, point, lowest = 3, lead & 0x07, 0x10000
        else:
            raise ValueError("not UTF-8")
        if index + extra >= size:
            raise ValueError("not UTF-8 (truncated)")
        for offset in range(1, extra + 1):
            follow = view[index + offset]
            if follow & 0xC0 != 0x80:
                raise ValueError("not UTF-8")
            point = (point << 6) | (follow & 0x3F)
        if point < lowest or point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise ValueError("not UTF-8")
        yield point
        index += extra + 1


def is_utf8(view: memoryview) -> bool:
    try:
        for _ in code_points(view):
            pass
    except ValueError:
        return False
    return True


def _write_u_escape(out: LockedWriter, unit: int) -> None:
    out.write(b"\\u")
    for shift in (12, 8, 4, 0):
        out.write_byte(_HEX_LOWER[(unit >> shift) & 0xF])


def write_json_string(out: LockedWriter, view: memoryview, *, ensure_ascii: bool = False) -> None:
    """``"..."``: the UTF-8 value as a JSON string (``json.dumps`` escaping), written into ``out``.

    ValueError when the value is not UTF-8 text (JSON strings are text).
    """
    if not ensure_ascii and not is_utf8(view):
        raise ValueError("not UTF-8 text")
    out.write_byte(0x22)
    for point in code_points(view) if ensure_ascii else view:
        short = _JSON_SHORT_TAB.get(point)
        if short is not None:
            out.write(short)
        elif point < 0x20:
            _write_u_escape(out, point)
        elif point < 0x7F or not ensure_ascii:  # json.dumps escapes DEL too when ensure_ascii
            out.write_byte(point)
        elif point < 0x10000:
            _write_u_escape(out, point)
        else:
            reduced = point - 0x10000
            _write_u_escape(out, 0xD800 | (reduced >> 10))
            _write_u_escape(out, 0xDC00 | (reduced & 0x3FF))
    out.write_byte(0x22)


def write_base64(out: LockedWriter, view: memoryview) -> None:
    """Standard base64 with padding."""
    size = len(view)
    for start in range(0, size - size % 3, 3):
        group = (view[start] << 16) | (view[start + 1] << 8) | view[start + 2]
        for shift in (18, 12, 6, 0):
            out.write_byte(_B64[(group >> shift) & 0x3F])
    rest = size % 3
    if rest:
        group = view[size - rest] << 16
        if rest == 2:
            group |= view[size - 1] << 8
        out.write_byte(_B64[(group >> 18) & 0x3F])
        out.write_byte(_B64[(group >> 12) & 0x3F])
        out.write_byte(_B64[(group >> 6) & 0x3F] if rest == 2 else 0x3D)
        out.write_byte(0x3D)


_B64_VALUE: Final = {octet: index for index, octet in enumerate(_B64)}


def decode_base64(view: memoryview, out: LockedWriter) -> None:
    """Standard base64 (padding optional) decoded byte by byte into ``out``; ValueError if it is not."""
    bits = count = 0
    for octet in view:
        if octet == 0x3D:  # "=": the end
            break
        value = _B64_VALUE.get(octet)
        if value is None:
            raise ValueError("not base64")
        bits = (bits << 6 | value) & 0xFFFFFF
        count += 6
        if count >= 8:
            count -= 8
            out.write_byte((bits >> count) & 0xFF)


def _write_hex(out: LockedWriter, view: memoryview, digits: bytes) -> None:
    for octet in view:
        out.write_byte(digits[octet >> 4])
        out.write_byte(digits[octet & 0xF])


def _write_url(out: LockedWriter, view: memoryview, *, plus: bool, keep_slash: bool) -> None:
    for octet in view:
        if octet in _URL_SAFE or (keep_slash and octet == 0x2F):
            out.write_byte(octet)
        elif plus and octet == 0x20:
            out.write_byte(0x2B)
        else:
            out.write_byte(0x25)
            out.write_byte(_HEX_UPPER[octet >> 4])
            out.write_byte(_HEX_UPPER[octet & 0xF])


def _write_code_units(out: LockedWriter, view: memoryview, width: int) -> bool:
    """UTF-16-LE (width 2), UTF-32-LE (4) or Latin-1 (1); False when a character does not fit."""
    for point in code_points(view):
        if width == 1:
            if point > 0xFF:
                return False
            out.write_byte(point)
        elif width == 2:
            if point >= 0x10000:
                reduced = point - 0x10000
                for unit in (0xD800 | (reduced >> 10), 0xDC00 | (reduced & 0x3FF)):
                    out.write_byte(unit & 0xFF)
                    out.write_byte(unit >> 8)
            else:
                out.write_byte(point & 0xFF)
                out.write_byte(point >> 8)
        else:
            for shift in (0, 8, 16, 24):
                out.write_byte((point >> shift) & 0xFF)
    return True


def write_json(
    out: LockedWriter, value: object, *, default: Callable[[object, LockedWriter], None] | None = None
) -> None:
    """``json.dumps(value)`` written into ``out``; objects JSON does not know go to ``default(obj, out)``.

    Non-secret parts are encoded the ordinary way; ``default`` writes secrets straight into the buffer.
    """
    import json

    if value is None or isinstance(value, (bool, int, float, str)):
        out.write(json.dumps(value).encode("utf-8"))
    elif isinstance(value, Mapping):
        out.write_byte(0x7B)
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.write(b", ")
            out.write(json.dumps(str(key)).encode("utf-8"))
            out.write(b": ")
            write_json(out, item, default=default)
        out.write_byte(0x7D)
    elif isinstance(value, (list, tuple)):
        out.write_byte(0x5B)
        for index, item in enumerate(value):
            if index:
                out.write(b", ")
            write_json(out, item, default=default)
        out.write_byte(0x5D)
    elif default is not None:
        default(value, out)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- needles: the forms the sweep looks for -----------------------------------------------------------------


@dataclass(frozen=True)
class _Needle:
    secret: str
    form: str
    offset: int
    length: int
    part: bool  # a half of the value: only used when the full forms are long enough to be unambiguous


_SWEEP_FORMS: Final = (
    "raw",
    "latin-1",
    "utf-16-le",
    "utf-32-le",
    "json",
    "json-ascii",
    "url",
    "url-plus",
    "url-path",
    "hex",
    "HEX",
    "base64+0",
    "base64+1",
    "base64+2",
)
_HALVED_ONLY: Final = frozenset({"raw", "utf-16-le", "utf-32-le"})  # searched by halves only: fewer patterns
TEXT_FORMS: Final = (
    "raw",
    "json",
    "json-ascii",
    "url",
    "url-plus",
    "url-path",
    "base64+0",
    "base64+1",
    "base64+2",
)
"""The forms that can appear inside text (log lines, messages): what redaction replaces."""


def _distinctive(view: memoryview) -> bool:
    """Whether zeroing every match of ``view`` in memory is safe: a value of a few repeated bytes is not."""
    return len(set(view)) >= MIN_DISTINCT_BYTES  # a set of small ints: no copy of the value


def _halves_distinctive(view: memoryview) -> bool:
    """Whether each half of ``view`` can be searched alone: not when a half is a plain lowercase, uppercase
    or digit run (``mysecretpassword`` halves to ``password``, which libraries' own strings hold)."""
    middle = len(view) // 2
    for half in (view[:middle], view[middle:]):
        with half:
            distinct = set(half)
            plain = (
                all(0x61 <= b <= 0x7A for b in distinct)
                or all(0x41 <= b <= 0x5A for b in distinct)
                or all(0x30 <= b <= 0x39 for b in distinct)
            )
            if plain or len(distinct) < MIN_DISTINCT_BYTES:
                return False
    return True


class NeedleSet:
    """Encoded forms of secret values, kept in one locked buffer, to search memory (or text) for.

    The labels (secret name, form) are not secret. ``wipe()`` zeroes the forms.
    """

    def __init__(self) -> None:
        self._writer = LockedWriter()
        self._needles: list[_Needle] = []
        self.names: list[str] = []
        self.unsearchable: list[str] = []  # secrets too short to search for safely

    def __len__(self) -> int:
        return len(self._needles)

    @property
    def longest(self) -> int:
        return max((needle.length for needle in self._needles), default=0)

    @property
    def address(self) -> int:
        """Where the forms are (a locked buffer): a needle is ``length`` bytes at ``address + offset``."""
        return self._writer.buffer.address

    def add(self, secret: SecretLike, forms: Sequence[str] = _SWEEP_FORMS, *, halves: bool = True) -> None:
        """Add the forms of ``secret`` (still held) that are at least :data:`MIN_NEEDLE_BYTES` long."""
        if secret.wiped:
            return
        with secret.exposed() as view:
            if not _distinctive(view):
                self.unsearchable.append(secret.name)
                return
            halves = halves and len(view) // 2 >= MIN_NEEDLE_BYTES and _halves_distinctive(view)
            searchable = False
            for form in forms:
                if halves and form in _HALVED_ONLY:  # its halves (below) find a whole copy too
                    continue
                added = self._append(
                    secret.name, form, view, form, is_part=False, covered=view if halves else None
                )
                searchable = added or searchable
            if halves:
                middle = len(view) // 2
                with view[:middle] as first, view[middle:] as second:
                    for label, part in (("first half", first), ("second half", second)):
                        for form in ("raw", "utf-16-le", "utf-32-le"):
                            added = self._append(secret.name, f"{form} ({label})", part, form, is_part=True)
                            searchable = added or searchable
        if not searchable:
            self.unsearchable.append(secret.name)
        elif secret.name not in self.names:
            self.names.append(secret.name)

    def _append(
        self,
        name: str,
        label: str,
        view: memoryview,
        form: str,
        *,
        is_part: bool,
        covered: memoryview | None = None,
    ) -> bool:
        """Add one form; True when it is searched for (added now, already there, or equal to ``covered``,
        the raw value whose halves are searched: e.g. Latin-1 or JSON of plain ASCII)."""
        writer = self._writer
        start = writer.length
        try:
            complete = _encode(writer, view, form)
        except ValueError:  # not UTF-8 text: only the byte forms apply
            complete = False
        core, length = start, writer.length - start
        if complete and form.startswith("base64+"):  # only what does not depend on the neighbouring bytes
            core, length = _base64_core(start, length, int(form[-1]), len(view))
            writer.buffer.move(start, core, length)
        if not complete or length < MIN_NEEDLE_BYTES:
            writer.truncate(start)
            return False
        if self._duplicate(start, length) or (covered is not None and self._equals(start, length, covered)):
            writer.truncate(start)
            return True
        writer.truncate(start + length)
        self._needles.append(_Needle(name, label, start, length, is_part))
        return True

    def _equals(self, start: int, length: int, other: memoryview) -> bool:
        with self._writer.buffer.view[start : start + length] as candidate:
            return candidate == other

    def _duplicate(self, start: int, length: int) -> bool:
        buffer = self._writer.buffer
        with buffer.view[start : start + length] as candidate:
            for needle in self._needles:
                if needle.length == length:
                    with buffer.view[needle.offset : needle.offset + length] as existing:
                        if existing == candidate:
                            return True
        return False

    def items(self, *, parts: bool = True) -> Iterator[tuple[_Needle, memoryview]]:
        """(label, view) pairs; each view is released when the iteration moves on."""
        buffer = self._writer.buffer
        for needle in self._needles:
            if needle.part and not parts:
                continue
            with buffer.view[needle.offset : needle.offset + needle.length] as view:
                yield needle, view

    def redact(self, data: bytearray, marker: bytes) -> bool:
        """Replace every full form found in ``data`` with ``marker`` (in place); True when one was found."""
        changed = False
        buffer = self._writer.buffer
        for needle in sorted(self._needles, key=lambda needle: -needle.length):  # longest first
            if needle.part:
                continue
            with buffer.view[needle.offset : needle.offset + needle.length] as view:
                start = data.find(view)
                while start != -1:
                    data[start : start + needle.length] = marker
                    changed = True
                    start = data.find(view, start + len(marker))
        return changed

    def merge(self, other: NeedleSet) -> None:
        """Take ``other``'s needles (``other`` is wiped)."""
        buffer = other._writer.buffer
        for needle in other._needles:
            with buffer.view[needle.offset : needle.offset + needle.length] as view:
                start = self._writer.length
                self._writer.write(view)
            if self._duplicate(start, needle.length):
                self._writer.truncate(start)
            else:
                self._needles.append(_Needle(needle.secret, needle.form, start, needle.length, needle.part))
        self.names.extend(name for name in other.names if name not in self.names)
        self.unsearchable.extend(name for name in other.unsearchable if name not in self.unsearchable)
        other.wipe()

    def wipe(self) -> None:
        self._writer.close()
        self._needles.clear()


def _encode(out: LockedWriter, view: memoryview, form: str) -> bool:
    if form == "raw":
        out.write(view)
    elif form == "latin-1":
        return _write_code_units(out, view, 1)
    elif form == "utf-16-le":
        return _write_code_units(out, view, 2)
    elif form == "utf-32-le":
        return _write_code_units(out, view, 4)
    elif form in ("json", "json-ascii"):
        start = out.length
        write_json_string(out, view, ensure_ascii=form == "json-ascii")
        out.buffer.move(start, start + 1, out.length - start - 2)  # drop the quotes
        out.truncate(out.length - 2)
    elif form in ("url", "url-plus", "url-path"):
        _write_url(out, view, plus=form == "url-plus", keep_slash=form == "url-path")
    elif form in ("hex", "HEX"):
        _write_hex(out, view, _HEX_LOWER if form == "hex" else _HEX_UPPER)
    elif form.startswith("base64+"):
        shift = int(form[-1])
        if shift:
            # The value preceded by `shift` bytes of something else: encode zeros there, cut them off below.
            with LockedWriter(len(view) + 3) as shifted:
                shifted.write(bytes(shift))
                shifted.write(view)
                with shifted.view() as prefixed:
                    write_base64(out, prefixed)
        else:
            write_base64(out, view)
    else:
        raise KeyError(form)
    return True


def _base64_core(start: int, length: int, shift: int, size: int) -> tuple[int, int]:
    """The part of a base64 form that does not depend on the bytes around the value."""
    lead = (0, 2, 3)[shift]
    trail = (0, 3, 2)[(size + shift) % 3]
    return start + lead, max(length - lead - trail, 0)


# -- the sweep ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    """The self-scan after the secrets were wiped."""

    secrets_wiped: int
    searched: tuple[str, ...]  # names whose forms were searched for
    copies_found: int  # copies of the wiped secrets found outside our own locked buffers
    copies_zeroed: int
    bytes_scanned: int
    regions_scanned: int
    seconds: float
    unsearchable: tuple[str, ...] = ()  # too short to search for without zeroing unrelated data
    error: str | None = None  # the scan could not run (e.g. no /proc)
    protection: str = ""
    other_copies: Mapping[str, int] = field(
        default_factory=dict
    )  # copies of other wiped values (unseal keys)

    @property
    def clean(self) -> bool:
        return self.error is None and self.copies_found == self.copies_zeroed

    def summary(self) -> str:
        plural = "" if self.secrets_wiped == 1 else "s"
        if self.error is not None:
            return f"{self.secrets_wiped} secret{plural} wiped; memory scan failed: {self.error}"
        text = f"{self.secrets_wiped} secret{plural} wiped, {self.copies_found} copies found"
        if self.copies_found:
            text += f" ({self.copies_zeroed} zeroed)"
        others = sum(self.other_copies.values())
        if others:
            text += f"; {others} stray copies of {', '.join(sorted(self.other_copies))} zeroed"
        if self.unsearchable:
            text += f"; too short or too simple to scan for: {', '.join(self.unsearchable)}"
        return text

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["other_copies"] = dict(self.other_copies)
        data["summary"] = self.summary()
        return data


@dataclass(frozen=True)
class _Region:
    start: int
    end: int
    label: str


def _writable_regions(exclude: Mapping[int, int]) -> list[_Region]:
    """Private writable mappings from /proc/self/maps, minus the given [address, address+size) ranges.

    Read-only and shared mappings cannot hold a copy we made; ``[vvar]`` and friends are the kernel's.
    """
    holes = sorted((start, start + size) for start, size in exclude.items())
    regions: list[_Region] = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:  # noqa: PTH123
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 5:
                continue
            perms = fields[1]
            if not perms.startswith("rw") or perms[3] != "p":
                continue
            label = fields[5].strip() if len(fields) > 5 else ""
            if label in ("[vvar]", "[vsyscall]", "[vdso]", "[vvar_vclock]"):
                continue
            low, high = (int(part, 16) for part in fields[0].split("-"))
            cursor = low
            for hole_start, hole_end in holes:
                if hole_end <= cursor or hole_start >= high:
                    continue
                if hole_start > cursor:
                    regions.append(_Region(cursor, hole_start, label))
                cursor = max(cursor, hole_end)
            if cursor < high:
                regions.append(_Region(cursor, high, label))
    return regions


_PAGEMAP_BATCH: Final = 4096  # pages per pagemap read (32 KB of entries)
# The top byte of a pagemap entry: bit 63 page present, bit 62 swapped out. Either may hold data; a page that
# is neither was never written (or was given back with MADV_DONTNEED) and reads as zeros.
_IN_USE: Final = bytes(0x31 if octet & 0xC0 else 0x30 for octet in range(256))  # "1" in use, "0" not
_IN_USE_RUN: Final = re.compile(b"1+")


def _pages_in_use(pagemap: int | None, region: _Region) -> Iterator[tuple[int, int]]:
    """[start, end) runs of ``region`` whose pages are present or swapped; all of it without a pagemap."""
    if pagemap is None:
        yield region.start, region.end
        return
    first = region.start // PAGE
    last = -(-region.end // PAGE)
    run_start: int | None = None
    for batch in range(first, last, _PAGEMAP_BATCH):
        count = min(_PAGEMAP_BATCH, last - batch)
        try:
            entries = os.pread(pagemap, count * 8, batch * 8)
        except OSError:
            entries = b"\xff" * (count * 8)  # unknown: scan it
        if len(entries) < count * 8:
            entries += b"\xff" * (count * 8 - len(entries))
        flags = entries[7::8].translate(_IN_USE)  # little-endian: byte 7 of each entry is its top byte
        cursor = 0
        for match in _IN_USE_RUN.finditer(flags):
            if match.start() != cursor and run_start is not None:  # a gap: the open run ends
                yield run_start, (batch + cursor) * PAGE
                run_start = None
            if run_start is None:
                run_start = (batch + match.start()) * PAGE
            cursor = match.end()
        if cursor != count and run_start is not None:
            yield run_start, (batch + cursor) * PAGE
            run_start = None
    if run_start is not None:
        yield run_start, last * PAGE


def sweep(needles: NeedleSet, *, secrets_wiped: int, primary: Iterable[str] | None = None) -> SweepReport:
    """Scan this process's writable memory for every needle and zero each hit. Wipes ``needles``.

    ``primary`` names the secrets the report counts as ``copies_found`` (default: all); hits of the other
    needles (e.g. Vault unseal keys remembered by :func:`sweep_later`) are reported as ``other_copies``.
    Reads and writes go through ``/proc/self/mem`` (an unmapped page is an error there, not a crash). Our own
    locked buffers (the needles, the scan buffer, secrets still held) are not scanned. Runs in the calling
    thread and mostly without the GIL (the searches are ``memmem`` calls through ctypes), so a caller on an
    event loop runs it in a worker thread (``asyncio.to_thread``) and the loop keeps going meanwhile.
    """
    started = time.monotonic()
    names, unsearchable = tuple(needles.names), tuple(needles.unsearchable)
    counted = set(names if primary is None else primary)
    hits: dict[str, list[int]] = {}
    scanned = regions = 0
    error: str | None = None
    try:
        if len(needles):
            scanned, regions = _scan(needles, hits)
    except OSError as failure:
        error = f"{type(failure).__name__}: {failure.strerror or failure}"
    finally:
        needles.wipe()
    found = sum(found for name, (found, _) in hits.items() if name in counted)
    zeroed = sum(zeroed for name, (_, zeroed) in hits.items() if name in counted)
    others = {name: found for name, (found, _) in hits.items() if name not in counted}
    return SweepReport(
        secrets_wiped,
        names,
        found,
        zeroed,
        scanned,
        regions,
        time.monotonic() - started,
        unsearchable,
        error,
        protection().summary(),
        others,
    )


# CDLL calls release the GIL: the searches run beside the app's threads.
_memmem = _c_function(
    _libc, "memmem", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
)
_memcmp = _c_function(_libc, "memcmp", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


@dataclass
class _Copy:
    """Adjacent hits of one secret's needles (a whole raw copy is found as its two halves): one copy."""

    secret: str
    start: int
    end: int
    zeroed: bool = True


class _Scanner:
    """Searches chunks of memory for every needle, one ``memmem`` per needle per chunk.

    A chunk is small enough to stay in the CPU cache while every needle is looked for in it, so memory is read
    once; glibc's ``memmem`` skips ahead by up to the needle's length, and a ctypes call releases the GIL. The
    needles are passed by address: they stay in the needle set's locked buffer, no ``bytes`` copy is made.
    """

    def __init__(self, needles: NeedleSet, descriptor: int) -> None:
        self.needles = [needle for needle, _ in needles.items()]
        self.base = needles.address
        self.longest = needles.longest
        self.descriptor = descriptor
        self.scratch = LockedBuffer(SCAN_CHUNK + self.longest)
        self.check = LockedBuffer(self.longest)

    def close(self) -> None:
        self.scratch.close()
        self.check.close()

    def region(self, start: int, end: int) -> Iterator[tuple[int, int, str]]:
        """(address, length, secret) of every needle found in [start, end), in address order per chunk."""
        overlap = self.longest - 1
        scratch, base = self.scratch, self.scratch.address
        position = start
        while position < end:
            size = min(SCAN_CHUNK + overlap, end - position)
            with scratch.view[:size] as window:
                try:
                    got = os.preadv(self.descriptor, [window], position)
                except OSError:  # unmapped meanwhile, or a guard page: go on a page further
                    got = 0
            if got <= 0:
                position += PAGE
                continue
            last = position + got >= end
            # A needle starting in the overlap is found whole in the next chunk: report it there only.
            limit = got if last else got - overlap
            found: list[tuple[int, int, str]] = []
            for needle in self.needles:
                length = needle.length
                at = _memmem(base, got, self.base + needle.offset, length)
                while at:
                    offset = at - base
                    if offset >= limit:
                        break
                    found.append((position + offset, length, needle.secret))
                    at = _memmem(at + 1, got - offset - 1, self.base + needle.offset, length)
            scratch.zero(0, got)
            found.sort()
            yield from found
            if last:
                break
            position += limit

    def zero(self, address: int, length: int) -> bool:
        """Zero ``length`` bytes at ``address`` if they still are a needle (read again into locked memory).

        Between the search and now the memory may have been reused (the sweep runs beside the app's threads):
        only what still matches is overwritten.
        """
        try:
            with self.check.view[:length] as room:
                if os.preadv(self.descriptor, [room], address) != length:
                    return False
            still = any(
                needle.length == length
                and _memcmp(self.check.address, self.base + needle.offset, length) == 0
                for needle in self.needles
            )
            self.check.zero()
            return not still or os.pwrite(self.descriptor, bytes(length), address) == length
        except OSError:
            return False


def _scan(needles: NeedleSet, hits: dict[str, list[int]]) -> tuple[int, int]:
    """Fills ``hits`` (name -> [copies found, copies zeroed]); returns (bytes scanned, regions)."""
    scanned = regions = 0
    if _memmem is None or _memcmp is None:
        raise OSError(errno.ENOSYS, "the C library has no memmem")
    descriptor = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        pagemap: int | None = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        pagemap = None
    scanner = _Scanner(needles, descriptor)
    copy: _Copy | None = None

    def count(finished: _Copy) -> None:
        tally = hits.setdefault(finished.secret, [0, 0])
        tally[0] += 1
        tally[1] += finished.zeroed

    try:
        for region in _writable_regions(_live_regions):
            regions += 1
            for start, end in _pages_in_use(pagemap, region):
                scanned += end - start
                for address, length, secret in scanner.region(start, end):
                    zeroed = scanner.zero(address, length)
                    if copy is not None and copy.secret == secret and address <= copy.end:
                        copy.end = max(copy.end, address + length)
                        copy.zeroed = copy.zeroed and zeroed
                        continue
                    if copy is not None:
                        count(copy)
                    copy = _Copy(secret, address, address + length, zeroed)
        if copy is not None:
            count(copy)
    finally:
        os.close(descriptor)
        if pagemap is not None:
            os.close(pagemap)
        scanner.close()
    return scanned, regions


_sweep_enabled = False
_pending_needles: NeedleSet | None = None
_pending_lock = threading.Lock()


def sweep_enabled() -> bool:
    """True once :func:`harden_process` (or :func:`enable_sweep`) ran: wiping the secret store then sweeps."""
    return _sweep_enabled


def enable_sweep(enabled: bool = True) -> None:
    global _sweep_enabled
    _sweep_enabled = enabled


_BINARY_FORMS: Final = ("raw", "base64+0", "base64+1", "base64+2")


def sweep_later(secrets: Iterable[SecretLike]) -> None:
    """Remember the forms of values about to be wiped outside the secret store (e.g. Vault unseal keys).

    The next sweep (after phase 2) looks for them too: raw and base64, the forms binary keys are copied in
    (a JSON answer, a decoded ``bytes``). Does nothing when sweeping is off.
    """
    global _pending_needles
    if not _sweep_enabled:
        return
    with _pending_lock:
        if _pending_needles is None:
            _pending_needles = NeedleSet()
        for secret in secrets:
            _pending_needles.add(secret, _BINARY_FORMS, halves=False)


def take_pending_needles() -> NeedleSet | None:
    global _pending_needles
    with _pending_lock:
        pending, _pending_needles = _pending_needles, None
    return pending


# -- the environment -----------------------------------------------------------------------------------------


def _stat_fields() -> list[str]:
    with open("/proc/self/stat", "rb") as stat:  # noqa: PTH123
        raw = stat.read()
    # Field 2 (comm) may hold spaces and parentheses: everything after the last ')' is fields 3 onwards.
    return raw[raw.rindex(b")") + 2 :].decode("ascii").split()


def _initial_environment_block() -> tuple[int, int] | None:
    try:
        fields = _stat_fields()
        start, end = int(fields[50 - 3]), int(fields[51 - 3])
    except (OSError, ValueError, IndexError):
        return None
    return (start, end) if 0 < start < end else None


def scrub_environment_variable(name: str) -> bool:
    """Zero and remove ``name`` from every place the environment keeps it; True when it was found.

    Order matters: the C library's value (``getenv`` points either into the initial block or at a
    ``setenv`` copy glibc never frees) and Python's ``bytes`` are zeroed first, then the variable is unset
    (``os.environ`` and the C environment), then any ``NAME=`` entry left in the initial environment block
    (what ``/proc/PID/environ`` shows) is zeroed in place.
    """
    key = os.fsencode(name)
    if not key or b"=" in key or b"\0" in key:
        raise ValueError(f"invalid environment variable name {name!r}")
    found = False
    if _getenv is not None:
        pointer = _getenv(key)
        if pointer:
            found = True
            _memset(pointer, 0, _strlen(pointer))
    value = os.environb.get(key)
    if value is not None:
        found = True
        wipe_bytes_object(value)
        del value
        os.environb.pop(key, None)  # unsetenv() too
    elif _getenv is not None:
        os.unsetenv(key)
    return _scrub_initial_block(key) or found


def _scrub_initial_block(key: bytes) -> bool:
    block = _initial_environment_block()
    if block is None:
        return False
    start, end = block
    size = end - start
    pattern = b"\0" + key + b"="
    found = False
    try:
        descriptor = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        with LockedWriter(size + 1) as copy:
            copy.write_byte(0)  # so the first entry matches "\0NAME=" like the others
            copy.reserve(size)
            with copy.buffer.view[1 : 1 + size] as room:
                got = os.preadv(descriptor, [room], start)
            copy.length = 1 + got
            hit = copy.find(pattern)
            while hit != -1:
                value_start = hit + len(pattern)
                value_end = copy.find(b"\0", value_start)
                value_end = copy.length if value_end == -1 else value_end
                if value_end > value_start:
                    os.pwrite(descriptor, bytes(value_end - value_start), start + value_start - 1)
                    copy.buffer.zero(value_start, value_end)
                found = True
                hit = copy.find(pattern, value_end)
    except OSError:
        return found
    finally:
        os.close(descriptor)
    return found


# -- start-up hardening --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardening:
    dumpable: bool  # False: no core dump, and same-user processes cannot read /proc/PID/mem
    core_limit: int
    memory_read_allowed: bool  # GITOPS_TUI_ALLOW_MEMORY_READ=1 was set (tests)
    sweep: bool
    log_redaction: bool
    problems: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [
            "core dumps off" if self.core_limit == 0 else f"core dumps up to {self.core_limit} bytes",
            "not dumpable" if not self.dumpable else "dumpable (memory readable by this user)",
            "memory sweep after phase 2" if self.sweep else "no memory sweep",
        ]
        return ", ".join(parts) + "".join(f"; {problem}" for problem in self.problems)


_hardened: Hardening | None = None


def harden_process(*, environ: Mapping[str, str] | None = None) -> Hardening:
    """Call first thing at start-up. Idempotent.

    * ``RLIMIT_CORE`` = 0 (soft and hard) and ``prctl(PR_SET_DUMPABLE, 0)``: no core file, no ptrace attach
      and no ``/proc/PID/mem`` read by other processes of the same user (root keeps that power). With
      ``GITOPS_TUI_ALLOW_MEMORY_READ=1`` the process stays dumpable, so a test can scan it.
    * The sweep after phase 2 is switched on (:func:`sweep_enabled`).
    * Log records are redacted (``phases.secrets.install_log_redaction``).
    """
    global _hardened
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    allow_read = environ.get(ALLOW_MEMORY_READ_ENV) == "1"
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as error:
        problems.append(f"RLIMIT_CORE not lowered: {error}")
    core_limit = resource.getrlimit(resource.RLIMIT_CORE)[0]
    if not allow_read and _prctl is not None and _prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        problems.append(f"PR_SET_DUMPABLE refused: {os.strerror(ctypes.get_errno())}")
    dumpable = bool(_prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)) if _prctl is not None else True
    enable_sweep(True)
    from phases.secrets import install_log_redaction  # secrets imports this module: import here

    install_log_redaction()
    _hardened = Hardening(dumpable, core_limit, allow_read, True, True, tuple(problems))
    for problem in problems:
        _log.warning("hardening: %s", problem)
    return _hardened


def hardening() -> Hardening | None:
    """What :func:`harden_process` did, or None if it was never called."""
    return _hardened


def pause_point(name: str) -> None:
    """Test-only: stop this process (SIGSTOP, all threads) at a named point until it gets SIGCONT.

    Active only when ``GITOPS_TUI_ALLOW_MEMORY_READ=1`` and ``name`` is in ``GITOPS_TUI_PAUSE_AT``. Writes
    ``<name> <pid>`` to ``GITOPS_TUI_PAUSE_FILE`` first so the test knows where it stopped. A parent that does
    job control (tmux for its pane's process, an interactive shell) may continue it at once: start the
    process under a plain parent (e.g. ``sh -c "...; exit $?"``).
    """
    if os.environ.get(ALLOW_MEMORY_READ_ENV) != "1":
        return
    if name not in os.environ.get(PAUSE_AT_ENV, "").split(","):
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        with open(marker, "a", encoding="utf-8") as handle:  # noqa: PTH123
            handle.write(f"{name} {os.getpid()}\n")
    # A SIGCONT handler (Textual's re-enters application mode) must not see this stop's end.
    try:
        previous = signal.signal(signal.SIGCONT, signal.SIG_DFL)
    except ValueError:  # not the main thread
        previous = None
    try:
        os.kill(os.getpid(), signal.SIGSTOP)
    finally:
        if previous is not None:
            signal.signal(signal.SIGCONT, previous)


# -- HTTP from and into locked buffers ----------------------------------------------------------------------


class HttpProtocolError(OSError):
    """The peer's answer is not HTTP/1.x we can read."""


@dataclass
class HttpAnswer:
    """A response whose body sits in a locked buffer. ``close()`` zeroes it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    _raw: LockedWriter
    _body_start: int
    _body_end: int

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        values = [value for key, value in self.headers if key.lower() == wanted]
        return ", ".join(values) if values else None

    def body(self) -> memoryview:
        """A read-only view of the body; release it (``with``) before ``close()``."""
        return self._raw.view(self._body_start, self._body_end)

    @property
    def body_length(self) -> int:
        return self._body_end - self._body_start

    def body_bytes(self) -> bytes:
        """The body as ``bytes``: only for answers that hold no secret."""
        with self.body() as view:
            return view.tobytes()

    def close(self) -> None:
        self._raw.close()


def tls_context(
    *, verify: bool, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client TLS context; received plaintext is cleansed by OpenSSL after it reached our buffer."""
    if verify:
        if ca_file is not None and os.path.isdir(ca_file):  # noqa: PTH112
            context = ssl.create_default_context(capath=ca_file)
        else:
            context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if ssl.OPENSSL_VERSION_INFO >= (3, 0):
        with contextlib.suppress(ValueError, AttributeError):
            context.options |= _SSL_OP_CLEANSE_PLAINTEXT
    return context


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one origin; thread-safe. Requests go out from locked buffers."""

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_idle: int = 16,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        if self.scheme == "https" and ssl_context is None:
            ssl_context = tls_context(verify=True)
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname or self.host
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._closed = False

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._server_hostname)
        except BaseException:
            sock.close()
            raise
        return sock

    def exchange(self, request: memoryview, *, method: str, timeout: float) -> HttpAnswer:
        """Send ``request`` (a complete HTTP/1.1 request) and read the answer into a locked buffer.

        A kept-alive connection the server closed meanwhile is retried once on a new one.
        """
        with self._lock:
            reused = self._idle.pop() if self._idle else None
        if reused is not None:
            try:
                return self._exchange_on(reused, request, method, timeout)
            except _StaleConnection:
                pass
        return self._exchange_on(self._connect(timeout), request, method, timeout)

    def _exchange_on(
        self, sock: socket.socket, request: memoryview, method: str, timeout: float
    ) -> HttpAnswer:
        try:
            sock.settimeout(timeout)
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError) as error:
                raise _StaleConnection("closed before the request was sent") from error
            answer, keep = _read_answer(sock, method)
        except BaseException:
            sock.close()
            raise
        if keep and not self._closed:
            with self._lock:
                if len(self._idle) < self._max_idle:
                    self._idle.append(sock)
                    return answer
        sock.close()
        return answer

    def close(self) -> None:
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()


class _StaleConnection(ConnectionError):
    pass


def _read_answer(sock: socket.socket, method: str) -> tuple[HttpAnswer, bool]:
    raw = LockedWriter(16 * 1024)
    try:
        while True:
            end = raw.find(b"\r\n\r\n")
            while end == -1:
                if raw.length > _MAX_HEADER_BYTES:
                    raise HttpProtocolError("HTTP header too long")
                if not raw.recv_from(sock):
                    if raw.length == 0:
                        raise _StaleConnection("closed before answering")
                    raise HttpProtocolError("connection closed inside the HTTP header")
                end = raw.find(b"\r\n\r\n")
            with raw.view(0, end) as head_view:
                head = head_view.tobytes().decode("latin-1")
            lines = head.split("\r\n")
            status_line = lines[0].split(" ", 2)
            if (
                len(status_line) < 2
                or not status_line[0].startswith("HTTP/1.")
                or not status_line[1].isdigit()
            ):
                raise HttpProtocolError(f"not an HTTP answer: {lines[0][:60]!r}")
            status = int(status_line[1])
            headers = [
                (key.strip(), value.strip())
                for key, _, value in (line.partition(":") for line in lines[1:])
                if key.strip()
            ]
            if 100 <= status < 200 and status != 101:  # interim answer: drop it, read the real one
                remaining = raw.length - (end + 4)
                raw.buffer.move(0, end + 4, remaining)
                raw.truncate(remaining)
                continue
            break
        http10 = status_line[0] == "HTTP/1.0"
        lookup = {key.lower(): value for key, value in headers}
        connection = lookup.get("connection", "").lower()
        keep = ("keep-alive" in connection) if http10 else ("close" not in connection)
        body_start = end + 4
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body_end = body_start
        elif "chunked" in lookup.get("transfer-encoding", "").lower():
            body_end = _read_chunked(sock, raw, body_start)
        elif "content-length" in lookup:
            length = int(lookup["content-length"])
            while raw.length < body_start + length:
                if not raw.recv_from(sock, max(16 * 1024, body_start + length - raw.length)):
                    raise HttpProtocolError("connection closed inside the body")
            body_end = body_start + length
        else:
            while raw.recv_from(sock, 64 * 1024):
                pass
            body_end = raw.length
            keep = False
        if raw.length > body_end:  # the server sent more than one answer's worth: do not reuse
            raw.truncate(body_end)
            keep = False
        reason = status_line[2] if len(status_line) > 2 else ""
        return HttpAnswer(status, reason, headers, raw, body_start, body_end), keep
    except BaseException:
        raw.close()
        raise


def _read_chunked(sock: socket.socket, raw: LockedWriter, start: int) -> int:
    """Undo chunked framing in place (data moved down with memmove); returns the end of the body."""
    read, write = start, start
    while True:
        line_end = raw.find(b"\r\n", read)
        while line_end == -1:
            if not raw.recv_from(sock):
                raise HttpProtocolError("connection closed inside a chunk header")
            line_end = raw.find(b"\r\n", read)
        with raw.view(read, line_end) as size_view:
            size_text = size_view.tobytes().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpProtocolError("bad chunk size") from None
        read = line_end + 2
        if size == 0:
            while True:  # trailers, then the empty line
                trailer_end = raw.find(b"\r\n", read)
                while trailer_end == -1:
                    if not raw.recv_from(sock):
                        raise HttpProtocolError("connection closed inside the trailers")
                    trailer_end = raw.find(b"\r\n", read)
                if trailer_end == read:
                    raw.buffer.zero(write, raw.length)
                    raw.length = write
                    return write
                read = trailer_end + 2
        while raw.length < read + size + 2:
            if not raw.recv_from(sock, max(16 * 1024, read + size + 2 - raw.length)):
                raise HttpProtocolError("connection closed inside a chunk")
        raw.buffer.move(write, read, size)
        write += size
        read += size + 2


# -- reading JSON in a locked buffer -------------------------------------------------------------------------

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class JsonValue:
    """One value in a JSON document: where it is and what kind it is (strings: span inside the quotes)."""

    path: JsonPath
    kind: str  # "string", "number", "literal", "object", "array"
    start: int
    end: int  # for containers: the opening bracket + 1 (their content is reported as their members)


_WHITESPACE: Final = frozenset(b" \t\r\n")
_NUMBER_BYTES: Final = frozenset(b"+-0123456789.eE")


def json_values(view: memoryview) -> Iterator[JsonValue]:
    """Every value of the JSON document in ``view``, depth first, without decoding it.

    Object keys become ``str`` (names are not secret); string values are reported as spans so a caller can
    unescape the one it wants into locked memory (:func:`json_unescape_into`). ValueError on bad JSON.
    """
    size = len(view)

    def skip_space(index: int) -> int:
        while index < size and view[index] in _WHITESPACE:
            index += 1
        return index

    def string_end(index: int) -> int:  # index: just after the opening quote
        while index < size:
            octet = view[index]
            if octet == 0x5C:
                index += 2
                continue
            if octet == 0x22:
                return index
            index += 1
        raise ValueError("unterminated JSON string")

    def key_text(start: int, end: int) -> str:
        with view[start:end] as raw_key:
            import json

            text: str = json.loads(b'"' + raw_key.tobytes() + b'"')
        return text

    def parse(index: int, path: JsonPath) -> Iterator[JsonValue | int]:
        index = skip_space(index)
        if index >= size:
            raise ValueError("truncated JSON")
        octet = view[index]
        if octet == 0x22:
            end = string_end(index + 1)
            yield JsonValue(path, "string", index + 1, end)
            yield end + 1
        elif octet == 0x7B:
            yield JsonValue(path, "object", index, index + 1)
            index = skip_space(index + 1)
            if index < size and view[index] == 0x7D:
                yield index + 1
                return
            while True:
                index = skip_space(index)
                if index >= size or view[index] != 0x22:
                    raise ValueError("expected a JSON object key")
                key_end = string_end(index + 1)
                key = key_text(index + 1, key_end)
                index = skip_space(key_end + 1)
                if index >= size or view[index] != 0x3A:
                    raise ValueError("expected ':'")
                for item in parse(index + 1, (*path, key)):
                    if isinstance(item, int):
                        index = item
                    else:
                        yield item
                index = skip_space(index)
                if index < size and view[index] == 0x2C:
                    index += 1
                    continue
                if index < size and view[index] == 0x7D:
                    yield index + 1
                    return
                raise ValueError("expected ',' or '}'")
        elif octet == 0x5B:
            yield JsonValue(path, "array", index, index + 1)
            index = skip_space(index + 1)
            if index < size and view[index] == 0x5D:
                yield index + 1
                return
            position = 0
            while True:
                for item in parse(index, (*path, position)):
                    if isinstance(item, int):
                        index = item
                    else:
                        yield item
                position += 1
                index = skip_space(index)
                if index < size and view[index] == 0x2C:
                    index += 1
                    continue
                if index < size and view[index] == 0x5D:
                    yield index + 1
                    return
                raise ValueError("expected ',' or ']'")
        else:
            end = index
            literal = octet in b"tfn"
            while end < size and (view[end] in _NUMBER_BYTES or (literal and 0x61 <= view[end] <= 0x7A)):
                end += 1
            if end == index:
                raise ValueError("unexpected byte in JSON")
            yield JsonValue(path, "literal" if literal else "number", index, end)
            yield end

    end_index = 0
    for item in parse(0, ()):
        if isinstance(item, int):
            end_index = item
        else:
            yield item
    if skip_space(end_index) != size:
        raise ValueError("extra data after the JSON document")


def json_unescape_into(view: memoryview, out: LockedWriter) -> None:
    """Write the JSON string content ``view`` (between the quotes) unescaped, as UTF-8, into ``out``."""
    index, size = 0, len(view)
    simple = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}
    while index < size:
        octet = view[index]
        if octet != 0x5C:
            out.write_byte(octet)
            index += 1
            continue
        if index + 1 >= size:
            raise ValueError("bad JSON escape")
        kind = view[index + 1]
        if kind in simple:
            out.write_byte(simple[kind])
            index += 2
            continue
        if kind != 0x75:
            raise ValueError("bad JSON escape")
        point = _hex4(view, index + 2)
        index += 6
        if (
            0xD800 <= point <= 0xDBFF
            and index + 6 <= size
            and view[index] == 0x5C
            and view[index + 1] == 0x75
        ):
            low = _hex4(view, index + 2)
            if 0xDC00 <= low <= 0xDFFF:
                point = 0x10000 + ((point - 0xD800) << 10) + (low - 0xDC00)
                index += 6
        _write_utf8(out, point)


def _hex4(view: memoryview, index: int) -> int:
    if index + 4 > len(view):
        raise ValueError("bad JSON \\u escape")
    value = 0
    for offset in range(4):
        digit = view[index + offset]
        if 0x30 <= digit <= 0x39:
            value = value * 16 + digit - 0x30
        elif 0x61 <= digit <= 0x66 or 0x41 <= digit <= 0x46:
            value = value * 16 + (digit | 0x20) - 0x61 + 10
        else:
            raise ValueError("bad JSON \\u escape")
    return value


def _write_utf8(out: LockedWriter, point: int) -> None:
    if point < 0x80:
        out.write_byte(point)
    elif point < 0x800:
        out.write_byte(0xC0 | (point >> 6))
        out.write_byte(0x80 | (point & 0x3F))
    elif point < 0x10000:
        out.write_byte(0xE0 | (point >> 12))
        out.write_byte(0x80 | ((point >> 6) & 0x3F))
        out.write_byte(0x80 | (point & 0x3F))
    else:
        out.write_byte(0xF0 | (point >> 18))
        out.write_byte(0x80 | ((point >> 12) & 0x3F))
        out.write_byte(0x80 | ((point >> 6) & 0x3F))
        out.write_byte(0x80 | (point & 0x3F))


def find_byte(view: memoryview, value: int) -> int:
    """Index of the first ``value`` byte in ``view`` (searched in place), or -1."""
    match = re.search(re.escape(bytes((value,))), view)
    return -1 if match is None else match.start()
