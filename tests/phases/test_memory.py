"""Secrets in memory: locked buffers, encoders, environment intake, the sweep, zero-copy writers, hardening.

Checks that look for copies of a secret in a process's memory run in a small child process (a fresh
interpreter): the child makes the secret from random bytes (never a ``str`` or a literal), does what is under
test, then sweeps its own memory and prints the report. "0 copies found" there means the code under test
left no copy, because the sweep finds (and counts) every one it zeroes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import http.server
import json
import logging
import mmap
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phases import memory
from phases import secrets as secrets_module
from phases.engine import Engine, Phase, Step, StepContext
from phases.events import RunFinished, StepFailed, StepStarted
from phases.secrets import (
    REDACTED,
    SecretRedactionFilter,
    SecretStore,
    SecretValue,
    SecretWiped,
    install_log_redaction,
    redact_held,
)
from phases.state import StateStore
from tests.fixtures.vault import DevOpenBao

ROOT = Path(__file__).resolve().parents[2]


def run_child(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last, which is returned."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


SWEEP_REPORT = """
def report_after(*values, extra=None, after=None):
    from phases import memory
    memory.enable_sweep()
    needles = memory.NeedleSet()
    for value in values:
        needles.add(value)
        value.wipe()
    report = memory.sweep(needles, secrets_wiped=len(values))
    print(json.dumps({**report.as_dict(), **(extra or {}), **(after() if after else {})}))
