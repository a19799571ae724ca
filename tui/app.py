"""The gitops-tui App: one screen for the bootstrap and for day 2.

It wires the engine's event stream (run in a Textual worker) and the resource
watcher to the widgets. Nothing heavy happens before the first full frame: the
phase list (every phase module, the Kubernetes client), the clients (kubernetes,
hvac) and a sandbox still starting are awaited after it, in workers; screens
other than the main one are imported when they are first pushed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import re
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from phases.config import Config
from phases.events import Event, OutputLines, PhaseFinished, PhaseInfo, RunFinished, RunStarted, StepFailed
from phases.resources import NodeKey, ResourceModel
from phases.secrets import SecretStore, SecretValue
from phases.state import StateLocked, StateStore, write_private_file
from widgets.confirm import ConfirmScreen
from widgets.log_pane import LogPane
from widgets.resource_details import ResourceDetails
from widgets.resource_tree import ResourceTree
from widgets.status_header import RepoRef, StatusHeader
from widgets.timeline import PhaseTimeline

if TYPE_CHECKING:
    from phases.audit import AuditLog
    from phases.day2 import Action as Day2Action
    from phases.day2 import ActionResult
    from phases.engine import Engine, SecretRequest
    from phases.platform import Platform
    from phases.rollback import ActionPlan, RollbackOutcome, RollbackPlanner
    from phases.watch import ResourceWatcher, WatchBatch
    from tui.cli import Session
    from widgets.rollback_picker import RollbackChoice, RollbackPickerScreen

MIN_WIDTH, MIN_HEIGHT = 60, 16
VAULT_POLL_SECONDS = 10.0
FIRST_FRAME_FALLBACK_SECONDS = 1.0  # start-up work waits for the footer's first frame, at most this long
# What works while a sandbox is still starting: nothing that needs the cluster, Vault or the config it brings.
STARTING_ACTIONS: frozenset[str] = frozenset(
    {"request_quit", "help", "focus_next", "focus_previous", "close_details", "log_this_step"}
)


def current_context(kubeconfig: Path) -> str:
    """The kubeconfig's current-context, by regex: no YAML or client import before the first paint."""
    try:
        text = kubeconfig.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "no kubeconfig"
    found = re.search(r"^current-context:[ \t]*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
    return found.group(1) if found else "default"


class EngineEvent(Message):
    """One engine event, delivered to the UI thread by the bootstrap worker."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class _Footer(Footer):
    """The footer, telling the app when its keys are first drawn: the first full frame, the footer being
    laid out last (it fills in its keys a refresh after the rest)."""

    async def recompose(self) -> None:
        await super().recompose()
        if self.children and isinstance(self.app, GitOpsApp) and not self.app._first_frame_done:
            self.call_after_refresh(self.app._first_frame_drawn)


class GitOpsApp(App[int]):
    TITLE = "gitops-tui"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "bootstrap", "Bootstrap", id="bootstrap"),
        Binding("tab", "focus_next", "Next pane", show=False, id="focus_next"),
        Binding("shift+tab", "focus_previous", "Previous pane", show=False, id="focus_previous"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("s", "suspend", "Suspend", id="suspend"),
        Binding("r", "resume", "Resume", id="resume"),
        Binding("R", "reconcile", "Reconcile", id="reconcile"),
        Binding(
            "W", "reconcile_with_source", "Reconcile with source", show=False, id="reconcile_with_source"
        ),
        Binding("f", "force_sync", "Force sync", show=False, id="force_sync"),
        Binding("S", "bulk('suspend')", "Suspend all (filtered)", show=False, id="bulk_suspend"),
        Binding("U", "bulk('resume')", "Resume all (filtered)", show=False, id="bulk_resume"),
        Binding("g", "rollback", "Rollback", id="rollback"),
        Binding("a", "audit", "Audit log", show=False, id="audit"),
        Binding("x", "cancel_action", "Cancel the wait", show=False, id="cancel_action"),
        Binding("ctrl+r", "refresh", "Retry cluster and Vault now", show=False, id="refresh"),
        Binding("l", "log_this_step", "Log: selected step only", show=False, id="log_this_step"),
        Binding("escape", "close_details", "Close details", show=False, id="close_details"),
        Binding("q", "request_quit", "Quit", id="quit"),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True, id="quit_now"),
    ]
    MUTATING_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "bootstrap",
            "suspend",
            "resume",
            "reconcile",
            "reconcile_with_source",
            "force_sync",
            "bulk",
            "rollback",
        }
    )
    # Key action -> phases.day2 action, for the ones that act on the tree's selected object.
    DAY2_ACTIONS: ClassVar[dict[str, Day2Action]] = {
        "suspend": "suspend",
        "resume": "resume",
        "reconcile": "reconcile",
        "reconcile_with_source": "reconcile-with-source",
        "force_sync": "force-sync",
    }

    def __init__(
        self,
        config: Config,
        *,
        command_env: Mapping[str, str] | None = None,
        readonly: bool = False,
        sandbox: bool = False,
        start_bootstrap: bool = False,
        demo_secrets: bool = False,
        clone_url: str | None = None,
        starting: concurrent.futures.Future[Session] | None = None,
    ) -> None:
        """``starting``: the platform (the sandbox) still starting; until it is ready ``config`` is
        provisional (its state directory is right, its cluster and Vault are not) and the app waits for it."""
        super().__init__()
        self.clone_url = clone_url  # the sandbox's clone pushes to a path while Flux reads over HTTP
        self.config = config
        self.command_env = dict(command_env or {})
        self.readonly = readonly
        self.sandbox = sandbox
        self.start_bootstrap = start_bootstrap
        self.demo_secrets = demo_secrets
        self.model = ResourceModel()
        self.engine: Engine | None = None
        self.secrets = SecretStore()
        self.last_result: RunFinished | None = None
        self._platform: Platform | None = None
        self._watcher: ResourceWatcher | None = None
        self._quitting = False
        self._vault_polls = 0
        self._day2_cancel: threading.Event | None = None
        self._rollback: RollbackPlanner | None = None
        self._rollback_total = 0
        self._starting = starting
        self.start_error: BaseException | None = None
        """Why the platform could not start (the app then exits with 1); the CLI reports it."""
        self._first_frame_done = False
        self._small = False  # the "terminal too small" notice is shown
        self._closed = False  # unmounted: a watcher started late must not outlive the app
        self._watch_lock = threading.Lock()
        self._run_seen = False  # a RunStarted loaded the timeline: keep it over the start-up phase list
        self._audit: AuditLog | None = None

    # -- layout --------------------------------------------------------------------------

    @property
    def audit(self) -> AuditLog:
        """The audit log of day-2 actions (opened on first use: not needed for the first frame)."""
        if self._audit is None:
            from phases.audit import AuditLog

            self._audit = AuditLog(self.config.engine.resolved_state_dir(), redact=self.secrets.redact)
        return self._audit

    @property
    def starting(self) -> bool:
        """True while the platform (the sandbox) is still starting."""
        return self._starting is not None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="main"):
            yield PhaseTimeline(id="timeline")
            with Vertical(id="cluster"):
                yield ResourceTree(id="tree")
                details = ResourceDetails(id="details")
                details.display = False  # until a node is opened; set here, not on mount: no second layout
                yield details
        yield LogPane(id="log")
        notice = Static("", id="too-small")
        notice.display = False  # _check_size shows it in a terminal too small for the layout
        yield notice
        yield _Footer()

    def on_mount(self) -> None:
        if self.config.keys:
            self.set_keymap(dict(self.config.keys))
        header = self.query_one(StatusHeader)
        header.update_status(
            context="starting the sandbox…" if self.starting else self._cluster_context(),
            readonly=self.readonly,
            sandbox=self.sandbox,
            vault_insecure=not self.config.vault.verify_tls,
        )
        self.query_one(PhaseTimeline).focus()
        self._check_size()
        # An SSH session that drops (SIGHUP) or a kill (SIGTERM): stop like a confirmed quit.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stop_on_signal)
        if self._starting is not None:
            self.query_one(LogPane).add_lines("sandbox", "engine", ["starting the sandbox…"])
        # The rest waits for the first full frame (the footer's keys drawn), or a second at most.
        self.set_timer(FIRST_FRAME_FALLBACK_SECONDS, self._first_frame_drawn)

    def _cluster_context(self) -> str:
        return self.config.cluster.context or current_context(self.config.cluster.resolved_kubeconfig())

    def _first_frame_drawn(self) -> None:
        if self._first_frame_done:
            return
        self._first_frame_done = True
        if self._starting is not None:
            self.wait_for_platform(self._starting)
        else:
            self._after_first_paint()

    @work(group="start", exit_on_error=False)
    async def wait_for_platform(self, starting: concurrent.futures.Future[Session]) -> None:
        """The sandbox started in the background: take its config, or exit saying why it did not start."""
        try:
            session = await asyncio.wrap_future(starting)
        except Exception as error:  # SandboxStartError, a config error: the CLI prints it after the UI closes
            self.start_error = error
            self.exit(1)
            return
        self._starting = None
        self.config = session.config
        self.command_env = dict(session.command_env)
        self.clone_url = session.clone_url
        self._audit = None  # reopened under the sandbox's state directory
        self.query_one(StatusHeader).update_status(context=self._cluster_context())
        self.query_one(LogPane).add_lines("sandbox", "engine", ["the sandbox is ready"])
        self.refresh_bindings()
        self._after_first_paint()

    def _stop_on_signal(self) -> None:
        if self.bootstrap_running and self.engine is not None:
            self._quitting = True  # RunFinished (interrupted) then exits with its code
            self.engine.cancel()
        else:
            self.exit(130)

    def _after_first_paint(self) -> None:
        # Start-up objects live as long as the app: keep full collections from scanning them (GC pauses
        # were the longest UI stalls in the log benchmark).
        gc.freeze()
        self.start_watching()  # the phase list, then the clients, the watcher and the Vault polls

    def _show_phases(self, phases: tuple[PhaseInfo, ...], estimates: dict[str, float]) -> None:
        if not self._run_seen:  # a run already shows its own
            self.query_one(PhaseTimeline).load(phases, estimates)
        if self.start_bootstrap:
            self.start_bootstrap = False
            self.action_bootstrap()

    def on_resize(self) -> None:
        # The App applies a new size on a short timer after the Resize event: check after it.
        self.set_timer(0.05, self._check_size)

    def _check_size(self) -> None:
        small = self.size.width < MIN_WIDTH or self.size.height < MIN_HEIGHT
        if not small and not self._small:  # nothing to change: a relayout here cost the first frame ~30 ms
            return
        self._small = small
        found = self.query("#too-small")
        if not found:  # the timer fired while the app was shutting down
            return
        notice = found.first(Static)
        notice.update(
            f"Terminal too small: {self.size.width}x{self.size.height}.\n"
            f"gitops-tui needs at least {MIN_WIDTH}x{MIN_HEIGHT} (80x24 recommended).\nq quits."
        )
        notice.display = small
        for widget_id in ("#header", "#main", "#log"):
            self.query_one(widget_id).display = not small

    # -- helpers -----------------------------------------------------------------------------

    def platform(self) -> Platform:
        if self._platform is None:
            from phases.platform import Platform

            self._platform = Platform(self.config)
        return self._platform

    def _phase_infos(self) -> tuple[PhaseInfo, ...]:
        from phases.bootstrap import build_phases

        return tuple(phase.info() for phase in build_phases(self.config, self.platform()))

    def _estimates(self) -> dict[str, float]:
        try:
            state = StateStore(self.config.engine.resolved_state_dir()).load()
        except Exception:  # an unreadable state only costs us the estimates here
            return {}
        return {key: record.last_duration for key, record in state.steps.items() if record.last_duration}

    @property
    def bootstrap_running(self) -> bool:
        return self.engine is not None and self.engine.running

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.starting and action not in STARTING_ACTIONS:
            return None  # shown, greyed out until the sandbox is ready
        if action in self.MUTATING_ACTIONS and (self.readonly or self.bootstrap_running or self.day2_running):
            return None  # shown, greyed out
        if action in self.DAY2_ACTIONS:
            key = self._selected_key()
            if key is None:  # before importing phases.day2 (and the Kubernetes client): the footer asks early
                return None
            from phases.day2 import applies_to

            return True if applies_to(self.DAY2_ACTIONS[action], key[0]) else None
        if action == "cancel_action":
            return True if self.day2_running else None
        if action == "close_details":
            return bool(self.query(ResourceDetails) and self.query_one(ResourceDetails).display)
        return True

    # -- bootstrap -----------------------------------------------------------------------------

    def action_bootstrap(self, from_phase: int = 1, resume: bool = False) -> None:
        if self.readonly:
            self.notify("read-only mode: the bootstrap is disabled", severity="warning")
            return
        if self.bootstrap_running:
            self.notify("the bootstrap is already running")
            return
        commands = [
            f"Phase {info.number}: {info.title}: " + ", ".join(step.title for step in info.steps)
            for info in self._phase_infos()
            if info.number >= from_phase
        ]

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_bootstrap(from_phase)

        self.push_screen(
            ConfirmScreen(
                f"Resume the bootstrap from phase {from_phase}"
                if resume or from_phase > 1
                else "Run the bootstrap",
                "Each step is checked first and skipped when already done. Secrets are asked for before "
                "the first step that needs them and wiped when phase 2 ends.",
                commands,
                confirm_label="Run",
            ),
            confirmed,
        )

    @work(exclusive=True, group="bootstrap", exit_on_error=False)
    async def run_bootstrap(self, from_phase: int = 1) -> None:
        from phases.bootstrap import build_engine, take_declared_secrets

        problems = take_declared_secrets(self.config, self.secrets)
        for problem in problems:
            self.notify(problem, severity="error", timeout=10)
        if problems:
            await self._wipe_secrets()
            return
        if self.demo_secrets:
            from sandbox.demo import demo_secret_values

            demo_secret_values(self.config, self.secrets)
        # Every run reads the root token afresh: a retry after the admin fixed it must not reuse the old one.
        self.platform().forget_root_token()
        engine = build_engine(
            self.config,
            platform=self.platform(),
            secrets=self.secrets,
            prompter=self,
            command_env=self.command_env,
        )
        try:
            engine.store.acquire()
        except StateLocked as error:
            self.notify(str(error), severity="error", timeout=10)
            return
        self.engine = engine
        self.refresh_bindings()
        try:
            async for event in engine.run(from_phase=from_phase):
                self.post_message(EngineEvent(event))
        finally:
            engine.store.release()
            await self._wipe_secrets()
            self.refresh_bindings()

    async def _wipe_secrets(self) -> None:
        """Zero what is held now; the memory sweep that may follow runs in a thread, off the UI loop."""
        _count, sweep = self.secrets.wipe_buffers()
        if sweep is not None:
            await asyncio.to_thread(sweep.run)

    async def provide_secrets(self, requests: Sequence[SecretRequest]) -> Mapping[str, SecretValue] | None:
        """The engine's Prompter: a modal with masked fields, awaited inside the bootstrap worker."""
        from widgets.secret_prompt import SecretPromptScreen

        return await self.push_screen_wait(SecretPromptScreen(requests))

    @on(EngineEvent)
    def handle_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        timeline = self.query_one(PhaseTimeline)
        if isinstance(event, RunStarted):
            self._run_seen = True
            timeline.load(event.phases, dict(event.estimates))
        timeline.apply(event)
        if isinstance(event, OutputLines):
            self.query_one(LogPane).add_lines(event.key, event.stream, event.lines)
        elif isinstance(event, PhaseFinished):
            # A phase may have installed CRDs or Vault: look again now rather than at the next re-check.
            if self._watcher is not None:
                self._watcher.retry_now()
            self.poll_vault()
            if event.phase == 2:
                self.refresh_vault_paths()
                if self.secrets.last_sweep is not None:
                    self.query_one(LogPane).add_lines(
                        "2/memory", "engine", [self.secrets.last_sweep.summary()]
                    )
        elif isinstance(event, StepFailed) and not event.cancelled:
            self.notify(f"{event.key} failed: {event.reason}", severity="error", timeout=8)
        elif isinstance(event, RunFinished):
            self.last_result = event
            self._announce(event)
            self.poll_vault()
            self.refresh_vault_paths()
            if self._quitting:
                self.exit(event.exit_code)

    def _announce(self, event: RunFinished) -> None:
        if event.status == "succeeded":
            self.notify(f"Bootstrap finished in {event.duration:.0f}s", title="Done")
        elif event.status == "interrupted":
            self.notify("Bootstrap interrupted; press b to resume", severity="warning")
        else:
            self.notify(
                f"{event.reason}\nSelect the failed step (enter) to retry.", title="Bootstrap stopped",
                severity="error", timeout=15,
            )  # fmt: skip

    @on(PhaseTimeline.StepSelected)
    def show_step(self, message: PhaseTimeline.StepSelected) -> None:
        from widgets.step_details import StepDetailsScreen

        timeline = self.query_one(PhaseTimeline)
        snapshot = timeline.step_snapshot(message.key)
        lines = self.query_one(LogPane).lines_for(message.key)
        self.query_one(LogPane).set_filter(message.key)

        def closed(choice: str | None) -> None:
            self.query_one(LogPane).set_filter(None)
            if choice == "retry":
                self.action_bootstrap(from_phase=snapshot.info.phase, resume=True)

        self.push_screen(StepDetailsScreen(snapshot, lines), closed)

    @on(LogPane.SaveRequested)
    def save_log(self, message: LogPane.SaveRequested) -> None:
        path = self.config.engine.resolved_state_dir() / f"log-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        text = "\n".join(self.secrets.redact(line) for line in message.text_lines) + "\n"
        write_private_file(path, text)
        self.notify(f"log saved to {path}")

    # -- cluster and Vault --------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="watch", exit_on_error=False)
    def start_watching(self) -> None:
        # The phase list first: it imports every phase module and the Kubernetes client, in this thread only
        # (first imports racing in several threads can fail on a partially initialised module).
        self.call_from_thread(self._show_phases, self._phase_infos(), self._estimates())
        from phases.kube import (
            CLUSTER_SECRET_STORES,
            EXTERNAL_SECRETS,
            GIT_REPOSITORIES,
            HELM_RELEASES,
            KUSTOMIZATIONS,
            preload_client,
        )
        from phases.watch import ResourceWatcher

        # Import the clients once, here, before other threads use them.
        preload_client()
        import hvac  # noqa: F401

        self.call_from_thread(self._start_vault_polls)
        watcher = ResourceWatcher(
            self.platform().kube,
            [GIT_REPOSITORIES, KUSTOMIZATIONS, HELM_RELEASES, CLUSTER_SECRET_STORES, EXTERNAL_SECRETS],
            on_changes=lambda batch: self.call_from_thread(self.apply_watch_batch, batch),
        )
        with self._watch_lock:  # the app may have closed while the clients were imported
            if self._closed:
                return
            self._watcher = watcher
            watcher.start()

    def _start_vault_polls(self) -> None:
        self.poll_vault()
        self.set_interval(VAULT_POLL_SECONDS, self.poll_vault)

    def apply_watch_batch(self, batch: WatchBatch) -> None:
        from phases.watch import apply_batch

        changed = apply_batch(self.model, batch)
        if changed or batch.status is not None:
            self.query_one(ResourceTree).apply_changes(self.model, changed)
            self._refresh_details(changed)

    def _refresh_details(self, changed: set[NodeKey]) -> None:
        details = self.query_one(ResourceDetails)
        if details.display and details.key in changed:
            details.show_node(self.model, details.key)

    @work(thread=True, group="vault-status", exit_on_error=False)
    def poll_vault(self) -> None:
        self._vault_polls += 1
        poll = self._vault_polls
        try:
            status = self.platform().vault().status()
            label = status.label
        except Exception:  # no Service yet, cluster unreachable: Vault is simply not reachable
            self.platform().forget_vault()
            label = "unreachable"

        def show() -> None:
            if poll == self._vault_polls:  # an older, slower poll must not overwrite a newer answer
                self.query_one(StatusHeader).update_status(vault=label)

        self.call_from_thread(show)
        repo = self._repo_ref()
        if repo is not None:
            self.call_from_thread(self.query_one(StatusHeader).update_status, repo=repo)

    def _repo_ref(self) -> RepoRef | None:
        clone = self.config.deployments.resolved_clone_dir()
        if not (clone / ".git").exists():
            return None
        from phases.git import GitRepo

        try:
            repo = GitRepo(clone)
            return RepoRef(repo.current_branch() or "detached", repo.head())
        except Exception:
            return None

    def action_refresh(self) -> None:
        """Retry now instead of at the next back-off: the watches, the Vault status and its paths."""
        if self._watcher is not None:
            self._watcher.retry_now()
        self.poll_vault()
        self.refresh_vault_paths()

    def action_log_this_step(self) -> None:
        log = self.query_one(LogPane)
        key = self.query_one(PhaseTimeline).selected_key
        log.set_filter(None if log.tag_filter is not None or key is None else key)

    @work(thread=True, exclusive=True, group="vault-paths", exit_on_error=False)
    def refresh_vault_paths(self) -> None:
        from phases.platform import Platform

        mount = self.config.vault.kv_mount
        platform = Platform(self.config)  # its own client: the root token it reads is wiped right after
        try:
            client = platform.authenticated_vault()
            # Key names from metadata only: values are never fetched for display.
            paths: dict[str, list[str]] | None = {
                path: sorted(client.kv2_recorded_keys(mount, path)) for path in client.kv2_list_tree(mount)
            }
            error = None
        except Exception as failure:  # sealed, unreachable, no init keys yet
            paths, error = None, str(failure)
        finally:
            platform.close()

        def apply() -> None:
            changed = self.model.set_vault_paths(mount, paths, error)
            self.query_one(ResourceTree).apply_changes(self.model, changed)
            self._refresh_details(changed)

        self.call_from_thread(apply)

    @on(ResourceTree.ShowDetails)
    def show_details(self, message: ResourceTree.ShowDetails) -> None:
        details = self.query_one(ResourceDetails)
        details.show_node(self.model, message.key)
        details.display = True
        self.load_events(message.key)

    @work(thread=True, exclusive=True, group="events", exit_on_error=False)
    def load_events(self, key: NodeKey) -> None:
        """Recent Kubernetes events of the object, for the details panel."""
        from phases.kube import EVENTS, KubeError

        kind, namespace, name = key
        if not namespace:
            return
        try:
            events = [
                event
                for event in self.platform().kube.list(EVENTS, namespace)
                if (event.get("involvedObject") or {}).get("name") == name
                and (event.get("involvedObject") or {}).get("kind") == kind
            ]
        except KubeError:
            return
        details = self.query_one(ResourceDetails)

        def show() -> None:
            if details.key == key:
                details.show_node(self.model, key, events[-10:])

        self.call_from_thread(show)

    def action_close_details(self) -> None:
        self.query_one(ResourceDetails).display = False

    # -- day 2 ---------------------------------------------------------------------------------

    @property
    def day2_running(self) -> bool:
        return self._day2_cancel is not None

    def _selected_key(self) -> NodeKey | None:
        trees = self.query(ResourceTree)
        return trees.first().selected_key if trees else None

    def action_suspend(self) -> None:
        from phases.audit import current_actor
        from phases.day2 import describe, describe_key
        from widgets.suspend_reason import SuspendReasonScreen

        key = self._selected_key()
        if key is None:
            return
        actor = current_actor()

        def commands(reason: str) -> list[str]:
            return describe("suspend", [key], reason=reason, actor=actor)[1]

        def chosen(reason: str | None) -> None:
            if reason is not None:
                self.run_day2("suspend", [key], reason=reason)

        self.push_screen(
            SuspendReasonScreen(f"Suspend {describe_key(key)}", [describe_key(key)], commands), chosen
        )

    def action_resume(self) -> None:
        self._confirm_day2("resume")

    def action_reconcile(self) -> None:
        self._confirm_day2("reconcile")

    def action_reconcile_with_source(self) -> None:
        self._confirm_day2("reconcile-with-source")

    def action_force_sync(self) -> None:
        self._confirm_day2("force-sync")

    def _confirm_day2(self, action: Day2Action, *, resume_suspended: bool | None = None) -> None:
        from phases.day2 import describe, describe_key

        key = self._selected_key()
        if key is None:
            return
        node = self.model.get(key)
        if resume_suspended is None:
            # Reconciling a suspended object would silently do nothing: offer to resume it as well.
            resume_suspended = bool(node and node.suspended) and action in (
                "reconcile",
                "reconcile-with-source",
            )
        title, calls = describe(
            action, [key], model=self.model, resume_suspended=resume_suspended,
            timeout=self.config.engine.wait_timeout,
        )  # fmt: skip
        description = f"{describe_key(key)}: the calls below, then a wait (x cancels it)."
        if resume_suspended:
            description = (
                f"{describe_key(key)} is suspended, so a reconcile alone would do nothing. " + description
            )

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_day2(action, [key], resume_suspended=resume_suspended)

        self.push_screen(ConfirmScreen(title, description, calls, confirm_label="Run"), confirmed)

    def action_bulk(self, action: str) -> None:
        from phases.audit import current_actor
        from phases.day2 import describe, describe_key, plan_bulk
        from widgets.suspend_reason import SuspendReasonScreen

        bulk_action: Literal["suspend", "resume"] = "suspend" if action == "suspend" else "resume"
        keys = plan_bulk(self.model, bulk_action, self.query_one(ResourceTree).filter_text)
        if not keys:
            self.notify(
                f"no Kustomization to {bulk_action} (filter: {self.query_one(ResourceTree).filter_text!r})"
            )
            return
        targets = [describe_key(key) for key in keys]
        if bulk_action == "suspend":
            actor = current_actor()

            def chosen(reason: str | None) -> None:
                if reason is not None:
                    self.run_day2("suspend", keys, reason=reason, bulk=True)

            self.push_screen(
                SuspendReasonScreen(
                    f"Suspend {len(keys)} Kustomizations",
                    targets,
                    lambda reason: describe("suspend", keys, reason=reason, actor=actor)[1],
                ),
                chosen,
            )
            return
        title, calls = describe("resume", keys, timeout=self.config.engine.wait_timeout)

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_day2("resume", keys, bulk=True)

        self.push_screen(
            ConfirmScreen(title, "\n".join(targets), calls, confirm_label="Resume all"), confirmed
        )

    @work(thread=True, group="day2", exit_on_error=False)
    def run_day2(
        self,
        action: Day2Action,
        keys: list[NodeKey],
        *,
        reason: str | None = None,
        resume_suspended: bool = False,
        bulk: bool = False,
    ) -> None:
        from phases import day2
        from phases.audit import current_actor

        cancel = threading.Event()
        self.call_from_thread(self._day2_started, cancel)
        kube = self.platform().kube
        waits = {"timeout": self.config.engine.wait_timeout, "interval": self.config.engine.poll_interval}

        def progress(line: str) -> None:
            self.call_from_thread(self.query_one(LogPane).add_lines, "day2", "engine", [line])

        results: list[ActionResult] = []
        try:
            if bulk:
                bulk_action: Literal["suspend", "resume"] = "suspend" if action == "suspend" else "resume"
                results = day2.bulk(
                    kube, keys, bulk_action, reason=reason, actor=current_actor(), progress=progress,
                    cancel=cancel, audit=self.audit, **waits,
                )  # fmt: skip
            elif action == "suspend":
                results = [
                    day2.suspend(
                        kube,
                        keys[0],
                        reason=reason,
                        actor=current_actor(),
                        audit=self.audit,
                        progress=progress,
                    )
                ]
            elif action == "resume":
                results = [
                    day2.resume(kube, keys[0], progress=progress, cancel=cancel, audit=self.audit, **waits)
                ]
            elif action == "force-sync":
                results = [
                    day2.force_sync(
                        kube, keys[0], progress=progress, cancel=cancel, audit=self.audit, **waits
                    )
                ]
            else:
                run = day2.reconcile if action == "reconcile" else day2.reconcile_with_source
                results = [
                    run(
                        kube, keys[0], resume_suspended=resume_suspended, progress=progress, cancel=cancel,
                        audit=self.audit, **waits,
                    )
                ]  # fmt: skip
        finally:
            self.call_from_thread(self._day2_finished, results)

    def _day2_started(self, cancel: threading.Event) -> None:
        self._day2_cancel = cancel
        self.refresh_bindings()

    def _day2_finished(self, results: list[ActionResult]) -> None:
        from phases.day2 import SuspendedObject

        self._day2_cancel = None
        self.refresh_bindings()
        log = self.query_one(LogPane)
        for result in results:
            log.add_lines("day2", "engine" if result.ok else "stderr", [result.summary])
            if isinstance(result, SuspendedObject):
                self._confirm_day2(result.action, resume_suspended=True)  # the model lagged: offer it now
                return
        failed = [result for result in results if not result.ok]
        if failed:
            self.notify("\n".join(result.summary for result in failed[:5]), severity="error", timeout=10)
        elif results:
            self.notify("\n".join(result.summary for result in results[:5]))

    def action_cancel_action(self) -> None:
        if self._day2_cancel is not None:
            self._day2_cancel.set()
            self.notify("cancelling the wait…")

    def action_audit(self) -> None:
        from phases.audit import read_audit
        from widgets.audit_view import AuditScreen

        self.push_screen(AuditScreen(read_audit(self.audit.path), source=str(self.audit.path)))

    # -- rollback picker -----------------------------------------------------------------------

    def action_rollback(self) -> None:
        self.open_rollback_picker()

    @work(thread=True, exclusive=True, group="rollback", exit_on_error=False)
    def open_rollback_picker(self) -> None:
        """Fetch the clone first (the list must be current), then show the picker."""
        from phases.errors import GitOpsError
        from phases.rollback import RollbackPlanner
        from widgets.rollback_picker import RollbackPickerScreen

        readonly, message = self.readonly, ""
        try:
            planner = RollbackPlanner.open(
                self.config, kube=self.platform().kube, readonly=self.readonly, clone_url=self.clone_url
            )
        except GitOpsError as error:
            self.call_from_thread(self.notify, str(error), severity="error", timeout=10)
            return
        try:
            prepared = planner.prepare()
            branch = prepared.branch
        except GitOpsError as error:  # dirty, detached or diverged clone: look, but change nothing
            readonly, message, branch = True, str(error), self.config.deployments.branch
            planner = RollbackPlanner(planner.repo, self.config, kube=self.platform().kube, readonly=True)
            prepared = planner.prepare()
        self._rollback = planner
        refusal = (
            None
            if self.config.deployments.allow_force_push
            else "hard reset is disabled: set deployments.allow_force_push = true to allow it"
        )

        def show() -> None:
            picker = RollbackPickerScreen(branch=branch, readonly=readonly, reset_refusal=refusal)
            self.push_screen(picker)
            if message:
                picker.set_status(message, severity="warning")

        self._rollback_total = prepared.total_commits
        self.call_from_thread(show)

    def _picker(self) -> RollbackPickerScreen | None:
        from widgets.rollback_picker import RollbackPickerScreen

        return self.screen if isinstance(self.screen, RollbackPickerScreen) else None

    # The picker's messages, by handler name: @on would need its module imported before the first frame.
    def on_rollback_picker_screen_page_requested(self, message: RollbackPickerScreen.PageRequested) -> None:
        self.load_rollback_page(message.skip, message.limit)

    @work(thread=True, group="rollback-pages", exit_on_error=False)
    def load_rollback_page(self, skip: int, limit: int) -> None:
        planner = self._rollback
        picker = self._picker()
        if planner is None or picker is None:
            return
        try:
            commits = planner.page(skip, limit)
        except Exception as error:
            self.call_from_thread(picker.page_failed, str(error))
            return
        self.call_from_thread(picker.add_page, commits, self._rollback_total, skip=skip)
        files = planner.files_changed(skip, limit)
        markers = planner.applied_markers()
        self.call_from_thread(picker.set_files_changed, files)
        self.call_from_thread(picker.set_markers, markers)

    def on_rollback_picker_screen_diff_requested(self, message: RollbackPickerScreen.DiffRequested) -> None:
        self.load_rollback_diff(message.sha)

    @work(thread=True, exclusive=True, group="rollback-diff", exit_on_error=False)
    def load_rollback_diff(self, sha: str) -> None:
        planner, picker = self._rollback, self._picker()
        if planner is not None and picker is not None:
            self.call_from_thread(picker.show_diff, sha, planner.diff(sha))

    def on_rollback_picker_screen_refresh_requested(self) -> None:
        self.open_rollback_picker_again()

    @work(thread=True, exclusive=True, group="rollback", exit_on_error=False)
    def open_rollback_picker_again(self) -> None:
        planner, picker = self._rollback, self._picker()
        if planner is None or picker is None:
            return
        try:
            self._rollback_total = planner.prepare().total_commits
        except Exception as error:
            self.call_from_thread(picker.set_status, str(error), severity="error")
            return
        self.call_from_thread(picker.reload)

    def on_rollback_picker_screen_chosen(self, message: RollbackPickerScreen.Chosen) -> None:
        if self.readonly:
            self.notify("read-only mode: the rollback picker only shows history", severity="warning")
            return
        self.plan_rollback(message.choice)

    @work(thread=True, exclusive=True, group="rollback-plan", exit_on_error=False)
    def plan_rollback(self, choice: RollbackChoice) -> None:
        from phases.errors import GitOpsError

        planner, picker = self._rollback, self._picker()
        if planner is None or picker is None:
            return
        try:
            if choice.action == "reset":
                plan = planner.plan_reset(choice.sha)
            else:
                plan = planner.plan_revert(
                    choice.sha, range_back=choice.action == "revert-range", mainline=choice.mainline
                )
        except GitOpsError as error:
            self.call_from_thread(picker.set_status, str(error), severity="error")
            return
        self.call_from_thread(self._confirm_rollback, plan)

    def _confirm_rollback(self, plan: ActionPlan) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self.execute_rollback(plan)

        self.push_screen(
            ConfirmScreen(
                plan.title,
                plan.description,
                plan.confirmation_lines,
                destructive=plan.destructive,
                typed_confirmation=plan.typed_confirmation,
                confirm_label="Reset and push" if plan.destructive else "Revert and push",
            ),
            confirmed,
        )

    @work(thread=True, exclusive=True, group="rollback-run", exit_on_error=False)
    def execute_rollback(self, plan: ActionPlan, retry: bool = False) -> None:
        planner, picker = self._rollback, self._picker()
        if planner is None or picker is None:
            return

        def progress(line: str) -> None:
            self.call_from_thread(self.query_one(LogPane).add_lines, "rollback", "engine", [line])
            self.call_from_thread(picker.set_busy, line)

        self.call_from_thread(picker.set_busy, "working…")
        outcome = planner.fetch_and_retry(plan, progress) if retry else planner.execute(plan, progress)
        self.call_from_thread(self._rollback_done, outcome)

    def _rollback_done(self, outcome: RollbackOutcome) -> None:
        picker = self._picker()
        self.audit.record(
            action=f"rollback-{outcome.plan.kind}",
            kind="GitBranch",
            namespace="",
            name=f"{self.config.deployments.url}#{self.config.deployments.branch}",
            result="succeeded" if outcome.pushed else outcome.status,
            message=outcome.message,
            revision=outcome.new_head or "",
        )
        if picker is None:
            self.notify(outcome.message, severity="information" if outcome.pushed else "error")
            return
        picker.set_busy(None)
        picker.set_status(outcome.message, severity="information" if outcome.pushed else "error")
        if outcome.pushed:
            self.open_rollback_picker_again()
        elif outcome.can_fetch_and_retry:
            plan = outcome.plan

            def retry(ok: bool | None) -> None:
                if ok:
                    self.execute_rollback(plan, retry=True)

            self.push_screen(
                ConfirmScreen("Someone pushed meanwhile", outcome.message, ("git fetch", *plan.commands)),
                retry,
            )
        elif outcome.status == "confirm-again" and outcome.next_plan is not None:
            self._confirm_rollback(outcome.next_plan)

    # -- help and quit -----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette lists every app key too, with what it does."""
        yield from super().get_system_commands(screen)
        for item in self.BINDINGS:
            if not isinstance(item, Binding) or not item.description or item.action.startswith("focus"):
                continue
            if self.check_action(item.action, ()) is not True:
                continue
            key = self.get_key_display(item)
            yield SystemCommand(
                f"{item.description} ({key})", f"the {key} key", partial(self.run_action, item.action)
            )

    def action_help(self) -> None:
        """Every key that works here (and the ones that exist but are disabled right now)."""
        from widgets.help_screen import HelpEntry, HelpScreen

        entries: list[HelpEntry] = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description:
                continue
            group = "App" if active.node is self or active.node is self.screen else type(active.node).__name__
            entries.append(
                HelpEntry(self.get_key_display(binding) or key, binding.description, group, active.enabled)
            )
        entries.sort(key=lambda entry: entry.group != "App")  # the app's keys first, then the pane's
        self.push_screen(HelpScreen(entries))

    def action_request_quit(self) -> None:
        if not self.bootstrap_running:
            self.exit(self.last_result.exit_code if self.last_result else 0)
            return

        def confirmed(ok: bool | None) -> None:
            if ok and self.engine is not None:
                self._quitting = True
                self.engine.cancel()

        self.push_screen(
            ConfirmScreen(
                "Quit while the bootstrap runs?",
                "The running step is stopped (its child processes are killed), the run state is saved and "
                "secrets are wiped. Run gitops-tui again to resume.",
                destructive=True,
                confirm_label="Stop and quit",
            ),
            confirmed,
        )

    async def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        with self._watch_lock:
            self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
        self.secrets.wipe_all()
        if self._platform is not None:
            self._platform.close()
