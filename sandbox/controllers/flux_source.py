"""source-controller for ``GitRepository`` (source.toolkit.fluxcd.io/v1), sandbox-sized.

Each reconcile checks the credentials Secret (when ``spec.secretRef`` is set), resolves the
branch head on the remote and, when it moved, records a new ``status.artifact``. No tarball is
stored: a local remote (a bare repository on this machine) is read in place by the
Kustomization controller; a network remote (e.g. the sandbox's smart-HTTP server) is fetched,
with the Secret's credentials, into a bare mirror under the controllers' workdir.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

from phases.git import GitError, GitRepo
from phases.kube import GIT_REPOSITORIES, SECRETS, KubeError
from sandbox.controllers.git_remote import (
    GitCredentials,
    GitRemoteError,
    fetch_into_mirror,
    mirror_path,
    remote_branch_head,
)
from sandbox.controllers.kube import JSON, split_key
from sandbox.controllers.runtime import Controller
from sandbox.controllers.status import (
    READY,
    REQUESTED_AT_ANNOTATION,
    annotation,
    generation,
    now_rfc3339,
    remove_condition,
    set_condition,
    status_patch,
)

ARTIFACT_IN_STORAGE: Final = "ArtifactInStorage"
FETCH_FAILED: Final = "FetchFailed"
DEFAULT_BRANCH: Final = "master"  # Flux's default when spec.ref is omitted
STORAGE_HOST: Final = "source-controller.flux-system.svc.cluster.local."


class SourceFailure(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def local_repository(url: str) -> Path | None:
    """The repository on this machine a ``file://`` URL or absolute path names; None for network URLs.

    The real CRD admits only http(s) and ssh URLs: the sandbox's schema-valid remote is its
    smart-HTTP server, fetched like any network remote; local forms are a sandbox convenience.
    """
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


def parse_revision(revision: str) -> str:
    """The commit SHA of a Flux revision such as ``main@sha1:<sha>`` (or ``sha1:<sha>``)."""
    return revision.rpartition(":")[2]


class GitRepositoryController(Controller):
    name = "source"
    primary = GIT_REPOSITORIES

    def reconcile(self, key: str, obj: JSON) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return  # a suspended source is left exactly as it is, status included
        namespace, name = split_key(key)
        assert namespace is not None
        status: JSON = obj.get("status") or {}
        new_status = dict(status)
        conditions: list[JSON] = list(status.get("conditions") or [])
        observed = generation(obj)
        try:
            branch, sha = self._resolve_head(namespace, name, spec)
        except SourceFailure as failure:
            conditions = set_condition(
                conditions,
                FETCH_FAILED,
                "True",
                failure.reason,
                failure.message,
                observed_generation=observed,
            )
            conditions = set_condition(
                conditions, READY, "False", failure.reason, failure.message, observed_generation=observed
            )
            if status.get("conditions") != conditions:
                self.log.warning("GitRepository %s: %s", key, failure.message)
        else:
            revision = f"{branch}@sha1:{sha}"
            artifact = status.get("artifact") or {}
            if artifact.get("revision") != revision:
                artifact = self._artifact(namespace, name, revision, sha)
                self.log.info("GitRepository %s: stored artifact for revision '%s'", key, revision)
            new_status["artifact"] = artifact
            message = f"stored artifact for revision '{revision}'"
            conditions = remove_condition(conditions, FETCH_FAILED)
            conditions = set_condition(
                conditions, ARTIFACT_IN_STORAGE, "True", "Succeeded", message, observed_generation=observed
            )
            conditions = set_condition(
                conditions, READY, "True", "Succeeded", message, observed_generation=observed
            )
            # Like Flux, the generation counts as observed only once it was handled successfully.
            new_status["observedGeneration"] = observed
        new_status["conditions"] = conditions
        requested_at = annotation(obj, REQUESTED_AT_ANNOTATION)
        if requested_at is not None:
            new_status["lastHandledReconcileAt"] = requested_at
        patch = status_patch(status, new_status)
        if patch:
            self.patch_status(key, patch)

    def _credentials(self, namespace: str, spec: JSON, *, read_values: bool) -> GitCredentials | None:
        """Check ``spec.secretRef`` like Flux; decode the values only when a network fetch needs them."""
        secret_name = (spec.get("secretRef") or {}).get("name")
        if not secret_name:
            return None
        try:
            secret = self.client.get(SECRETS, secret_name, namespace)
        except KubeError as error:
            raise SourceFailure(
                "AuthenticationFailed", f"failed to get secret '{namespace}/{secret_name}': {error.detail}"
            ) from error
        if secret is None:
            raise SourceFailure(
                "AuthenticationFailed",
                f"failed to get secret '{namespace}/{secret_name}': secrets \"{secret_name}\" not found",
            )
        data = secret.get("data") or {}
        if not (("username" in data and "password" in data) or "bearerToken" in data):
            raise SourceFailure(
                "AuthenticationFailed",
                f"invalid '{namespace}/{secret_name}' secret data: "
                "required fields 'username' and 'password', or 'bearerToken'",
            )
        if not read_values:
            return GitCredentials()

        def decoded(key: str) -> str:
            return base64.b64decode(data.get(key) or "").decode("utf-8", "replace")

        return GitCredentials(decoded("username"), decoded("password"), decoded("bearerToken"))

    def _resolve_head(self, namespace: str, name: str, spec: JSON) -> tuple[str, str]:
        """(branch, sha) of the remote's head; a network remote is also fetched into our mirror."""
        url = str(spec.get("url") or "")
        ref = spec.get("ref") or {}
        unsupported = sorted(set(ref) - {"branch"})
        if unsupported:
            raise SourceFailure(
                "GitOperationFailed",
                f"spec.ref.{unsupported[0]} is not supported by the sandbox (use branch)",
            )
        branch = str(ref.get("branch") or DEFAULT_BRANCH)
        local = local_repository(url)
        failed = f"failed to checkout and determine revision: unable to clone '{url}'"
        try:
            if local is not None:
                self._credentials(namespace, spec, read_values=False)
                if not local.exists():
                    raise SourceFailure("GitOperationFailed", f"{failed}: repository not found")
                sha = GitRepo(local).remote_head(str(local), branch)
            else:
                credentials = self._credentials(namespace, spec, read_values=True)
                sha = remote_branch_head(url, branch, credentials)
                if sha:
                    fetch_into_mirror(
                        url, branch, sha, mirror_path(self.workdir, namespace, name), credentials
                    )
                del credentials
        except (GitError, GitRemoteError) as error:
            raise SourceFailure("GitOperationFailed", f"{failed}: {error}") from error
        if not sha:
            raise SourceFailure(
                "GitOperationFailed", f'{failed}: couldn\'t find remote ref "refs/heads/{branch}"'
            )
        return branch, sha

    @staticmethod
    def _artifact(namespace: str, name: str, revision: str, sha: str) -> JSON:
        path = f"gitrepository/{namespace}/{name}/{sha}.tar.gz"
        return {
            "digest": "sha256:" + hashlib.sha256(revision.encode()).hexdigest(),
            "lastUpdateTime": now_rfc3339(),
            "path": path,
            "revision": revision,
            "url": f"http://{STORAGE_HOST}/{path}",
        }


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
