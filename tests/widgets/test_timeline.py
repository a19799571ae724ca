"""PhaseTimeline: engine events in, symbols, counts, times and a keyboard selection out."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.strip import Strip

from phases.events import (
    Event,
    OutputLines,
    PhaseFinished,
    PhaseInfo,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StepFailed,
    StepInfo,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from widgets.timeline import SPINNER_FRAMES, PhaseTimeline, format_duration

T0 = 1_700_000_000.0

PHASES = (
    PhaseInfo(
        1,
        "Cluster",
        (StepInfo(1, "k3s", "Install k3s"), StepInfo(1, "kubeconfig", "Write kubeconfig")),
    ),
    PhaseInfo(
        2,
        "Flux",
        (StepInfo(2, "flux-install", "Install Flux"), StepInfo(2, "git-auth", "Deploy key")),
    ),
    PhaseInfo(3, "Vault", (StepInfo(3, "install", "Install OpenBao"), StepInfo(3, "init", "Unseal"))),
    PhaseInfo(4, "Secrets", (StepInfo(4, "eso", "External Secrets"),)),
    PhaseInfo(5, "Applications", (StepInfo(5, "apps", "Reconcile apps"),)),
)
ESTIMATES = (("1/k3s", 40.0), ("1/kubeconfig", 2.0), ("2/flux-install", 60.0))
FAILURE = "flux install: connection refused to https://10.0.0.1:6443 while applying the source controller"


def failed_run() -> list[Event]:
    """A run that installs k3s, skips the kubeconfig, then fails installing Flux."""
    return [
        RunStarted(run_id="r1", phases=PHASES, from_phase=1, estimates=ESTIMATES, at=T0),
        PhaseStarted(phase=1, title="Cluster", at=T0),
        StepStarted(phase=1, step_id="k3s", title="Install k3s", estimate=40.0, at=T0),
        OutputLines(phase=1, step_id="k3s", stream="stdout", lines=("installing",), at=T0 + 1),
        StepSucceeded(phase=1, step_id="k3s", duration=12.5, at=T0 + 12.5),
        StepStarted(phase=1, step_id="kubeconfig", title="Write kubeconfig", at=T0 + 12.5),
        StepSkipped(phase=1, step_id="kubeconfig", reason="already done", at=T0 + 12.6),
        PhaseFinished(phase=1, status="done", at=T0 + 12.6),
        PhaseStarted(phase=2, title="Flux", at=T0 + 12.6),
        StepStarted(phase=2, step_id="flux-install", title="Install Flux", estimate=60.0, at=T0 + 12.6),
        StepFailed(phase=2, step_id="flux-install", reason=FAILURE, duration=17.4, at=T0 + 30),
        PhaseFinished(phase=2, status="failed", at=T0 + 30),
        RunFinished(status="failed", duration=30.0, failed_step="2/flux-install", reason=FAILURE, at=T0 + 30),
    ]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TimelineApp(App[None]):
    CSS = "PhaseTimeline { width: 40; }"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or Clock(T0 + 30)
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield PhaseTimeline(clock=self.clock)

    def on_phase_timeline_step_selected(self, message: PhaseTimeline.StepSelected) -> None:
        self.selected.append(message.key)


def screen_lines(app: App[Any]) -> list[str]:
    """The terminal's rows as plain text."""
    update = app.screen._compositor.render_full_update(simplify=True)
    return ["".join(segment.text for strip in row for segment in strip) for row in update.strips]


def is_animating(timeline: PhaseTimeline) -> bool:
    return timeline.animating  # read through a call so mypy does not pin the value between asserts


def row_with(app: App[Any], needle: str) -> str:
    rows = [line for line in screen_lines(app) if needle in line]
    assert rows, f"no row contains {needle!r}"
    return rows[0]


def test_format_duration() -> None:
    assert format_duration(4.21) == "4.2s"
    assert format_duration(37.4) == "37s"
    assert format_duration(80) == "1m20s"
    assert format_duration(3720) == "1h02m"


