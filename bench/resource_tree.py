"""Resource tree: 5,000 objects into ResourceModel + ResourceTree (<= 100 ms), a 1,000-event burst (<= 30 ms).

No emulator: the objects (1,000 Kustomizations, 2,500 ExternalSecrets, 1,500 listed Vault paths and the
paths they read) are fed to the model as the watcher delivers them (``replace_kind`` per type, then the
Vault listing), and the real ``ResourceTree`` widget shows them in a headless Textual app.

* build: model filled + ``tree.load(model)``; a second figure adds the first frame after it (the tree is
  virtual: that frame draws the visible rows only);
* burst: 1,000 MODIFIED events coalesced into one batch per kind, as the watcher's dispatcher hands them over,
  applied with ``apply_batch`` + ``tree.apply_changes`` exactly as the app does; timed up to the end of the
  next frame. The labels the tree builds and the rows it draws are recorded, and every row's text is compared
  before and after, to check that only rows whose text changed were redrawn.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.strip import Strip

from bench.core import BenchContext, Figure, median, ms_since, resolve
from bench.world import World
from phases.kube import EXTERNAL_SECRETS, KUSTOMIZATIONS
from phases.resources import KUSTOMIZATION, ResourceModel, ResourceNode
from phases.watch import WatchBatch, apply_batch
from widgets.resource_tree import HEADINGS, ResourceTree, Row

SIZE = (120, 40)
BURST = 1000


class TreeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ResourceTree(id="tree")


async def next_frame(app: App[Any]) -> None:
    """Return after the app has processed what is queued and refreshed the screen once."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    app.screen.call_after_refresh(resolve, done)
    app.screen.refresh()
    await done


class DrawCounter:
    """Records, while installed, the labels ``ResourceTree`` builds and the rows it draws."""

    def __init__(self) -> None:
        self.labels = 0
        self.drawn: list[Row] = []
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> DrawCounter:
        label, render = ResourceTree._resource_label, ResourceTree._render_row
        self._originals = {"_resource_label": label, "_render_row": render}

        def counted_label(tree: ResourceTree, node: ResourceNode, model: ResourceModel) -> Text:
            self.labels += 1
            return label(tree, node, model)

        def counted_render(tree: ResourceTree, row: Row, width: int) -> Strip:
            self.drawn.append(row)
            return render(tree, row, width)

        setattr(ResourceTree, "_resource_label", counted_label)  # noqa: B010  # a bench probe, restored on exit
        setattr(ResourceTree, "_render_row", counted_render)  # noqa: B010
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._originals.items():
            setattr(ResourceTree, name, original)


def row_texts(tree: ResourceTree) -> dict[Row, str]:
    """Every row's plain label text (resource rows and headings), whether on screen or not."""
    texts: dict[Row, str] = {key: tree.label_of(key).plain for key in tree.shown_keys()}
    texts.update((heading, tree.heading_label(heading.id).plain) for heading in HEADINGS.values())
    return texts


