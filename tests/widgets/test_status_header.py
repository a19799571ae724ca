"""StatusHeader: one line, every state readable from symbols and words."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult

from widgets.status_header import INSECURE_BADGE, VAULT_BADGES, RepoRef, StatusHeader, VaultState


class HeaderApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StatusHeader()


def first_line(app: App[Any]) -> str:
    update = app.screen._compositor.render_full_update(simplify=True)
    return "".join(segment.text for segment in next(iter(update.strips[0])))


async def test_it_shows_context_vault_repo_and_mode_badges() -> None:
    app = HeaderApp()
    async with app.run_test(size=(120, 24)) as pilot:
        header = app.query_one(StatusHeader)
        header.update_status(
            context="k3s-default",
            vault="unsealed",
            repo=RepoRef("main", "1a2b3c4d5e6f7a8b"),
            readonly=True,
            sandbox=True,
        )
        await pilot.pause()
        line = first_line(app)
        assert line.startswith(" gitops-tui ")
        assert "SANDBOX" in line and "READONLY" in line
        assert "ctx k3s-default" in line
        assert "vault ✔ unsealed" in line
        assert "repo main@1a2b3c4" in line and "1a2b3c4d" not in line


async def test_update_status_changes_only_what_it_is_given() -> None:
    app = HeaderApp()
    async with app.run_test(size=(120, 24)) as pilot:
        header = app.query_one(StatusHeader)
        header.update_status(context="prod", vault="sealed", readonly=True)
        header.update_status(vault="unreachable")
        await pilot.pause()
        line = first_line(app)
        assert "ctx prod" in line and "READONLY" in line
        assert "vault ✘ unreachable" in line
        header.update_status(readonly=False, context=None)
        await pilot.pause()
        line = first_line(app)
        assert "READONLY" not in line and "no context" in line


@pytest.mark.parametrize("state", list(VAULT_BADGES))
async def test_every_vault_state_has_its_own_symbol(state: VaultState) -> None:
    app = HeaderApp()
    async with app.run_test(size=(100, 24)) as pilot:
        app.query_one(StatusHeader).update_status(vault=state)
        await pilot.pause()
        assert f"vault {VAULT_BADGES[state][0]} {state}" in first_line(app)
    assert len({symbol for symbol, _ in VAULT_BADGES.values()}) == len(VAULT_BADGES)


async def test_at_80_columns_it_drops_labels_before_cutting_values() -> None:
    app = HeaderApp()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one(StatusHeader).update_status(
            context="k3s-default",
            vault="unsealed",
            repo=RepoRef("main", "1a2b3c4d"),
            readonly=True,
            sandbox=True,
        )
        await pilot.pause()
        line = first_line(app)
        assert len(line) == 80
        assert "SANDBOX" in line and "READONLY" in line
        assert "k3s-default" in line and "ctx " not in line
        assert line.rstrip().endswith("main@1a2b3c4")


async def test_control_characters_in_names_never_reach_the_terminal() -> None:
    app = HeaderApp()
    async with app.run_test(size=(120, 24)) as pilot:
        app.query_one(StatusHeader).update_status(
            context="evil\x1b]0;pwned\x07ctx", repo=RepoRef("ma\rin", "abc")
        )
        await pilot.pause()
        line = first_line(app)
        assert "\x1b" not in line and "\r" not in line
        assert "evilctx" in line and "ma␍in@abc" in line


async def test_vault_tls_turned_off_shows_a_warning_badge_that_narrow_terminals_keep() -> None:
    app = HeaderApp()
    async with app.run_test(size=(60, 24)) as pilot:
        header = app.query_one(StatusHeader)
        header.update_status(context="k3s-default", vault="unsealed", sandbox=True)
        await pilot.pause()
        assert INSECURE_BADGE not in first_line(app)
        header.update_status(vault_insecure=True)
        await pilot.pause()
        line = first_line(app)
        # First among the badges: the rest of the line is cut before the warning is.
        assert line.startswith(f" gitops-tui  {INSECURE_BADGE} ") or line.startswith(f" {INSECURE_BADGE} ")
        assert "SANDBOX" in line
        header.update_status(vault_insecure=False)
        await pilot.pause()
        assert INSECURE_BADGE not in first_line(app)
