"""Resource tree: 5,000 objects into ResourceModel + ResourceTree (<= 100 ms), a 1,000-event burst (<= 30 ms).

No emulator: the objects (1,000 Kustomizations, 2,500 ExternalSecrets, 1,500 listed Vault paths and the
paths they read) are fed to the model as the watcher delivers them (``replace_kind`` per type, then the
Vault listing), and the real ``ResourceTree`` widget shows them in a headless Textual app.

* build: model filled + ``tree.load(model)``; a second figure adds the first frame after it (layout of the
  tree's lines and the paint of the visible rows);
* burst: 1,000 MODIFIED events coalesced into one batch per kind, as the watcher's dispatcher hands them over,
  applied with ``apply_batch`` + ``tree.apply_changes`` exactly as the app does; timed up to the end of the
  next frame. ``TreeNode.set_label``/``add``/``remove`` are counted to check that only rows whose text
  changed were touched.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets.tree import TreeNode

from bench.core import BenchContext, Figure, median, ms_since, resolve
from bench.world import World
from phases.kube import EXTERNAL_SECRETS, KUSTOMIZATIONS
from phases.resources import KUSTOMIZATION, ResourceModel
from phases.watch import WatchBatch, apply_batch
from widgets.resource_tree import ResourceTree

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


class LabelCounter:
    """Counts TreeNode relabels, additions and removals while installed."""

    def __init__(self) -> None:
        self.relabels = 0
        self.adds = 0
        self.removes = 0
        self._originals: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> LabelCounter:
        for name in ("set_label", "add", "remove"):
            original = getattr(TreeNode, name)
            self._originals[name] = original
            setattr(TreeNode, name, self._wrap(name, original))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, original in self._originals.items():
            setattr(TreeNode, name, original)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        attribute = {"set_label": "relabels", "add": "adds", "remove": "removes"}[name]

        def counted(node: TreeNode[Any], *args: Any, **kwargs: Any) -> Any:
            setattr(self, attribute, getattr(self, attribute) + 1)
            return original(node, *args, **kwargs)

        return counted


def row_labels(tree: ResourceTree) -> dict[int, str]:
    """Every row's plain label text, keyed by node id."""
    labels: dict[int, str] = {}
    stack = [tree.root]
    while stack:
        node = stack.pop()
        labels[node.id] = str(node.label)  # a Text's str() is its plain text
        stack.extend(node.children)
    return labels


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
        before = row_labels(tree)
        gc.collect()
        with LabelCounter() as counter:
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
        after = row_labels(tree)
        text_changed = sum(1 for node_id, text in after.items() if before.get(node_id) != text)
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
            "relabels": counter.relabels,
            "adds": counter.adds,
            "removes": counter.removes,
            "text_changed": text_changed,
        }


async def run(ctx: BenchContext) -> list[Figure]:
    rounds = 2 if ctx.quick else 5
    await one_round(ctx)  # warm-up: imports, CSS, first-use caches
    results = [await one_round(ctx) for _ in range(rounds)]

    def mid(key: str) -> float:
        return median([result[key] for result in results])

    last = results[-1]
    needless = max(0.0, last["relabels"] - last["text_changed"])
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
            "tree_burst_relabels", last["relabels"], "count", "-", "TreeNode.set_label calls in the burst"
        ),
        Figure(
            "tree_burst_rows_text_changed",
            last["text_changed"],
            "count",
            "-",
            "rows whose label text differs after",
        ),
        Figure(
            "tree_burst_needless_relabels",
            needless,
            "count",
            "<=0",
            f"relabels of rows whose text did not change; "
            f"adds {int(last['adds'])}, removes {int(last['removes'])}",
        ),
    ]
