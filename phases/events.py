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
class StepStarted(Event):
    phase: int
    step_id: str
    title: str
    estimate: float | None = None

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


@dataclass(frozen=True, kw_only=True)
class OutputLines(Event):
    phase: int
    step_id: str
    stream: Stream
    lines: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


@dataclass(frozen=True, kw_only=True)
class StepSkipped(Event):
    phase: int
    step_id: str
    reason: str

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


@dataclass(frozen=True, kw_only=True)
class StepSucceeded(Event):
    phase: int
    step_id: str
    duration: float

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


@dataclass(frozen=True, kw_only=True)
class StepFailed(Event):
    phase: int
    step_id: str
    reason: str
    duration: float
    cancelled: bool = False

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.step_id}"


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
