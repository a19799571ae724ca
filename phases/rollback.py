"""Rolling the deployments repository back: list its history, plan a revert or a reset, run it,
and wait until Flux applies the result.

UI-free and blocking: the app calls it from worker threads. Every refusal is a
``RollbackRefused`` whose message says what to do; every action returns a frozen
``RollbackOutcome`` meant for a human. Mutating calls hold a lock, so two workers cannot
interleave git commands in the same clone.

The clone is gitops-tui's own working copy of ``deployments.url`` (``deployments.clone_dir``).
Authentication is the user's git setup: ``GitRepo`` never puts a token in a URL or argv.

Safety rules, in the order they are checked:

* ``prepare`` never touches a dirty tree, a detached HEAD, another branch, or a branch with
  commits the remote does not have (they would be pushed along with the rollback).
* A plan records the branch head it was made against; ``execute`` refuses if the clone moved.
* A conflicting revert is aborted by ``GitRepo`` and the clone is left as it was.
* A rejected push (someone pushed meanwhile) puts the branch back where it was (only the
  commits this module just created are dropped) and offers ``fetch_and_retry``.
* A reset pushes with ``--force-with-lease`` at the remote sha the plan showed, and is refused
  when ``deployments.allow_force_push`` is false or in read-only mode.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from phases.config import Config
from phases.errors import GitOpsError
from phases.flux import reconcile_state, request_reconcile
from phases.git import CommitInfo, DirtyWorkTree, GitError, GitRepo, PushRejected, RevertConflict
from phases.health import condition, flux_ready, is_suspended
from phases.kube import GIT_REPOSITORIES, KUSTOMIZATIONS, KubeClient

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "ActionKind",
    "ActionPlan",
    "OutcomeStatus",
    "PreparedClone",
    "Progress",
    "ReconcileReport",
    "ReconcileResult",
    "RollbackOutcome",
    "RollbackPlanner",
    "RollbackRefused",
    "revision_sha",
]

DEFAULT_PAGE_SIZE: Final = 100
LISTED_IN_DESCRIPTION: Final = 8  # commits named in a plan's description; the rest are counted
SHAS_IN_COMMAND: Final = 4  # a range revert's command shows this many shas, then a count
# Ready=False reasons a Kustomization reports while it can still get there without help.
_TRANSIENT_REASONS: Final = frozenset({"DependencyNotReady", "ArtifactFailed", "Progressing"})
_DIGEST = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")

ActionKind = Literal["revert", "revert-range", "reset"]
OutcomeStatus = Literal[
    "applied", "pushed", "conflict", "push-rejected", "refused", "failed", "confirm-again"
]
Progress = Callable[[str], None]


class RollbackRefused(GitOpsError):
    """A rule forbids the action, or the clone is not in a state to do it; nothing was changed."""


@dataclass(frozen=True)
class PreparedClone:
    """The clone after ``prepare``: what the picker lists."""

    branch: str
    head: str
    """The sha the list starts at (the local branch; in read-only mode the remote-tracking branch)."""
    total_commits: int
    fast_forwarded: int
    """Commits pulled from the remote by this ``prepare``."""
    shallow: bool
    message: str


@dataclass(frozen=True)
class ActionPlan:
    """What an action will do, for the confirmation; ``execute`` runs exactly this."""

    kind: ActionKind
    target: CommitInfo
    mainline: int | None
    """For a merge revert: the parent (1-based) whose side is kept. None otherwise."""
    branch: str
    remote: str
    base_head: str
    """The branch head (local and remote) the plan was made against; ``execute`` checks it."""
    affected: tuple[CommitInfo, ...]
    """revert: the target; revert-range: every commit undone, newest first; reset: every commit dropped."""
    commands: tuple[str, ...]
    """The git commands, in order, as they will run."""
    reconcile_steps: tuple[str, ...]
    """What happens in the cluster afterwards (API calls, not commands)."""
    title: str
    description: str
    destructive: bool
    typed_confirmation: str | None
    """The word the user must type first (destructive actions), or None."""
    fetched: tuple[CommitInfo, ...] = ()
    """Set by ``refresh_plan``: commits someone else pushed since the previous plan."""

    @property
    def confirmation_lines(self) -> tuple[str, ...]:
        return self.commands + self.reconcile_steps


@dataclass(frozen=True)
class ReconcileReport:
    """One Flux object after the wait."""

    kind: str
    namespace: str
    name: str
    done: bool
    revision: str
    message: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ReconcileResult:
    ok: bool
    message: str
    reports: tuple[ReconcileReport, ...] = ()
    cancelled: bool = False


@dataclass(frozen=True)
class RollbackOutcome:
    """The end of an action. ``message`` is meant for a human and says what to do next."""

    status: OutcomeStatus
    message: str
    plan: ActionPlan
    new_head: str | None = None
    """The branch head after the action, once pushed."""
    reconcile: ReconcileResult | None = None
    next_plan: ActionPlan | None = None
    """With ``confirm-again``: the refreshed plan to show and, once confirmed, execute."""

    @property
    def pushed(self) -> bool:
        return self.status in ("applied", "pushed")

    @property
    def can_fetch_and_retry(self) -> bool:
        return self.status == "push-rejected"


def revision_sha(revision: str) -> str | None:
    """The commit sha in a Flux revision: ``main@sha1:<sha>``, ``sha1:<sha>``, legacy ``main/<sha>``."""
    digest = revision.rpartition("@")[2].rpartition(":")[2].rpartition("/")[2]
    return digest if _DIGEST.match(digest) else None


def _describe(commit: CommitInfo) -> str:
    return f"{commit.short} {commit.subject} ({commit.author}, {commit.date:%Y-%m-%d})"


def _listing(commits: Sequence[CommitInfo]) -> str:
    lines = [f"  {_describe(commit)}" for commit in commits[:LISTED_IN_DESCRIPTION]]
    if len(commits) > LISTED_IN_DESCRIPTION:
        lines.append(f"  … and {len(commits) - LISTED_IN_DESCRIPTION} more")
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _report(progress: Progress | None, line: str) -> None:
    if progress is not None:
        progress(line)


class RollbackPlanner:
    """Rollback of one deployments clone; see the module docstring for the rules."""

    def __init__(
        self,
        repo: GitRepo,
        config: Config,
        *,
        kube: KubeClient | None = None,
        readonly: bool = False,
        remote: str = "origin",
    ) -> None:
        self.repo = repo
        self.config = config
        self.kube = kube
        self.readonly = readonly
        self.remote = remote
        self.branch = config.deployments.branch
        self.poll_interval = config.engine.poll_interval
        self.wait_timeout = config.engine.wait_timeout
        self._lock = threading.RLock()
        self._list_rev = f"refs/heads/{self.branch}"

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        kube: KubeClient | None = None,
        readonly: bool = False,
        clone_url: str | None = None,
    ) -> RollbackPlanner:
        """Open ``deployments.clone_dir`` (cloning it when missing); its origin must be the URL.

        ``clone_url`` replaces ``deployments.url`` for that check, for setups whose clone
        reaches the same repository by another URL than Flux (the sandbox's clone pushes to
        the bare repository's path while Flux reads it over HTTP).
        """
        deployments = config.deployments
        url = clone_url or deployments.url
        if not url:
            raise RollbackRefused(
                "deployments.url is not set in the config: there is no deployments repository to roll back"
            )
        repo = GitRepo.open_or_clone(url, deployments.resolved_clone_dir(), branch=deployments.branch)
        return cls(repo, config, kube=kube, readonly=readonly)

    # -- reading ---------------------------------------------------------------------------

    @property
    def tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"

    def prepare(self) -> PreparedClone:
        """Fetch, then fast-forward the branch to the remote (read-only mode: fetch only).

        RollbackRefused for a detached HEAD, another branch, a dirty tree, or local commits
        the remote does not have; none of them is touched.
        """
        with self._lock:
            repo, branch, remote = self.repo, self.branch, self.remote
            if self.readonly:
                # Only refs/remotes/ move: the work tree and the local branch stay as they are.
                repo.fetch(remote)
                self._list_rev = self.tracking_ref
                head = self._resolve(self.tracking_ref, f"{remote} has no branch {branch!r}")
                total = repo.count_commits(self._list_rev)
                return PreparedClone(
                    branch, head, total, 0, repo.is_shallow(), f"{remote}/{branch} at {head[:12]} (read-only)"
                )
            current = repo.current_branch()
            if current is None:
                raise RollbackRefused(
                    f"{repo.path} has a detached HEAD; run `git switch {branch}` there first "
                    "(nothing was changed)"
                )
            if current != branch:
                raise RollbackRefused(
                    f"{repo.path} is on branch {current!r}, not {branch!r}; "
                    f"run `git switch {branch}` there first (nothing was changed)"
                )
            if repo.is_dirty():
                raise RollbackRefused(
                    f"{repo.path} has uncommitted or untracked changes; commit, stash or discard them "
                    "first (nothing was changed)"
                )
            repo.fetch(remote)
            self._resolve(self.tracking_ref, f"{remote} has no branch {branch!r}")
            local = f"refs/heads/{branch}"
            ahead = repo.count_commits(f"{self.tracking_ref}..{local}")
            behind = repo.count_commits(f"{local}..{self.tracking_ref}")
            if ahead:
                state = f"has diverged from {remote}/{branch}" if behind else f"is ahead of {remote}/{branch}"
                raise RollbackRefused(
                    f"{branch} in {repo.path} {state}: {_plural(ahead, 'local commit')} not on {remote}. "
                    "They would be pushed with the rollback; push or drop them first (nothing was changed)"
                )
            if behind:
                repo.pull_ff(remote, branch)
            self._list_rev = local
            head = repo.head(local)
            total = repo.count_commits(local)
            pulled = f", pulled {_plural(behind, 'new commit')}" if behind else ""
            return PreparedClone(
                branch,
                head,
                total,
                behind,
                repo.is_shallow(),
                f"{branch} at {head[:12]}, up to date with {remote}{pulled}",
            )

    def page(
        self, skip: int, limit: int = DEFAULT_PAGE_SIZE, *, with_stats: bool = False
    ) -> list[CommitInfo]:
        """Commits ``skip`` .. ``skip + limit`` of the listed branch, newest first, in one git call.

        ``files_changed`` is None unless ``with_stats`` (a diff per commit: load a page first
        without, then its stats).
        """
        return self.repo.log(rev=self._list_rev, skip=skip, limit=limit, with_stats=with_stats)

    def files_changed(self, skip: int, limit: int = DEFAULT_PAGE_SIZE) -> dict[str, int]:
        """``{sha: files changed}`` for one page (merges against their first parent), one git call."""
        return {commit.sha: commit.files_changed or 0 for commit in self.page(skip, limit, with_stats=True)}

    def count(self) -> int:
        return self.repo.count_commits(self._list_rev)

    def commit(self, sha: str) -> CommitInfo:
        """One commit with its stats; RollbackRefused if ``sha`` names none."""
        full = self._resolve(sha, f"{sha!r} is not a commit in {self.repo.path}")
        (info,) = self.repo.log(rev=full, limit=1, with_stats=True)
        return info

    def parents(self, sha: str) -> tuple[str, ...]:
        return self.commit(sha).parents

    def is_merge(self, sha: str) -> bool:
        return self.commit(sha).is_merge

    def diff(self, sha: str, *, max_bytes: int = 200_000) -> str:
        """The commit's header, stat and patch (a merge against its first parent) for the preview."""
        return self.repo.show_diff(sha, max_bytes=max_bytes)

    def applied_markers(self, kube: KubeClient | None = None) -> dict[str, list[str]]:
        """``{sha: ["namespace/name", ...]}``: the commit each Kustomization of our source last applied."""
        client = kube or self.kube
        if client is None:
            return {}
        markers: dict[str, list[str]] = {}
        for obj in client.list(KUSTOMIZATIONS):
            if not self._uses_our_source(obj):
                continue
            status = obj.get("status") or {}
            sha = revision_sha(str(status.get("lastAppliedRevision") or ""))
            if sha is not None:
                metadata = obj.get("metadata") or {}
                markers.setdefault(sha, []).append(f"{metadata.get('namespace')}/{metadata.get('name')}")
        return {sha: sorted(names) for sha, names in markers.items()}

    # -- planning -------------------------------------------------------------------------

    def plan_revert(self, sha: str, *, range_back: bool = False, mainline: int | None = None) -> ActionPlan:
        """A revert of ``sha`` (or, with ``range_back``, of it and everything after it, in one commit).

        A merge needs ``mainline`` (1: keep the branch it was merged into, i.e. undo what the
        merge brought in); a range reverts merges against their first parent, so ``mainline``
        must be None or 1 there.
        """
        self._refuse_when_readonly("revert")
        head = self._current_head()
        target = self._target(sha, head)
        if range_back:
            if mainline not in (None, 1):
                raise RollbackRefused(
                    "a range revert undoes merges relative to their first parent; "
                    "revert the merge on its own to keep another parent"
                )
            return self._plan_range(target, head)
        if target.is_merge:
            if mainline is None:
                raise RollbackRefused(
                    f"{target.short} is a merge commit: choose which parent to keep "
                    f"(1 to {len(target.parents)}; 1 undoes what the merge brought in)"
                )
            if not 1 <= mainline <= len(target.parents):
                raise RollbackRefused(
                    f"{target.short} has {len(target.parents)} parents; mainline {mainline} does not exist"
                )
        else:
            mainline = None  # a normal commit has one way to be reverted
        mainline_args = f"--mainline {mainline} " if mainline is not None else ""
        commands = (f"git revert --no-edit {mainline_args}{target.sha}", self._push_command())
        description = f"Creates a new commit on {self.branch} that undoes\n  {_describe(target)}\n"
        if mainline is not None:
            kept = self._short_description(target.parents[mainline - 1])
            description += f"keeping parent {mainline} ({kept}): everything the merge brought in is undone.\n"
        description += (
            f"then pushes it to {self.remote}/{self.branch} and waits until Flux applies it. "
            "History is kept: the revert can itself be reverted."
        )
        return ActionPlan(
            kind="revert",
            target=target,
            mainline=mainline,
            branch=self.branch,
            remote=self.remote,
            base_head=head,
            affected=(target,),
            commands=commands,
            reconcile_steps=self._reconcile_steps(),
            title=f"Revert {target.short}" + (" (merge)" if target.is_merge else ""),
            description=description,
            destructive=False,
            typed_confirmation=None,
        )

    def plan_reset(self, sha: str) -> ActionPlan:
        """A hard reset of the branch to ``sha``, pushed with ``--force-with-lease``.

        RollbackRefused when force pushes are not allowed (config or read-only mode).
        """
        self._refuse_when_readonly("reset")
        self._refuse_when_force_push_forbidden()
        head = self._current_head()
        target = self._target(sha, head)
        dropped = tuple(self.repo.log(rev=f"{target.sha}..{head}", limit=2**31 - 1))
        if not dropped:
            raise RollbackRefused(f"{self.branch} is already at {target.short}: nothing to reset")
        commands = (
            f"git reset --hard {target.sha}",
            f"git push --force-with-lease={self.branch}:{head} {self.remote} {self.branch}",
        )
        description = (
            f"Moves {self.remote}/{self.branch} back to\n  {_describe(target)}\n"
            f"and DROPS {_plural(len(dropped), 'commit')} from the branch:\n{_listing(dropped)}\n"
            "This rewrites shared history: anyone who pulled them must reset their clone. The push "
            f"is refused if {self.remote}/{self.branch} is no longer at {head[:12]}."
        )
        return ActionPlan(
            kind="reset",
            target=target,
            mainline=None,
            branch=self.branch,
            remote=self.remote,
            base_head=head,
            affected=dropped,
            commands=commands,
            reconcile_steps=self._reconcile_steps(),
            title=f"Reset {self.branch} to {target.short}",
            description=description,
            destructive=True,
            typed_confirmation=target.short,
        )

    def refresh_plan(self, plan: ActionPlan) -> ActionPlan:
        """``prepare`` again and re-plan the same action against the new head, naming the
        commits that arrived meanwhile (``fetched``)."""
        self.prepare()
        if plan.kind == "reset":
            fresh = self.plan_reset(plan.target.sha)
        else:
            fresh = self.plan_revert(
                plan.target.sha, range_back=plan.kind == "revert-range", mainline=plan.mainline
            )
        fetched: tuple[CommitInfo, ...] = ()
        if fresh.base_head != plan.base_head and self._is_ancestor(plan.base_head, fresh.base_head):
            fetched = tuple(self.repo.log(rev=f"{plan.base_head}..{fresh.base_head}", limit=2**31 - 1))
        if fetched:
            arrived = (
                f"{_plural(len(fetched), 'commit')} arrived on {self.remote}/{self.branch} since the "
                f"last plan:\n{_listing(fetched)}\n"
            )
            fresh = dataclasses.replace(fresh, fetched=fetched, description=arrived + fresh.description)
        return fresh

    # -- executing ------------------------------------------------------------------------

    def execute(
        self, plan: ActionPlan, progress: Progress | None = None, *, cancel: threading.Event | None = None
    ) -> RollbackOutcome:
        """Run a confirmed plan: git, push, then reconcile and wait (see ``reconcile``)."""
        with self._lock:
            refusal = self._refusal(plan)
            if refusal is not None:
                return RollbackOutcome("refused", refusal, plan)
            if plan.kind == "reset":
                return self._execute_reset(plan, progress, cancel)
            return self._execute_revert(plan, progress, cancel)

    def execute_revert(
        self, plan: ActionPlan, progress: Progress | None = None, *, cancel: threading.Event | None = None
    ) -> RollbackOutcome:
        if plan.kind == "reset":
            raise ValueError("execute_revert needs a revert plan; use execute_reset")
        return self.execute(plan, progress, cancel=cancel)

    def execute_reset(
        self, plan: ActionPlan, progress: Progress | None = None, *, cancel: threading.Event | None = None
    ) -> RollbackOutcome:
        if plan.kind != "reset":
            raise ValueError("execute_reset needs a reset plan; use execute_revert")
        return self.execute(plan, progress, cancel=cancel)

    def fetch_and_retry(
        self, plan: ActionPlan, progress: Progress | None = None, *, cancel: threading.Event | None = None
    ) -> RollbackOutcome:
        """After ``push-rejected``: fetch, fast-forward, and run the action again on the new head.

        A single revert means the same thing on any head, so it runs right away. A range
        revert or a reset would now also undo or drop the commits that just arrived, so it
        returns ``confirm-again`` with the refreshed plan (``next_plan``) to show first.
        """
        with self._lock:
            _report(progress, f"$ git fetch {self.remote}")
            try:
                fresh = self.refresh_plan(plan)
            except GitOpsError as error:
                return RollbackOutcome("refused", f"cannot retry: {error}", plan)
            if plan.kind != "revert":
                arrived = _plural(len(fresh.fetched), "new commit")
                verb = "undo" if plan.kind == "revert-range" else "drop"
                return RollbackOutcome(
                    "confirm-again",
                    f"{self.remote}/{self.branch} moved ({arrived}); the {plan.kind} would now also "
                    f"{verb} them: review and confirm the updated plan",
                    plan,
                    next_plan=fresh,
                )
            return self.execute(fresh, progress, cancel=cancel)

    def reconcile(
        self, new_head: str, progress: Progress | None = None, *, cancel: threading.Event | None = None
    ) -> ReconcileResult:
        """Reconcile the GitRepository, then its Kustomizations, like ``flux reconcile --with-source``.

        Annotates ``reconcile.fluxcd.io/requestedAt`` and waits (``engine.wait_timeout`` per
        stage) until each object handled it and reports ``new_head``: the source's artifact
        revision, then every Kustomization's ``lastAppliedRevision``. Suspended objects are
        not resumed: they are reported.
        """
        kube = self.kube
        if kube is None:
            return ReconcileResult(
                False, "no cluster connection: Flux will pick the change up at its interval"
            )
        flux = self.config.flux
        source_label = f"GitRepository {flux.namespace}/{flux.git_repository}"
        try:
            source = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace)
            if source is None:
                return ReconcileResult(
                    False, f"{source_label} not found: Flux does not watch this repository"
                )
            if is_suspended(source):
                return ReconcileResult(
                    False, f"{source_label} is suspended: resume it for Flux to apply {new_head[:12]}"
                )
            _report(progress, f"annotate {source_label} with reconcile.fluxcd.io/requestedAt")
            token = request_reconcile(kube, GIT_REPOSITORIES, flux.git_repository, flux.namespace)
        except GitOpsError as error:
            return ReconcileResult(False, f"could not request a reconcile of {source_label}: {error}")

        def source_probe() -> tuple[bool | None, str]:
            done, message = reconcile_state(
                kube, GIT_REPOSITORIES, flux.git_repository, flux.namespace, token
            )
            obj = kube.get(GIT_REPOSITORIES, flux.git_repository, flux.namespace) or {}
            revision = str(((obj.get("status") or {}).get("artifact") or {}).get("revision") or "")
            if done and revision_sha(revision) != new_head:
                return False, f"at {revision or 'no revision'}, waiting for {new_head[:12]}"
            return done, message

        source_report = self._wait(
            [("GitRepository", flux.namespace, flux.git_repository, source_probe)], progress, cancel
        )[0]
        if not source_report.done:
            cancelled = cancel is not None and cancel.is_set()
            return ReconcileResult(
                False, f"{source_label}: {source_report.message}", (source_report,), cancelled
            )

        try:
            kustomizations = [obj for obj in kube.list(KUSTOMIZATIONS) if self._uses_our_source(obj)]
        except GitOpsError as error:
            return ReconcileResult(False, f"could not list the Kustomizations: {error}", (source_report,))
        reports: list[ReconcileReport] = [source_report]
        probes: list[tuple[str, str, str, Callable[[], tuple[bool | None, str]]]] = []
        for obj in sorted(kustomizations, key=_object_name):
            namespace, name = _object_name(obj)
            if is_suspended(obj):
                reports.append(
                    ReconcileReport("Kustomization", namespace, name, False, "", "suspended: not reconciled")
                )
                continue
            try:
                _report(
                    progress,
                    f"annotate Kustomization {namespace}/{name} with reconcile.fluxcd.io/requestedAt",
                )
                ks_token = request_reconcile(kube, KUSTOMIZATIONS, name, namespace)
            except GitOpsError as error:
                reports.append(ReconcileReport("Kustomization", namespace, name, False, "", str(error)))
                continue
            probes.append(
                (
                    "Kustomization",
                    namespace,
                    name,
                    self._kustomization_probe(name, namespace, ks_token, new_head),
                )
            )
        reports += self._wait(probes, progress, cancel)
        failed = [report for report in reports if not report.done]
        applied = [report for report in reports[1:] if report.done]
        if failed:
            summary = "; ".join(f"{report.label}: {report.message}" for report in failed)
            return ReconcileResult(False, summary, tuple(reports), cancel is not None and cancel.is_set())
        if not applied:
            return ReconcileResult(
                True, f"{source_label} is at {new_head[:12]}; no Kustomization uses it", tuple(reports)
            )
        names = ", ".join(f"{report.namespace}/{report.name}" for report in applied)
        return ReconcileResult(True, f"{names} applied {new_head[:12]}", tuple(reports))

    # -- internals: execution ---------------------------------------------------------------

    def _execute_revert(
        self, plan: ActionPlan, progress: Progress | None, cancel: threading.Event | None
    ) -> RollbackOutcome:
        _report(progress, f"$ {plan.commands[0]}")
        try:
            if plan.kind == "revert-range":
                new_head = self.repo.revert_range(plan.target.sha)
            else:
                new_head = self.repo.revert(plan.target.sha, mainline=plan.mainline)
        except RevertConflict as error:
            return RollbackOutcome(
                "conflict", f"{error}. Revert a newer commit first, or fix it by hand.", plan
            )
        except DirtyWorkTree as error:
            return RollbackOutcome("refused", str(error), plan)
        except GitError as error:
            return RollbackOutcome("failed", f"{plan.title} failed: {error}", plan)
        _report(progress, f"created {new_head[:12]}")
        return self._push_and_reconcile(plan, new_head, None, progress, cancel)

    def _execute_reset(
        self, plan: ActionPlan, progress: Progress | None, cancel: threading.Event | None
    ) -> RollbackOutcome:
        _report(progress, f"$ {plan.commands[0]}")
        try:
            self.repo.reset_hard(plan.target.sha)
        except GitError as error:
            self._restore(plan.base_head, None)
            return RollbackOutcome("failed", f"{plan.title} failed: {error}", plan)
        return self._push_and_reconcile(plan, plan.target.sha, plan.base_head, progress, cancel)

    def _push_and_reconcile(
        self,
        plan: ActionPlan,
        new_head: str,
        lease: str | None,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> RollbackOutcome:
        _report(progress, f"$ {plan.commands[-1]}")
        try:
            self.repo.push(self.remote, self.branch, force_with_lease=lease)
        except PushRejected as error:
            restored = self._restore(plan.base_head, new_head)
            return RollbackOutcome(
                "push-rejected",
                f"{error}. {restored} Choose fetch and retry to run it again on top of the new commits.",
                plan,
            )
        except GitError as error:
            restored = self._restore(plan.base_head, new_head)
            return RollbackOutcome("failed", f"push failed: {error}. {restored}", plan)
        pushed = f"pushed {new_head[:12]} to {self.remote}/{self.branch}"
        _report(progress, pushed)
        if self.kube is None:
            return RollbackOutcome(
                "pushed", f"{plan.title}: {pushed}; Flux applies it at its next sync", plan, new_head
            )
        result = self.reconcile(new_head, progress, cancel=cancel)
        if result.ok:
            return RollbackOutcome(
                "applied", f"{plan.title}: {pushed}; {result.message}", plan, new_head, result
            )
        return RollbackOutcome(
            "pushed",
            f"{plan.title}: {pushed}, but Flux has not applied it: {result.message}",
            plan,
            new_head,
            result,
        )

    def _restore(self, original: str, created: str | None) -> str:
        """Put the branch back at ``original`` after a failed push; only our own commits are dropped.

        Returns a sentence for the outcome message.
        """
        try:
            current = self.repo.head()
            if current == original:
                return f"The clone is unchanged (at {original[:12]})."
            if created is not None and current != created:
                return f"The clone moved to {current[:12]} meanwhile and was left as it is."
            if self.repo.is_dirty():
                return f"The clone has new changes meanwhile and was left at {current[:12]}."
            self.repo.reset_hard(original)
        except GitError as error:
            return f"Putting the clone back at {original[:12]} failed: {error}"
        return f"The clone is back at {original[:12]}."

    def _refusal(self, plan: ActionPlan) -> str | None:
        """Why ``plan`` may not run now, or None."""
        if self.readonly:
            return "read-only mode: nothing is changed"
        if plan.kind == "reset" and not self.config.deployments.allow_force_push:
            return self._force_push_forbidden_message()
        try:
            branch = self.repo.current_branch()
            if branch != plan.branch:
                where = branch or "detached HEAD"
                return f"the clone is no longer on {plan.branch} ({where}); open the list again"
            head = self.repo.head()
            if head != plan.base_head:
                return (
                    f"{plan.branch} moved to {head[:12]} since the plan was made at {plan.base_head[:12]}; "
                    "open the list again"
                )
            if self.repo.is_dirty():
                return (
                    f"{self.repo.path} has uncommitted or untracked changes; "
                    "commit, stash or discard them first"
                )
        except GitError as error:
            return str(error)
        return None

    # -- internals: planning ---------------------------------------------------------------

    def _plan_range(self, target: CommitInfo, head: str) -> ActionPlan:
        newer = {commit.sha: commit for commit in self.repo.log(rev=f"{target.sha}..{head}", limit=2**31 - 1)}
        chain: list[CommitInfo] = []
        current = head
        while current != target.sha:
            commit = newer.get(current)
            if commit is None or not commit.parents:
                raise RollbackRefused(
                    f"{target.short} is not on the first-parent history of {self.branch} (it came in "
                    "through a merge); revert that merge, or pick a commit made on the branch itself"
                )
            chain.append(commit)
            current = commit.parents[0]
        chain.append(target)
        base = target.parents[0][:12] if target.parents else "the empty tree"
        shas = [commit.sha for commit in chain]
        shown = " ".join(sha[:12] for sha in shas[:SHAS_IN_COMMAND])
        if len(shas) > SHAS_IN_COMMAND:
            shown += f" … ({len(shas)} commits, newest first)"
        commands = (
            f"git revert --no-commit --mainline 1 {shown}",
            f'git commit --file=- ("Revert {_plural(len(chain), "commit")} back to {base}")',
            self._push_command(),
        )
        description = (
            f"Creates ONE commit on {self.branch} that puts every file back as it was before {target.short} "
            f"(at {base}), undoing {_plural(len(chain), 'commit')}, newest first:\n{_listing(chain)}\n"
            f"then pushes it to {self.remote}/{self.branch} and waits until Flux applies it. "
            "History is kept; merges are undone relative to their first parent."
        )
        return ActionPlan(
            kind="revert-range",
            target=target,
            mainline=None,
            branch=self.branch,
            remote=self.remote,
            base_head=head,
            affected=tuple(chain),
            commands=commands,
            reconcile_steps=self._reconcile_steps(),
            title=f"Revert {_plural(len(chain), 'commit')} back to {target.short}",
            description=description,
            destructive=False,
            typed_confirmation=None,
        )

    def _push_command(self) -> str:
        return f"git push {self.remote} {self.branch}"

    def _reconcile_steps(self) -> tuple[str, ...]:
        flux = self.config.flux
        source = f"GitRepository {flux.namespace}/{flux.git_repository}"
        if self.kube is None:
            return (f"(no cluster connection: Flux's {source} picks the change up at its interval)",)
        try:
            names = sorted(
                "/".join(_object_name(obj))
                for obj in self.kube.list(KUSTOMIZATIONS)
                if self._uses_our_source(obj) and not is_suspended(obj)
            )
        except GitOpsError:
            names = []
        targets = ", ".join(names) if names else "every Kustomization of that source"
        return (
            f"annotate {source} reconcile.fluxcd.io/requestedAt, wait for the new revision",
            f"annotate Kustomization {targets}, wait until they apply it",
        )

    def _refuse_when_readonly(self, action: str) -> None:
        if self.readonly:
            raise RollbackRefused(f"read-only mode: {action} is not available")

    def _force_push_forbidden_message(self) -> str:
        return (
            "reset needs a force push, which the config forbids (deployments.allow_force_push = false); "
            "revert instead, which keeps history"
        )

    def _refuse_when_force_push_forbidden(self) -> None:
        if not self.config.deployments.allow_force_push:
            raise RollbackRefused(self._force_push_forbidden_message())

    def _current_head(self) -> str:
        """The branch head, refusing the states ``prepare`` refuses (the clone may have changed since)."""
        branch = self.repo.current_branch()
        if branch != self.branch:
            raise RollbackRefused(
                f"{self.repo.path} is on {branch or 'a detached HEAD'}, not {self.branch}; "
                "open the list again"
            )
        return self.repo.head()

    def _target(self, sha: str, head: str) -> CommitInfo:
        target = self.commit(sha)
        if not self._is_ancestor(target.sha, head):
            raise RollbackRefused(f"{target.short} is not in the history of {self.branch}")
        return target

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        # Nothing reachable from `ancestor` is missing from `descendant`'s history.
        return self.repo.count_commits(f"{descendant}..{ancestor}") == 0

    def _resolve(self, rev: str, missing: str) -> str:
        try:
            return self.repo.head(rev)
        except GitError:
            raise RollbackRefused(missing) from None

    def _short_description(self, sha: str) -> str:
        try:
            commit = self.commit(sha)
        except GitOpsError:
            return sha[:12]
        return f"{commit.short} {commit.subject}"

    def _uses_our_source(self, obj: Mapping[str, Any]) -> bool:
        flux = self.config.flux
        source = (obj.get("spec") or {}).get("sourceRef") or {}
        namespace = source.get("namespace") or (obj.get("metadata") or {}).get("namespace")
        return (
            source.get("kind", "GitRepository") == "GitRepository"
            and source.get("name") == flux.git_repository
            and namespace == flux.namespace
        )

    def _kustomization_probe(
        self, name: str, namespace: str, token: str, new_head: str
    ) -> Callable[[], tuple[bool | None, str]]:
        kube = self.kube
        assert kube is not None

        def probe() -> tuple[bool | None, str]:
            """(True: applied, None: failed for good, False: keep waiting; message)."""
            obj = kube.get(KUSTOMIZATIONS, name, namespace)
            if obj is None:
                return None, "deleted"
            status = obj.get("status") or {}
            handled = status.get("lastHandledReconcileAt") == token
            applied = str(status.get("lastAppliedRevision") or "")
            ready, message = flux_ready(obj)
            if handled and ready and revision_sha(applied) == new_head:
                return True, message
            ready_condition = condition(obj)
            attempted = revision_sha(str(status.get("lastAttemptedRevision") or ""))
            if (
                handled
                and ready_condition is not None
                and ready_condition.status == "False"
                and attempted == new_head
                and ready_condition.reason not in _TRANSIENT_REASONS
            ):
                return None, message
            if not handled:
                return False, "reconciliation requested, waiting for the controller"
            return (
                False,
                message if not ready else f"at {applied or 'no revision'}, waiting for {new_head[:12]}",
            )

        return probe

    def _wait(
        self,
        probes: Iterable[tuple[str, str, str, Callable[[], tuple[bool | None, str]]]],
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> list[ReconcileReport]:
        """Poll every probe until each is done or failed, the timeout passes, or ``cancel`` is set."""
        pending = list(probes)
        results: dict[tuple[str, str, str], ReconcileReport] = {}
        last: dict[tuple[str, str, str], str] = {}
        deadline = time.monotonic() + self.wait_timeout
        order = [(kind, namespace, name) for kind, namespace, name, _ in pending]
        while pending:
            still: list[tuple[str, str, str, Callable[[], tuple[bool | None, str]]]] = []
            for kind, namespace, name, probe in pending:
                key = (kind, namespace, name)
                try:
                    done, message = probe()
                except GitOpsError as error:  # a transient API error: keep waiting, say why
                    done, message = False, str(error)
                if message and message != last.get(key):
                    _report(progress, f"{kind} {namespace}/{name}: {message}")
                    last[key] = message
                if done is False:
                    still.append((kind, namespace, name, probe))
                else:
                    results[key] = ReconcileReport(
                        kind, namespace, name, bool(done), self._revision(kind, namespace, name), message
                    )
            pending = still
            if not pending:
                break
            stopped = cancel is not None and cancel.is_set()
            if stopped or time.monotonic() >= deadline:
                why = "stopped waiting (cancelled)" if stopped else f"timed out after {self.wait_timeout:g} s"
                for kind, namespace, name, _ in pending:
                    key = (kind, namespace, name)
                    results[key] = ReconcileReport(
                        kind, namespace, name, False, self._revision(kind, namespace, name),
                        f"{why}: {last.get(key) or 'no status'}",
                    )  # fmt: skip
                break
            if cancel is not None:
                cancel.wait(self.poll_interval)
            else:
                time.sleep(self.poll_interval)
        return [results[key] for key in order]

    def _revision(self, kind: str, namespace: str, name: str) -> str:
        kube = self.kube
        if kube is None:
            return ""
        resource = GIT_REPOSITORIES if kind == "GitRepository" else KUSTOMIZATIONS
        try:
            obj = kube.get(resource, name, namespace) or {}
        except GitOpsError:
            return ""
        status = obj.get("status") or {}
        if kind == "GitRepository":
            return str((status.get("artifact") or {}).get("revision") or "")
        return str(status.get("lastAppliedRevision") or "")


def _object_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
