"""The run's output: every step's lines, tagged, sanitized and written in batches.

Textual's ``Log.write_lines`` starts a worker per call, so lines are buffered and
flushed together every ~50 ms. Child output is untrusted: escape sequences are
dropped and other control characters made visible before anything is drawn.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import ClassVar, Final, Self

from rich.cells import cell_len
from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Log

DEFAULT_MAX_LINES: Final = 10_000
MAX_LINE_LENGTH: Final = 2_000
FLUSH_INTERVAL: Final = 0.05  # seconds
TAG_WIDTH: Final = 10
PREFIX_WIDTH: Final = TAG_WIDTH + 3  # "tag" + " " + stream marker + " "
STREAM_MARKERS: Final = {"stdout": "│", "stderr": "!", "engine": "»"}

# CSI (colours, cursor moves, erase), OSC (titles, hyperlinks, clipboard writes) and the
# other two-byte escapes: removed, since they only ever restyle or move the terminal.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, ended by BEL or ST (or the end of the line)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # two-byte escapes such as ESC c (reset) or ESC 7
)
# What is left that a terminal would act on: C0 and C1 controls, DEL, line/paragraph separators
# (Log would split the line on them) and bidi overrides (they reorder what the user reads).
_UNSAFE_CHARACTER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control picture: \r -> ␍, ESC -> ␛
    if code == 0x7F:
        return "␡"
    return "\ufffd"


def sanitize_line(line: str, limit: int = MAX_LINE_LENGTH) -> str:
    """One safe display line: no escape sequences, control characters made visible, at most ``limit``."""
    if "\x1b" in line:
        line = _ESCAPE_SEQUENCE.sub("", line)
    if "\t" in line:
        line = line.expandtabs(8)
    if _UNSAFE_CHARACTER.search(line):
        line = _UNSAFE_CHARACTER.sub(_visible, line)
    if len(line) > limit:
        line = f"{line[:limit]}… [{len(line) - limit:,} more characters cut]"
    return line


def format_tag(tag: str, width: int = TAG_WIDTH) -> str:
    if len(tag) > width:
        return tag[: width - 1] + "…"
    return tag.ljust(width)


class _LineHighlighter(Highlighter):
    """Dims the tag, marks stderr and highlights search matches, at render time (visible lines only)."""

    def __init__(self) -> None:
        self.tag_width = TAG_WIDTH
        self.term = ""
        self.tag_style = Style(dim=True)
        self.stderr_style = Style(color="red", bold=True)
        self.match_style = Style(reverse=True, bold=True)

    def highlight(self, text: Text) -> None:
        plain = text.plain
        text.stylize(self.tag_style, 0, self.tag_width)
        marker = self.tag_width + 1
        if plain[marker : marker + 1] == STREAM_MARKERS["stderr"]:
            text.stylize(self.stderr_style, marker, marker + 1)
        if self.term:
            lowered = plain.lower()
            start = lowered.find(self.term, PREFIX_WIDTH)  # the text only: every line's tag would match
            while start != -1:
                text.stylize(self.match_style, start, start + len(self.term))
                start = lowered.find(self.term, start + len(self.term))


class OutputLog(Log):
    """A Log that underlines the line of the current search match."""

    current_match: int | None = None

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]  # inline, not a worker
        # Log measures widths in a thread worker per write, and the worker's description repr()s the
        # whole batch: measured at 90 MB RSS growth over 1M lines. Measuring here is cheaper.
        if lines:
            widest = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.current_match is not None and round(self.scroll_y) + y == self.current_match:
            strip = strip.apply_style(Style(underline=True, bold=True))
        return strip


class LogPane(Vertical):
    """Tagged output of every step, with a tag filter, search and save."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "start_search", "Search", id="log.search"),
        Binding("n", "next_match", "Next match", show=False, id="log.next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="log.previous_match"),
        Binding("ctrl+s", "save", "Save log", id="log.save"),
        Binding("escape", "clear_search", "Clear search", show=False, id="log.clear_search"),
    ]

    DEFAULT_CSS = """
    LogPane {
        height: 1fr;
        border: round $border-blurred;
        border-title-color: $text-muted;
        &:focus-within { border: round $border; border-title-color: $text; }
        & > Log { height: 1fr; border: none; }
        & > #log-search { display: none; height: 1; border: none; padding: 0 1; }
        &.-searching > #log-search { display: block; }
    }
    """

    class SaveRequested(Message):
        """The user asked to save the lines shown (the app writes the file)."""

        def __init__(self, text_lines: tuple[str, ...], tag_filter: str | None) -> None:
            super().__init__()
            self.text_lines = text_lines
            self.tag_filter = tag_filter

    def __init__(
        self,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.max_lines = max_lines
        self._records: deque[tuple[str, str]] = deque(maxlen=max_lines)  # (tag, display line)
        self._pending: list[tuple[str, str]] = []
        self._flush_timer: Timer | None = None
        self._tag_filter: str | None = None
        self._highlighter = _LineHighlighter()
        self._matches: list[int] = []
        self._match_index: int | None = None
        self.flush_count = 0  # how many write_lines batches were made (for tests and benchmarks)

    def compose(self) -> ComposeResult:
        log = OutputLog(max_lines=self.max_lines, highlight=True)
        log.highlighter = self._highlighter
        yield log
        yield Input(placeholder="search (enter: find, escape: close)", id="log-search")

    def on_mount(self) -> None:
        self._update_title()

    def focus(self, scroll_visible: bool = True) -> Self:
        """Focus the log itself (the pane is only its frame)."""
        self.log_widget.focus(scroll_visible)
        return self

    @property
    def log_widget(self) -> OutputLog:
        return self.query_one(OutputLog)

    @property
    def tag_filter(self) -> str | None:
        return self._tag_filter

    @property
    def search_term(self) -> str:
        return self._highlighter.term

    @property
    def shown_lines(self) -> Sequence[str]:
        return self.log_widget.lines

    # -- adding output -----------------------------------------------------------------------

    def add_lines(self, tag: str, stream: str, lines: Sequence[str]) -> None:
        """Queue lines from one step's stream; they reach the screen in the next batch."""
        prefix = f"{format_tag(tag)} {STREAM_MARKERS.get(stream, STREAM_MARKERS['stdout'])} "
        self._pending.extend((tag, prefix + sanitize_line(line)) for line in lines)
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Write every queued line now, in one ``write_lines`` call."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._records.extend(pending)
        wanted = self._tag_filter
        shown = [line for tag, line in pending if wanted is None or tag == wanted]
        if shown:
            self.log_widget.write_lines(shown[-self.max_lines :])
            self.flush_count += 1
        self._update_title()

    def lines_for(self, tag: str, limit: int = 200) -> list[str]:
        """The last ``limit`` recorded lines of one tag (for the step details screen)."""
        self.flush()
        found: deque[str] = deque(maxlen=limit)
        found.extend(line for line_tag, line in self._records if line_tag == tag)
        return list(found)

    def clear(self) -> None:
        self._pending.clear()
        self._records.clear()
        self.log_widget.clear()
        self._forget_matches()
        self._update_title()

    def set_filter(self, tag: str | None) -> None:
        """Show only one tag's lines (None: all), re-rendered from the record."""
        self.flush()
        self._tag_filter = tag
        log = self.log_widget
        log.clear()
        lines = [line for line_tag, line in self._records if tag is None or line_tag == tag]
        if lines:
            log.write_lines(lines)
            self.flush_count += 1
        self._forget_matches()
        self._update_title()

    # -- search ------------------------------------------------------------------------------

    def search(self, term: str) -> int:
        """Highlight ``term`` (case-insensitive) and jump to its first match; returns the match count."""
        self.flush()
        self._highlighter.term = term.lower()
        self._find_matches()
        if self._matches:
            top = round(self.log_widget.scroll_y)
            after = [i for i, line in enumerate(self._matches) if line >= top]
            self._jump_to(after[0] if after else 0)
        self.log_widget.refresh()
        self._update_title()
        return len(self._matches)

    def action_start_search(self) -> None:
        self.add_class("-searching")
        search_input = self.query_one("#log-search", Input)
        search_input.value = self._highlighter.term
        search_input.focus()

    def action_next_match(self) -> None:
        self._step_match(+1)

    def action_previous_match(self) -> None:
        self._step_match(-1)

    def action_clear_search(self) -> None:
        self._highlighter.term = ""
        self._forget_matches()
        self.log_widget.refresh()
        self._update_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a search, escape and n/N stay free for the app's own bindings.
        if action in ("clear_search", "next_match", "previous_match"):
            return bool(self._highlighter.term)
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        self._close_search_input()
        self.search(event.value)

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.has_class("-searching"):
            event.stop()
            event.prevent_default()
            self._close_search_input()

    def _close_search_input(self) -> None:
        self.remove_class("-searching")
        self.log_widget.focus()

    def _find_matches(self) -> None:
        term = self._highlighter.term
        lines = self.log_widget.lines
        self._matches = (
            [i for i, line in enumerate(lines) if term in line[PREFIX_WIDTH:].lower()] if term else []
        )
        self._match_index = None
        self.log_widget.current_match = None

    def _step_match(self, direction: int) -> None:
        if not self._highlighter.term:
            return
        self.flush()
        previous_line = self._matches[self._match_index] if self._match_index is not None else None
        self._find_matches()  # lines may have arrived or been pruned since the last search
        if not self._matches:
            self._update_title()
            return
        if previous_line is None:
            index = 0 if direction > 0 else len(self._matches) - 1
        elif direction > 0:
            index = next((i for i, line in enumerate(self._matches) if line > previous_line), 0)
        else:
            before = [i for i, line in enumerate(self._matches) if line < previous_line]
            index = before[-1] if before else len(self._matches) - 1
        self._jump_to(index)
        self._update_title()

    def _jump_to(self, index: int) -> None:
        log = self.log_widget
        self._match_index = index
        line = self._matches[index]
        log.current_match = line
        log.auto_scroll = False  # stay on the match while output keeps coming
        log.scroll_to(y=max(line - log.scrollable_content_region.height // 2, 0), animate=False)
        log.refresh()

    def _forget_matches(self) -> None:
        self._matches = []
        self._match_index = None
        log = self.log_widget
        log.current_match = None
        log.auto_scroll = True

    # -- save and title ----------------------------------------------------------------------

    def action_save(self) -> None:
        self.flush()
        self.post_message(self.SaveRequested(tuple(self.log_widget.lines), self._tag_filter))

    def _update_title(self) -> None:
        shown = self.log_widget.line_count
        scope = self._tag_filter if self._tag_filter is not None else "all steps"
        if self._tag_filter is not None:
            count = f"{shown:,}/{len(self._records):,} lines"
        else:
            count = f"{shown:,} lines"
        title = f"Log · {scope} · {count}"
        term = self._highlighter.term
        if term:
            if self._matches and self._match_index is not None:
                title += f" · /{term} {self._match_index + 1}/{len(self._matches)}"
            else:
                title += f" · /{term} no match"
        self.border_title = title
