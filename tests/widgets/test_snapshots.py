"""Snapshots at 80x24 of the screens whose layout matters most.

Update with ``pytest --snapshot-update tests/widgets`` and look at the SVGs before committing.
"""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input

from phases.engine import SecretRequest
from tests.widgets.test_timeline import T0, failed_run
from widgets.confirm import ConfirmScreen
from widgets.help_screen import HelpEntry, HelpScreen
from widgets.secret_prompt import SecretPromptScreen
from widgets.status_header import RepoRef, StatusHeader
from widgets.timeline import PhaseTimeline

SnapCompare = Any  # the pytest-textual-snapshot fixture's callable


class ScreenHost(App[None]):
    """Pushes one modal screen over an empty app."""

    def __init__(self, screen: Any) -> None:
        super().__init__()
        self.modal = screen

    def on_mount(self) -> None:
        self.push_screen(self.modal)


class TimelineHost(App[None]):
    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield PhaseTimeline(clock=lambda: T0 + 30)

    def on_mount(self) -> None:
        self.query_one(StatusHeader).update_status(
            context="k3s-default", vault="sealed", repo=RepoRef("main", "1a2b3c4d5e"), sandbox=True
        )
        timeline = self.query_one(PhaseTimeline)
        for event in failed_run():
            timeline.apply(event)
        timeline.focus()


def test_secret_prompt_with_a_refused_field(snap_compare: SnapCompare) -> None:
    requests = (
        SecretRequest(
            "github-token", "GITHUB_TOKEN", "GitHub token for the deployments repository", "", True
        ),
        SecretRequest(
            "cloudflare-token", "CLOUDFLARE_API_TOKEN", "Cloudflare API token (DNS edit)", "", False
        ),
        SecretRequest("grafana-admin", "GRAFANA_ADMIN_PASSWORD", "Grafana admin password", ".{12,}", False),
    )
    app = ScreenHost(SecretPromptScreen(requests))
    assert snap_compare(app, press=["a", "b", "c", "ctrl+s"])


def test_help_screen_with_an_unavailable_key(snap_compare: SnapCompare) -> None:
    entries = [
        HelpEntry("?", "Show this help", "App"),
        HelpEntry("ctrl+q", "Quit", "App"),
        HelpEntry("s", "Start the bootstrap", "Run"),
        HelpEntry("r", "Retry the failed step", "Run", enabled=False),
        HelpEntry("x", "Cancel the run", "Run", enabled=False),
        HelpEntry("↑/↓ j/k", "Select a step", "Timeline"),
        HelpEntry("enter", "Step details", "Timeline"),
        HelpEntry("/", "Search the log", "Log"),
        HelpEntry("n / N", "Next / previous match", "Log"),
        HelpEntry("s", "Save the log to a file", "Log"),
    ]
    assert snap_compare(ScreenHost(HelpScreen(entries)))


def test_destructive_confirm_with_a_typed_word(snap_compare: SnapCompare) -> None:
    screen = ConfirmScreen(
        "Force-push the deployments repo",
        "Replaces the history of branch main on the remote with the local one. "
        "Flux will reconcile the cluster to the new head.",
        [
            "git -C /srv/deployments push --force-with-lease origin main",
            "flux reconcile source git flux-system",
        ],
        destructive=True,
        typed_confirmation="main",
    )

    async def steady_cursor(pilot: Pilot[None]) -> None:
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.press("m", "a")

    assert snap_compare(ScreenHost(screen), run_before=steady_cursor)


def test_timeline_with_a_failed_step(snap_compare: SnapCompare) -> None:
    assert snap_compare(TimelineHost())
