"""RollbackPlanner against real repositories (the sandbox's sample history in a bare remote and a
clone), and against a bootstrapped sandbox for the Flux part."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from phases.config import Config, DeploymentsConfig, EngineConfig
from phases.git import GitRepo
from phases.health import RECONCILE_ANNOTATION
from phases.kube import DEPLOYMENTS, EXTERNAL_SECRETS, KubeClient, ResourceType
from phases.rollback import RollbackPlanner, RollbackRefused, revision_sha
from sandbox.sample_repo import create_sample_repo
from sandbox.world import SandboxWorld
from tests.fixtures.git import GitWorld, MakeCommits, commit_files, configure_identity, run_git, write_files
from tests.support.bootstrap import bootstrapped_sync

WEBAPP_DIR = "clusters/production/apps/webapp"
MYAPP_DEPLOYMENT = "clusters/production/apps/myapp/deployment.yaml"


@dataclass
class Sample:
    """The sandbox's sample deployments history: a bare remote and a clone of it."""

    root: Path
    remote: Path
    clone: GitRepo

    def config(self, *, allow_force_push: bool = False) -> Config:
        deployments = DeploymentsConfig(
            url=str(self.remote),
            branch="main",
            clone_dir=str(self.clone.path),
            allow_force_push=allow_force_push,
        )
        return dataclasses.replace(Config(), deployments=deployments)

    def planner(self, *, allow_force_push: bool = False, readonly: bool = False) -> RollbackPlanner:
        return RollbackPlanner.open(self.config(allow_force_push=allow_force_push), readonly=readonly)

    def sha(self, subject: str) -> str:
        """The commit on the remote's main whose subject starts with ``subject``."""
        lines = run_git("log", "--format=%H %s", "main", cwd=self.remote).splitlines()
        matches = [line.split(" ", 1)[0] for line in lines if line.split(" ", 1)[1].startswith(subject)]
        assert len(matches) == 1, (subject, matches)
        return matches[0]

    def remote_main(self) -> str:
        return run_git("rev-parse", "refs/heads/main", cwd=self.remote)

    def remote_file(self, path: str, rev: str = "main") -> str | None:
        listed = run_git("ls-tree", "--name-only", rev, "--", path, cwd=self.remote)
        return run_git("show", f"{rev}:{path}", cwd=self.remote) if listed else None

    def push_from_elsewhere(self, files: dict[str, str | None], message: str) -> str:
        """Someone else clones, commits and pushes."""
        other = self.root / f"other-{len(list(self.root.glob('other-*')))}"
        run_git("clone", "--quiet", str(self.remote), str(other), cwd=self.root)
        configure_identity(other)
        sha = commit_files(other, files, message)
        run_git("push", "--quiet", "origin", "main", cwd=other)
        return sha


@pytest.fixture(scope="session")
def _pristine_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine-sample")
    create_sample_repo(root / "remote.git", root / "clone")
    return root


@pytest.fixture
def sample(tmp_path: Path, isolated_git_config: None, _pristine_sample: Path) -> Sample:
    remote, clone = tmp_path / "remote.git", tmp_path / "clone"
    shutil.copytree(_pristine_sample / "remote.git", remote, symlinks=True)
    shutil.copytree(_pristine_sample / "clone", clone, symlinks=True)
    run_git("remote", "set-url", "origin", str(remote), cwd=clone)
    return Sample(tmp_path, remote, GitRepo(clone))


def git_dir_has_revert_in_progress(repo: GitRepo) -> bool:
    return (repo.path / ".git" / "REVERT_HEAD").exists() or (repo.path / ".git" / "sequencer").exists()


# -- prepare and paging ---------------------------------------------------------------------------