"""


def vm_flags(address: int) -> set[str]:
    current = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            start, end = (int(part, 16) for part in head[0].split("-"))
            current = start <= address < end
        elif line.startswith("VmFlags:") and current:
            return set(head[1:])
    raise AssertionError(f"{address:#x} is not mapped")


# -- locked buffers and SecretValue -------------------------------------------------------------------------


def test_a_locked_buffer_is_locked_not_dumped_wiped_on_fork_and_zeroed_on_close() -> None:
    buffer = memory.LockedBuffer(10)
    assert buffer.capacity == memory.PAGE
    assert {"lo", "dd", "wf"} <= vm_flags(buffer.address)
    buffer.view[:5] = b"\x01\x02\x03\x04\x05"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child sees the page, but zeroed (MADV_WIPEONFORK)
        os.write(write, bytes(buffer.view[:5]))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 5) == bytes(5)
    os.close(read)
    os.close(write)
    assert bytes(buffer.view[:5]) == b"\x01\x02\x03\x04\x05"
    address = buffer.address
    buffer.close()
    assert buffer.closed and address not in memory._live_regions
    descriptor = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        with pytest.raises(OSError):  # unmapped
            os.pread(descriptor, 1, address)
    finally:
        os.close(descriptor)
    assert memory.protection().problems == []


def test_secret_value_keeps_its_api_and_its_bytes_in_locked_memory() -> None:
    source = bytearray(os.urandom(20))
    expected = bytes(source)
    value = SecretValue("token", source)
    assert not any(source), "the bytearray handed over is zeroed"
    assert (len(value), bool(value), value.wiped) == (20, True, False)
    assert "20 bytes" in repr(value) and expected.hex() not in repr(value)
    with value.exposed() as view:
        assert view.readonly and bytes(view) == expected
    assert {"lo", "dd", "wf"} <= vm_flags(value._buffer.address)
    value.append(b"x" * 5000)  # grows beyond a page: copied to a larger buffer, the old one zeroed
    assert len(value) == 5020
    with value.exposed() as view:
        assert bytes(view[:20]) == expected and bytes(view[20:]) == b"x" * 5000
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(value)
    copy = SecretValue.from_bytes("copy", b"abc")
    assert value != copy and value == value
    value.wipe()
    assert value.wiped and not value and len(value) == 0
    with pytest.raises(SecretWiped), value.exposed():
        pass
    with pytest.raises(SecretWiped):
        value.append(b"more")


# -- encoders and the JSON reader ---------------------------------------------------------------------------


def forms_of(value: bytes) -> dict[str, bytes]:
    secret = SecretValue.from_bytes("v", value)
    needles = memory.NeedleSet()
    needles.add(secret, halves=False, forms=(*memory._SWEEP_FORMS,))
    found = {needle.form: bytes(view) for needle, view in needles.items()}
    needles.wipe()
    secret.wipe()
    return found


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=8, max_size=40))
def test_every_form_matches_the_standard_library(text: str) -> None:
    raw = text.encode()
    assume(len(set(raw)) >= memory.MIN_DISTINCT_BYTES)  # simpler values are not searched at all
    found = forms_of(raw)
    expected = {
        "raw": raw,
        "utf-16-le": text.encode("utf-16-le"),
        "utf-32-le": text.encode("utf-32-le"),
        "json": json.dumps(text, ensure_ascii=False)[1:-1].encode(),
        "json-ascii": json.dumps(text)[1:-1].encode(),
        "url": urllib.parse.quote(text, safe="").encode(),
        "url-plus": urllib.parse.quote_plus(text, safe="").encode(),
        "url-path": urllib.parse.quote(text).encode(),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    with contextlib.suppress(UnicodeEncodeError):
        expected["latin-1"] = text.encode("latin-1")
    for form, needle in found.items():
        if form.startswith("base64+"):
            shift = int(form[-1])
            for before, after in ((b"", b""), (b"\xff\xfe", b"\x00\x01\x02")):
                context = before[:shift].rjust(shift, b"Q")
                assert needle in base64.b64encode(context + raw + after), form
        else:
            assert needle == expected[form], form
    # Identical forms are kept once; every distinct one of at least 8 bytes is there.
    distinct = {needle for needle in expected.values() if len(needle) >= memory.MIN_NEEDLE_BYTES}
    assert distinct <= set(found.values())


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_json_strings_are_written_and_read_back_like_the_json_module(text: str) -> None:
    with memory.LockedWriter() as out:
        with memoryview(text.encode()) as view:
            memory.write_json_string(out, view)
        with out.view() as written:
            assert json.loads(bytes(written)) == text
            assert bytes(written) == json.dumps(text, ensure_ascii=False).encode()
            with written[1:-1] as inner, memory.LockedWriter() as back:
                memory.json_unescape_into(inner, back)
                with back.view() as plain:
                    assert bytes(plain) == text.encode()
    with memory.LockedWriter() as out, memoryview(json.dumps(text).encode()[1:-1]) as escaped:
        memory.json_unescape_into(escaped, out)
        with out.view() as plain:
            assert bytes(plain) == text.encode()


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(json_documents)
def test_json_values_finds_every_value_without_decoding(document: Any) -> None:
    encoded = json.dumps(document, indent=1).encode()
    found: dict[tuple[Any, ...], Any] = {}
    with memoryview(encoded) as view:
        for item in memory.json_values(view):
            if item.kind == "string":
                with memory.LockedWriter() as out:
                    memory.json_unescape_into(view[item.start : item.end], out)
                    with out.view() as plain:
                        found[item.path] = bytes(plain).decode()
            elif item.kind in ("number", "literal"):
                found[item.path] = json.loads(bytes(view[item.start : item.end]))

    def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
        if isinstance(node, dict):
            for key, child in node.items():
                yield from leaves(child, (*path, key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                yield from leaves(child, (*path, index))
        else:
            yield path, node

    assert found == dict(leaves(document))


def test_write_json_hands_unknown_objects_to_the_default_hook() -> None:
    secret = SecretValue.from_bytes("s", b'pa"ss\\word')
    with memory.LockedWriter() as out:

        def hook(value: object, writer: memory.LockedWriter) -> None:
            assert value is secret
            with secret.exposed() as view:
                memory.write_json_string(writer, view)

        memory.write_json(out, {"data": {"password": secret, "n": [1, True, None]}}, default=hook)
        with out.view() as written:
            assert json.loads(bytes(written)) == {"data": {"password": 'pa"ss\\word', "n": [1, True, None]}}
    with pytest.raises(TypeError), memory.LockedWriter() as out:
        memory.write_json(out, {"x": object()})


# -- the sweep ---------------------------------------------------------------------------------------------


def test_the_sweep_finds_and_zeroes_copies_in_every_form_and_halves() -> None:
    answer = run_child(
        SWEEP_REPORT
        + """
import base64, binascii, json, os, urllib.parse
from phases import memory
from phases.secrets import SecretValue
random = binascii.hexlify(os.urandom(16))          # bytes: the only object that holds the value
value = SecretValue.from_bytes("planted", random)
text = random.decode()
copies = [
    random + b"!",                                     # raw bytes (random + b"" would be random itself)
    "x" + text,                                        # a str (ASCII storage)
    "\\u20ac" + text,                                  # a str stored as UCS-2: UTF-16-LE in memory
    "\\U0001f600" + text,                              # a str stored as UCS-4: UTF-32-LE in memory
    base64.b64encode(b"ab" + random),                  # base64 at an offset
    binascii.hexlify(random),                          # hex
    text[:17] + "!",                                   # a first half
]
memory.wipe_bytes_object(random)
del text, random
def left():
    return {"left": [repr(c[:3]) for c in copies if any(ch not in ("\\x00", 0) for ch in c[4:12])]}
