"""Log pane: a child process flooding output through run_command -> Engine -> LogPane (>= 100,000 lines/s).

The whole real path, in the real app: a one-step plan whose action is ``ctx.run([python, -c, FLOOD, N])``
(so ``phases.shell.run_command`` reads the pipes, the engine batches ``OutputLines``), consumed in a Textual
worker that posts ``EngineEvent`` messages exactly as ``GitOpsApp.run_bootstrap`` does, handled by
``GitOpsApp.handle_engine_event`` into the real ``LogPane``. The app runs headless (120x40).

Measured while the flood runs:

* lines per second: N lines / (first byte requested -> last line written to the Log widget);
* the longest stall of the UI loop: a 5 ms ticker on the app's loop, its worst lateness;
* key latency: a thread presses ``f12`` every ~50 ms through the driver (as the terminal input thread
  does); the time until the app's action for it runs;
* RSS growth: sampled every 100 ms from before the first line; the peak minus the start.

Then the same flood again with four bootstrap secrets held by the engine (as in phases 1 and 2), whose
every output line the engine redacts.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType

import tui.app
from bench.core import BenchContext, Figure, GcPauses, LoopLagProbe, median, rss_mb, write_unreachable_config
from phases.config import load_config
from phases.engine import Engine, Phase, Step, StepContext
from phases.events import RunFinished
from phases.secrets import SecretStore, SecretValue
from phases.state import StateStore
from tui.app import EngineEvent, GitOpsApp
from widgets.log_pane import LogPane

SIZE = (120, 40)
KEY_INTERVAL = 0.05  # seconds between f12 presses (jittered): a quick flood now lasts well under a second
# Throwaway values in the default secrets' formats (GitHub token, Cloudflare token, two app secrets).
HELD_SECRETS = {
    "github_token": b"ghp_" + b"Bench0Secret1Value2For3Redaction4" + b"xy",
    "cloudflare_api_token": b"cf-" + b"bench-token-0123456789abcdefghij",
    "myapp_db_password": b"bench-db-password-7d41",
    "myapp_api_key": b"bench-api-key-9f0e3c2b1a",
}
FLOOD = """
import sys
total = int(sys.argv[1])
write = sys.stdout.buffer.write
for start in range(0, total, 2000):
    write("".join(
        f"2026-01-01T00:00:00.000Z INFO reconcile object={i:07d} namespace=team-{i % 50:02d} "
        f"status=applied duration=3ms\\n"
        for i in range(start, min(total, start + 2000))
    ).encode())
"""


class FloodApp(GitOpsApp):
    """The real app plus one binding whose action records when it ran."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("f12", "bench_ping", "ping", show=False)]
    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))  # relative paths resolve against bench/

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pings: list[float] = []

    def action_bench_ping(self) -> None:
        self.pings.append(time.monotonic())


class KeyPresser(threading.Thread):
    """Presses f12 at jittered intervals through the driver, from a thread, as terminal input arrives."""

    def __init__(self, send: Callable[[events.Key], None], interval: float) -> None:
        super().__init__(name="bench-keys", daemon=True)
        self.send = send
        self.interval = interval
        self.sent: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random(6)
        while not self.stop_event.wait(self.interval * rng.uniform(0.6, 1.4)):
            self.sent.append(time.monotonic())
            self.send(events.Key("f12", None))


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.interval = interval
        self.samples: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append(rss_mb())
            if self.stop_event.wait(self.interval):
                self.samples.append(rss_mb())
                return


