"""Authenticated reads of a network Git remote, as source-controller does them.

:class:`phases.git.GitRepo` deliberately never handles credentials (the app relies on the user's
own git setup), while source-controller authenticates with the GitRepository's ``secretRef``.
So the two network operations it needs (resolve a branch head, fetch it into a local mirror)
run git here, with the credentials passed as an ``http.extraHeader`` through git's
``GIT_CONFIG_*`` environment: never in argv or a URL, never logged. Manifests are then read
from the mirror with ``GitRepo.files_at``, like any other repository.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from phases.git import GitError, GitRepo

NETWORK_TIMEOUT_SECONDS: Final = 30.0
_STDERR_LINES: Final = 2


class GitRemoteError(Exception):
    """A git network operation failed; the message is git's own, credentials never included."""

    def __init__(self, message: str, *, authentication: bool = False) -> None:
        super().__init__(message)
        self.authentication = authentication


@dataclass(frozen=True)
class GitCredentials:
    """HTTP credentials from a GitRepository's Secret (``username``+``password`` or ``bearerToken``)."""

    username: str = ""
    password: str = field(default="", repr=False)
    bearer_token: str = field(default="", repr=False)

    def authorization(self) -> str:
        if self.bearer_token:
            return f"Bearer {self.bearer_token}"
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {basic}"


def mirror_path(workdir: Path, namespace: str, name: str) -> Path:
    """Where the source controller keeps its bare mirror of a network GitRepository."""
    return workdir / "gitrepositories" / namespace / f"{name}.git"


def remote_branch_head(url: str, branch: str, credentials: GitCredentials | None) -> str | None:
    """The sha of ``branch`` on the remote, or None when the remote has no such branch."""
    listing = _run_git(["ls-remote", "--", url, f"refs/heads/{branch}"], credentials, cwd=None)
    for line in listing.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


def fetch_into_mirror(
    url: str, branch: str, sha: str, mirror: Path, credentials: GitCredentials | None
) -> None:
    """Make ``sha`` readable in the bare ``mirror`` (created on first use); a no-op when it already is."""
    if not (mirror / "HEAD").is_file():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        GitRepo.init(mirror, bare=True, initial_branch=branch)
    with contextlib.suppress(GitError):  # not fetched yet
        GitRepo(mirror).head(sha)
        return
    _run_git(
        ["fetch", "--quiet", "--no-tags", "--", url, f"+refs/heads/{branch}:refs/heads/{branch}"],
        credentials,
        cwd=mirror,
    )


def _run_git(args: list[str], credentials: GitCredentials | None, *, cwd: Path | None) -> str:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if credentials is not None:
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: {credentials.authorization()}",
            }
        )
    try:
        result = subprocess.run(
            ["git", "-c", "credential.helper=", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=NETWORK_TIMEOUT_SECONDS,
            start_new_session=True,  # no controlling terminal: nothing can prompt
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise GitRemoteError(f"git {args[0]} timed out after {NETWORK_TIMEOUT_SECONDS:g} s") from error
    except OSError as error:
        raise GitRemoteError(f"cannot run git: {error}") from error
    finally:
        env.clear()  # drop our reference to the header
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace")
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        message = " | ".join(lines[-_STDERR_LINES:]) or f"exit code {result.returncode}"
        authentication = "Authentication failed" in stderr or "could not read Username" in stderr
        raise GitRemoteError(message, authentication=authentication)
    return result.stdout.decode("utf-8", "replace")
