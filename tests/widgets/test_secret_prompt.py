"""SecretPromptScreen: lists every secret, validates without closing, wipes on cancel."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.app import App
from textual.pilot import Pilot

from phases.engine import SecretRequest
from phases.secrets import SecretValue
from widgets.secret_input import SecretInput
from widgets.secret_prompt import SecretPromptScreen

REQUESTS = (
    SecretRequest("github-token", "GITHUB_TOKEN", "GitHub token for the deployments repo", "", provided=True),
    SecretRequest("cloudflare-token", "CLOUDFLARE_API_TOKEN", "Cloudflare DNS token", "", provided=False),
    SecretRequest(
        "admin-password", "ADMIN_PASSWORD", "Grafana admin password", r"[A-Za-z0-9]{8,}", provided=False
    ),
)

Result = dict[str, SecretValue] | None


class PromptApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.results: list[Result] = []

    def on_mount(self) -> None:
        self.push_screen(SecretPromptScreen(REQUESTS), callback=self.results.append)


def screen_text(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(segment.text for strip in row for segment in strip) for row in update.strips)


async def paste(pilot: Pilot[None], text: str) -> None:
    """Paste into the focused field (one event instead of a key press per character)."""
    focused = pilot.app.focused
    assert focused is not None
    focused.post_message(events.Paste(text))
    await pilot.pause()


def revealed(value: SecretValue) -> bytes:
    with value.exposed() as view:
        return bytes(view)


async def test_every_secret_is_listed_with_where_its_value_comes_from() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "github-token  from $GITHUB_TOKEN" in text
        assert "cloudflare-token  to be entered" in text
        assert "admin-password  to be entered" in text
        assert "Grafana admin password" in text
        fields = app.screen.query(SecretInput)
        assert [field.secret_name for field in fields] == ["cloudflare-token", "admin-password"]
        assert fields.first().has_focus


async def test_submitting_empty_fields_says_required_and_stays_open() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SecretPromptScreen)
        assert app.results == []
        assert screen_text(app).count("✘ required") == 2


async def test_a_value_that_does_not_match_its_pattern_is_refused_until_fixed() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c", "f", "enter")  # enter moves on to the next field
        admin = app.screen.query_one("#secret-admin-password", SecretInput)
        assert admin.has_focus
        await paste(pilot, "short")
        await pilot.press("enter")  # enter on the last field submits
        await pilot.pause()
        assert isinstance(app.screen, SecretPromptScreen)
        assert "✘ does not match the expected format for admin-password" in screen_text(app)
        assert "required" not in screen_text(app)

        await pilot.press("x")  # typing clears the complaint
        await pilot.pause()
        assert "expected format" not in screen_text(app)
        await pilot.press("ctrl+u")
        await paste(pilot, "LongEnough99")
        await pilot.press("enter")
        await pilot.pause()

        assert len(app.results) == 1
        result = app.results[0]
        assert result is not None
        assert set(result) == {"cloudflare-token", "admin-password"}  # the provided one is not asked for
        assert revealed(result["cloudflare-token"]) == b"cf"
        assert revealed(result["admin-password"]) == b"LongEnough99"
        assert result["admin-password"].name == "admin-password"


async def test_the_typed_values_never_appear_on_screen() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"s3cret", "tab")
        await paste(pilot, "pasted-secret")
        text = screen_text(app)
        assert "s3cret" not in text and "pasted-secret" not in text
        assert "•" * 6 in text and "•" * 13 in text


async def test_escape_wipes_every_buffer_and_stores_nothing() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        fields = list(app.screen.query(SecretInput))
        await pilot.press("a", "b", "tab")
        await paste(pilot, "pasted-two")
        assert [field.length for field in fields] == [2, 10]
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]
        assert not isinstance(app.screen, SecretPromptScreen)
        for field in fields:
            assert field.length == 0
            assert not any(field._buffer)


async def test_many_secrets_scroll_inside_an_80x24_dialog() -> None:
    many = tuple(
        SecretRequest(f"secret-{index}", f"SECRET_{index}", f"Secret number {index}", "", provided=False)
        for index in range(12)
    )

    class ManyApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(SecretPromptScreen(many))

    app = ManyApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dialog = app.screen.query_one("#prompt-dialog")
        assert dialog.region.bottom <= 24
        assert "escape: cancel" in screen_text(app)  # the hint and buttons stay on screen
        last = app.screen.query_one("#secret-secret-11", SecretInput)
        last.focus()
        await pilot.pause()
        assert app.screen.query_one("#prompt-fields").scroll_y > 0
        assert "Secret number 11" in screen_text(app)


async def test_the_save_button_submits_from_the_keyboard() -> None:
    app = PromptApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await paste(pilot, "cf")
        await pilot.press("tab")
        await paste(pilot, "LongEnough99")
        await pilot.press("tab", "tab")  # past Cancel, onto Save
        assert app.focused is not None and app.focused.id == "prompt-save"
        await pilot.press("enter")
        assert len(app.results) == 1 and app.results[0] is not None
        assert sorted(app.results[0]) == ["admin-password", "cloudflare-token"]
