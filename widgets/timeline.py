"""The run as a timeline: five phases, their steps, each step's state and time.

The widget renders its own lines (Textual's line API) and caches one strip per row,
so an event repaints only the rows it changed; the spinner timer runs only while
a step runs and repaints only the running rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

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
)
from widgets.log_pane import sanitize_line

SPINNER_FRAMES: tuple[str, ...] = ("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏")
STEP_SYMBOLS: Mapping[str, str] = {
    "pending": "·",
    "done": "✔",
    "skipped": "↷",
    "failed": "✘",
    "cancelled": "■",
}
PHASE_RUNNING_SYMBOL = "▶"
CURSOR_MARKER = "▸"
RUN_SYMBOLS: Mapping[str, str] = {
    "succeeded": "✔",
    "failed": "✘",
    "interrupted": "■",
    "needs-input": "?",
}
SPINNER_INTERVAL = 0.1  # seconds per spinner frame

PhaseState = Literal["pending", "running", "done", "failed", "skipped", "cancelled"]


def format_duration(seconds: float) -> str:
    """A compact duration: '4.2s', '37s', '1m20s', '1h02m'."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass(frozen=True)
class StepSnapshot:
    """What the timeline knows about one step (for the details screen)."""

    info: StepInfo
    state: StepStatus
    duration: float | None
    reason: str | None
    elapsed: float | None  # seconds so far, while running


@dataclass
class _StepView:
    info: StepInfo
    estimate: float | None
    state: StepStatus = "pending"
    started_at: float | None = None
    duration: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class _Row:
    kind: Literal["summary", "phase", "step", "reason"]
    phase: int = 0
    key: str = ""


_SUMMARY_ROW = _Row("summary")


