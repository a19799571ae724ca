"""The App, keyboard only at 80x24, against the sandbox: bootstrap, secret prompt, tree, details, quit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from phases.config import config_from_document
from phases.resources import EXTERNAL_SECRET, KUSTOMIZATION
from sandbox.world import SandboxWorld
from tests.support.bootstrap import sandbox_config
from tests.support.screen import screen_text
from tui.app import GitOpsApp
from widgets.confirm import ConfirmScreen
from widgets.help_screen import HelpScreen
from widgets.log_pane import LogPane
from widgets.resource_details import ResourceDetails
from widgets.resource_tree import ResourceTree
from widgets.secret_input import SecretInput
from widgets.secret_prompt import SecretPromptScreen
from widgets.step_details import StepDetailsScreen
from widgets.timeline import PhaseTimeline

TYPED = {
    "github_token": "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3",
    "cloudflare_api_token": "cf_typed_token_0123456789",
    "myapp_db_password": "typed-db-password",
    "myapp_api_key": "typed-api-key-42",
}


async def wait_for(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.1)


async def wait_for_screen(pilot: Pilot[int], screen_type: type[Screen[Any]], timeout: float = 90.0) -> None:
    """Until ``screen_type`` is on top and drawn: a screen just pushed has no text before its first layout."""
    app = pilot.app
    await wait_for(
        pilot, lambda: isinstance(app.screen, screen_type) and screen_text(app).strip() != "", timeout
    )


async def start_bootstrap(pilot: Pilot[int], app: GitOpsApp) -> None:
    """`b`, confirmed with `y`, until the run is under way (a sandbox run lasts seconds: no race)."""
    await pilot.press("b")
    await wait_for_screen(pilot, ConfirmScreen)
    await pilot.press("y")
    await wait_for(pilot, lambda: app.bootstrap_running)


async def test_bootstrap_from_the_keyboard_with_typed_secrets(sandbox_world: SandboxWorld) -> None:
    config, env = sandbox_config(sandbox_world)
    app = GitOpsApp(config, command_env=env, sandbox=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "SANDBOX" in screen_text(app)
        await pilot.press("b")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "Phase 1: Infrastructure" in screen_text(app)  # says what it will do first
        await pilot.press("y")
        await wait_for_screen(pilot, SecretPromptScreen)
        await wait_for(pilot, lambda: "github_token" in screen_text(app))
        text = screen_text(app)
        assert "github_token" in text and "to be entered" in text
        for name in ("github_token", "cloudflare_api_token", "myapp_db_password", "myapp_api_key"):
            assert isinstance(app.focused, SecretInput)  # enter moved focus to the next field
            await pilot.press(*TYPED[name])
            await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_result is not None)
        assert app.last_result is not None and app.last_result.status == "succeeded", app.last_result
        timeline = app.query_one(PhaseTimeline)
        assert timeline.phase_state(5) == "done" and timeline.phase_progress(5) == (6, 6)
        shown = screen_text(app)
        for value in TYPED.values():
            assert value not in shown
        assert app.secrets.held() == []

        # The tree caught up through list+watch: Flux and ESO objects, with their links.
        tree = app.query_one(ResourceTree)
        await wait_for(pilot, lambda: app.model.get((KUSTOMIZATION, "flux-system", "production")) is not None)
        await wait_for(pilot, lambda: len(app.model.nodes(EXTERNAL_SECRET)) >= 4)
        assert app.model.externalsecrets_applied_by((KUSTOMIZATION, "flux-system", "production"))

        # Filter the tree and open details from the keyboard.
        tree.focus()
        await pilot.press("slash", *"myapp", "enter")
        await pilot.pause(0.2)
        assert tree.filter_text == "myapp"
        target = (EXTERNAL_SECRET, "myapp", "myapp-secrets")
        for _ in range(40):
            if tree.selected_key == target:
                break
            await pilot.press("down")
        assert tree.selected_key == target
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one(ResourceDetails).display)
        assert "myapp-secrets" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_value == 0


async def test_quit_while_running_asks_then_stops_cleanly(sandbox_world: SandboxWorld) -> None:
    config, env = sandbox_config(sandbox_world)
    app = GitOpsApp(config, command_env=env, sandbox=True, demo_secrets=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_bootstrap(pilot, app)
        await pilot.press("q")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "Quit while the bootstrap runs?" in screen_text(app)
        await pilot.press("n")  # changed my mind: the run goes on
        await pilot.pause(0.2)
        assert app.bootstrap_running
        await pilot.press("q")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("tab", "enter")  # focus moves from Cancel to "Stop and quit"
        await wait_for(pilot, lambda: not app.is_running, timeout=30)
    assert app.return_value == 130
    assert app.secrets.held() == []
    state = (Path(config.engine.resolved_state_dir()) / "state.json").read_text()
    assert '"status": "interrupted"' in state


async def test_a_failed_step_shows_its_error_and_offers_retry(sandbox_world: SandboxWorld) -> None:
    config, env = sandbox_config(sandbox_world)
    broken_env = {**env, "PATH": "/usr/bin:/bin"}  # no k3s on PATH: phase 1 fails at its first step
    app = GitOpsApp(config, command_env=broken_env, sandbox=True, demo_secrets=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("b", "y")
        await wait_for(pilot, lambda: app.last_result is not None)
        assert app.last_result is not None and app.last_result.failed_step == "1/k3s"
        timeline = app.query_one(PhaseTimeline)
        assert timeline.step_state("1/k3s") == "failed"
        timeline.focus()
        await pilot.press("enter")
        await wait_for_screen(pilot, StepDetailsScreen)
        text = screen_text(app)
        assert "k3s was not found on PATH" in text
        app.command_env = env  # the admin fixed PATH
        await pilot.press("r")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "Resume the bootstrap from phase 1" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: timeline.step_state("1/k3s") in ("done", "skipped"))
        assert app.engine is not None
        app.engine.cancel()
        await wait_for(pilot, lambda: not app.bootstrap_running)


async def test_readonly_disables_the_bootstrap_and_help_says_so(tmp_path: Path) -> None:
    config = config_from_document(
        {"cluster": {"kubeconfig": str(tmp_path / "none")}, "engine": {"state_dir": str(tmp_path / "s")}}
    )
    app = GitOpsApp(config, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert app.check_action("bootstrap", ()) is None  # shown but greyed out
        await pilot.press("b")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        assert "READONLY" in screen_text(app)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, HelpScreen)
        text = screen_text(app)
        assert "Bootstrap" in text and "not available now" in text
        await pilot.press("escape")
        # An unreachable cluster and Vault show in the header and the tree; the keyboard still works.
        await wait_for(pilot, lambda: "unreachable" in screen_text(app))
        await pilot.press("tab")
        await pilot.press("q")
    assert app.return_value == 0


@pytest.mark.parametrize(("width", "height"), [(40, 12), (59, 24)])
async def test_a_small_terminal_shows_a_message_instead_of_a_broken_layout(
    tmp_path: Path, width: int, height: int
) -> None:
    config = config_from_document(
        {"engine": {"state_dir": str(tmp_path)}, "cluster": {"kubeconfig": "/none"}}
    )
    app = GitOpsApp(config)
    async with app.run_test(size=(width, height)) as pilot:
        await pilot.pause()
        assert "Terminal too small" in screen_text(app)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert "Terminal too small" not in screen_text(app)
        assert "Infrastructure" in screen_text(app)


async def test_keys_can_be_remapped_in_the_config(tmp_path: Path) -> None:
    config = config_from_document(
        {
            "engine": {"state_dir": str(tmp_path)},
            "cluster": {"kubeconfig": "/none"},
            "keys": {"bootstrap": "ctrl+b", "help": "f1"},
        }
    )
    app = GitOpsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await wait_for_screen(pilot, HelpScreen)
        await pilot.press("escape")
        await pilot.press("b")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("ctrl+b")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("escape")


async def test_the_command_palette_lists_the_app_keys(tmp_path: Path) -> None:
    config = config_from_document(
        {"engine": {"state_dir": str(tmp_path)}, "cluster": {"kubeconfig": "/none"}}
    )
    app = GitOpsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Bootstrap (b)" in titles and "Help (?)" in titles
        await pilot.press("ctrl+p", *"bootstrap")
        await pilot.pause(0.5)
        assert "Bootstrap (b)" in screen_text(app)
        await pilot.press("enter")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("escape")


def filter_of(log: LogPane) -> str | None:
    return log.tag_filter  # read through a call: mypy would keep an earlier assert's narrowing


async def test_header_shows_the_kubeconfig_context_and_l_filters_the_log(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod-eu\nclusters: []\ncontexts: []\n"
    )
    config = config_from_document(
        {"engine": {"state_dir": str(tmp_path / "s")}, "cluster": {"kubeconfig": str(kubeconfig)}}
    )
    app = GitOpsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert "prod-eu" in screen_text(app)
        log = app.query_one(LogPane)
        log.add_lines("1/k3s", "stdout", ["k3s line"])
        log.add_lines("1/flux", "stdout", ["flux line"])
        log.flush()
        await pilot.press("l")  # the timeline's selected step is 1/k3s
        await pilot.pause(0.2)
        assert log.tag_filter == "1/k3s" and list(log.shown_lines)[-1].endswith("k3s line")
        await pilot.press("l")
        await pilot.pause(0.2)
        assert filter_of(log) is None
        await pilot.press("ctrl+r")  # retry now: nothing breaks without a cluster
        await pilot.pause(0.2)
