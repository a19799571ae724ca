"""Memory: RSS of the idle app with 5,000 objects in the tree (target <= 150 MB).

The real ``GitOpsApp`` (every widget, the watcher and Vault poll workers started after the first paint) runs
headless with a config whose cluster does not exist, so nothing outside the process is involved. Its model is
then filled with the synthetic 5,000-object world and the tree shows it, as after a first list of a large
cluster. After a few idle seconds (workers settled, garbage collected) RSS is read from /proc.
"""

from __future__ import annotations

import asyncio

from bench.core import BenchContext, Figure, rss_mb, settle_memory, write_unreachable_config
from bench.resource_tree import next_frame
from bench.world import World
from phases.config import load_config
from tui.app import GitOpsApp
from widgets.resource_tree import ResourceTree

SIZE = (120, 40)


async def idle_rss(ctx: BenchContext, *, objects: bool, idle: float) -> tuple[float, int]:
    """(RSS in MB after ``idle`` seconds, nodes in the tree) of the app, with or without the big world."""
    config = load_config(str(write_unreachable_config(ctx.workdir / ("big" if objects else "empty"))))
    app = GitOpsApp(config)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        nodes = 0
        if objects:
            world = World()
            changed = world.fill(app.model)
            del world  # the watcher's lists are not kept either: only the model holds the objects' nodes
            app.query_one(ResourceTree).apply_changes(app.model, changed)
            nodes = len(app.model)
            await next_frame(app)
        await asyncio.sleep(idle)
        settle_memory()
        await asyncio.sleep(0.1)
        return rss_mb(), nodes


async def run(ctx: BenchContext) -> list[Figure]:
    idle = 2.0 if ctx.quick else 5.0
    # The empty app first: anything the big world leaves behind cannot inflate it.
    empty, _ = await idle_rss(ctx, objects=False, idle=idle)
    full, nodes = await idle_rss(ctx, objects=True, idle=idle)
    return [
        Figure(
            "idle_rss",
            full,
            "MB",
            "<=150",
            f"GitOpsApp headless, {nodes} nodes in the tree, after {idle:g} s idle",
        ),
        Figure("idle_rss_empty_tree", empty, "MB", "-", "same app with an empty tree (measured first)"),
        Figure(
            "idle_rss_per_1000_nodes",
            (full - empty) / max(1, nodes) * 1000,
            "MB",
            "-",
            # The virtual tree holds only key lists and the labels drawn: this is mostly the model (~1 MB
            # per 1,000 nodes) and allocator pages the decoded objects left partly used.
            "what the objects add: model, tree, and memory their JSON left behind",
        ),
    ]
