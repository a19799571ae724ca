"""RollbackPickerScreen driven by a host app that answers its page and diff requests, as the app does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from textual import on
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Static

from phases.git import CommitInfo
from tests.support.screen import screen_text
from widgets.rollback_picker import MergeParentScreen, RollbackChoice, RollbackPickerScreen

SnapCompare = Any  # the pytest-textual-snapshot fixture's callable
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SUBJECTS = (
    "config: myapp log level back to info, cloudflared to 2 replicas",
    "deploy: update myapp to v1.2.3",
    "Merge branch 'feature/webapp'",
    "deploy: bump cloudflared to 2025.1.1",
    "feat(webapp): read the API key from Vault",
    "deploy: add webapp frontend v0.9.0",
    "feat(myapp): add the API key from Vault",
    "config: raise myapp log level to debug",
    "deploy: update myapp to v1.1.0",
    "deploy: add cloudflared tunnel",
    "feat(myapp): read the database password from Vault",
    "deploy: add myapp v1.0.0",
    "chore: initial repository layout",
)
AUTHORS = ("Erin Schmidt", "Bob Martinez", "Alice Chen", "Dave Okafor", "Carol Nguyen")
MERGE_ROW = 2
BOTH = ["flux-system/flux-system", "flux-system/production"]


def sha_of(n: int) -> str:
    return f"{n * 7919 + 4096:07x}".ljust(40, "0")


def history(count: int = len(SUBJECTS)) -> list[CommitInfo]:
    """``count`` commits, newest first; row 2 merges row 3 (first parent) and row 4."""
    commits = []
    for row in range(count):
        subject = SUBJECTS[row] if row < len(SUBJECTS) else f"chore: routine change {count - row}"
        parents: tuple[str, ...] = (sha_of(row + 1),) if row + 1 < count else ()
        if row == MERGE_ROW:
            parents = (sha_of(row + 1), sha_of(row + 2))
        sha = sha_of(row)
        commits.append(
            CommitInfo(
                sha=sha,
                short=sha[:7],
                parents=parents,
                author=AUTHORS[row % len(AUTHORS)],
                email="someone@example.com",
                date=T0 - timedelta(hours=26 * row),
                subject=subject,
                files_changed=(row % 6) + 1 if row % 4 else None,
            )
        )
    return commits


def diff_for(sha: str) -> str:
    return (
        f"commit {sha}\nAuthor: Someone <someone@example.com>\n\n    a change\n---\n"
        " clusters/production/apps/myapp/deployment.yaml | 2 +-\n"
        "diff --git a/clusters/production/apps/myapp/deployment.yaml"
        " b/clusters/production/apps/myapp/deployment.yaml\n"
        "--- a/clusters/production/apps/myapp/deployment.yaml\n"
        "+++ b/clusters/production/apps/myapp/deployment.yaml\n"
        "@@ -15,7 +15,7 @@ spec:\n"
        "-        image: ghcr.io/example/myapp:v1.1.0\n"
        "+        image: ghcr.io/example/myapp:v1.2.3\n"
    )


class PickerHost(App[None]):
    """Answers the picker's requests like the app's workers would, and records everything."""

    def __init__(
        self,
        commits: Sequence[CommitInfo],
        *,
        total: int | None = None,
        answer_pages: bool = True,
        markers: dict[str, list[str]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.commits = list(commits)
        self.total = total
        self.answer_pages = answer_pages
        self.markers = markers or {}
        self.picker = RollbackPickerScreen(diff_delay=0, **options)
        self.page_requests: list[tuple[int, int]] = []
        self.diff_requests: list[str] = []
        self.choices: list[RollbackChoice] = []
        self.results: list[RollbackChoice | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.picker, callback=self.results.append)

    @on(RollbackPickerScreen.PageRequested)
    def load_page(self, message: RollbackPickerScreen.PageRequested) -> None:
        self.page_requests.append((message.skip, message.limit))
        if self.answer_pages:
            self.answer(message.skip, message.limit)

    def answer(self, skip: int, limit: int) -> None:
        self.picker.add_page(self.commits[skip : skip + limit], self.total, skip=skip)
        if skip == 0 and self.markers:
            self.picker.set_markers(self.markers)

    @on(RollbackPickerScreen.DiffRequested)
    def load_diff(self, message: RollbackPickerScreen.DiffRequested) -> None:
        self.diff_requests.append(message.sha)
        self.picker.show_diff(message.sha, diff_for(message.sha))

    @on(RollbackPickerScreen.Chosen)
    def record_choice(self, message: RollbackPickerScreen.Chosen) -> None:
        self.choices.append(message.choice)


def row_text(app: PickerHost, sha: str) -> str:
    return " ".join(str(cell) for cell in app.picker.table.get_row(sha))


def diff_shown(app: PickerHost) -> str:
    return str(app.picker.query_one("#diff", Static).render())


def current_screen(app: PickerHost) -> Screen[Any]:
    return app.screen


def status_text(app: PickerHost) -> str:
    return str(app.picker.query_one("#picker-status").render())


# -- paging -----------------------------------------------------------------------------------


async def test_the_first_page_is_requested_on_mount_and_the_next_near_the_end() -> None:
    commits = history(250)
    app = PickerHost(commits, total=250, page_size=30)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.page_requests == [(0, 30)]
        assert app.picker.loaded_count == 30 and app.picker.selected == commits[0]
        assert "250 commits, 30 loaded" in screen_text(app)

        await pilot.press(*"j" * 9)  # row 9: still more than 20 rows from the last loaded one
        assert app.page_requests == [(0, 30)]
        await pilot.press("down")
        await pilot.pause()

        assert app.page_requests == [(0, 30), (30, 30)]
        assert app.picker.loaded_count == 60 and app.picker.selected == commits[10]
        await pilot.press("G")
        await pilot.pause()
        assert app.page_requests[-1] == (60, 30) and app.picker.loaded_count == 90


async def test_a_first_page_taller_than_the_screen_draws_the_rows_it_shows_first() -> None:
    commits = history(200)
    app = PickerHost(commits, total=200, page_size=200, answer_pages=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.answer(0, 200)
        # The rows a screen can show at once, the rest after that frame (DataTable measures every cell).
        assert 0 < app.picker.table.row_count < 200 and app.picker.loaded_count == 200
        app.picker.set_markers({commits[150].sha: BOTH})  # a commit without a table row yet
        assert app.picker.select(commits[150].sha)  # moving to it fills the table first
        assert app.picker.table.row_count == 200 and app.picker.selected == commits[150]
        await pilot.pause()
        assert "◀ flux-system production" in row_text(app, commits[150].sha)
        await pilot.press("g", "G")
        assert app.picker.selected == commits[199]


async def test_one_request_at_a_time_and_none_after_the_last_page() -> None:
    commits = history(60)
    app = PickerHost(commits, page_size=50, answer_pages=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.answer(0, 50)
        await pilot.press("G", "k", "j", "k")  # near the end, again and again, while the page loads
        await pilot.pause()
        assert app.page_requests == [(0, 50), (50, 50)]

        app.answer(50, 50)  # 10 commits: a short page is the last one
        await pilot.press("G", "k", "j")
        await pilot.pause()
        assert app.page_requests == [(0, 50), (50, 50)]
        assert app.picker.loaded_count == 60 and app.picker.selected == commits[59]


async def test_a_failed_page_is_reported_and_asked_again_when_the_cursor_moves() -> None:
    app = PickerHost(history(60), page_size=50, answer_pages=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.answer(0, 50)
        await pilot.press("G")
        await pilot.pause()
        app.picker.page_failed("git log failed: fatal: bad object")
        await pilot.pause()
        assert "git log failed" in screen_text(app)
        await pilot.press("k")
        await pilot.pause()
        assert app.page_requests == [(0, 50), (50, 50), (50, 50)]


# -- diff, markers, stats ---------------------------------------------------------------------


async def test_the_selected_commit_diff_is_requested_once_and_shown() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.diff_requests == [commits[0].sha]
        assert "+        image: ghcr.io/example/myapp:v1.2.3" in diff_shown(app)

        await pilot.press("j", "k")
        await pilot.pause()

        assert app.diff_requests == [commits[0].sha, commits[1].sha]  # the first came from the cache
        assert f"{commits[0].short} · Erin Schmidt" in screen_text(app)


async def test_a_late_diff_for_another_commit_does_not_replace_the_selected_one() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("j")
        await pilot.pause()
        app.picker.show_diff(commits[5].sha, "commit stale\n+never shown\n")
        await pilot.pause()
        assert "never shown" not in diff_shown(app) and commits[1].sha in diff_shown(app)


async def test_markers_show_which_commit_each_kustomization_applied_and_move() -> None:
    commits = history()
    app = PickerHost(commits, markers={commits[1].sha: BOTH})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "◆" in row_text(app, commits[1].sha) and "◀ flux-system production" in row_text(
            app, commits[1].sha
        )
        assert "◆" not in row_text(app, commits[0].sha)
        assert "◆ applied by Flux" in screen_text(app)

        app.picker.set_markers(
            {commits[0].sha: ["flux-system/production"], commits[1].sha: ["flux-system/flux-system"]}
        )
        await pilot.pause()

        assert "◀ production" in row_text(app, commits[0].sha)
        assert "◀ flux-system" in row_text(app, commits[1].sha) and "production" not in row_text(
            app, commits[1].sha
        )
        assert "applied by flux-system/production" in screen_text(app)  # the selected row's details

        app.picker.set_markers(
            {commits[0].sha: ["flux-system/flux-system"], "9" * 40: ["flux-system/production"]}
        )
        await pilot.pause()
        assert "◆ applied by Flux (1 further down)" in screen_text(app)  # at a commit not loaded yet


async def test_merges_are_marked_and_files_changed_fill_in_later() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert row_text(app, commits[MERGE_ROW].sha).startswith(" M")
        table = app.picker.table
        assert commits[4].files_changed is None and str(table.get_cell(commits[4].sha, "files")) == ""
        assert str(table.get_cell(commits[5].sha, "files")) == "6"

        app.picker.set_files_changed({commits[4].sha: 12})
        await pilot.pause()
        assert str(table.get_cell(commits[4].sha, "files")) == "12"


async def test_subjects_and_authors_are_shown_as_written_never_as_markup() -> None:
    tricky = CommitInfo(
        sha="e" * 40, short="eeeeeee", parents=(), author="[bold]Mallory[/]", email="m@example.com",
        date=T0, subject="fix: [/oops] and [red]not red[/red]", files_changed=1,
    )  # fmt: skip
    app = PickerHost([tricky])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "[bold]Mallo…      1  fix: [/oops] and [red]not red[/re" in screen_text(app)
        assert "1 commit loaded" in screen_text(app)
        assert "eeeeeee · [bold]Mallory[/] · 2025-03-01" in screen_text(app)  # the diff pane's title


# -- choices ----------------------------------------------------------------------------------


async def test_keys_post_the_right_choices() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("j", "v", "V", "X", "enter")
        await pilot.pause()
        one = commits[1]
        assert app.choices == [
            RollbackChoice("revert", one.sha, one.short, one.subject),
            RollbackChoice("revert-range", one.sha, one.short, one.subject),
            RollbackChoice("reset", one.sha, one.short, one.subject),
            RollbackChoice("revert", one.sha, one.short, one.subject),
        ]
        assert app.results == []  # the picker stays open for the confirmation and the progress


async def test_reverting_a_merge_asks_which_parent_to_keep() -> None:
    commits = history()
    merge = commits[MERGE_ROW]
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("j", "j", "enter")
        await pilot.pause()
        assert isinstance(current_screen(app), MergeParentScreen)
        text = screen_text(app)
        assert f"1  {merge.parents[0][:7]}  {commits[3].subject}" in text
        assert f"2  {merge.parents[1][:7]}  {commits[4].subject}" in text

        await pilot.press("escape")
        await pilot.pause()
        assert current_screen(app) is app.picker and app.choices == []

        await pilot.press("v")
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("v", "enter")  # the highlighted option: parent 1
        await pilot.pause()
        assert [choice.mainline for choice in app.choices] == [2, 1]
        assert {choice.sha for choice in app.choices} == {merge.sha}

        await pilot.press("V")  # a range revert needs no parent: merges are undone against the first
        await pilot.pause()
        assert app.choices[-1] == RollbackChoice("revert-range", merge.sha, merge.short, merge.subject)


async def test_reset_is_refused_in_place_when_the_app_says_so() -> None:
    app = PickerHost(history(), reset_refusal="reset needs a force push, which the config forbids")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("X")
        await pilot.pause()
        assert app.choices == []
        assert "which the config forbids" in status_text(app)
        await pilot.press("v")
        await pilot.pause()
        assert [choice.action for choice in app.choices] == ["revert"]


async def test_readonly_and_busy_pickers_post_no_choice() -> None:
    app = PickerHost(history(), readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("v", "V", "X", "enter")
        await pilot.pause()
        assert app.choices == [] and "read-only" in status_text(app)

    app = PickerHost(history())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.picker.set_busy("reverting 1a2b3c4…")
        await pilot.press("v")
        await pilot.pause()
        assert app.choices == [] and "wait: reverting 1a2b3c4…" in status_text(app)
        app.picker.set_busy(None)
        await pilot.press("v")
        await pilot.pause()
        assert len(app.choices) == 1


async def test_escape_and_q_go_back_with_no_choice() -> None:
    for key in ("escape", "q"):
        app = PickerHost(history())
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert app.results == [None], key


async def test_dismiss_on_choice_returns_the_choice() -> None:
    commits = history()
    app = PickerHost(commits, dismiss_on_choice=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("V")
        await pilot.pause()
        expected = RollbackChoice("revert-range", commits[0].sha, commits[0].short, commits[0].subject)
        assert app.results == [expected] and app.choices == [expected]


# -- search -----------------------------------------------------------------------------------


async def test_search_jumps_through_matching_subjects_in_loaded_pages() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"webapp")
        await pilot.pause()
        assert app.picker.selected == commits[2]  # "Merge branch 'feature/webapp'"
        assert "match 1 of 3 in 13 loaded commits" in status_text(app)

        await pilot.press("enter", "n")
        await pilot.pause()
        assert app.picker.selected == commits[4]
        await pilot.press("n", "n")
        await pilot.pause()
        assert app.picker.selected == commits[2]  # wrapped around
        await pilot.press("N")
        await pilot.pause()
        assert app.picker.selected == commits[5]

        await pilot.press("slash", "ctrl+u", "X", "q")  # typed, not actions; no match: the cursor stays
        await pilot.pause()
        assert app.picker.selected == commits[5] and "no match" in status_text(app)
        await pilot.press("escape")  # closes the search and goes back to where it started
        await pilot.pause()
        assert app.picker.selected == commits[5] and app.results == [] and app.choices == []
        assert app.picker.table.has_focus


async def test_reload_keeps_the_selection() -> None:
    commits = history()
    app = PickerHost(commits)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("j", "j", "j")
        revert = CommitInfo(
            sha="f" * 40, short="fffffff", parents=(commits[0].sha,), author="Sandbox Operator",
            email="operator@sandbox.invalid", date=T0 + timedelta(hours=1),
            subject='Revert "deploy: bump cloudflared to 2025.1.1"', files_changed=1,
        )  # fmt: skip
        app.commits = [revert, *commits]  # the revert arrived on top
        app.picker.reload()
        await pilot.pause()
        assert app.page_requests[-1] == (0, 100)
        assert app.picker.loaded_count == 14 and app.picker.selected == commits[3]
        app.picker.add_page(history(20)[15:17], skip=5)  # answers a request made before the reload
        assert app.picker.loaded_count == 14


# -- snapshots --------------------------------------------------------------------------------


async def select_merge(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.press("j", "j")
    await pilot.pause()


def snapshot_host() -> PickerHost:
    commits = history()
    return PickerHost(
        commits, total=len(commits), markers={commits[0].sha: BOTH, commits[3].sha: ["apps/staging"]}
    )


def test_snapshot_picker_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_host(), terminal_size=(80, 24), run_before=select_merge)


def test_snapshot_picker_120x40(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_host(), terminal_size=(120, 40), run_before=select_merge)


def test_snapshot_merge_parent_choice_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(snapshot_host(), terminal_size=(80, 24), press=["j", "j", "enter"])
