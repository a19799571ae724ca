"""HelpScreen: grouped keys, unavailable ones marked in words, closes on escape/q/?."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.containers import VerticalScroll

from widgets.help_screen import UNAVAILABLE, HelpEntry, HelpScreen

ENTRIES: list[HelpEntry | tuple[str, str, str]] = [
    ("?", "This help", "App"),
    ("ctrl+q", "Quit", "App"),
    HelpEntry("r", "Retry the failed step", "Run", enabled=False),
    ("enter", "Step details", "Timeline"),
    ("/", "Search the log", "Log"),
]


class HelpApp(App[None]):
    def __init__(self, entries: list[HelpEntry | tuple[str, str, str]]) -> None:
        super().__init__()
        self.entries = entries
        self.closed = 0

    def on_mount(self) -> None:
        self.push_screen(HelpScreen(self.entries), callback=lambda _: self.count_close())

    def count_close(self) -> None:
        self.closed += 1


def screen_lines(app: App[Any]) -> list[str]:
    update = app.screen._compositor.render_full_update(simplify=True)
    return ["".join(segment.text for strip in row for segment in strip) for row in update.strips]


def line_with(app: App[Any], needle: str) -> str:
    return next(line for line in screen_lines(app) if needle in line)


async def test_it_lists_every_key_by_group_and_marks_unavailable_ones() -> None:
    app = HelpApp(ENTRIES)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        lines = screen_lines(app)
        headings = [
            line.strip(" █") for line in lines if line.strip(" █") in {"App", "Run", "Timeline", "Log"}
        ]
        assert headings == ["App", "Run", "Timeline", "Log"]  # in the order given
        assert "ctrl+q  Quit" in line_with(app, "Quit")
        assert f"Retry the failed step {UNAVAILABLE}" in line_with(app, "Retry")
        assert UNAVAILABLE not in line_with(app, "Step details")


async def test_escape_q_and_question_mark_close_it() -> None:
    for key in ("escape", "q", "question_mark"):
        app = HelpApp(ENTRIES)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(key)
            assert app.closed == 1, key
            assert not isinstance(app.screen, HelpScreen)


async def test_a_long_list_scrolls_inside_an_80x24_dialog() -> None:
    entries: list[HelpEntry | tuple[str, str, str]] = [
        (f"f{n}", f"Action {n}", f"Group {n // 10}") for n in range(60)
    ]
    app = HelpApp(entries)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert app.screen.query_one("#help-dialog").region.bottom <= 24
        assert body.has_focus and body.max_scroll_y > 0
        assert "escape/q/?: close" in "\n".join(screen_lines(app))
        await pilot.press("end")
        await pilot.pause()
        assert "Action 59" in "\n".join(screen_lines(app))
