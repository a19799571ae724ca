"""Every object gitops-tui builds validates against the real CRD schemas."""

from __future__ import annotations

import jsonschema
import pytest

from phases import manifests
from phases.config import Config, config_from_document
from tests.support import crds


def built_objects(config: Config) -> list[dict[str, object]]:
    return [
        manifests.git_repository(config, config.flux.bootstrap_secret),
        manifests.kustomization(config, config.flux.infra_kustomization, config.flux.infra_path),
        manifests.kustomization(
            config, config.flux.apps_kustomization, config.flux.apps_path, depends_on=("flux-system",)
        ),
        manifests.cluster_secret_store(config, "http://vault.vault.svc:8200"),
        manifests.git_auth_external_secret(config),
    ]


def test_the_shared_crds_are_found() -> None:
    assert ("external-secrets.io/v1", "ExternalSecret") in crds.served_kinds()
    assert ("external-secrets.io/v1beta1", "ExternalSecret") not in crds.served_kinds()  # no longer served
    assert ("kustomize.toolkit.fluxcd.io/v1", "Kustomization") in crds.served_kinds()


@pytest.mark.parametrize("index", range(5))
def test_built_objects_validate(index: int) -> None:
    config = config_from_document({"deployments": {"url": "https://github.com/example/deployments"}})
    obj = built_objects(config)[index]
    crds.validate(obj)


def test_the_validator_rejects_what_a_server_would() -> None:
    bad = manifests.kustomization(Config(), "x", "./x")
    bad_url = manifests.git_repository(Config(), "s")  # deployments.url unset: "" is no URL
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        crds.validate(bad_url)
    bad["spec"]["prune"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(bad)
    missing = manifests.git_auth_external_secret(Config())
    del missing["spec"]["data"][0]["remoteRef"]["key"]
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(missing)


def test_requested_at_is_rfc3339_nano() -> None:
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", manifests.now_rfc3339_nano())
