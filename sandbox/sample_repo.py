"""A sample ``deployments`` repository for the sandbox: a bare remote plus a working clone.

The history is deterministic (fixed authors and dates, so the same commit ids on every
machine with the same git) and tells a small, realistic story: three apps appear over
time, image tags are bumped, a ConfigMap changes, and a feature branch is merged with
``--no-ff`` so the rollback picker has a merge commit to revert. Manifests follow the
layout the engine's Flux Kustomizations point at (``clusters/production/flux-system``
and ``clusters/production/apps``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ESO_API_VERSION = "external-secrets.io/v1"
CLUSTER_SECRET_STORE = "vault-backend"
FLUX_DIR = Path("clusters/production/flux-system")
APPS_DIR = Path("clusters/production/apps")
SANDBOX_IDENTITY = ("Sandbox Operator", "operator@sandbox.invalid")


@dataclass(frozen=True)
class Author:
    name: str
    email: str


ALICE = Author("Alice Chen", "alice.chen@example.com")
BOB = Author("Bob Martinez", "bob.martinez@example.com")
CAROL = Author("Carol Nguyen", "carol.nguyen@example.com")
DAVE = Author("Dave Okafor", "dave.okafor@example.com")
ERIN = Author("Erin Schmidt", "erin.schmidt@example.com")


# ---------------------------------------------------------------------------------------------
# Manifests


def _yaml(*documents: Mapping[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(dict(doc), sort_keys=False) for doc in documents)


def namespaces_yaml(names: list[str]) -> str:
    return _yaml(*({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in names))


def kustomization_yaml(resources: list[str], namespace: str | None = None) -> str:
    document: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        document["namespace"] = namespace
    document["resources"] = resources
    return _yaml(document)


def deployment_yaml(
    app: str,
    image: str,
    *,
    port: int,
    replicas: int = 1,
    args: list[str] | None = None,
    secret_env: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """An apps/v1 Deployment; ``secret_env`` maps env var -> (Secret name, key)."""
    container: dict[str, Any] = {"name": app, "image": image}
    if args:
        container["args"] = args
    container["ports"] = [{"name": "http", "containerPort": port}]
    container["envFrom"] = [{"configMapRef": {"name": f"{app}-config"}}]
    if secret_env:
        container["env"] = [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for env, (secret, key) in secret_env.items()
        ]
    container["resources"] = {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    labels = {"app": app}
    return _yaml(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": app, "namespace": app, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        }
    )


def service_yaml(app: str, *, port: int, target_port: int) -> str:
    return _yaml(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": app, "namespace": app, "labels": {"app": app}},
            "spec": {
                "type": "ClusterIP",
                "selector": {"app": app},
                "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
            },
        }
    )


def configmap_yaml(app: str, data: Mapping[str, str]) -> str:
    return _yaml(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{app}-config", "namespace": app, "labels": {"app": app}},
            "data": dict(data),
        }
    )


def externalsecret_yaml(app: str, name: str, data: list[tuple[str, str, str]]) -> str:
    """``data`` rows are (secretKey, Vault KV key, property)."""
    return _yaml(
        {
            "apiVersion": ESO_API_VERSION,
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": app, "labels": {"app": app}},
            "spec": {
                "refreshInterval": "1m",
                "secretStoreRef": {"name": CLUSTER_SECRET_STORE, "kind": "ClusterSecretStore"},
                "target": {"name": name, "creationPolicy": "Owner"},
                "data": [
                    {"secretKey": secret_key, "remoteRef": {"key": key, "property": prop}}
                    for secret_key, key, prop in data
                ],
            },
        }
    )


APP_FILES = ["deployment.yaml", "service.yaml", "configmap.yaml", "externalsecret.yaml"]


def myapp_files(version: str, *, log_level: str, with_api_key: bool) -> dict[str, str]:
    secrets: list[tuple[str, str, str]] = [("database-password", "myapp", "db_password")]
    env = {"DATABASE_PASSWORD": ("myapp-secrets", "database-password")}
    if with_api_key:
        secrets.append(("api-key", "myapp", "api_key"))
        env["API_KEY"] = ("myapp-secrets", "api-key")
    return {
        "kustomization.yaml": kustomization_yaml(APP_FILES, namespace="myapp"),
        "deployment.yaml": deployment_yaml(
            "myapp", f"ghcr.io/example/myapp:{version}", port=8080, replicas=2, secret_env=env
        ),
        "service.yaml": service_yaml("myapp", port=80, target_port=8080),
        "configmap.yaml": configmap_yaml(
            "myapp", {"LOG_LEVEL": log_level, "DATABASE_HOST": "postgres.myapp.svc", "DATABASE_NAME": "myapp"}
        ),
        "externalsecret.yaml": externalsecret_yaml("myapp", "myapp-secrets", secrets),
    }


def cloudflared_files(version: str, *, replicas: int) -> dict[str, str]:
    return {
        "kustomization.yaml": kustomization_yaml(APP_FILES, namespace="cloudflared"),
        "deployment.yaml": deployment_yaml(
            "cloudflared",
            f"cloudflare/cloudflared:{version}",
            port=2000,
            replicas=replicas,
            args=["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"],
            secret_env={"TUNNEL_TOKEN": ("cloudflared-credentials", "token")},
        ),
        "service.yaml": service_yaml("cloudflared", port=2000, target_port=2000),
        "configmap.yaml": configmap_yaml("cloudflared", {"TUNNEL_LOGLEVEL": "info", "NO_AUTOUPDATE": "true"}),
        "externalsecret.yaml": externalsecret_yaml(
            "cloudflared", "cloudflared-credentials", [("token", "cloudflare", "api_token")]
        ),
    }


def webapp_files(version: str, *, with_secret: bool) -> dict[str, str]:
    files = {
        "kustomization.yaml": kustomization_yaml(
            APP_FILES if with_secret else APP_FILES[:-1], namespace="webapp"
        ),
        "deployment.yaml": deployment_yaml(
            "webapp",
            f"ghcr.io/example/webapp:{version}",
            port=3000,
            secret_env={"API_KEY": ("webapp-secrets", "api-key")} if with_secret else None,
        ),
        "service.yaml": service_yaml("webapp", port=80, target_port=3000),
        "configmap.yaml": configmap_yaml(
            "webapp", {"API_URL": "http://myapp.myapp.svc", "NODE_ENV": "production"}
        ),
    }
    if with_secret:
        files["externalsecret.yaml"] = externalsecret_yaml(
            "webapp", "webapp-secrets", [("api-key", "myapp", "api_key")]
        )
    return files


README = """\
# deployments

