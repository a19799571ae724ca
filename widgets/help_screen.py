"""Every key the app knows, grouped, including the ones not available right now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, NamedTuple

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Label, Static

from widgets.dialog import DialogScreen

MAX_KEY_WIDTH = 16
FRAME_ROWS = 3  # the dialog's border and the hint line
UNAVAILABLE = "(not available now)"


class HelpEntry(NamedTuple):
    """One key: what to press, what it does, where it belongs, and whether it works right now."""

    key: str
    description: str
    group: str
    enabled: bool = True


def help_text(entries: Iterable[HelpEntry]) -> Content:
    """The help as one block of text: groups in first-seen order, keys in a column."""
    groups: dict[str, list[HelpEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    key_width = min(max((len(e.key) for rows in groups.values() for e in rows), default=0), MAX_KEY_WIDTH)
    parts: list[Content] = []
    for group, rows in groups.items():
        if parts:
            parts.append(Content(""))
        parts.append(Content.styled(group, "bold underline"))
        for entry in rows:
            key = entry.key if len(entry.key) <= key_width else entry.key[: key_width - 1] + "…"
            if entry.enabled:
                parts.append(Content.assemble("  ", (key.ljust(key_width), "bold"), "  ", entry.description))
            else:
                # The words say it is unavailable: dim alone would be lost without colour.
                parts.append(
                    Content.assemble(
                        ("  " + key.ljust(key_width) + "  " + entry.description + " ", "dim"),
                        (UNAVAILABLE, "dim italic"),
                    )
                )
    return Content("\n").join(parts)


class HelpScreen(DialogScreen[None]):
    """The key reference; escape, q or ? close it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help", id="help.close"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        & #help-body { height: auto; background: $panel; }
    }
    """

    def __init__(self, entries: Iterable[HelpEntry | tuple[str, str, str]], title: str = "Keys") -> None:
        super().__init__()
        self.entries = tuple(
            entry if isinstance(entry, HelpEntry) else HelpEntry(*entry) for entry in entries
        )
        self.help_title = title

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog") as dialog:
            dialog.border_title = self.help_title
            with VerticalScroll(id="help-body"):
                yield Static(help_text(self.entries), id="help-text")
            yield Label("↑/↓ pgup/pgdn: scroll · escape/q/?: close", id="help-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body", VerticalScroll).focus()

    def on_resize(self, event: events.Resize) -> None:
        # An auto-height body does not shrink on its own: cap it so the hint stays on screen.
        self.query_one("#help-body").styles.max_height = max(event.size.height - FRAME_ROWS, 3)

    def action_close(self) -> None:
        self.dismiss(None)
