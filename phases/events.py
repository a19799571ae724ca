"""The events a run yields. The UI and the headless printer consume the same stream.

Every event is a frozen dataclass: consumers may keep them, pass them between
threads and compare them, and nobody can change one after it was sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

StepStatus = Literal["pending", "running", "done", "skipped", "failed", "cancelled"]
RunStatus = Literal["succeeded", "failed", "interrupted", "needs-input"]
Stream = Literal["stdout", "stderr", "engine"]


@dataclass(frozen=True)
class StepInfo:
    phase: int
    id: str
    title: str
    plan: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.id}"


@dataclass(frozen=True)
class PhaseInfo:
    number: int
    title: str
    steps: tuple[StepInfo, ...]


@dataclass(frozen=True, kw_only=True)
class Event:
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    run_id: str
    phases: tuple[PhaseInfo, ...]
    from_phase: int
    estimates: tuple[tuple[str, float], ...] = ()  # step key -> seconds, from earlier runs


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    phase: int
    title: str


@dataclass(frozen=True, kw_only=True)
class PhaseFinished(Event):
    phase: int
    status: Literal["done", "failed", "skipped", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class StepEvent(Event):
    """An event about one step; ``key`` ("<phase>/<step id>") names the step across runs."""

    phase: int
    step_id: str

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


@dataclass(frozen=True, kw_only=True)
class StepStarted(StepEvent):
    title: str
    estimate: float | None = None


@dataclass(frozen=True, kw_only=True)
class OutputLines(StepEvent):
    stream: Stream
    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class StepSkipped(StepEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class StepSucceeded(StepEvent):
    duration: float


@dataclass(frozen=True, kw_only=True)
class StepFailed(StepEvent):
    reason: str
    duration: float
    cancelled: bool = False


@dataclass(frozen=True, kw_only=True)
class PromptNeeded(Event):
    """The engine is waiting for the Prompter to supply these declared secrets."""

    secret_names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    status: RunStatus
    duration: float
    failed_step: str | None = None
    reason: str | None = None
    summary_path: str | None = None

    @property
    def exit_code(self) -> int:
        return {"succeeded": 0, "failed": 1, "needs-input": 2, "interrupted": 130}[self.status]
