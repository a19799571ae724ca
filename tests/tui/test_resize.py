"""The terminal resized down to 40x12 and back, again and again, while a bootstrap runs."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.world import SandboxWorld
from tests.support.bootstrap import sandbox_config
from tests.support.screen import screen_text
from tests.tui.test_app import start_bootstrap, wait_for
from tui.app import MIN_HEIGHT, MIN_WIDTH, GitOpsApp
from widgets.timeline import PhaseTimeline

SIZES = [(40, 12), (80, 24), (40, 12), (120, 40), (59, 30), (80, 24)]


def notice_matches(app: GitOpsApp, *, small: bool) -> Callable[[], bool]:
    """Whether the "too small" notice is shown exactly when the terminal is too small."""
    return lambda: ("Terminal too small" in screen_text(app)) == small


async def test_resizing_during_a_run_neither_breaks_the_screen_nor_the_run(
    sandbox_world: SandboxWorld,
) -> None:
    config, env = sandbox_config(sandbox_world)
    app = GitOpsApp(config, command_env=env, sandbox=True, demo_secrets=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_bootstrap(pilot, app)
        resizes = 0
        while app.bootstrap_running or resizes < len(SIZES):
            width, height = SIZES[resizes % len(SIZES)]
            await pilot.resize_terminal(width, height)
            await wait_for(pilot, notice_matches(app, small=width < MIN_WIDTH or height < MIN_HEIGHT))
            resizes += 1
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: app.last_result is not None)
        assert app.last_result is not None and app.last_result.status == "succeeded", app.last_result
        # The size is checked just after the app applies it: wait for that, not read the screen at once.
        await wait_for(pilot, lambda: "Terminal too small" not in screen_text(app))
        assert app.query_one(PhaseTimeline).phase_state(5) == "done"
        await pilot.press("q")
    assert app.return_value == 0
