"""Secret wipe: the phase-2 self-scan of our own memory, in seconds per 100 MB resident (<= 0.5 s).

The process first grows to a few hundred MB of ordinary content (strings, dicts, byte buffers, as a long
session accumulates), with a few copies of the secrets planted in it. Then the sweep of ``phases.memory``
runs exactly as the engine runs it after phase 2: the four default bootstrap secrets go into a
``NeedleSet`` (every encoded form the module searches for) and ``sweep()`` reads the process's writable
memory through ``/proc/self/mem``, zeroing each hit. The figure is the sweep's time divided by the resident
size in units of 100 MB; a second figure divides by what it actually scanned.

Then the copies are planted again and the store is wiped the way the engine does it on the app's loop
(``SecretStore.wipe_buffers`` at once, the sweep awaited through ``asyncio.to_thread``) while a 5 ms ticker
runs on that loop: its worst lateness is how long a UI would have frozen (``secret_scan_loop_stall``).

If ``phases.memory`` cannot be imported, a minimal scan of this package (read-only, raw forms only) is timed
instead and the notes say so.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from typing import Any, Final

from bench.core import MB, BenchContext, Figure, LoopLagProbe, rss_bytes, settle_memory
from phases.secrets import SecretStore, SecretValue

SECRETS: Final = {
    "github_token": b"ghp_" + b"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "cloudflare_api_token": b"cfTok_0123456789abcdefABCDEF0123456789zz",
    "myapp_db_password": b"correct-horse-battery-staple-42",
    "myapp_api_key": b"ak_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
}
PLANTED: Final = 3  # raw copies of each secret hidden in the ballast


def build_ballast(megabytes: int) -> tuple[list[Any], list[tuple[int, int, int]]]:
    """About ``megabytes`` MB of live, varied data (text, dicts of text, binary buffers) and where the
    planted secret copies are: (ballast index, offset, length)."""
    rng = random.Random(9)
    words = [f"{rng.getrandbits(40):x}-word" for _ in range(5000)]
    ballast: list[Any] = []
    text_mb = megabytes // 2
    for _ in range(text_mb * 1024 // 8):  # ~8 KB per line group
        ballast.append([" ".join(rng.choices(words, k=12)) for _ in range(40)])
        ballast.append({f"key-{n}": rng.choice(words) for n in range(8)})
    blob = bytearray(os.urandom(MB))
    for _ in range(megabytes - text_mb):
        ballast.append(bytearray(blob))
    planted: list[tuple[int, int, int]] = []
    for index, value in enumerate(SECRETS.values()):
        for copy in range(PLANTED):
            position = len(ballast) - (1 + index * PLANTED + copy)
            offset = 4096 + 997 * copy
            ballast[position][offset : offset + len(value)] = value
            planted.append((position, offset, len(value)))
    return ballast, planted


def plant(ballast: list[Any], planted: list[tuple[int, int, int]], secrets: list[SecretValue]) -> None:
    """Plant the copies again from locked memory (the first sweep zeroed this module's constants)."""
    copies = [secret for secret in secrets for _ in range(PLANTED)]
    for (index, offset, length), secret in zip(planted, copies, strict=True):
        with secret.exposed() as view:
            ballast[index][offset : offset + length] = view


async def sweep_beside_the_loop(secrets: list[SecretValue]) -> tuple[float, float, int]:
    """(worst loop stall in ms, sweep seconds, copies found): the engine's way, as after phase 2."""
    from phases import memory

    memory.enable_sweep(True)  # this benchmark's own interpreter: nothing else shares it
    store = SecretStore()
    for secret in secrets:
        store.put(secret.name, secret, source="bench")
    probe = LoopLagProbe()
    probe.start()
    await asyncio.sleep(0.05)
    _count, sweep = store.wipe_buffers()
    assert sweep is not None
    report = await asyncio.to_thread(sweep.run)
    await asyncio.sleep(0.05)
    await probe.stop()
    assert report is not None
    return probe.max_ms, report.seconds, report.copies_found


def still_there(ballast: list[Any], planted: list[tuple[int, int, int]]) -> int:
    """Planted copies not zeroed (the sweep zeroes every copy it finds)."""
    return sum(1 for index, offset, length in planted if any(ballast[index][offset : offset + length]))


def sweep_with_phases_memory(secrets: list[SecretValue]) -> dict[str, float]:
    from phases import memory

    needles = memory.NeedleSet()
    for secret in secrets:
        needles.add(secret)
    count = len(needles)
    rss = rss_bytes()
    start = time.perf_counter()
    report = memory.sweep(needles, secrets_wiped=len(secrets))
    seconds = time.perf_counter() - start
    if report.error is not None:
        raise RuntimeError(f"the sweep failed: {report.error}")
    return {
        "seconds": seconds,
        "rss": float(rss),
        "scanned": float(report.bytes_scanned),
        "found": float(report.copies_found),
        "zeroed": float(report.copies_zeroed),
        "needles": float(count),
        "regions": float(report.regions_scanned),
    }


def _regions() -> Iterator[tuple[int, int]]:
    with open("/proc/self/maps", encoding="utf-8") as maps:  # noqa: PTH123
        for line in maps:
            fields = line.split()
            if (
                fields[1].startswith("rw")
                and fields[1][3] == "p"
                and (len(fields) < 6 or fields[5] != "[vvar]")
            ):
                low, high = (int(part, 16) for part in fields[0].split("-"))
                yield low, high


def sweep_minimal(secrets: list[SecretValue]) -> dict[str, float]:
    """A read-only scan for the raw forms only: the floor any self-scan costs."""
    needles = []
    for secret in secrets:
        with secret.exposed() as view:
            needles.append(bytes(view))
    rss = rss_bytes()
    scanned = found = regions = 0
    start = time.perf_counter()
    overlap = max(map(len, needles)) - 1
    with open("/proc/self/mem", "rb", buffering=0) as memory:  # noqa: PTH123
        for low, high in list(_regions()):
            regions += 1
            position = low
            while position < high:
                size = min(MB + overlap, high - position)
                try:
                    memory.seek(position)
                    chunk = memory.read(size) or b""
                except OSError:
                    chunk = b""
                if not chunk:
                    position += 4096
                    continue
                scanned += len(chunk)
                found += sum(chunk.count(needle) for needle in needles)
                position += max(len(chunk) - overlap, 1)
    return {
        "seconds": time.perf_counter() - start,
        "rss": float(rss),
        "scanned": float(scanned),
        "found": float(found),
        "zeroed": 0.0,
        "needles": float(len(needles)),
        "regions": float(regions),
    }


def run(ctx: BenchContext) -> list[Figure]:
    size = 150 if ctx.quick else 300
    ballast, planted = build_ballast(size)
    settle_memory()
    secrets = [SecretValue.from_bytes(name, value) for name, value in SECRETS.items()]
    again = [SecretValue.from_bytes(name, value) for name, value in SECRETS.items()]
    try:
        import phases.memory  # type: ignore[import-untyped,unused-ignore]  # noqa: F401  (absent until issue 5 lands)

        result = sweep_with_phases_memory(secrets)
        how = "phases.memory.sweep"
    except ImportError:
        result = sweep_minimal(secrets)
        how = "bench's minimal read-only scan (phases.memory not importable)"
        ctx.notes.append(
            "phases.memory is absent: timed a minimal raw-form scan of bench/secret_scan.py instead"
        )
    left = still_there(ballast, planted)
    plant(ballast, planted, again)
    stall_ms, threaded_seconds, threaded_found = asyncio.run(sweep_beside_the_loop(again))
    left_threaded = still_there(ballast, planted)
    del ballast
    per_rss = result["seconds"] / (result["rss"] / (100 * MB))
    per_scanned = result["seconds"] / (result["scanned"] / (100 * MB))
    return [
        Figure(
            "secret_scan_per_100mb",
            per_rss,
            "s",
            "<=0.5",
            f"{how}: {result['seconds']:.2f} s for {result['rss'] / MB:.0f} MB resident, "
            f"{int(result['needles'])} needles",
        ),
        Figure(
            "secret_scan_per_100mb_scanned",
            per_scanned,
            "s",
            "-",
            f"per 100 MB actually read ({result['scanned'] / MB:.0f} MB in {int(result['regions'])} regions)",
        ),
        Figure("secret_scan_rss", result["rss"] / MB, "MB", "-", "resident size when the sweep started"),
        Figure(
            "secret_scan_loop_stall",
            stall_ms,
            "ms",
            "-",
            f"worst lateness of a 5 ms ticker on the loop while the engine's sweep ran in a thread ("
            f"{threaded_seconds:.2f} s, {threaded_found} copies found, planted copies left: {left_threaded})",
        ),
        Figure(
            "secret_scan_copies_found",
            result["found"],
            "count",
            "-",
            f"planted {len(planted)} (plus the copies in this module's constants); zeroed "
            f"{int(result['zeroed'])}; planted copies left after the sweep: {left}",
        ),
    ]
