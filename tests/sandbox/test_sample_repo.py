"""The sample deployments repository: its history, its files, and manifests a real cluster would accept."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sandbox.sample_repo import create_sample_repo

SHARED = Path(__file__).resolve().parents[3] / "shared"
APPS = ("myapp", "cloudflared", "webapp")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sample")
    remote, clone = base / "deployments.git", base / "deployments"
    create_sample_repo(remote, clone)
    return remote, clone


def manifests(clone: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((clone / "clusters").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path} holds a non-object document"
            found.append((path, document))
    return found


def test_history_has_a_dozen_commits_by_several_authors_with_one_merge(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    commits = git(clone, "log", "--format=%H %P").splitlines()
    merges = [line for line in commits if len(line.split()) == 3]
    authors = set(git(clone, "log", "--format=%an").splitlines())
    dates = git(clone, "log", "--format=%aI").splitlines()

    assert 11 <= len(commits) <= 15
    assert len(merges) == 1
    assert len(authors) >= 4
    assert len(set(dates)) == len(dates)
    assert git(clone, "log", "-1", "--format=%s", merges[0].split()[0]) == "Merge branch 'feature/webapp'\n"


def test_the_remote_and_the_clone_agree_and_the_clone_tracks_main(repo: tuple[Path, Path]) -> None:
    remote, clone = repo
    assert git(remote, "rev-parse", "main") == git(clone, "rev-parse", "HEAD")
    assert git(clone, "rev-parse", "--abbrev-ref", "@{upstream}").strip() == "origin/main"
    assert git(clone, "status", "--porcelain") == ""


def test_history_is_deterministic(repo: tuple[Path, Path], tmp_path: Path) -> None:
    remote, _ = repo
    create_sample_repo(tmp_path / "again.git", tmp_path / "again")
    assert git(tmp_path / "again.git", "rev-parse", "main") == git(remote, "rev-parse", "main")


def test_a_second_call_changes_nothing_and_a_lost_clone_is_recloned(tmp_path: Path) -> None:
    remote, clone = tmp_path / "r.git", tmp_path / "c"
    create_sample_repo(remote, clone)
    (clone / "local-change.txt").write_text("kept\n")
    create_sample_repo(remote, clone)
    assert (clone / "local-change.txt").exists()

    subprocess.run(["rm", "-rf", str(clone)], check=True)
    create_sample_repo(remote, clone)
    assert git(clone, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")


def test_head_has_the_layout_flux_points_at(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    production = clone / "clusters" / "production"
    namespaces = list(yaml.safe_load_all((production / "flux-system" / "namespaces.yaml").read_text()))
    assert {n["metadata"]["name"] for n in namespaces} == set(APPS)
    assert (production / "flux-system" / "kustomization.yaml").is_file()
    apps = yaml.safe_load((production / "apps" / "kustomization.yaml").read_text())
    assert apps["resources"] == list(APPS)
    for app in APPS:
        files = {p.name for p in (production / "apps" / app).iterdir()}
        assert files == {
            "kustomization.yaml",
            "deployment.yaml",
            "service.yaml",
            "configmap.yaml",
            "externalsecret.yaml",
        }
        listed = yaml.safe_load((production / "apps" / app / "kustomization.yaml").read_text())["resources"]
        assert sorted(listed) == sorted(files - {"kustomization.yaml"})


def test_external_secrets_match_the_vault_paths_the_app_declares(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    found = {
        doc["metadata"]["name"]: [
            (row["remoteRef"]["key"], row["remoteRef"]["property"], row["secretKey"])
            for row in doc["spec"]["data"]
        ]
        for _, doc in manifests(clone)
        if doc["kind"] == "ExternalSecret"
    }
    assert found == {
        "myapp-secrets": [("myapp", "db_password", "database-password"), ("myapp", "api_key", "api-key")],
        "cloudflared-credentials": [("cloudflare", "api_token", "token")],
        "webapp-secrets": [("myapp", "api_key", "api-key")],
    }


def test_every_external_secret_validates_against_the_real_crd(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    crd = yaml.safe_load((SHARED / "crds" / "external-secrets.io_externalsecrets.yaml").read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    external_secrets = [doc for _, doc in manifests(clone) if doc["kind"] == "ExternalSecret"]
    assert len(external_secrets) == 3
    for doc in external_secrets:
        assert doc["apiVersion"] == "external-secrets.io/v1"
        assert doc["spec"]["secretStoreRef"] == {"name": "vault-backend", "kind": "ClusterSecretStore"}
        assert doc["spec"]["refreshInterval"] == "1m"
        assert doc["spec"]["target"]["creationPolicy"] == "Owner"
        jsonschema.validate(doc, schema)


def test_the_schema_check_would_catch_a_broken_external_secret(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    crd = yaml.safe_load((SHARED / "crds" / "external-secrets.io_externalsecrets.yaml").read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    doc = next(doc for _, doc in manifests(clone) if doc["kind"] == "ExternalSecret")
    doc["spec"]["data"][0]["secretKey"] = "not a valid key!"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_workloads_are_valid_apps_v1_deployments(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    deployments = [doc for _, doc in manifests(clone) if doc["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == set(APPS)
    for deployment in deployments:
        assert deployment["apiVersion"] == "apps/v1"
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    myapp = next(d for d in deployments if d["metadata"]["name"] == "myapp")
    assert myapp["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.2.3")


def test_every_manifest_has_a_kind_a_name_and_a_namespace_where_needed(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    for path, doc in manifests(clone):
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] == "Kustomization":
            continue
        assert doc["metadata"]["name"], path
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == path.parent.name, path


def test_history_changes_what_flux_would_apply(repo: tuple[Path, Path]) -> None:
    _, clone = repo
    added = git(clone, "log", "--format=%H", "--grep=^deploy: add myapp v1.0.0$").strip()
    assert "image: ghcr.io/example/myapp:v1.0.0" in git(
        clone, "show", f"{added}:clusters/production/apps/myapp/deployment.yaml"
    )
    before_merge_apps = git(clone, "show", "HEAD~2^1:clusters/production/apps/kustomization.yaml")
    assert "webapp" not in before_merge_apps
    merge = git(clone, "log", "--merges", "--format=%H").strip()
    changed = git(clone, "diff", "--name-only", f"{merge}^1", merge).split()
    assert "clusters/production/apps/webapp/externalsecret.yaml" in changed
    assert "clusters/production/flux-system/namespaces.yaml" in changed
