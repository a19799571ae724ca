"""ResourceTree and ResourceDetails at 80x24: labels, symbols, incremental updates, filter, keys, details."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.pilot import Pilot
from textual.widgets import Input, Static

from phases.resources import (
    CLUSTER_SECRET_STORE,
    EXTERNAL_SECRET,
    HELM_RELEASE,
    KUSTOMIZATION,
    NodeKey,
    ResourceModel,
    ResourceNode,
    vault_path_key,
)
from tests.phases.test_resources import FLUX_NS, externalsecret, kustomization, ready, store
from widgets.resource_details import ResourceDetails
from widgets.resource_tree import HEADINGS, HEALTH_SYMBOLS, DetailRow, Heading, ResourceTree, Row

SnapCompare = Any  # the pytest-textual-snapshot fixture's callable

K_APPS = (KUSTOMIZATION, FLUX_NS, "apps")
K_INFRA = (KUSTOMIZATION, FLUX_NS, "infra")
ES_DB = (EXTERNAL_SECRET, "shop", "db")
ES_API = (EXTERNAL_SECRET, "shop", "api")
EVENTS: list[Mapping[str, Any]] = [
    {
        "type": "Normal",
        "reason": "Updated",
        "message": "Updated Secret",
        "count": 3,
        "lastTimestamp": "10:01",
    },
    {
        "type": "Warning",
        "reason": "UpdateFailed",
        "message": "could not get secret data",
        "lastTimestamp": "10:02",
    },
]


def failing(obj: dict[str, Any], message: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["status"]["conditions"] = [ready(message, status="False", reason="BuildFailed")]
    return obj


def sample_model() -> ResourceModel:
    model = ResourceModel()
    model.set_source_state("GitRepository", "ok")
    model.set_source_state(KUSTOMIZATION, "ok")
    model.set_source_state(HELM_RELEASE, "missing", "HelmRelease is not served")
    model.set_source_state(CLUSTER_SECRET_STORE, "ok")
    model.set_source_state(EXTERNAL_SECRET, "ok")
    model.upsert(kustomization("apps"))
    model.upsert(
        failing(kustomization("infra"), "kustomize build failed: accumulating resources from ./infra")
    )
    model.upsert(store())
    model.upsert(externalsecret())
    model.upsert(externalsecret("api", keys=("secret/shop/api",)))
    model.set_vault_paths("secret", {"shop/db": ["password", "user"]}, None)
    return model


class TreeHost(App[None]):
    CSS = """
    ResourceTree { width: 3fr; }
    ResourceDetails { width: 2fr; border-left: solid $primary; }
    """

    def __init__(self, model: ResourceModel, *, events: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__()
        self.model = model
        self.events = events
        self.shown: list[NodeKey] = []

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ResourceTree(id="tree")
            yield ResourceDetails(id="details")

    def on_mount(self) -> None:
        tree = self.query_one(ResourceTree)
        tree.load(self.model)
        tree.focus()

    def on_resource_tree_show_details(self, message: ResourceTree.ShowDetails) -> None:
        self.shown.append(message.key)
        self.query_one(ResourceDetails).show_node(self.model, message.key, self.events)


def tree_of(pilot: Pilot[None]) -> ResourceTree:
    return pilot.app.query_one(ResourceTree)


def label(tree: ResourceTree, key: NodeKey) -> str:
    return tree.label_of(key).plain


def details(tree: ResourceTree, key: NodeKey) -> list[str]:
    return [text.plain for text in tree.detail_labels(key)]


async def opened(pilot: Pilot[None], key: NodeKey) -> list[str]:
    """Open a row (detail rows are built on opening) and return its detail labels."""
    tree = tree_of(pilot)
    tree.open_row(key)
    await pilot.pause()
    return details(tree, key)


def heading(tree: ResourceTree, title: str) -> str:
    return next(text for name in HEADINGS if (text := tree.heading_label(name).plain).startswith(title))


def cursor(tree: ResourceTree) -> Row | None:
    return tree.cursor_row  # through a function: mypy would keep narrowing the property between keys


def all_lines(tree: ResourceTree) -> list[str]:
    return [tree.line_text(line) for line in range(tree.line_count)]


def screen_lines(tree: ResourceTree) -> list[str]:
    return [tree.render_line(y).text for y in range(tree.size.height)]


class LabelSpy:
    """Records the resource labels the tree builds (it builds them lazily, for rows being drawn)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[str] = []
        original = ResourceTree._resource_label

        def spy(tree: ResourceTree, node: ResourceNode, model: ResourceModel) -> Text:
            text = original(tree, node, model)
            self.built.append(text.plain)
            return text

        monkeypatch.setattr(ResourceTree, "_resource_label", spy)


