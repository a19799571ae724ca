"""Day 2 from the keyboard on a bootstrapped sandbox: s, R (offering resume), W, f, bulk, audit, cancel."""

from __future__ import annotations

import asyncio
import time

from textual.pilot import Pilot

from phases.audit import read_audit
from phases.kube import EXTERNAL_SECRETS, KUSTOMIZATIONS, KubeClient
from phases.resources import EXTERNAL_SECRET, KUSTOMIZATION, NodeKey
from sandbox.world import SandboxWorld
from tests.support.bootstrap import bootstrapped, sandbox_config
from tests.support.screen import screen_text
from tests.tui.test_app import wait_for, wait_for_screen
from tui.app import GitOpsApp
from widgets.audit_view import AuditScreen
from widgets.confirm import ConfirmScreen
from widgets.resource_tree import ResourceTree
from widgets.suspend_reason import SuspendReasonScreen

PRODUCTION: NodeKey = (KUSTOMIZATION, "flux-system", "production")
MYAPP_SECRETS: NodeKey = (EXTERNAL_SECRET, "myapp", "myapp-secrets")


async def select(pilot: Pilot[int], tree: ResourceTree, key: NodeKey) -> None:
    tree.focus()
    for _ in range(3):  # up to three passes over the tree: rows load lazily
        for _ in range(60):
            if tree.selected_key == key:
                return
            await pilot.press("down")
        await pilot.press("home")
    raise AssertionError(f"{key} not reachable with the keyboard; screen:\n{screen_text(pilot.app)}")


async def confirm_and_finish(pilot: Pilot[int], app: GitOpsApp) -> None:
    """Press "y" on the confirmation and wait until the action is over and audited.

    Not by catching ``day2_running`` on its way up: a quick action can start and end between two polls.
    """
    done = len(read_audit(app.audit.path))
    await pilot.press("y")
    await wait_for(pilot, lambda: len(read_audit(app.audit.path)) > done and not app.day2_running, timeout=60)


async def test_day2_actions_from_the_keyboard(sandbox_world: SandboxWorld) -> None:
    config, env = await bootstrapped(sandbox_world)
    kube = KubeClient(config.cluster.resolved_kubeconfig(), user_agent="test/1")

    app = GitOpsApp(config, command_env=env, sandbox=True)
    async with app.run_test(size=(100, 30)) as pilot:
        tree = app.query_one(ResourceTree)
        await wait_for(pilot, lambda: app.model.get(PRODUCTION) is not None)
        await select(pilot, tree, PRODUCTION)

        # s: suspend with a reason, after showing the exact call.
        await pilot.press("s")
        await wait_for_screen(pilot, SuspendReasonScreen)
        await pilot.press(*"db migration")
        assert "spec.suspend" in screen_text(app)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: bool(
                (kube.get(KUSTOMIZATIONS, "production", "flux-system") or {})["spec"].get("suspend")
            ),
        )
        annotations = kube.get(KUSTOMIZATIONS, "production", "flux-system")["metadata"]["annotations"]  # type: ignore[index]
        assert annotations["gitops-tui/suspend-reason"] == "db migration"
        await wait_for(pilot, lambda: bool(app.model.get(PRODUCTION) and app.model.get(PRODUCTION).suspended))  # type: ignore[union-attr]

        # R on a suspended object offers "resume and reconcile" instead of silently doing nothing.
        await pilot.press("R")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "is suspended" in screen_text(app)
        await confirm_and_finish(pilot, app)
        obj = kube.get(KUSTOMIZATIONS, "production", "flux-system")
        assert obj is not None and not obj["spec"].get("suspend")
        assert "gitops-tui/suspend-reason" not in (obj["metadata"].get("annotations") or {})
        assert (
            obj["status"]["lastHandledReconcileAt"]
            == obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"]
        )

        # W: the source first, then the Kustomization.
        await pilot.press("W")
        await wait_for_screen(pilot, ConfirmScreen)
        assert "GitRepository flux-system/flux-system" in screen_text(app)
        await confirm_and_finish(pilot, app)

        # f on an ExternalSecret forces a sync; on a Kustomization it is greyed out.
        assert app.check_action("force_sync", ()) is None
        await wait_for(pilot, lambda: app.model.get(MYAPP_SECRETS) is not None)
        before = (kube.get(EXTERNAL_SECRETS, "myapp-secrets", "myapp") or {})["status"]["refreshTime"]
        await select(pilot, tree, MYAPP_SECRETS)
        assert app.check_action("suspend", ()) is None
        await pilot.press("f")
        await wait_for_screen(pilot, ConfirmScreen)
        await confirm_and_finish(pilot, app)
        after = (kube.get(EXTERNAL_SECRETS, "myapp-secrets", "myapp") or {})["status"]["refreshTime"]
        assert after != before

        # S / U: bulk suspend and resume every Kustomization, with one confirmation listing them.
        await pilot.press("S")
        await wait_for_screen(pilot, SuspendReasonScreen)
        text = screen_text(app)
        assert "flux-system/production" in text and "flux-system/flux-system" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: all(k["spec"].get("suspend") for k in kube.list(KUSTOMIZATIONS)))
        await wait_for(pilot, lambda: not app.day2_running)
        await pilot.press("U")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: (
                not app.day2_running and not any(k["spec"].get("suspend") for k in kube.list(KUSTOMIZATIONS))
            ),
            timeout=60,
        )

        # a: every action is in the audit log, viewable in the UI.
        await pilot.press("a")
        await wait_for_screen(pilot, AuditScreen)
        text = screen_text(app)
        for action in ("suspend", "reconcile", "force-sync", "resume"):
            assert action in text
        await pilot.press("escape")


