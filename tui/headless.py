"""The headless consumer of the engine's events: plain lines for a terminal, a log or CI."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from phases.config import Config
from phases.events import (
    Event,
    OutputLines,
    PhaseFinished,
    PhaseInfo,
    PhaseStarted,
    PromptNeeded,
    RunFinished,
    RunStarted,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)

_COLOURS = {"phase": "1;36", "ok": "32", "skip": "2", "fail": "1;31", "dim": "2", "warn": "33"}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class HeadlessPrinter:
    def __init__(
        self, stream: TextIO | None = None, *, colour: bool | None = None, verbose: bool = True
    ) -> None:
        self.stream = stream or sys.stdout
        self.colour = use_colour(self.stream) if colour is None else colour
        self.verbose = verbose
        self._titles: dict[str, str] = {}

    def _paint(self, style: str, text: str) -> str:
        return f"\x1b[{_COLOURS[style]}m{text}\x1b[0m" if self.colour else text

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")

    def config_warnings(self, config: Config) -> None:
        """Before the run: what the config weakens (e.g. Vault's TLS verification turned off)."""
        warning = config.vault.tls_warning()
        if warning:
            self._write(self._paint("warn", f"⚠ {warning}"))
            self.stream.flush()

    def handle(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._titles = {step.key: step.title for phase in event.phases for step in phase.steps}
                self._write(self._paint("dim", f"run {event.run_id}"))
            case PhaseStarted():
                self._write(self._paint("phase", f"▶ Phase {event.phase}: {event.title}"))
            case StepStarted():
                estimate = f" (last time {event.estimate:.1f}s)" if event.estimate else ""
                self._write(f"  • {event.title}{self._paint('dim', estimate)}")
            case OutputLines():
                if self.verbose:
                    prefix = self._paint("dim", "    │ ")
                    self.stream.write("".join(f"{prefix}{_printable(line)}\n" for line in event.lines))
            case StepSkipped():
                title = self._titles.get(event.key, event.step_id)
                self._write(self._paint("skip", f"  ↷ {title}: {event.reason}"))
            case StepSucceeded():
                title = self._titles.get(event.key, event.step_id)
                self._write(self._paint("ok", f"  ✔ {title} ({event.duration:.1f}s)"))
            case StepFailed():
                title = self._titles.get(event.key, event.step_id)
                self._write(self._paint("fail", f"  ✘ {title}: {event.reason}"))
            case PromptNeeded():
                self._write(self._paint("warn", f"  ? secrets needed: {', '.join(event.secret_names)}"))
            case PhaseFinished():
                if event.status == "failed":
                    self._write(self._paint("fail", f"▶ Phase {event.phase} failed"))
            case RunFinished():
                self._finish(event)
        self.stream.flush()

    def _finish(self, event: RunFinished) -> None:
        if event.status == "succeeded":
            self._write(self._paint("ok", f"✔ bootstrap finished in {event.duration:.1f}s"))
            return
        where = f" at {self._titles.get(event.failed_step, event.failed_step)}" if event.failed_step else ""
        self._write(
            self._paint("fail", f"✘ bootstrap {event.status}{where}: {event.reason or ''}".rstrip(": "))
        )
        if event.status == "failed":
            self._write(
                "  fix the cause and run the same command again: finished steps are checked and skipped"
            )


def print_plan(phases: tuple[PhaseInfo, ...], stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    for phase in phases:
        out.write(f"Phase {phase.number}: {phase.title}\n")
        for step in phase.steps:
            out.write(f"  {step.key}  {step.title}\n")
            for line in step.plan:
                out.write(f"      {line}\n")
    out.flush()


def _printable(line: str) -> str:
    """Drop control characters so child output cannot move the cursor or restyle the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" if ch != "\x1b" else "␛" for ch in line)
