"""No trace of a bootstrap secret in the gitops-tui process after phase 2, proven on real child processes.

Each test runs the real CLI (headless, or the TUI in a tmux terminal) against the sandbox in a child process
with ``GITOPS_TUI_ALLOW_MEMORY_READ=1`` and the test-only pause points: the child stops itself (SIGSTOP)
just before the post-phase-2 wipe and just after the sweep, and the test reads its ``/proc/PID/mem`` with a
scanner of its own (not the app's), looking for every secret in raw, Latin-1, UTF-16-LE, UTF-32-LE, base64
(3 alignments), JSON-escaped, URL-encoded and hex forms, and for each half of each secret.

* Positive control: before the wipe the scan finds every live value, and only inside locked,
  not-dumped, wipe-on-fork memory (the secret buffers), so the scanner is not blind.
* After the sweep: zero hits, and ``/proc/PID/environ`` holds none of the values.
* Meanwhile a poller reads ``/proc/*/cmdline`` of every descendant: no secret in any argv.

The child is started through :data:`LAUNCHER`, which runs ``tui.cli.entry``, the `gitops-tui` script's
entry point (it hardens the process, then ``main`` takes the declared env vars before anything else).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = "from tui.cli import entry\nentry()\n"  # exactly what the `gitops-tui` script runs
PAUSES = "before-wipe,after-sweep"
ALPHABET = string.ascii_letters + string.digits


# -- secrets and their forms --------------------------------------------------------------------------------


def new_values() -> dict[str, str]:
    """Fresh random values for the four default declared secrets (matching their patterns)."""

    def token(size: int) -> str:
        return "".join(secrets.choice(ALPHABET) for _ in range(size))

    return {
        "GITHUB_TOKEN": "ghp_" + token(36),
        "CLOUDFLARE_API_TOKEN": token(40),
        "MYAPP_DB_PASSWORD": "db-" + token(24),
        "MYAPP_API_KEY": "key_" + token(28),
    }


def forms(value: str) -> dict[str, bytes]:
    """Every encoding a copy could take, plus each half in the three in-memory text forms."""
    raw = value.encode()
    found = {
        "raw": raw,
        "utf-16-le": value.encode("utf-16-le"),
        "utf-32-le": value.encode("utf-32-le"),
        "json": json.dumps(value)[1:-1].encode(),
        "json-utf8": json.dumps(value, ensure_ascii=False)[1:-1].encode(),
        "url": urllib.parse.quote(value, safe="").encode(),
        "url-plus": urllib.parse.quote_plus(value).encode(),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    with_latin1 = value.encode("latin-1", errors="ignore")
    if len(with_latin1) == len(value):
        found["latin-1"] = with_latin1
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        lead = (0, 2, 3)[shift]
        trail = (0, 3, 2)[(len(raw) + shift) % 3]
        found[f"base64+{shift}"] = encoded[lead : len(encoded) - trail]
    middle = len(value) // 2
    for label, part in (("first half", value[:middle]), ("second half", value[middle:])):
        for encoding in ("utf-8", "utf-16-le", "utf-32-le"):
            found[f"{encoding} {label}"] = part.encode(encoding)
    return found


@dataclass(frozen=True)
class Hit:
    secret: str
    form: str
    address: int
    region: str
    flags: frozenset[str]

    def __str__(self) -> str:
        flags = " ".join(sorted(self.flags))
        return f"{self.secret} ({self.form}) at {self.address:#x} in {self.region} [{flags}]"


class Scanner:
    """Reads another process's memory through /proc/PID/mem (independent of phases.memory)."""

    def __init__(self, values: dict[str, str], *, halves: bool = True) -> None:
        self.values = values
        self.labels: dict[bytes, list[tuple[str, str]]] = {}
        for name, value in values.items():
            for form, needle in forms(value).items():
                if halves or "half" not in form:
                    self.labels.setdefault(needle, []).append((name, form))
        # Whole forms before halves, longest first, so a full copy is reported as one hit.
        ordered = sorted(self.labels, key=lambda needle: ("half" in self.labels[needle][0][1], -len(needle)))
        self.pattern = re.compile(b"|".join(re.escape(needle) for needle in ordered))

    def scan(self, pid: int) -> list[Hit]:
        hits: list[Hit] = []
        regions = _regions(pid)
        descriptor = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            for start, end, label, flags in regions:
                try:
                    data = os.pread(descriptor, end - start, start)
                except OSError:
                    continue
                for match in self.pattern.finditer(data):
                    name, form = self.labels[match.group()][0]
                    hits.append(Hit(name, form, start + match.start(), label, flags))
        finally:
            os.close(descriptor)
        return hits

    def in_environ(self, pid: int) -> list[str]:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        return [name for name, value in self.values.items() if value.encode() in environ]

    def in_text(self, data: bytes) -> list[str]:
        return sorted(
            {
                f"{self.labels[m.group()][0][0]} ({self.labels[m.group()][0][1]})"
                for m in self.pattern.finditer(data)
            }
        )