async def test_day2_keys_are_disabled_in_readonly_mode(sandbox_world: SandboxWorld) -> None:
    config, env = sandbox_config(sandbox_world)
    app = GitOpsApp(config, command_env=env, sandbox=True, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        for action in ("suspend", "resume", "reconcile", "reconcile_with_source", "force_sync", "bulk"):
            assert app.check_action(action, ()) is None
        await pilot.press("s", "S", "U")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, (SuspendReasonScreen, ConfirmScreen))


async def test_rollback_picker_reverts_a_merge_from_the_keyboard(sandbox_world: SandboxWorld) -> None:
    from phases.kube import DEPLOYMENTS
    from widgets.rollback_picker import RollbackPickerScreen

    config, env = await bootstrapped(sandbox_world)
    kube = KubeClient(config.cluster.resolved_kubeconfig(), user_agent="test/1")
    deadline = time.monotonic() + 60  # Flux applies every app; under load the last one can trail Ready
    while kube.get(DEPLOYMENTS, "webapp", "webapp") is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # polling the API server: there is no event to wait on
    assert kube.get(DEPLOYMENTS, "webapp", "webapp") is not None

    clone_url = sandbox_world.info.remote_path.as_uri()
    app = GitOpsApp(config, command_env=env, sandbox=True, clone_url=clone_url)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await wait_for_screen(pilot, RollbackPickerScreen)
        await wait_for(pilot, lambda: "Merge branch 'feature/webapp'" in screen_text(app))
        # What each Kustomization has applied: marked once the watcher has listed them.
        await wait_for(pilot, lambda: "◀ flux-system production" in screen_text(app))
        await pilot.press("j", "j")  # the third commit from the top is the merge
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Parent 1" in screen_text(app) or "parent" in screen_text(app).lower())
        await pilot.press("1")
        await wait_for_screen(pilot, ConfirmScreen)
        # A screen just pushed may not have drawn yet: wait for its text rather than read it at once.
        await wait_for(pilot, lambda: "git revert --no-edit --mainline 1" in screen_text(app))
        assert "git push" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: kube.get(DEPLOYMENTS, "webapp", "webapp") is None, timeout=90)
        await wait_for_screen(pilot, RollbackPickerScreen)
        # The new head at the top of the list (its subject is cut to the column's width).
        await wait_for(pilot, lambda: 'Revert "Merge branch' in screen_text(app), timeout=30)
        await pilot.press("escape")
        await pilot.press("a")
        await wait_for_screen(pilot, AuditScreen)
        assert "rollback-revert" in screen_text(app)


async def test_rollback_reset_needs_permission_and_a_typed_confirmation(sandbox_world: SandboxWorld) -> None:
    import dataclasses

    from phases.git import GitRepo
    from widgets.rollback_picker import RollbackPickerScreen

    config, env = sandbox_config(sandbox_world)
    clone_url = sandbox_world.info.remote_path.as_uri()
    remote = GitRepo(sandbox_world.info.remote_path)
    head_before = remote.head("refs/heads/main")

    refused = GitOpsApp(config, command_env=env, sandbox=True, clone_url=clone_url)
    async with refused.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await wait_for(pilot, lambda: "deploy: update myapp to v1.2.3" in screen_text(refused))
        await pilot.press("j", "X")
        await wait_for(pilot, lambda: "allow_force_push" in screen_text(refused))
        assert not isinstance(refused.screen, ConfirmScreen)

    allowed_config = dataclasses.replace(
        config, deployments=dataclasses.replace(config.deployments, allow_force_push=True)
    )
    app = GitOpsApp(allowed_config, command_env=env, sandbox=True, clone_url=clone_url)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("g")
        await wait_for_screen(pilot, RollbackPickerScreen)
        await wait_for(pilot, lambda: "deploy: update myapp to v1.2.3" in screen_text(app))
        await pilot.press("j", "X")
        await wait_for_screen(pilot, ConfirmScreen)
        await wait_for(pilot, lambda: "--force-with-lease" in screen_text(app))
        text = screen_text(app)
        assert "--force-with-lease" in text and "git reset --hard" in text
        await pilot.press("enter")  # not enough: the short sha must be typed first
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen) and remote.head("refs/heads/main") == head_before
        target = app.screen.typed_confirmation
        assert target is not None
        await pilot.press(*target, "enter")
        await wait_for(pilot, lambda: remote.head("refs/heads/main") != head_before, timeout=60)
        assert remote.head("refs/heads/main").startswith(target)
