"""TLS to Vault: verified by default, VAULT_CACERT and vault.ca_cert honoured, and turning verification
off needs an explicit opt-in that is then shown everywhere (log, headless output, header badge).

Against a real OpenBao dev server serving HTTPS with its own CA (``-dev-tls``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from phases.config import INSECURE_VAULT_FLAG, Config, config_from_document
from phases.platform import Platform
from phases.vault import VaultUnreachable
from sandbox.openbao import OpenBaoServer
from tests.support.processes import run_headless_without_a_cluster
from tests.support.screen import screen_text
from tui.app import GitOpsApp
from tui.cli import main
from widgets.status_header import INSECURE_BADGE, StatusHeader


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer.dev(tmp_path_factory.mktemp("openbao-tls"), tls=True) as server:
        yield server


@pytest.fixture(autouse=True)
def no_ambient_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_CACERT", raising=False)


def vault_config(tmp_path: Path, address: str, **vault: object) -> Config:
    return config_from_document(
        {
            "vault": {"address": address, **vault},
            "cluster": {"kubeconfig": str(tmp_path / "none")},
            "engine": {"state_dir": str(tmp_path / "state")},
        },
        "test.toml",
    )


def test_an_unknown_ca_fails_with_a_message_naming_the_ca_settings(
    tls_vault: OpenBaoServer, tmp_path: Path
) -> None:
    platform = Platform(vault_config(tmp_path, tls_vault.url))
    status = platform.vault().status()
    assert status.label == "unreachable"
    assert status.error is not None and "TLS certificate verification failed" in status.error
    assert "vault.ca_cert or $VAULT_CACERT" in status.error
    with pytest.raises(VaultUnreachable, match=r"set vault\.ca_cert or \$VAULT_CACERT"):
        platform.vault().kv2_enabled("secret")


def test_vault_cacert_and_vault_ca_cert_are_honoured(
    tls_vault: OpenBaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = str(tls_vault.ca_cert_path)
    assert Platform(vault_config(tmp_path, tls_vault.url, ca_cert=ca)).vault().status().label == "unsealed"
    monkeypatch.setenv("VAULT_CACERT", ca)
    assert Platform(vault_config(tmp_path, tls_vault.url)).vault().status().label == "unsealed"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_opt_in_skips_verification_and_warns(
    tls_vault: OpenBaoServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = vault_config(tmp_path, tls_vault.url, tls_verify=False, insecure_skip_tls_verify=True)
    with caplog.at_level(logging.WARNING, logger="phases.platform"):
        assert Platform(config).vault().status().label == "unsealed"
    assert any("TLS verification of Vault is OFF" in record.getMessage() for record in caplog.records)


def test_tls_verify_false_without_the_opt_in_exits_2_saying_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f"[engine]\nstate_dir = '{tmp_path / 'state'}'\n[cluster]\nkubeconfig = '{tmp_path / 'none'}'\n"
        "[vault]\ntls_verify = false\n"
    )
    assert main(["bootstrap", "--plan", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: vault.tls_verify = false" in err and INSECURE_VAULT_FLAG in err
    assert "Traceback" not in err
    assert main(["bootstrap", "--plan", "--config", str(config), INSECURE_VAULT_FLAG]) == 0
    capsys.readouterr()


def test_the_headless_run_prints_the_warning_first(tmp_path: Path) -> None:
    result = run_headless_without_a_cluster(tmp_path, INSECURE_VAULT_FLAG)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("⚠ TLS verification of Vault is OFF (vault.insecure_skip_tls_verify)")


@pytest.mark.parametrize("insecure", [False, True])
async def test_the_header_shows_the_badge_only_with_the_opt_in(tmp_path: Path, insecure: bool) -> None:
    config = vault_config(tmp_path, "https://127.0.0.1:1", insecure_skip_tls_verify=insecure)
    app = GitOpsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert app.query_one(StatusHeader).vault_insecure is insecure
        assert (INSECURE_BADGE in screen_text(app)) is insecure