async def test_rows_lead_with_a_health_symbol_and_show_short_status() -> None:
    async with TreeHost(sample_model()).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        assert label(tree, K_APPS) == "✔ apps (flux-system)  main@0123456"
        assert label(tree, K_INFRA) == "✘ infra (flux-system)  kustomize build failed: accumulating re…"
        assert details(tree, K_APPS) == []  # closed: no detail rows built yet
        assert tree.has_details(K_APPS) and not tree.has_details(K_INFRA)
        assert await opened(pilot, K_APPS) == ["applies 2 ExternalSecrets"]
        assert await opened(pilot, ES_DB) == ["secret: db-credentials", "vault: secret/shop/db ✔ exists"]
        assert (await opened(pilot, ES_API))[1] == "vault: secret/shop/api ✘ missing"
        db_path = vault_path_key("shop/db")
        assert label(tree, db_path) == "✔ shop/db  2 keys"
        assert await opened(pilot, db_path) == ["· password", "· user", "read by: shop/db"]
        assert label(tree, vault_path_key("shop/api")) == "! shop/api  missing in Vault"
        assert heading(tree, "Kustomizations") == "Kustomizations (2)  ✔ 1  ✘ 1"
        assert heading(tree, "HelmReleases") == "HelmReleases (0) — not installed"
        assert heading(tree, "Vault") == "Vault secret/ (2)  ✔ 1  ! 1"
        assert heading(tree, "Flux") == "Flux  ✔ 1  ✘ 1"
        lines = screen_lines(tree)
        assert any("✘ infra" in line for line in lines)
        assert any("! shop/api" in line for line in lines)
        # Guides and open/closed icons as Textual's Tree draws them.
        assert all_lines(tree)[:6] == [
            "▼ Flux  ✔ 1  ✘ 1",
            "├ ▼ GitRepositories (0)",
            "├ ▼ Kustomizations (2)  ✔ 1  ✘ 1",
            "│ ├ ▼ ✔ apps (flux-system)  main@0123456",
            "│ │ └ applies 2 ExternalSecrets",
            "│ └ ✘ infra (flux-system)  kustomize build failed: accumulating re…",
        ]
        assert "  └ ▶ ✔ shop/api  missing in Vault" not in all_lines(tree)
        assert "├ ▶ ! shop/api  missing in Vault" in all_lines(tree)


async def test_source_and_vault_states_show_in_the_headings() -> None:
    model = sample_model()
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        model.set_source_state(EXTERNAL_SECRET, "unreachable", "connection refused")
        changed = model.set_vault_paths("secret", None, "Vault is sealed")
        tree.apply_changes(model, changed)
        await pilot.pause()
        assert heading(tree, "ExternalSecrets") == "ExternalSecrets (2) — unreachable  ✔ 2"
        assert heading(tree, "Vault").startswith("Vault secret/ — sealed (2)")
        assert label(tree, vault_path_key("shop/db")) == "? shop/db  sealed"
        assert (await opened(pilot, ES_DB))[1] == "vault: secret/shop/db ? unknown"
        assert any("? shop/db  sealed" in line for line in screen_lines(tree))


