"""The engine with plain async steps: ordering, skip, failure, retry, cancel, resume, plan, prompts."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from phases.engine import Engine, EngineOptions, Phase, SecretRequest, Step, StepContext, StepError
from phases.events import (
    Event,
    OutputLines,
    PhaseFinished,
    PhaseStarted,
    PromptNeeded,
    RunFinished,
    RunStarted,
    StepFailed,
    StepSkipped,
    StepStarted,
)
from phases.secrets import SecretStore, SecretValue
from phases.state import StateStore


class Recorder:
    """Plain async steps that record what ran and can be told to fail."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.actions: list[str] = []
        self.fail_once: set[str] = set()

    def step(self, step_id: str, **kwargs: object) -> Step:
        async def check(ctx: StepContext) -> bool:
            return step_id in self.done

        async def action(ctx: StepContext) -> None:
            self.actions.append(step_id)
            ctx.log(f"doing {step_id}")
            if step_id in self.fail_once:
                self.fail_once.discard(step_id)
                raise StepError(f"{step_id} broke")
            self.done.add(step_id)

        return Step(step_id, f"Step {step_id}", check, action, (f"do {step_id}",), **kwargs)  # type: ignore[arg-type]


def two_phases(recorder: Recorder, *, wipe: bool = False) -> list[Phase]:
    return [
        Phase(1, "One", (recorder.step("a"), recorder.step("b"))),
        Phase(2, "Two", (recorder.step("c"),), wipe_secrets_after=wipe),
    ]


async def collect(engine: Engine, **kwargs: int) -> list[Event]:
    return [event async for event in engine.run(**kwargs)]


def kinds(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, OutputLines)]


async def test_runs_steps_in_order_and_reports_each(tmp_path: Path) -> None:
    recorder = Recorder()
    engine = Engine(two_phases(recorder), store=StateStore(tmp_path))
    events = await collect(engine)
    assert recorder.actions == ["a", "b", "c"]
    assert kinds(events) == [
        "RunStarted",
        "PhaseStarted", "StepStarted", "StepSucceeded", "StepStarted", "StepSucceeded", "PhaseFinished",
        "PhaseStarted", "StepStarted", "StepSucceeded", "PhaseFinished",
        "RunFinished",
    ]  # fmt: skip
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.status == "succeeded" and finished.exit_code == 0
    logged = [line for e in events if isinstance(e, OutputLines) for line in e.lines]
    assert logged == ["doing a", "doing b", "doing c"]


