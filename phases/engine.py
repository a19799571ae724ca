"""The async engine: runs phases of steps and yields frozen events.

A step has an idempotence check ("already done?") and an action. The engine is
UI-free: the Textual app and the headless printer consume the same event stream
from ``Engine.run()``. Prompts for secrets go back through the ``Prompter``
protocol; blocking client calls run in threads through ``StepContext.to_thread``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

from phases import memory
from phases.errors import GitOpsError
from phases.events import (
    Event,
    OutputLines,
    PhaseFinished,
    PhaseInfo,
    PhaseStarted,
    PromptNeeded,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFailed,
    StepInfo,
    StepSkipped,
    StepStarted,
    StepStatus,
    StepSucceeded,
    Stream,
)
from phases.secrets import SecretStore, SecretValue
from phases.shell import CommandResult, run_command
from phases.state import RunState, StateStore, StepRecord

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

FLUSH_INTERVAL = 0.05  # seconds: output reaches consumers in batches, never line by line
FLUSH_LINES = 1000
SAVE_INTERVAL = 0.2  # seconds between state writes within a phase


class StepError(GitOpsError):
    """An expected failure of a step: the message is shown to the user as the reason."""


class NeedsInput(StepError):
    """The step needs secrets that nobody supplied (no prompter, or the prompt was cancelled)."""


@dataclass(frozen=True)
class SecretRequest:
    """One declared secret as the prompter sees it: where its value comes from, if anywhere."""

    name: str
    env: str
    description: str
    pattern: str
    provided: bool  # already held (from the environment or an earlier prompt)


class Prompter(Protocol):
    async def provide_secrets(self, requests: Sequence[SecretRequest]) -> Mapping[str, SecretValue] | None:
        """Values for the requests not yet provided, or None when the user cancelled."""
        ...


Check = Callable[["StepContext"], Awaitable[bool]]
Action = Callable[["StepContext"], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    check: Check
    action: Action
    plan: tuple[str, ...] = ()  # the commands and API calls the action makes, for --plan
    needs_secrets: tuple[str, ...] = ()  # declared secret names the action needs
    timeout: float | None = None
    done_reason: str = "already done"  # what a passing check means, e.g. "verified"


@dataclass(frozen=True)
class Phase:
    number: int
    title: str
    steps: tuple[Step, ...]
    wipe_secrets_after: bool = False  # the bootstrap values are wiped as soon as this phase ends

    def info(self) -> PhaseInfo:
        return PhaseInfo(
            self.number,
            self.title,
            tuple(StepInfo(self.number, s.id, s.title, s.plan) for s in self.steps),
        )


@dataclass
class EngineOptions:
    command_env: Mapping[str, str] = field(default_factory=dict)  # e.g. KUBECONFIG, PATH for children
    command_timeout: float = 900.0
    declared_secrets: Sequence[SecretRequest] = ()


class StepContext:
    """What a running step may use: output, commands, threads and secrets."""

    def __init__(self, engine: Engine, phase: Phase, step: Step) -> None:
        self._engine = engine
        self.phase = phase
        self.step = step

    def log(self, *lines: str, stream: Stream = "engine") -> None:
        self._engine._output(self.phase.number, self.step.id, stream, lines)

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secret_env: Mapping[str, SecretValue] | None = None,
        timeout: float | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run a child process, streaming its output into the log. Argv never holds a secret."""
        self.log("$ " + " ".join(argv))
        merged = {**self._engine.options.command_env, **(env or {})}
        return await run_command(
            argv,
            on_output=self._command_output,
            env=merged,
            secret_env=secret_env,
            timeout=timeout if timeout is not None else self._engine.options.command_timeout,
            cwd=cwd,
            check=check,
        )

    def _command_output(self, stream: str, lines: Sequence[str]) -> None:
        self._engine._output(
            self.phase.number, self.step.id, "stderr" if stream == "stderr" else "stdout", lines
        )

    async def to_thread(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    def secret(self, name: str) -> SecretValue:
        value = self._engine.secrets.get(name)
        if value is None:
            raise StepError(f"the secret {name!r} is not available (it was wiped or never provided)")
        return value

    @property
    def secrets(self) -> SecretStore:
        return self._engine.secrets


class Engine:
    def __init__(
        self,
        phases: Sequence[Phase],
        *,
        store: StateStore,
        secrets: SecretStore | None = None,
        prompter: Prompter | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.phases = tuple(phases)
        self.store = store
        self.secrets = secrets or SecretStore()
        self.prompter = prompter
        self.options = options or EngineOptions()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._pending: list[OutputLines] = []
        self._pending_lines = 0
        self._flusher: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._state = RunState()
        self._last_save = 0.0
        self._unsaved = False

    def phase_infos(self) -> tuple[PhaseInfo, ...]:
        return tuple(phase.info() for phase in self.phases)

    # -- consuming ---------------------------------------------------------------------------

    async def run(self, *, from_phase: int = 1) -> AsyncIterator[Event]:
        """Run the phases, yielding events until (and including) RunFinished."""
        if self._runner is not None and not self._runner.done():
            raise RuntimeError("this engine is already running")
        self._queue = asyncio.Queue()
        self._runner = asyncio.create_task(self._execute(from_phase), name="gitops-tui-engine")
        try:
            while True:
                event = await self._queue.get()
                yield event
                if isinstance(event, RunFinished):
                    break
        finally:
            if not self._runner.done():
                self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def cancel(self) -> None:
        """Interrupt the run: the running child process group is killed and RunFinished follows."""
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    # -- emitting ----------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._flush()
        self._queue.put_nowait(event)

    def _output(self, phase: int, step_id: str, stream: Stream, lines: Sequence[str]) -> None:
        if not lines:
            return
        # One redaction pass over the whole batch: per line it cost ~20 us with secrets held (a buffer
        # and every needle per line), which capped a flood below 50,000 lines/s.
        joined = "\n".join(lines)
        cleaned = self.secrets.redact(joined)
        redacted = tuple(lines) if cleaned == joined else tuple(cleaned.split("\n"))
        last = self._pending[-1] if self._pending else None
        if last is not None and (last.phase, last.step_id, last.stream) == (phase, step_id, stream):
            self._pending[-1] = OutputLines(
                phase=phase, step_id=step_id, stream=stream, lines=last.lines + redacted, at=last.at
            )
        else:
            self._pending.append(OutputLines(phase=phase, step_id=step_id, stream=stream, lines=redacted))
        self._pending_lines += len(redacted)
        if self._pending_lines >= FLUSH_LINES:
            self._flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_INTERVAL)
        self._flush()

    def _flush(self) -> None:
        for batch in self._pending:
            self._queue.put_nowait(batch)
        self._pending.clear()
        self._pending_lines = 0

    # -- running -----------------------------------------------------------------------------

    async def _execute(self, from_phase: int) -> None:
        started = time.monotonic()
        state = self.store.load()
        estimates = tuple(
            (key, record.last_duration) for key, record in state.steps.items() if record.last_duration
        )
        state.run_id = uuid.uuid4().hex[:12]
        state.status = "running"
        state.started_at = time.time()
        state.finished_at = None
        self._state = state
        self.store.save(state)
        self._emit(
            RunStarted(
                run_id=state.run_id, phases=self.phase_infos(), from_phase=from_phase, estimates=estimates
            )
        )

        status: RunStatus = "succeeded"
        failed_step: str | None = None
        reason: str | None = None
        try:
            for phase in self.phases:
                if phase.number < from_phase:
                    self._skip_phase(phase, f"before --from-phase {from_phase}")
                    continue
                self._emit(PhaseStarted(phase=phase.number, title=phase.title))
                outcome = "done"
                for step in phase.steps:
                    failure = await self._run_step(phase, step)
                    if failure is not None:
                        outcome = "failed"
                        failed_step = f"{phase.number}/{step.id}"
                        reason = str(failure)
                        status = "needs-input" if isinstance(failure, NeedsInput) else "failed"
                        break
                if phase.wipe_secrets_after:
                    await self._wipe(f"after phase {phase.number}")
                if self._unsaved:
                    self._save(force=True)
                self._emit(PhaseFinished(phase=phase.number, status=outcome))  # type: ignore[arg-type]
                if outcome == "failed":
                    break
        except asyncio.CancelledError:
            status = "interrupted"
            reason = "interrupted"
        finally:
            try:
                await self._wipe("at the end of the run")
            except asyncio.CancelledError:
                status, reason = "interrupted", "interrupted"
            memory.pause_point("after-run")  # test-only: inert unless a test asks for it
            state.status = status
            state.finished_at = time.time()
            self.store.save(state)
            self._emit(
                RunFinished(
                    status=status,
                    duration=time.monotonic() - started,
                    failed_step=failed_step,
                    reason=reason,
                )
            )

    def _skip_phase(self, phase: Phase, reason: str) -> None:
        for step in phase.steps:
            self._emit(StepSkipped(phase=phase.number, step_id=step.id, reason=reason))
        self._emit(PhaseFinished(phase=phase.number, status="skipped"))

    async def _wipe(self, when: str) -> None:
        count, sweep = self.secrets.wipe_buffers()  # the values are zeroed at once
        if count:
            log.info("wiped %d secrets %s", count, when)
        if sweep is None:
            return
        # The memory scan takes ~0.5 s per 100 MB: in a worker thread, so the loop (the UI's) keeps going.
        # An interruption meanwhile waits for it (its report belongs to the run) and is raised after.
        scan = asyncio.ensure_future(asyncio.to_thread(sweep.run))
        interrupted = False
        while not scan.done():
            try:
                await asyncio.shield(scan)
            except asyncio.CancelledError:
                interrupted = True
        scan.result()
        memory.pause_point("after-sweep")  # test-only; here, in the loop's (main) thread
        if interrupted:
            raise asyncio.CancelledError

    async def _run_step(self, phase: Phase, step: Step) -> StepError | None:
        key = f"{phase.number}/{step.id}"
        record = self._state.step(key)
        self._emit(
            StepStarted(phase=phase.number, step_id=step.id, title=step.title, estimate=record.last_duration)
        )
        started_wall = time.time()
        started = time.monotonic()
        record.status = "running"
        record.started_at = started_wall
        record.finished_at = None
        record.attempts += 1
        self._save()
        context = StepContext(self, phase, step)
        try:
            if await step.check(context):
                self._finish(record, "skipped", started, None)
                self._emit(StepSkipped(phase=phase.number, step_id=step.id, reason=step.done_reason))
                return None
            if step.needs_secrets:
                await self._ensure_secrets(phase, step)
            if step.timeout is not None:
                async with asyncio.timeout(step.timeout):
                    await step.action(context)
            else:
                await step.action(context)
        except asyncio.CancelledError:
            duration = self._finish(record, "cancelled", started, "interrupted")
            self._emit(
                StepFailed(
                    phase=phase.number,
                    step_id=step.id,
                    reason="interrupted",
                    duration=duration,
                    cancelled=True,
                )
            )
            raise
        except GitOpsError as error:
            failure = error if isinstance(error, StepError) else StepError(str(error))
            return self._fail(record, phase, step, started, failure)
        except TimeoutError:
            return self._fail(record, phase, step, started, StepError(f"timed out after {step.timeout:g} s"))
        except Exception as error:  # a bug or an unexpected client error: report it, keep the app alive
            log.exception("step %s failed unexpectedly", key)
            message = self.secrets.redact(f"{type(error).__name__}: {error}")
            return self._fail(record, phase, step, started, StepError(f"unexpected error: {message}"))
        duration = self._finish(record, "done", started, None)
        self._emit(StepSucceeded(phase=phase.number, step_id=step.id, duration=duration))
        return None

    def _fail(
        self, record: StepRecord, phase: Phase, step: Step, started: float, error: StepError
    ) -> StepError:
        reason = self.secrets.redact(str(error)) or type(error).__name__
        duration = self._finish(record, "failed", started, reason)
        self._save(force=True)
        self._emit(StepFailed(phase=phase.number, step_id=step.id, reason=reason, duration=duration))
        return error

    def _finish(self, record: StepRecord, status: StepStatus, started: float, error: str | None) -> float:
        duration = time.monotonic() - started
        record.status = status
        record.finished_at = time.time()
        record.duration = duration
        record.error = error
        if status == "done":
            record.last_duration = duration  # what the next run's estimates use
        self._save()
        return duration

    def _save(self, *, force: bool = False) -> None:
        """Write the state, at most every SAVE_INTERVAL unless forced (phase and run ends, failures).

        An interruption loses at most that much progress: the next run re-checks every step anyway.
        """
        now = time.monotonic()
        if force or now - self._last_save >= SAVE_INTERVAL:
            self.store.save(self._state)
            self._last_save = now
            self._unsaved = False
        else:
            self._unsaved = True

    async def _ensure_secrets(self, phase: Phase, step: Step) -> None:
        missing = self.secrets.missing(step.needs_secrets)
        if not missing:
            return
        declared = self.options.declared_secrets
        if self.prompter is None:
            by_name = {request.name: request for request in declared}
            variables = ", ".join(by_name[name].env if name in by_name else name for name in missing)
            raise NeedsInput(f"missing secrets: set {variables} in the environment")
        # One prompt for every declared secret still missing, not just this step's: the admin
        # answers once, before the first phase that needs them.
        requests = tuple(
            SecretRequest(
                r.name, r.env, r.description, r.pattern, provided=self.secrets.get(r.name) is not None
            )
            for r in declared
        )
        self._emit(PromptNeeded(secret_names=tuple(r.name for r in requests if not r.provided)))
        answers = await self.prompter.provide_secrets(requests)
        if answers is None:
            raise NeedsInput("the secret prompt was cancelled; nothing was stored")
        for name, value in answers.items():
            self.secrets.put(name, value, source="prompt")
        still_missing = self.secrets.missing(step.needs_secrets)
        if still_missing:
            raise NeedsInput(f"missing secrets: {', '.join(still_missing)}")
