"""The `gitops-tui` command.

Exit codes: 0 ok, 1 a step failed, 2 bad usage or config (or missing secrets),
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from phases.config import INSECURE_VAULT_FLAG, Config, ConfigError, load_config
from phases.secrets import SecretStore
from phases.state import StateCorrupt, StateLocked, StateStore
from sandbox.launcher import (
    SANDBOX_STATE_DIR,
    SandboxProcess,
    SandboxStartError,
    default_sandbox_dir,
    start_sandbox,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~15 ms: only for --version

    try:
        return version("gitops-tui")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"gitops-tui {package_version()}")  # stdout, as argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-tui",
        description=(
            "Bootstrap a GitOps cluster (k3s, Flux, Vault/OpenBao, External Secrets) in five phases, "
            "then run it from one keyboard-driven screen."
        ),
        epilog="Exit codes: 0 ok, 1 a step failed, 2 bad usage, config or missing secrets, 130 interrupted.",
    )
    parser.add_argument("--version", action=_VersionAction, help="show the version and exit")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help="TOML config (default: $GITOPS_TUI_CONFIG, ./gitops-tui.toml, XDG)"
    )
    common.add_argument("--sandbox", action="store_true", help="run against the embedded sandbox platform")
    common.add_argument("--sandbox-dir", metavar="DIR", help="where the sandbox keeps everything")
    common.add_argument("--readonly", action="store_true", help="disable every mutating action")
    common.add_argument(
        INSECURE_VAULT_FLAG,
        dest="vault_insecure",
        action="store_true",
        help="do not verify Vault's TLS certificate (insecure; prefer vault.ca_cert or $VAULT_CACERT)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("ui", parents=[common], help="open the terminal UI (the default)")
    bootstrap = commands.add_parser("bootstrap", parents=[common], help="run the five-phase bootstrap")
    bootstrap.add_argument("--headless", action="store_true", help="print progress lines instead of the UI")
    bootstrap.add_argument(
        "--plan", action="store_true", help="print every phase, step, command and API call; do nothing"
    )
    bootstrap.add_argument(
        "--from-phase", type=int, choices=range(1, 6), metavar="N", default=1, help="start at phase N (1-5)"
    )
    bootstrap.add_argument(
        "--demo-secrets", action="store_true", help="sandbox only: generate throwaway secret values"
    )
    bootstrap.add_argument("--quiet", action="store_true", help="headless: hide command output")
    # `gitops-tui --sandbox` with no command opens the UI.
    for action in common._actions:
        if action.dest != "help":
            parser._add_action(action)
    return parser


@dataclass
class Session:
    """What a command runs against: the config, and the sandbox process when there is one."""

    config: Config
    command_env: dict[str, str] = field(default_factory=dict)
    sandbox: SandboxProcess | None = None
    starting: concurrent.futures.Future[Session] | None = None
    """The UI's sandbox, still starting: the session to use once it is up (``config`` is provisional)."""

    @property
    def clone_url(self) -> str | None:
        """Where the sandbox's deployments clone pushes (a path; Flux reads the same repository over HTTP)."""
        return self.sandbox.sandbox_info().remote_path.as_uri() if self.sandbox is not None else None