async def test_only_changed_rows_are_relabelled(monkeypatch: pytest.MonkeyPatch) -> None:
    model = sample_model()
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        await pilot.pause()
        others = model.keys() - {ES_DB}
        kept = {key: tree.label_of(key) for key in others}  # the labels drawn so far
        spy = LabelSpy(monkeypatch)

        changed = model.upsert(externalsecret(synced=False))
        assert changed == {ES_DB}
        tree.apply_changes(model, changed)
        await pilot.pause()

        assert spy.built == ["✘ db (shop)  could not get secret data from provider"]
        assert {key: tree.label_of(key) for key in others} == kept
        assert all(tree.label_of(key) is kept[key] for key in others)  # the same cached labels
        assert heading(tree, "External Secrets") == "External Secrets  ✔ 2  ✘ 1"
        assert heading(tree, "ExternalSecrets") == "ExternalSecrets (2)  ✔ 1  ✘ 1"
        assert any("✘ db (shop)" in line for line in screen_lines(tree))

        spy.built.clear()
        tree.apply_changes(model, model.upsert(externalsecret(synced=False)))  # a no-op change
        await pilot.pause()
        assert spy.built == []


async def test_links_update_both_rows_when_an_externalsecret_moves() -> None:
    model = sample_model()
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        await opened(pilot, K_APPS)
        await opened(pilot, ES_API)
        changed = model.upsert(externalsecret(applied_by="infra"))
        assert {ES_DB, K_APPS, K_INFRA} <= changed
        tree.apply_changes(model, changed)
        # The open row is updated in place; the closed one only learns that it now has something to show.
        assert details(tree, K_APPS) == ["applies 1 ExternalSecret"]
        assert tree.has_details(K_INFRA) and details(tree, K_INFRA) == []
        assert await opened(pilot, K_INFRA) == ["applies 1 ExternalSecret"]

        changed = model.set_vault_paths("secret", {"shop/db": ["password"], "shop/api": ["token"]}, None)
        tree.apply_changes(model, changed)
        assert details(tree, ES_API)[1] == "vault: secret/shop/api ✔ exists"
        assert label(tree, vault_path_key("shop/api")) == "✔ shop/api  1 key"

        tree.move_cursor(DetailRow(K_APPS, 0))
        tree.apply_changes(model, model.delete(EXTERNAL_SECRET, "shop", "api"))
        tree.apply_changes(model, model.delete(EXTERNAL_SECRET, "shop", "db"))
        assert details(tree, K_APPS) == [] and not tree.has_details(K_APPS)
        assert not tree.is_expanded(K_APPS)  # nothing left to show: closed
        assert cursor(tree) == K_APPS  # its detail row went: the cursor moved up to it


async def test_rows_are_added_in_order_and_removed_with_the_cursor_kept() -> None:
    model = sample_model()
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        tree.apply_changes(model, model.upsert(kustomization("base")))
        await pilot.pause()
        names = [line.split(" (flux-system)")[0].split()[-1] for line in all_lines(tree) if "(flux-" in line]
        assert names == ["apps", "base", "infra"]

        tree.move_cursor(K_INFRA)
        await pilot.pause()
        assert tree.selected_key == K_INFRA
        tree.apply_changes(model, model.upsert(kustomization("aaa")))  # a row above the cursor
        assert tree.selected_key == K_INFRA  # the cursor stays on its row, not on its line number
        tree.apply_changes(model, model.delete(KUSTOMIZATION, FLUX_NS, "infra"))
        await pilot.pause()
        assert K_INFRA not in tree.shown_keys()
        assert tree.selected_key == (KUSTOMIZATION, FLUX_NS, "base")  # the previous sibling
        assert heading(tree, "Kustomizations") == "Kustomizations (3)  ✔ 3"
        for name in ("aaa", "apps", "base"):
            tree.apply_changes(model, model.delete(KUSTOMIZATION, FLUX_NS, name))
        assert cursor(tree) == Heading(KUSTOMIZATION)  # no sibling left: the parent