def _regions(pid: int) -> list[tuple[int, int, str, frozenset[str]]]:
    """Every readable mapping, with its VmFlags from smaps (lo = locked, dd = no dump, wf = wipe on fork)."""
    regions: list[tuple[int, int, str, frozenset[str]]] = []
    current: tuple[int, int, str, str] | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            start, end = (int(part, 16) for part in head[0].split("-"))
            label = head[5] if len(head) > 5 else "[anon]"
            current = (start, end, label, head[1])
            continue
        if line.startswith("VmFlags:") and current is not None:
            start, end, label, perms = current
            if perms.startswith("r") and label not in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                regions.append((start, end, label, frozenset(line.split()[1:])))
            current = None
    return regions


def vault_root_token(sandbox_dir: Path) -> str:
    """The root token from the sandbox cluster's init-keys Secret (read by this test, not by the child)."""
    from phases.kube import SECRETS, KubeClient

    secret = KubeClient(sandbox_dir / "kubeconfig").get(SECRETS, "vault-init-keys", "vault")
    assert secret is not None, "the sandbox has no Vault init keys"
    return base64.b64decode(secret["data"]["VAULT_ROOT_TOKEN"]).decode()


# -- the child and its pauses -------------------------------------------------------------------------------


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@dataclass
class Child:
    """A gitops-tui process that stops itself at the pause points."""

    pause_file: Path
    pid: int = 0
    seen: int = 0

    def wait_pause(
        self, point: str, alive: Callable[[], bool], timeout: float = 90, describe: Callable[[], str] = str
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.pause_file.read_text().splitlines() if self.pause_file.exists() else []
            if len(lines) > self.seen:
                name, pid = lines[self.seen].split()
                assert name == point, f"paused at {name}, expected {point}"
                self.seen += 1
                self.pid = int(pid)
                while _state(self.pid) not in ("T", "t"):
                    assert time.monotonic() < deadline, "the child did not stop"
                    time.sleep(0.005)
                return
            assert alive(), f"the child exited before reaching {point}; {describe()}"
            time.sleep(0.02)
        raise AssertionError(f"no pause at {point} within {timeout:g} s; {describe()}")

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def child_env(
    tmp_path: Path, values: dict[str, str], pause_file: Path, pauses: str = PAUSES
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITOPS_TUI_", "VAULT_"))}
    for name in new_values():
        env.pop(name, None)
    env.update(values)
    env.update(
        {
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "NO_COLOR": "1",
            "PYTHONPATH": str(ROOT),
            "GITOPS_TUI_ALLOW_MEMORY_READ": "1",
            "GITOPS_TUI_PAUSE_AT": pauses,
            "GITOPS_TUI_PAUSE_FILE": str(pause_file),
        }
    )
    return env


@dataclass
class ArgvWatch:
    """Polls /proc for the descendants of ``root`` and records any secret in an argv or an environment."""

    scanner: Scanner
    root: Callable[[], int]
    argv_hits: list[str] = field(default_factory=list)
    environ_hits: dict[int, list[str]] = field(default_factory=dict)
    argv_of: dict[int, str] = field(default_factory=dict)
    parent_of: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            root = self.root()
            if root:
                self.poll(root)
            time.sleep(0.01)

    def poll(self, root: int) -> None:
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        family = {root}
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    changed = True
        for pid in family - {root}:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            self.argv_of[pid] = argv.replace(b"\0", b" ").decode(errors="replace")
            self.parent_of[pid] = parents[pid]
            leaked = self.scanner.in_text(argv)
            if leaked:
                self.argv_hits.append(f"{argv!r}: {leaked}")
            in_env = [name for name, value in self.scanner.values.items() if value.encode() in environ]
            if in_env:
                self.environ_hits[pid] = in_env

    def sandbox_family(self) -> set[int]:
        """The `python -m sandbox serve` process and what it started (it predates the secrets' intake)."""
        family = {pid for pid, argv in self.argv_of.items() if "-m sandbox serve" in argv}
        changed = True
        while changed:
            changed = False
            for pid, parent in self.parent_of.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    changed = True
        return family

    @property
    def seen(self) -> set[int]:
        return set(self.argv_of)


@pytest.fixture
def watch_threads() -> Iterator[list[ArgvWatch]]:
    watches: list[ArgvWatch] = []
    yield watches
    for watch in watches:
        watch.stop.set()


def start_watch(watches: list[ArgvWatch], scanner: Scanner, root: Callable[[], int]) -> ArgvWatch:
    watch = ArgvWatch(scanner, root)
    threading.Thread(target=watch.run, daemon=True).start()
    watches.append(watch)
    return watch


def assert_positive_control(scanner: Scanner, pid: int, names: list[str], *, only_locked: list[str]) -> None:
    """Before the wipe: every live value is found, and (for ``only_locked``) only in the secret buffers."""
    hits = scanner.scan(pid)
    for name in names:
        assert any(hit.secret == name for hit in hits), f"the scanner did not see the live {name}"
    outside = [hit for hit in hits if hit.secret in only_locked and not {"lo", "dd", "wf"} <= hit.flags]
    assert not outside, "live copies outside the locked buffers:\n" + "\n".join(map(str, outside))


def assert_no_trace(scanner: Scanner, pid: int) -> None:
    hits = scanner.scan(pid)
    assert not hits, f"{len(hits)} copies after the sweep:\n" + "\n".join(map(str, hits[:20]))
    assert scanner.in_environ(pid) == [], "/proc/PID/environ still shows a secret"


def assert_files_clean(scanner: Scanner, *roots: Path) -> None:
    leaks = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file():
                found = scanner.in_text(path.read_bytes())
                if found:
                    leaks.append(f"{path}: {found}")
    assert not leaks, "secret values in files:\n" + "\n".join(leaks)


def stop_run(process: subprocess.Popen[bytes], watch: ArgvWatch) -> None:
    """End a run under test, whatever state it is in: the argv watch, the child, its sandboxes."""
    watch.stop.set()
    if process.poll() is None:
        process.kill()
        process.wait()
    stop_sandboxes(watch)


def stop_sandboxes(watch: ArgvWatch) -> None:
    """Leave nothing behind if a test failed half-way (the sandbox runs in its own session)."""
    for pid in list(watch.seen):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"sandbox" in argv and b"serve" in argv:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


# -- the tests -----------------------------------------------------------------------------------------------


def test_env_secrets_leave_no_trace_after_phase_2(tmp_path: Path, watch_threads: list[ArgvWatch]) -> None:
    values = new_values()
    scanner = Scanner(values)
    child = Child(tmp_path / "pauses")
    argv = [sys.executable, "-c", LAUNCHER, "bootstrap", "--headless", "--sandbox", "--sandbox-dir"]
    process = subprocess.Popen(
        [*argv, str(tmp_path / "sandbox")],
        env=child_env(tmp_path, values, child.pause_file, pauses=f"{PAUSES},after-run"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    watch = start_watch(watch_threads, scanner, lambda: process.pid)
    try:
        # The values were taken from the environment at start: /proc/PID/environ shows none of them.
        child.wait_pause("before-wipe", lambda: process.poll() is None)
        assert scanner.in_environ(child.pid) == []
        assert_positive_control(scanner, child.pid, list(values), only_locked=list(values))
        child.resume()

        child.wait_pause("after-sweep", lambda: process.poll() is None)
        assert_no_trace(scanner, child.pid)
        child.resume()

        # After phase 5: phases 3 to 5 checked the ESO-synced Secrets (which hold the same values) from the
        # ExternalSecrets' status and read the Vault init keys into locked memory: still no copy anywhere.
        child.wait_pause("after-run", lambda: process.poll() is None, timeout=180)
        assert_no_trace(scanner, child.pid)
        root_token = Scanner({"VAULT_ROOT_TOKEN": vault_root_token(tmp_path / "sandbox")})
        held = root_token.scan(child.pid)
        # The root token stays in one locked buffer for day 2 (README "Limits"); no copy outside it.
        assert held and all({"lo", "dd", "wf"} <= hit.flags for hit in held), "\n".join(map(str, held))
        child.resume()

        output, _ = process.communicate(timeout=120)
    finally:
        stop_run(process, watch)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    assert "✔ bootstrap finished" in output.decode()
    assert re.search(r"\d secrets? wiped, 0 copies found", output.decode()), output.decode()[-3000:]
    assert scanner.in_text(output) == []
    # No child ever had a secret on its command line (k3s, flux, helm, the sandbox, OpenBao, ...).
    commands = " ".join(watch.argv_of.values())
    assert "sandbox serve" in commands and "helm" in commands and "flux" in commands, commands
    assert watch.argv_hits == []
    assert scanner.in_text((tmp_path / "sandbox" / "argv.log").read_bytes()) == []  # what k3s/flux/helm got
    # The values left the environment before any child started: none inherited one, the sandbox included.
    assert watch.sandbox_family(), "the poller saw the sandbox world"
    assert {watch.argv_of[pid][:80]: names for pid, names in watch.environ_hits.items()} == {}
    # The run state, the summary and anything else gitops-tui wrote hold no value in any form.
    run_state = tmp_path / "sandbox" / "state"  # with --sandbox the run state lives in the sandbox folder
    assert (run_state / "state.json").is_file() and (run_state / "summary.json").is_file()
    assert_files_clean(scanner, run_state, tmp_path / "state", tmp_path / "data", tmp_path / "config")


TMUX = shutil.which("tmux")


@dataclass
class Terminal:
    env: dict[str, str]
    name: str = "no-trace"

    def tmux(self, *args: str, data: str | None = None) -> str:
        result = subprocess.run(
            ["tmux", *args], input=data, capture_output=True, text=True, env=self.env, timeout=30, check=False
        )
        return result.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def wait(self, condition: Callable[[str], bool], alive: Callable[[], bool], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if condition(text):
                return text
            assert alive(), f"gitops-tui exited; screen:\n{text}"
            time.sleep(0.1)
        raise AssertionError(f"timed out; screen:\n{self.screen()}")


@pytest.mark.skipif(TMUX is None, reason="tmux is part of the machine image")
def test_typed_and_pasted_secrets_leave_no_trace(tmp_path: Path, watch_threads: list[ArgvWatch]) -> None:
    values = new_values()
    typed, pasted = values["MYAPP_DB_PASSWORD"], values["MYAPP_API_KEY"]
    from_env = {name: values[name] for name in ("GITHUB_TOKEN", "CLOUDFLARE_API_TOKEN")}
    scanner = Scanner(values)
    child = Child(tmp_path / "pauses")
    env = child_env(tmp_path, from_env, child.pause_file)
    env.update({"TMUX_TMPDIR": str(tmp_path), "TERM": "xterm-256color"})
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    # gitops-tui must not be the pane's process, nor a shell's job: tmux continues a stopped pane process at
    # once and a shell moves on when its child stops, either of which would undo a pause. A plain waiter
    # (waitpid without WUNTRACED) sits in between.
    waiter = tmp_path / "wait.py"
    waiter.write_text("import subprocess, sys\nsys.exit(subprocess.call(sys.argv[1:]))\n")
    terminal = Terminal(env)
    command = f"exec {sys.executable} {waiter} {sys.executable} {script} bootstrap --sandbox --sandbox-dir "
    terminal.tmux(
        "new-session", "-d", "-s", terminal.name, "-x", "110", "-y", "34", command + str(tmp_path / "sandbox")
    )
    pane = int(terminal.tmux("list-panes", "-t", terminal.name, "-F", "#{pane_pid}").split()[0])

    def alive() -> bool:
        return _state(pane) not in ("gone", "Z")

    watch = start_watch(
        watch_threads, scanner, lambda: pane
    )  # the waiter's descendants: gitops-tui and its own
    try:
        terminal.wait(lambda text: "Run the bootstrap" in text, alive)
        terminal.tmux("send-keys", "-t", terminal.name, "y")
        terminal.wait(lambda text: "Secrets needed" in text, alive)
        for character in typed:  # one key at a time, as a person types
            terminal.tmux("send-keys", "-t", terminal.name, "-l", character)
            time.sleep(0.01)
        terminal.tmux("send-keys", "-t", terminal.name, "Enter")  # to the next field
        time.sleep(0.5)  # the focus moves through the message queue; a paste right away would beat it
        terminal.tmux("load-buffer", "-b", "secret", "-", data=pasted)  # not on any command line
        terminal.tmux("paste-buffer", "-p", "-d", "-b", "secret", "-t", terminal.name)

        def bullets(text: str) -> list[int]:
            return sorted(len(run) for run in re.findall("•+", text))

        screen = terminal.wait(lambda text: len(pasted) in bullets(text), alive, timeout=10)
        assert bullets(screen) == sorted([len(typed), len(pasted)]), screen
        assert typed not in screen and pasted not in screen
        terminal.tmux("send-keys", "-t", terminal.name, "Enter")

        child.wait_pause("before-wipe", alive, describe=terminal.screen)
        assert scanner.in_environ(child.pid) == []
        # The pasted value also went through Textual's input thread as text: found, but only the live
        # buffer is promised to be locked before the wipe. The others live only in locked memory.
        assert_positive_control(
            scanner, child.pid, list(values), only_locked=[*from_env, "MYAPP_DB_PASSWORD"]
        )
        child.resume()

        child.wait_pause("after-sweep", alive, describe=terminal.screen)
        assert_no_trace(scanner, child.pid)
        child.resume()
        assert scanner.in_text(terminal.screen().encode()) == []

        # Keep the pane when its program ends, to read the whole scrollback after quitting.
        terminal.tmux("set-option", "-w", "-t", terminal.name, "remain-on-exit", "on")
        terminal.tmux("send-keys", "-t", terminal.name, "q")  # quit; "y" confirms stopping the run
        deadline = time.monotonic() + 30
        while alive() and time.monotonic() < deadline:
            if "Quit while the bootstrap runs?" in terminal.screen():
                terminal.tmux("send-keys", "-t", terminal.name, "y")
            time.sleep(0.2)
        assert not alive(), f"gitops-tui did not quit; screen:\n{terminal.screen()}"
        # The app drew on the alternate screen: the terminal's scrollback keeps nothing it showed or was sent.
        scrollback = terminal.tmux("capture-pane", "-p", "-S", "-", "-E", "-", "-t", terminal.name)
        assert "gitops-tui" in scrollback or scrollback.strip() == "" or "Pane is dead" in scrollback, (
            scrollback
        )
        assert typed not in scrollback and pasted not in scrollback
        assert scanner.in_text(scrollback.encode()) == []
    finally:
        watch.stop.set()
        terminal.tmux("kill-server")
        if child.pid and _state(child.pid) not in ("gone", "Z"):
            os.kill(child.pid, signal.SIGKILL)
        stop_sandboxes(watch)
    assert watch.argv_hits == []
    run_state = tmp_path / "sandbox" / "state"
    assert (run_state / "state.json").is_file()
    assert_files_clean(scanner, run_state, tmp_path / "state", tmp_path / "data", tmp_path / "config")


def test_ctrl_c_during_the_run_still_wipes_and_sweeps(tmp_path: Path, watch_threads: list[ArgvWatch]) -> None:
    values = new_values()
    scanner = Scanner(values)
    child = Child(tmp_path / "pauses")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            "bootstrap",
            "--headless",
            "--sandbox",
            "--sandbox-dir",
            str(tmp_path / "sb"),
        ],
        env=child_env(tmp_path, values, child.pause_file, pauses="after-sweep"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    watch = start_watch(watch_threads, scanner, lambda: process.pid)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the secrets are held from the start of the run
            if b"Phase 1" in line:
                break
        process.send_signal(signal.SIGINT)
        child.wait_pause("after-sweep", lambda: process.poll() is None)
        assert_no_trace(scanner, child.pid)
        child.resume()
        output, _ = process.communicate(timeout=60)
    finally:
        stop_run(process, watch)
    assert process.returncode == 130, output.decode(errors="replace")[-2000:]
    assert "interrupted" in output.decode()
    assert scanner.in_text(output) == []


def test_committed_screenshots_and_snapshots_hold_no_typed_value() -> None:
    """The pictures in the repository were made by typing throwaway secrets: none may show one."""
    import ast

    from tests.tui.test_app import TYPED as APP_TYPED

    script = (ROOT / "screenshots" / "export_screenshots.py").read_text()
    typed: dict[str, str] = {}
    for node in ast.walk(ast.parse(script)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TYPED" for t in node.targets):
            typed = ast.literal_eval(node.value)
    assert typed, "the screenshot script types secrets named in TYPED"
    # Readable throwaway values ("screenshot-api-key"): their halves are ordinary words, so whole forms only.
    scanner = Scanner({**{f"screenshot {k}": v for k, v in typed.items()}, **APP_TYPED}, halves=False)
    pictures = [*(ROOT / "screenshots").glob("*.svg"), *(ROOT / "tests").rglob("__snapshots__/**/*.svg")]
    assert len(pictures) >= 5
    leaks = [
        f"{path}: {scanner.in_text(path.read_bytes())}"
        for path in pictures
        if scanner.in_text(path.read_bytes())
    ]
    assert not leaks
