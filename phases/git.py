"""Git client for the deployments repository, built on the ``sh`` library.

Blocking: the engine calls it through ``asyncio.to_thread``. Every git process goes
through ``_git``, which runs git in its own session (no controlling terminal, so
neither git nor ssh can prompt), with ``GIT_TERMINAL_PROMPT=0``, no askpass program,
``LC_ALL=C`` (messages we parse stay English) and colour/pager/signature display off,
and turns failures into ``GitError`` with the command and git's own message.

Authentication is the user's existing git setup (credential helpers, ssh agent). We
never put a token in a URL or argv, and refuse URLs that carry a password.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import os
import re
import signal
import subprocess
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import sh

from phases.errors import GitOpsError
from phases.shell import install_hint, tracked_process_group

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "NETWORK_TIMEOUT_SECONDS",
    "CommitInfo",
    "DirtyWorkTree",
    "GitError",
    "GitRepo",
    "PushRejected",
    "RevertConflict",
]

NETWORK_TIMEOUT_SECONDS: float = 600.0
"""Limit for clone, fetch, pull, push and ls-remote, so a stalled connection cannot hang the engine."""

_GIT_ENV: Final[Mapping[str, str]] = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",  # empty: git skips askpass programs instead of running one
    "SSH_ASKPASS": "",
    "GIT_EDITOR": "true",  # never wait for an editor (we always pass the message)
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}
# Set when we run inside a git hook or a script; they would redirect git away from `cwd`.
_REPOSITORY_LOCATION_VARS: Final = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
# Settings a user's config could change that would break parsing our output.
_GIT_CONFIG_ARGS: Final = (
    "-c",
    "color.ui=never",
    "-c",
    "core.quotepath=off",
    "-c",
    "log.showSignature=false",
    "-c",
    "advice.detachedHead=false",
)
_LOCAL_READ_TIMEOUT_SECONDS: Final = 60.0  # a history page of a local clone
_REVERT_BATCH: Final = 200  # commits per `git revert` call, far below argv limits
_STDERR_SUMMARY_LINES: Final = 3
_RECORD: Final = "\x1e"
_FIELD: Final = "\x1f"
_LOG_FORMAT: Final = _RECORD + _FIELD.join(["%H", "%h", "%P", "%an", "%ae", "%aI", "%s"]) + _FIELD
_FILES_CHANGED = re.compile(r"(\d+) files? changed")
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_PUSH_RACE_MARKERS: Final = ("(fetch first)", "(non-fast-forward)", "(stale info)")


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    short: str
    parents: tuple[str, ...]
    author: str
    email: str
    date: datetime
    """Author date, with its original UTC offset."""
    subject: str
    files_changed: int | None
    """Files changed relative to the first parent; None when not computed (``with_stats=False``)."""

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


class GitError(GitOpsError):
    """A git command failed. ``str()`` is one line: the command and git's own message."""

    def __init__(
        self, message: str, *, command: Sequence[str] = (), stderr: str = "", exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.command: tuple[str, ...] = tuple(command)
        self.stderr = stderr
        self.exit_code = exit_code


class PushRejected(GitError):
    """The remote branch moved since we last fetched (or is not at the lease's sha)."""


class DirtyWorkTree(GitError):
    """The clone has uncommitted or untracked changes; nothing was done."""


class RevertConflict(GitError):
    """A revert conflicted with later changes; it was aborted and the clone is as it was."""


@dataclass(frozen=True)
class _GitOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace").rstrip("\n")


class _CappedBuffer(io.BytesIO):
    """Keeps the first ``limit`` bytes written and counts the rest (sh writes raw bytes to a BytesIO)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.total = 0

    def write(self, chunk: ReadableBuffer, /) -> int:
        data = memoryview(chunk).cast("B")
        room = self.limit - self.tell()
        if room > 0:
            super().write(data[:room])
        self.total += len(data)
        return len(data)


class GitRepo:
    """A local git repository (a working clone, or a bare repository for read-only calls)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"GitRepo({str(self.path)!r})"

    # -- creating and opening ------------------------------------------------------------

    @classmethod
    def init(cls, path: Path, *, bare: bool = False, initial_branch: str = "main") -> GitRepo:
        _refuse_option_like(initial_branch, "branch name")
        bare_args = ["--bare"] if bare else []
        _git("init", "--quiet", f"--initial-branch={initial_branch}", *bare_args, "--", str(path), cwd=None)
        return cls(path)

    @classmethod
    def clone(cls, url: str, dest: Path, *, branch: str | None = None) -> GitRepo:
        _refuse_credentials_in_url(url)
        branch_args: list[str] = []
        if branch is not None:
            _refuse_option_like(branch, "branch name")
            branch_args = ["--branch", branch]
        _git(
            "clone", "--quiet", *branch_args, "--", url, str(dest), cwd=None, timeout=NETWORK_TIMEOUT_SECONDS
        )
        return cls(dest)

    @classmethod
    def open_or_clone(cls, url: str, dest: Path, *, branch: str) -> GitRepo:
        """Clone ``url`` into ``dest`` if it is missing or empty; otherwise open it and check
        that its ``origin`` is ``url`` (GitError if not, so we never push to the wrong place)."""
        if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
            return cls.clone(url, dest, branch=branch)
        repo = cls(dest)
        top_level = _git("rev-parse", "--show-toplevel", cwd=dest, ok_codes=(0, 128)).text
        if not top_level or Path(top_level).resolve() != dest.resolve():
            raise GitError(f"{dest} exists but is not a git clone; move it away or choose another directory")
        origin = _git("remote", "get-url", "origin", cwd=dest, ok_codes=(0, 2)).text
        if not origin:
            raise GitError(
                f"{dest} is a git clone without an 'origin' remote; expected a clone of {_redact(url)}"
            )
        if _normalize_remote(origin, dest) != _normalize_remote(url, Path.cwd()):
            raise GitError(
                f"{dest} is a clone of {_redact(origin)}, not {_redact(url)}; "
                "move it away or choose another directory"
            )
        return repo

    # -- reading ---------------------------------------------------------------------------

    def head(self, ref: str = "HEAD") -> str:
        """The full sha of the commit ``ref`` names."""
        _refuse_option_like(ref, "revision")
        sha = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok_codes=(0, 1)).text
        if not sha:
            raise GitError(f"{ref!r} does not name a commit in {self.path}")
        return sha

    def remote_head(self, url_or_remote: str, branch: str) -> str | None:
        """The sha of ``branch`` on a remote (name, URL or path), or None if it has no such branch."""
        _refuse_option_like(url_or_remote, "remote")
        _refuse_option_like(branch, "branch name")
        _refuse_credentials_in_url(url_or_remote)
        cwd = self.path if self.path.is_dir() else None
        listing = _git(
            "ls-remote", "--", url_or_remote, f"refs/heads/{branch}", cwd=cwd, timeout=NETWORK_TIMEOUT_SECONDS
        ).text
        for line in listing.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def current_branch(self) -> str | None:
        """The checked-out branch, or None when HEAD is detached."""
        return self._git("symbolic-ref", "--quiet", "--short", "HEAD", ok_codes=(0, 1)).text or None

    def is_dirty(self) -> bool:
        """True if anything differs from HEAD, untracked (not ignored) files included."""
        return self._work_tree_state()[1]

    def is_shallow(self) -> bool:
        return self._git("rev-parse", "--is-shallow-repository").text == "true"

    def is_merge(self, sha: str) -> bool:
        return len(self._parents(sha)) > 1

    def count_commits(self, rev: str = "HEAD") -> int:
        _refuse_option_like(rev, "revision")
        return int(self._git("rev-list", "--count", rev, "--").text)

    def log(
        self, *, rev: str = "HEAD", skip: int = 0, limit: int = 200, with_stats: bool = False
    ) -> list[CommitInfo]:
        """One page of history, newest first, in a single git call.

        With ``with_stats`` each commit (merges too, against their first parent) gets
        ``files_changed``; that costs a diff per commit, so leave it off for cheap paging.
        """
        _refuse_option_like(rev, "revision")
        if skip < 0 or limit < 0:
            raise ValueError("skip and limit must not be negative")
        if limit == 0:
            return []
        stats_args = ["--shortstat", "--diff-merges=first-parent"] if with_stats else []
        output = _git_read(
            "log",
            f"--format={_LOG_FORMAT}",
            f"--skip={skip}",
            f"--max-count={limit}",
            *stats_args,
            rev,
            "--",
            cwd=self.path,
        ).text
        return [_parse_log_record(record, with_stats) for record in output.split(_RECORD)[1:]]

    def show_diff(self, sha: str, *, max_bytes: int = 200_000) -> str:
        """The commit's header, stat and patch (a merge against its first parent), cut at ``max_bytes``."""
        commit = self.head(sha)
        buffer = _CappedBuffer(max_bytes)
        self._git(
            "show",
            "--stat",
            "--patch",
            "--find-renames",
            "--diff-merges=first-parent",
            commit,
            "--",
            stdout=buffer,
        )
        # An incremental decode without `final` leaves a character cut at the limit out.
        text: str = codecs.getincrementaldecoder("utf-8")("replace").decode(buffer.getvalue())
        if buffer.total > max_bytes:
            text += f"\n… diff truncated: showing {max_bytes:,} of {buffer.total:,} bytes\n"
        return text

    def files_at(self, rev: str, path: str) -> dict[str, bytes]:
        """Every regular file under ``path`` ("./x/y", "x/y", "x/y/" or "." for all) at ``rev``.

        Keys are paths from the repository root. Symlinks and submodules are left out.
        Works on a bare repository. Two git calls whatever the number of files.
        """
        _refuse_option_like(rev, "revision")
        tree_path = _normalize_tree_path(path)
        pathspec = ["--", tree_path] if tree_path else []
        listing = self._git("ls-tree", "-r", "-z", "--full-tree", f"{rev}^{{tree}}", *pathspec).stdout
        blobs: list[tuple[str, str]] = []  # (path, object id)
        for entry in listing.decode("utf-8", "surrogateescape").split("\0"):
            if not entry:
                continue
            meta, _, file_path = entry.partition("\t")
            mode, kind, object_id = meta.split(" ")
            if kind == "blob" and mode != "120000":
                blobs.append((file_path, object_id))
        if not blobs:
            return {}
        batch_input = "".join(f"{object_id}\n" for _, object_id in blobs).encode()
        contents = _parse_cat_file_batch(
            self._git("cat-file", "--batch", stdin=batch_input).stdout, len(blobs)
        )
        return {file_path: content for (file_path, _), content in zip(blobs, contents, strict=True)}

    # -- changing ---------------------------------------------------------------------------

    def fetch(self, remote: str = "origin") -> None:
        _refuse_option_like(remote, "remote")
        self._git("fetch", "--quiet", remote, timeout=NETWORK_TIMEOUT_SECONDS)

    def pull_ff(self, remote: str = "origin", branch: str = "main") -> None:
        """Fast-forward to ``remote``'s ``branch``; GitError if the local branch has diverged."""
        _refuse_option_like(remote, "remote")
        _refuse_option_like(branch, "branch name")
        try:
            self._git(
                "pull", "--quiet", "--ff-only", "--no-rebase", remote, branch, timeout=NETWORK_TIMEOUT_SECONDS
            )
        except GitError as error:
            if "Not possible to fast-forward" not in error.stderr:
                raise
            raise GitError(
                f"cannot fast-forward {branch} in {self.path}: "
                f"it has commits that {remote}/{branch} does not; push or reset them first",
                command=error.command,
                stderr=error.stderr,
                exit_code=error.exit_code,
            ) from None

    def commit_all(
        self,
        message: str,
        *,
        author: str | None = None,
        date: datetime | None = None,
        allow_empty: bool = False,
    ) -> str:
        """Stage everything (``add -A``) and commit; returns the new sha.

        ``author`` is "Name <email>"; ``date`` sets both author and committer dates
        (a naive datetime is local time). GitError if there is nothing to commit and
        ``allow_empty`` is false.
        """
        self._git("add", "--all")
        args = ["commit", "--quiet", "--file=-"]
        if author is not None:
            args.append(f"--author={author}")
        if allow_empty:
            args.append("--allow-empty")
        dates = {}
        if date is not None:
            stamp = _git_date(date)
            dates = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        try:
            self._git(*args, stdin=message.encode(), extra_env=dates)
        except GitError as error:
            if "nothing to commit" not in error.stderr:
                raise
            raise GitError(
                f"nothing to commit in {self.path}: the files match HEAD", command=error.command
            ) from None
        return self.head()

    def push(
        self, remote: str = "origin", branch: str = "main", *, force_with_lease: str | None = None
    ) -> None:
        """Push the local ``branch`` to the same branch on ``remote``.

        ``force_with_lease`` is the sha the remote branch must still be at; the push may
        then rewrite it. PushRejected when someone pushed meanwhile; the clone is untouched.
        """
        _refuse_option_like(remote, "remote")
        _refuse_option_like(branch, "branch name")
        args = ["push", "--porcelain"]
        if force_with_lease is not None:
            _refuse_option_like(force_with_lease, "lease")
            args.append(f"--force-with-lease=refs/heads/{branch}:{force_with_lease}")
        args += [remote, f"refs/heads/{branch}:refs/heads/{branch}"]
        try:
            self._git(*args, timeout=NETWORK_TIMEOUT_SECONDS)
        except GitError as error:
            if not any(marker in error.stderr for marker in _PUSH_RACE_MARKERS):
                raise
            if force_with_lease is not None and "(stale info)" in error.stderr:
                why = f"{remote}/{branch} is no longer at {force_with_lease[:12]}"
            else:
                why = f"{remote}/{branch} has commits this clone does not have"
            raise PushRejected(
                f"push to {remote}/{branch} was rejected: someone pushed meanwhile ({why}); "
                "fetch, review the new commits and retry",
                command=error.command,
                stderr=error.stderr,
                exit_code=error.exit_code,
            ) from None

    def reset_hard(self, sha: str) -> None:
        """Point the current branch at ``sha`` and make the files match it (discards changes)."""
        commit = self.head(sha)
        self._git("reset", "--hard", "--quiet", commit)

    def revert(self, sha: str, *, mainline: int | None = None, no_commit: bool = False) -> str:
        """Revert one commit (a merge needs ``mainline``, 1 = relative to its first parent).

        Returns the new HEAD (unchanged with ``no_commit``, which leaves the revert staged).
        Refuses a dirty tree. On conflict the revert is aborted, the clone is left as it
        was, and RevertConflict names the conflicting files.
        """
        original = self._require_clean("revert")
        (target,) = self._commits_with_parents(sha, "-1")
        commit, parents = target[0], target[1:]
        short = commit[:12]
        if mainline is None and len(parents) > 1:
            raise GitError(
                f"{short} is a merge commit: pass mainline=1 to revert it relative to its first parent"
            )
        args = ["revert", "--no-edit"]
        if mainline is not None:
            args += ["--mainline", str(mainline)]
        if no_commit:
            args.append("--no-commit")
        try:
            self._git(*args, commit)
        except GitError as error:
            self._undo_revert(original, error, f"reverting {short}")
        return self.head()

    def revert_range(self, oldest_sha: str) -> str:
        """Undo ``oldest_sha`` and everything after it on the current branch, in ONE new commit.

        The commits (the first-parent history from HEAD back to ``oldest_sha``; merges
        are reverted relative to their first parent) are reverted newest first into the
        index, then committed together, so Flux applies the whole rollback at once and a
        single revert undoes it. The resulting tree is the tree of ``oldest_sha``'s parent.
        All-or-nothing: on any failure the revert is aborted and the branch reset to the
        original HEAD. Refuses a dirty tree.
        """
        original = self._require_clean("revert")
        ((oldest, *base),) = self._commits_with_parents(oldest_sha, "-1")
        newer = self._commits_with_parents(original, f"^{oldest}", "--first-parent")
        reaches_oldest = newer[-1][1:2] == (oldest,) if newer else original == oldest
        if not reaches_oldest:
            raise GitError(
                f"{oldest[:12]} is not on the first-parent history of HEAD ({original[:12]}) in {self.path}; "
                "pick a commit from the branch's own history"
            )
        commits = [entry[0] for entry in newer] + [oldest]
        base_label = base[0][:12] if base else "the empty tree (before the first commit)"
        try:
            for start in range(0, len(commits), _REVERT_BATCH):
                # --mainline 1 is accepted for non-merge commits too (git >= 2.21).
                self._git("revert", "--no-commit", "--mainline", "1", *commits[start : start + _REVERT_BATCH])
            nothing_staged = self._git("diff", "--cached", "--quiet", ok_codes=(0, 1)).exit_code == 0
            if not nothing_staged:
                message = self._range_revert_message(commits, base_label)
                self._git("commit", "--quiet", "--file=-", stdin=message.encode())
        except GitError as error:
            self._undo_revert(original, error, f"reverting back to {base_label}")
        if nothing_staged:
            self._git("reset", "--hard", "--quiet", original)
            raise GitError(
                f"reverting {len(commits)} commits back to {base_label} changes nothing: "
                "the files already match it"
            )
        return self.head()

    # -- internals ----------------------------------------------------------------------------

    def _git(
        self,
        *args: str,
        extra_env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        ok_codes: Collection[int] = (0,),
        timeout: float | None = None,
        stdout: _CappedBuffer | None = None,
    ) -> _GitOutput:
        return _git(
            *args,
            cwd=self.path,
            extra_env=extra_env,
            stdin=stdin,
            ok_codes=ok_codes,
            timeout=timeout,
            stdout=stdout,
        )

    def _parents(self, sha: str) -> tuple[str, ...]:
        ((_, *parents),) = self._commits_with_parents(sha, "-1")
        return tuple(parents)

    def _commits_with_parents(self, rev: str, *options: str) -> list[tuple[str, ...]]:
        """``git log`` of ``rev`` as (sha, parent, ...) tuples, newest first."""
        _refuse_option_like(rev, "revision")
        output = self._git("log", "--format=%H %P", *options, rev, "--").text
        return [tuple(line.split()) for line in output.splitlines()]

    def _work_tree_state(self) -> tuple[str | None, bool]:
        """(HEAD sha or None when unborn, dirty?) from one ``git status``."""
        status = self._git(
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=normal",
            extra_env={"GIT_OPTIONAL_LOCKS": "0"},  # a read must not take the index lock
        )
        head: str | None = None
        dirty = False
        for entry in status.stdout.split(b"\0"):
            if entry.startswith(b"# branch.oid "):
                oid = entry.removeprefix(b"# branch.oid ").decode()
                head = None if oid == "(initial)" else oid
            elif entry and not entry.startswith(b"#"):
                dirty = True
        return head, dirty

    def _require_clean(self, action: str) -> str:
        """HEAD's sha, if the work tree is clean; DirtyWorkTree otherwise."""
        head, dirty = self._work_tree_state()
        if dirty:
            raise DirtyWorkTree(
                f"cannot {action} in {self.path}: it has uncommitted or untracked changes; "
                "commit or discard them first"
            )
        if head is None:
            raise GitError(f"cannot {action} in {self.path}: the branch has no commits yet")
        return head

    def _range_revert_message(self, commits: Sequence[str], base_label: str) -> str:
        listed = commits[:50]
        lines = self._git("log", "--no-walk=unsorted", "--format=- %h %s", *listed, "--").text
        if len(commits) > len(listed):
            lines += f"\n- … and {len(commits) - len(listed)} older commits"
        plural = "s" if len(commits) != 1 else ""
        subject = f"Revert {len(commits)} commit{plural} back to {base_label}"
        return f"{subject}\n\nThis reverts, newest first:\n{lines}\n"

    def _undo_revert(self, original: str, error: GitError, what: str) -> NoReturn:
        """Put the clone back at ``original`` with a clean tree, then raise the right error."""
        conflicted = self._git("diff", "--name-only", "--diff-filter=U", "-z").stdout.decode().split("\0")
        conflicted = [path for path in conflicted if path]
        more = " and more" if len(conflicted) > 5 else ""
        self._git("revert", "--abort", ok_codes=range(256))  # nothing to abort is fine
        self._git("reset", "--hard", "--quiet", original)  # the tree was clean before we started
        if conflicted:
            raise RevertConflict(
                f"{what} conflicts with later changes to {', '.join(conflicted[:5])}{more}; "
                "the revert was aborted and the clone is unchanged",
                command=error.command,
                stderr=error.stderr,
                exit_code=error.exit_code,
            ) from None
        if "nothing to commit" in error.stderr:
            raise GitError(
                f"{what} changes nothing: its changes are already undone", command=error.command
            ) from None
        raise GitError(
            f"{what} failed and was undone; {error}", command=error.command, stderr=error.stderr
        ) from None