async def test_the_keyboard_moves_opens_and_closes_rows() -> None:
    app = TreeHost(sample_model())
    async with app.run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        assert [cursor(tree)] == [None]  # no cursor until a key moves it
        await pilot.press("j")
        assert cursor(tree) == Heading("flux")
        await pilot.press("down", "j", "j")
        assert tree.selected_key == K_APPS
        await pilot.press("space")  # open
        assert details(tree, K_APPS) == ["applies 2 ExternalSecrets"]
        await pilot.press("j")
        assert cursor(tree) == DetailRow(K_APPS, 0) and tree.selected_key == K_APPS
        await pilot.press("left")  # from a detail row to its resource
        assert cursor(tree) == K_APPS
        await pilot.press("left")  # close it
        assert not tree.is_expanded(K_APPS)
        await pilot.press("left")  # a closed resource: to its group
        assert cursor(tree) == Heading(KUSTOMIZATION)
        await pilot.press("left")  # close the group
        assert not tree.is_expanded(KUSTOMIZATION) and not any("apps" in line for line in all_lines(tree))
        await pilot.press("right")  # open it again
        await pilot.press("right")  # open: to its first row
        assert cursor(tree) == K_APPS
        await pilot.press("right")  # a resource with details: open it
        assert tree.is_expanded(K_APPS)
        await pilot.press("end")
        assert tree.cursor_line == tree.line_count - 1
        await pilot.press("home", "k")  # up from the top stays there
        assert tree.cursor_line == 0
        await pilot.press("pagedown")
        assert tree.cursor_line == min(tree.line_count - 1, tree.size.height - 1)
        await pilot.press("pageup")
        assert tree.cursor_line == 0
        await pilot.press("enter")  # on a section: fold it
        assert not tree.is_expanded("flux") and "├ ▼ Kustomizations (2)  ✔ 1  ✘ 1" not in all_lines(tree)
        await pilot.press("enter")
        assert tree.is_expanded("flux")
        assert app.shown == []  # headings have no details to show


async def test_a_click_moves_the_cursor_and_shows_the_details() -> None:
    app = TreeHost(sample_model())
    async with app.run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        line = all_lines(tree).index(next(text for text in all_lines(tree) if "✘ infra" in text))
        await pilot.click(ResourceTree, offset=(10, line))
        await pilot.pause()
        assert tree.selected_key == K_INFRA and app.shown == [K_INFRA]
        apps_line = all_lines(tree).index(next(text for text in all_lines(tree) if "✔ apps" in text))
        await pilot.click(ResourceTree, offset=(4, apps_line))  # on its ▶: opens it
        await pilot.pause()
        assert tree.is_expanded(K_APPS) and app.shown == [K_INFRA]


async def test_closing_a_heading_takes_the_cursor_with_it() -> None:
    async with TreeHost(sample_model()).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        tree.move_cursor(ES_DB)
        tree.close_row("eso")
        assert cursor(tree) == Heading("eso")
        tree.open_row("eso")
        assert cursor(tree) == Heading("eso")


async def test_filter_hides_non_matching_rows_and_escape_restores_them() -> None:
    async with TreeHost(sample_model()).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        await pilot.press("slash")
        field = tree.query_one("#resource-filter", Input)
        assert field.has_focus and field.display
        await pilot.press("D", "b")
        await pilot.pause()

        assert tree.filter_text == "db"
        assert tree.shown_keys() == {ES_DB, vault_path_key("shop/db")}
        assert heading(tree, "ExternalSecrets") == "ExternalSecrets (1/2)  ✔ 2"
        assert any(" db" in line for line in screen_lines(tree))

        await pilot.press("enter")  # keep the filter, back to the tree
        assert tree.has_focus and tree.filter_text == "db"
        await pilot.press("escape")
        await pilot.pause()
        assert tree.filter_text == ""
        assert tree.shown_keys() == pilot.app.model.keys()  # type: ignore[attr-defined]
        assert heading(tree, "ExternalSecrets") == "ExternalSecrets (2)  ✔ 2"

        tree.set_filter("KUSTOMIZATION")  # kind matches too
        assert {key[0] for key in tree.shown_keys()} == {KUSTOMIZATION}


async def test_escape_is_left_to_the_app_when_no_filter_is_active() -> None:
    class EscapeHost(TreeHost):
        BINDINGS = [("escape", "escaped", "Back")]
        escapes = 0

        def action_escaped(self) -> None:
            self.escapes += 1

    app = EscapeHost(sample_model())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape")
        assert app.escapes == 1
        tree_of(pilot).set_filter("db")
        await pilot.press("escape")  # clears the filter instead
        assert app.escapes == 1 and tree_of(pilot).filter_text == ""