async def flood(ctx: BenchContext, lines: int, *, secrets_held: bool = False) -> dict[str, float]:
    config = load_config(str(write_unreachable_config(ctx.workdir / "config")))
    secrets = SecretStore()
    if secrets_held:
        for name, value in HELD_SECRETS.items():
            secrets.put(name, SecretValue.from_bytes(name, value), source="env")
    app = FloodApp(config)
    argv = [sys.executable, "-c", FLOOD, str(lines)]
    started: list[float] = []

    async def action(step_ctx: StepContext) -> None:
        started.append(time.perf_counter())
        await step_ctx.run(argv, timeout=600)

    async def not_done(step_ctx: StepContext) -> bool:
        return False

    engine = Engine(
        [Phase(1, "flood", (Step(id="flood", title="flood the log", check=not_done, action=action),))],
        store=StateStore(ctx.workdir / ("state-secrets" if secrets_held else "state")),
        secrets=secrets,
    )
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.sleep(1.0)  # the app's after-first-paint work (watcher, Vault poll) settles
        await pilot.pause()
        pane = app.query_one(LogPane)
        written = 0
        last_write = 0.0
        original_flush = pane.flush

        def counting_flush() -> None:
            nonlocal written, last_write
            pending = pane.pending_count
            original_flush()
            if pending:
                written += pending
                last_write = time.perf_counter()

        pane.flush = counting_flush  # type: ignore[method-assign]
        finished: asyncio.Future[RunFinished] = asyncio.get_running_loop().create_future()

        async def consume() -> None:  # GitOpsApp.run_bootstrap's loop
            async for event in engine.run():
                app.post_message(EngineEvent(event))
                if isinstance(event, RunFinished):
                    finished.set_result(event)

        driver = app._driver
        assert driver is not None
        presser = KeyPresser(driver.process_message, interval=KEY_INTERVAL)
        sampler = RssSampler()
        probe = LoopLagProbe()
        sampler.start()
        await asyncio.sleep(0.3)
        probe.start()
        presser.start()
        with GcPauses() as gc_pauses:
            cpu_start = time.thread_time()  # the UI thread's CPU: pipes, engine, log pane and frames
            app.run_worker(consume(), exclusive=False)
            result = await asyncio.wait_for(finished, timeout=900)
            for _ in range(500):  # the last batch is on its way (a flush every 50 ms)
                if written >= lines:
                    break
                await asyncio.sleep(0.01)
            cpu_seconds = time.thread_time() - cpu_start
        presser.stop_event.set()
        await probe.stop()
        await asyncio.sleep(0.3)  # answers to the last presses
        sampler.stop_event.set()
        presser.join()
        sampler.join()
        latencies = [(handled - sent) * 1000 for sent, handled in zip(presser.sent, app.pings, strict=False)]
        assert result.status == "succeeded", result.reason
        elapsed = last_write - started[0]
        return {
            "lines": float(written),
            "rate": written / elapsed if elapsed > 0 else float("nan"),
            "seconds": elapsed,
            "max_stall_ms": probe.max_ms,
            "p99_stall_ms": probe.percentile_ms(0.99),
            "stalls_over_50ms": float(sum(1 for lag in probe.lags if lag > 0.05)),
            "ui_cpu_us_per_line": cpu_seconds / written * 1e6 if written else float("nan"),
            "key_max_ms": max(latencies, default=float("nan")),
            "key_median_ms": median(latencies),
            "keys": float(len(latencies)),
            "keys_lost": float(len(presser.sent) - len(app.pings)),
            "rss_start": sampler.samples[0],
            "rss_peak": max(sampler.samples),
            "rss_end": sampler.samples[-1],
            "flushes": float(pane.flush_count),
            "gc_max_ms": gc_pauses.max_ms(),
            "gc2_max_ms": gc_pauses.max_ms(2),
            "gc2_count": float(gc_pauses.count(2)),
            "gc_total_ms": gc_pauses.total_ms(),
        }


async def run(ctx: BenchContext) -> list[Figure]:
    lines = 200_000 if ctx.quick else 1_000_000
    r = await flood(ctx, lines)
    held = await flood(ctx, lines, secrets_held=True)
    scope = f"{int(r['lines']):,} lines in {r['seconds']:.1f} s"
    return [
        Figure(
            "log_lines_per_s",
            r["rate"],
            "lines/s",
            ">=100000",
            f"{scope}; child -> run_command -> Engine -> LogPane",
        ),
        Figure(
            "log_max_ui_stall",
            r["max_stall_ms"],
            "ms",
            "<=50",
            f"worst lateness of a 5 ms ticker; p99 {r['p99_stall_ms']:.1f} ms",
        ),
        Figure(
            "log_stalls_over_50ms",
            r["stalls_over_50ms"],
            "count",
            "-",
            "ticker lateness above 50 ms during the flood (less sensitive to other load than the maximum)",
        ),
        Figure(
            "log_ui_cpu_per_line",
            r["ui_cpu_us_per_line"],
            "us",
            "-",
            "UI-thread CPU time per line (reading the pipes, engine, log pane, frames), from the flood's "
            "start to its last line on screen",
        ),
        Figure(
            "log_key_latency_max",
            r["key_max_ms"],
            "ms",
            "<=50",
            f"{int(r['keys'])} f12 presses during the flood, lost {int(r['keys_lost'])}; "
            f"median {r['key_median_ms']:.1f} ms",
        ),
        Figure(
            "log_rss_growth",
            r["rss_peak"] - r["rss_start"],
            "MB",
            "<=30",
            f"peak during {scope} minus before (start {r['rss_start']:.0f} MB, end {r['rss_end']:.0f} MB)",
        ),
        Figure("log_rss_growth_at_end", r["rss_end"] - r["rss_start"], "MB", "-", "after the flood ended"),
        Figure("log_write_batches", r["flushes"], "count", "-", "writes to the Log widget made by LogPane"),
        Figure(
            "log_gc_max_pause",
            r["gc_max_ms"],
            "ms",
            "-",
            f"longest cyclic-GC run during the flood; {int(r['gc2_count'])} full collections, "
            f"longest {r['gc2_max_ms']:.0f} ms; all GC {r['gc_total_ms']:.0f} ms",
        ),
        Figure(
            "log_lines_per_s_secrets_held",
            held["rate"],
            "lines/s",
            "-",
            f"the same flood with {len(HELD_SECRETS)} secrets held, every line redacted by the engine; "
            f"{int(held['lines']):,} lines in {held['seconds']:.1f} s",
        ),
        Figure(
            "log_max_ui_stall_secrets_held",
            held["max_stall_ms"],
            "ms",
            "-",
            f"p99 {held['p99_stall_ms']:.1f} ms; key latency max {held['key_max_ms']:.1f} ms "
            f"({int(held['keys'])} presses, lost {int(held['keys_lost'])})",
        ),
    ]
