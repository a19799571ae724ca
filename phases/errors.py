"""The one base for failures whose message is meant for a human.

The engine reports any ``GitOpsError`` as the step's reason, as it is; any other
exception is a bug and is reported as "unexpected error" with its type.
"""

from __future__ import annotations


class GitOpsError(Exception):
    """An expected failure (cluster, Vault, Git, a child process, bad input) with a clear message."""
