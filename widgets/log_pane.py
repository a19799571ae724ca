"""The run's output: every step's lines, tagged, sanitized and written in batches.

A flooding child sends 100,000+ lines a second through the UI loop, so lines are kept in the
batches they arrive in (never one Python object per line beyond the string itself), checked
in a few C-level passes per batch, and written to the Log together every ~50 ms. Child output is
untrusted: escape sequences are dropped and other control characters made visible before
anything is drawn.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from itertools import chain
from typing import ClassVar, Final, Self

from rich.cells import cell_len
from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
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
# other two-byte escapes: removed, since they only ever restyle or move the terminal. None
# reaches past a "\n", so one pass can clean a whole batch joined by "\n".
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC, ended by BEL or ST (or the end of the line)
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"  # DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # two-byte escapes such as ESC c (reset) or ESC 7
)
# What is left that a terminal would act on: C0 and C1 controls, DEL, line/paragraph separators
# (Log would split the line on them) and bidi overrides (they reorder what the user reads).
_UNSAFE_RANGES: Final = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069"  # and "\n" in a line
_UNSAFE_CHARACTER = re.compile(f"[\n{_UNSAFE_RANGES}]")
_UNSAFE_IN_BATCH = re.compile(f"[{_UNSAFE_RANGES}]")  # "\n" separates a batch's lines
# Every character sanitizing changes inside a line (tab included: it is expanded).
_NEEDS_SANITIZING: Final = frozenset(
    chr(code)
    for first, last in ((0x00, 0x09), (0x0B, 0x1F), (0x7F, 0x9F), (0x2028, 0x202E), (0x2066, 0x2069))
    for code in range(first, last + 1)
)
# Printable ASCII and "\n": deleting these bytes from a batch leaves only what needs a closer look.
_PLAIN_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\n"


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control picture: \r -> ␍, ESC -> ␛
    if code == 0x7F:
        return "␡"
    return "\ufffd"


def _cut(line: str, limit: int) -> str:
    if len(line) > limit:
        return f"{line[:limit]}… [{len(line) - limit:,} more characters cut]"
    return line


def sanitize_line(line: str, limit: int = MAX_LINE_LENGTH) -> str:
    """One safe display line: no escape sequences, control characters made visible, at most ``limit``."""
    if "\x1b" in line:
        line = _ESCAPE_SEQUENCE.sub("", line)
    if "\t" in line:
        line = line.expandtabs(8)
    if _UNSAFE_CHARACTER.search(line):
        line = _UNSAFE_CHARACTER.sub(_visible, line)
    return _cut(line, limit)


def _unusual_characters(text: str) -> set[str]:
    """The distinct characters of ``text`` other than printable ASCII and "\n".

    Two C-level passes (~1 ns a character), where a regex or a per-character loop costs 3-60 ns;
    for the usual ASCII output the answer is empty.
    """
    rest = text.encode("utf-8", "surrogatepass").translate(None, _PLAIN_BYTES)
    return set(rest.decode("utf-8", "surrogatepass")) if rest else set()


def _widest(lines: Sequence[str], unusual: set[str]) -> int:
    """The widest of ``lines`` in cells, as rich's ``cell_len`` counts them.

    ``cell_len`` loops over the characters in Python when a line is not plain (~6 us a line); the
    width only differs from ``len`` by the few characters that are not one cell wide, so count those.
    """
    if "\u200d" in unusual or "\ufe0f" in unusual:  # emoji sequences: cell_len has rules for them
        return max(map(cell_len, lines))
    extra = {character: cell_len(character) - 1 for character in unusual}
    extra = {character: cells for character, cells in extra.items() if cells}
    if not extra:
        return max(map(len, lines))
    if len(extra) > 8:  # e.g. CJK text: counting each character per line would cost more
        return max(map(cell_len, lines))
    return max(len(line) + sum(line.count(c) * cells for c, cells in extra.items()) for line in lines)


def sanitize_lines(lines: Sequence[str], limit: int = MAX_LINE_LENGTH) -> tuple[Sequence[str], int]:
    """``sanitize_line`` over a batch, and the widest result in terminal cells.

    The batch is checked and cleaned as one text: a flood of 1,000-line batches costs ~0.2 us a line
    here instead of ~2-8 us line by line.
    """
    if not lines:
        return [], 0
    text = "\n".join(lines)
    if text.count("\n") != len(lines) - 1:  # a line with its own "\n" (not from a child: those are split)
        safe: Sequence[str] = [sanitize_line(line, limit) for line in lines]
        return safe, _widest(safe, _unusual_characters("\n".join(safe)))
    unusual = _unusual_characters(text)
    safe = lines
    if not unusual.isdisjoint(_NEEDS_SANITIZING):
        if "\x1b" in unusual:
            text = _ESCAPE_SEQUENCE.sub("", text)
        if "\t" in unusual:
            text = text.expandtabs(8)  # columns restart after each "\n", as line by line
        text = _UNSAFE_IN_BATCH.sub(_visible, text)
        safe = text.split("\n")
        unusual = _unusual_characters(text)
    if max(map(len, safe)) > limit:
        safe = [_cut(line, limit) for line in safe]
        unusual.add("…")
    return safe, _widest(safe, unusual)


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
    """A Log that takes ready-made display lines cheaply and underlines the current search match."""

    current_match: int | None = None

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]  # inline, not a worker
        # Log measures widths in a thread worker per write, and the worker's description repr()s the
        # whole batch: measured at 90 MB RSS growth over 1M lines. Measuring here is cheaper.
        if lines:
            widest = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)

    def write_display_lines(self, lines: list[str], width: int) -> None:
        """Append sanitized single lines whose widest is ``width`` cells (what ``LogPane`` writes).

        ``Log.write_lines`` splits and re-measures every line and discards the render cache line by
        line: ~1 us a line, the largest cost of a flood. These lines need none of that.
        """
        if not lines:
            return
        at_end = self.is_vertical_scroll_end
        self._lines.extend(lines)
        if self.max_lines is not None and len(self._lines) > self.max_lines:
            self._prune_max_lines()
        first_new = max(len(self._lines) - len(lines), 0)
        self._width = max(self._width, width)
        self.virtual_size = Size(self._width, len(self._lines))
        self.refresh_lines(first_new, len(self._lines) - first_new)
        if self.auto_scroll and at_end and not self.is_vertical_scrollbar_grabbed:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.refresh()

    def refresh_lines(self, y_start: int, line_count: int = 1) -> None:
        # Log's version discards the render cache one line number at a time (10,000 per flush);
        # the cache holds at most 1,024 lines, so walk those instead.
        end = y_start + line_count
        cache = self._render_line_cache
        for y in [y for y in cache.keys() if y_start <= y < end]:  # noqa: SIM118  # LRUCache has no __iter__
            cache.discard(y)
        ScrollView.refresh_lines(self, y_start, line_count)

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.current_match is not None and round(self.scroll_y) + y == self.current_match:
            strip = strip.apply_style(Style(underline=True, bold=True))
        return strip


_Batch = tuple[str, list[str], int]  # (tag, display lines, widest in cells)


def _last_lines(batches: Sequence[_Batch], tag: str | None, limit: int) -> tuple[list[str], int]:
    """The last ``limit`` lines of ``tag`` (None: every tag), oldest first, and the widest batch's width."""
    chosen: list[list[str]] = []
    count = width = 0
    for batch_tag, lines, batch_width in reversed(batches):
        if count >= limit:
            break
        if tag is not None and batch_tag != tag:
            continue
        if count + len(lines) > limit:
            lines = lines[len(lines) - (limit - count) :]
        chosen.append(lines)
        count += len(lines)
        width = max(width, batch_width)
    chosen.reverse()
    return list(chain.from_iterable(chosen)), width


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
        # Lines stay in the batches they came in: (tag, display lines, widest in cells).
        self._records: deque[_Batch] = deque()  # the last max_lines lines, for the filter and details
        self._record_count = 0
        self._pending: list[_Batch] = []
        self.pending_count = 0  # lines queued for the next flush
        self._flush_timer: Timer | None = None
        self._tag_filter: str | None = None
        self._highlighter = _LineHighlighter()
        self._matches: list[int] = []
        self._match_index: int | None = None
        self.flush_count = 0  # how many batches were written to the Log (for tests and benchmarks)

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
        if not lines:
            return
        prefix = f"{format_tag(tag)} {STREAM_MARKERS.get(stream, STREAM_MARKERS['stdout'])} "
        safe, width = sanitize_lines(lines)
        self._pending.append((tag, [prefix + line for line in safe], cell_len(prefix) + width))
        self.pending_count += len(safe)
        if self.pending_count >= self.max_lines:  # a screenful and more: holding it longer only costs memory
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Write every queued line now, in one write to the Log (only the last ``max_lines`` count)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.pending_count = 0
        self._record(pending)
        lines, width = _last_lines(pending, self._tag_filter, self.max_lines)
        if lines:
            self.log_widget.write_display_lines(lines, width)
            self.flush_count += 1
        self._update_title()

    def _record(self, batches: list[_Batch]) -> None:
        records = self._records
        records.extend(batches)
        self._record_count += sum(len(lines) for _, lines, _ in batches)
        excess = self._record_count - self.max_lines
        while excess > 0:  # drop the oldest lines: whole batches, then the front of one
            tag, lines, width = records[0]
            if len(lines) <= excess:
                records.popleft()
                dropped = len(lines)
            else:
                records[0] = (tag, lines[excess:], width)
                dropped = excess
            self._record_count -= dropped
            excess -= dropped

    def lines_for(self, tag: str, limit: int = 200) -> list[str]:
        """The last ``limit`` recorded lines of one tag (for the step details screen)."""
        self.flush()
        return _last_lines(self._records, tag, limit)[0]

    def clear(self) -> None:
        self._pending.clear()
        self.pending_count = 0
        self._records.clear()
        self._record_count = 0
        self.log_widget.clear()
        self._forget_matches()
        self._update_title()

    def set_filter(self, tag: str | None) -> None:
        """Show only one tag's lines (None: all), re-rendered from the record."""
        self.flush()
        self._tag_filter = tag
        log = self.log_widget
        log.clear()
        lines, width = _last_lines(self._records, tag, self.max_lines)
        if lines:
            log.write_display_lines(lines, width)
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
            count = f"{shown:,}/{self._record_count:,} lines"
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