# -- the one place git runs --------------------------------------------------------------------


@functools.cache
def _git_program() -> sh.Command:
    try:
        git = sh.Command("git")
    except sh.CommandNotFound:
        raise GitError(f"git was not found on PATH; {install_hint('git')}") from None
    return git.bake(
        *_GIT_CONFIG_ARGS,
        _tty_out=False,  # a pipe, not a pty: no colours, no progress meters, no pager
        _new_session=True,  # no controlling terminal: nothing can prompt the user
        _no_pipe=True,  # we never pipe into another sh command; don't queue a second copy
        _out_bufsize=64 * 1024,
        _err_bufsize=64 * 1024,
        _timeout_signal=signal.SIGTERM,  # git removes its lock files on SIGTERM
    )


def _git(
    *args: str,
    cwd: Path | None,
    extra_env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    ok_codes: Collection[int] = (0,),
    timeout: float | None = None,
    stdout: _CappedBuffer | None = None,
) -> _GitOutput:
    """Run ``git <args>`` in ``cwd``; GitError (with the command and git's message) on failure."""
    if cwd is not None and not cwd.is_dir():
        raise GitError(f"cannot run {_describe(args)}: {cwd} is not a directory", command=("git", *args))
    try:
        running = _start(
            args, cwd=cwd, extra_env=extra_env, stdin=stdin, ok_codes=ok_codes, timeout=timeout, stdout=stdout
        )
    except sh.ForkException as failure:  # chdir or exec failed in the child
        raise GitError(
            f"could not start {_describe(args)}: {str(failure).strip().splitlines()[-1]}"
        ) from None
    try:
        with tracked_process_group(running.pid):
            running.wait()
    except sh.TimeoutException:
        _kill_leftovers(running.pid)
        raise GitError(
            f"{_describe(args)} timed out after {timeout:g} s in {cwd or Path.cwd()}", command=("git", *args)
        ) from None
    except sh.ErrorReturnCode as failure:
        raise _failure(args, cwd, failure.exit_code, failure.stdout, failure.stderr) from None
    return _GitOutput(stdout=running.stdout, stderr=running.stderr, exit_code=running.exit_code)


