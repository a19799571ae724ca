"""LogPane: batched writes, tags, sanitizing, the tag filter, search and save."""

from __future__ import annotations

import random
from typing import Any

from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.widgets import Input

from widgets.log_pane import MAX_LINE_LENGTH, PREFIX_WIDTH, LogPane, sanitize_line, sanitize_lines


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


def test_a_batch_is_sanitized_as_each_of_its_lines_would_be() -> None:
    clean = [f"INFO object={i:05d} status=applied" for i in range(500)]
    assert sanitize_lines(clean) == (clean, len(clean[0]))  # the common case, checked per batch
    hostile = [
        *clean[:3],
        "\x1b[2J\x1b[31mred\x1b[0m",
        "a\tb",
        "nul\x00 del\x7f cr\r",
        "line\nbreak",
        "wide 漢字 ✔",
        "bidi \u202e \x85",
        "x" * (1024 * 1024),  # a megabyte line
        *clean[3:6],
    ]
    safe, width = sanitize_lines(hostile)
    assert list(safe) == [sanitize_line(line) for line in hostile]
    assert width == max(cell_len(line) for line in safe)
    assert sanitize_lines(["plain", "漢字漢字漢字"])[1] == 12  # wide characters take two cells
    # One bad line is enough to sanitize the batch: the check covers every line, not a sample.
    for bad in ("\x1b]0;title\x07", "\x07", "\t", "\x7f", "\x9b", "x" * (MAX_LINE_LENGTH + 1)):
        assert list(sanitize_lines([*clean, bad])[0]) == [*clean, sanitize_line(bad)]


def test_random_hostile_batches_match_line_by_line_sanitizing_and_cell_widths() -> None:
    alphabet = (
        "abc xyz09[];=\x1b\x07\t\r\x00\x7f\x85\u2028\u202e\u2066✔│漢字é\u0301\u200b\U0001f600\ufe0f\u200d"
    )
    rng = random.Random(6)
    for _ in range(300):
        batch = ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(rng.randint(1, 12))]
        safe, width = sanitize_lines(batch, limit=30)
        assert list(safe) == [sanitize_line(line, limit=30) for line in batch], batch
        assert width == max(cell_len(line) for line in safe), batch


async def test_lines_are_written_in_one_batch_with_tags_and_stream_markers() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        log = pane.log_widget
        calls: list[int] = []
        original = log.write_display_lines

        def counting(lines: list[str], width: int) -> None:
            calls.append(len(lines))
            original(lines, width)

        log.write_display_lines = counting  # type: ignore[method-assign]
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


async def test_max_lines_holds_across_many_batches_and_the_filter() -> None:
    app = LogApp(max_lines=100)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        for batch in range(30):  # 30 batches of 7 lines, two tags interleaved
            tag = "1/k3s" if batch % 2 else "2/flux"
            pane.add_lines(tag, "stdout", [f"{tag} {batch}-{i}" for i in range(7)])
        pane.flush()
        await pilot.pause()
        expected = [f"{'1/k3s' if b % 2 else '2/flux'} {b}-{i}" for b in range(30) for i in range(7)][-100:]
        assert [line[PREFIX_WIDTH:] for line in pane.shown_lines] == expected
        assert title(pane) == "Log · all steps · 100 lines"
        k3s = [line for line in expected if line.startswith("1/k3s")]
        assert [line[PREFIX_WIDTH:] for line in pane.lines_for("1/k3s", limit=1000)] == k3s
        assert [line[PREFIX_WIDTH:] for line in pane.lines_for("1/k3s", limit=3)] == k3s[-3:]

        pane.set_filter("1/k3s")
        assert [line[PREFIX_WIDTH:] for line in pane.shown_lines] == k3s
        assert title(pane) == f"Log · 1/k3s · {len(k3s)}/100 lines"
        pane.add_lines("1/k3s", "stdout", [f"late {i}" for i in range(150)])  # more than max_lines at once
        pane.flush()
        assert [line[PREFIX_WIDTH:] for line in pane.shown_lines] == [f"late {i}" for i in range(50, 150)]
        assert title(pane) == "Log · 1/k3s · 100/100 lines"


async def test_hostile_lines_inside_a_flood_are_sanitized_and_wide_ones_measured() -> None:
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(LogPane)
        lines = [f"line {i}" for i in range(2000)]
        lines[1500] = "\x1b]52;c;Y2xpcGJvYXJk\x07steal \x1b[1A" + "漢字" * 22  # OSC 52, cursor up, wide
        lines[1501] = "y" * (2 * 1024 * 1024)
        pane.add_lines("3/apps", "stderr", lines)
        pane.flush()
        await pilot.pause()
        shown = pane.shown_lines
        assert shown[1500] == "3/apps     ! steal " + "漢字" * 22
        assert shown[1501].endswith(f"… [{2 * 1024 * 1024 - MAX_LINE_LENGTH:,} more characters cut]")
        assert shown[1999] == "3/apps     ! line 1999"
        log = pane.log_widget
        assert log.virtual_size.width == max(cell_len(line) for line in shown)  # wide characters count twice
        assert "\x1b" not in screen_text(app)


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