report_after(value, after=left)
"""
    )
    assert answer["copies_found"] >= 7 and answer["copies_zeroed"] == answer["copies_found"]
    assert answer["left"] == [], "every planted copy was zeroed in place"
    assert answer["summary"].startswith("1 secret wiped, ")


def test_a_second_sweep_finds_nothing_and_the_sweep_leaves_no_copy_of_its_own() -> None:
    answer = run_child(
        SWEEP_REPORT
        + """
import binascii, json, os
from phases import memory
from phases.secrets import SecretValue
random = binascii.hexlify(os.urandom(20))
value = SecretValue.from_bytes("s", random)
memory.wipe_bytes_object(random)
del random
memory.enable_sweep()
first = memory.NeedleSet(); first.add(value)
memory.sweep(first, secrets_wiped=0)                  # builds and drops its pattern, scratch, needles
report_after(value)
"""
    )
    assert answer["copies_found"] == 0, answer
    assert answer["bytes_scanned"] > 5_000_000 and answer["regions_scanned"] > 10
    assert answer["protection"].startswith("secret buffers locked")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-32-le"])
def test_a_copy_across_a_chunk_boundary_is_found_once_wherever_it_starts(encoding: str) -> None:
    raw = os.urandom(12).hex().encode()  # 24 bytes: searched as two 12-byte halves (or 48 in UTF-32)
    value = SecretValue.from_bytes("edge", raw)
    copy = raw.decode().encode(encoding)
    half = len(copy) // 2
    area = mmap.mmap(-1, 3 * memory.SCAN_CHUNK)
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    descriptor = os.open("/proc/self/mem", os.O_RDWR)
    needles = memory.NeedleSet()
    needles.add(value)
    scanner = memory._Scanner(needles, descriptor)
    overlap = needles.longest - 1
    try:
        # Around the end of the first chunk's own part, and around the end of the part it reads twice.
        for edge in (memory.SCAN_CHUNK, memory.SCAN_CHUNK + overlap):
            for offset in range(edge - len(copy) - 1, edge + 2):
                area[offset : offset + len(copy)] = copy
                hits = list(scanner.region(start, start + len(area)))
                assert hits == [(start + offset, half, "edge"), (start + offset + half, half, "edge")], offset
                assert all(scanner.zero(address, length) for address, length, _ in hits)
                assert not any(area[offset : offset + len(copy)])
    finally:
        scanner.close()
        needles.wipe()
        value.wipe()
        os.close(descriptor)
        area.close()


def test_wipe_all_sweeps_when_switched_on_and_reports_other_values_apart() -> None:
    answer = run_child(
        """
import binascii, json, logging, os, base64
logging.basicConfig(level=logging.INFO)
from phases import memory
from phases.secrets import SecretStore, SecretValue
memory.enable_sweep()
store = SecretStore()
for name in ("a", "b"):
    raw = binascii.hexlify(os.urandom(16))
    store.put(name, SecretValue.from_bytes(name, raw), source="test")
    memory.wipe_bytes_object(raw)
key_bytes = os.urandom(32)
key = SecretValue.from_bytes("UNSEAL_KEY", key_bytes)
stray = base64.b64encode(key_bytes)                   # like the init-keys Secret read back as JSON
memory.wipe_bytes_object(key_bytes)
memory.sweep_later([key]); key.wipe()
count = store.wipe_all()
report = store.last_sweep
print(json.dumps({"count": count, "held": store.held(), **report.as_dict(), "stray": stray[:8].decode()}))
"""
    )
    assert answer["count"] == 2 and answer["held"] == [] and answer["secrets_wiped"] == 2
    assert answer["copies_found"] == 0
    others = answer["other_copies"]["UNSEAL_KEY"]
    assert others >= 1 and answer["stray"] == "\0" * 8
    assert answer["summary"] == f"2 secrets wiped, 0 copies found; {others} stray copies of UNSEAL_KEY zeroed"


def test_without_the_switch_wipe_all_only_wipes() -> None:
    assert not memory.sweep_enabled()  # harden_process() was never called in the test process
    store = SecretStore()
    store.put("a", SecretValue.from_bytes("a", b"0123456789abcdef"), source="test")
    assert store.wipe_all() == 1 and store.last_sweep is None and store.held() == []


# -- environment intake ----------------------------------------------------------------------------------


def test_env_intake_leaves_no_copy_in_python_libc_or_the_initial_block() -> None:
    value = os.urandom(18).hex()
    answer = run_child(
        SWEEP_REPORT
        + """