def _git_read(*args: str, cwd: Path) -> _GitOutput:
    """A read-only, local ``git <args>`` (history pages) exec'd directly rather than through ``sh``.

    sh forks the whole interpreter for each command (~12 ms here, against ~5 ms for `git log -n 200`
    itself); the rollback picker pages history through this while the user waits. Reads only: no
    stdin, no credentials, no lock files to clean up on a timeout.
    """
    if not cwd.is_dir():
        raise GitError(f"cannot run {_describe(args)}: {cwd} is not a directory", command=("git", *args))
    try:
        done = subprocess.run(
            ["git", *_GIT_CONFIG_ARGS, *args],
            cwd=cwd,
            env={**_git_env(), **_GIT_ENV},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            start_new_session=True,  # as with sh: no controlling terminal, nothing can prompt
            timeout=_LOCAL_READ_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise GitError(f"git was not found on PATH; {install_hint('git')}") from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f"{_describe(args)} timed out after {NETWORK_TIMEOUT_SECONDS:g} s in {cwd}",
            command=("git", *args),
        ) from None
    if done.returncode != 0:
        raise _failure(args, cwd, done.returncode, done.stdout, done.stderr)
    return _GitOutput(stdout=done.stdout, stderr=done.stderr, exit_code=0)


def _git_env() -> dict[str, str]:
    """This process's environment without what would point git at another repository."""
    return {name: value for name, value in os.environ.items() if name not in _REPOSITORY_LOCATION_VARS}


