"""Engine overhead: a plan of 50 no-op steps through phases.engine.Engine, events consumed (target <= 50 ms).

The steps' checks say "not done" and their actions do nothing, so what is timed is the engine itself: events,
the run state it persists (``StateStore.save`` after each change) and the queue to the consumer. A second
figure times the same run with the state writes stubbed out, which splits the total into the engine proper
and its persistence.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.core import BenchContext, Figure, median, ms_since
from phases.engine import Engine, Phase, Step, StepContext
from phases.state import RunState, StateStore

STEPS = 50


async def _not_done(ctx: StepContext) -> bool:
    return False


async def _nothing(ctx: StepContext) -> None:
    return None


def plan(steps: int = STEPS) -> list[Phase]:
    """``steps`` no-op steps spread over the five phases, as a real plan is."""
    per_phase = [steps // 5 + (1 if index < steps % 5 else 0) for index in range(5)]
    phases: list[Phase] = []
    counter = 0
    for number, count in enumerate(per_phase, start=1):
        chosen = []
        for _ in range(count):
            counter += 1
            chosen.append(
                Step(id=f"noop-{counter}", title=f"no-op step {counter}", check=_not_done, action=_nothing)
            )
        phases.append(
            Phase(number=number, title=f"phase {number}", steps=tuple(chosen), wipe_secrets_after=number == 2)
        )
    return phases


async def time_run(state_dir: Path, phases: list[Phase]) -> tuple[float, int]:
    """Milliseconds from ``Engine.run()`` to RunFinished consumed, and the number of events."""
    engine = Engine(phases, store=StateStore(state_dir))
    events = 0
    start = time.perf_counter()
    async for _event in engine.run():
        events += 1
    return ms_since(start), events


class _NoWriteStore(StateStore):
    def save(self, state: RunState) -> None:
        return None


async def time_run_without_state(state_dir: Path, phases: list[Phase]) -> float:
    engine = Engine(phases, store=_NoWriteStore(state_dir))
    start = time.perf_counter()
    async for _event in engine.run():
        pass
    return ms_since(start)


async def run(ctx: BenchContext) -> list[Figure]:
    phases = plan()
    repeat = 5 if ctx.quick else 15
    await time_run(ctx.workdir / "warmup", phases)  # imports, first-call costs
    totals: list[float] = []
    events = 0
    for index in range(repeat):
        elapsed, events = await time_run(ctx.workdir / f"run-{index}", phases)  # a fresh state each time
        totals.append(elapsed)
    without_state = [await time_run_without_state(ctx.workdir / "nostate", phases) for _ in range(repeat)]
    # A second run on the same state directory: the state file then holds all 50 steps from the start.
    resumed = [(await time_run(ctx.workdir / "run-0", phases))[0] for _ in range(repeat)]
    saves = events  # one save per event-ish; counted exactly below
    counter = _CountingStore(ctx.workdir / "count")
    engine = Engine(phases, store=counter)
    async for _event in engine.run():
        pass
    saves = counter.saves
    await asyncio.sleep(0)
    return [
        Figure(
            "engine_50_steps",
            median(totals),
            "ms",
            "<=50",
            f"median of {repeat} runs, fresh state dir; {events} events",
        ),
        Figure(
            "engine_50_steps_rerun", median(resumed), "ms", "-", "same, state file already holding 50 steps"
        ),
        Figure(
            "engine_50_steps_no_state_writes", median(without_state), "ms", "-", "StateStore.save stubbed out"
        ),
        Figure(
            "engine_state_saves_per_run",
            float(saves),
            "count",
            "-",
            "StateStore.save calls for one 50-step run",
        ),
    ]


class _CountingStore(StateStore):
    saves = 0

    def save(self, state: RunState) -> None:
        self.saves += 1
        super().save(state)