async def test_a_theme_change_restyles_existing_rows() -> None:
    app = TreeHost(sample_model())
    async with app.run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)

        def symbol_colour() -> object:
            return tree.label_of(K_APPS).get_style_at_offset(pilot.app.console, 0).color

        before = symbol_colour()
        app.theme = "gruvbox"
        for _ in range(5):  # the theme's variables reach the widget's styles over a few refreshes
            await pilot.pause()
            if symbol_colour() != before:
                break
        assert symbol_colour() != before


async def test_enter_posts_show_details_for_the_row_or_what_it_points_at() -> None:
    async with TreeHost(sample_model(), events=EVENTS).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        app = pilot.app
        assert isinstance(app, TreeHost)
        tree.move_cursor(ES_DB)
        await pilot.press("enter")
        await pilot.pause()
        assert app.shown == [ES_DB]
        assert app.query_one(ResourceDetails).key == ES_DB

        await opened(pilot, ES_DB)
        tree.move_cursor(DetailRow(ES_DB, 1))  # "vault: secret/shop/db ✔ exists"
        await pilot.press("enter")
        await pilot.pause()
        assert app.shown[-1] == vault_path_key("shop/db")

        tree.move_cursor(Heading(EXTERNAL_SECRET))
        await pilot.press("enter")  # a group has nothing to show: it folds instead
        await pilot.pause()
        assert len(app.shown) == 2 and not tree.is_expanded(EXTERNAL_SECRET)


async def test_symbols_stay_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    model = sample_model()
    suspended = kustomization("paused")
    suspended["spec"]["suspend"] = True
    model.upsert(suspended)
    pending = kustomization("new")
    del pending["status"]
    model.upsert(pending)
    model.upsert({**externalsecret("orphan", keys=()), "status": {}})
    async with TreeHost(model).run_test(size=(80, 40)) as pilot:
        assert pilot.app.no_color
        text = "\n".join(screen_lines(tree_of(pilot)))
        for health in ("ready", "not-ready", "progressing", "suspended", "missing"):
            assert HEALTH_SYMBOLS[health] in text, health
        assert "⏸ paused (flux-system)  suspended" in text
        assert "◐ new (flux-system)" in text


async def test_changes_before_mount_are_applied_on_mount() -> None:
    model = sample_model()

    class EarlyHost(TreeHost):
        def compose(self) -> ComposeResult:
            tree = ResourceTree()
            tree.apply_changes(self.model, self.model.keys())
            yield tree

        def on_mount(self) -> None:
            pass

    async with EarlyHost(model).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert tree_of(pilot).shown_keys() == model.keys()


async def test_an_empty_tree_shows_its_headings() -> None:
    class EmptyHost(App[None]):
        def compose(self) -> ComposeResult:
            yield ResourceTree()

    async with EmptyHost().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tree = tree_of(pilot)
        assert all_lines(tree)[:3] == ["▼ Flux", "├ ▼ GitRepositories", "├ ▼ Kustomizations"]
        await pilot.press("down", "enter")
        assert cursor(tree) == Heading("flux") and not tree.is_expanded("flux")


