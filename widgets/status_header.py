"""The one-line header: where the app is pointed and in which mode."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar, Final, Literal, NamedTuple

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from widgets.log_pane import sanitize_line

APP_NAME: Final = "gitops-tui"
VaultState = Literal["unreachable", "sealed", "unsealed", "uninitialised", "unknown"]

# Symbol and colour class per state: the symbol and the word carry the meaning without colour.
VAULT_BADGES: Final[dict[str, tuple[str, str]]] = {
    "unsealed": ("✔", "ok"),
    "sealed": ("▲", "warning"),
    "uninitialised": ("○", "warning"),
    "unreachable": ("✘", "error"),
    "unknown": ("?", "muted"),
}
INSECURE_BADGE: Final = "⚠ VAULT TLS UNVERIFIED"  # vault.insecure_skip_tls_verify is on
MAX_FIELD: Final = 24  # cells for the context and the branch before they are shortened
SEPARATOR: Final = " │ "


class RepoRef(NamedTuple):
    """The deployments repository's branch and commit."""

    branch: str
    sha: str

    def short(self) -> str:
        return f"{_shorten(self.branch)}@{self.sha[:7]}"


class _Keep(Enum):
    KEEP = "keep"


KEEP: Final = _Keep.KEEP  # "leave this field as it is" in update_status


def _shorten(value: str, limit: int = MAX_FIELD) -> str:
    # Names come from kubeconfig and git: keep any control character from reaching the terminal.
    value = sanitize_line(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


class StatusHeader(Widget):
    """App name, READONLY/SANDBOX badges, cluster context, Vault state and the deployments repo."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "status-header--app",
        "status-header--label",
        "status-header--ok",
        "status-header--warning",
        "status-header--error",
        "status-header--muted",
        "status-header--readonly",
        "status-header--sandbox",
        "status-header--insecure",
    }

    DEFAULT_CSS = """
    StatusHeader {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text;
        & > .status-header--app { text-style: bold; color: $accent; }
        & > .status-header--label { color: $text-muted; }
        & > .status-header--ok { color: $success; }
        & > .status-header--warning { color: $warning; text-style: bold; }
        & > .status-header--error { color: $error; text-style: bold; }
        & > .status-header--muted { color: $text-muted; }
        & > .status-header--readonly { background: $warning; color: $text; text-style: bold; }
        & > .status-header--sandbox { background: $secondary; color: $text; text-style: bold; }
        & > .status-header--insecure { background: $error; color: $text; text-style: bold; }
    }
    """

    context: reactive[str | None] = reactive(None)
    vault: reactive[VaultState] = reactive("unknown")
    repo: reactive[RepoRef | None] = reactive(None)
    readonly: reactive[bool] = reactive(False)
    sandbox: reactive[bool] = reactive(False)
    vault_insecure: reactive[bool] = reactive(False)  # TLS verification of Vault turned off on purpose

    def update_status(
        self,
        *,
        context: str | _Keep | None = KEEP,
        vault: VaultState | _Keep = KEEP,
        repo: RepoRef | _Keep | None = KEEP,
        readonly: bool | _Keep = KEEP,
        sandbox: bool | _Keep = KEEP,
        vault_insecure: bool | _Keep = KEEP,
    ) -> None:
        """Change the given fields; the others stay as they are."""
        if context is not KEEP:
            self.context = context
        if vault is not KEEP:
            self.vault = vault
        if repo is not KEEP:
            self.repo = repo
        if readonly is not KEEP:
            self.readonly = readonly
        if sandbox is not KEEP:
            self.sandbox = sandbox
        if vault_insecure is not KEEP:
            self.vault_insecure = vault_insecure

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"status-header--{name}", partial=True)

    def render(self) -> Text:
        width = self.content_region.width
        # Drop the labels, then the app name, before the line has to be cut: the values matter more.
        for labels, app_name in ((True, True), (False, True), (False, False)):
            line = self._line(labels=labels, app_name=app_name)
            if line.cell_len <= width:
                return line
        return line

    def _line(self, *, labels: bool, app_name: bool) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        if app_name:
            line.append(f" {APP_NAME} ", self._style("app"))
        # The modes come first so that a narrow terminal never cuts them off (the TLS warning least of all).
        badges = (
            (self.vault_insecure, "insecure", INSECURE_BADGE),
            (self.sandbox, "sandbox", "SANDBOX"),
            (self.readonly, "readonly", "READONLY"),
        )
        for shown, style, text in badges:
            if shown:
                line.append(f" {text} ", self._style(style) + Style(reverse=self.app.no_color))
                line.append(" ")
        line.append(SEPARATOR.lstrip(), self._style("label"))
        if labels:
            line.append("ctx ", self._style("label"))
        if self.context:
            line.append(_shorten(self.context))
        else:
            line.append("no context", self._style("muted"))
        line.append(SEPARATOR, self._style("label"))
        symbol, colour = VAULT_BADGES[self.vault]
        line.append("vault ", self._style("label"))
        line.append(f"{symbol} {self.vault}", self._style(colour))
        line.append(SEPARATOR, self._style("label"))
        if labels:
            line.append("repo ", self._style("label"))
        if self.repo is not None:
            line.append(self.repo.short())
        else:
            line.append("no repo", self._style("muted"))
        return line