async def test_a_failed_run_shows_states_symbols_counts_and_the_reason() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        for event in failed_run():
            timeline.apply(event)
        await pilot.pause()

        assert timeline.step_state("1/k3s") == "done"
        assert timeline.step_state("1/kubeconfig") == "skipped"
        assert timeline.step_state("2/flux-install") == "failed"
        assert timeline.step_state("2/git-auth") == "pending"
        assert timeline.phase_progress(1) == (2, 2)
        assert timeline.phase_progress(2) == (0, 2)

        assert "✔ Install k3s" in row_with(app, "Install k3s")
        assert "12s" in row_with(app, "Install k3s")
        assert "↷ Write kubeconfig" in row_with(app, "Write kubeconfig")
        assert "✘ Install Flux" in row_with(app, "Install Flux")
        assert "17s" in row_with(app, "Install Flux")
        assert "· Deploy key" in row_with(app, "Deploy key")
        assert row_with(app, "1 Cluster").startswith("✔") and row_with(app, "1 Cluster").rstrip().endswith(
            "2/2"
        )
        assert row_with(app, "2 Flux").startswith("✘") and row_with(app, "2 Flux").rstrip().endswith("0/2")
        assert row_with(app, "3 Vault").startswith("·")
        assert "✘ failed · 2/8 steps" in screen_lines(app)[0]
        # The reason sits under the failed step, cut to the widget's width with an ellipsis.
        reason_row = row_with(app, "↳ flux install")[:40]
        assert reason_row.rstrip().endswith("…")
        assert not timeline.animating


async def test_a_running_step_spins_shows_elapsed_and_the_time_left() -> None:
    clock = Clock(T0)
    app = TimelineApp(clock)
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        every_step_estimated = tuple((s.key, 10.0) for p in PHASES for s in p.steps)
        timeline.apply(
            RunStarted(run_id="r", phases=PHASES, from_phase=1, estimates=every_step_estimated, at=T0)
        )
        timeline.apply(PhaseStarted(phase=1, title="Cluster", at=T0))
        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", estimate=40.0, at=T0))
        clock.now = T0 + 25
        await pilot.pause()

        assert timeline.step_state("1/k3s") == "running"
        assert is_animating(timeline)
        row = row_with(app, "Install k3s")
        assert row.strip()[2] in SPINNER_FRAMES  # "▸ ⠋ Install k3s": the cursor, then the spinner
        assert "25s" in row
        assert row_with(app, "1 Cluster").startswith("▶")
        # 15 s left of k3s (estimate 40 s) plus 7 more steps of 10 s.
        assert timeline.remaining_estimate() == (85.0, True)
        assert "~1m25s left" in screen_lines(app)[0]

        first_frame = row.strip()[2]
        await pilot.pause(0.35)
        assert row_with(app, "Install k3s").strip()[2] != first_frame

        timeline.apply(StepSucceeded(phase=1, step_id="k3s", duration=25.0, at=T0 + 25))
        await pilot.pause()
        assert not is_animating(timeline)  # no timer while nothing runs
        assert "✔ Install k3s" in row_with(app, "Install k3s")


async def test_unknown_estimates_are_marked_as_a_lower_bound() -> None:
    app = TimelineApp(Clock(T0 + 5))
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.apply(RunStarted(run_id="r", phases=PHASES, from_phase=1, estimates=ESTIMATES, at=T0))
        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", estimate=40.0, at=T0))
        await pilot.pause()
        assert timeline.remaining_estimate() == (35.0 + 2.0 + 60.0, False)
        assert "~1m37s+ left" in screen_lines(app)[0]


async def test_a_cancelled_step_shows_a_square() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.apply(RunStarted(run_id="r", phases=PHASES, from_phase=1, at=T0))
        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", at=T0))
        timeline.apply(
            StepFailed(phase=1, step_id="k3s", reason="interrupted", duration=3.0, cancelled=True, at=T0 + 3)
        )
        timeline.apply(RunFinished(status="interrupted", duration=3.0, reason="interrupted", at=T0 + 3))
        await pilot.pause()
        assert timeline.step_state("1/k3s") == "cancelled"
        assert "■ Install k3s" in row_with(app, "Install k3s")
        assert "■ interrupted" in screen_lines(app)[0]


