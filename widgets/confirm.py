"""The confirmation every mutating action goes through: what happens, and the exact calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, Label, Static

from widgets.dialog import DialogScreen


class ConfirmScreen(DialogScreen[bool]):
    """Asks before a mutating action; dismisses with True (confirmed) or False.

    Destructive dialogs focus Cancel first, so a reflexive enter cancels. With
    ``typed_confirmation`` the user must type that word before Confirm is enabled.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", id="confirm.yes"),
        Binding("n", "cancel", "Cancel", id="confirm.no"),
        Binding("escape", "cancel", "Cancel", show=False, id="confirm.cancel"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen {
        &.-destructive > #confirm-dialog { border: thick $error; }
        & #confirm-description { margin-bottom: 1; }
        & #confirm-commands-label { color: $text-muted; }
        & #confirm-commands {
            height: auto;
            max-height: 10;
            background: $surface;
            padding: 0 1;
            margin-bottom: 1;
        }
        & #confirm-typed-label { margin-top: 0; }
        & #confirm-typed { margin-bottom: 1; }
        & #confirm-buttons { height: 1; align-horizontal: right; }
        & #confirm-buttons Button { margin-left: 2; min-width: 12; }
    }
    """

    def __init__(
        self,
        title: str,
        description: str,
        commands: Sequence[str] = (),
        *,
        destructive: bool = False,
        typed_confirmation: str | None = None,
        confirm_label: str = "Confirm",
    ) -> None:
        super().__init__(classes="-destructive" if destructive else None)
        self.dialog_title = title
        self.description = description
        self.commands = tuple(commands)
        self.destructive = destructive
        self.typed_confirmation = typed_confirmation
        self.confirm_label = confirm_label
        self._typed = ""

    @property
    def can_confirm(self) -> bool:
        if self.typed_confirmation is None:
            return True
        return self._typed.strip() == self.typed_confirmation

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog") as dialog:
            dialog.border_title = ("⚠ " if self.destructive else "") + self.dialog_title
            yield Static(Content(self.description), id="confirm-description")
            if self.commands:
                yield Label("This will run, in order:", id="confirm-commands-label")
                with VerticalScroll(id="confirm-commands"):
                    # Plain Content: a command is shown exactly, never read as markup.
                    yield Static(Content("\n".join(f"$ {command}" for command in self.commands)))
            if self.typed_confirmation is not None:
                yield Label(
                    Content.assemble("Type ", (self.typed_confirmation, "bold"), " to confirm:"),
                    id="confirm-typed-label",
                )
                yield Input(placeholder=self.typed_confirmation, id="confirm-typed", compact=True)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="confirm-cancel", compact=True)
                yield Button(
                    self.confirm_label,
                    id="confirm-ok",
                    variant="error" if self.destructive else "primary",
                    compact=True,
                    disabled=not self.can_confirm,
                )
            yield Label(self._hint(), id="confirm-hint", classes="dialog-hint")

    def _hint(self) -> str:
        if self.typed_confirmation is not None:
            return "type the word, then enter · escape: cancel"
        return "y: confirm · n/escape: cancel · tab: move"

    def on_mount(self) -> None:
        if self.typed_confirmation is not None:
            self.query_one("#confirm-typed", Input).focus()
        elif self.destructive:
            self.query_one("#confirm-cancel", Button).focus()
        else:
            self.query_one("#confirm-ok", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._typed = event.value
        self.query_one("#confirm-ok", Button).disabled = not self.can_confirm
        self.refresh_bindings()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.can_confirm:
            self.dismiss(True)
        else:
            self.app.bell()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm-ok":
            self.action_confirm()
        else:
            self.action_cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.can_confirm
        return True

    def action_confirm(self) -> None:
        if self.can_confirm:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