def _start(
    args: Sequence[str],
    *,
    cwd: Path | None,
    extra_env: Mapping[str, str] | None,
    stdin: bytes | None,
    ok_codes: Collection[int],
    timeout: float | None,
    stdout: _CappedBuffer | None,
) -> sh.RunningCommand:
    return _git_program()(
        *args,
        _bg=True,
        _bg_exc=False,  # failures are raised by wait() in this thread, not printed by sh's
        _env={
            **_git_env(),
            **_GIT_ENV,
            **(extra_env or {}),
        },
        _cwd=str(cwd) if cwd is not None else None,
        _in=stdin,
        _out=stdout,
        _ok_code=list(ok_codes),
        _timeout=timeout,
    )


def _kill_leftovers(pgid: int) -> None:
    """Kill what git left in its session (an ssh helper after a timeout); nothing, normally."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _failure(args: Sequence[str], cwd: Path | None, exit_code: int, stdout: bytes, stderr: bytes) -> GitError:
    error_text = _redact(stderr.decode("utf-8", "replace"))
    output_text = _redact(stdout.decode("utf-8", "replace"))
    # git reports some outcomes ("nothing to commit", push --porcelain refs) on stdout.
    combined = "\n".join(part for part in (error_text, output_text) if part.strip())
    where = f" in {cwd}" if cwd is not None else ""
    return GitError(
        f"{_describe(args)} failed{where}: {_summarize(combined) or f'exit code {exit_code}'}",
        command=("git", *(_redact(arg) for arg in args)),
        stderr=combined,
        exit_code=exit_code,
    )


def _summarize(text: str) -> str:
    """git's own message on one line: its fatal/error lines, else the last few lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    errors = [line for line in lines if line.startswith(("fatal:", "error:", "!", "CONFLICT"))]
    chosen = errors or lines
    return " | ".join(chosen[-_STDERR_SUMMARY_LINES:])