Kubernetes manifests reconciled by Flux CD.

- `clusters/production/flux-system/`: cluster-wide objects (namespaces), Flux Kustomization `flux-system`
- `clusters/production/apps/`: one folder per application, Flux Kustomization `production`

Secrets never live here: each app declares an `ExternalSecret` that reads Vault
through the `vault-backend` ClusterSecretStore.
"""


# ---------------------------------------------------------------------------------------------
# Building the history


class _Builder:
    """Writes files and commits them in the working clone with fixed identities and dates."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._tick = 0

    def git(self, *args: str, author: Author | None = None, date: str | None = None) -> str:
        env = dict(os.environ)
        # Isolate from the user's and the machine's git config (signing, hooks, templates).
        env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"})
        if author is not None and date is not None:
            env.update(
                {
                    "GIT_AUTHOR_NAME": author.name,
                    "GIT_AUTHOR_EMAIL": author.email,
                    "GIT_AUTHOR_DATE": date,
                    "GIT_COMMITTER_NAME": author.name,
                    "GIT_COMMITTER_EMAIL": author.email,
                    "GIT_COMMITTER_DATE": date,
                }
            )
        result = subprocess.run(
            ["git", *args], cwd=self.work, env=env, check=True, capture_output=True, text=True
        )
        return result.stdout

    def next_date(self) -> str:
        # One commit every ~26 hours from a fixed start, all in UTC.
        base_day, hours = divmod(self._tick * 26, 24)
        self._tick += 1
        return f"2025-01-{6 + base_day:02d}T{9 + hours % 10:02d}:{(self._tick * 7) % 60:02d}:00+00:00"

    def write(self, relative: Path, files: Mapping[str, str]) -> None:
        folder = self.work / relative
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")

    def commit(self, message: str, author: Author, change: Callable[[], None]) -> None:
        change()
        self.git("add", "--all")
        self.git("commit", "--quiet", "--no-verify", "-m", message, author=author, date=self.next_date())


