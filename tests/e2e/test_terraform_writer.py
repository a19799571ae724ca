"""Phase 2 with `secrets.writer = "terraform"`: a real `terraform apply` writes the secrets into Vault.

Terraform cannot download providers here, so the test module uses only built-in pieces:
`terraform_data` resources whose `local-exec` provisioners pipe each value into `bao kv`. The
values reach Terraform through a var-file that is a pipe, never on a command line or in its
environment, and the state keeps only their hashes.
"""

from __future__ import annotations

import base64
import shutil
import sys
import textwrap
from pathlib import Path

import hvac

from phases.bootstrap import build_engine
from phases.config import config_from_document
from phases.events import RunFinished, StepSucceeded
from phases.platform import Platform
from phases.secrets import SecretStore, SecretValue
from sandbox.openbao import bao_binary
from sandbox.settings import config_overrides, sandbox_path_env
from sandbox.world import SandboxWorld
from tests.support.bootstrap import DEMO_VALUES

SECRETS_MODULE = textwrap.dedent(
    """
    variable "github_token" {
      type      = string
      sensitive = true
    }
    variable "cloudflare_api_token" {
      type      = string
      sensitive = true
    }
    variable "myapp_db_password" {
      type      = string
      sensitive = true
    }
    variable "myapp_api_key" {
      type      = string
      sensitive = true
    }

    resource "terraform_data" "github" {
      input = sha256(var.github_token)
      provisioner "local-exec" {
        command     = "printf %s \\"$VALUE\\" | bao kv put -mount=secret github token=-"
        environment = { VALUE = var.github_token }
      }
    }

    resource "terraform_data" "cloudflare" {
      input = sha256(var.cloudflare_api_token)
      provisioner "local-exec" {
        command     = "printf %s \\"$VALUE\\" | bao kv put -mount=secret cloudflare api_token=-"
        environment = { VALUE = var.cloudflare_api_token }
      }
    }

    resource "terraform_data" "myapp" {
      input = sha256("${var.myapp_db_password}/${var.myapp_api_key}")
      provisioner "local-exec" {
        command     = <<-EOT
          printf %s "$DB" | bao kv put -mount=secret myapp db_password=-
          printf %s "$KEY" | bao kv patch -mount=secret myapp api_key=-
        EOT
        environment = { DB = var.myapp_db_password, KEY = var.myapp_api_key }
      }
    }
    """
)


async def test_terraform_writes_every_declared_secret(sandbox_world: SandboxWorld, tmp_path: Path) -> None:
    module = tmp_path / "terraform"
    module.mkdir()
    (module / "secrets.tf").write_text(SECRETS_MODULE)
    overrides = config_overrides(sandbox_world.info)
    overrides["secrets"] = {"writer": "terraform", "terraform_dir": str(module)}
    config = config_from_document(overrides, "sandbox+terraform")
    env = sandbox_path_env(sandbox_world.info)
    bao_dir = tmp_path / "bin"
    bao_dir.mkdir()
    (bao_dir / "bao").symlink_to(bao_binary())
    env["PATH"] = f"{bao_dir}:{env['PATH']}:{Path(sys.executable).parent}"
    assert shutil.which("terraform"), "terraform ships with this machine image"

    store = SecretStore()
    for name, value in DEMO_VALUES.items():
        store.put(name, SecretValue.from_bytes(name, value), source="test")
    engine = build_engine(config, secrets=store, command_env=env)
    events = [event async for event in engine.run()]
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.status == "succeeded", finished.reason
    assert any(isinstance(e, StepSucceeded) and e.key == "2/write-secrets" for e in events)

    platform = Platform(config)
    with platform.root_token().exposed() as token:
        reader = hvac.Client(url=platform.vault().address, token=bytes(token).decode())
    for secret in config.secrets.declared:
        stored = reader.secrets.kv.v2.read_secret_version(
            path=secret.vault_path, mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        assert stored[secret.vault_key].encode() == DEMO_VALUES[secret.name]
    # Key names were recorded so the next run skips the step without reading any value.
    assert platform.authenticated_vault().kv2_recorded_keys("secret", "myapp") == {"db_password", "api_key"}
    platform.close()

    # Terraform's state holds hashes, not values; no value was on any command line we logged.
    state = (module / "terraform.tfstate").read_bytes()
    argv_log = sandbox_world.info.argv_log.read_bytes()
    for value in DEMO_VALUES.values():
        assert value not in state and base64.b64encode(value) not in state
        assert value not in argv_log
