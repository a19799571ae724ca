"""gitops-tui benchmarks: speed, API load and memory against the targets of issue 6.

Run ``python -m bench`` (see bench/README.md). Each benchmark module has ``run(ctx) -> list[Figure]``.
"""

from __future__ import annotations

from typing import Final

# name -> module under bench/, in the order they run
BENCHMARKS: Final[dict[str, str]] = {
    "engine_overhead": "bench.engine_overhead",
    "resource_tree": "bench.resource_tree",
    "idle_memory": "bench.idle_memory",
    "log_pane": "bench.log_pane",
    "rollback_picker": "bench.rollback_picker",
    "vault_tree": "bench.vault_tree",
    "secret_scan": "bench.secret_scan",
    "startup": "bench.startup",
    "api_load": "bench.api_load",
}
