"""Rollback picker: first page of a 20,000-commit history vs ``git log -n 200`` on the same repo (<= 2x).

The repository is built with ``git fast-import`` (as tests/fixtures/git.py ``append_commits`` does): 20,000
commits, each changing one of 50 apps' values file. Timed side by side, alternating, medians:

* ``git log -n 200`` run with ``subprocess`` (default format, output captured): the yardstick;
* ``phases.git.GitRepo.log(limit=200)``: the page the picker asks the app for;
* first page on screen: ``widgets.rollback_picker.RollbackPickerScreen`` (page size 200) pushed in a headless
  app whose ``PageRequested`` handler loads the page in a thread worker with ``GitRepo.log`` and hands it to
  ``add_page``, as the app does; timed from ``push_screen`` to the end of the frame that shows the rows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from textual import on, work
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from bench.core import BenchContext, Figure, median, ms_since, resolve
from phases.git import CommitInfo, GitRepo

COMMITS: Final = 20_000
PAGE: Final = 200
APPS: Final = 50
IDENTITY: Final = b"Bench Author <bench@example.test>"


def git_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "gitconfig"
    config.write_text("[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(config), GIT_CONFIG_NOSYSTEM="1")
    return env


def make_repository(path: Path, commits: int, env: dict[str, str]) -> None:
    """A clone-like repository on ``main`` with ``commits`` commits, one second apart."""
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(path)], check=True, env=env)
    stream = bytearray()
    start = 1_700_000_000
    for n in range(1, commits + 1):
        subject = f"apps/app-{n % APPS:02d}: bump image to 1.{n // APPS}.{n % 7}".encode()
        content = f"image:\n  tag: 1.{n // APPS}.{n % 7}\nreplicas: {1 + n % 3}\n".encode()
        stamp = f"{start + n} +0000".encode()
        stream += b"commit refs/heads/main\n"
        stream += b"author " + IDENTITY + b" " + stamp + b"\n"
        stream += b"committer " + IDENTITY + b" " + stamp + b"\n"
        stream += b"data %d\n%s\n" % (len(subject), subject)
        stream += f"M 100644 inline clusters/production/apps/app-{n % APPS:02d}/values.yaml\n".encode()
        stream += b"data %d\n%s\n" % (len(content), content)
    # fast-import grows its heap in many small brk() calls, slow on this VM kind; a large top pad avoids them.
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=path,
        input=bytes(stream),
        check=True,
        env={**env, "MALLOC_TOP_PAD_": str(256 << 20)},
    )
    subprocess.run(["git", "reset", "--hard", "--quiet"], cwd=path, check=True, env=env)


def time_git_log(path: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(["git", "log", "-n", str(PAGE)], cwd=path, env=env, capture_output=True, check=True)
    return ms_since(start)


def time_repo_log(repo: GitRepo) -> float:
    start = time.perf_counter()
    commits = repo.log(limit=PAGE)
    elapsed = ms_since(start)
    assert len(commits) == PAGE
    return elapsed


class PickerHost(App[None]):
    """Answers the picker's page requests the way the app does: GitRepo.log in a thread worker."""

    def __init__(self, repo: GitRepo) -> None:
        super().__init__()
        self.repo = repo

    @work(thread=True, exclusive=True, group="page")
    def load_page(self, skip: int, limit: int) -> None:
        commits = self.repo.log(skip=skip, limit=limit)
        self.call_from_thread(self.show_page, commits)

    def show_page(self, commits: list[CommitInfo]) -> None:
        screen: Any = self.screen
        screen.add_page(commits, None)


def _picker_module_available() -> bool:
    try:
        import widgets.rollback_picker  # noqa: F401
    except ImportError:
        return False
    return True


def _stamp(marks: dict[str, float], name: str, done: asyncio.Future[None]) -> None:
    """Note the time, then resolve ``done``: stamped here, not when the awaiting task resumes, which is after
    whatever else the loop runs first."""
    marks[name] = time.perf_counter()
    resolve(done)


def _instrument(picker: Any, shown: asyncio.Future[None], marks: dict[str, float]) -> None:
    """Wrap ``picker.add_page`` to note when the page arrived and was added, and stamp ``shown`` right after
    the frame that follows (queued first: work the picker defers past that frame is not in it)."""
    original = picker.add_page

    def add_page(*args: Any, **kwargs: Any) -> None:
        marks["loaded"] = time.perf_counter()
        picker.call_after_refresh(_stamp, marks, "shown", shown)
        original(*args, **kwargs)
        marks["added"] = time.perf_counter()

    picker.add_page = add_page