def test_prepare_fast_forwards_and_pages_newest_first(sample: Sample) -> None:
    theirs = sample.push_from_elsewhere({"NOTES.md": "on-call notes\n"}, "docs: on-call notes")
    planner = sample.planner()

    prepared = planner.prepare()

    assert (prepared.head, prepared.fast_forwarded, prepared.total_commits) == (theirs, 1, 14)
    assert sample.clone.head() == theirs
    first, second = planner.page(0, 3), planner.page(3, 3)
    assert [c.subject for c in first] == [
        "docs: on-call notes",
        "config: myapp log level back to info, cloudflared to 2 replicas",
        "deploy: update myapp to v1.2.3",
    ]
    assert second[0].subject == "Merge branch 'feature/webapp'" and second[0].is_merge
    assert all(c.files_changed is None for c in first)
    assert planner.files_changed(3, 1) == {second[0].sha: 7}  # against the first parent
    assert planner.page(13, 5)[-1].subject == "chore: initial repository layout"
    assert planner.is_merge(second[0].sha) and len(planner.parents(second[0].sha)) == 2
    assert "clusters/production/apps/webapp/deployment.yaml" in planner.diff(second[0].sha)


def test_the_first_page_of_twenty_thousand_commits_is_one_git_call(
    bare_remote_and_clone: GitWorld, make_commits: MakeCommits, git_calls: list[tuple[str, ...]]
) -> None:
    world = bare_remote_and_clone
    shas = make_commits(world.clone, 20_000)
    run_git("push", "--quiet", "origin", "main", cwd=world.clone.path)
    config = dataclasses.replace(
        Config(), deployments=DeploymentsConfig(url=str(world.remote), clone_dir=str(world.clone.path))
    )
    planner = RollbackPlanner.open(config)
    assert planner.prepare().total_commits == 20_001
    git_calls.clear()
    page = planner.page(0, 100)

    assert [c.sha for c in page] == list(reversed(shas[-100:]))
    assert [call[0] for call in git_calls] == ["log"]
    assert [c.sha for c in planner.page(19_950, 100)][-1] == world.initial_commit


def test_a_dirty_tree_is_refused_and_left_alone(sample: Sample) -> None:
    head = sample.clone.head()
    write_files(sample.clone, {MYAPP_DEPLOYMENT: "edited by hand\n", "scratch.txt": "notes\n"})
    planner = sample.planner()

    with pytest.raises(RollbackRefused, match="uncommitted or untracked changes"):
        planner.prepare()

    assert (sample.clone.path / "scratch.txt").read_text() == "notes\n"
    assert (sample.clone.path / MYAPP_DEPLOYMENT).read_text() == "edited by hand\n"
    assert sample.clone.head() == head


def test_a_plan_made_before_the_tree_got_dirty_is_refused_at_execution(sample: Sample) -> None:
    planner = sample.planner()
    planner.prepare()
    plan = planner.plan_revert(sample.sha("deploy: update myapp to v1.2.3"))
    write_files(sample.clone, {"scratch.txt": "notes\n"})

    outcome = planner.execute(plan)

    assert outcome.status == "refused" and "uncommitted" in outcome.message
    assert sample.remote_main() == plan.base_head and (sample.clone.path / "scratch.txt").exists()


def test_a_detached_head_is_refused(sample: Sample) -> None:
    run_git("checkout", "--quiet", "--detach", "HEAD~2", cwd=sample.clone.path)

    with pytest.raises(RollbackRefused, match="detached HEAD"):
        sample.planner().prepare()

    assert sample.clone.current_branch() is None


def test_local_commits_the_remote_lacks_are_refused(sample: Sample) -> None:
    commit_files(sample.clone, {"local.txt": "mine\n"}, "local work")
    sample.push_from_elsewhere({"theirs.txt": "theirs\n"}, "their work")

    with pytest.raises(RollbackRefused, match=r"diverged from origin/main: 1 local commit not on origin"):
        sample.planner().prepare()

    assert run_git("log", "-1", "--format=%s", cwd=sample.clone.path) == "local work"


# -- revert ----------------------------------------------------------------------------------------