import binascii, ctypes, json, os
from phases.secrets import take_from_env
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
# A second variable set late: glibc keeps a K=V copy of it that it never frees.
os.environb[b"GTT_LATE"] = binascii.hexlify(os.urandom(16))
value = take_from_env("GTT_SECRET")
late = take_from_env("GTT_LATE")
environ = open("/proc/self/environ", "rb").read()
checks = {
    "in_os_environ": "GTT_SECRET" in os.environ or "GTT_LATE" in os.environ,
    "getenv": [libc.getenv(b"GTT_SECRET"), libc.getenv(b"GTT_LATE")] != [None, None],
    "entry_left": b"GTT_SECRET=" in environ,
    "missing": take_from_env("GTT_NOT_SET") is None,
    "late_length": len(late),
}
report_after(value, late, extra=checks)
""",
        env={"GTT_SECRET": value},
    )
    assert value not in json.dumps(answer)
    assert answer["in_os_environ"] is False and answer["getenv"] is False and answer["missing"] is True
    assert answer["entry_left"] is True, "the name stays, its value is zeroed in place"
    assert answer["late_length"] == 32
    assert answer["copies_found"] == 0, answer["summary"]


def test_early_intake_hands_the_value_to_the_store_later() -> None:
    answer = run_child(
        """
import json, os
from dataclasses import dataclass
from phases.secrets import SecretStore, take_env_early
@dataclass
class Declared:
    name: str
    env: str
early = take_env_early([Declared("token", "GTT_EARLY"), Declared("absent", "GTT_ABSENT")])
gone = "GTT_EARLY" not in os.environ and b"GTT_EARLY=x" not in open("/proc/self/environ", "rb").read()
store = SecretStore()
found = store.take_env([Declared("token", "GTT_EARLY"), Declared("absent", "GTT_ABSENT")])
with store.get("token").exposed() as view:
    same = bytes(view) == b"x" * 12
print(json.dumps({"early": early, "gone": gone, "found": found, "same": same}))
""",
        env={"GTT_EARLY": "x" * 12},
    )
    assert answer == {"early": ["GTT_EARLY"], "gone": True, "found": ["token"], "same": True}


# -- zero-copy writers ---------------------------------------------------------------------------------------


def test_a_child_gets_secret_env_and_a_secret_pipe_without_a_copy_in_our_memory(tmp_path: Path) -> None:
    answer = run_child(
        SWEEP_REPORT
        + f"""
import asyncio, binascii, json, os, pathlib
from phases import memory, shell
from phases.secrets import SecretValue
raw = binascii.hexlify(os.urandom(16))
value = SecretValue.from_bytes("TOKEN", raw)
digest = __import__("hashlib").sha256(raw).hexdigest()
memory.wipe_bytes_object(raw); del raw
lines = []
async def main():
    script = 'printf %s "$TOKEN" | sha256sum; sha256sum < "$1"; cat /proc/$$/cmdline'
    with value.exposed() as view, shell.secret_pipe(view) as path:
        await shell.run_command(
            ["sh", "-c", script, "sh", path],
            secret_env={{"TOKEN": value}},
            on_output=lambda stream, batch: lines.extend(batch),
            cwd=pathlib.Path({str(tmp_path)!r}),
        )
    return path
path = asyncio.run(main())
report_after(value, extra={{"path": path, "ok": sum(digest in line for line in lines)}})
"""
    )
    assert answer["path"] == "/dev/fd/3"
    assert answer["ok"] == 2, answer  # the child read the value from its environment and from the pipe
    assert answer["copies_found"] == 0, answer["summary"]


def test_a_vault_write_leaves_no_copy_of_the_value_or_the_token(openbao_dev: DevOpenBao) -> None:
    answer = run_child(
        SWEEP_REPORT
        + f"""
