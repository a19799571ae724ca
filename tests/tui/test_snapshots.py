"""Snapshots of the main screen (80x24 and 120x40) and of a failed step, from deterministic events.

The cluster and Vault are unreachable (no kubeconfig), so what the header and tree show is
stable; the engine events are replayed with fixed timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from phases.config import config_from_document
from phases.events import (
    Event,
    OutputLines,
    PhaseFinished,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from tests.support.screen import screen_text
from tui.app import EngineEvent, GitOpsApp
from widgets.status_header import StatusHeader

T0 = 1_790_000_000.0


def failed_run(app: GitOpsApp) -> list[Event]:
    phases = app._phase_infos()
    events: list[Event] = [RunStarted(run_id="snapshot", phases=phases, from_phase=1, at=T0)]
    events.append(PhaseStarted(phase=1, title="Infrastructure", at=T0))
    at = T0
    for step_id, seconds in (("k3s", 21.0), ("flux", 9.5), ("flux-source", 3.2)):
        events.append(StepStarted(phase=1, step_id=step_id, title=step_id, at=at))
        events.append(
            OutputLines(phase=1, step_id=step_id, stream="stdout", lines=(f"working on {step_id}",), at=at)
        )
        at += seconds
        events.append(StepSucceeded(phase=1, step_id=step_id, duration=seconds, at=at))
    events.append(StepStarted(phase=1, step_id="vault-install", title="vault-install", at=at))
    events.append(
        OutputLines(
            phase=1,
            step_id="vault-install",
            stream="stderr",
            lines=("Error: INSTALLATION FAILED: chart not found",),
            at=at,
        )
    )
    at += 4.0
    reason = "helm exited with code 1: Error: INSTALLATION FAILED: chart not found"
    events.append(StepFailed(phase=1, step_id="vault-install", reason=reason, duration=4.0, at=at))
    events.append(PhaseFinished(phase=1, status="failed", at=at))
    events.append(
        RunFinished(status="failed", duration=at - T0, failed_step="1/vault-install", reason=reason, at=at)
    )
    return events


def make_app(tmp_path: Path) -> GitOpsApp:
    config = config_from_document(
        {
            "cluster": {"kubeconfig": str(tmp_path / "no-cluster")},
            "engine": {"state_dir": str(tmp_path / "state")},
        }
    )
    app = GitOpsApp(config)
    app.notify = lambda *args, **kwargs: None  # type: ignore[method-assign]  # toasts come and go: not in snapshots
    return app


async def replay_failed_run(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, GitOpsApp)
    for event in failed_run(app):
        app.post_message(EngineEvent(event))
    await pilot.pause(0.3)
    for _ in range(100):  # the header and tree learn that nothing is reachable
        if app.query_one(StatusHeader).vault == "unreachable" and "unreachable" in screen_text(app):
            break
        await pilot.pause(0.05)
    app.query_one("#log").flush()  # type: ignore[attr-defined]
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen_after_a_failed_run(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=replay_failed_run)


def test_failed_step_details_offer_retry(snap_compare: Any, tmp_path: Path) -> None:
    async def open_failed_step(pilot: Pilot[Any]) -> None:
        await replay_failed_run(pilot)
        await pilot.press("enter")  # the timeline follows the failed step
        await pilot.pause(0.3)

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=open_failed_step)