def test_revert_a_normal_commit_and_push_it(sample: Sample) -> None:
    planner = sample.planner()
    base = planner.prepare().head
    target = sample.sha("deploy: update myapp to v1.2.3")
    lines: list[str] = []

    plan = planner.plan_revert(target)
    outcome = planner.execute(plan, lines.append)

    assert plan.commands == (f"git revert --no-edit {target}", "git push origin main")
    assert not plan.destructive and plan.typed_confirmation is None
    assert outcome.status == "pushed" and outcome.pushed  # no cluster: nothing to wait for
    assert outcome.new_head == sample.remote_main() == sample.clone.head()
    assert run_git("rev-parse", "main^", cwd=sample.remote) == base
    assert run_git("log", "-1", "--format=%s", "main", cwd=sample.remote) == (
        'Revert "deploy: update myapp to v1.2.3"'
    )
    deployment = sample.remote_file(MYAPP_DEPLOYMENT)
    assert deployment is not None and "myapp:v1.1.0" in deployment and "v1.2.3" not in deployment
    assert lines[0] == f"$ git revert --no-edit {target}" and "$ git push origin main" in lines


def test_revert_the_merge_commit_keeping_its_first_parent(sample: Sample) -> None:
    planner = sample.planner()
    planner.prepare()
    merge = sample.sha("Merge branch 'feature/webapp'")
    assert sample.remote_file(f"{WEBAPP_DIR}/deployment.yaml") is not None

    with pytest.raises(RollbackRefused, match="is a merge commit: choose which parent"):
        planner.plan_revert(merge)
    with pytest.raises(RollbackRefused, match="has 2 parents; mainline 3"):
        planner.plan_revert(merge, mainline=3)
    plan = planner.plan_revert(merge, mainline=1)
    outcome = planner.execute(plan)

    assert plan.commands[0] == f"git revert --no-edit --mainline 1 {merge}"
    assert "keeping parent 1" in plan.description and "deploy: bump cloudflared" in plan.description
    assert outcome.status == "pushed" and outcome.new_head == sample.remote_main()
    assert sample.remote_file(f"{WEBAPP_DIR}/deployment.yaml") is None
    namespaces = sample.remote_file("clusters/production/flux-system/namespaces.yaml")
    assert namespaces is not None and "webapp" not in namespaces and "cloudflared" in namespaces


def test_range_revert_undoes_every_later_commit_in_one_commit(sample: Sample) -> None:
    planner = sample.planner()
    base = planner.prepare().head
    oldest = sample.sha("deploy: update myapp to v1.2.3")
    merge = sample.sha("Merge branch 'feature/webapp'")

    plan = planner.plan_revert(oldest, range_back=True)
    outcome = planner.execute(plan)

    assert plan.kind == "revert-range" and [c.sha for c in plan.affected] == [base, oldest]
    assert plan.title == "Revert 2 commits back to " + oldest[:7]
    assert outcome.status == "pushed"
    assert run_git("rev-list", "--count", f"{base}..main", cwd=sample.remote) == "1"
    assert run_git("rev-parse", "main^{tree}", cwd=sample.remote) == run_git(
        "rev-parse", f"{merge}^{{tree}}", cwd=sample.remote
    )


def test_range_revert_refuses_a_commit_that_came_in_through_a_merge(sample: Sample) -> None:
    planner = sample.planner()
    planner.prepare()

    with pytest.raises(RollbackRefused, match="not on the first-parent history"):
        planner.plan_revert(sample.sha("deploy: add webapp frontend"), range_back=True)


def test_a_conflicting_revert_is_aborted_and_the_clone_is_unchanged(sample: Sample) -> None:
    planner = sample.planner()
    base = planner.prepare().head

    # v1.1.0's image line was changed again by v1.2.3: undoing it conflicts.
    outcome = planner.execute(planner.plan_revert(sample.sha("deploy: update myapp to v1.1.0")))

    assert outcome.status == "conflict" and not outcome.pushed
    assert MYAPP_DEPLOYMENT in outcome.message and "aborted" in outcome.message
    assert sample.clone.head() == base and not sample.clone.is_dirty()
    assert not git_dir_has_revert_in_progress(sample.clone)
    assert sample.remote_main() == base


