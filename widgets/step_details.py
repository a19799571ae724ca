"""One step in full: state, time, the error, its planned calls and its last output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Label, Log, Static

from widgets.dialog import DialogScreen
from widgets.log_pane import sanitize_line
from widgets.timeline import STEP_SYMBOLS, StepSnapshot, format_duration

MAX_LOG_LINES: Final = 200
RETRYABLE: Final = frozenset({"failed", "cancelled"})


def state_line(snapshot: StepSnapshot) -> str:
    """'✘ failed after 12s', '✔ done in 4.2s', '… running for 37s', '· pending'."""
    state = snapshot.state
    if state == "running":
        elapsed = f" for {format_duration(snapshot.elapsed)}" if snapshot.elapsed is not None else ""
        return f"▶ running{elapsed}"
    symbol = STEP_SYMBOLS[state]
    if snapshot.duration is None:
        return f"{symbol} {state}"
    joiner = "in" if state == "done" else "after"
    return f"{symbol} {state} {joiner} {format_duration(snapshot.duration)}"


class StepDetailsScreen(DialogScreen[str | None]):
    """Dismisses with "retry" when the user retries a failed step, None otherwise."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", id="step_details.retry"),
        Binding("escape,q", "close", "Close", id="step_details.close"),
    ]

    DEFAULT_CSS = """
    StepDetailsScreen {
        & > #details-dialog { width: 100%; max-width: 100; height: 100%; }
        & #details-state { text-style: bold; }
        &.-failed #details-state, & #details-reason { color: $error; }
        & .details-heading { color: $text-muted; margin-top: 1; }
        & #details-reason-box { height: auto; max-height: 4; }
        & #details-plan { height: auto; max-height: 6; background: $surface; padding: 0 1; }
        & #details-log { height: 1fr; min-height: 3; border: none; }
        & #details-buttons { height: 1; }
        & #details-hint { width: 1fr; color: $text-muted; }
        & #details-buttons Button { margin-left: 2; min-width: 10; }
    }
    """

    def __init__(self, snapshot: StepSnapshot, log_lines: Sequence[str] = ()) -> None:
        super().__init__(classes="-failed" if snapshot.state in RETRYABLE else None)
        self.snapshot = snapshot
        self.log_lines = [sanitize_line(line) for line in log_lines[-MAX_LOG_LINES:]]

    @property
    def retryable(self) -> bool:
        return self.snapshot.state in RETRYABLE

    def compose(self) -> ComposeResult:
        info = self.snapshot.info
        with Vertical(id="details-dialog", classes="dialog") as dialog:
            dialog.border_title = f"{info.key} · {info.title}"
            yield Label(state_line(self.snapshot), id="details-state")
            if self.snapshot.reason:
                label = "Error" if self.retryable else "Reason"
                with VerticalScroll(id="details-reason-box"):
                    reason = "\n".join(sanitize_line(line) for line in self.snapshot.reason.splitlines())
                    yield Static(Content.assemble((f"{label}: ", "bold"), reason), id="details-reason")
            yield Label("Planned commands and API calls", classes="details-heading")
            plan = "\n".join(f"$ {line}" for line in info.plan) if info.plan else "(none declared)"
            with VerticalScroll(id="details-plan"):
                yield Static(Content(plan))
            yield Label(f"Last output ({len(self.log_lines)} lines)", classes="details-heading")
            yield Log(id="details-log", max_lines=MAX_LOG_LINES)
            with Horizontal(id="details-buttons"):
                hint = "r: retry · escape: close" if self.retryable else "escape: close"
                yield Label(hint, id="details-hint")
                if self.retryable:
                    yield Button("Retry", id="details-retry", variant="warning", compact=True)
                yield Button("Close", id="details-close", compact=True)

    def on_mount(self) -> None:
        log = self.query_one("#details-log", Log)
        if self.log_lines:
            log.write_lines(self.log_lines)
        else:
            log.write_line("(no output)")
        self.query_one("#details-retry" if self.retryable else "#details-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "details-retry":
            self.action_retry()
        else:
            self.action_close()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            return self.retryable
        return True

    def action_retry(self) -> None:
        if self.retryable:
            self.dismiss("retry")

    def action_close(self) -> None:
        self.dismiss(None)
