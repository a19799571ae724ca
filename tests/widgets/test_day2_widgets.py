"""SuspendReasonScreen and AuditScreen: keys, results, what they show at 80x24, and snapshots.

Update the snapshots with ``pytest --snapshot-update tests/widgets/test_day2_widgets.py`` and look at the
SVGs before committing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input

from phases.audit import AuditEntry
from phases.day2 import describe
from tests.support.screen import screen_text
from widgets.audit_view import AuditScreen
from widgets.suspend_reason import SuspendReasonScreen

SnapCompare = Any  # the pytest-textual-snapshot fixture's callable
APPS = ("Kustomization", "flux-system", "production")
INFRA = ("Kustomization", "flux-system", "flux-system")


class Host(App[None]):
    """Pushes one modal screen over an empty app and keeps what it dismissed with."""

    def __init__(self, screen: Any) -> None:
        super().__init__()
        self.modal = screen
        self.results: list[Any] = []

    def on_mount(self) -> None:
        self.push_screen(self.modal, callback=self.results.append)


def flowing_text(app: App[Any]) -> str:
    """The screen's words with line breaks, borders and runs of spaces collapsed (wrapping varies)."""
    return " ".join(" ".join(line.strip(" █▀▄") for line in screen_text(app).splitlines()).split())


def suspend_screen(keys: Sequence[tuple[str, str, str]] = (APPS,)) -> SuspendReasonScreen:
    title, _ = describe("suspend", keys)
    targets = [f"{kind} {namespace}/{name}" for kind, namespace, name in keys]
    return SuspendReasonScreen(
        title, targets, lambda reason: describe("suspend", keys, reason=reason, actor="alice@ops-1")[1]
    )


def entry(n: int, **fields: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "time": f"2026-11-26T10:{n:02d}:33.250Z",
        "user": "alice",
        "host": "ops-1",
        "action": "reconcile",
        "kind": "Kustomization",
        "namespace": "flux-system",
        "name": "production",
        "result": "succeeded",
        "message": "Applied revision: main@sha1:1d1c92bae5e3c3c2b5fbf7569f2d52c9d08c8a3b",
        "duration": 0.8,
        "revision": "main@sha1:1d1c92bae5e3c3c2b5fbf7569f2d52c9d08c8a3b",
    }
    values.update(fields)
    return AuditEntry(**values)


ENTRIES = [  # newest first, as read_audit returns them
    entry(
        9,
        action="force-sync",
        kind="ExternalSecret",
        namespace="myapp",
        name="myapp-secrets",
        message="SecretSynced: secret synced",
        revision="",
        duration=1.4,
    ),
    entry(
        8,
        action="reconcile",
        result="timed-out",
        message="timed out after 300 s waiting for Kustomization flux-system/production to reconcile: "
        "reconciliation requested, waiting for the controller",
        duration=300.0,
        revision="",
    ),
    entry(7, action="reconcile-with-source", user="bob", host="laptop"),
    entry(6, action="reconcile", result="suspended", message="suspended", duration=0.0, revision=""),
    entry(5, action="suspend", reason="DB migration, back at 14:00", message="suspended (DB migration)"),
    entry(4, action="resume", message="resumed; Applied revision: main@sha1:9df6913", duration=2.3),
]


# -- SuspendReasonScreen -------------------------------------------------------------------------------------


async def test_suspend_screen_shows_the_targets_and_the_exact_calls() -> None:
    app = Host(suspend_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "Suspend Kustomization flux-system/production" in text
        assert (
            "Flux stops reconciling Kustomization flux-system/production until it is resumed."
            in flowing_text(app)
        )
        assert "$ PATCH Kustomization flux-system/production spec.suspend=true" in text
        assert "suspend-reason" not in text  # no reason typed: no annotations in the call
        assert app.modal.query_one("#suspend-reason", Input).has_focus


async def test_typing_a_reason_updates_the_calls_and_enter_confirms_it() -> None:
    app = Host(suspend_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"db migration")
        await pilot.pause()
        text = screen_text(app)
        assert 'metadata.annotations[gitops-tui/suspend-reason]="db migration"' in text
        assert "gitops-tui/suspended-by]=alice@ops-1" in text
        await pilot.press("enter")
        assert app.results == ["db migration"]


async def test_enter_with_no_reason_confirms_with_an_empty_reason() -> None:
    app = Host(suspend_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("space", "enter")  # blank is no reason
        assert app.results == [""]


async def test_escape_cancels_even_with_a_reason_typed() -> None:
    app = Host(suspend_screen())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a", "b", "escape")
        assert app.results == [None]


async def test_the_buttons_confirm_and_cancel() -> None:
    for button, expected in (("#confirm-ok", "x"), ("#confirm-cancel", None)):
        app = Host(suspend_screen())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("x")
            await pilot.click(button)
            assert app.results == [expected], button


async def test_a_bulk_suspend_names_a_few_targets_and_lists_every_call() -> None:
    keys = [("Kustomization", "flux-system", f"app-{n}") for n in range(6)]
    app = Host(suspend_screen(keys))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "Suspend 6 Kustomizations" in text
        assert "Kustomization flux-system/app-3 and 2 more until they are resumed." in flowing_text(app)
        assert app.modal.commands_for("") == [
            f"PATCH Kustomization flux-system/app-{n} spec.suspend=true" for n in range(6)
        ]
        assert app.modal.query_one("#confirm-ok", Button).label.plain == "Suspend"


def test_snapshot_suspend_reason_80x24(snap_compare: SnapCompare) -> None:
    async def typed(pilot: Pilot[None]) -> None:
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.press(*"DB migration")

    assert snap_compare(Host(suspend_screen((INFRA, APPS))), run_before=typed, terminal_size=(80, 24))


# -- AuditScreen ---------------------------------------------------------------------------------------------


async def test_audit_screen_lists_entries_newest_first_and_details_the_highlighted_one() -> None:
    app = Host(AuditScreen(ENTRIES, source="~/.local/state/gitops-tui/audit.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.modal.query_one(DataTable)
        assert table.row_count == len(ENTRIES)
        assert [table.get_row_at(row)[0] for row in range(3)] == ["11-26 10:09", "11-26 10:08", "11-26 10:07"]
        text = screen_text(app)
        assert "Audit log · 6 entries, newest first" in text
        assert "es myapp/myapp-secrets" in text and "✔ ok" in text
        assert "force-sync ExternalSecret myapp/myapp-secrets" in text  # the detail panel
        assert all(len(line) <= 80 for line in text.splitlines())

        await pilot.press("down")
        text = screen_text(app)
        assert app.modal.highlighted == ENTRIES[1]
        assert "✘ timed out" in text and "took 300s" not in text and "took 5m00s" in text
        assert "timed out after 300 s waiting for Kustomization flux-system/production" in text

        await pilot.press("down", "down", "down")
        assert app.modal.highlighted == ENTRIES[4]
        assert "reason: DB migration, back at 14:00" in screen_text(app)

        await pilot.press("escape")
        assert app.results == [None]


async def test_an_empty_audit_log_says_so() -> None:
    app = Host(AuditScreen([]))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "No day-2 actions recorded yet." in screen_text(app)
        await pilot.press("q")
        assert app.results == [None]


def test_snapshot_audit_screen_80x24(snap_compare: SnapCompare) -> None:
    screen = AuditScreen(ENTRIES, source="~/.local/state/gitops-tui/audit.jsonl")
    assert snap_compare(Host(screen), terminal_size=(80, 24))
