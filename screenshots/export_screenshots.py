"""Regenerate the SVG screenshots in this folder from the real app running on a fresh sandbox.

    .venv/bin/python screenshots/export_screenshots.py

Each picture is the app at a key moment: the secret prompt, the bootstrap running, the bootstrap
finished, and the resource tree with an ExternalSecret's details. Typed secrets are throwaway
values and the prompt shows only bullets; the script checks that no value reached an SVG.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from phases.config import config_from_document  # noqa: E402
from sandbox.settings import config_overrides, sandbox_path_env  # noqa: E402
from sandbox.world import SandboxWorld  # noqa: E402
from tui.app import GitOpsApp  # noqa: E402
from widgets.confirm import ConfirmScreen  # noqa: E402
from widgets.resource_details import ResourceDetails  # noqa: E402
from widgets.resource_tree import ResourceTree  # noqa: E402
from widgets.secret_prompt import SecretPromptScreen  # noqa: E402
from widgets.timeline import PhaseTimeline  # noqa: E402

OUT = Path(__file__).resolve().parent
SIZE = (100, 30)
TYPED = {
    "github_token": "ghp_ScreenshotOnlyToken000000",
    "cloudflare_api_token": "cf_screenshot_only_token_0000",
    "myapp_db_password": "screenshot-db-password",
    "myapp_api_key": "screenshot-api-key",
}


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the app did not reach the expected state")
        await pilot.pause(0.1)


async def export(root: Path) -> list[Path]:
    written: list[Path] = []
    with SandboxWorld(root / "sandbox") as world:
        config = config_from_document(config_overrides(world.info), "sandbox")
        app = GitOpsApp(config, command_env=sandbox_path_env(world.info), sandbox=True)

        def save(name: str) -> None:
            path = Path(app.save_screenshot(f"{name}.svg", str(OUT)))
            written.append(path)

        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(1.0)
            await pilot.press("b")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            save("1-confirm-bootstrap")
            await pilot.press("y")
            await until(pilot, lambda: isinstance(app.screen, SecretPromptScreen))
            await pilot.press(*TYPED["github_token"], "enter", *TYPED["cloudflare_api_token"], "enter")
            save("2-secret-prompt")
            await pilot.press(*TYPED["myapp_db_password"], "enter", *TYPED["myapp_api_key"], "enter")
            timeline = app.query_one(PhaseTimeline)
            await until(pilot, lambda: timeline.step_state("1/eso-install") == "running")
            await pilot.pause(1.0)
            save("3-bootstrap-running")
            await until(pilot, lambda: app.last_result is not None)
            await pilot.pause(1.0)
            save("4-bootstrap-finished")
            tree = app.query_one(ResourceTree)
            tree.focus()
            target = ("ExternalSecret", "myapp", "myapp-secrets")
            await until(pilot, lambda: app.model.get(target) is not None)
            for _ in range(60):
                if tree.selected_key == target:
                    break
                await pilot.press("down")
            await pilot.press("enter")
            await until(pilot, lambda: app.query_one(ResourceDetails).display)
            await pilot.pause(0.5)
            save("5-tree-with-details")
            await pilot.press("escape", "q")
    for path in written:
        text = path.read_text()
        leaked = [name for name, value in TYPED.items() if value in text]
        if leaked:
            raise SystemExit(f"{path}: secret values visible in the screenshot: {leaked}")
    return written


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gitops-tui-screenshots-") as root:
        for path in asyncio.run(export(Path(root))):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
