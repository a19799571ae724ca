"""Asks for the declared secrets the environment did not provide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Button, Label, Static

from phases.secrets import SecretValue
from widgets.dialog import DialogScreen
from widgets.secret_input import SecretInput

FRAME_ROWS = 6  # the dialog's border, intro line and its margin, buttons and hint

if TYPE_CHECKING:
    from phases.engine import SecretRequest


def _field_id(name: str) -> str:
    # Declared names are config keys ("github-token"); keep ids valid whatever they hold.
    return "secret-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


class SecretPromptScreen(DialogScreen[dict[str, SecretValue] | None]):
    """Lists every declared secret and asks for the missing ones.

    Dismisses with {name: SecretValue} for the entered values once each is present
    and matches its pattern, or None on escape (every buffer is wiped first).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Save", id="secret_prompt.save"),
        Binding("escape", "cancel", "Cancel", id="secret_prompt.cancel"),
    ]

    DEFAULT_CSS = """
    SecretPromptScreen {
        & #prompt-intro { color: $text-muted; margin-bottom: 1; }
        & #prompt-fields { height: auto; background: $panel; }
        & .secret-block { height: auto; margin-bottom: 1; }
        & .secret-heading { text-style: bold; }
        & .secret-description { color: $text-muted; padding-left: 2; }
        & .secret-block SecretInput { margin-left: 2; width: 1fr; }
        & .secret-error { color: $error; text-style: bold; padding-left: 2; display: none; }
        & .secret-error.-shown { display: block; }
        & #prompt-buttons { height: 1; align-horizontal: right; }
        & #prompt-buttons Button { margin-left: 2; min-width: 10; }
    }
    """

    def __init__(self, requests: Sequence[SecretRequest], title: str = "Secrets needed") -> None:
        super().__init__()
        self.requests = tuple(requests)
        self.prompt_title = title

    @property
    def missing(self) -> tuple[SecretRequest, ...]:
        return tuple(request for request in self.requests if not request.provided)

    def compose(self) -> ComposeResult:
        missing = len(self.missing)
        with Vertical(id="prompt-dialog", classes="dialog") as dialog:
            dialog.border_title = self.prompt_title
            yield Static(
                f"{missing} of {len(self.requests)} to enter. Values are never shown, logged or copied.",
                id="prompt-intro",
                markup=False,
            )
            with VerticalScroll(id="prompt-fields", can_focus=False):
                for request in self.requests:
                    with Vertical(classes="secret-block"):
                        yield Label(self._heading(request), classes="secret-heading")
                        if request.description:
                            yield Static(Content(request.description), classes="secret-description")
                        if not request.provided:
                            yield SecretInput(request.name, id=_field_id(request.name))
                            yield Label("", id=_field_id(request.name) + "-error", classes="secret-error")
            with Horizontal(id="prompt-buttons"):
                yield Button("Cancel", id="prompt-cancel", compact=True)
                yield Button("Save", id="prompt-save", variant="primary", compact=True)
            yield Label(
                "enter: next/save · tab: move · ctrl+s: save · escape: cancel",
                id="prompt-hint",
                classes="dialog-hint",
            )

    @staticmethod
    def _heading(request: SecretRequest) -> Content:
        if request.provided:
            return Content.assemble(("✔ ", "bold"), request.name, ("  from $" + request.env, "dim"))
        return Content.assemble(("✎ ", "bold"), request.name, ("  to be entered", "italic"))

    def on_resize(self, event: events.Resize) -> None:
        # An auto-height list does not shrink on its own: cap it so the buttons stay on screen.
        self.query_one("#prompt-fields").styles.max_height = max(event.size.height - FRAME_ROWS, 3)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Show the whole block (name and description), not just the field's own row.
        block = event.widget.parent
        if isinstance(event.widget, SecretInput) and isinstance(block, Widget):
            block.scroll_visible(animate=False)

    def on_mount(self) -> None:
        fields = self._inputs()
        if fields:
            fields[0].focus()
        else:
            self.query_one("#prompt-save", Button).focus()

    def _inputs(self) -> list[SecretInput]:
        return list(self.query(SecretInput))

    def _request_for(self, field: SecretInput) -> SecretRequest:
        return next(request for request in self.missing if request.name == field.secret_name)

    def _error_label(self, field: SecretInput) -> Label:
        return self.query_one(f"#{field.id}-error", Label)

    def on_secret_input_submitted(self, event: SecretInput.Submitted) -> None:
        event.stop()
        fields = self._inputs()
        if event.secret_input is fields[-1]:
            self.action_submit()
        else:
            fields[fields.index(event.secret_input) + 1].focus()

    def on_secret_input_changed(self, event: SecretInput.Changed) -> None:
        # The previous complaint no longer describes what is typed now.
        if self._error_label(event.secret_input).has_class("-shown"):
            self._show_error(event.secret_input, None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "prompt-save":
            self.action_submit()
        else:
            self.action_cancel()

    def _show_error(self, field: SecretInput, message: str | None) -> None:
        label = self._error_label(field)
        label.update(Content(f"✘ {message}") if message else Content(""))
        label.set_class(message is not None, "-shown")

    def validate(self) -> list[SecretInput]:
        """Show a reason next to every field that cannot be accepted; returns those fields."""
        invalid: list[SecretInput] = []
        for field in self._inputs():
            request = self._request_for(field)
            if field.length == 0:
                problem: str | None = "required"
            elif field.mismatches(request.pattern):
                problem = f"does not match the expected format for {request.name}"
            else:
                problem = None
            self._show_error(field, problem)
            if problem is not None:
                invalid.append(field)
        return invalid

    def action_submit(self) -> None:
        invalid = self.validate()
        if invalid:
            invalid[0].focus()
            invalid[0].scroll_visible(animate=False)
            self.app.bell()
            return
        self.dismiss({field.secret_name: field.take() for field in self._inputs()})

    def action_cancel(self) -> None:
        for field in self._inputs():
            field.wipe()
        self.dismiss(None)
