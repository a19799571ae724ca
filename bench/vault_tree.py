"""Vault tree: 1,000 KV v2 paths five levels deep, kv2_list_tree vs a sequential recursive listing (>= 4x).

A real OpenBao dev server (``sandbox.openbao.OpenBaoServer.dev``) holds ``secret/`` paths
``bench/team-A/app-B/env-C/part-D/secret-E``-like trees: 4 x 5 x 5 x 2 folders with 5 secrets each, i.e. 1,000
secrets, five path components below the root folder, 325 folder listings. Both listings use the same
``phases.vault.VaultClient`` (same HTTP pool): ``kv2_list_tree`` (folders of a level listed concurrently) and
a depth-first walk that lists one folder at a time through the same client's folder listing.

On localhost every LIST costs CPU, not waiting, on both sides (client and OpenBao share this machine's cores),
so a second pair of figures repeats the comparison through a proxy that delays each request by 5 ms, as a
Vault a LAN or a region away would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import hvac

from bench.core import BenchContext, Figure, median, ms_since
from phases.secrets import SecretValue
from phases.vault import VaultClient
from sandbox.openbao import DEV_ROOT_TOKEN, OpenBaoServer

MOUNT: Final = "secret"
FANOUT: Final = (4, 5, 5, 2)  # folders per level
LEAVES: Final = 5  # secrets per deepest folder
DELAY: Final = 0.005


def secret_paths() -> list[str]:
    paths = [""]
    for level, width in enumerate(FANOUT):
        paths = [f"{path}l{level}-{index}/" for path in paths for index in range(width)]
    return [f"{path}secret-{leaf}" for path in paths for leaf in range(LEAVES)]


def populate(url: str, paths: list[str]) -> None:
    def write(path: str) -> None:
        client = _clients.setdefault(threading.get_ident(), hvac.Client(url=url, token=DEV_ROOT_TOKEN))
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"value": "x"}, mount_point=MOUNT)

    _clients: dict[int, hvac.Client] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, paths))


def sequential_tree(client: VaultClient, folder: str = "") -> list[str]:
    """Depth-first, one LIST at a time: the obvious recursive listing."""
    found: list[str] = []
    for entry in client._list_folder(MOUNT, folder):
        full = f"{folder}/{entry}" if folder else entry
        if entry.endswith("/"):
            found.extend(sequential_tree(client, full.rstrip("/")))
        else:
            found.append(full)
    return sorted(found)


class DelayProxy:
    """A TCP proxy on 127.0.0.1 holding each client->server chunk ``delay`` seconds (adds it per request)."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve()), name="delay-proxy", daemon=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        sock = client_writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        with contextlib.suppress(asyncio.CancelledError):  # the proxy stopping with connections open
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, self.delay),
                self._pipe(upstream_reader, client_writer, 0.0),
            )

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    @contextlib.contextmanager
    def running(self) -> Iterator[DelayProxy]:
        self._thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)


def scan_tree(client: VaultClient) -> list[str]:
    """OpenBao's recursive listing: one ``SCAN`` request on the metadata root (not in HashiCorp Vault)."""
    answer = client._call("SCAN", f"/v1/{MOUNT}/metadata/", missing_ok=True)
    keys: list[str] = (answer or {}).get("data", {}).get("keys", [])
    return sorted(key for key in keys if not key.endswith("/"))


def compare(url: str, rounds: int) -> dict[str, float]:
    """Median ms of the concurrent, sequential and SCAN listings (alternating, same client), and the count."""
    token = SecretValue.from_bytes("root token", DEV_ROOT_TOKEN.encode())
    with VaultClient(url, token=token) as client:
        expected = client.kv2_list_tree(MOUNT)  # warm-up: connections, the server's caches
        assert sequential_tree(client) == expected
        assert scan_tree(client) == expected
        times: dict[str, list[float]] = {"concurrent": [], "sequential": [], "scan": []}
        listers: dict[str, Callable[[], list[str]]] = {
            "concurrent": lambda: client.kv2_list_tree(MOUNT),
            "sequential": lambda: sequential_tree(client),
            "scan": lambda: scan_tree(client),
        }
        for _ in range(rounds):
            for name, lister in listers.items():
                start = time.perf_counter()
                found = lister()
                times[name].append(ms_since(start))
                assert found == expected
    result = {name: median(values) for name, values in times.items()}
    result["paths"] = float(len(expected))
    return result


def run(ctx: BenchContext) -> list[Figure]:
    rounds = 3 if ctx.quick else 7
    paths = secret_paths()
    with OpenBaoServer.dev(ctx.workdir / "openbao") as server:
        ctx.log(f"vault_tree: writing {len(paths)} secrets")
        populate(server.url, paths)
        local = compare(server.url, rounds)
        with DelayProxy(server.port, DELAY).running() as proxy:
            remote = compare(f"http://127.0.0.1:{proxy.port}", max(2, rounds // 2))
    folders = 1 + sum(_product(FANOUT[: level + 1]) for level in range(len(FANOUT)))
    return [
        Figure(
            "vault_tree_paths",
            local["paths"],
            "count",
            "-",
            f"KV v2 secrets five levels deep, {folders} folder LISTs",
        ),
        Figure(
            "vault_tree_concurrent",
            local["concurrent"],
            "ms",
            "-",
            f"VaultClient.kv2_list_tree, median of {rounds}",
        ),
        Figure(
            "vault_tree_sequential",
            local["sequential"],
            "ms",
            "-",
            "recursive listing, one LIST at a time, same client",
        ),
        Figure(
            "vault_tree_speedup",
            local["sequential"] / local["concurrent"],
            "x",
            ">=4",
            "sequential / kv2_list_tree, localhost OpenBao dev server",
        ),
        Figure(
            "vault_tree_scan",
            local["scan"],
            "ms",
            "-",
            "one SCAN request (OpenBao's recursive list), same client",
        ),
        Figure(
            "vault_tree_speedup_scan",
            local["sequential"] / local["scan"],
            "x",
            "-",
            "sequential / SCAN, localhost",
        ),
        Figure(
            "vault_tree_concurrent_5ms",
            remote["concurrent"],
            "ms",
            "-",
            "kv2_list_tree through a proxy adding 5 ms per request",
        ),
        Figure("vault_tree_sequential_5ms", remote["sequential"], "ms", "-", "same, sequential"),
        Figure(
            "vault_tree_speedup_5ms",
            remote["sequential"] / remote["concurrent"],
            "x",
            "-",
            "sequential / kv2_list_tree, +5 ms per request",
        ),
    ]


def _product(values: tuple[int, ...]) -> int:
    result = 1
    for value in values:
        result *= value
    return result