import binascii, json, os
from phases import memory
from phases.secrets import SecretValue
from phases.vault import VaultClient
raw = binascii.hexlify(os.urandom(16))
value = SecretValue.from_bytes("password", raw)
memory.wipe_bytes_object(raw); del raw
root = SecretValue.from_bytes("root", {openbao_dev.root_token.encode()!r})
client = VaultClient({openbao_dev.url!r}, token=root)
mount = "nt" + os.urandom(4).hex()
client.enable_kv2(mount)
version = client.kv2_write(mount, "app", {{"password": value}})
keys = client.kv2_keys(mount, "app")                  # reads the value back, into locked memory only
report_after(value, extra={{"version": version, "keys": keys}})
"""
    )
    assert answer["version"] == 1 and answer["keys"] == ["password"]
    assert answer["copies_found"] == 0, answer["summary"]


def test_http_answers_are_read_with_content_length_chunked_and_until_close() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b'{"data": {"k": "v"}}'
            if self.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in (body[:5], body[5:]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            elif self.path == "/close":
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = memory.HttpPool(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        for path in ("/length", "/chunked", "/close", "/length"):
            request = f"GET {path} HTTP/1.1\r\nHost: {pool.host_header}\r\n\r\n".encode()
            with memoryview(request) as wire:
                answer = pool.exchange(wire, method="GET", timeout=5)
            assert answer.status == 200 and answer.body_bytes() == b'{"data": {"k": "v"}}', path
            answer.close()
        assert len(pool._idle) == 1, "kept-alive connections are reused, closed ones dropped"
    finally:
        pool.close()
        server.shutdown()
        server.server_close()


# -- redaction ---------------------------------------------------------------------------------------------


def test_redaction_replaces_raw_json_url_and_base64_forms() -> None:
    store = SecretStore()
    raw = b"s3cr3t/val+ue=" + os.urandom(6).hex().encode()
    store.put("s", SecretValue.from_bytes("s", raw), source="test")
    text = raw.decode()
    line = (
        f"raw {text} url {urllib.parse.quote(text, safe='')} json {json.dumps(text)} "
        f"b64 {base64.b64encode(b'user:' + raw).decode()}"
    )
    redacted = store.redact(line)
    assert text not in redacted and urllib.parse.quote(text, safe="") not in redacted
    assert redacted.count(REDACTED) == 4, redacted
    assert store.redact("nothing here") == "nothing here"
    store.wipe_all()
    assert store.redact(line) == line  # nothing held, nothing to redact


def test_log_records_are_redacted_while_a_value_is_held(caplog: pytest.LogCaptureFixture) -> None:
    raw = os.urandom(12).hex().encode()
    value = SecretValue.from_bytes("s", raw)
    text = raw.decode()
    logger = logging.getLogger("tests.memory")
    handler_filter = SecretRedactionFilter()
    caplog.handler.addFilter(handler_filter)
    factory = logging.getLogRecordFactory()
    try:
        with caplog.at_level(logging.INFO, logger="tests.memory"):
            logger.info("token is %s", text)
            try:
                raise ValueError(f"bad token {text}")
            except ValueError:
                logger.exception("failed")
        assert text not in caplog.text and REDACTED in caplog.text
        assert redact_held(f"x{text}x") == f"x{REDACTED}x"
        install_log_redaction()
        install_log_redaction()  # idempotent
        record = logging.getLogRecordFactory()("n", logging.INFO, "f", 1, "v=%s", (text,), None)
        assert record.getMessage() == f"v={REDACTED}"
    finally:
        caplog.handler.removeFilter(handler_filter)
        logging.setLogRecordFactory(factory)
        secrets_module._factory_installed = False
        value.wipe()
    assert redact_held(text) == text


# -- the engine: Ctrl+C or an error during phase 2 still wipes and sweeps ----------------------------------


@pytest.fixture
def sweeping() -> Iterator[None]:
    memory.enable_sweep(True)
    try:
        yield
    finally:
        memory.enable_sweep(False)


def phase_two(action: Any) -> list[Phase]:
    async def never_done(ctx: StepContext) -> bool:
        return False

    return [
        Phase(
            2, "Bootstrap secrets", (Step("write", "Write", never_done, action, needs_secrets=("s",)),), True
        )
    ]


def random_store() -> SecretStore:
    store = SecretStore()
    raw = bytearray(os.urandom(24).hex().encode())
    store.put("s", SecretValue("s", raw), source="test")  # the bytearray is zeroed when handed over
    return store


@pytest.mark.parametrize("how", ["interrupted", "error"])
async def test_ctrl_c_or_an_error_during_phase_2_still_wipes_and_sweeps(
    tmp_path: Path, sweeping: None, how: str
) -> None:
    started = asyncio.Event()

    async def action(ctx: StepContext) -> None:
        assert ctx.secret("s")
        started.set()
        if how == "error":
            raise RuntimeError("the writer broke")
        await asyncio.Event().wait()

    store = random_store()
    engine = Engine(phase_two(action), store=StateStore(tmp_path), secrets=store)
    events = []

    async def consume() -> None:
        async for event in engine.run():
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    if how == "interrupted":
        engine.cancel()  # what the CLI's SIGINT handler does
    await asyncio.wait_for(task, 30)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == ("interrupted" if how == "interrupted" else "failed")
    assert any(isinstance(event, StepStarted) for event in events)
    if how == "error":
        assert any(isinstance(event, StepFailed) for event in events)
    assert store.held() == [] and store.wiped_count == 1
    assert store.last_sweep is not None and store.last_sweep.secrets_wiped == 1
    assert store.last_sweep.clean and store.last_sweep.searched == ("s",)


# -- hardening and the pause hook --------------------------------------------------------------------------


@pytest.mark.parametrize("allow", [False, True])
def test_harden_process_turns_core_dumps_off_and_the_process_undumpable(allow: bool) -> None:
    answer = run_child(
        """
