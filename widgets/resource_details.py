"""The details panel for one tree node: status, conditions, links and recent Kubernetes events.

Renders plain data (a :class:`~phases.resources.ResourceModel` and event dicts the app fetched); calls no
client. Everything from the cluster is shown as literal text (never parsed as markup), long messages wrap,
and odd shapes (no conditions, unknown condition types, events missing fields, 10 KB messages) render
rather than raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from phases.resources import (
    EXTERNAL_SECRET,
    FLUX_KINDS,
    KUSTOMIZATION,
    VAULT_PATH,
    NodeHealth,
    NodeKey,
    ResourceModel,
    ResourceNode,
)
from widgets.resource_tree import HEALTH_SYMBOLS

EVENTS_SHOWN: Final = 10
PLACEHOLDER: Final = "Select a resource and press enter."
SUMMARY_WIDTH: Final = 160
HEALTH_WORDS: Final[dict[NodeHealth, str]] = {
    "ready": "ready",
    "not-ready": "not ready",
    "progressing": "progressing",
    "suspended": "suspended",
    "unknown": "unknown",
    "missing": "missing",
}
CONDITION_SYMBOLS: Final = {"True": "✔", "False": "✘"}  # anything else (Unknown, odd values): "?"


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _summary(message: str, width: int = SUMMARY_WIDTH) -> str:
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def describe_key(key: NodeKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _event_time(event: Mapping[str, Any]) -> str:
    metadata = event.get("metadata")
    created = metadata.get("creationTimestamp") if isinstance(metadata, Mapping) else None
    return _text(event.get("lastTimestamp") or event.get("eventTime") or created)


def _event_count(event: Mapping[str, Any]) -> int:
    series = event.get("series")
    count = event.get("count") or (series.get("count") if isinstance(series, Mapping) else None) or 1
    try:
        return int(count)
    except (TypeError, ValueError):
        return 1


class ResourceDetails(VerticalScroll):
    """A scrollable panel showing one node; call :meth:`show_node` (or :meth:`clear`)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "resource-details--ready",
        "resource-details--not-ready",
        "resource-details--progressing",
        "resource-details--suspended",
        "resource-details--unknown",
        "resource-details--missing",
        "resource-details--label",
        "resource-details--title",
    }
    DEFAULT_CSS = """
    ResourceDetails {
        padding: 0 1;
        & > .resource-details--ready { color: $success; }
        & > .resource-details--not-ready { color: $error; text-style: bold; }
        & > .resource-details--progressing { color: $warning; }
        & > .resource-details--suspended { color: $secondary; }
        & > .resource-details--unknown { color: $text-muted; }
        & > .resource-details--missing { color: $error; text-style: bold; }
        & > .resource-details--label { color: $text-muted; }
        & > .resource-details--title { text-style: bold; }
        & > #resource-details-body { width: 1fr; height: auto; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.key: NodeKey | None = None
        self._shown: tuple[ResourceModel, NodeKey, Sequence[Mapping[str, Any]]] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(PLACEHOLDER), id="resource-details-body")

    def on_mount(self) -> None:
        # Styles are baked into the rendered text: render again once a new theme reached them.
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self.call_after_refresh(self._render_again)

    def _render_again(self) -> None:
        if self._shown is not None:
            self.show_node(*self._shown)

    def clear(self) -> None:
        self.key = None
        self._shown = None
        self._body.update(Text(PLACEHOLDER))

    def show_node(
        self, model: ResourceModel, key: NodeKey | None, events: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Show ``key`` from ``model`` with its recent ``events`` (Kubernetes Event objects as dicts)."""
        if key is None:
            self.clear()
            return
        self.key = key
        self._shown = (model, key, events)
        node = model.get(key)
        if node is None:
            self._body.update(Text(f"{describe_key(key)} no longer exists."))
            return
        self._body.update(self.render_node(model, node, events))

    @property
    def _body(self) -> Static:
        return self.query_one("#resource-details-body", Static)

    # -- rendering (pure given the styles) ---------------------------------------------------------------

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"resource-details--{name}", partial=True)

    def _health(self, health: NodeHealth) -> Text:
        return Text(f"{HEALTH_SYMBOLS[health]} {HEALTH_WORDS[health]}", style=self._style(health))

    def render_node(
        self, model: ResourceModel, node: ResourceNode, events: Sequence[Mapping[str, Any]] = ()
    ) -> RenderableType:
        parts: list[RenderableType] = [Text(describe_key(node.key), style=self._style("title"))]
        facts = Table.grid(padding=(0, 1))
        facts.add_column(style=self._style("label"), no_wrap=True)
        facts.add_column(ratio=1, overflow="fold")
        health = self._health(node.health)
        if node.message:
            # The conditions below carry the full text; the summary line stays short then.
            repeated = any(message == node.message for *_, message in node.conditions)
            health.append(f" — {_summary(node.message) if repeated else node.message}")
        facts.add_row("health", health)
        for label, value in self._fields(node):
            if value:
                facts.add_row(label, Text(value))
        parts.append(facts)
        parts.extend(self._links(model, node))
        if node.conditions:
            parts.append(self._conditions(node))
        elif node.kind != VAULT_PATH:
            parts.append(Text("no conditions reported", style=self._style("label")))
        if events:
            parts.append(self._events(events))
        return Group(*parts)

    @staticmethod
    def _fields(node: ResourceNode) -> list[tuple[str, str]]:
        if node.kind == VAULT_PATH:
            return [("mount", f"{node.vault_mount}/"), ("keys", ", ".join(node.vault_keys) or "—")]
        fields = [
            ("revision", node.revision),
            ("reconciled", node.last_reconcile),
            ("suspended", ("yes" if node.suspended else "no") if node.kind in FLUX_KINDS else ""),
            ("source", describe_key(node.source_ref) if node.source_ref else ""),
            ("applied by", describe_key(node.applied_by) if node.applied_by else ""),
        ]
        if node.kind == EXTERNAL_SECRET:
            fields += [
                ("target", f"Secret {node.namespace}/{node.target_secret}"),
                ("refreshed", node.refresh_time),
            ]
        return fields

    def _links(self, model: ResourceModel, node: ResourceNode) -> list[RenderableType]:
        lines: list[Text] = []
        if node.kind == KUSTOMIZATION:
            for key in model.externalsecrets_applied_by(node.key):
                linked = model.get(key)
                symbol = self._symbol(linked.health if linked else "unknown")
                lines.append(Text.assemble("applies ", symbol, f" {describe_key(key)}"))
        elif node.kind == EXTERNAL_SECRET:
            for path in node.vault_refs:
                exists = model.vault_ref_exists(node, path)
                if exists is None:
                    state = Text.assemble(self._symbol("unknown"), " unknown (Vault not listed)")
                elif exists:
                    state = Text.assemble(self._symbol("ready"), " exists")
                else:
                    state = Text.assemble(self._symbol("not-ready"), " missing")
                lines.append(Text.assemble(f"vault {node.vault_mount}/{path} ", state))
        elif node.kind == VAULT_PATH:
            readers = model.readers_of(node.name)
            for key in readers:
                linked = model.get(key)
                symbol = self._symbol(linked.health if linked else "unknown")
                lines.append(Text.assemble("read by ", symbol, f" {describe_key(key)}"))
            if not readers:
                lines.append(Text("read by no ExternalSecret", style=self._style("label")))
        if not lines:
            return []
        return [Text("links", style=self._style("title")), *lines]

    def _symbol(self, health: NodeHealth) -> Text:
        return Text(HEALTH_SYMBOLS[health], style=self._style(health))

    def _conditions(self, node: ResourceNode) -> RenderableType:
        # One block per condition, message on its own indented lines: reads at 40 columns as well as 120.
        blocks: list[RenderableType] = [Text("conditions", style=self._style("title"))]
        for condition_type, status, reason, message in node.conditions:
            health: NodeHealth = (
                "ready" if status == "True" else "not-ready" if status == "False" else "unknown"
            )
            symbol = CONDITION_SYMBOLS.get(status, "?")
            line = Text.assemble((f"{symbol} ", self._style(health)), condition_type or "?", f"  {status}")
            if reason:
                line.append(f"  {reason}", style=self._style("label"))
            blocks.append(line)
            if message:
                blocks.append(Padding(Text(message), (0, 0, 0, 2)))
        return Group(*blocks)

    def _events(self, events: Sequence[Mapping[str, Any]]) -> RenderableType:
        blocks: list[RenderableType] = [Text("events", style=self._style("title"))]
        recent = sorted((e for e in events if isinstance(e, Mapping)), key=_event_time, reverse=True)
        for event in recent[:EVENTS_SHOWN]:
            warning = _text(event.get("type")) == "Warning"
            reason = _text(event.get("reason")) or "?"
            line = Text.assemble(
                (_event_time(event) or "—", self._style("label")),
                "  ",
                (f"✘ {reason}", self._style("not-ready")) if warning else reason,
            )
            count = _event_count(event)
            if count > 1:
                line.append(f"  ×{count}", style=self._style("label"))  # noqa: RUF001  # a times sign
            blocks.append(line)
            message = _text(event.get("message"))
            if message:
                blocks.append(Padding(Text(message), (0, 0, 0, 2)))
        return Group(*blocks)
