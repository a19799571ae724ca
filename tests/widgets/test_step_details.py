"""StepDetailsScreen: everything about one step, and retry only where it makes sense."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.widgets import Log

from phases.events import StepInfo
from widgets.step_details import StepDetailsScreen
from widgets.timeline import StepSnapshot

INFO = StepInfo(
    2,
    "flux-install",
    "Install Flux",
    ("flux install --namespace flux-system", "kubectl -n flux-system get pods"),
)
FAILED = StepSnapshot(INFO, "failed", 17.4, "connection refused to https://10.0.0.1:6443", None)
DONE = StepSnapshot(INFO, "done", 4.2, None, None)


class DetailsApp(App[None]):
    def __init__(self, snapshot: StepSnapshot, lines: list[str]) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.lines = lines
        self.results: list[str | None] = []

    def on_mount(self) -> None:
        self.push_screen(StepDetailsScreen(self.snapshot, self.lines), callback=self.results.append)


def screen_text(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(segment.text for strip in row for segment in strip) for row in update.strips)


async def test_a_failed_step_shows_state_reason_plan_and_output() -> None:
    lines = [f"2/flux     │ output {n}" for n in range(500)]
    app = DetailsApp(FAILED, lines)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "2/flux-install · Install Flux" in text
        assert "✘ failed after 17s" in text
        assert "Error: connection refused to https://10.0.0.1:6443" in text
        assert "$ flux install --namespace flux-system" in text
        assert "$ kubectl -n flux-system get pods" in text
        assert "Last output (200 lines)" in text
        log = app.screen.query_one("#details-log", Log)
        assert log.line_count == 200 and log.lines[-1].endswith("output 499")
        assert "output 499" in text  # scrolled to the latest line
        assert "Retry" in text


async def test_r_retries_a_failed_step() -> None:
    app = DetailsApp(FAILED, [])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        assert app.results == ["retry"]


async def test_enter_on_the_focused_retry_button_retries() -> None:
    app = DetailsApp(FAILED, [])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        assert app.results == ["retry"]


async def test_a_finished_step_cannot_be_retried_and_escape_closes() -> None:
    app = DetailsApp(DONE, [])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "✔ done in 4.2s" in text and "Retry" not in text and "(no output)" in text
        await pilot.press("r")
        assert app.results == []
        await pilot.press("escape")
        assert app.results == [None]