def test_a_rejected_push_is_explained_then_fetch_and_retry_succeeds(sample: Sample) -> None:
    planner = sample.planner()
    base = planner.prepare().head
    plan = planner.plan_revert(sample.sha("deploy: update myapp to v1.2.3"))
    theirs = sample.push_from_elsewhere({"NOTES.md": "on-call notes\n"}, "docs: on-call notes")

    rejected = planner.execute(plan)

    assert rejected.status == "push-rejected" and rejected.can_fetch_and_retry
    assert "someone pushed meanwhile" in rejected.message and "fetch and retry" in rejected.message
    assert sample.clone.head() == base and not sample.clone.is_dirty()  # our revert commit is gone
    assert sample.remote_main() == theirs  # and theirs was never touched

    lines: list[str] = []
    retried = planner.fetch_and_retry(rejected.plan, lines.append)

    assert retried.status == "pushed", retried.message
    assert lines[0] == "$ git fetch origin"
    assert run_git("rev-parse", "main^", cwd=sample.remote) == theirs
    assert sample.remote_file("NOTES.md") == "on-call notes"
    deployment = sample.remote_file(MYAPP_DEPLOYMENT)
    assert deployment is not None and "myapp:v1.1.0" in deployment


def test_readonly_fetches_and_lists_but_never_changes_anything(sample: Sample) -> None:
    head = sample.clone.head()
    theirs = sample.push_from_elsewhere({"NOTES.md": "notes\n"}, "docs: notes")
    planner = sample.planner(readonly=True, allow_force_push=True)

    prepared = planner.prepare()

    assert prepared.head == theirs and planner.page(0, 1)[0].sha == theirs
    assert sample.clone.head() == head  # the local branch did not move
    with pytest.raises(RollbackRefused, match="read-only"):
        planner.plan_revert(theirs)
    with pytest.raises(RollbackRefused, match="read-only"):
        planner.plan_reset(head)


# -- reset -----------------------------------------------------------------------------------------


def test_reset_pushes_with_force_with_lease_and_names_the_dropped_commits(sample: Sample) -> None:
    planner = sample.planner(allow_force_push=True)
    base = planner.prepare().head
    merge = sample.sha("Merge branch 'feature/webapp'")

    plan = planner.plan_reset(merge)
    outcome = planner.execute(plan)

    assert plan.destructive and plan.typed_confirmation == merge[:7]
    assert plan.commands == (
        f"git reset --hard {merge}",
        f"git push --force-with-lease=main:{base} origin main",
    )
    assert [c.subject for c in plan.affected] == [
        "config: myapp log level back to info, cloudflared to 2 replicas",
        "deploy: update myapp to v1.2.3",
    ]
    assert "DROPS 2 commits" in plan.description
    assert outcome.status == "pushed" and sample.remote_main() == merge == sample.clone.head()


def test_reset_is_refused_when_the_config_forbids_force_pushes(sample: Sample) -> None:
    allowed = sample.planner(allow_force_push=True)
    allowed.prepare()
    plan = allowed.plan_reset(sample.sha("Merge branch 'feature/webapp'"))
    forbidden = sample.planner(allow_force_push=False)
    forbidden.prepare()

    with pytest.raises(RollbackRefused, match="allow_force_push = false"):
        forbidden.plan_reset(sample.sha("Merge branch 'feature/webapp'"))
    outcome = forbidden.execute(plan)  # a plan made elsewhere is refused too

    assert outcome.status == "refused" and "allow_force_push" in outcome.message
    assert sample.remote_main() == plan.base_head == sample.clone.head()


def test_a_reset_whose_lease_is_stale_keeps_their_commit_and_asks_again(sample: Sample) -> None:
    planner = sample.planner(allow_force_push=True)
    base = planner.prepare().head
    merge = sample.sha("Merge branch 'feature/webapp'")
    plan = planner.plan_reset(merge)
    theirs = sample.push_from_elsewhere({"NOTES.md": "notes\n"}, "docs: notes")

    rejected = planner.execute(plan)

    assert rejected.status == "push-rejected" and f"no longer at {base[:12]}" in rejected.message
    assert sample.remote_main() == theirs and sample.clone.head() == base

    again = planner.fetch_and_retry(plan)

    assert again.status == "confirm-again" and again.next_plan is not None
    assert [c.sha for c in again.next_plan.fetched] == [theirs]
    assert again.next_plan.affected[0].sha == theirs and "docs: notes" in again.next_plan.description
    assert sample.remote_main() == theirs  # nothing pushed without a new confirmation
    assert planner.execute(again.next_plan).status == "pushed" and sample.remote_main() == merge


