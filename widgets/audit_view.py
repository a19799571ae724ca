"""The audit log on screen: every day-2 action, newest first, in a table that fits 80 columns.

The first five columns (when, action, target, result, duration) fit an 80x24 terminal; who and the
message follow for wider ones, and the panel under the table always shows the highlighted entry in
full. Results lead with a symbol, so they read without colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Label, Static

from phases.audit import AuditEntry
from widgets.dialog import DialogScreen

TARGET_WIDTH: Final = 28
MESSAGE_WIDTH: Final = 60
KIND_SHORT: Final[dict[str, str]] = {  # the flux CLI's and k9s' short names
    "Kustomization": "ks",
    "HelmRelease": "hr",
    "GitRepository": "gitrepo",
    "ExternalSecret": "es",
}
ACTION_SHORT: Final[dict[str, str]] = {"reconcile-with-source": "reconcile+src"}
RESULT_TEXT: Final[dict[str, str]] = {
    "succeeded": "✔ ok",
    "failed": "✘ failed",
    "timed-out": "✘ timed out",
    "cancelled": "⊘ cancelled",
    "suspended": "⏸ refused",  # a reconcile refused because the object (or its source) is suspended
}


def _cut(text: str, width: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def short_target(entry: AuditEntry) -> str:
    kind = KIND_SHORT.get(entry.kind, entry.kind)
    where = f"{entry.namespace}/{entry.name}" if entry.namespace else entry.name
    return _cut(f"{kind} {where}", TARGET_WIDTH)


def short_time(entry: AuditEntry) -> str:
    """``2026-11-26T10:18:33.250Z`` -> ``11-26 10:18`` (UTC, as stored; the panel has the seconds)."""
    date, _, clock = entry.time.partition("T")
    return f"{date[5:]} {clock[:5]}" if clock else entry.time


def duration_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


def detail_text(entry: AuditEntry) -> Content:
    """Everything about one entry, for the panel under the table."""
    facts = [
        entry.who,
        entry.time.replace("T", " ").replace("Z", " UTC"),
        f"took {duration_text(entry.duration)}",
    ]
    if entry.revision:
        facts.append(entry.revision)
    lines = [
        Content.assemble(
            (f"{entry.action} {entry.target}", "bold"), " · ", RESULT_TEXT.get(entry.result, entry.result)
        ),
        Content(" · ".join(facts)),
    ]
    if entry.reason:
        lines.append(Content(f"reason: {entry.reason}"))
    if entry.message:
        lines.append(Content(entry.message))
    return Content("\n").join(lines)


class AuditScreen(DialogScreen[None]):
    """``entries`` newest first (as :func:`phases.audit.read_audit` returns them); escape or q closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="audit.close"),
    ]

    DEFAULT_CSS = """
    AuditScreen {
        & > #audit-dialog { width: 100%; height: 100%; }
        & #audit-table { height: 1fr; background: $panel; }
        & #audit-detail {
            height: auto;
            max-height: 5;
            background: $surface;
            padding: 0 1;
        }
        & #audit-empty { height: 1fr; color: $text-muted; }
    }
    """

    def __init__(self, entries: Sequence[AuditEntry], *, source: str = "") -> None:
        super().__init__()
        self.entries = tuple(entries)
        self.source = source  # the file, shown in the border

    def compose(self) -> ComposeResult:
        with Vertical(id="audit-dialog", classes="dialog") as dialog:
            count = len(self.entries)
            dialog.border_title = f"Audit log · {count} entr{'y' if count == 1 else 'ies'}, newest first"
            if self.source:
                dialog.border_subtitle = self.source
            if self.entries:
                yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
                yield Static(id="audit-detail")
            else:
                yield Static(Content("No day-2 actions recorded yet."), id="audit-empty")
            yield Label("↑↓ pgup/pgdn: move · escape: close", id="audit-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        if not self.entries:
            return
        table: DataTable[str] = self.query_one("#audit-table", DataTable)
        table.add_columns("when (UTC)", "action", "target", "result", "took", "who", "message")
        for index, entry in enumerate(self.entries):
            table.add_row(
                short_time(entry),
                ACTION_SHORT.get(entry.action, entry.action),
                short_target(entry),
                RESULT_TEXT.get(entry.result, entry.result),
                duration_text(entry.duration),
                entry.who,
                _cut(entry.message, MESSAGE_WIDTH),
                key=str(index),
            )
        table.focus()
        self._show(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show(event.cursor_row)

    def _show(self, index: int) -> None:
        if 0 <= index < len(self.entries):
            self.query_one("#audit-detail", Static).update(detail_text(self.entries[index]))

    @property
    def highlighted(self) -> AuditEntry | None:
        if not self.entries:
            return None
        row = self.query_one("#audit-table", DataTable).cursor_row
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def action_close(self) -> None:
        self.dismiss(None)
