"""LogPane: batched writes, tags, sanitizing, the tag filter, search and save."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Input

from widgets.log_pane import MAX_LINE_LENGTH, LogPane, sanitize_line


class LogApp(App[None]):
    def __init__(self, max_lines: int = 10_000) -> None:
        super().__init__()
        self.max_lines = max_lines
        self.saved: list[LogPane.SaveRequested] = []

    def compose(self) -> ComposeResult:
        yield LogPane(max_lines=self.max_lines)

    def on_log_pane_save_requested(self, message: LogPane.SaveRequested) -> None:
        self.saved.append(message)


def title(pane: LogPane) -> str:
    return str(pane.border_title)


def highlighted(app: App[Any]) -> list[str]:
    """The text of every reversed (search-highlighted) segment on screen, scrollbars left out."""
    update = app.screen._compositor.render_full_update(simplify=True)
    return [
        segment.text
        for row in update.strips
        for strip in row
        for segment in strip
        if segment.style is not None and segment.style.reverse and any(ch.isalnum() for ch in segment.text)
    ]


def screen_text(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(segment.text for strip in row for segment in strip) for row in update.strips)


def test_sanitize_removes_escape_sequences_and_shows_control_characters() -> None:
    assert sanitize_line("\x1b[2J\x1b[31mred\x1b[0m text") == "red text"
    assert sanitize_line("50%\r100%") == "50%␍100%"
    assert sanitize_line("\x1b]0;pwned title\x07after") == "after"  # OSC (window title)
    assert sanitize_line("\x1b]52;c;Y2xpcGJvYXJk\x1b\\x") == "x"  # OSC 52 would write the clipboard
    assert sanitize_line("bell\x07 nul\x00 del\x7f") == "bell␇ nul␀ del␡"
    assert sanitize_line("lone \x1b") == "lone ␛"
    assert sanitize_line("a\u202eb\u2028c\x85") == "a\ufffdb\ufffdc\ufffd"  # bidi, separators, C1
    assert sanitize_line("a\tb") == "a       b"
    assert sanitize_line("ünïcode ✔ ok") == "ünïcode ✔ ok"


def test_sanitize_truncates_very_long_lines_with_a_marker() -> None:
    line = sanitize_line("x" * (MAX_LINE_LENGTH + 500))
    assert line.startswith("x" * MAX_LINE_LENGTH)
    assert line.endswith("… [500 more characters cut]")


async def test_lines_are_written_in_one_batch_with_tags_and_stream_markers() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        log = pane.log_widget
        calls: list[int] = []
        original = log.write_lines

        def counting(lines: Iterable[str], scroll_end: bool | None = None) -> object:
            batch = list(lines)
            calls.append(len(batch))
            return original(batch, scroll_end)

        log.write_lines = counting  # type: ignore[method-assign,assignment]
        for chunk in range(50):
            pane.add_lines("1/k3s", "stdout", [f"out {chunk}-{i}" for i in range(100)])
        pane.add_lines("1/k3s", "stderr", ["warning: something"])
        assert log.line_count == 0  # nothing is drawn line by line
        await pilot.pause(0.15)

        assert calls == [5001]
        assert log.line_count == 5001
        assert log.lines[0] == "1/k3s      │ out 0-0"
        assert log.lines[-1] == "1/k3s      ! warning: something"
        assert title(pane) == "Log · all steps · 5,001 lines"


async def test_child_output_cannot_restyle_or_move_the_screen() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.add_lines("2/flux", "stderr", ["\x1b[2J\x1b[31mred\x1b[0m", "progress 10%\rprogress 100%"])
        pane.flush()
        await pilot.pause()
        assert list(pane.log_widget.lines) == ["2/flux     ! red", "2/flux     ! progress 10%␍progress 100%"]
        assert "\x1b" not in screen_text(app)
        assert "progress 10%␍progress 100%" in screen_text(app)


async def test_max_lines_bounds_the_log_and_the_record() -> None:
    app = LogApp(max_lines=100)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.add_lines("1/k3s", "stdout", [f"line {i}" for i in range(250)])
        pane.flush()
        await pilot.pause()
        assert pane.log_widget.line_count == 100
        assert pane.log_widget.lines[0].endswith("line 150")
        assert len(pane.lines_for("1/k3s", limit=1000)) == 100


async def test_the_filter_shows_one_steps_lines_and_keeps_recording_the_others() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.add_lines("1/k3s", "stdout", ["k3s one", "k3s two"])
        pane.add_lines("2/flux", "stdout", ["flux one"])
        pane.flush()

        pane.set_filter("2/flux")
        assert [line.split("│ ")[1] for line in pane.shown_lines] == ["flux one"]
        assert title(pane) == "Log · 2/flux · 1/3 lines"

        pane.add_lines("1/k3s", "stdout", ["k3s three"])
        pane.add_lines("2/flux", "stdout", ["flux two"])
        pane.flush()
        assert [line.split("│ ")[1] for line in pane.shown_lines] == ["flux one", "flux two"]

        pane.set_filter(None)
        await pilot.pause()
        assert [line.split("│ ")[1] for line in pane.shown_lines] == [
            "k3s one",
            "k3s two",
            "flux one",
            "k3s three",
            "flux two",
        ]
        assert title(pane) == "Log · all steps · 5 lines"
        assert [line.split("│ ")[1] for line in pane.lines_for("1/k3s")] == [
            "k3s one",
            "k3s two",
            "k3s three",
        ]


async def test_search_from_the_keyboard_highlights_and_jumps_between_matches() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        lines = [f"line {i}" for i in range(300)]
        for index in (20, 150, 280):
            lines[index] = f"line {index} NEEDLE here"
        pane.add_lines("1/k3s", "stdout", lines)
        pane.flush()
        log = pane.log_widget
        log.focus()
        await pilot.press("home")  # a search starts from the top of the view
        await pilot.pause()

        await pilot.press("slash")
        search_input = pane.query_one("#log-search", Input)
        assert search_input.has_focus and search_input.display
        await pilot.press(*"needle", "enter")
        await pilot.pause()
        assert log.has_focus and not pane.has_class("-searching")
        assert pane.search_term == "needle"
        assert title(pane).endswith("/needle 1/3")
        assert "line 20 NEEDLE here" in screen_text(app)
        assert highlighted(app) == ["NEEDLE"]  # only the match stands out, not the rest of the line

        await pilot.press("n")
        await pilot.pause()
        assert title(pane).endswith("/needle 2/3")
        assert "line 150 NEEDLE here" in screen_text(app)
        await pilot.press("n", "n")
        assert title(pane).endswith("/needle 1/3")  # wraps around
        await pilot.press("N")
        await pilot.pause()
        assert title(pane).endswith("/needle 3/3")
        assert "line 280 NEEDLE here" in screen_text(app)

        await pilot.press("escape")
        assert pane.search_term == ""
        assert "needle" not in title(pane)


async def test_a_search_without_matches_says_so_and_ignores_the_tags() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.add_lines("1/gamma", "stdout", ["alpha", "beta"])
        assert pane.search("gamma") == 0
        await pilot.pause()
        assert title(pane).endswith("/gamma no match")


async def test_escape_closes_the_search_input_without_searching() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.log_widget.focus()
        await pilot.press("slash", "x", "escape")
        assert not pane.has_class("-searching")
        assert pane.log_widget.has_focus
        assert pane.search_term == ""


async def test_save_posts_the_shown_lines() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.add_lines("1/k3s", "stdout", ["one", "two"])
        pane.add_lines("2/flux", "engine", ["$ flux install"])
        pane.log_widget.focus()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert len(app.saved) == 1
        assert app.saved[0].text_lines == (
            "1/k3s      │ one",
            "1/k3s      │ two",
            "2/flux     » $ flux install",
        )
        assert app.saved[0].tag_filter is None


async def test_escape_without_a_search_is_left_to_the_app() -> None:
    class EscapeApp(LogApp):
        BINDINGS = [("escape", "note_escape", "Back")]
        escapes = 0

        def action_note_escape(self) -> None:
            self.escapes += 1

    app = EscapeApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        pane.focus()
        assert pane.log_widget.has_focus
        await pilot.press("escape")
        assert app.escapes == 1
        pane.add_lines("1/k3s", "stdout", ["match me"])
        pane.search("match")
        await pilot.press("escape")  # now it clears the search instead
        assert app.escapes == 1 and pane.search_term == ""