async def time_picker(repo: GitRepo, rounds: int) -> dict[str, list[float]]:
    """Milliseconds from push_screen to the frame showing the first page, and where they went (``rounds``).

    Phases: ``mount`` push -> the screen asks for its first page (compose, CSS, first layout); ``load`` the
    page loaded in the worker and handed back to the UI thread; ``add`` ``add_page`` (200 DataTable rows);
    ``frame`` the next frame after it.
    """
    from widgets.rollback_picker import RollbackPickerScreen

    marks: dict[str, float] = {}

    class Host(PickerHost):
        @on(RollbackPickerScreen.PageRequested)
        def _page(self, message: RollbackPickerScreen.PageRequested) -> None:
            marks["requested"] = time.perf_counter()
            self.load_page(message.skip, message.limit)

    times: dict[str, list[float]] = {"total": [], "mount": [], "load": [], "add": [], "frame": []}
    app = Host(repo)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for round_number in range(rounds + 1):  # the first one warms up (CSS, DataTable code paths)
            picker = RollbackPickerScreen(page_size=PAGE, diff_delay=60)
            shown: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            _instrument(picker, shown, marks)
            marks.clear()
            start = time.perf_counter()
            await app.push_screen(picker)
            await asyncio.wait_for(shown, timeout=30)
            end = marks["shown"]
            assert picker.loaded_count == PAGE
            if round_number:
                times["total"].append((end - start) * 1000)
                times["mount"].append((marks["requested"] - start) * 1000)
                times["load"].append((marks["loaded"] - marks["requested"]) * 1000)
                times["add"].append((marks["added"] - marks["loaded"]) * 1000)
                times["frame"].append((end - marks["added"]) * 1000)
            app.pop_screen()
            await pilot.pause()
    return times


class _PlainScreen(Screen[None]):
    """The floor: a screen with one line and a footer, pushed and drawn."""

    def compose(self) -> ComposeResult:
        yield Static("one line")
        yield Footer()


async def time_plain_screen(rounds: int) -> list[float]:
    times: list[float] = []
    app: App[None] = App()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for round_number in range(rounds + 1):
            screen = _PlainScreen()
            shown: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            marks: dict[str, float] = {}
            start = time.perf_counter()
            await app.push_screen(screen)
            screen.call_after_refresh(_stamp, marks, "shown", shown)
            await asyncio.wait_for(shown, timeout=30)
            if round_number:
                times.append((marks["shown"] - start) * 1000)
            app.pop_screen()
            await pilot.pause()
    return times


async def run(ctx: BenchContext) -> list[Figure]:
    rounds = 7 if ctx.quick else 25
    env = git_env(ctx.workdir / "home")
    os.environ.update({key: env[key] for key in ("HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")})
    path = ctx.workdir / "deployments"
    started = time.perf_counter()
    make_repository(path, COMMITS, env)
    ctx.log(f"rollback_picker: {COMMITS} commits made in {ms_since(started) / 1000:.1f} s")
    repo = GitRepo(path)
    assert repo.count_commits() == COMMITS
    time_git_log(path, env)
    time_repo_log(repo)
    git_times: list[float] = []
    repo_times: list[float] = []
    for _ in range(rounds):
        git_times.append(time_git_log(path, env))
        repo_times.append(time_repo_log(repo))
    git_ms, repo_ms = median(git_times), median(repo_times)
    figures = [
        Figure(
            "rollback_git_log_200",
            git_ms,
            "ms",
            "-",
            f"`git log -n 200` on {COMMITS:,} commits, median of {rounds}",
        ),
        Figure("rollback_repo_log_200", repo_ms, "ms", "-", "phases.git.GitRepo.log(limit=200), same repo"),
        Figure("rollback_log_ratio", repo_ms / git_ms, "x", "<=2", "GitRepo.log / git log -n 200"),
    ]
    if _picker_module_available():
        screen = await time_picker(repo, max(3, rounds // 3))
        git_side = median([time_git_log(path, env) for _ in range(len(screen["total"]))])
        screen_ms = median(screen["total"])
        parts = ", ".join(
            f"{name} {median(screen[name]):.0f} ms" for name in ("mount", "load", "add", "frame")
        )
        figures += [
            Figure(
                "rollback_first_page_on_screen",
                screen_ms,
                "ms",
                "-",
                f"RollbackPickerScreen pushed -> 200 rows drawn, median of {len(screen['total'])}: {parts}",
            ),
            Figure(
                "rollback_screen_ratio",
                screen_ms / git_side,
                "x",
                "<=2",
                "first page on screen / git log -n 200",
            ),
            Figure(
                "rollback_screen_mount",
                median(screen["mount"]),
                "ms",
                "-",
                "push_screen -> first PageRequested",
            ),
            Figure(
                "rollback_screen_add_page",
                median(screen["add"]),
                "ms",
                "-",
                "add_page of 200 commits (DataTable rows)",
            ),
            Figure(
                "rollback_plain_screen_push",
                median(await time_plain_screen(len(screen["total"]))),
                "ms",
                "-",
                "the floor: push a Screen with one Static and a Footer until it is drawn, same app size",
            ),
        ]
    else:
        ctx.notes.append("widgets/rollback_picker.py not importable: no on-screen figure")
    return figures