async def test_a_done_step_is_skipped_without_running_its_action(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.done = {"b"}
    events = await collect(Engine(two_phases(recorder), store=StateStore(tmp_path)))
    assert recorder.actions == ["a", "c"]
    skipped = [e for e in events if isinstance(e, StepSkipped)]
    assert [(s.step_id, s.reason) for s in skipped] == [("b", "already done")]


async def test_failure_stops_the_run_and_the_next_run_resumes(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.fail_once = {"b"}
    store = StateStore(tmp_path)
    first = await collect(Engine(two_phases(recorder), store=store))
    failed = [e for e in first if isinstance(e, StepFailed)]
    assert [(f.step_id, f.reason) for f in failed] == [("b", "b broke")]
    finished = first[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.status, finished.failed_step, finished.exit_code) == ("failed", "1/b", 1)
    assert recorder.actions == ["a", "b"]  # phase 2 never started
    assert not any(isinstance(e, PhaseStarted) and e.phase == 2 for e in first)
    state = store.load()
    assert state.steps["1/b"].status == "failed" and state.steps["1/b"].error == "b broke"
    assert state.status == "failed"

    second = await collect(Engine(two_phases(recorder), store=store))
    assert recorder.actions == ["a", "b", "b", "c"]  # a re-checked and skipped, b retried
    assert [e.step_id for e in second if isinstance(e, StepSkipped)] == ["a"]
    assert store.load().steps["1/b"].attempts == 2
    assert isinstance(second[-1], RunFinished) and second[-1].status == "succeeded"


async def test_second_run_skips_everything(tmp_path: Path) -> None:
    recorder = Recorder()
    store = StateStore(tmp_path)
    await collect(Engine(two_phases(recorder), store=store))
    events = await collect(Engine(two_phases(recorder), store=store))
    assert recorder.actions == ["a", "b", "c"]
    assert len([e for e in events if isinstance(e, StepSkipped)]) == 3


async def test_from_phase_skips_earlier_phases_without_checking(tmp_path: Path) -> None:
    recorder = Recorder()
    checked: list[str] = []

    async def spy_check(ctx: StepContext) -> bool:
        checked.append(ctx.step.id)
        return False

    async def noop(ctx: StepContext) -> None:
        return None

    phases = [Phase(1, "One", (Step("x", "X", spy_check, noop),)), Phase(2, "Two", (recorder.step("c"),))]
    events = await collect(Engine(phases, store=StateStore(tmp_path)), from_phase=2)
    assert checked == []
    assert recorder.actions == ["c"]
    skipped = [e for e in events if isinstance(e, StepSkipped)]
    assert skipped[0].reason == "before --from-phase 2"
    assert any(isinstance(e, PhaseFinished) and e.phase == 1 and e.status == "skipped" for e in events)


async def test_estimates_come_from_the_previous_run(tmp_path: Path) -> None:
    recorder = Recorder()
    store = StateStore(tmp_path)
    await collect(Engine(two_phases(recorder), store=store))
    recorder.done.clear()
    events = await collect(Engine(two_phases(recorder), store=store))
    started = [e for e in events if isinstance(e, StepStarted)]
    assert all(s.estimate is not None and s.estimate >= 0 for s in started)
    run_started = events[0]
    assert isinstance(run_started, RunStarted)
    assert {key for key, _ in run_started.estimates} == {"1/a", "1/b", "2/c"}


async def test_plan_lists_every_step_and_its_commands(tmp_path: Path) -> None:
    engine = Engine(two_phases(Recorder()), store=StateStore(tmp_path))
    infos = engine.phase_infos()
    assert [(p.number, [(s.key, s.plan) for s in p.steps]) for p in infos] == [
        (1, [("1/a", ("do a",)), ("1/b", ("do b",))]),
        (2, [("2/c", ("do c",))]),
    ]
    assert not (tmp_path / "state.json").exists()  # planning does nothing


async def test_cancel_kills_the_running_child_and_reports_interrupted(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def never_done(ctx: StepContext) -> bool:
        return False

    async def long_command(ctx: StepContext) -> None:
        await ctx.run(
            [
                sys.executable,
                "-c",
                f"import os,time; open({str(pid_file)!r},'w').write(str(os.getpid())); time.sleep(60)",
            ]
        )

    phases = [Phase(1, "One", (Step("sleep", "Sleeps", never_done, long_command),))]
    engine = Engine(phases, store=StateStore(tmp_path / "state"))
    events: list[Event] = []
    async for event in engine.run():
        events.append(event)
        if isinstance(event, StepStarted):
            for _ in range(100):
                if pid_file.exists() and pid_file.read_text():
                    break
                await asyncio.sleep(0.05)
            engine.cancel()
    finished = events[-1]
    assert (
        isinstance(finished, RunFinished) and finished.status == "interrupted" and finished.exit_code == 130
    )
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert failed and failed[0].cancelled
    child = int(pid_file.read_text())
    await asyncio.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert StateStore(tmp_path / "state").load().steps["1/sleep"].status == "cancelled"


async def test_output_arrives_in_batches(tmp_path: Path) -> None:
    async def never_done(ctx: StepContext) -> bool:
        return False

    async def chatty(ctx: StepContext) -> None:
        for index in range(5000):
            ctx.log(f"line {index}")
        await ctx.run([sys.executable, "-c", "print('\\n'.join(str(i) for i in range(20000)))"])

    phases = [Phase(1, "One", (Step("chatty", "Chatty", never_done, chatty),))]
    events = await collect(Engine(phases, store=StateStore(tmp_path)))
    batches = [e for e in events if isinstance(e, OutputLines)]
    lines = [line for batch in batches for line in batch.lines]
    assert len(lines) == 5000 + 1 + 20000  # the "$ command" line is logged too
    assert lines[:2] == ["line 0", "line 1"] and lines[-1] == "19999"
    assert len(batches) < 200  # never one event per line


async def test_a_held_secret_is_redacted_from_every_line_of_a_flood(tmp_path: Path) -> None:
    async def never_done(ctx: StepContext) -> bool:
        return False

    printer = (
        "import os\n"
        "token = os.environ['TOKEN']\n"
        "for i in range(5000):\n"
        "    print(f'line {i} {token}' if i % 1000 == 7 else f'line {i}')\n"
    )

    async def flood(ctx: StepContext) -> None:
        await ctx.run([sys.executable, "-c", printer], secret_env={"TOKEN": ctx.secret("token")})

    store = SecretStore()
    store.put("token", SecretValue.from_bytes("token", b"tok-secret-123"), source="env")
    phases = [Phase(1, "One", (Step("flood", "Flood", never_done, flood),))]
    events = await collect(Engine(phases, store=StateStore(tmp_path), secrets=store))
    lines = [line for e in events if isinstance(e, OutputLines) for line in e.lines][1:]  # after "$ python"
    assert len(lines) == 5000  # the batches' lines are neither merged nor split
    assert [line for line in lines if "••••••" in line] == [f"line {i} ••••••" for i in range(7, 5000, 1000)]
    assert lines[8] == "line 8" and lines[4999] == "line 4999"
    assert not any("tok-secret-123" in line for line in lines)


class ScriptedPrompter:
    def __init__(self, answers: Mapping[str, bytes] | None) -> None:
        self.answers = answers
        self.asked: list[tuple[SecretRequest, ...]] = []

    async def provide_secrets(self, requests: Sequence[SecretRequest]) -> Mapping[str, SecretValue] | None:
        self.asked.append(tuple(requests))
        if self.answers is None:
            return None
        return {name: SecretValue.from_bytes(name, value) for name, value in self.answers.items()}


def secret_phases(seen: list[bytes]) -> list[Phase]:
    async def never_done(ctx: StepContext) -> bool:
        return False

    async def use_token(ctx: StepContext) -> None:
        with ctx.secret("token").exposed() as view:
            seen.append(bytes(view))
        ctx.log("the token is tok-secret-123 here")  # must be redacted

    async def after(ctx: StepContext) -> None:
        assert ctx.secrets.get("token") is None, "secrets must be wiped after the wiping phase"

    return [
        Phase(
            2,
            "Secrets",
            (Step("use", "Use", never_done, use_token, needs_secrets=("token",)),),
            wipe_secrets_after=True,
        ),
        Phase(3, "After", (Step("after", "After", never_done, after),)),
    ]


DECLARED = (
    SecretRequest("token", "MY_TOKEN", "a token", "", provided=False),
    SecretRequest("other", "OTHER", "another", "", provided=False),
)


async def test_prompter_supplies_missing_secrets_which_are_redacted_and_wiped(tmp_path: Path) -> None:
    seen: list[bytes] = []
    prompter = ScriptedPrompter({"token": b"tok-secret-123", "other": b"x"})
    store = SecretStore()
    engine = Engine(
        secret_phases(seen), store=StateStore(tmp_path), secrets=store, prompter=prompter,
        options=EngineOptions(declared_secrets=DECLARED),
    )  # fmt: skip
    events = await collect(engine)
    assert seen == [b"tok-secret-123"]
    assert [r.name for r in prompter.asked[0]] == ["token", "other"]  # every declared secret, once
    prompt = [e for e in events if isinstance(e, PromptNeeded)]
    assert prompt and prompt[0].secret_names == ("token", "other")
    logged = [line for e in events if isinstance(e, OutputLines) for line in e.lines]
    assert "the token is •••••• here" in logged
    assert not any("tok-secret-123" in line for line in logged)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "succeeded"
    assert store.wiped_count == 2
    assert "tok-secret-123" not in (tmp_path / "state.json").read_text()


async def test_cancelled_prompt_and_no_prompter_end_as_needs_input(tmp_path: Path) -> None:
    cancelled = await collect(
        Engine(
            secret_phases([]), store=StateStore(tmp_path / "a"), prompter=ScriptedPrompter(None),
            options=EngineOptions(declared_secrets=DECLARED),
        )
    )  # fmt: skip
    finished = cancelled[-1]
    assert isinstance(finished, RunFinished) and finished.status == "needs-input" and finished.exit_code == 2
    assert "cancelled" in (finished.reason or "")

    headless = await collect(
        Engine(
            secret_phases([]),
            store=StateStore(tmp_path / "b"),
            options=EngineOptions(declared_secrets=DECLARED),
        )
    )
    finished = headless[-1]
    assert isinstance(finished, RunFinished) and finished.status == "needs-input"
    assert "MY_TOKEN" in (finished.reason or "")


async def test_unexpected_exception_fails_the_step_with_its_message(tmp_path: Path) -> None:
    async def never_done(ctx: StepContext) -> bool:
        return False

    async def buggy(ctx: StepContext) -> None:
        raise KeyError("status")

    events = await collect(
        Engine([Phase(1, "One", (Step("bug", "Bug", never_done, buggy),))], store=StateStore(tmp_path))
    )
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert failed and failed[0].reason == "unexpected error: KeyError: 'status'"


async def test_step_timeout(tmp_path: Path) -> None:
    async def never_done(ctx: StepContext) -> bool:
        return False

    async def slow(ctx: StepContext) -> None:
        await asyncio.sleep(10)

    phases = [Phase(1, "One", (Step("slow", "Slow", never_done, slow, timeout=0.2),))]
    events = await collect(Engine(phases, store=StateStore(tmp_path)))
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert failed and failed[0].reason == "timed out after 0.2 s"


def test_state_file_is_private_and_locked(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    store = StateStore(directory)
    asyncio.run(collect(Engine(two_phases(Recorder()), store=store)))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    data = json.loads(store.path.read_text())
    assert data["status"] == "succeeded" and data["steps"]["2/c"]["status"] == "done"
    store.acquire()
    try:
        other = _acquire_in_another_process(directory)
        assert other.returncode == 3 and f"pid {os.getpid()}" in other.stdout, other.stdout + other.stderr
        again = StateStore(directory)
        again.acquire()  # the same process may take it again (the CLI holds it already)
        again.release()
    finally:
        store.release()
    assert _acquire_in_another_process(directory).returncode == 0  # free again once released


def _acquire_in_another_process(directory: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from phases.state import StateLocked, StateStore\n"
        "try:\n"
        f"    StateStore(Path({str(directory)!r})).acquire()\n"
        "except StateLocked as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
