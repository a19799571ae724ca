"""The sandbox serves its deployments repo over smart HTTP with basic auth, like a real Git host."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sandbox.git_server import GitHttpServer


def git(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", "HOME": str(cwd or Path.cwd())}
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True
    )


def make_bare(root: Path) -> str:
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "a.yaml").write_text("a: 1\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "first", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "repos" / "deployments.git"))
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def auth_env(user: str, password: str) -> dict[str, str]:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
    }


def test_ls_remote_and_clone_need_credentials(tmp_path: Path) -> None:
    head = make_bare(tmp_path)
    with GitHttpServer(tmp_path / "repos") as server:
        url = server.url_for("deployments.git")
        assert url.startswith("http://127.0.0.1:")
        anonymous = git("ls-remote", url, "refs/heads/main", cwd=tmp_path)
        assert anonymous.returncode != 0
        assert "Authentication failed" in anonymous.stderr or "could not read Username" in anonymous.stderr
        listed = git("ls-remote", url, "refs/heads/main", cwd=tmp_path, env=auth_env("git", "ghp_token"))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split()[0] == head
        cloned = git("clone", "-q", url, str(tmp_path / "clone"), cwd=tmp_path, env=auth_env("git", "x"))
        assert cloned.returncode == 0, cloned.stderr
        assert (tmp_path / "clone" / "a.yaml").read_text() == "a: 1\n"
        empty_password = git("ls-remote", url, cwd=tmp_path, env=auth_env("git", ""))
        assert empty_password.returncode != 0