def cli_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Config values given as command-line flags: they win over the config file."""
    return {"vault": {"insecure_skip_tls_verify": True}} if getattr(args, "vault_insecure", False) else {}


@contextlib.contextmanager
def open_session(
    args: argparse.Namespace, *, lock: bool = True, background_sandbox: bool = False
) -> Iterator[Session]:
    """The config (and sandbox), with the state directory locked for the whole session.

    A second gitops-tui on the same state refuses (StateLocked) instead of corrupting it; with
    --sandbox the lock is taken before the sandbox starts, so two never run on one directory.
    With ``background_sandbox`` (the UI, which draws meanwhile) the session is yielded at once, the
    sandbox starting in a thread: ``Session.starting`` gives the real session, or the start error.
    """
    if not args.sandbox:
        config = load_config(args.config, flags=cli_flags(args))
        with _locked(StateStore(config.engine.resolved_state_dir()) if lock else None):
            yield Session(config)
        return
    root = Path(args.sandbox_dir).expanduser() if args.sandbox_dir else default_sandbox_dir()
    with _locked(StateStore(root / SANDBOX_STATE_DIR)):
        # Until the sandbox is up: the file's config with the sandbox's state directory (where the lock is).
        state_dir = {"engine": {"state_dir": str(root / SANDBOX_STATE_DIR)}}
        provisional = load_config(args.config, overrides=state_dir, flags=cli_flags(args))
        startup = _SandboxStartup(root, args)
        try:
            yield (
                Session(provisional, starting=startup.session)
                if background_sandbox
                else startup.session.result()
            )
        finally:
            startup.stop()


class _SandboxStartup:
    """``start_sandbox`` in a thread; ``session`` resolves to the sandbox's session, or to its start error.

    The thread lives until :meth:`stop`: the sandbox asks for SIGTERM when the *thread* that spawned it ends.
    """

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.session: concurrent.futures.Future[Session] = concurrent.futures.Future()
        self._process: SandboxProcess | None = None
        self._release = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(root, args), name="sandbox-start", daemon=True
        )
        self._thread.start()

    def _run(self, root: Path, args: argparse.Namespace) -> None:
        try:
            self._process = process = start_sandbox(root)
            config = load_config(args.config, overrides=process.overrides(), flags=cli_flags(args))
            self.session.set_result(Session(config, command_env=process.path_env(), sandbox=process))
        except BaseException as error:  # whoever waits for the session gets it
            self.session.set_exception(error)
        self._release.wait()

    def stop(self) -> None:
        """Wait for a start under way to end (start_sandbox has its own timeout), then stop the sandbox."""
        concurrent.futures.wait([self.session])
        if self._process is not None:
            self._process.stop()
        self._release.set()
        self._thread.join()


@contextlib.contextmanager
def _locked(store: StateStore | None) -> Iterator[None]:
    if store is None:
        yield
        return
    with store.locked():
        yield


async def run_headless(args: argparse.Namespace, session: Session) -> int:
    from phases.bootstrap import build_engine, take_declared_secrets
    from phases.events import PhaseFinished
    from tui.headless import HeadlessPrinter

    config = session.config
    store = SecretStore()
    problems = take_declared_secrets(config, store)
    if problems:
        store.wipe_all()
        for problem in problems:
            print(f"gitops-tui: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.demo_secrets:
        from sandbox.demo import demo_secret_values

        demo_secret_values(config, store)
    engine = build_engine(config, secrets=store, command_env=session.command_env)
    missing = _missing_for_fresh_run(config, engine.store.load(), store)
    if missing:
        store.wipe_all()
        hint = " (or pass --demo-secrets with --sandbox)" if args.sandbox else ""
        print(f"gitops-tui: missing secrets: set {', '.join(missing)}{hint}", file=sys.stderr)
        return EXIT_USAGE
    engine.store.acquire()  # already ours for the session: this only counts up
    printer = HeadlessPrinter(verbose=not args.quiet)
    printer.config_warnings(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, engine.cancel)
    exit_code = EXIT_FAILED
    try:
        async for event in engine.run(from_phase=args.from_phase):
            printer.handle(event)
            if isinstance(event, PhaseFinished) and event.phase == 2 and store.last_sweep is not None:
                print(f"  {store.last_sweep.summary()}", flush=True)
            if hasattr(event, "exit_code"):
                exit_code = event.exit_code
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        engine.store.release()
        store.wipe_all()
    return exit_code


def _missing_for_fresh_run(config: Config, state: Any, store: SecretStore) -> list[str]:
    """Env vars to ask for up front: only while Vault has never been given the secrets."""
    written = state.steps.get("2/write-secrets")
    if written is not None and written.status in ("done", "skipped"):
        return []
    return [s.env for s in config.secrets.declared if store.get(s.name) is None]


def plan(session: Session) -> int:
    from phases.bootstrap import build_engine
    from tui.headless import print_plan

    engine = build_engine(session.config, command_env=session.command_env)
    print_plan(engine.phase_infos())
    return EXIT_OK


def run_ui(args: argparse.Namespace, session: Session, *, start_bootstrap: bool) -> int:
    from tui.app import GitOpsApp

    app = GitOpsApp(
        session.config,
        command_env=session.command_env,
        readonly=args.readonly,
        sandbox=args.sandbox,
        start_bootstrap=start_bootstrap,
        demo_secrets=getattr(args, "demo_secrets", False),
        clone_url=session.clone_url,
        starting=session.starting,
    )
    result = app.run()
    if app.start_error is not None:  # the sandbox did not start: main() says why, with its exit code
        raise app.start_error
    return int(result) if isinstance(result, int) else EXIT_OK


def entry() -> NoReturn:
    """The `gitops-tui` program: harden this process, then run :func:`main`.

    Hardening is process-wide (the sweep after phase 2 zeroes every copy of a secret anywhere in the
    process), so it belongs to the real program only, never to a test or sandbox sharing the interpreter.
    """
    from phases.memory import harden_process

    harden_process()  # no core dumps, not dumpable, log redaction, the sweep after phase 2
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    from phases.secrets import take_env_early

    parser = build_parser()
    args = parser.parse_args(argv)
    # Take the bootstrap env vars before anything starts a child (the sandbox, git) that would inherit them.
    with contextlib.suppress(ConfigError):  # a bad config is reported with its message when the session opens
        take_env_early(load_config(args.config, flags=cli_flags(args)).secrets.declared)
    command = args.command or "ui"
    if getattr(args, "demo_secrets", False) and not args.sandbox:
        parser.error("--demo-secrets is only allowed with --sandbox")
    ui = not (command == "bootstrap" and (args.plan or args.headless))
    try:
        with open_session(
            args, lock=not (command == "bootstrap" and args.plan), background_sandbox=ui
        ) as session:
            if command == "bootstrap" and args.plan:
                return plan(session)
            if command == "bootstrap" and args.headless:
                return asyncio.run(run_headless(args, session))
            return run_ui(args, session, start_bootstrap=command == "bootstrap")
    except ConfigError as error:
        print(f"gitops-tui: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StateLocked as error:
        print(f"gitops-tui: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (SandboxStartError, StateCorrupt) as error:
        print(f"gitops-tui: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("gitops-tui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    entry()