class PhaseTimeline(ScrollView, can_focus=True):
    """Phases and steps with their state; up/down/j/k select a step, enter opens it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor_up", "Previous step", show=False, id="timeline.previous"),
        Binding("down,j", "cursor_down", "Next step", show=False, id="timeline.next"),
        Binding("home", "cursor_first", "First step", show=False, id="timeline.first"),
        Binding("end", "cursor_last", "Last step", show=False, id="timeline.last"),
        Binding("enter", "select", "Step details", id="timeline.details"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "phase-timeline--cursor",
        "phase-timeline--phase",
        "phase-timeline--pending",
        "phase-timeline--running",
        "phase-timeline--done",
        "phase-timeline--skipped",
        "phase-timeline--failed",
        "phase-timeline--cancelled",
        "phase-timeline--reason",
        "phase-timeline--time",
        "phase-timeline--summary",
    }

    DEFAULT_CSS = """
    PhaseTimeline {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        background: $surface;
        scrollbar-size-vertical: 1;
        & > .phase-timeline--cursor { background: $block-cursor-blurred-background; }
        &:focus > .phase-timeline--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .phase-timeline--phase { text-style: bold; }
        & > .phase-timeline--pending { color: $text-muted; }
        & > .phase-timeline--running { color: $accent; text-style: bold; }
        & > .phase-timeline--done { color: $success; }
        & > .phase-timeline--skipped { color: $text-muted; }
        & > .phase-timeline--failed { color: $error; text-style: bold; }
        & > .phase-timeline--cancelled { color: $warning; }
        & > .phase-timeline--reason { color: $error; }
        & > .phase-timeline--time { color: $text-muted; }
        & > .phase-timeline--summary { text-style: bold; }
    }
    """

    class StepSelected(Message):
        """The user pressed enter on a step: the app opens its details (and retry)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class StepHighlighted(Message):
        """The selection moved to another step (e.g. to filter the log by it)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._clock = clock  # wall clock, comparable with Event.at; injectable for tests
        self._phases: tuple[PhaseInfo, ...] = ()
        self._phase_state: dict[int, PhaseState] = {}
        self._steps: dict[str, _StepView] = {}
        self._rows: list[_Row] = []
        self._row_of_step: dict[str, int] = {}
        self._row_of_phase: dict[int, int] = {}
        self._selectable: list[str] = []  # step keys in display order
        self._selected: int | None = None
        self._follow = True  # the selection follows the running step until the user moves it
        self._strip_cache: dict[int, Strip] = {}
        self._frame = 0
        self._ticker: Timer | None = None
        self._run_started_at: float | None = None
        self._run_finished: RunFinished | None = None
        self._waiting_for_input = False

    # -- public API --------------------------------------------------------------------------

    @property
    def selected_key(self) -> str | None:
        if self._selected is None or not self._selectable:
            return None
        return self._selectable[self._selected]

    @property
    def animating(self) -> bool:
        """Whether the spinner timer runs (only while a step runs)."""
        return self._ticker is not None

    def step_state(self, key: str) -> StepStatus:
        """The state of a step ('pending', 'running', 'done', 'skipped', 'failed', 'cancelled')."""
        return self._steps[key].state

    def phase_state(self, number: int) -> str:
        return self._phase_state[number]

    def phase_progress(self, number: int) -> tuple[int, int]:
        """(finished steps, total steps) of a phase; skipped steps count as finished."""
        steps = [self._steps[s.key] for s in self._phase_info(number).steps]
        return sum(1 for s in steps if s.state in ("done", "skipped")), len(steps)

    def step_snapshot(self, key: str) -> StepSnapshot:
        view = self._steps[key]
        return StepSnapshot(view.info, view.state, view.duration, view.reason, self._elapsed(view))

    def remaining_estimate(self) -> tuple[float, bool] | None:
        """Seconds likely left from earlier durations, and whether every unfinished step had one.

        None when no unfinished step has an estimate (or nothing is left).
        """
        total = 0.0
        known = 0
        unknown = 0
        now = self._clock()
        for view in self._steps.values():
            if view.state not in ("pending", "running"):
                continue
            if view.estimate is None:
                unknown += 1
                continue
            known += 1
            elapsed = now - view.started_at if view.state == "running" and view.started_at else 0.0
            total += max(view.estimate - elapsed, 0.0)
        if known == 0:
            return None
        return total, unknown == 0

    def load(self, phases: tuple[PhaseInfo, ...], estimates: Mapping[str, float]) -> None:
        """Show these phases, every step pending; estimates are step key -> seconds from earlier runs."""
        previous_selection = self.selected_key
        self._stop_ticker()
        self._phases = phases
        self._phase_state = {phase.number: "pending" for phase in phases}
        self._steps = {
            step.key: _StepView(step, estimates.get(step.key)) for phase in phases for step in phase.steps
        }
        self._selectable = list(self._steps)
        self._selected = None
        if previous_selection is not None and previous_selection in self._steps:
            self._selected = self._selectable.index(previous_selection)
        elif self._selectable:
            self._selected = 0
        self._follow = True
        self._run_started_at = None
        self._run_finished = None
        self._waiting_for_input = False
        self._rebuild_rows()

    def apply(self, event: Event) -> None:
        """Update the rows an engine event changes."""
        match event:
            case RunStarted():
                self.load(event.phases, dict(event.estimates))
                self._run_started_at = event.at
                self._refresh_row(0)
            case PhaseStarted():
                self._set_phase_state(event.phase, "running")
            case PhaseFinished():
                self._set_phase_state(event.phase, event.status)
            case StepStarted():
                if event.key not in self._steps:
                    return  # a step this timeline was not loaded with: nothing to show it on
                view = self._steps[event.key]
                if event.estimate is not None:
                    view.estimate = event.estimate
                self._waiting_for_input = False
                self._set_step(event.key, "running", started_at=event.at)
                self._follow_to(event.key)
                self._start_ticker()
            case StepSucceeded():
                self._set_step(event.key, "done", duration=event.duration)
            case StepSkipped():
                self._set_step(event.key, "skipped", reason=event.reason)
            case StepFailed():
                state: StepStatus = "cancelled" if event.cancelled else "failed"
                self._set_step(event.key, state, duration=event.duration, reason=event.reason)
                self._follow_to(event.key)
            case PromptNeeded():
                self._waiting_for_input = True
                self._refresh_row(0)
            case RunFinished():
                self._run_finished = event
                self._waiting_for_input = False
                self._stop_ticker()
                self._refresh_row(0)
            case OutputLines():
                pass  # output belongs to the log pane
            case _:
                pass

    # -- actions -----------------------------------------------------------------------------

    def action_cursor_up(self) -> None:
        self._move_selection(-1)

    def action_cursor_down(self) -> None:
        self._move_selection(+1)

    def action_cursor_first(self) -> None:
        self._move_selection(-len(self._selectable))

    def action_cursor_last(self) -> None:
        self._move_selection(len(self._selectable))

    def action_select(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.StepSelected(key))

    # -- state changes -----------------------------------------------------------------------

    def _phase_info(self, number: int) -> PhaseInfo:
        return next(phase for phase in self._phases if phase.number == number)

    def _set_phase_state(self, number: int, state: PhaseState) -> None:
        if number in self._phase_state:
            self._phase_state[number] = state
            self._refresh_row(self._row_of_phase[number])

    def _set_step(
        self,
        key: str,
        state: StepStatus,
        *,
        started_at: float | None = None,
        duration: float | None = None,
        reason: str | None = None,
    ) -> None:
        view = self._steps.get(key)
        if view is None:
            return
        had_reason_row = view.state in ("failed", "cancelled")
        view.state = state
        view.started_at = started_at
        view.duration = duration
        view.reason = reason
        if state != "running" and not any(v.state == "running" for v in self._steps.values()):
            self._stop_ticker()
        if had_reason_row != (state in ("failed", "cancelled")):
            self._rebuild_rows()  # a reason row appeared or went: the rows below move (rare)
        else:
            self._step_changed(key)

    def _step_changed(self, key: str) -> None:
        self._refresh_row(self._row_of_step[key])
        self._refresh_row(self._row_of_phase[self._steps[key].info.phase])
        self._refresh_row(0)

    def _follow_to(self, key: str) -> None:
        if self._follow and key in self._steps:
            self._select(self._selectable.index(key))

    # -- selection ---------------------------------------------------------------------------

    def _move_selection(self, delta: int) -> None:
        if not self._selectable:
            return
        self._follow = False
        current = 0 if self._selected is None else self._selected
        self._select(max(0, min(len(self._selectable) - 1, current + delta)))

    def _select(self, index: int) -> None:
        previous = self._selected
        if previous == index:
            return
        self._selected = index
        if previous is not None:
            self._refresh_row(self._row_of_step[self._selectable[previous]])
        row = self._row_of_step[self._selectable[index]]
        self._refresh_row(row)
        self._scroll_to_row(row)
        self.post_message(self.StepHighlighted(self._selectable[index]))

    def _scroll_to_row(self, row: int) -> None:
        height = self.scrollable_content_region.height
        if height <= 0:
            return
        top = round(self.scroll_y)
        # Keep a failed step's reason line visible together with the step.
        last = row + 1 if row + 1 < len(self._rows) and self._rows[row + 1].kind == "reason" else row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif last >= top + height:
            self.scroll_to(y=last - height + 1, animate=False, immediate=True)

    # -- timer -------------------------------------------------------------------------------

    def _start_ticker(self) -> None:
        if self._ticker is None and self.is_mounted:
            self._ticker = self.set_interval(SPINNER_INTERVAL, self._tick)

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None

    def _tick(self) -> None:
        self._frame = (self._frame + 1) % len(SPINNER_FRAMES)
        for key, view in self._steps.items():
            if view.state == "running":
                self._refresh_row(self._row_of_step[key])
        self._refresh_row(0)

    def on_mount(self) -> None:
        if any(view.state == "running" for view in self._steps.values()):
            self._start_ticker()

    # -- rendering ---------------------------------------------------------------------------

    def _rebuild_rows(self) -> None:
        rows = [_SUMMARY_ROW]
        self._row_of_step = {}
        self._row_of_phase = {}
        for phase in self._phases:
            self._row_of_phase[phase.number] = len(rows)
            rows.append(_Row("phase", phase.number))
            for step in phase.steps:
                self._row_of_step[step.key] = len(rows)
                rows.append(_Row("step", phase.number, step.key))
                if self._steps[step.key].state in ("failed", "cancelled"):
                    rows.append(_Row("reason", phase.number, step.key))
        self._rows = rows
        self._strip_cache.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(rows))
        self.refresh()
        if self._selected is not None:
            self._scroll_to_row(self._row_of_step[self._selectable[self._selected]])

    def _refresh_row(self, row: int) -> None:
        self._strip_cache.pop(row, None)
        self.refresh_line(row)

    def on_resize(self, event: events.Resize) -> None:
        self._strip_cache.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._rows))

    def on_focus(self) -> None:
        self._refresh_selected()

    def on_blur(self) -> None:
        self._refresh_selected()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strip_cache.clear()

    def _refresh_selected(self) -> None:
        key = self.selected_key
        if key is not None:
            self._refresh_row(self._row_of_step[key])

    def render_line(self, y: int) -> Strip:
        row = round(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if row >= len(self._rows) or width <= 0:
            return Strip.blank(width, self.rich_style)
        strip = self._strip_cache.get(row)
        if strip is None or strip.cell_length != width:
            strip = self._render_row(self._rows[row], width)
            self._strip_cache[row] = strip
        return strip

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"phase-timeline--{name}", partial=True)

    def _render_row(self, row: _Row, width: int) -> Strip:
        base = self.rich_style
        selected = row.kind == "step" and row.key == self.selected_key
        if row.kind == "summary":
            left, right = self._summary_text()
        elif row.kind == "phase":
            left, right = self._phase_text(row.phase)
        elif row.kind == "step":
            left, right = self._step_text(row.key, selected)
        else:
            left, right = self._reason_text(row.key), Text()
        line = _fit(left, right, width)
        if selected:
            line.stylize(self._style("cursor"))
        line.stylize_before(base)
        return Strip(line.render(self.app.console), width)

    def _symbol(self, state: str) -> str:
        if state == "running":
            return SPINNER_FRAMES[self._frame]
        return STEP_SYMBOLS[state]

    def _elapsed(self, view: _StepView) -> float | None:
        if view.state != "running" or view.started_at is None:
            return None
        return max(self._clock() - view.started_at, 0.0)

    def _summary_text(self) -> tuple[Text, Text]:
        finished = sum(1 for v in self._steps.values() if v.state in ("done", "skipped"))
        counts = f"{finished}/{len(self._steps)} steps"
        left = Text(style=self._style("summary"))
        right = Text(style=self._style("time"))
        result = self._run_finished
        if result is not None:
            status: RunStatus = result.status
            style = {"succeeded": "done", "failed": "failed", "interrupted": "cancelled"}.get(
                status, "failed"
            )
            left.append(f"{RUN_SYMBOLS[status]} {status}", self._style(style))
            left.append(f" · {counts}")
            right.append(format_duration(result.duration))
            return left, right
        if self._run_started_at is None:
            left.append(f"{STEP_SYMBOLS['pending']} {counts}")
            return left, right
        if self._waiting_for_input:
            left.append("? waiting for secrets", self._style("cancelled"))
        else:
            left.append(f"{SPINNER_FRAMES[self._frame]} {counts}", self._style("running"))
        elapsed = max(self._clock() - self._run_started_at, 0.0)
        right.append(format_duration(elapsed))
        estimate = self.remaining_estimate()
        if estimate is not None:
            seconds, complete = estimate
            right.append(f" · ~{format_duration(seconds)}{'' if complete else '+'} left")
        return left, right

    def _phase_text(self, number: int) -> tuple[Text, Text]:
        state = self._phase_state[number]
        symbol = PHASE_RUNNING_SYMBOL if state == "running" else STEP_SYMBOLS[state]
        left = Text(style=self._style("phase"))
        left.append(symbol, self._style(state))
        left.append(f" {number} {self._phase_info(number).title}")
        finished, total = self.phase_progress(number)
        return left, Text(f"{finished}/{total}", self._style("time"))

    def _step_text(self, key: str, selected: bool) -> tuple[Text, Text]:
        view = self._steps[key]
        left = Text(CURSOR_MARKER if selected else " ")
        left.append(f" {self._symbol(view.state)} ", self._style(view.state))
        left.append(view.info.title, self._style(view.state) if view.state == "failed" else "")
        right = Text(style=self._style("time"))
        elapsed = self._elapsed(view)
        if elapsed is not None:
            right.append(format_duration(elapsed))
        elif view.duration is not None and view.state != "skipped":
            right.append(format_duration(view.duration))
        elif view.state == "pending" and view.estimate is not None:
            right.append(f"~{format_duration(view.estimate)}")
        return left, right

    def _reason_text(self, key: str) -> Text:
        # One line, whatever it held: a reason can quote a child's stderr, escapes included.
        reason = sanitize_line(" ".join((self._steps[key].reason or "").split()), limit=500)
        return Text(f"     ↳ {reason}", self._style("reason"))


def _fit(left: Text, right: Text, width: int) -> Text:
    """``left`` then ``right`` flush right, truncating ``left`` with an ellipsis when short of room."""
    right_width = cell_len(right.plain)
    if right_width and right_width + 2 <= width:
        room = width - right_width - 1
        if left.cell_len > room:
            left.truncate(room, overflow="ellipsis")
        line = left.copy()
        line.append(" " * (width - left.cell_len - right_width))
        line.append_text(right)
        return line
    line = left.copy()
    line.truncate(width, overflow="ellipsis", pad=True)
    return line