def _write_history(builder: _Builder) -> None:
    flux_dir, apps_dir = FLUX_DIR, APPS_DIR

    def layout() -> None:
        (builder.work / "README.md").write_text(README, encoding="utf-8")
        builder.write(
            flux_dir,
            {
                "namespaces.yaml": namespaces_yaml(["myapp"]),
                "kustomization.yaml": kustomization_yaml(["namespaces.yaml"]),
            },
        )
        builder.write(apps_dir, {"kustomization.yaml": kustomization_yaml([])})

    def add_myapp() -> None:
        files = myapp_files("v1.0.0", log_level="info", with_api_key=False)
        files.pop("externalsecret.yaml")
        files["kustomization.yaml"] = kustomization_yaml(APP_FILES[:-1], namespace="myapp")
        builder.write(apps_dir / "myapp", files)
        builder.write(apps_dir, {"kustomization.yaml": kustomization_yaml(["myapp"])})

    def myapp_db_secret() -> None:
        builder.write(apps_dir / "myapp", myapp_files("v1.0.0", log_level="info", with_api_key=False))

    def add_cloudflared() -> None:
        builder.write(flux_dir, {"namespaces.yaml": namespaces_yaml(["myapp", "cloudflared"])})
        builder.write(apps_dir / "cloudflared", cloudflared_files("2024.12.2", replicas=1))
        builder.write(apps_dir, {"kustomization.yaml": kustomization_yaml(["myapp", "cloudflared"])})

    builder.commit("chore: initial repository layout", ALICE, layout)
    builder.commit("deploy: add myapp v1.0.0", BOB, add_myapp)
    builder.commit("feat(myapp): read the database password from Vault", CAROL, myapp_db_secret)
    builder.commit("deploy: add cloudflared tunnel", DAVE, add_cloudflared)
    builder.commit(
        "deploy: update myapp to v1.1.0",
        BOB,
        lambda: builder.write(
            apps_dir / "myapp", myapp_files("v1.1.0", log_level="info", with_api_key=False)
        ),
    )
    builder.commit(
        "config: raise myapp log level to debug",
        ERIN,
        lambda: builder.write(
            apps_dir / "myapp", myapp_files("v1.1.0", log_level="debug", with_api_key=False)
        ),
    )
    builder.commit(
        "feat(myapp): add the API key from Vault",
        CAROL,
        lambda: builder.write(
            apps_dir / "myapp", myapp_files("v1.1.0", log_level="debug", with_api_key=True)
        ),
    )

    # A feature branch for the new webapp, merged with --no-ff after main moved on.
    builder.git("switch", "--quiet", "-c", "feature/webapp")

    def add_webapp() -> None:
        builder.write(flux_dir, {"namespaces.yaml": namespaces_yaml(["myapp", "cloudflared", "webapp"])})
        builder.write(apps_dir / "webapp", webapp_files("v0.9.0", with_secret=False))
        builder.write(
            apps_dir, {"kustomization.yaml": kustomization_yaml(["myapp", "cloudflared", "webapp"])}
        )

    builder.commit("deploy: add webapp frontend v0.9.0", ALICE, add_webapp)
    builder.commit(
        "feat(webapp): read the API key from Vault",
        ALICE,
        lambda: builder.write(apps_dir / "webapp", webapp_files("v1.0.0", with_secret=True)),
    )
    builder.git("switch", "--quiet", "main")
    builder.commit(
        "deploy: bump cloudflared to 2025.1.1",
        DAVE,
        lambda: builder.write(apps_dir / "cloudflared", cloudflared_files("2025.1.1", replicas=1)),
    )
    builder.git(
        "merge",
        "--quiet",
        "--no-ff",
        "--no-verify",
        "-m",
        "Merge branch 'feature/webapp'",
        "feature/webapp",
        author=ERIN,
        date=builder.next_date(),
    )
    builder.git("branch", "--quiet", "-d", "feature/webapp")
    builder.commit(
        "deploy: update myapp to v1.2.3",
        BOB,
        lambda: builder.write(
            apps_dir / "myapp", myapp_files("v1.2.3", log_level="debug", with_api_key=True)
        ),
    )

    def calm_down() -> None:
        builder.write(apps_dir / "myapp", myapp_files("v1.2.3", log_level="info", with_api_key=True))
        builder.write(apps_dir / "cloudflared", cloudflared_files("2025.1.1", replicas=2))

    builder.commit("config: myapp log level back to info, cloudflared to 2 replicas", ERIN, calm_down)


def create_sample_repo(remote_path: Path, clone_dir: Path) -> None:
    """Create the bare remote (branch ``main``) and a working clone; a no-op when both exist.

    When only the remote exists (the clone was deleted), a fresh clone is made.
    """
    remote_exists = (remote_path / "HEAD").is_file()
    if remote_exists and (clone_dir / ".git").exists():
        return
    if not remote_exists:
        if remote_path.exists() and any(remote_path.iterdir()):
            raise FileExistsError(f"{remote_path} exists and is not a bare git repository")
        if clone_dir.exists() and any(clone_dir.iterdir()):
            raise FileExistsError(f"{clone_dir} exists but its remote {remote_path} does not")
        remote_path.mkdir(parents=True, exist_ok=True)
        _Builder(remote_path).git("init", "--quiet", "--bare", "--initial-branch=main", ".")
    clone_dir.parent.mkdir(parents=True, exist_ok=True)
    _Builder(clone_dir.parent).git("clone", "--quiet", remote_path.resolve().as_uri(), str(clone_dir))
    builder = _Builder(clone_dir)
    # An identity for commits made in this clone (rollback reverts), like a user's own setup.
    builder.git("config", "user.name", SANDBOX_IDENTITY[0])
    builder.git("config", "user.email", SANDBOX_IDENTITY[1])
    if not remote_exists:
        builder.git("switch", "--quiet", "--orphan", "main")
        _write_history(builder)
        builder.git("push", "--quiet", "-u", "origin", "main")