import ctypes, json, logging, resource
from phases import memory
hardening = memory.harden_process()
libc = ctypes.CDLL(None)
print(json.dumps({
    "dumpable": libc.prctl(3, 0, 0, 0, 0), "core": resource.getrlimit(resource.RLIMIT_CORE),
    "sweep": memory.sweep_enabled(), "factory": logging.getLogRecordFactory().__name__,
    "summary": hardening.summary(), "again": memory.harden_process() == hardening,
}))
""",
        env={"GITOPS_TUI_ALLOW_MEMORY_READ": "1"} if allow else {"GITOPS_TUI_ALLOW_MEMORY_READ": ""},
    )
    assert answer["dumpable"] == (1 if allow else 0)
    assert answer["core"] == [0, 0] and answer["sweep"] is True and answer["again"] is True
    assert answer["factory"] == "redacting_factory"
    assert answer["summary"].startswith("core dumps off, " + ("dumpable" if allow else "not dumpable"))


def test_pause_points_are_inert_without_the_test_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_TUI_PAUSE_AT", "before-wipe")
    monkeypatch.delenv("GITOPS_TUI_ALLOW_MEMORY_READ", raising=False)
    memory.pause_point("before-wipe")  # would stop the test process if it were active


def test_wipe_str_object_only_touches_a_string_nobody_else_holds() -> None:
    constant = "a constant in a code object"
    assert not memory.wipe_str_object(constant, max_refcount=1)
    assert constant == "a constant in a code object"
    fresh = os.urandom(8).hex() + "é€"
    assert memory.wipe_str_object(fresh, max_refcount=1)
    assert set(fresh) == {"\0"}
    interned = sys.intern(os.urandom(8).hex())
    assert not memory.wipe_str_object(interned, max_refcount=1)


def test_socket_level_http_failures_map_to_oserror() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = memory.HttpPool(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefusedError), memoryview(b"GET / HTTP/1.1\r\n\r\n") as wire:
        pool.exchange(wire, method="GET", timeout=2)


def test_values_too_simple_to_zero_safely_are_reported_and_word_halves_are_not_searched() -> None:
    # Zeroing every match of "aaaa…" or of the half "password" would destroy the process's own data.
    plain = SecretValue("PLAIN", bytearray(b"a" * 16))
    words = SecretValue("WORDS", bytearray(b"mysecretpassword"))
    mixed = SecretValue("MIXED", bytearray(b"Zq9-xK2!mW4#pL7&"))
    needles = memory.NeedleSet()
    for value in (plain, words, mixed):
        needles.add(value)
    forms: dict[str, list[str]] = {}
    for needle, _view in needles.items():
        forms.setdefault(needle.secret, []).append(needle.form)
    needles.wipe()
    for value in (plain, words, mixed):
        value.wipe()
    assert needles.unsearchable == ["PLAIN"] and "PLAIN" not in forms
    assert "raw" in forms["WORDS"] and not any("half" in form for form in forms["WORDS"])
    assert "raw (first half)" in forms["MIXED"] and "raw" not in forms["MIXED"]
