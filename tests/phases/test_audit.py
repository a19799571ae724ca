"""The audit log: private file, one line per entry, newest first on read, corrupt lines skipped, redaction."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from phases.audit import (
    AUDIT_FILE,
    MAX_TEXT,
    AuditEntry,
    AuditLog,
    append_entry,
    current_actor,
    read_audit,
)

T0 = datetime(2026, 11, 26, 10, 18, 33, 250000, tzinfo=UTC)


def make_log(state_dir: Path, **options: object) -> AuditLog:
    moments = iter(T0 + timedelta(seconds=n) for n in range(10_000))
    return AuditLog(state_dir, user="alice", host="ops-1", clock=lambda: next(moments), **options)  # type: ignore[arg-type]


def record(log: AuditLog, name: str, result: str = "succeeded", **fields: object) -> AuditEntry:
    return log.record(
        action="reconcile",
        kind="Kustomization",
        namespace="flux-system",
        name=name,
        result=result,
        **fields,  # type: ignore[arg-type]
    )


def test_entries_are_appended_as_json_lines_in_a_private_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    log = make_log(state_dir)

    record(
        log, "apps", message="Applied revision: main@sha1:0123", duration=1.23456, revision="main@sha1:0123"
    )
    record(log, "infra", result="timed-out", message="timed out after 300 s")

    assert log.path == state_dir / AUDIT_FILE
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    lines = log.path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {
        "time": "2026-11-26T10:18:33.250Z",
        "user": "alice",
        "host": "ops-1",
        "action": "reconcile",
        "kind": "Kustomization",
        "namespace": "flux-system",
        "name": "apps",
        "result": "succeeded",
        "message": "Applied revision: main@sha1:0123",
        "duration": 1.235,
        "revision": "main@sha1:0123",
        "reason": "",
    }
    assert json.loads(lines[1])["time"] == "2026-11-26T10:18:34.250Z"


def test_read_returns_the_newest_first_up_to_the_limit(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    for n in range(5):
        record(log, f"ks-{n}")

    assert [entry.name for entry in log.read()] == ["ks-4", "ks-3", "ks-2", "ks-1", "ks-0"]
    assert [entry.name for entry in read_audit(log.path, limit=2)] == ["ks-4", "ks-3"]
    assert read_audit(log.path, limit=0) == []
    newest = log.read()[0]
    assert (newest.who, newest.target, newest.ok) == ("alice@ops-1", "Kustomization flux-system/ks-4", True)


def test_a_corrupt_or_foreign_line_is_skipped(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    record(log, "before")
    with log.path.open("a", encoding="utf-8") as handle:
        handle.write('{"time": "2026-11-26T10:00:00Z", "user": "x"\n')  # cut short by a crash
        handle.write("not json at all\n")
        handle.write('["a", "list"]\n')
        handle.write('{"time": 1, "user": "u", "host": "h", "action": "a", "kind": "k", "namespace": "", '
                     '"name": "n", "result": "r"}\n')  # fmt: skip
        handle.write("\n")
    record(log, "after")
    with log.path.open("ab") as handle:
        handle.write(b'{"time": "2026-11-26T10:19:00Z", "us')  # a half-written last line, no newline

    assert [entry.name for entry in log.read()] == ["after", "before"]


def test_a_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_audit(tmp_path / "nope" / AUDIT_FILE) == []


def test_long_logs_are_read_from_the_end(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    padding = "x" * 900  # ~1 KB lines: 200 of them span several read blocks
    for n in range(200):
        record(log, f"ks-{n:03d}", message=padding)

    names = [entry.name for entry in read_audit(log.path, limit=150)]

    assert names == [f"ks-{n:03d}" for n in range(199, 49, -1)]


def test_free_text_goes_through_the_redactor_and_is_bounded(tmp_path: Path) -> None:
    log = make_log(tmp_path, redact=lambda text: text.replace("hunter2", "[redacted]"))

    written = record(
        log, "apps", result="failed", message="auth failed for hunter2 " + "y" * 5000, reason="hunter2"
    )

    raw = log.path.read_text()
    assert "hunter2" not in raw
    assert written.reason == "[redacted]"
    assert written.message.startswith("auth failed for [redacted] ")
    assert len(written.message) == MAX_TEXT and written.message.endswith("…")
    assert log.read()[0] == written


def test_an_existing_loose_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    path.write_text("")
    path.chmod(0o644)

    record(make_log(tmp_path), "apps")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_writers_never_interleave_within_a_line(tmp_path: Path) -> None:
    path = tmp_path / AUDIT_FILE
    big = "z" * 3000

    def writer(thread: int) -> None:
        for n in range(100):
            entry = AuditEntry(
                time="2026-11-26T10:18:33.000Z",
                user="u",
                host="h",
                action="suspend",
                kind="Kustomization",
                namespace="ns",
                name=f"{thread}-{n}",
                result="succeeded",
                message=big,
            )
            append_entry(path, entry)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = path.read_text().splitlines()
    assert len(lines) == 400
    assert all(json.loads(line)["message"] == big for line in lines)
    assert len(read_audit(path, limit=1000)) == 400


def test_current_actor_is_user_at_host() -> None:
    user, at, host = current_actor().partition("@")
    assert user and at and host == os.uname().nodename
