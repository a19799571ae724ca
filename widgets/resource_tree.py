"""The day-2 resource tree: Flux, External Secrets and Vault in one keyboard-driven Tree.

It renders a :class:`~phases.resources.ResourceModel` and never talks to a cluster. The app feeds it the
keys each model change returned (``apply_changes``); only those rows are added, removed or relabelled, so
a burst of events on a 5,000-object tree costs work proportional to the burst, not to the tree.

Every row leads with a health symbol, so health reads without colour (``NO_COLOR``, monochrome SSH):
``✔`` ready, ``✘`` not ready, ``◐`` progressing, ``⏸`` suspended, ``?`` unknown, ``!`` missing Vault path.
Colours come from component classes, so a theme can restyle them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from rich.style import Style
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.events import Mount
from textual.message import Message
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

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

RowRole = Literal["section", "group", "resource", "detail"]


@dataclass(frozen=True)
class RowData:
    """What a tree row is. ``target`` is the node ``enter`` shows details for (None: nothing to show)."""

    role: RowRole
    target: NodeKey | None = None
    name: str = ""  # section id ("flux", "eso", "vault") or group kind


def _sort_key(key: NodeKey) -> tuple[str, str]:
    return (key[1], key[2])


def _row_sort_key(row: TreeNode[RowData]) -> tuple[str, str]:
    target = row.data.target if row.data is not None else None
    return _sort_key(target) if target is not None else ("", "")


def _one_line(text: str, width: int = STATUS_WIDTH) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def node_matches(node: ResourceNode, needle: str) -> bool:
    """The one filter rule (phases.resources.key_matches), applied to a node."""
    return key_matches(node.key, needle)


class ResourceTree(Tree[RowData]):
    """Flux, ESO and Vault state as a tree; ``enter`` posts :class:`ShowDetails` for the row's node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "show_details", "Details", show=True),
        Binding("slash", "open_filter", "Filter", show=True),
        Binding("escape", "clear_filter", "Clear filter", show=False),
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
    }
    DEFAULT_CSS = """
    ResourceTree {
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
        super().__init__(
            "resources", RowData("section"), name=name, id=id, classes=classes, disabled=disabled
        )
        self.show_root = False
        self.guide_depth = 2
        self._model: ResourceModel | None = None
        self._pending: set[NodeKey] | None = None  # changes that arrived before mount
        self._filter = ""
        self._styles: dict[str, Style] = {}
        self._filter_field = Input(placeholder="filter: kind, namespace or name", id="resource-filter")
        self._rows: dict[NodeKey, TreeNode[RowData]] = {}
        self._sections: dict[str, TreeNode[RowData]] = {}
        self._groups: dict[str, TreeNode[RowData]] = {}  # kind -> the row its nodes hang under
        for section_id, title, kinds in SECTIONS:
            section = self.root.add(title, RowData("section", name=section_id), expand=True)
            self._sections[section_id] = section
            for kind in kinds:
                if kind == VAULT_PATH:  # Vault paths hang directly under their section
                    self._groups[kind] = section
                else:
                    self._groups[kind] = section.add(
                        GROUP_TITLES[kind], RowData("group", name=kind), expand=True
                    )

    @property
    def is_container(self) -> bool:
        # A ScrollView lays out no children; ours has one, the filter input docked at the bottom.
        return True

    def _on_mount(self, event: Mount) -> None:
        self.mount(self._filter_field)
        self.watch(self.app, "theme", self._theme_changed, init=False)
        if self._model is not None:
            pending, self._pending = self._pending, None
            self.apply_changes(self._model, pending if pending is not None else self._model.keys())

    # -- public API --------------------------------------------------------------------------------------

    @property
    def selected_key(self) -> NodeKey | None:
        """The node under the cursor (for a detail row, the node it refers to)."""
        node = self.cursor_node
        return node.data.target if node is not None and node.data is not None else None

    @property
    def filter_text(self) -> str:
        return self._filter

    def apply_changes(self, model: ResourceModel, changed: Iterable[NodeKey]) -> None:
        """Bring the rows for ``changed`` keys in line with ``model``; other rows are left untouched."""
        self._model = model
        if not self.is_mounted:  # component styles need the DOM; catch up on mount
            self._pending = (self._pending or set()) | set(changed)
            return
        additions: dict[str, list[ResourceNode]] = {}
        for key in changed:
            node = model.get(key)
            row = self._rows.get(key)
            if node is None or key[0] not in self._groups or not node_matches(node, self._filter):
                if row is not None:
                    self._remove_row(key, row)
            elif row is None:
                additions.setdefault(node.kind, []).append(node)
            else:
                self._update_row(row, node, model)
        for kind, nodes in additions.items():
            self._add_rows(kind, nodes, model)
        self._refresh_headings(model)

    def load(self, model: ResourceModel) -> None:
        """Show ``model`` in full (first load, or a model replacing another one, e.g. a new context)."""
        self.apply_changes(model, set(self._rows) | model.keys())

    def set_filter(self, text: str) -> None:
        """Show only nodes whose kind, namespace or name contains ``text`` (case-insensitive)."""
        needle = text.strip().lower()
        if needle == self._filter:
            return
        self._filter = needle
        if self._model is not None and self.is_mounted:
            model = self._model
            for kind in self._groups:
                wanted = [node for node in model.nodes(kind) if node_matches(node, needle)]
                wanted_keys = {node.key for node in wanted}
                for key in [key for key in self._rows if key[0] == kind and key not in wanted_keys]:
                    self._remove_row(key, self._rows[key])
                self._add_rows(kind, [node for node in wanted if node.key not in self._rows], model)
            self._refresh_headings(model)
        self.post_message(self.FilterChanged(needle))

    # -- actions -----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":  # otherwise escape is left to the app (close a panel, go back)
            return bool(self._filter) or self._filter_field.has_class("-open")
        return True

    def action_show_details(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.ShowDetails(key))
        elif self.cursor_node is not None:  # a section or group: open or close it
            self.cursor_node.toggle()

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

    # -- rows --------------------------------------------------------------------------------------------

    def _add_rows(self, kind: str, nodes: Sequence[ResourceNode], model: ResourceModel) -> None:
        if not nodes:
            return
        parent = self._groups[kind]
        siblings = list(parent.children)  # a group (or the Vault section) holds only resource rows
        for node in sorted(nodes, key=lambda node: _sort_key(node.key)):
            index = bisect.bisect_left(siblings, _sort_key(node.key), key=_row_sort_key)
            row = parent.add(
                self._resource_label(node, model),
                RowData("resource", target=node.key),
                before=index if index < len(siblings) else None,  # an index: no O(n) lookup of a node
                expand=False,
                allow_expand=_has_details(node, model),
            )
            siblings.insert(index, row)
            self._rows[node.key] = row

    def _update_row(self, row: TreeNode[RowData], node: ResourceNode, model: ResourceModel) -> None:
        label = self._resource_label(node, model)
        if row.label != label:
            row.set_label(label)
        if row.is_expanded:
            self._sync_details(row, self._detail_rows(node, model))
        else:
            if row.children:  # built when it was last open; rebuilt fresh when opened again
                row.remove_children()
            row.allow_expand = _has_details(node, model)

    def _remove_row(self, key: NodeKey, row: TreeNode[RowData]) -> None:
        self._move_cursor_off([row], row.previous_sibling or row.parent)
        del self._rows[key]
        row.remove()

    def _move_cursor_off(self, rows: Sequence[TreeNode[RowData]], fallback: TreeNode[RowData] | None) -> None:
        """Move the cursor to ``fallback`` when it is on one of ``rows`` (or below them), about to go."""
        cursor = self.cursor_node
        if cursor is None or fallback is None:
            return
        doomed = set(map(id, rows))
        if id(cursor) in doomed or any(id(parent) in doomed for parent in _ancestors(cursor)):
            self.get_node_at_line(0)  # rows added in this pass have no line yet: lay the tree out first
            self.move_cursor(fallback, animate=False)

    @on(Tree.NodeExpanded)
    def _build_details(self, event: Tree.NodeExpanded[RowData]) -> None:
        # Detail rows are built when a row opens: thousands of closed rows then cost one label each.
        data = event.node.data
        if self._model is not None and data is not None and data.role == "resource" and data.target:
            node = self._model.get(data.target)
            if node is not None:
                self._sync_details(event.node, self._detail_rows(node, self._model))

    @on(Tree.NodeSelected)
    def _selected_by_mouse(self, event: Tree.NodeSelected[RowData]) -> None:
        # enter is bound to show_details; a click selects, and should show the details as well.
        if event.node.data is not None and event.node.data.target is not None:
            self.post_message(self.ShowDetails(event.node.data.target))

    def _sync_details(self, row: TreeNode[RowData], wanted: list[tuple[Text, NodeKey | None]]) -> None:
        children = list(row.children)
        targets = [child.data.target if child.data else None for child in children]
        if targets == [target for _, target in wanted]:
            for child, (label, _) in zip(children, wanted, strict=True):
                if child.label != label:
                    child.set_label(label)
        else:
            self._move_cursor_off(children, row)
            row.remove_children()
            for label, target in wanted:
                row.add_leaf(label, RowData("detail", target=target))
        row.allow_expand = bool(wanted)

    # -- labels ------------------------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        # Cached: resolving a component style walks the CSS, far too slow to do per row.
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"resource-tree--{name}", partial=True)
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._restyle()

    def _theme_changed(self) -> None:
        # The theme's variables reach this widget's styles only after a refresh.
        self.call_after_refresh(self._restyle)

    def _restyle(self) -> None:
        """Labels carry their styles: when the styles changed (theme, CSS reload), rebuild every label."""
        if not self._styles:
            return
        fresh = {
            name: self.get_component_rich_style(f"resource-tree--{name}", partial=True)
            for name in self._styles
        }
        if fresh == self._styles:
            return
        self._styles = fresh
        if self._model is not None:
            for key, row in list(self._rows.items()):
                node = self._model.get(key)
                if node is not None:
                    self._update_row(row, node, self._model)
            self._refresh_headings(self._model)

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

    def _detail_rows(self, node: ResourceNode, model: ResourceModel) -> list[tuple[Text, NodeKey | None]]:
        muted = self._style("muted")
        rows: list[tuple[Text, NodeKey | None]] = []
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

    def _refresh_headings(self, model: ResourceModel) -> None:
        counts = model.summary_counts()
        for section_id, title, kinds in SECTIONS:
            section = self._sections[section_id]
            label = Text(title, style=self._style("heading"))
            if section_id == "vault":
                label.append_text(self._vault_state_text(model))
                self._append_total(label, section, kinds, counts)
            total: dict[NodeHealth, int] = {health: 0 for health in HEALTHS}
            for kind in kinds:
                for health, count in counts[kind].items():
                    total[health] += count
            label.append_text(self._counts_text(total))
            _set_label(section, label)
            for kind in kinds:
                if kind != VAULT_PATH:
                    _set_label(self._groups[kind], self._group_label(kind, model, counts))

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
        self._append_total(label, self._groups[kind], (kind,), counts)
        state, _message = model.source_state(kind)
        if state != "ok":
            style = self._style("unknown" if state in ("loading", "missing") else "not-ready")
            label.append(f" — {SOURCE_STATE_TEXT.get(state, state)}", style=style)
        label.append_text(self._counts_text(counts[kind]))
        return label

    def _append_total(
        self,
        label: Text,
        parent: TreeNode[RowData],
        kinds: Sequence[str],
        counts: dict[str, dict[NodeHealth, int]],
    ) -> None:
        """ " (12)", or " (3/12)" while a filter hides some rows."""
        total = sum(sum(counts[kind].values()) for kind in kinds)
        if self._filter:
            shown = sum(
                1 for child in parent.children if child.data is not None and child.data.role == "resource"
            )
            label.append(f" ({shown}/{total})", style=self._style("muted"))
        else:
            label.append(f" ({total})", style=self._style("muted"))


def _has_details(node: ResourceNode, model: ResourceModel) -> bool:
    """Whether the row gets detail rows when opened (cheap: no labels built)."""
    if node.kind == KUSTOMIZATION:
        return bool(model.externalsecrets_applied_by(node.key))
    if node.kind == VAULT_PATH:
        return bool(node.vault_keys) or bool(model.readers_of(node.name))
    return node.kind == EXTERNAL_SECRET


def _set_label(row: TreeNode[RowData], label: Text) -> None:
    if row.label != label:  # relabelling repaints: only when the text or its styles changed
        row.set_label(label)


def _ancestors(row: TreeNode[RowData]) -> Iterable[TreeNode[RowData]]:
    parent = row.parent
    while parent is not None:
        yield parent
        parent = parent.parent