def _describe(args: Sequence[str]) -> str:
    shown = " ".join(_redact(arg) for arg in args)
    return f"`git {shown if len(shown) <= 160 else shown[:159] + '…'}`"


def _redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\g<scheme>:***@", text)


def _refuse_credentials_in_url(url: str) -> None:
    if _URL_PASSWORD.search(url):
        raise GitError(
            f"refusing {_redact(url)}: it carries a password or token; "
            "configure a git credential helper or an ssh key instead"
        )


def _refuse_option_like(value: str, what: str) -> None:
    """A value starting with '-' would be parsed by git as an option."""
    if not value or value.startswith("-"):
        raise GitError(f"invalid {what} {value!r}")


# -- parsing ---------------------------------------------------------------------------------


def _parse_log_record(record: str, with_stats: bool) -> CommitInfo:
    sha, short, parents, author, email, date, subject, rest = record.split(_FIELD, 7)
    files_changed: int | None = None
    if with_stats:
        match = _FILES_CHANGED.search(rest)
        files_changed = int(match.group(1)) if match else 0
    return CommitInfo(
        sha=sha,
        short=short,
        parents=tuple(parents.split()),
        author=author,
        email=email,
        date=datetime.fromisoformat(date),
        subject=subject,
        files_changed=files_changed,
    )


