"""ConfirmScreen: y/enter/n/escape, a safe default for destructive actions, a typed word."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.widgets import Button, Input

from widgets.confirm import ConfirmScreen

COMMANDS = ("git push origin main", "kubectl delete namespace [bold]flux-system[/bold]")


class ConfirmApp(App[None]):
    def __init__(self, screen: ConfirmScreen) -> None:
        super().__init__()
        self.dialog = screen
        self.results: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.dialog, callback=self.results.append)


def screen_text(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(segment.text for strip in row for segment in strip) for row in update.strips)


def is_enabled(button: Button) -> bool:
    return not button.disabled  # a call, so mypy does not pin the value between asserts


def push_dialog(**options: object) -> ConfirmScreen:
    return ConfirmScreen("Push the deployments repo", "Commits the rendered manifests.", COMMANDS, **options)  # type: ignore[arg-type]


async def test_it_shows_the_title_description_and_exact_commands() -> None:
    app = ConfirmApp(push_dialog())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "Push the deployments repo" in text
        assert "Commits the rendered manifests." in text
        assert "$ git push origin main" in text
        assert "$ kubectl delete namespace [bold]flux-system[/bold]" in text  # shown as is, not as markup


async def test_y_confirms() -> None:
    app = ConfirmApp(push_dialog())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("y")
        assert app.results == [True]


async def test_enter_confirms_a_non_destructive_action() -> None:
    app = ConfirmApp(push_dialog())
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.dialog.query_one("#confirm-ok", Button).has_focus
        await pilot.press("enter")
        assert app.results == [True]


async def test_n_and_escape_cancel() -> None:
    for key in ("n", "escape"):
        app = ConfirmApp(push_dialog())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(key)
            assert app.results == [False], key


async def test_a_destructive_action_focuses_cancel_so_enter_cancels() -> None:
    app = ConfirmApp(push_dialog(destructive=True))
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.dialog.query_one("#confirm-cancel", Button).has_focus
        assert "⚠ Push the deployments repo" in screen_text(app)
        await pilot.press("enter")
        assert app.results == [False]


async def test_the_typed_word_enables_confirm() -> None:
    app = ConfirmApp(push_dialog(destructive=True, typed_confirmation="main"))
    async with app.run_test(size=(80, 24)) as pilot:
        confirm = app.dialog.query_one("#confirm-ok", Button)
        typed = app.dialog.query_one("#confirm-typed", Input)
        assert typed.has_focus and confirm.disabled
        assert "Type main to confirm:" in screen_text(app)

        await pilot.press("y")  # goes into the field: it does not confirm
        assert app.results == [] and typed.value == "y"
        await pilot.press("backspace", "m", "a", "i", "enter")  # "mai" is not the word
        assert app.results == [] and confirm.disabled
        await pilot.press("n")
        assert is_enabled(confirm)
        await pilot.press("enter")
        assert app.results == [True]


async def test_y_does_nothing_until_the_word_is_typed() -> None:
    app = ConfirmApp(push_dialog(typed_confirmation="main"))
    async with app.run_test(size=(80, 24)) as pilot:
        app.dialog.query_one("#confirm-ok", Button).focus()  # away from the field
        await pilot.press("y")
        await pilot.pause()
        assert app.results == []
        assert isinstance(app.screen, ConfirmScreen)
