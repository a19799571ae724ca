"""GitRepo against real repositories: a bare remote and clones of it."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from phases import git as git_module
from phases.git import DirtyWorkTree, GitError, GitRepo, PushRejected, RevertConflict
from tests.fixtures.git import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    GitWorld,
    MakeCommits,
    commit_files,
    run_git,
    write_files,
)


def tree_of(repo: GitRepo, rev: str) -> str:
    return run_git("rev-parse", f"{rev}^{{tree}}", cwd=repo.path)


def is_running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 in this sandbox leaves orphans as zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def revert_in_progress(repo: GitRepo) -> bool:
    git_dir = repo.path / ".git"
    return (git_dir / "REVERT_HEAD").exists() or (git_dir / "sequencer").exists()


# -- clone, commit, push -----------------------------------------------------------------------


def test_commit_and_push_reach_the_bare_remote(bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    repo = world.clone
    assert repo.head() == world.initial_commit
    assert repo.current_branch() == "main"

    write_files(repo, {"clusters/prod/app.yaml": "replicas: 2\n"})
    assert repo.is_dirty()
    when = datetime(2024, 5, 17, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    sha = repo.commit_all("Scale app\n\nbody text", author="Robot <robot@example.test>", date=when)

    assert not repo.is_dirty()
    assert repo.head() == sha
    (info,) = repo.log(limit=1)
    assert (info.sha, info.subject, info.author, info.email) == (
        sha,
        "Scale app",
        "Robot",
        "robot@example.test",
    )
    assert info.date == when and info.date.utcoffset() == timedelta(hours=2)
    assert run_git("log", "-1", "--format=%cI", cwd=repo.path) == "2024-05-17T09:30:00+02:00"
    assert info.parents == (world.initial_commit,)

    repo.push()
    assert world.remote_main() == sha
    assert repo.remote_head("origin", "main") == sha
    assert repo.remote_head(str(world.remote), "main") == sha
    assert repo.remote_head(f"file://{world.remote}", "main") == sha
    assert repo.remote_head("origin", "no-such-branch") is None


def test_commit_all_stages_new_and_deleted_files(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    write_files(repo, {"new.txt": "new\n", "README.md": None})

    sha = repo.commit_all("Add new, drop README")

    assert run_git("show", "--name-status", "--format=", sha, cwd=repo.path).split("\n") == [
        "D\tREADME.md",
        "A\tnew.txt",
    ]
    (info,) = repo.log(limit=1)
    assert (info.author, info.email) == (AUTHOR_NAME, AUTHOR_EMAIL)  # from the clone's own config


def test_commit_all_with_nothing_to_commit(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    with pytest.raises(GitError, match=r"^nothing to commit in .*: the files match HEAD$"):
        repo.commit_all("Nothing")

    sha = repo.commit_all("Mark a deploy", allow_empty=True)
    assert repo.head() == sha != bare_remote_and_clone.initial_commit


def test_clone_a_branch_and_init(tmp_path: Path, bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    other = world.other_clone()
    run_git("switch", "--quiet", "-c", "staging", cwd=other.path)
    staging = commit_files(other, {"env.txt": "staging\n"}, "Staging only")
    run_git("push", "--quiet", "origin", "staging", cwd=other.path)

    cloned = GitRepo.clone(str(world.remote), tmp_path / "nested" / "staging-clone", branch="staging")
    assert (cloned.current_branch(), cloned.head()) == ("staging", staging)
    assert not cloned.is_shallow()

    bare = GitRepo.init(tmp_path / "fresh.git", bare=True, initial_branch="trunk")
    assert run_git("rev-parse", "--is-bare-repository", cwd=bare.path) == "true"
    assert run_git("symbolic-ref", "HEAD", cwd=bare.path) == "refs/heads/trunk"


def test_push_rejected_when_someone_else_pushed(bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    theirs = commit_files(world.other_clone(), {"theirs.txt": "1\n"}, "Their change")
    run_git("push", "--quiet", "origin", "main", cwd=world.root / "other")
    repo = world.clone
    ours = commit_files(repo, {"ours.txt": "1\n"}, "Our change")

    with pytest.raises(PushRejected) as caught:
        repo.push()

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("push to origin/main was rejected: someone pushed meanwhile")
    assert "fetch" in message
    assert world.remote_main() == theirs
    assert repo.head() == ours
    assert not repo.is_dirty()


def test_force_with_lease_rewrites_the_branch_when_the_remote_is_as_expected(
    bare_remote_and_clone: GitWorld,
) -> None:
    world = bare_remote_and_clone
    repo = world.clone
    bad = commit_files(repo, {"bad.txt": "oops\n"}, "Bad change")
    repo.push()

    repo.reset_hard(world.initial_commit)
    fixed = commit_files(repo, {"good.txt": "ok\n"}, "Good change")
    with pytest.raises(PushRejected):
        repo.push()  # not a fast-forward without the lease
    repo.push(force_with_lease=bad)

    assert world.remote_main() == fixed


def test_force_with_lease_is_rejected_when_the_remote_moved(bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    repo = world.clone
    expected = world.initial_commit
    theirs = commit_files(world.other_clone(), {"theirs.txt": "1\n"}, "Their change")
    run_git("push", "--quiet", "origin", "main", cwd=world.root / "other")
    ours = commit_files(repo, {"ours.txt": "1\n"}, "Our change")

    with pytest.raises(PushRejected, match=rf"origin/main is no longer at {expected[:12]}"):
        repo.push(force_with_lease=expected)

    assert world.remote_main() == theirs
    assert repo.head() == ours


def test_fetch_and_fast_forward_pull(bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    other = world.other_clone()
    theirs = commit_files(other, {"theirs.txt": "1\n"}, "Their change")
    run_git("push", "--quiet", "origin", "main", cwd=other.path)
    repo = world.clone

    repo.fetch()
    assert repo.head("origin/main") == theirs
    assert repo.head() == world.initial_commit
    repo.pull_ff()
    assert repo.head() == theirs

    commit_files(other, {"theirs.txt": "2\n"}, "Their second change")
    run_git("push", "--quiet", "origin", "main", cwd=other.path)
    ours = commit_files(repo, {"ours.txt": "1\n"}, "Our change")
    with pytest.raises(GitError, match=r"cannot fast-forward main .*has commits that origin/main does not"):
        repo.pull_ff()
    assert repo.head() == ours


# -- reading history ---------------------------------------------------------------------------


def test_log_pages_with_skip_and_limit(bare_remote_and_clone: GitWorld, make_commits: MakeCommits) -> None:
    repo = bare_remote_and_clone.clone
    shas = make_commits(repo, 25)
    newest_first = [*reversed(shas), bare_remote_and_clone.initial_commit]

    first = repo.log(limit=10)
    second = repo.log(skip=10, limit=10)
    last = repo.log(skip=20, limit=10)

    assert [c.sha for c in first + second + last] == newest_first
    assert [c.subject for c in first[:2]] == ["change 25", "change 24"]
    assert first[0].short == first[0].sha[:7]
    assert first[0].parents == (shas[-2],)
    assert last[-1].parents == ()
    assert all(c.files_changed is None for c in first)
    assert repo.log(skip=26) == []
    assert repo.log(limit=0) == []
    assert repo.count_commits() == 26
    assert repo.count_commits(shas[9]) == 11


def test_log_with_stats_counts_files_and_merges(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    three = commit_files(repo, {"a.txt": "a\n", "b.txt": "b\n", "c/d.txt": "d\n"}, "Three files")
    run_git("switch", "--quiet", "-c", "feature", cwd=repo.path)
    commit_files(repo, {"f1.txt": "1\n", "f2.txt": "2\n"}, "Feature")
    run_git("switch", "--quiet", "main", cwd=repo.path)
    commit_files(repo, {"a.txt": "a2\n"}, "Main moves on")
    run_git("merge", "--quiet", "--no-ff", "-m", "Merge feature", "feature", cwd=repo.path)
    empty = repo.commit_all("Empty", allow_empty=True)

    stats = {c.subject: c.files_changed for c in repo.log(with_stats=True)}

    assert stats == {
        "Empty": 0,
        "Merge feature": 2,  # against the first parent
        "Main moves on": 1,
        "Feature": 2,
        "Three files": 3,
        "Initial commit": 1,
    }
    assert repo.log(limit=1)[0].sha == empty
    assert repo.log(rev=three, limit=1, with_stats=True)[0].files_changed == 3


def test_log_pages_cheaply_through_twenty_thousand_commits(
    bare_remote_and_clone: GitWorld, make_commits: MakeCommits, git_calls: list[tuple[str, ...]]
) -> None:
    repo = bare_remote_and_clone.clone
    shas = make_commits(repo, 20_000)
    git_calls.clear()
    page = repo.log(skip=19_801, limit=200)
    assert [c.sha for c in page] == [*reversed(shas[:199]), bare_remote_and_clone.initial_commit]
    assert [call[0] for call in git_calls] == ["log"]  # one git call a page, however deep
    assert repo.count_commits() == 20_001


def test_show_diff_previews_a_commit_and_truncates(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    sha = commit_files(repo, {"big.txt": "é" * 50_000 + "\n", "small.txt": "hello\n"}, "Big change")

    full = repo.show_diff(sha, max_bytes=1_000_000)
    assert "Big change" in full and "+hello" in full and "diff truncated" not in full

    preview = repo.show_diff(sha, max_bytes=2_000)
    body, _, note = preview.rpartition("\n… diff truncated: ")
    assert len(body.encode()) <= 2_000
    assert full.startswith(body.rstrip("\ufffd"))
    assert note.startswith("showing 2,000 of ")
    assert "\ufffd" not in body  # a character cut at the limit is dropped, not garbled


def test_files_at_reads_a_subtree_from_the_bare_remote(bare_remote_and_clone: GitWorld) -> None:
    world = bare_remote_and_clone
    repo = world.clone
    binary = bytes(range(256)) * 3
    old = commit_files(
        repo,
        {
            "clusters/prod/flux-system/gotk.yaml": "kind: Kustomization\n",
            "clusters/prod/apps.yaml": "apps: v1\n",
            "clusters/prod/logo.png": binary,
            "clusters/prod/same.yaml": "apps: v1\n",  # same blob twice
            "clusters/production/other.yaml": "not under prod\n",
            "clusters/staging/apps.yaml": "staging\n",
        },
        "Layout",
    )
    run_git("mv", "clusters/prod/same.yaml", "clusters/prod/renamed.yaml", cwd=repo.path)
    # Neither a symlink nor a submodule is a file to read.
    (repo.path / "clusters/prod/link.yaml").symlink_to("apps.yaml")
    write_files(repo, {"clusters/prod/apps.yaml": "apps: v2\n"})
    run_git("add", "--all", cwd=repo.path)
    gitlink = f"160000,{world.initial_commit},clusters/prod/vendored"
    run_git("update-index", "--add", "--cacheinfo", gitlink, cwd=repo.path)
    run_git("commit", "--quiet", "-m", "Bump apps, add a link and a submodule", cwd=repo.path)
    assert "clusters/prod/vendored" in run_git("ls-tree", "-r", "--name-only", "HEAD", cwd=repo.path)
    repo.push()
    remote = GitRepo(world.remote)

    expected_now = {
        "clusters/prod/flux-system/gotk.yaml": b"kind: Kustomization\n",
        "clusters/prod/apps.yaml": b"apps: v2\n",
        "clusters/prod/logo.png": binary,
        "clusters/prod/renamed.yaml": b"apps: v1\n",
    }
    assert remote.files_at("main", "./clusters/prod") == expected_now
    assert remote.files_at("main", "clusters/prod/") == expected_now
    old_files = remote.files_at(old, "clusters/prod")
    assert old_files["clusters/prod/apps.yaml"] == b"apps: v1\n"
    assert "clusters/prod/same.yaml" in old_files
    assert remote.files_at("main", "clusters/nowhere") == {}
    assert set(remote.files_at("main", ".")) == {*expected_now, "README.md", "clusters/production/other.yaml",
                                                  "clusters/staging/apps.yaml"}  # fmt: skip
    with pytest.raises(GitError):
        remote.files_at("no-such-branch", "clusters")


# -- reverting -----------------------------------------------------------------------------------


def test_revert_a_normal_commit(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    good = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    bad = commit_files(repo, {"app.yaml": "image: v2\n"}, "Deploy v2")

    new_head = repo.revert(bad)

    assert new_head == repo.head() != bad
    (info,) = repo.log(limit=1)
    assert info.subject == 'Revert "Deploy v2"'
    assert info.parents == (bad,)
    assert tree_of(repo, "HEAD") == tree_of(repo, good)
    assert not repo.is_dirty()


def test_revert_without_commit_leaves_the_change_staged(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    bad = commit_files(repo, {"app.yaml": "image: v2\n"}, "Deploy v2")

    assert repo.revert(bad, no_commit=True) == bad
    assert run_git("diff", "--cached", "--name-only", cwd=repo.path) == "app.yaml"
    assert (repo.path / "app.yaml").read_text() == "image: v1\n"


def _merge_feature(repo: GitRepo) -> tuple[str, str]:
    """main: base -> main-only -> merge(feature); returns (main-only sha, merge sha)."""
    run_git("switch", "--quiet", "-c", "feature", cwd=repo.path)
    commit_files(repo, {"feature.yaml": "feature: on\n"}, "Add feature")
    run_git("switch", "--quiet", "main", cwd=repo.path)
    main_only = commit_files(repo, {"main.yaml": "main: yes\n"}, "Main change")
    run_git("merge", "--quiet", "--no-ff", "-m", "Merge feature", "feature", cwd=repo.path)
    return main_only, repo.head()


def test_revert_a_merge_commit_relative_to_its_first_parent(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    main_only, merge = _merge_feature(repo)
    assert repo.is_merge(merge)
    assert not repo.is_merge(main_only)

    with pytest.raises(GitError, match="is a merge commit: pass mainline=1"):
        repo.revert(merge)
    assert repo.head() == merge

    repo.revert(merge, mainline=1)

    assert tree_of(repo, "HEAD") == tree_of(repo, main_only)
    assert not (repo.path / "feature.yaml").exists()
    assert (repo.path / "main.yaml").exists()


def test_revert_conflict_is_aborted_and_the_clone_is_unchanged(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    v2 = commit_files(repo, {"app.yaml": "image: v2\n"}, "Deploy v2")
    v3 = commit_files(repo, {"app.yaml": "image: v3\n"}, "Deploy v3")

    with pytest.raises(RevertConflict) as caught:
        repo.revert(v2)

    assert str(caught.value) == (
        f"reverting {v2[:12]} conflicts with later changes to app.yaml; "
        "the revert was aborted and the clone is unchanged"
    )
    assert repo.head() == v3
    assert not repo.is_dirty()
    assert not revert_in_progress(repo)
    assert (repo.path / "app.yaml").read_text() == "image: v3\n"


def test_reverting_an_already_reverted_commit_changes_nothing(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    change = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    reverted = repo.revert(change)

    with pytest.raises(GitError, match="changes nothing"):
        repo.revert(change)
    assert repo.head() == reverted
    assert not repo.is_dirty()
    assert not revert_in_progress(repo)


def test_revert_refuses_a_dirty_tree(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    change = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")

    write_files(repo, {"app.yaml": "local edit\n"})
    with pytest.raises(DirtyWorkTree, match="uncommitted or untracked changes"):
        repo.revert(change)
    assert (repo.path / "app.yaml").read_text() == "local edit\n"

    write_files(repo, {"app.yaml": "image: v1\n", "stray.txt": "untracked\n"})
    with pytest.raises(DirtyWorkTree):
        repo.revert_range(change)
    assert repo.head() == change


def test_revert_range_undoes_every_commit_in_one_commit(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    base = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    oldest = commit_files(repo, {"app.yaml": "image: v2\n", "extra.yaml": "x\n"}, "Deploy v2")
    _, merge = _merge_feature(repo)
    newest = commit_files(repo, {"app.yaml": "image: v3\n", "extra.yaml": None}, "Deploy v3")

    new_head = repo.revert_range(oldest)

    assert repo.head() == new_head
    assert repo.log(limit=2)[1].sha == newest
    assert tree_of(repo, "HEAD") == tree_of(repo, base)
    (info,) = repo.log(limit=1)
    assert info.subject == f"Revert 4 commits back to {base[:12]}"  # the first-parent chain
    body = run_git("log", "-1", "--format=%b", cwd=repo.path)
    assert f"- {merge[:7]} Merge feature" in body
    assert not repo.is_dirty()


def test_revert_range_is_all_or_nothing(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    oldest = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    newest = commit_files(repo, {"app.yaml": "image: v2\n"}, "Deploy v2")
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'policy: no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)

    with pytest.raises(GitError, match=r"failed and was undone.*policy: no commits today"):
        repo.revert_range(oldest)

    assert repo.head() == newest
    assert not repo.is_dirty()
    assert not revert_in_progress(repo)


def test_revert_range_with_no_net_change_is_refused(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    added = commit_files(repo, {"tmp.yaml": "x\n"}, "Add tmp")
    removed = commit_files(repo, {"tmp.yaml": None}, "Remove tmp")

    with pytest.raises(GitError, match=r"^reverting 2 commits back to .* changes nothing"):
        repo.revert_range(added)

    assert repo.head() == removed
    assert not repo.is_dirty()
    assert not revert_in_progress(repo)


def test_revert_range_refuses_a_commit_off_the_branch_history(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    run_git("switch", "--quiet", "-c", "feature", cwd=repo.path)
    side = commit_files(repo, {"feature.yaml": "on\n"}, "Side change")
    run_git("switch", "--quiet", "main", cwd=repo.path)
    commit_files(repo, {"main.yaml": "on\n"}, "Main change")
    run_git("merge", "--quiet", "--no-ff", "-m", "Merge", "feature", cwd=repo.path)
    head = repo.head()

    with pytest.raises(GitError, match="is not on the first-parent history of HEAD"):
        repo.revert_range(side)
    assert repo.head() == head


# -- state -------------------------------------------------------------------------------------


def test_reset_hard_discards_changes(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    first = commit_files(repo, {"app.yaml": "image: v1\n"}, "Deploy v1")
    commit_files(repo, {"app.yaml": "image: v2\n"}, "Deploy v2")
    write_files(repo, {"app.yaml": "local edit\n"})

    repo.reset_hard(first[:10])

    assert repo.head() == first
    assert repo.current_branch() == "main"
    assert (repo.path / "app.yaml").read_text() == "image: v1\n"
    assert not repo.is_dirty()


def test_detached_head_has_no_current_branch(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    commit_files(repo, {"app.yaml": "v1\n"}, "Deploy v1")
    run_git("switch", "--quiet", "--detach", "HEAD~1", cwd=repo.path)

    assert repo.current_branch() is None
    assert repo.head() == bare_remote_and_clone.initial_commit


def test_shallow_clone_is_detected(bare_remote_and_clone: GitWorld, make_commits: MakeCommits) -> None:
    world = bare_remote_and_clone
    make_commits(world.clone, 3)
    world.clone.push()
    shallow = world.root / "shallow"
    run_git("clone", "--quiet", "--depth", "1", f"file://{world.remote}", str(shallow), cwd=world.root)

    assert GitRepo(shallow).is_shallow()
    assert GitRepo(shallow).count_commits() == 1
    assert not world.clone.is_shallow()


def test_open_or_clone(bare_remote_and_clone: GitWorld, tmp_path: Path) -> None:
    world = bare_remote_and_clone
    destination = tmp_path / "work" / "deployments"

    cloned = GitRepo.open_or_clone(str(world.remote), destination, branch="main")
    assert cloned.head() == world.initial_commit
    marker = destination / "local-note.txt"
    marker.write_text("kept\n")

    reopened = GitRepo.open_or_clone(f"file://{world.remote}/", destination, branch="main")
    assert reopened.path == destination
    assert marker.read_text() == "kept\n"  # opened, not cloned again

    elsewhere = tmp_path / "elsewhere.git"
    run_git("init", "--quiet", "--bare", str(elsewhere), cwd=tmp_path)
    with pytest.raises(GitError) as caught:
        GitRepo.open_or_clone(str(elsewhere), destination, branch="main")
    assert str(caught.value) == (
        f"{destination} is a clone of {world.remote}, not {elsewhere}; "
        "move it away or choose another directory"
    )

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file.txt").write_text("x")
    with pytest.raises(GitError, match="is not a git clone"):
        GitRepo.open_or_clone(str(world.remote), plain, branch="main")


# -- errors and safety ---------------------------------------------------------------------------


def test_repository_location_from_the_environment_is_ignored(
    bare_remote_and_clone: GitWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when the TUI is started from a git hook: GIT_DIR would point every call elsewhere.
    repo = bare_remote_and_clone.clone
    local = commit_files(repo, {"x.txt": "x\n"}, "Local only")
    monkeypatch.setenv("GIT_DIR", str(bare_remote_and_clone.remote))
    monkeypatch.setenv("GIT_WORK_TREE", str(bare_remote_and_clone.root))

    assert repo.head() == local
    write_files(repo, {"y.txt": "y\n"})
    sha = repo.commit_all("Also local")
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    assert run_git("rev-parse", "HEAD", cwd=repo.path) == sha
    assert bare_remote_and_clone.remote_main() == bare_remote_and_clone.initial_commit


def test_git_errors_name_the_command_and_git_message(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    with pytest.raises(GitError, match=r"^'no-such-ref' does not name a commit in "):
        repo.head("no-such-ref")

    with pytest.raises(GitError) as caught:
        repo.fetch("no-such-remote")
    message = str(caught.value)
    assert message.startswith(f"`git fetch --quiet no-such-remote` failed in {repo.path}: fatal: ")
    assert "no-such-remote" in message and "\n" not in message
    assert caught.value.exit_code == 128

    with pytest.raises(GitError, match="invalid remote '--upload-pack=touch /tmp/pwned'"):
        repo.fetch("--upload-pack=touch /tmp/pwned")


def test_urls_with_credentials_are_refused_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(GitError) as caught:
        GitRepo.clone("https://bot:ghp_SECRET123@example.test/org/deploy.git", tmp_path / "x")
    assert "ghp_SECRET123" not in str(caught.value)
    assert "https://bot:***@example.test/org/deploy.git" in str(caught.value)
    assert not (tmp_path / "x").exists()


class _AuthRequired(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def auth_required_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRequired)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/org/deploy.git"
    finally:
        server.shutdown()
        server.server_close()


def test_git_never_prompts_for_credentials(
    auth_required_server: str, tmp_path: Path, isolated_git_config: None
) -> None:
    started = time.monotonic()
    with pytest.raises(GitError, match="terminal prompts disabled"):
        GitRepo.clone(auth_required_server, tmp_path / "clone")
    assert time.monotonic() - started < 5


def test_a_hung_network_command_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_git_config: None
) -> None:
    # A remote helper that never answers stands in for a stalled connection.
    helper = tmp_path / "bin" / "git-remote-stall"
    helper.parent.mkdir()
    helper_pid_file = tmp_path / "helper.pid"
    helper.write_text(f"#!/bin/sh\necho $$ > {helper_pid_file}\nexec sleep 100\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(git_module, "NETWORK_TIMEOUT_SECONDS", 0.5)

    started = time.monotonic()
    with pytest.raises(GitError, match=r"^`git ls-remote -- stall::x refs/heads/main` timed out after 0.5 s"):
        GitRepo(tmp_path).remote_head("stall::x", "main")
    assert time.monotonic() - started < 30  # not the helper's 100 s: the timeout fired
    helper_pid = int(helper_pid_file.read_text())
    deadline = time.monotonic() + 10  # SIGKILL delivery can lag on a loaded machine
    while is_running(helper_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(helper_pid)  # git's whole session was killed


def test_commit_dates_keep_their_offset(bare_remote_and_clone: GitWorld) -> None:
    repo = bare_remote_and_clone.clone
    naive_local = datetime(2023, 1, 2, 3, 4, 5)
    repo.commit_all("Naive", allow_empty=True, date=naive_local)
    assert repo.log(limit=1)[0].date == naive_local.astimezone()

    utc = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
    repo.commit_all("UTC", allow_empty=True, date=utc)
    assert repo.log(limit=1)[0].date == utc


def test_a_large_request_and_a_large_answer_at_once_do_not_block(bare_remote_and_clone: GitWorld) -> None:
    # A pipe holds ~64 KB: git answering while we are still writing must block neither side.
    repo = bare_remote_and_clone.clone
    folder = repo.path / "many"
    folder.mkdir()
    for n in range(2000):  # cat-file gets ~82 KB of object ids and answers ~300 KB
        (folder / f"f{n:04}.yaml").write_text(f"value: {n}\n" * 8)
    repo.commit_all("Many files")
    files = repo.files_at("HEAD", "many")
    assert len(files) == 2000 and files["many/f1999.yaml"] == b"value: 1999\n" * 8


def test_git_missing_from_path_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    git_module._git_program.cache_clear()  # sh looks git up once per process
    try:
        with pytest.raises(GitError, match=r"^git was not found on PATH"):
            GitRepo(tmp_path).head()
        with pytest.raises(GitError, match=r"^git was not found on PATH"):
            GitRepo(tmp_path).log()
    finally:
        git_module._git_program.cache_clear()