# -- Flux revisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("main@sha1:" + "a" * 40, "a" * 40),
        ("sha1:" + "b" * 40, "b" * 40),
        ("main/" + "c" * 40, "c" * 40),
        ("main@sha256:" + "d" * 64, "d" * 64),
        ("6.5.0@sha256:abc", None),
        ("", None),
    ],
)
def test_revision_sha(revision: str, expected: str | None) -> None:
    assert revision_sha(revision) == expected


# -- against the sandbox: Flux applies the revert --------------------------------------------------


@pytest.fixture
def bootstrapped(sandbox_world: SandboxWorld) -> Iterator[tuple[SandboxWorld, Config]]:
    config, _ = bootstrapped_sync(sandbox_world)
    yield sandbox_world, config


def test_after_reverting_the_webapp_merge_flux_applies_the_new_head_and_prunes_webapp(
    bootstrapped: tuple[SandboxWorld, Config],
) -> None:
    world, config = bootstrapped
    info = world.info
    kube = KubeClient(config.cluster.resolved_kubeconfig(), user_agent="test/1")
    # The sandbox's clone tracks the bare repository by path; Flux reads the same repository over HTTP.
    planner = RollbackPlanner.open(config, kube=kube, clone_url=info.remote_path.as_uri())
    head = planner.prepare().head
    names = ["flux-system/flux-system", "flux-system/production"]
    assert planner.applied_markers() == {head: names}
    assert kube.get(DEPLOYMENTS, "webapp", "webapp") is not None
    assert kube.get(EXTERNAL_SECRETS, "webapp-secrets", "webapp") is not None
    merge = next(c for c in planner.page(0, 20) if c.is_merge)

    plan = planner.plan_revert(merge.sha, mainline=1)
    lines: list[str] = []
    outcome = planner.execute(plan, lines.append, cancel=threading.Event())

    assert plan.reconcile_steps[-1] == (
        "annotate Kustomization flux-system/flux-system, flux-system/production, wait until they apply it"
    )
    assert outcome.status == "applied", outcome.message
    assert outcome.reconcile is not None and all(report.done for report in outcome.reconcile.reports)
    new_head = outcome.new_head
    assert new_head is not None and new_head != head
    assert planner.applied_markers() == {new_head: names}
    assert revision_sha(outcome.reconcile.reports[0].revision) == new_head  # the GitRepository's artifact
    assert kube.get(DEPLOYMENTS, "webapp", "webapp") is None
    assert kube.get(EXTERNAL_SECRETS, "webapp-secrets", "webapp") is None
    assert kube.get(DEPLOYMENTS, "myapp", "myapp") is not None
    assert any(line.startswith("annotate GitRepository flux-system/flux-system") for line in lines)
    assert any("Kustomization flux-system/production" in line for line in lines)


# -- the waiting rules, with scripted controllers ----------------------------------------------------

OLD, NEW = "1" * 40, "2" * 40


def flux_object(
    kind: str, name: str, *, source: str = "flux-system", suspend: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {"suspend": suspend}
    if kind == "Kustomization":
        spec["sourceRef"] = {"kind": "GitRepository", "name": source}
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "flux-system", "generation": 1},
        "spec": spec,
        "status": {"lastAppliedRevision": f"main@sha1:{OLD}"} if kind == "Kustomization" else {},
    }


def handled(
    obj: dict[str, Any], token: str, *, ready: bool, reason: str = "Succeeded", message: str = ""
) -> None:
    status = obj["status"]
    status["lastHandledReconcileAt"] = token
    status["conditions"] = [
        {"type": "Ready", "status": str(ready), "reason": reason, "message": message, "observedGeneration": 1}
    ]


