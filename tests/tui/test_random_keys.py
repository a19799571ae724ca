"""Thousands of random keys and some pastes on a bootstrapped sandbox: nothing breaks, no modal is stuck,
and nothing changes in the cluster without a confirmation that was shown and accepted.

Seeded: a failure prints its seed; run again with ``RANDOM_KEYS_SEED=<seed>`` to replay it.
"""

from __future__ import annotations

import os
import random
import string

from textual import events
from textual.binding import Binding

from phases.audit import read_audit
from sandbox.world import SandboxWorld
from tests.support.bootstrap import bootstrapped
from tests.tui.test_app import wait_for
from tui.app import GitOpsApp
from widgets.audit_view import AuditScreen
from widgets.confirm import ConfirmScreen
from widgets.help_screen import HelpScreen
from widgets.rollback_picker import RollbackPickerScreen
from widgets.secret_prompt import SecretPromptScreen
from widgets.step_details import StepDetailsScreen
from widgets.suspend_reason import SuspendReasonScreen

APP_AGENT = "gitops-tui/"
KEY_COUNT = int(os.environ.get("RANDOM_KEYS_COUNT", "2000"))
CHUNK = 10
PASTE_EVERY = 100  # on average, one paste per this many keys
# Quitting ends the session under test, and the command palette can run "Quit": not drawn.
NEVER = {"q", "ctrl+q", "ctrl+c", "ctrl+p"}
MODALS = (
    AuditScreen,
    ConfirmScreen,
    HelpScreen,
    RollbackPickerScreen,
    SecretPromptScreen,
    StepDetailsScreen,
    SuspendReasonScreen,
)
# What an audited action on an object may change besides that object: the source it reconciles first.
AUDIT_KINDS = {
    "Kustomization": "kustomizations",
    "GitRepository": "gitrepositories",
    "HelmRelease": "helmreleases",
    "ExternalSecret": "externalsecrets",
}
KEY_CHARS = {"slash": "/", "question_mark": "?", "space": " ", "tab": "\t", "enter": "\r", "escape": "\x1b"}
PASTES = ("flux-system", "ghp_notatoken\n", "\x1b[31mred\x1b[0m", "a" * 300, "line one\nline two", "é🙂\t")


def key_pool() -> list[str]:
    keys: set[str] = set()
    for owner in (GitOpsApp, *MODALS):
        for binding in getattr(owner, "BINDINGS", []):
            if isinstance(binding, Binding):
                keys.update(key.strip() for key in binding.key.split(","))
    keys.update(string.ascii_letters + string.digits)
    keys.update(("up", "down", "left", "right", "home", "end", "escape", "enter", "tab", "shift+tab"))
    keys.update(("slash", "question_mark", "space", "backspace"))
    return sorted(keys - NEVER)


def send_keys(app: GitOpsApp, keys: list[str]) -> None:
    """Queue key events as the terminal driver does (Pilot.press, without waiting after every key)."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        char = key if len(key) == 1 else KEY_CHARS.get(key)
        event = events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)


def mutation_target(path: str) -> tuple[str, str, str]:
    """(plural, namespace, name) of a request path such as /apis/g/v/namespaces/ns/plural/name/status."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        at = parts.index("namespaces")
        if len(parts) > at + 3:
            return parts[at + 2], parts[at + 1], parts[at + 3]
    return parts[-2] if len(parts) >= 2 else path, "", parts[-1]


async def test_random_keys_and_pastes(sandbox_world: SandboxWorld) -> None:
    seed = int(os.environ.get("RANDOM_KEYS_SEED") or random.randrange(2**32))
    print(f"random keys seed: {seed} (replay with RANDOM_KEYS_SEED={seed})")
    rng = random.Random(seed)
    config, env = await bootstrapped(sandbox_world)
    emulator = sandbox_world.emulator
    emulator.clear_requests()
    pool = key_pool()
    bootstrap_requests: set[int] = set()  # request indexes seen while a (confirmed) bootstrap ran

    app = GitOpsApp(config, command_env=env, sandbox=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: len(app.model) > 0)  # the tree is there: day-2 keys have targets
        seen, was_running = len(emulator.requests()), False
        driver = app._driver
        assert driver is not None
        for index in range(0, KEY_COUNT, CHUNK):
            # Keys in short runs, as a fast typist sends them (one wait for the app per run, not per key).
            keys = [rng.choice(pool) for _ in range(CHUNK)]
            send_keys(app, keys)
            await pilot.pause()
            if rng.randrange(PASTE_EVERY // CHUNK) == 0:
                # As the terminal driver delivers it: to the app, which hands it to the focused widget.
                paste = events.Paste(rng.choice(PASTES))
                paste.set_sender(app)
                driver.send_message(paste)
                await pilot.pause()
            # A bootstrap runs only once confirmed: the requests made while it ran are that confirmation's.
            now, running = len(emulator.requests()), app.bootstrap_running
            if running or was_running:
                bootstrap_requests.update(range(seen, now))
            seen, was_running = now, running
            assert app.is_running, f"the app stopped after keys {index}..{index + CHUNK} {keys} (seed {seed})"

        # Let running actions end (x cancels a day-2 wait), then escape out of whatever is open.
        await pilot.press("x")
        if app.engine is not None and app.bootstrap_running:
            app.engine.cancel()  # a confirmed bootstrap may be waiting on a suspended object: stop it
        await wait_for(pilot, lambda: not app.day2_running and not app.bootstrap_running, timeout=60)
        if was_running:
            bootstrap_requests.update(range(seen, len(emulator.requests())))
        for _ in range(6):
            await pilot.press("escape")
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        assert app.is_running, f"seed {seed}"
        assert len(app.screen_stack) == 1, f"a modal is stuck: {app.screen_stack} (seed {seed})"
        assert not isinstance(app.screen, MODALS)

    # Every mutating request of gitops-tui is on an object an audited, confirmed action was about (or
    # was made by a bootstrap, which runs only after its own confirmation).
    audited = read_audit(app.audit.path, limit=100_000)
    targets = {(AUDIT_KINDS.get(entry.kind, entry.kind), entry.namespace, entry.name) for entry in audited}
    sources_too = any(e.action == "reconcile-with-source" or e.action.startswith("rollback") for e in audited)
    rollbacks = any(entry.action.startswith("rollback") for entry in audited)
    unconfirmed = []
    for position, request in enumerate(emulator.requests()):
        if not (request.is_mutating and request.user_agent.startswith(APP_AGENT)):
            continue
        if position in bootstrap_requests:
            continue
        plural, namespace, name = mutation_target(request.path)
        if (plural, namespace, name) in targets:
            continue
        if (plural == "gitrepositories" and sources_too) or (plural == "kustomizations" and rollbacks):
            continue
        unconfirmed.append(f"{request.method} {request.path}")
    assert unconfirmed == [], f"mutations without a confirmed action (seed {seed}): {unconfirmed[:10]}"
    print(f"{len(audited)} audited actions, {len(bootstrap_requests)} bootstrap requests")