async def test_details_panel_renders_odd_objects_and_events() -> None:
    model = sample_model()
    huge = "kustomize build failed: " + "very long error " * 640  # ~10 KB
    odd = kustomization("odd")
    odd["status"] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "BuildFailed",
                "message": huge,
                "observedGeneration": 1,
            },
            {"type": "SomethingNew", "status": "Maybe", "reason": None},
            "not a condition",
        ]
    }
    model.upsert(odd)
    model.upsert({"kind": KUSTOMIZATION, "metadata": {"name": "bare", "namespace": FLUX_NS}, "status": "x"})
    weird_events: list[Mapping[str, Any]] = [
        {"reason": "NoTimestamp"},
        {
            "type": "Warning",
            "message": "[bold]not markup[/bold]",
            "series": {"count": "7"},
            "eventTime": "11:00",
        },
        {"count": "many", "metadata": {"creationTimestamp": "09:00"}},
    ]
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        details = pilot.app.query_one(ResourceDetails)
        console = Console(width=40, record=True, file=None, color_system=None, legacy_windows=False)

        def rendered(key: NodeKey, events: Sequence[Mapping[str, Any]] = ()) -> str:
            details.show_node(model, key, events)
            node = model.get(key)
            assert node is not None
            with console.capture() as capture:
                console.print(details.render_node(model, node, events))
            return capture.get()

        text = rendered((KUSTOMIZATION, FLUX_NS, "odd"), weird_events)
        assert all(len(line) <= 40 for line in text.splitlines())  # wrapped, not cut or overflowing
        assert "very long error" in text and "SomethingNew" in text and "? SomethingNew  Maybe" in text
        flowing = " ".join(text.split())
        assert 640 <= flowing.count("very long error") < 700  # in full once (conditions), not twice
        assert "[bold]not markup[/bold]" in text  # cluster text is never parsed as markup
        assert "NoTimestamp" in text and "7" in text

        assert "no conditions reported" in rendered((KUSTOMIZATION, FLUX_NS, "bare"))
        es_text = rendered(ES_DB, EVENTS)
        assert "vault secret/shop/db ✔ exists" in es_text
        assert "Secret shop/db-credentials" in es_text
        assert "✘ UpdateFailed" in es_text
        assert "read by ✔ ExternalSecret shop/db" in rendered(vault_path_key("shop/db"))
        assert "applies ✔ ExternalSecret shop/api" in rendered(K_APPS)

        details.show_node(model, (KUSTOMIZATION, FLUX_NS, "gone"))
        await pilot.pause()
        body = details.query_one("#resource-details-body", Static)
        assert "no longer exists" in str(body.render())


async def test_a_large_tree_draws_only_the_visible_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ResourceModel()
    model.replace_kind(KUSTOMIZATION, [kustomization(f"k{i:04d}") for i in range(1_500)])
    spy = LabelSpy(monkeypatch)
    async with TreeHost(model).run_test(size=(80, 24)) as pilot:
        tree = tree_of(pilot)
        await pilot.pause()
        assert len(tree.shown_keys()) == 1_500 and tree.line_count == 1_508  # and 8 headings
        assert 0 < len(spy.built) <= tree.size.height  # labels for the rows on screen, not for 1,500
        spy.built.clear()

        tree.apply_changes(model, model.upsert(failing(kustomization("k0750"), "broken")))
        await pilot.pause()
        assert spy.built == []  # off screen: nothing built or drawn
        assert label(tree, (KUSTOMIZATION, FLUX_NS, "k0750")).startswith("✘ k0750")

        tree.move_cursor((KUSTOMIZATION, FLUX_NS, "k0750"))  # scrolls there
        await pilot.pause()
        assert any("✘ k0750" in line for line in screen_lines(tree))
        await pilot.press("end")
        await pilot.pause()
        assert any("Vault" in line for line in screen_lines(tree))

        # A row too wide for the pane ends in "…" left of the scrollbar (no sideways scrolling).
        tree.apply_changes(model, model.upsert(kustomization("k" * 120)))
        tree.move_cursor((KUSTOMIZATION, FLUX_NS, "k" * 120))
        await pilot.pause()
        visible = tree.scrollable_content_region.width
        assert visible < tree.size.width  # the scrollbar is there
        wide = next(line for line in screen_lines(tree) if "kkkk" in line)
        assert wide[:visible].endswith("…") and not wide[visible:].strip()


def select_and_show(key: NodeKey) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        tree = tree_of(pilot)
        tree.open_row(key)
        await pilot.pause()
        tree.move_cursor(key)
        await pilot.press("enter")
        await pilot.pause()

    return run_before


def test_snapshot_tree_with_details_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(
        TreeHost(sample_model(), events=EVENTS), terminal_size=(80, 24), run_before=select_and_show(ES_DB)
    )


def test_snapshot_tree_with_details_120x40(snap_compare: SnapCompare) -> None:
    assert snap_compare(
        TreeHost(sample_model(), events=EVENTS), terminal_size=(120, 40), run_before=select_and_show(K_INFRA)
    )
