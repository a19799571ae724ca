"""What every benchmark shares: figures, targets, timing, memory and loop-lag helpers.

A benchmark is a module in this package with ``run(ctx: BenchContext) -> list[Figure]`` (plain or async).
The runner (``bench.__main__``) runs each one in a fresh interpreter, so memory figures, loaded modules and
threads of one benchmark never colour another.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
VENV_BIN: Final = Path(sys.executable).parent
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
MB: Final = 1024 * 1024

_TARGET = re.compile(r"^(<=|>=)\s*(-?[0-9.]+)$")


@dataclass(frozen=True)
class Figure:
    """One measured number. ``target`` is ``"<=X"``, ``">=X"`` or ``"-"`` (reported, not judged)."""

    name: str
    value: float
    unit: str
    target: str = "-"
    note: str = ""

    @property
    def met(self) -> bool | None:
        """Whether the value meets its target; None when the figure has none (or is not a number)."""
        match = _TARGET.match(self.target.replace(" ", ""))
        if match is None or math.isnan(self.value):
            return None
        bound = float(match.group(2))
        return self.value <= bound if match.group(1) == "<=" else self.value >= bound

    def line(self) -> str:
        """``name value unit target``: four fields separated by single spaces."""
        return f"{self.name} {format_value(self.value)} {self.unit} {self.target.replace(' ', '')}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        if math.isnan(self.value):
            data["value"] = None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        value = data.get("value")
        return cls(
            name=str(data["name"]),
            value=float("nan") if value is None else float(value),
            unit=str(data["unit"]),
            target=str(data.get("target", "-")),
            note=str(data.get("note", "")),
        )


def format_value(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value == int(value):
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


@dataclass
class BenchContext:
    """What a benchmark gets: whether to run the short version, a scratch directory, a progress logger."""

    quick: bool
    workdir: Path
    notes: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- timing ------------------------------------------------------------------------------------------------


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def no_gc() -> Iterator[None]:
    """Keep the cyclic collector out of a short timed section (it is measured separately where it matters)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- memory ------------------------------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now (``/proc/PID/statm``, second field, in pages)."""
    with Path(f"/proc/{pid}/statm").open(encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


def rss_mb(pid: int | str = "self") -> float:
    return rss_bytes(pid) / MB


def settle_memory() -> None:
    """Collect garbage and give freed arenas back, so an RSS reading means what is really held."""
    gc.collect()
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then includes free heap, which only inflates it
        pass


# -- the event loop's responsiveness ---------------------------------------------------------------------


class LoopLagProbe:
    """A ticker on the running loop: how late each tick fires is how long the loop was busy elsewhere.

    The largest lateness is the longest stall the UI could have had (a key, a repaint, a timer waiting).
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.lags: list[float] = []  # seconds late, one per tick
        self._task: asyncio.Task[None] | None = None
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        self.stopped = time.perf_counter()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - before - self.interval))

    @property
    def max_ms(self) -> float:
        return max(self.lags, default=float("nan")) * 1000.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.lags:
            return float("nan")
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000.0


class GcPauses:
    """Durations of the cyclic collector's runs while installed (``gc.callbacks``), per generation."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._began = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._began))

    def max_ms(self, generation: int | None = None) -> float:
        chosen = [seconds for gen, seconds in self.pauses if generation is None or gen == generation]
        return max(chosen, default=0.0) * 1000.0

    def total_ms(self) -> float:
        return sum(seconds for _, seconds in self.pauses) * 1000.0

    def count(self, generation: int) -> int:
        return sum(1 for gen, _ in self.pauses if gen == generation)


# -- environment for child processes -----------------------------------------------------------------------


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Our environment with HOME and the XDG dirs under ``home``, so nothing touches the user's files."""
    env = dict(os.environ)
    for variable in ("GITOPS_TUI_CONFIG", "KUBECONFIG", "VAULT_ADDR", "VAULT_TOKEN", "NO_COLOR", "TEXTUAL"):
        env.pop(variable, None)
    for sub in ("config", "state", "data", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
    )
    env.update(extra)
    return env


def write_unreachable_config(directory: Path) -> Path:
    """A gitops-tui config whose cluster does not exist: the app starts without any cluster or sandbox."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gitops-tui.toml"
    path.write_text(
        "[cluster]\n"
        f'kubeconfig = "{directory / "no-such-kubeconfig"}"\n'
        "[deployments]\n"
        f'clone_dir = "{directory / "no-clone"}"\n'
        "[engine]\n"
        f'state_dir = "{directory / "state"}"\n',
        encoding="utf-8",
    )
    return path


def resolve(future: asyncio.Future[None]) -> None:
    """Set ``future``'s result unless it is already done (for ``call_after_refresh`` callbacks)."""
    if not future.done():
        future.set_result(None)


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    """Milliseconds of ``repeat`` calls of ``function``."""
    times: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(ms_since(start))
    return times