async def test_keys_move_the_selection_and_enter_posts_step_selected() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.load(PHASES, {})
        timeline.focus()
        await pilot.pause()
        assert timeline.selected_key == "1/k3s"
        await pilot.press("down", "j")
        assert timeline.selected_key == "2/flux-install"  # phase headers are not selectable
        await pilot.press("k")
        assert timeline.selected_key == "1/kubeconfig"
        await pilot.press("up", "up")
        assert timeline.selected_key == "1/k3s"  # stops at the top
        await pilot.press("end")
        assert timeline.selected_key == "5/apps"
        await pilot.press("enter")
        await pilot.pause()
        assert app.selected == ["5/apps"]
        assert row_with(app, "Reconcile apps").startswith("▸")


async def test_the_selection_follows_the_run_until_the_user_moves_it() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        events = failed_run()
        for event in events[:3]:
            timeline.apply(event)
        assert timeline.selected_key == "1/k3s"
        for event in events[3:]:
            timeline.apply(event)
        assert timeline.selected_key == "2/flux-install"  # it lands on the failure
        timeline.focus()
        await pilot.press("k")
        timeline.apply(StepStarted(phase=2, step_id="git-auth", title="Deploy key", at=T0 + 40))
        assert timeline.selected_key == "1/kubeconfig"


async def test_an_event_repaints_only_the_rows_it_changed() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.apply(RunStarted(run_id="r", phases=PHASES, from_phase=1, at=T0))
        timeline.apply(PhaseStarted(phase=1, title="Cluster", at=T0))
        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", at=T0))
        await pilot.pause()
        timeline._stop_ticker()  # keep the spinner out of the count

        rendered: list[int] = []
        original = timeline._render_row

        def counting(row: Any, width: int) -> Strip:
            rendered.append(1)
            return original(row, width)

        timeline._render_row = counting  # type: ignore[method-assign]
        timeline.apply(StepSucceeded(phase=1, step_id="k3s", duration=3.0, at=T0 + 3))
        await pilot.pause()
        # The step, its phase header and the summary: not the other 11 rows.
        assert 1 <= len(rendered) <= 3


async def test_a_new_run_keeps_the_selected_step() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.load(PHASES, {})
        timeline.focus()
        await pilot.press("j", "j")
        selected = timeline.selected_key
        timeline.apply(RunStarted(run_id="r2", phases=PHASES, from_phase=2, at=T0))
        assert timeline.selected_key == selected
        assert timeline.step_state("1/k3s") == "pending"


async def test_a_restarted_step_loses_its_reason_row_and_unknown_steps_are_ignored() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.apply(RunStarted(run_id="r", phases=PHASES, from_phase=1, at=T0))
        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", at=T0))
        timeline.apply(StepFailed(phase=1, step_id="k3s", reason="boom", duration=1.0, at=T0 + 1))
        await pilot.pause()
        assert any("↳ boom" in line for line in screen_lines(app))

        timeline.apply(StepStarted(phase=1, step_id="k3s", title="Install k3s", at=T0 + 2))
        timeline.apply(StepStarted(phase=9, step_id="nowhere", title="Not loaded", at=T0 + 2))
        timeline.apply(StepSucceeded(phase=9, step_id="nowhere", duration=1.0, at=T0 + 3))
        await pilot.pause()
        assert timeline.step_state("1/k3s") == "running"
        assert not any("↳ boom" in line for line in screen_lines(app))


async def test_a_reason_quoting_child_output_cannot_restyle_the_screen() -> None:
    app = TimelineApp()
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.query_one(PhaseTimeline)
        timeline.apply(RunStarted(run_id="r", phases=PHASES, from_phase=1, at=T0))
        reason = "helm: \x1b[2J\x1b[31mError\x1b[0m:\nrelease failed\r"
        timeline.apply(StepFailed(phase=1, step_id="k3s", reason=reason, duration=1.0, at=T0 + 1))
        await pilot.pause()
        text = "\n".join(screen_lines(app))
        assert "\x1b" not in text
        assert "↳ helm: Error: release failed" in text
