"""Validate objects against the real CRD schemas in ../shared/crds (see its README).

A real API server rejects objects that do not match the CRD's openAPIV3Schema;
the emulator does not, so tests validate what the app creates here.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SHARED_CRDS = Path(__file__).resolve().parents[3] / "shared" / "crds"


@functools.cache
def _schemas() -> dict[tuple[str, str], dict[str, Any]]:
    if not SHARED_CRDS.is_dir():
        raise FileNotFoundError(f"{SHARED_CRDS} is missing: the tests need shared/ beside the checkout")
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SHARED_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def has_schema(obj: dict[str, Any]) -> bool:
    return (obj.get("apiVersion", ""), obj.get("kind", "")) in _schemas()


def validate(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError when a real API server would reject ``obj``."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = _schemas().get(key)
    if schema is None:
        raise LookupError(f"no served CRD version for {key[0]} {key[1]} in {SHARED_CRDS}")
    jsonschema.Draft7Validator(schema).validate(obj)


def served_kinds() -> set[tuple[str, str]]:
    return set(_schemas())