class ScriptedFlux:
    """Just enough of KubeClient for the planner's waits; ``on_request`` plays each controller."""

    def __init__(
        self, objects: list[dict[str, Any]], on_request: dict[str, Callable[[dict[str, Any], str], None]]
    ):
        self.objects = {obj["metadata"]["name"] + "/" + obj["kind"]: obj for obj in objects}
        self.on_request = on_request
        self.requested: list[str] = []

    def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        obj = self.objects.get(f"{name}/{resource.kind}")
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for obj in self.objects.values() if obj["kind"] == resource.kind]

    def merge_patch(
        self, resource: ResourceType, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        obj = self.objects[f"{name}/{resource.kind}"]
        token = patch["metadata"]["annotations"][RECONCILE_ANNOTATION]
        self.requested.append(f"{resource.kind}/{name}")
        controller = self.on_request.get(f"{name}/{resource.kind}")
        if controller is not None:
            controller(obj, token)
        return obj


def test_the_wait_reports_stale_failed_and_suspended_kustomizations(tmp_path: Path) -> None:
    def source(obj: dict[str, Any], token: str) -> None:
        handled(obj, token, ready=True)
        obj["status"]["artifact"] = {"revision": f"main@sha1:{NEW}"}

    def applies(obj: dict[str, Any], token: str) -> None:
        handled(obj, token, ready=True)
        obj["status"]["lastAppliedRevision"] = f"main@sha1:{NEW}"

    def stays_at_the_old_revision(obj: dict[str, Any], token: str) -> None:
        handled(obj, token, ready=True)

    def fails_to_build(obj: dict[str, Any], token: str) -> None:
        handled(obj, token, ready=False, reason="BuildFailed", message="kustomize build failed: no such file")
        obj["status"]["lastAttemptedRevision"] = f"main@sha1:{NEW}"

    flux = ScriptedFlux(
        [
            flux_object("GitRepository", "flux-system"),
            flux_object("Kustomization", "apps"),
            flux_object("Kustomization", "broken"),
            flux_object("Kustomization", "lagging"),
            flux_object("Kustomization", "paused", suspend=True),
            flux_object("Kustomization", "elsewhere", source="another-repo"),
        ],
        {
            "flux-system/GitRepository": source,
            "apps/Kustomization": applies,
            "broken/Kustomization": fails_to_build,
            "lagging/Kustomization": stays_at_the_old_revision,
        },
    )
    engine = EngineConfig(wait_timeout=0.5, poll_interval=0.02)
    planner = RollbackPlanner(
        GitRepo(tmp_path), dataclasses.replace(Config(), engine=engine), kube=cast(KubeClient, flux)
    )
    markers_before = planner.applied_markers()

    result = planner.reconcile(NEW)

    assert markers_before == {
        OLD: [f"flux-system/{name}" for name in ("apps", "broken", "lagging", "paused")]
    }
    assert not result.ok and not result.cancelled
    assert flux.requested == [
        "GitRepository/flux-system",
        "Kustomization/apps",
        "Kustomization/broken",
        "Kustomization/lagging",
    ]  # never the suspended one, never another source's
    reports = {report.name: report for report in result.reports}
    assert set(reports) == {"flux-system", "apps", "broken", "lagging", "paused"}
    assert reports["flux-system"].done and reports["apps"].done
    assert reports["broken"].message == "kustomize build failed: no such file" and not reports["broken"].done
    assert reports["lagging"].message == (
        f"timed out after 0.5 s: at main@sha1:{OLD}, waiting for {NEW[:12]}"
    )
    assert reports["paused"].message == "suspended: not reconciled"
    assert "Kustomization flux-system/broken: kustomize build failed" in result.message
    assert planner.applied_markers()[NEW] == ["flux-system/apps"]

    stop = threading.Event()
    stop.set()
    cancelled = planner.reconcile(NEW, cancel=stop)
    assert cancelled.cancelled and "stopped waiting (cancelled)" in cancelled.message
