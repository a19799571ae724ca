"""The suspend confirmation: what will be suspended, an optional reason, and the exact API calls.

It stands in for :class:`~widgets.confirm.ConfirmScreen` on suspend (same dialog, same CSS), with a reason
field: ``enter`` confirms (an empty reason is fine and gives ``""``), ``escape`` cancels (``None``).
Because the reason ends up in the PATCH, the list of calls can follow what is typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, Static

from widgets.confirm import ConfirmScreen
from widgets.dialog import DialogScreen

TARGETS_SHOWN: Final = 4
MAX_REASON_LENGTH: Final = 500  # phases.day2 keeps no more than this either

Commands = Sequence[str] | Callable[[str], Sequence[str]]


def commands_text(commands: Sequence[str]) -> Content:
    """Calls as ConfirmScreen shows them: one ``$ call`` per line, plain text (never markup)."""
    return Content("\n".join(f"$ {command}" for command in commands))


def targets_text(targets: Sequence[str]) -> str:
    if len(targets) == 1:
        return targets[0]
    shown = ", ".join(targets[:TARGETS_SHOWN])
    more = len(targets) - TARGETS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


class SuspendReasonScreen(DialogScreen[str | None]):
    """Asks before suspending ``targets``; dismisses with the reason (maybe ``""``) or ``None``.

    ``commands`` is the list of API calls, or a function from the reason typed so far to that list.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=False, id="suspend.cancel"),
    ]

    # ConfirmScreen's own styles, applied to this screen (its rules are scoped by the screen's type).
    DEFAULT_CSS = (
        ConfirmScreen.DEFAULT_CSS.replace("ConfirmScreen", "SuspendReasonScreen")
        + """
    SuspendReasonScreen {
        & #suspend-reason-label { color: $text-muted; }
        & #suspend-reason { margin-bottom: 1; }
    }
    """
    )

    def __init__(self, title: str, targets: Sequence[str], commands: Commands) -> None:
        if not targets:
            raise ValueError("nothing to suspend")
        super().__init__()
        self.dialog_title = title
        self.targets = tuple(targets)
        self._commands = commands

    def commands_for(self, reason: str) -> list[str]:
        commands = self._commands(reason) if callable(self._commands) else self._commands
        return list(commands)

    @property
    def reason(self) -> str:
        return self.query_one("#suspend-reason", Input).value.strip()

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog") as dialog:
            dialog.border_title = self.dialog_title
            until = "it is" if len(self.targets) == 1 else "they are"
            yield Static(
                Content(f"Flux stops reconciling {targets_text(self.targets)} until {until} resumed."),
                id="confirm-description",
            )
            yield Label(
                "Reason (optional; stored on the object with who and when):", id="suspend-reason-label"
            )
            yield Input(
                placeholder="e.g. DB migration, back at 14:00",
                max_length=MAX_REASON_LENGTH,
                id="suspend-reason",
                compact=True,
            )
            yield Label("This will run, in order:", id="confirm-commands-label")
            with VerticalScroll(id="confirm-commands"):
                yield Static(commands_text(self.commands_for("")), id="suspend-commands")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="confirm-cancel", compact=True)
                yield Button("Suspend", id="confirm-ok", variant="warning", compact=True)
            yield Label(
                "enter: suspend · escape: cancel · tab: move", id="confirm-hint", classes="dialog-hint"
            )

    def on_mount(self) -> None:
        self.query_one("#suspend-reason", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if callable(self._commands):
            self.query_one("#suspend-commands", Static).update(commands_text(self.commands_for(self.reason)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm-ok":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        self.dismiss(self.reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