def _parse_cat_file_batch(output: bytes, expected: int) -> Iterator[bytes]:
    """Split ``git cat-file --batch`` output: "<oid> <type> <size>\\n<content>\\n" per object."""
    position = 0
    for _ in range(expected):
        header_end = output.index(b"\n", position)
        header = output[position:header_end].split(b" ")
        if len(header) != 3:
            raise GitError(f"git cat-file could not read object {header[0].decode(errors='replace')}")
        size = int(header[2])
        start = header_end + 1
        yield output[start : start + size]
        position = start + size + 1


def _normalize_tree_path(path: str) -> str:
    parts = [part for part in path.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise GitError(f"path {path!r} must stay inside the repository")
    return "/".join(parts)


def _normalize_remote(url: str, relative_to: Path) -> str:
    """A comparable form of a remote: local paths resolved, no trailing slash or ".git"."""
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    is_local = "://" not in url and not re.match(r"^[^/]+:", url)  # not scheme://, not scp-like host:path
    if is_local:
        url = str((relative_to / url).resolve())
    url = url.rstrip("/")
    return url.removesuffix(".git").rstrip("/")


def _git_date(date: datetime) -> str:
    """Git's internal date format, "@<unix seconds> <+hhmm>", which it never reinterprets."""
    aware = date if date.tzinfo is not None else date.astimezone()
    return f"@{int(aware.timestamp())} {aware.strftime('%z')}"
