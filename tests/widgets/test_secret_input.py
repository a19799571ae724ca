"""SecretInput: bytes in a buffer, bullets on screen, no str copy, no clipboard."""

from __future__ import annotations

import re
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding

from widgets.secret_input import INITIAL_CAPACITY, SecretInput

TYPED = "hunter2x"


class SecretApp(App[None]):
    # A host app with a plain "q" binding: typing q into the field must not quit.
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[SecretInput.Changed] = []
        self.submitted: list[SecretInput.Submitted] = []

    def compose(self) -> ComposeResult:
        yield SecretInput("github-token", id="field")

    def on_mount(self) -> None:
        self.query_one(SecretInput).focus()

    def on_secret_input_changed(self, message: SecretInput.Changed) -> None:
        self.changes.append(message)

    def on_secret_input_submitted(self, message: SecretInput.Submitted) -> None:
        self.submitted.append(message)


def screen_text(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(segment.text for strip in row for segment in strip) for row in update.strips)


def strings_in(value: Any, depth: int = 0) -> list[str]:
    """Every str reachable from ``value`` through containers and object attributes (a few levels)."""
    if isinstance(value, str):
        return [value]
    if depth > 3:
        return []
    found: list[str] = []
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif hasattr(value, "__dict__") and depth < 2:
        items = list(vars(value).values())
    else:
        items = []
    for item in items:
        found.extend(strings_in(item, depth + 1))
    return found


def taken_bytes(field: SecretInput) -> bytes:
    value = field.take()
    with value.exposed() as view:
        data = bytes(view)
    value.wipe()
    return data


async def test_typing_fills_the_buffer_and_take_hands_it_over() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press("a", "b", "c")
        assert field.length == 3
        value = field.take()
        assert value.name == "github-token"
        with value.exposed() as view:
            assert bytes(view) == b"abc"
        assert field.length == 0  # taking resets the field
        assert taken_bytes(field) == b""


async def test_backspace_removes_whole_characters_and_ctrl_u_clears() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press("a", "é")
        # The pilot cannot type "€" (its key name has no character); a terminal sends this event.
        field.post_message(events.Key("euro_sign", "€"))
        await pilot.pause()
        assert field.length == 3
        await pilot.press("backspace")
        assert field.length == 2
        assert taken_bytes(field) == "aé".encode()

        await pilot.press("x", "y", "ctrl+u")
        assert field.length == 0
        assert taken_bytes(field) == b""
        assert [change.length for change in app.changes][-3:] == [1, 2, 0]


async def test_typed_characters_never_trigger_app_bindings() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q", "space", "Q")
        assert app.is_running
        assert taken_bytes(app.query_one(SecretInput)) == b"q Q"


async def test_paste_appends_printable_characters_and_drops_the_event_text() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press("a")
        paste = events.Paste("ghp_tok€n\n")
        field.post_message(paste)
        await pilot.pause()
        assert paste.text == ""
        assert field.length == 10
        assert taken_bytes(field) == "aghp_tok€n".encode()


async def test_a_long_paste_grows_the_buffer_intact() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        pasted = "k" * (INITIAL_CAPACITY * 3 + 7)
        field.post_message(events.Paste(pasted))
        await pilot.pause()
        assert field.length == len(pasted)
        # Too many for the field: bullets, then how many more, adding up to the length.
        shown = re.search(r"(•+) \+(\d+)", screen_text(app))
        assert shown is not None
        assert len(shown.group(1)) + int(shown.group(2)) == len(pasted)
        assert taken_bytes(field) == pasted.encode()


async def test_the_screen_shows_bullets_and_never_the_value() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press(*TYPED)
        await pilot.pause()
        text = screen_text(app)
        assert "•" * len(TYPED) in text
        assert TYPED not in text
        assert TYPED not in app.export_screenshot()
        field.blur()
        await pilot.pause()
        assert "•" * len(TYPED) in screen_text(app)


async def test_no_attribute_or_message_holds_the_value_as_a_str() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press(*TYPED, "enter")
        await pilot.pause()
        assert not hasattr(field, "value")
        held = strings_in(vars(field))
        assert held, "the scan must see the widget's own strings (e.g. its name)"
        assert "github-token" in held
        assert not [text for text in held if TYPED[:3] in text]
        for message in [*app.changes, *app.submitted]:
            assert not [text for text in strings_in(vars(message)) if TYPED[:3] in text]
        assert app.submitted and app.submitted[0].secret_input is field
        assert taken_bytes(field) == TYPED.encode()


async def test_copy_and_cut_never_reach_the_clipboard() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        notices: list[str] = []
        app.notify = lambda message, **_: notices.append(message)  # type: ignore[method-assign]
        await pilot.press(*TYPED, "ctrl+c", "ctrl+x")
        assert app.clipboard == ""
        assert field.length == len(TYPED)  # cut removed nothing either
        # The field's own binding answered both keys (not the screen's copy or the app's quit hint).
        assert notices == ["Copy and cut are disabled in secret fields."] * 2


async def test_wipe_zeroes_the_buffer() -> None:
    app = SecretApp()
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.query_one(SecretInput)
        await pilot.press(*TYPED)
        field.wipe()
        assert field.length == 0
        assert not any(field._buffer)
        assert taken_bytes(field) == b""