async def one_round(ctx: BenchContext) -> dict[str, float]:
    world = World()
    app = TreeApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        tree = app.query_one(ResourceTree)
        gc.collect()  # garbage of earlier rounds must not be collected on this round's time
        start, cpu = time.perf_counter(), time.thread_time()
        model = ResourceModel()
        world.fill(model)
        model_ms = ms_since(start)
        tree.load(model)
        build_ms = ms_since(start)
        build_cpu_ms = (time.thread_time() - cpu) * 1000
        await next_frame(app)
        first_frame_ms = ms_since(start)
        first_frame_cpu_ms = (time.thread_time() - cpu) * 1000
        nodes = len(model)
        await pilot.pause()

        batches = [
            WatchBatch(resource=KUSTOMIZATIONS, events=tuple(events))
            if kind == KUSTOMIZATION
            else WatchBatch(resource=EXTERNAL_SECRETS, events=tuple(events))
            for kind, events in world.burst(BURST).items()
        ]
        events = sum(len(batch.events) for batch in batches)
        before = row_texts(tree)
        gc.collect()
        with DrawCounter() as counter:
            start, cpu = time.perf_counter(), time.thread_time()
            changed_keys: set[tuple[str, str, str]] = set()
            for batch in batches:
                changed = apply_batch(model, batch)
                changed_keys |= changed
                tree.apply_changes(model, changed)
            apply_ms = ms_since(start)
            await next_frame(app)
            burst_ms = ms_since(start)
            burst_cpu_ms = (time.thread_time() - cpu) * 1000
        after = row_texts(tree)
        text_changed = sum(1 for row, text in after.items() if before.get(row) != text)
        needless = sum(1 for row in counter.drawn if row in after and before.get(row) == after[row])
        return {
            "nodes": nodes,
            "model_ms": model_ms,
            "build_ms": build_ms,
            "first_frame_ms": first_frame_ms,
            "build_cpu_ms": build_cpu_ms,
            "first_frame_cpu_ms": first_frame_cpu_ms,
            "burst_cpu_ms": burst_cpu_ms,
            "events": events,
            "changed_keys": len(changed_keys),
            "apply_ms": apply_ms,
            "burst_ms": burst_ms,
            "relabels": counter.labels,
            "drawn": len(counter.drawn),
            "needless": needless,
            "text_changed": text_changed,
        }


async def run(ctx: BenchContext) -> list[Figure]:
    rounds = 2 if ctx.quick else 5
    await one_round(ctx)  # warm-up: imports, CSS, first-use caches
    results = [await one_round(ctx) for _ in range(rounds)]

    def mid(key: str) -> float:
        return median([result[key] for result in results])

    last = results[-1]
    return [
        Figure(
            "tree_nodes",
            last["nodes"],
            "count",
            "-",
            "Kustomizations, ExternalSecrets, Vault paths (+1 repo, 1 store)",
        ),
        Figure(
            "tree_build",
            mid("build_cpu_ms"),
            "ms",
            "<=100",
            f"UI-thread CPU time: model filled + ResourceTree.load; median of {rounds}",
        ),
        Figure("tree_build_wall", mid("build_ms"), "ms", "-", "same, wall-clock time"),
        Figure("tree_build_model_only", mid("model_ms"), "ms", "-", "ResourceModel part of tree_build"),
        Figure(
            "tree_build_first_frame",
            mid("first_frame_cpu_ms"),
            "ms",
            "-",
            "tree_build + the first frame after it (UI-thread CPU)",
        ),
        Figure(
            "tree_burst",
            mid("burst_cpu_ms"),
            "ms",
            "<=30",
            f"UI-thread CPU time: {int(last['events'])} watch events applied + the next frame",
        ),
        Figure(
            "tree_burst_wall", mid("burst_ms"), "ms", "-", "same, wall-clock (includes waiting for the frame)"
        ),
        Figure(
            "tree_burst_apply_only",
            mid("apply_ms"),
            "ms",
            "-",
            "apply_batch + apply_changes, without the frame",
        ),
        Figure(
            "tree_burst_changed_keys", last["changed_keys"], "count", "-", "keys the model reported changed"
        ),
        Figure(
            "tree_burst_relabels",
            last["relabels"],
            "count",
            "-",
            "labels built in the burst (the virtual tree builds them for visible rows only)",
        ),
        Figure(
            "tree_burst_rows_drawn", last["drawn"], "count", "-", "rows drawn in the frame after the burst"
        ),
        Figure(
            "tree_burst_rows_text_changed",
            last["text_changed"],
            "count",
            "-",
            "rows (resources and headings, on screen or not) whose label text differs after",
        ),
        Figure(
            "tree_burst_needless_relabels",
            last["needless"],
            "count",
            "<=0",
            "rows drawn in the burst whose text did not change",
        ),
    ]
