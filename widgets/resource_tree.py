"""The day-2 resource tree: Flux, External Secrets and Vault in one keyboard-driven, virtual tree.

It renders a :class:`~phases.resources.ResourceModel` and never talks to a cluster. It is virtual: a
``ScrollView`` whose ``render_line`` draws only the rows on screen, read from a flat list of the rows shown
(open headings' resources that match the filter, plus the detail rows of open resources). That list is
made of per-kind sorted key lists joined by C-speed ``list.extend``, and rebuilt only when rows appear,
vanish, open or close. Labels are built when a row is first drawn, then cached. The app feeds the keys each
model change returned (``apply_changes``): their cached labels are dropped, and of the rows on screen only
those whose text changed are redrawn, so a burst of events on a 5,000-object tree costs work proportional to
the burst and the screen, not to the tree. Rows wider than the pane end in "…" (no sideways scrolling): the
details panel shows everything.

Every row leads with a health symbol, so health reads without colour (``NO_COLOR``, monochrome SSH):
``✔`` ready, ``✘`` not ready, ``◐`` progressing, ``⏸`` suspended, ``?`` unknown, ``!`` missing Vault path.
Colours come from component classes, so a theme can restyle them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input

from phases.resources import (
    CLUSTER_SECRET_STORE,
    ESO_KINDS,
    EXTERNAL_SECRET,
    FLUX_KINDS,
    GIT_REPOSITORY,
    HEALTHS,
    HELM_RELEASE,
    KUSTOMIZATION,
    VAULT_PATH,
    NodeHealth,
    NodeKey,
    ResourceModel,
    ResourceNode,
    key_matches,
    short_revision,
    vault_path_key,
)

HEALTH_SYMBOLS: Final[dict[NodeHealth, str]] = {
    "ready": "✔",
    "not-ready": "✘",
    "progressing": "◐",
    "suspended": "⏸",
    "unknown": "?",
    "missing": "!",
}
GROUP_TITLES: Final[dict[str, str]] = {
    GIT_REPOSITORY: "GitRepositories",
    KUSTOMIZATION: "Kustomizations",
    HELM_RELEASE: "HelmReleases",
    CLUSTER_SECRET_STORE: "ClusterSecretStores",
    EXTERNAL_SECRET: "ExternalSecrets",
}
SOURCE_STATE_TEXT: Final[dict[str, str]] = {
    "loading": "loading…",
    "missing": "not installed",
    "unreachable": "unreachable",
    "error": "error",
}
SECTIONS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("flux", "Flux", FLUX_KINDS),
    ("eso", "External Secrets", ESO_KINDS),
    ("vault", "Vault", (VAULT_PATH,)),
)
STATUS_WIDTH: Final = 40  # a row's short status is cut here; the details panel has the whole message
READERS_SHOWN: Final = 3
TREE_KINDS: Final = (*FLUX_KINDS, *ESO_KINDS, VAULT_PATH)
ICON_OPEN: Final = "▼ "
ICON_CLOSED: Final = "▶ "
LABEL_CACHE_SIZE: Final = 4096  # labels of rows drawn so far; more only after scrolling through thousands
STRIP_CACHE_SIZE: Final = 512
REBUILD_KIND_AT: Final = 64  # more changed keys of one kind than this: re-read its sorted keys at once


@dataclass(frozen=True, slots=True)
class Heading:
    """A section row (``id`` "flux", "eso" or "vault") or a group row (``id`` is the group's kind)."""

    id: str


@dataclass(frozen=True, slots=True)
class DetailRow:
    """The ``index``-th detail row of the open resource ``parent``."""

    parent: NodeKey
    index: int


Row = NodeKey | Heading | DetailRow  # a resource row is its node's key
Detail = tuple[Text, NodeKey | None]  # a detail row's label and the node enter shows (None: nothing)

HEADINGS: Final[dict[str, Heading]] = {
    **{section_id: Heading(section_id) for section_id, _, _ in SECTIONS},
    **{kind: Heading(kind) for kind in GROUP_TITLES},
}
SECTION_OF: Final[dict[str, str]] = {
    **{kind: section_id for section_id, _, kinds in SECTIONS for kind in kinds},
    **{section_id: section_id for section_id, _, _ in SECTIONS},
}
PARENT_HEADING: Final[dict[str, Heading]] = {  # the row a kind's resources hang under
    kind: HEADINGS["vault"] if kind == VAULT_PATH else HEADINGS[kind] for kind in TREE_KINDS
}
LAST_GROUPS: Final = frozenset({FLUX_KINDS[-1], ESO_KINDS[-1]})
# Guides as Textual's Tree draws them with guide_depth 2: (space, vertical, terminator, cross).
SPACE, VERTICAL, TERMINATOR, CROSS = "  ", "│ ", "└ ", "├ "


def _one_line(text: str, width: int = STATUS_WIDTH) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _index_of(keys: list[NodeKey], key: NodeKey) -> int | None:
    index = bisect.bisect_left(keys, key)
    return index if index < len(keys) and keys[index] == key else None


class ResourceTree(ScrollView, can_focus=True):
    """Flux, ESO and Vault state as a tree; ``enter`` posts :class:`ShowDetails` for the row's node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "show_details", "Details", show=True, id="tree.details"),
        Binding("slash", "open_filter", "Filter", show=True, id="tree.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="tree.clear_filter"),
        Binding("up,k", "cursor_up", "Previous row", show=False, id="tree.up"),
        Binding("down,j", "cursor_down", "Next row", show=False, id="tree.down"),
        Binding("home", "cursor_first", "First row", show=False, id="tree.first"),
        Binding("end", "cursor_last", "Last row", show=False, id="tree.last"),
        Binding("pageup", "page_up", "Page up", show=False, id="tree.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="tree.page_down"),
        Binding("space", "toggle_row", "Open or close", show=False, id="tree.toggle"),
        Binding("right", "expand", "Open", show=False, id="tree.open"),
        Binding("left", "collapse", "Close, or go to the parent", show=False, id="tree.close"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "resource-tree--ready",
        "resource-tree--not-ready",
        "resource-tree--progressing",
        "resource-tree--suspended",
        "resource-tree--unknown",
        "resource-tree--missing",
        "resource-tree--muted",
        "resource-tree--heading",
        "resource-tree--guides",
        "resource-tree--cursor",
        "resource-tree--highlight-line",
    }
    # The look of Textual's Tree (guides, cursor, hover), which this widget replaced.
    DEFAULT_CSS = """
    ResourceTree {
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        & > .resource-tree--guides { color: $surface-lighten-2; }
        & > .resource-tree--cursor {
            text-style: $block-cursor-blurred-text-style;
            background: $block-cursor-blurred-background;
        }
        & > .resource-tree--highlight-line { background: $block-hover-background; }
        &:focus {
            background-tint: $foreground 5%;
            & > .resource-tree--cursor {
                color: $block-cursor-foreground;
                background: $block-cursor-background;
                text-style: $block-cursor-text-style;
            }
            & > .resource-tree--guides { color: $surface-lighten-3; }
        }
        &:light > .resource-tree--guides { color: $surface-darken-1; }
        & > .resource-tree--ready { color: $success; }
        & > .resource-tree--not-ready { color: $error; text-style: bold; }
        & > .resource-tree--progressing { color: $warning; }
        & > .resource-tree--suspended { color: $secondary; }
        & > .resource-tree--unknown { color: $text-muted; }
        & > .resource-tree--missing { color: $error; text-style: bold; }
        & > .resource-tree--muted { color: $text-muted; }
        & > .resource-tree--heading { text-style: bold; }
        & > #resource-filter {
            dock: bottom;
            height: 1;
            border: none;
            padding: 0 1;
            display: none;
        }
        & > #resource-filter.-open { display: block; }
    }
    ResourceTree:ansi {
        color: ansi_default;
        & > .resource-tree--guides { color: $ansi-background; }
        &:nocolor > .resource-tree--cursor { text-style: reverse; }
    }
    """

    class ShowDetails(Message):
        """The user asked for the details of ``key`` (enter on its row, or on one of its detail rows)."""

        def __init__(self, key: NodeKey) -> None:
            super().__init__()
            self.key = key

    class FilterChanged(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._model: ResourceModel | None = None
        self._reload = True  # the next update reads the whole model (first one, or a new model)
        self._pending: set[NodeKey] = set()  # changes that arrived before mount
        self._filter = ""
        self._filter_field = Input(placeholder="filter: kind, namespace or name", id="resource-filter")
        # What is shown: per kind, the sorted keys matching the filter; open rows; closed headings.
        self._shown: dict[str, list[NodeKey]] = {kind: [] for kind in TREE_KINDS}
        self._synced: dict[str, int] = {}  # per kind, the model's keys_version _shown was made for
        self._open: dict[NodeKey, list[Detail]] = {}  # open resource -> its detail rows
        self._collapsed: set[str] = set()  # ids of closed headings (all start open)
        # The flat list of shown rows, and where each heading and each kind's first resource are in it.
        self._lines: list[Row] = []
        self._heading_line: dict[str, int] = {}
        self._first_line: dict[str, int] = {}  # absent: the kind's heading (or its section) is closed
        self._cursor: Row | None = None
        self._hover: Row | None = None
        # Caches: labels per key (with whether the row can open), heading labels, rendered lines.
        self._labels: dict[NodeKey, tuple[Text, bool]] = {}
        self._heading_labels: dict[str, Text] = {}
        self._heading_inputs: object = None  # what the heading labels were made from
        self._strips: dict[Row, Strip] = {}
        self._visible_width = 0  # columns left of the scrollbar when the cached rows were drawn
        self._styles: dict[str, Style] = {}  # label styles, resolved once (walking the CSS is slow)
        self._chrome: dict[str, Style] = {}  # guides, cursor, hover: they change with focus

    @property
    def is_container(self) -> bool:
        # A ScrollView lays out no children; ours has one, the filter input docked at the bottom.
        return True

    def _on_mount(self, event: events.Mount) -> None:
        self.mount(self._filter_field)
        self.watch(self.app, "theme", self._theme_changed, init=False)
        if self._model is not None:
            pending, self._pending = self._pending, set()
            self.apply_changes(self._model, pending)
        else:  # nothing to count yet: the headings' titles alone
            self._heading_labels = {
                **{section: Text(title, style=self._style("heading")) for section, title, _ in SECTIONS},
                **{kind: Text(title) for kind, title in GROUP_TITLES.items()},
            }
            self._rebuild_lines()

    # -- public API --------------------------------------------------------------------------------------

    @property
    def selected_key(self) -> NodeKey | None:
        """The node under the cursor (for a detail row, the node it refers to)."""
        return self._target(self._cursor)

    @property
    def cursor_row(self) -> Row | None:
        return self._cursor

    @property
    def cursor_line(self) -> int | None:
        return self._line_of(self._cursor) if self._cursor is not None else None

    @property
    def filter_text(self) -> str:
        return self._filter

    def apply_changes(self, model: ResourceModel, changed: Iterable[NodeKey]) -> None:
        """Bring the rows for ``changed`` keys in line with ``model``; other rows are left untouched."""
        if model is not self._model:
            self._model, self._reload = model, True
        if not self.is_mounted:  # component styles need the DOM; catch up on mount
            self._pending.update(changed)
            return
        if self._reload:
            self._load_all(model)
            return
        changed = changed if isinstance(changed, set) else set(changed)
        by_kind: dict[str, list[NodeKey]] = {}
        for key in changed:
            keys = by_kind.get(key[0])
            if keys is None:
                by_kind[key[0]] = [key]
            else:
                keys.append(key)
        structural = False
        labels, strips = self._labels, self._strips
        dropped: dict[NodeKey, tuple[Text, bool]] = {}  # the labels drawn before, to compare
        for kind, keys in by_kind.items():
            if kind not in self._shown:  # a kind the tree does not show
                continue
            for key in keys:
                old = labels.pop(key, None)
                if old is not None:
                    dropped[key] = old
                strips.pop(key, None)
            if model.keys_version(kind) != self._synced.get(kind):  # keys came or went, not just updates
                structural |= self._sync_rows(model, kind, keys)
            for key in keys:
                if key in self._open:
                    structural |= self._refresh_details(key)
        headings = self._refresh_headings(model)
        if structural:
            self._rebuild_lines()
        else:
            self._repaint(changed, dropped, headings)

    def load(self, model: ResourceModel) -> None:
        """Show ``model`` in full (first load, or a model replacing another one, e.g. a new context)."""
        self._model, self._reload = model, True
        if self.is_mounted:
            self._load_all(model)

    def set_filter(self, text: str) -> None:
        """Show only nodes whose kind, namespace or name contains ``text`` (case-insensitive)."""
        needle = text.strip().lower()
        if needle == self._filter:
            return
        self._filter = needle
        if self._model is not None and self.is_mounted:
            self._load_all(self._model)
        self.post_message(self.FilterChanged(needle))

    def shown_keys(self) -> set[NodeKey]:
        """Keys with a row (under open or closed headings) given the filter."""
        return {key for keys in self._shown.values() for key in keys}

    def label_of(self, key: NodeKey) -> Text:
        """The label of ``key``'s row as drawn (without the cursor)."""
        cached = self._labels.get(key)
        return cached[0] if cached is not None else self._build_label(key)[0]

    def heading_label(self, heading_id: str) -> Text:
        """The label of a section ("flux", "eso", "vault") or group (its kind) row."""
        return self._heading_labels[heading_id]

    def has_details(self, key: NodeKey) -> bool:
        """Whether ``key``'s row opens to detail rows."""
        cached = self._labels.get(key)
        return cached[1] if cached is not None else self._build_label(key)[1]

    def is_expanded(self, row: NodeKey | str) -> bool:
        """Whether a resource row (its key) or a heading (its id) is open."""
        return row not in self._collapsed if isinstance(row, str) else row in self._open

    def detail_labels(self, key: NodeKey) -> list[Text]:
        """The detail rows of ``key`` while it is open (none when closed)."""
        return [label for label, _ in self._open.get(key, ())]

    def open_row(self, row: NodeKey | str) -> None:
        """Open a resource row (its key) or a heading (its id)."""
        if not self.is_expanded(row):
            self._toggle(row)

    def close_row(self, row: NodeKey | str) -> None:
        if self.is_expanded(row):
            self._toggle(row)

    def move_cursor(self, row: Row | None, *, scroll: bool = True) -> None:
        """Put the cursor on ``row`` (a key, a :class:`Heading` or a :class:`DetailRow`) if it is shown."""
        if row is not None and self._line_of(row) is None:
            return
        previous, self._cursor = self._cursor, row
        for old in (previous, row):
            if old is not None:
                self._strips.pop(old, None)
                self._refresh_row(old)
        if scroll:
            self._scroll_to_cursor()
        if _kind_of(self._target(previous)) != _kind_of(self._target(row)):
            self.refresh_bindings()  # which of the app's keys apply depends on the selected object's kind

    @property
    def line_count(self) -> int:
        """Rows shown (what a full scroll covers)."""
        return len(self._lines)

    def line_text(self, line: int) -> str:
        """The plain text of the ``line``-th shown row (guides, icon and label), drawn or not."""
        row = self._lines[line]
        guides, icon, label = self._row_parts(row)
        return guides + icon + label.plain

    # -- actions -----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":  # otherwise escape is left to the app (close a panel, go back)
            return bool(self._filter) or self._filter_field.has_class("-open")
        return True

    def action_show_details(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.ShowDetails(key))
        elif isinstance(self._cursor, Heading):  # a section or group: open or close it
            self._toggle(self._cursor.id)

    def action_cursor_up(self) -> None:
        line = self.cursor_line
        self._move_to_line(len(self._lines) - 1 if line is None else line - 1)

    def action_cursor_down(self) -> None:
        line = self.cursor_line
        self._move_to_line(0 if line is None else line + 1)

    def action_cursor_first(self) -> None:
        self._move_to_line(0)

    def action_cursor_last(self) -> None:
        self._move_to_line(len(self._lines) - 1)

    def action_page_up(self) -> None:
        line = self.cursor_line
        self._move_to_line((len(self._lines) if line is None else line) - max(1, self.size.height - 1))

    def action_page_down(self) -> None:
        line = self.cursor_line
        self._move_to_line((0 if line is None else line) + max(1, self.size.height - 1))

    def action_toggle_row(self) -> None:
        row = self._cursor
        if isinstance(row, Heading):
            self._toggle(row.id)
        elif isinstance(row, tuple):
            self._toggle(row)

    def action_expand(self) -> None:
        """Open the row; on an open row, go to its first child."""
        row = self._cursor
        if row is None or isinstance(row, DetailRow):
            return
        target = row.id if isinstance(row, Heading) else row
        if self.is_expanded(target):
            self.action_cursor_down()
        elif isinstance(row, Heading) or self.has_details(row):
            self._toggle(target)

    def action_collapse(self) -> None:
        """Close the row; on a closed row (or a detail row), go to its parent."""
        row = self._cursor
        if row is None:
            return
        if isinstance(row, Heading):
            if row.id not in self._collapsed:
                self._toggle(row.id)
            elif row.id != SECTION_OF[row.id]:
                self.move_cursor(HEADINGS[SECTION_OF[row.id]])
        elif isinstance(row, DetailRow):
            self.move_cursor(row.parent)
        elif row in self._open:
            self._toggle(row)
        else:
            self.move_cursor(PARENT_HEADING[row[0]])

    def action_open_filter(self) -> None:
        field = self._filter_field
        field.add_class("-open")
        field.value = self._filter
        field.focus()

    def action_clear_filter(self) -> None:
        self._close_filter()
        self.set_filter("")

    @on(Input.Changed, "#resource-filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_filter(event.value)

    @on(Input.Submitted, "#resource-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close_filter()

    def _close_filter(self) -> None:
        field = self._filter_field
        field.remove_class("-open")
        self.focus()

    # -- mouse -------------------------------------------------------------------------------------------

    # Rows are found from the pointer's position, not from style metadata in the drawn lines: a drawn row
    # then depends only on its content, and stays cached when rows above it come or go.

    def _row_at(self, event: events.MouseEvent) -> tuple[Row, int] | None:
        """The row under the pointer and the pointer's column, if over a row (not the filter field)."""
        offset = event.get_content_offset(self)
        if offset is None or event.widget is not self:
            return None
        line = round(self.scroll_offset.y) + offset.y
        return (self._lines[line], offset.x) if 0 <= line < len(self._lines) else None

    async def _on_click(self, event: events.Click) -> None:
        hit = self._row_at(event)
        if hit is None:
            return
        row, x = hit
        self.move_cursor(row, scroll=False)
        guides, icon, _label = self._row_parts(row)
        if icon and len(guides) <= x < len(guides) + len(icon):  # on ▶/▼: open or close
            self.action_toggle_row()
        else:
            self.action_show_details()  # a click shows the details (or folds a heading), like enter

    def _on_mouse_move(self, event: events.MouseMove) -> None:
        hit = self._row_at(event)
        self._set_hover(hit[0] if hit is not None else None)

    def _on_leave(self, event: events.Leave) -> None:
        self._set_hover(None)

    def _set_hover(self, row: Row | None) -> None:
        if row == self._hover:
            return
        previous, self._hover = self._hover, row
        for old in (previous, row):
            if old is not None:
                self._strips.pop(old, None)
                self._refresh_row(old)

    # -- rows --------------------------------------------------------------------------------------------

    def _matching(self, keys: list[NodeKey]) -> list[NodeKey]:
        needle = self._filter
        return [key for key in keys if key_matches(key, needle)] if needle else keys

    def _sync_rows(self, model: ResourceModel, kind: str, keys: list[NodeKey]) -> bool:
        """Add and remove ``kind``'s rows for the changed ``keys``; True if any came or went."""
        shown = self._shown[kind]
        self._synced[kind] = model.keys_version(kind)
        if len(keys) > REBUILD_KIND_AT:  # a re-list: sorting the kind's keys is cheaper than inserting
            fresh = self._matching(model.sorted_keys(kind))
            self._shown[kind] = fresh
            return fresh != shown
        structural = False
        for key in keys:
            index = bisect.bisect_left(shown, key)
            present = index < len(shown) and shown[index] == key
            wanted = model.get(key) is not None and (not self._filter or key_matches(key, self._filter))
            if wanted and not present:
                shown.insert(index, key)
                structural = True
            elif present and not wanted:
                del shown[index]
                structural = True
        return structural

    def _load_all(self, model: ResourceModel) -> None:
        """Re-read every kind from ``model`` (first load, new model, new filter); keeps open rows."""
        self._reload = False
        self._pending.clear()
        self._labels.clear()
        self._strips.clear()
        for kind in TREE_KINDS:
            self._shown[kind] = self._matching(model.sorted_keys(kind))
            self._synced[kind] = model.keys_version(kind)
        for key in list(self._open):
            if _index_of(self._shown[key[0]], key) is None:
                del self._open[key]
            else:
                self._refresh_details(key)
        self._refresh_headings(model)
        self._rebuild_lines()

    def _toggle(self, row: NodeKey | str) -> None:
        if isinstance(row, str):
            self._collapsed ^= {row}
        elif row in self._open:
            del self._open[row]
        elif self._model is not None and self.has_details(row):
            self._open[row] = []
            self._refresh_details(row)
        else:
            return
        self._strips.clear()
        self._rebuild_lines()

    def _refresh_details(self, key: NodeKey) -> bool:
        """Rebuild an open row's detail rows (closing it when it has none); True if their number changed."""
        before = self._open.get(key, [])
        node = self._model.get(key) if self._model is not None else None
        wanted = self._detail_rows(node, self._model) if node is not None and self._model is not None else []
        if not wanted:
            self._open.pop(key, None)
            return bool(before)
        self._open[key] = wanted
        for index in range(min(len(before), len(wanted))):
            if before[index] != wanted[index]:
                self._strips.pop(DetailRow(key, index), None)
                self._refresh_row(DetailRow(key, index))
        return len(before) != len(wanted)

    def _rebuild_lines(self) -> None:
        """Join the shown rows into the flat list ``render_line`` reads; keep the cursor on its row."""
        lines: list[Row] = []
        self._heading_line.clear()
        self._first_line.clear()
        for section_id, _title, kinds in SECTIONS:
            self._heading_line[section_id] = len(lines)
            lines.append(HEADINGS[section_id])
            if section_id in self._collapsed:
                continue
            for kind in kinds:
                if kind != VAULT_PATH:  # Vault paths hang directly under their section
                    self._heading_line[kind] = len(lines)
                    lines.append(HEADINGS[kind])
                    if kind in self._collapsed:
                        continue
                self._first_line[kind] = len(lines)
                self._extend(lines, kind)
        self._lines = lines
        self._strips.clear()  # a row's guides depend on whether it is the last of its siblings
        if self._hover is not None and self._line_of(self._hover) is None:
            self._hover = None
        cursor = self._cursor
        if cursor is not None and self._line_of(cursor) is None:
            self.move_cursor(self._fallback(cursor), scroll=False)
        self.virtual_size = Size(0, len(lines))
        self.refresh()

    def _extend(self, lines: list[Row], kind: str) -> None:
        keys = self._shown[kind]
        start = 0
        for key in sorted(key for key in self._open if key[0] == kind):  # few: opened by hand
            index = _index_of(keys, key)
            if index is None:
                continue
            lines.extend(keys[start : index + 1])
            lines.extend(DetailRow(key, n) for n in range(len(self._open[key])))
            start = index + 1
        lines.extend(keys[start:] if start else keys)

    def _line_of(self, row: Row) -> int | None:
        """Where ``row`` is in the flat list (None: not shown), found without searching it."""
        if isinstance(row, Heading):
            return self._heading_line.get(row.id)
        key = row.parent if isinstance(row, DetailRow) else row
        first = self._first_line.get(key[0])
        keys = self._shown.get(key[0])
        index = _index_of(keys, key) if keys is not None else None
        if first is None or keys is None or index is None:
            return None
        line = first + index
        for opened, details in self._open.items():
            if opened[0] == key[0] and opened < key:
                line += len(details)
        if isinstance(row, DetailRow):
            if not 0 <= row.index < len(self._open.get(key, ())):
                return None
            line += 1 + row.index
        return line

    def _fallback(self, row: Row) -> Row:
        """Where the cursor goes when its row vanishes: the previous sibling, else the parent."""
        if isinstance(row, DetailRow):
            return row.parent if self._line_of(row.parent) is not None else self._fallback(row.parent)
        if isinstance(row, Heading):
            return HEADINGS[SECTION_OF[row.id]]
        parent = PARENT_HEADING[row[0]]
        if self._line_of(parent) is None:
            return self._fallback(parent)
        keys = self._shown[row[0]]
        index = bisect.bisect_left(keys, row)
        if index > 0 and row[0] in self._first_line:
            return keys[index - 1]
        return parent

    def _target(self, row: Row | None) -> NodeKey | None:
        if isinstance(row, DetailRow):
            details = self._open.get(row.parent, [])
            return details[row.index][1] if row.index < len(details) else None
        return row if isinstance(row, tuple) else None

    def _move_to_line(self, line: int) -> None:
        if self._lines:
            self.move_cursor(self._lines[max(0, min(line, len(self._lines) - 1))])

    def _scroll_to_cursor(self) -> None:
        line = self.cursor_line
        if line is not None:
            self.scroll_to_region(
                Region(0, line, 1, 1), animate=False, force=True, origin_visible=False, x_axis=False
            )

    def _refresh_row(self, row: Row) -> None:
        line = self._line_of(row)
        if line is not None:
            self.refresh_line(line)

    def _repaint(
        self, changed: set[NodeKey], dropped: dict[NodeKey, tuple[Text, bool]], headings: set[str]
    ) -> None:
        """Repaint the visible lines whose label changed: a changed key's row (its label is rebuilt now
        and compared with the one drawn) or heading. Changed detail rows were repainted by
        ``_refresh_details``; rows off screen get their new label when drawn."""
        top = round(self.scroll_offset.y)
        for line in range(top, min(top + self.size.height, len(self._lines))):
            row = self._lines[line]
            if isinstance(row, Heading):
                dirty = row.id in headings
            elif isinstance(row, tuple) and row in changed:
                dirty = row not in dropped or self._label(row) != dropped[row]
            else:
                continue
            if dirty:
                self._strips.pop(row, None)
                self.refresh_line(line)

    # -- drawing -----------------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # Rows are cut where the scrollbar starts (``size`` includes it): measured once per paint.
        visible = self.scrollable_content_region.width
        if visible != self._visible_width:
            self._visible_width = visible
            self._strips.clear()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        line = round(self.scroll_offset.y) + y
        width = self.size.width
        if not 0 <= line < len(self._lines):
            return Strip.blank(width, self._base_style())
        row = self._lines[line]
        plain = row != self._cursor and row != self._hover
        if plain:
            strip = self._strips.get(row)
            if strip is not None and strip.cell_length == width:
                return strip
        strip = self._render_row(row, width)
        if plain:
            if len(self._strips) >= STRIP_CACHE_SIZE:
                self._strips.clear()
            self._strips[row] = strip
        return strip

    def _render_row(self, row: Row, width: int) -> Strip:
        line_style = self._base_style()
        if row == self._hover:
            line_style += self._chrome_style("highlight-line")
        guides, icon, label = self._row_parts(row)
        text = Text(style=line_style, no_wrap=True, end="")
        if guides:
            text.append(guides, style=self._chrome_style("guides"))
        if icon:
            text.append(icon)
        start = len(text)
        text.append_text(label)
        if row == self._cursor:
            text.stylize(self._chrome_style("cursor"), start)
        # No sideways scrolling: the details panel has it all.
        text.truncate(min(width, self._visible_width or width), overflow="ellipsis")
        return Strip(text.render(self.app.console)).adjust_cell_length(width, line_style)

    def _row_parts(self, row: Row) -> tuple[str, str, Text]:
        """(guides, open/closed icon, label) of a row."""
        if isinstance(row, Heading):
            guides = "" if SECTION_OF[row.id] == row.id else TERMINATOR if row.id in LAST_GROUPS else CROSS
            return (
                guides,
                ICON_CLOSED if row.id in self._collapsed else ICON_OPEN,
                self._heading_labels[row.id],
            )
        if isinstance(row, DetailRow):
            details = self._open.get(row.parent, [])
            label = details[row.index][0] if row.index < len(details) else Text()
            last = row.index == len(details) - 1
            return self._guides(row.parent, own=False) + (TERMINATOR if last else CROSS), "", label
        label, expandable = self._label(row)
        icon = (ICON_OPEN if row in self._open else ICON_CLOSED) if expandable else ""
        return self._guides(row, own=True), icon, label

    def _guides(self, key: NodeKey, *, own: bool) -> str:
        """The guides left of a resource row (``own``) or of its detail rows."""
        kind = key[0]
        keys = self._shown[kind]
        last = bool(keys) and keys[-1] == key
        prefix = "" if kind == VAULT_PATH else SPACE if kind in LAST_GROUPS else VERTICAL
        if own:
            return prefix + (TERMINATOR if last else CROSS)
        return prefix + (SPACE if last else VERTICAL)

    def _label(self, key: NodeKey) -> tuple[Text, bool]:
        cached = self._labels.get(key)
        if cached is None:
            cached = self._build_label(key)
            if len(self._labels) >= LABEL_CACHE_SIZE:
                self._labels.clear()
                self._strips.clear()  # drawn from those labels: a change must find them to compare
            self._labels[key] = cached
        return cached

    def _build_label(self, key: NodeKey) -> tuple[Text, bool]:
        model = self._model
        node = model.get(key) if model is not None else None
        if node is None or model is None:
            return Text(key[2]), False
        return self._resource_label(node, model), _has_details(node, model)

    # -- styles ------------------------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        # Cached: resolving a component style walks the CSS, far too slow to do per row.
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"resource-tree--{name}", partial=True)
        return style

    def _base_style(self) -> Style:
        # Cached with the chrome: ``rich_style`` walks the ancestors' backgrounds (~40 µs, per row drawn).
        style = self._chrome.get("")
        if style is None:
            style = self._chrome[""] = self.rich_style
        return style

    def _chrome_style(self, name: str) -> Style:
        style = self._chrome.get(name)
        if style is None:
            style = self._chrome[name] = self.get_component_rich_style(
                f"resource-tree--{name}", partial=name != "cursor"
            )
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._chrome.clear()  # focus changes the cursor and guides, and the widget's own background
        self._strips.clear()
        self._restyle()

    def _theme_changed(self) -> None:
        # The theme's variables reach this widget's styles only after a refresh.
        self.call_after_refresh(self._restyle)

    def _restyle(self) -> None:
        """Labels carry their styles: when the styles changed (theme, CSS reload), rebuild the labels."""
        self._chrome.clear()
        self._strips.clear()
        if not self._styles:
            return
        fresh = {
            name: self.get_component_rich_style(f"resource-tree--{name}", partial=True)
            for name in self._styles
        }
        if fresh == self._styles:
            self.refresh()
            return
        self._styles = fresh
        self._labels.clear()
        if self._model is not None:
            for key in list(self._open):
                self._refresh_details(key)
            self._heading_inputs = None  # same counts, new styles
            self._refresh_headings(self._model)
        self._rebuild_lines()

    # -- labels ------------------------------------------------------------------------------------------

    def _symbol(self, health: NodeHealth) -> Text:
        return Text(HEALTH_SYMBOLS[health], style=self._style(health))

    def _resource_label(self, node: ResourceNode, model: ResourceModel) -> Text:
        label = Text.assemble(self._symbol(node.health), " ", node.name)
        if node.namespace and node.namespace != "default":
            label.append(f" ({node.namespace})", style=self._style("muted"))
        status = self._short_status(node, model)
        if status:
            label.append(f"  {status}", style=self._style("muted"))
        return label

    @staticmethod
    def _short_status(node: ResourceNode, model: ResourceModel) -> str:
        if node.suspended or node.health == "suspended":
            return "suspended"
        if node.kind == VAULT_PATH:
            if node.health == "unknown":  # why it is unknown: "sealed", "unreachable" or "unknown"
                state = model.vault_summary().state
                return state if state != "ok" else "unknown"
            return "missing in Vault" if node.health == "missing" else node.message
        if node.health == "ready":
            if node.kind in FLUX_KINDS:
                return short_revision(node.revision)
            return "synced" if node.kind == EXTERNAL_SECRET else "valid"
        return _one_line(node.message)

    def _detail_rows(self, node: ResourceNode, model: ResourceModel) -> list[Detail]:
        muted = self._style("muted")
        rows: list[Detail] = []
        if node.kind == KUSTOMIZATION:
            applied = len(model.externalsecrets_applied_by(node.key))
            if applied:
                noun = "ExternalSecret" if applied == 1 else "ExternalSecrets"
                rows.append((Text(f"applies {applied} {noun}", style=muted), node.key))
        elif node.kind == EXTERNAL_SECRET:
            rows.append((Text.assemble(("secret: ", muted), node.target_secret), node.key))
            for path in node.vault_refs:
                exists = model.vault_ref_exists(node, path)
                health: NodeHealth = "unknown" if exists is None else "ready" if exists else "not-ready"
                word = {"ready": "exists", "not-ready": "missing", "unknown": "unknown"}[health]
                label = Text.assemble(
                    ("vault: ", muted), f"{node.vault_mount}/{path} ", self._symbol(health), f" {word}"
                )
                rows.append((label, vault_path_key(path) if exists is not None else node.key))
        elif node.kind == VAULT_PATH:
            for key_name in node.vault_keys:
                rows.append((Text.assemble(("· ", muted), key_name), node.key))
            readers = model.readers_of(node.name)
            if readers:
                names = ", ".join(f"{ns}/{name}" for _, ns, name in readers[:READERS_SHOWN])
                more = f", +{len(readers) - READERS_SHOWN} more" if len(readers) > READERS_SHOWN else ""
                rows.append((Text.assemble(("read by: ", muted), names + more), readers[0]))
        return rows

    def _counts_text(self, counts: dict[NodeHealth, int]) -> Text:
        text = Text()
        for health in HEALTHS:
            if counts.get(health):
                text.append("  ")
                text.append_text(self._symbol(health))
                text.append(f" {counts[health]}")
        return text

    def _refresh_headings(self, model: ResourceModel) -> set[str]:
        """Relabel the section and group rows; returns the ids of those whose label changed."""
        counts = model.summary_counts()
        # What the headings say, compared before building their labels: most batches change no count.
        inputs = (
            counts,
            [model.source_state(kind) for kind in GROUP_TITLES],
            model.vault_summary(),
            self._filter and [len(self._shown[kind]) for kind in TREE_KINDS],
        )
        if inputs == self._heading_inputs:
            return set()
        self._heading_inputs = inputs
        fresh: dict[str, Text] = {}
        for section_id, title, kinds in SECTIONS:
            label = Text(title, style=self._style("heading"))
            if section_id == "vault":
                label.append_text(self._vault_state_text(model))
                self._append_total(label, kinds, counts)
            total: dict[NodeHealth, int] = {health: 0 for health in HEALTHS}
            for kind in kinds:
                for health, count in counts[kind].items():
                    total[health] += count
            label.append_text(self._counts_text(total))
            fresh[section_id] = label
            for kind in kinds:
                if kind != VAULT_PATH:
                    fresh[kind] = self._group_label(kind, model, counts)
        changed = {key for key, label in fresh.items() if self._heading_labels.get(key) != label}
        self._heading_labels = fresh
        return changed

    def _vault_state_text(self, model: ResourceModel) -> Text:
        vault = model.vault_summary()
        text = Text(f" {vault.mount}/", style=self._style("muted"))
        if vault.state == "unknown":
            text.append(" — not listed", style=self._style("unknown"))
        elif vault.state != "ok":
            text.append(f" — {vault.state}", style=self._style("not-ready"))
        return text

    def _group_label(self, kind: str, model: ResourceModel, counts: dict[str, dict[NodeHealth, int]]) -> Text:
        label = Text(GROUP_TITLES[kind])
        self._append_total(label, (kind,), counts)
        state, _message = model.source_state(kind)
        if state != "ok":
            style = self._style("unknown" if state in ("loading", "missing") else "not-ready")
            label.append(f" — {SOURCE_STATE_TEXT.get(state, state)}", style=style)
        label.append_text(self._counts_text(counts[kind]))
        return label

    def _append_total(
        self, label: Text, kinds: Iterable[str], counts: dict[str, dict[NodeHealth, int]]
    ) -> None:
        """ " (12)", or " (3/12)" while a filter hides some rows."""
        kinds = tuple(kinds)
        total = sum(sum(counts[kind].values()) for kind in kinds)
        if self._filter:
            shown = sum(len(self._shown[kind]) for kind in kinds)
            label.append(f" ({shown}/{total})", style=self._style("muted"))
        else:
            label.append(f" ({total})", style=self._style("muted"))


def _kind_of(key: NodeKey | None) -> str | None:
    return key[0] if key is not None else None


def _has_details(node: ResourceNode, model: ResourceModel) -> bool:
    """Whether the row gets detail rows when opened (cheap: no labels built)."""
    if node.kind == KUSTOMIZATION:
        return model.applies_any(node.key)
    if node.kind == VAULT_PATH:
        return bool(node.vault_keys) or model.is_read(node.name)
    return node.kind == EXTERNAL_SECRET
