"""The rollback picker: the deployments repo's history, a diff preview, and Flux's applied commits.

It renders what the app hands it and never runs git or talks to the cluster. The app answers
its messages from workers:

* ``PageRequested(skip, limit)`` -> ``add_page(commits, total)`` (or ``page_failed(message)``);
  the first page is requested on mount, the next one when the cursor nears the end.
* ``DiffRequested(sha)`` -> ``show_diff(sha, text)``; asked after the selection rests for
  ``diff_delay`` seconds, and cached, so holding ``j`` does not start a ``git show`` per row.
* ``Chosen(choice)``: the user picked an action (a merge revert asks which parent first). The
  screen stays open so the app can confirm over it and report progress with ``set_status``;
  with ``dismiss_on_choice=True`` it dismisses with the choice instead.
* ``RefreshRequested``: ``ctrl+r``; the app fetches again and calls ``reload()``.

``set_markers({sha: ["flux-system/production", ...]})`` marks the commit each Kustomization
applied. Every row reads without colour: ``◆`` applied by Flux, ``M`` merge commit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, Literal, Protocol

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Label, OptionList, Static
from textual.widgets.data_table import RowDoesNotExist
from textual.widgets.option_list import Option

from widgets.dialog import DialogScreen

RollbackAction = Literal["revert", "revert-range", "reset"]
StatusSeverity = Literal["information", "success", "warning", "error"]

DEFAULT_PAGE_SIZE: Final = 100
PREFETCH_ROWS: Final = 20  # ask for the next page when the cursor is this close to the last row
DIFF_CACHE_SIZE: Final = 32
AUTHOR_WIDTH: Final = 12
SUBJECT_WIDTH: Final = 160
WIDE_COLUMNS: Final = 140  # from this width the diff sits beside the list
APPLIED_SYMBOL: Final = "◆"
MERGE_SYMBOL: Final = "M"
COLUMNS: Final = (
    ("flags", "", 2),
    ("sha", "commit", 7),
    ("date", "date", 10),
    ("author", "author", AUTHOR_WIDTH),
    ("files", "files", 5),
    # Fixed, wider than any screen: DataTable caches cells without their width, so a column
    # that grows while rows load would keep stale, narrower cells. The table clips at its edge.
    ("subject", "subject", SUBJECT_WIDTH),
)


class CommitRow(Protocol):
    """What a row shows; ``phases.git.CommitInfo`` has these attributes."""

    @property
    def sha(self) -> str: ...
    @property
    def short(self) -> str: ...
    @property
    def parents(self) -> Sequence[str]: ...
    @property
    def author(self) -> str: ...
    @property
    def date(self) -> datetime: ...
    @property
    def subject(self) -> str: ...
    @property
    def files_changed(self) -> int | None: ...


@dataclass(frozen=True)
class RollbackChoice:
    """The action the user picked; the app plans it, confirms it and runs it."""

    action: RollbackAction
    sha: str
    short: str
    subject: str
    mainline: int | None = None
    """For a merge revert: the parent (1-based) to keep."""


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(number: int, word: str) -> str:
    return f"{number:,} {word}{'' if number == 1 else 's'}"


def marker_label(name: str) -> str:
    """``flux-system/production`` -> ``production``: the namespace is the same for nearly all."""
    return name.rpartition("/")[2]


def diff_text(diff: str) -> Text:
    """A ``git show`` patch with the usual colours (and its meaning readable without them)."""
    text = Text(no_wrap=False, end="")
    for line in diff.splitlines():
        style = ""
        if line.startswith(("commit ", "Merge:")):
            style = "bold yellow"
        elif line.startswith(("diff --git", "+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        text.append(line + "\n", style=style)
    return text


class MergeParentScreen(DialogScreen[int | None]):
    """Which parent a merge revert keeps; dismisses with its 1-based number, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "cancel", "Cancel", id="rollback.parent.cancel"),
        Binding("1", "choose(1)", "Parent 1", show=False),
        Binding("2", "choose(2)", "Parent 2", show=False),
        Binding("3", "choose(3)", "Parent 3", show=False),
    ]

    DEFAULT_CSS = """
    MergeParentScreen {
        & #parent-explanation { margin-bottom: 1; }
        & OptionList { height: auto; max-height: 8; margin-bottom: 1; }
    }
    """

    def __init__(self, commit: CommitRow, parent_subjects: Mapping[str, str]) -> None:
        super().__init__()
        self.commit = commit
        self.parent_subjects = dict(parent_subjects)

    def compose(self) -> ComposeResult:
        with Vertical(id="parent-dialog", classes="dialog") as dialog:
            dialog.border_title = f"Revert merge {self.commit.short}"
            yield Static(
                Text(
                    f"{self.commit.subject}\nThe revert keeps one parent's side and undoes what the "
                    "other brought in. Parent 1, the branch merged into, undoes the merge."
                ),
                id="parent-explanation",
            )
            options = []
            for number, parent in enumerate(self.commit.parents, start=1):
                label = Text.assemble((f"{number}  ", "bold"), (parent[:7], "yellow"))
                subject = self.parent_subjects.get(parent)
                if subject:
                    label.append(f"  {subject}")
                label.append("  (merged into)" if number == 1 else "  (merged in)", style="dim")
                options.append(Option(label, id=str(number)))
            yield OptionList(*options, id="parent-options")
            hint = "1/2: choose · enter: the highlighted one · escape: cancel"
            yield Label(hint, id="parent-hint", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(int(event.option.id or "1"))

    def action_choose(self, number: int) -> None:
        if number <= len(self.commit.parents):
            self.dismiss(number)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RollbackPickerScreen(Screen[RollbackChoice | None]):
    """The deployments history to roll back through (see the module docstring for the protocol)."""

    HORIZONTAL_BREAKPOINTS = [(0, "-stacked"), (WIDE_COLUMNS, "-wide")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,v", "revert", "Revert", id="rollback.revert"),
        Binding("V", "revert_range", "Revert back to", id="rollback.revert_range"),
        Binding("X", "reset", "Reset", id="rollback.reset"),
        Binding("slash", "search", "Search", id="rollback.search"),
        Binding("n", "next_match", "Next match", show=False, id="rollback.next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="rollback.previous_match"),
        Binding("j", "cursor_down", "Down", show=False, id="rollback.down"),
        Binding("k", "cursor_up", "Up", show=False, id="rollback.up"),
        Binding("g", "cursor_first", "First", show=False, id="rollback.first"),
        Binding("G", "cursor_last", "Last loaded", show=False, id="rollback.last"),
        Binding("ctrl+d", "diff_down", "Scroll diff down", show=False, id="rollback.diff_down"),
        Binding("ctrl+u", "diff_up", "Scroll diff up", show=False, id="rollback.diff_up"),
        Binding("ctrl+r", "refresh", "Refresh", show=False, id="rollback.refresh"),
        Binding("escape,q", "back", "Back", id="rollback.back"),
    ]

    DEFAULT_CSS = """
    RollbackPickerScreen {
        layout: vertical;
        & > #picker-title { height: 1; padding: 0 1; background: $panel; color: $text; text-style: bold; }
        & > #picker-body { height: 1fr; }
        & #commits { height: 55%; overflow-x: hidden; scrollbar-size-vertical: 1; }
        & #diff-pane {
            height: 1fr;
            border-top: solid $border-blurred;
            border-title-color: $text-muted;
            padding: 0 1;
            &:focus { border-top: solid $border; }
        }
        &.-wide {
            & > #picker-body { layout: horizontal; }
            & #commits { height: 1fr; width: 55%; }
            & #diff-pane { height: 1fr; border-top: none; border-left: solid $border-blurred; }
        }
        & > #picker-search { display: none; height: 1; border: none; padding: 0 1; }
        &.-searching > #picker-search { display: block; }
        & > #picker-status { height: 1; padding: 0 1; color: $text-muted; }
        & > #picker-status.-success { color: $text-success; }
        & > #picker-status.-warning { color: $text-warning; }
        & > #picker-status.-error { color: $text-error; text-style: bold; }
    }
    """

    class PageRequested(Message):
        """Load ``limit`` commits from ``skip``, then call ``add_page``."""

        def __init__(self, skip: int, limit: int) -> None:
            super().__init__()
            self.skip = skip
            self.limit = limit

    class DiffRequested(Message):
        """Load the diff of ``sha``, then call ``show_diff``."""

        def __init__(self, sha: str) -> None:
            super().__init__()
            self.sha = sha

    class Chosen(Message):
        """The user picked an action: plan it, confirm it (typed for a reset), run it."""

        def __init__(self, choice: RollbackChoice) -> None:
            super().__init__()
            self.choice = choice

    class RefreshRequested(Message):
        """Fetch again and ``reload()``."""

    def __init__(
        self,
        *,
        branch: str = "main",
        page_size: int = DEFAULT_PAGE_SIZE,
        readonly: bool = False,
        reset_refusal: str | None = None,
        diff_delay: float = 0.15,
        dismiss_on_choice: bool = False,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        """``reset_refusal``: why a reset is not offered (e.g. force pushes forbidden), or None."""
        super().__init__(name=name, id=id)
        self.branch = branch
        self.page_size = page_size
        self.readonly = readonly
        self.reset_refusal = reset_refusal
        self.diff_delay = diff_delay
        self.dismiss_on_choice = dismiss_on_choice
        self._commits: list[CommitRow] = []
        self._row_of: dict[str, int] = {}
        self._table_rows = 0  # how many of _commits the table has rows for (the rest follow a frame later)
        self._total: int | None = None
        self._exhausted = False
        self._page_pending = False
        self._markers: dict[str, tuple[str, ...]] = {}
        self._files: dict[str, int] = {}
        self._diffs: OrderedDict[str, str] = OrderedDict()
        self._diffs_requested: set[str] = set()  # asked for and not answered yet
        self._diff_timer: Timer | None = None
        self._shown_diff: str | None = None
        self._wanted_sha: str | None = None
        self._busy: str | None = None
        self._search_term = ""
        self._search_origin: int | None = None

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="picker-title")
        with Container(id="picker-body"):
            table: DataTable[Text] = DataTable(
                id="commits", cursor_type="row", zebra_stripes=False, cell_padding=1
            )
            for key, label, width in COLUMNS:
                table.add_column(label, key=key, width=width)
            yield table
            with VerticalScroll(id="diff-pane") as pane:
                pane.can_focus = True
                yield Static(Text("select a commit to see its changes", style="dim"), id="diff")
        yield Input(
            placeholder="search subjects, authors, shas (enter: keep, escape: back)", id="picker-search"
        )
        yield Static("loading commits…", id="picker-status")
        yield Footer()

    def on_mount(self) -> None:
        self._update_title()
        self.table.focus()
        if not self._commits:
            self._request_page()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#commits", DataTable)

    # -- what the app feeds in ------------------------------------------------------------

    def add_page(
        self, commits: Sequence[CommitRow], total: int | None = None, *, skip: int | None = None
    ) -> None:
        """Append a page (commits already shown are skipped); ``total`` is the branch's commit count.

        With ``skip`` (the request's), a page that no longer follows the loaded rows (it was
        asked for before a ``reload``) is dropped.
        """
        if skip is not None and skip != len(self._commits):
            return
        requested = self._page_pending
        self._page_pending = False
        if total is not None:
            self._total = total
        fresh = [commit for commit in commits if commit.sha not in self._row_of]
        first_rows = not self._commits
        for commit in fresh:
            self._row_of[commit.sha] = len(self._commits)
            self._commits.append(commit)
        if (requested and len(commits) < self.page_size) or (
            self._total is not None and len(self._commits) >= self._total
        ):
            self._exhausted = True
        self._update_title()
        if first_rows and self._commits:
            target = self._row_of.get(self._wanted_sha or "", 0)
            self._wanted_sha = None
            # The rows a screen can show first, the rest right after that frame: DataTable measures every
            # cell it is given before it draws.
            self._add_table_rows(upto=max(self.app.size.height, target + 1))
            self.call_after_refresh(self._add_table_rows)
            self.table.move_cursor(row=target)
            self.call_after_refresh(self._selection_changed)  # the diff preview after the first page
            self.set_status(self._default_hint())
            self._maybe_request_more()
            return
        self._add_table_rows()
        if not self._commits:
            self.set_status("no commits on this branch")
        self._maybe_request_more()

    def page_failed(self, message: str) -> None:
        """Loading a page failed: show why; moving the cursor asks again."""
        self._page_pending = False
        self.set_status(message, severity="error")

    def show_diff(self, sha: str, text: str) -> None:
        self._diffs_requested.discard(sha)
        self._diffs[sha] = text
        self._diffs.move_to_end(sha)
        while len(self._diffs) > DIFF_CACHE_SIZE:
            self._diffs.popitem(last=False)
        if self.selected is not None and self.selected.sha == sha:
            self._render_diff(sha)

    def set_markers(self, markers: Mapping[str, Sequence[str]]) -> None:
        """``{sha: [Kustomization "namespace/name", ...]}``: the commit each one applied."""
        previous = self._markers
        self._markers = {sha: tuple(sorted(names)) for sha, names in markers.items() if names}
        for sha in set(previous) | set(self._markers):
            if previous.get(sha) != self._markers.get(sha):
                self._refresh_row(sha)
        self._update_title()
        self._update_pane_title()

    def set_files_changed(self, counts: Mapping[str, int]) -> None:
        """Files changed per commit, when the app computed them after the page."""
        self._files.update(counts)
        for sha in counts:
            self._refresh_row(sha)

    def set_status(self, text: str, *, severity: StatusSeverity = "information") -> None:
        """A line for the app's progress and outcomes."""
        status = self.query_one("#picker-status", Static)
        status.set_classes(f"-{severity}" if severity != "information" else "")
        status.update(Text(text))

    def set_busy(self, message: str | None) -> None:
        """While an action runs, other actions are refused with ``message``; None ends it."""
        self._busy = message
        if message is not None:
            self.set_status(message, severity="warning")

    def reload(self, *, select_sha: str | None = None) -> None:
        """Forget the rows (keep markers and cached diffs) and load again from the top."""
        keep = select_sha or (self.selected.sha if self.selected is not None else None)
        self._commits.clear()
        self._row_of.clear()
        self._total = None
        self._exhausted = False
        self._page_pending = False
        self._diffs_requested.clear()
        self._wanted_sha = keep
        self.table.clear()
        self._table_rows = 0
        self._update_title()
        self._request_page()

    def select(self, sha: str) -> bool:
        """Move the cursor to ``sha`` if it is loaded."""
        row = self._row_of.get(sha)
        if row is None:
            return False
        self._move_cursor(row)
        return True

    # -- reading state (tests and the app) -------------------------------------------------

    @property
    def selected(self) -> CommitRow | None:
        row = self.table.cursor_row
        return self._commits[row] if 0 <= row < len(self._commits) else None

    @property
    def loaded_count(self) -> int:
        return len(self._commits)

    @property
    def total(self) -> int | None:
        return self._total

    @property
    def markers(self) -> Mapping[str, tuple[str, ...]]:
        return self._markers

    # -- rows --------------------------------------------------------------------------------

    def _cells(self, commit: CommitRow) -> tuple[Text, ...]:
        applied = self._markers.get(commit.sha, ())
        flags = Text(APPLIED_SYMBOL if applied else " ", style="bold green")
        flags.append(MERGE_SYMBOL if len(commit.parents) > 1 else " ", style="bold magenta")
        files = commit.files_changed if commit.files_changed is not None else self._files.get(commit.sha)
        subject = Text()
        if applied:
            labels = " ".join(marker_label(name) for name in applied)
            subject.append(f"◀ {labels} ", style="bold green")
        subject.append(_truncate(commit.subject, SUBJECT_WIDTH))
        # Text, never str: DataTable reads a str cell as markup, and authors and subjects are input.
        return (
            flags,
            Text(commit.short, style="yellow"),
            Text(commit.date.strftime("%Y-%m-%d")),
            Text(_truncate(commit.author, AUTHOR_WIDTH)),
            Text("" if files is None else str(files), justify="right"),
            subject,
        )

    def _add_table_rows(self, upto: int | None = None) -> None:
        """Give the table rows for the loaded commits it lacks, up to row ``upto`` (default: all)."""
        end = len(self._commits) if upto is None else min(upto, len(self._commits))
        table = self.table
        for commit in self._commits[self._table_rows : end]:
            table.add_row(*self._cells(commit), key=commit.sha)
        self._table_rows = max(self._table_rows, end)

    def _move_cursor(self, row: int) -> None:
        self._add_table_rows()  # a row still waiting for its first frame would not exist yet
        self.table.move_cursor(row=row)

    def _refresh_row(self, sha: str) -> None:
        row = self._row_of.get(sha)
        if row is None or row >= self._table_rows:  # not in the table yet: added with current cells
            return
        for (key, _, _), value in zip(COLUMNS, self._cells(self._commits[row]), strict=True):
            try:
                self.table.update_cell(sha, key, value)
            except RowDoesNotExist:  # the rows were cleared by a reload meanwhile
                return

    def _update_title(self) -> None:
        loaded = len(self._commits)
        if self._total is not None:
            count = _count(self._total, "commit") + (f", {loaded:,} loaded" if loaded < self._total else "")
        else:
            count = _count(loaded, "commit") + " loaded"
        applied = f" · {APPLIED_SYMBOL} applied by Flux" if self._markers else ""
        # A Kustomization far behind would otherwise have no visible marker at all.
        beyond = sum(len(names) for sha, names in self._markers.items() if sha not in self._row_of)
        if beyond:
            applied += f" ({beyond} further down)"
        read_only = " · read-only" if self.readonly else ""
        title = f"Roll back {self.branch} · {count}{applied} · {MERGE_SYMBOL} merge{read_only}"
        self.query_one("#picker-title", Static).update(Text(title))

    def _default_hint(self) -> str:
        if self.readonly:
            return "read-only: browse the history and diffs; nothing can be changed"
        return "enter/v revert · V revert all back to here · X reset · / search · ^d/^u scroll diff"

    # -- paging ------------------------------------------------------------------------------

    def _request_page(self) -> None:
        if self._page_pending or self._exhausted:
            return
        self._page_pending = True
        self.post_message(self.PageRequested(len(self._commits), self.page_size))

    def _maybe_request_more(self) -> None:
        if self._commits and self.table.cursor_row >= len(self._commits) - PREFETCH_ROWS:
            self._request_page()

    # -- selection and diff ------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#commits")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._selection_changed()
        self._maybe_request_more()

    @on(DataTable.RowSelected, "#commits")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_revert()

    def _selection_changed(self) -> None:
        commit = self.selected
        if commit is None:
            return
        self._update_pane_title()
        if commit.sha in self._diffs:
            self._diffs.move_to_end(commit.sha)
            self._render_diff(commit.sha)
            return
        if self._shown_diff != commit.sha:
            self.query_one("#diff", Static).update(Text(f"loading the diff of {commit.short}…", style="dim"))
            self._shown_diff = None
        if self._diff_timer is not None:
            self._diff_timer.stop()
        if self.diff_delay <= 0:
            self._request_diff()
        else:
            self._diff_timer = self.set_timer(self.diff_delay, self._request_diff)

    def _update_pane_title(self) -> None:
        commit = self.selected
        if commit is None:
            return
        kind = f" · merge of {len(commit.parents)} parents" if len(commit.parents) > 1 else ""
        applied = self._markers.get(commit.sha)
        by = f" · applied by {', '.join(applied)}" if applied else ""
        title = f"{commit.short} · {commit.author} · {commit.date:%Y-%m-%d %H:%M}{kind}{by}"
        # Content, not str: a str title is read as markup, and the author is input.
        self.query_one("#diff-pane", VerticalScroll).border_title = Content(title)

    def _request_diff(self) -> None:
        self._diff_timer = None
        commit = self.selected
        if commit is None or commit.sha in self._diffs or commit.sha in self._diffs_requested:
            return
        self._diffs_requested.add(commit.sha)
        self.post_message(self.DiffRequested(commit.sha))

    def _render_diff(self, sha: str) -> None:
        if self._shown_diff == sha:
            return
        self._shown_diff = sha
        self.query_one("#diff", Static).update(diff_text(self._diffs[sha]))
        self.query_one("#diff-pane", VerticalScroll).scroll_home(animate=False)

    # -- actions -----------------------------------------------------------------------------

    def _actionable(self) -> CommitRow | None:
        """The selected commit, unless the picker is read-only, busy, or empty (then say why)."""
        if self.readonly:
            self.set_status("read-only: nothing can be changed", severity="warning")
            self.app.bell()
            return None
        if self._busy is not None:
            self.set_status(f"wait: {self._busy}", severity="warning")
            self.app.bell()
            return None
        commit = self.selected
        if commit is None:
            self.app.bell()
        return commit

    def _choose(self, choice: RollbackChoice) -> None:
        self.post_message(self.Chosen(choice))
        if self.dismiss_on_choice:
            self.dismiss(choice)

    def action_revert(self) -> None:
        commit = self._actionable()
        if commit is None:
            return
        if len(commit.parents) <= 1:
            self._choose(RollbackChoice("revert", commit.sha, commit.short, commit.subject))
            return
        subjects = {
            parent: self._commits[self._row_of[parent]].subject
            for parent in commit.parents
            if parent in self._row_of
        }

        def chosen(mainline: int | None) -> None:
            if mainline is not None:
                self._choose(RollbackChoice("revert", commit.sha, commit.short, commit.subject, mainline))

        self.app.push_screen(MergeParentScreen(commit, subjects), chosen)

    def action_revert_range(self) -> None:
        commit = self._actionable()
        if commit is not None:
            self._choose(RollbackChoice("revert-range", commit.sha, commit.short, commit.subject))

    def action_reset(self) -> None:
        commit = self._actionable()
        if commit is None:
            return
        if self.reset_refusal is not None:
            self.set_status(self.reset_refusal, severity="warning")
            self.app.bell()
            return
        self._choose(RollbackChoice("reset", commit.sha, commit.short, commit.subject))

    def action_back(self) -> None:
        if self.has_class("-searching"):
            self._close_search(restore=True)
            return
        self.dismiss(None)

    def action_refresh(self) -> None:
        self.post_message(self.RefreshRequested())

    def action_cursor_down(self) -> None:
        self.table.action_cursor_down()

    def action_cursor_up(self) -> None:
        self.table.action_cursor_up()

    def action_cursor_first(self) -> None:
        if self._commits:
            self._move_cursor(0)

    def action_cursor_last(self) -> None:
        if self._commits:
            self._move_cursor(len(self._commits) - 1)

    def action_diff_down(self) -> None:
        pane = self.query_one("#diff-pane", VerticalScroll)
        pane.scroll_relative(y=max(1, pane.size.height // 2), animate=False)

    def action_diff_up(self) -> None:
        pane = self.query_one("#diff-pane", VerticalScroll)
        pane.scroll_relative(y=-max(1, pane.size.height // 2), animate=False)

    # -- search ------------------------------------------------------------------------------

    def action_search(self) -> None:
        self._search_origin = self.table.cursor_row
        self.add_class("-searching")
        search = self.query_one("#picker-search", Input)
        search.value = self._search_term
        search.focus()

    @on(Input.Changed, "#picker-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._search_term = event.value.strip().lower()
        if self._search_term:
            self._jump_to_match(self._search_origin or 0, step=1, inclusive=True)

    @on(Input.Submitted, "#picker-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close_search(restore=False)

    def _close_search(self, *, restore: bool) -> None:
        self.remove_class("-searching")
        if restore:
            self._search_term = ""
            if self._search_origin is not None and self._commits:
                self._move_cursor(self._search_origin)
            self.set_status(self._default_hint())
        self._search_origin = None
        self.table.focus()

    def action_next_match(self) -> None:
        if self._search_term:
            self._jump_to_match(self.table.cursor_row, step=1, inclusive=False)

    def action_previous_match(self) -> None:
        if self._search_term:
            self._jump_to_match(self.table.cursor_row, step=-1, inclusive=False)

    def _matches(self, commit: CommitRow) -> bool:
        term = self._search_term
        return term in commit.subject.lower() or term in commit.author.lower() or commit.sha.startswith(term)

    def _jump_to_match(self, start: int, *, step: int, inclusive: bool) -> None:
        count = len(self._commits)
        matches = [row for row, commit in enumerate(self._commits) if self._matches(commit)]
        scope = f"{count:,} loaded commits" + ("" if self._exhausted else " (older ones are not loaded yet)")
        if not matches:
            self.set_status(f"no match for {self._search_term!r} in {scope}", severity="warning")
            return
        matching = set(matches)
        offsets = range(0 if inclusive else 1, count + 1)
        row = next((start + step * o) % count for o in offsets if (start + step * o) % count in matching)
        self._move_cursor(row)
        position = matches.index(row) + 1
        self.set_status(f"match {position} of {len(matches)} in {scope} · n/N: next/previous")
