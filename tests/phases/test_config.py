"""Configuration: defaults from the seed, where the file is found, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phases.config import (
    CONFIG_ENV,
    INSECURE_VAULT_FLAG,
    Config,
    ConfigError,
    config_from_document,
    find_config_file,
    load_config,
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_defaults_follow_the_seed() -> None:
    config = load_config(None)
    assert config.source == "<defaults>"
    assert (config.flux.namespace, config.vault.namespace, config.external_secrets.namespace) == (
        "flux-system",
        "vault",
        "external-secrets-system",
    )
    assert config.external_secrets.cluster_secret_store == "vault-backend"
    assert config.vault.kv_mount == "secret" and config.vault.init_secret == "vault-init-keys"
    assert (config.flux.git_repository, config.flux.apps_kustomization) == ("flux-system", "production")
    envs = [s.env for s in config.secrets.declared]
    assert envs == ["GITHUB_TOKEN", "CLOUDFLARE_API_TOKEN", "MYAPP_DB_PASSWORD", "MYAPP_API_KEY"]
    assert config.token_secret() is not None and config.token_secret().env == "GITHUB_TOKEN"  # type: ignore[union-attr]
    assert config.vault.resolved_cluster_address() == "http://vault.vault.svc:8200"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_file_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = write(tmp_path / "xdg" / "gitops-tui" / "config.toml", "[flux]\nnamespace = 'from-xdg'\n")
    assert find_config_file(None) == xdg
    cwd = write(tmp_path / "gitops-tui.toml", "[flux]\nnamespace = 'from-cwd'\n")
    assert find_config_file(None) == cwd
    env = write(tmp_path / "env.toml", "[flux]\nnamespace = 'from-env'\n")
    monkeypatch.setenv(CONFIG_ENV, str(env))
    assert load_config(None).flux.namespace == "from-env"
    explicit = write(tmp_path / "explicit.toml", "[flux]\nnamespace = 'explicit'\n")
    assert load_config(str(explicit)).flux.namespace == "explicit"


def test_missing_explicit_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config("nope.toml")


def test_overrides_merge_under_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "[vault]\nkv_mount = 'kv'\n")
    config = load_config(str(path), overrides={"vault": {"kv_mount": "ignored", "namespace": "bao"}})
    assert (config.vault.kv_mount, config.vault.namespace) == ("kv", "bao")


def test_declared_secrets_replace_the_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        """
[flux]
token_secret = "gh"

[[secrets.declared]]
name = "gh"
env = "GH_TOKEN"
vault_path = "infra/github"
vault_key = "token"
description = "GitHub"
pattern = "^ghp_.+$"
""",
    )
    config = load_config(str(path))
    assert [(s.name, s.env, s.vault_path, s.vault_key) for s in config.secrets.declared] == [
        ("gh", "GH_TOKEN", "infra/github", "token")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[flux\nnamespace = 1", r"bad\.toml: invalid TOML: .*line 1, column 6"),
        ("[fluxx]\n", r"unknown section \[fluxx\] \(did you mean 'flux'\?\)"),
        ("[vault]\nkv_mnt = 'x'\n", r"unknown key vault\.kv_mnt \(did you mean 'kv_mount'\?\)"),
        ("[vault]\nkey_shares = 'five'\n", r"vault\.key_shares must be a whole number, not a string"),
        ("[vault]\ntls_verify = 'yes'\n", r"vault\.tls_verify must be true or false"),
        ("[engine]\nwait_timeout = -1\n", r"engine\.wait_timeout must not be negative"),
        (
            "[k3s]\ninstall_command = 'curl | sh'\n",
            r"k3s\.install_command must be a non-empty list of strings",
        ),
        ("[secrets]\nwriter = 'ansible'\n", r"secrets\.writer must be one of 'vault', 'terraform'"),
        ("[secrets]\nwriter = 'terraform'\n", r"secrets\.terraform_dir is required"),
        ("[vault]\nkey_shares = 1\nkey_threshold = 3\n", r"key_threshold must not exceed vault\.key_shares"),
        (
            "[flux]\ntoken_secret = 'nope'\n",
            r"flux\.token_secret names 'nope', which is not a declared secret",
        ),
        ("vault = 3\n", r"\[vault\] must be a table, not an integer"),
        (
            "[[secrets.declared]]\nname = 'x'\nenv = 'X'\nvault_path = 'x'\n",
            r"secrets\.declared\[0\]\.vault_key is required",
        ),
        (
            "[[secrets.declared]]\nname='x'\nenv='1BAD'\nvault_path='x'\nvault_key='k'\n",
            r"secrets\.declared\[0\]\.env '1BAD' is not a valid environment variable name",
        ),
        (
            "[[secrets.declared]]\nname='x'\nenv='X'\nvault_path='x'\nvault_key='k'\npattern='(['\n",
            r"secrets\.declared\[0\]\.pattern: invalid regular expression",
        ),
        (
            "[[secrets.declared]]\nname='x'\nenv='X'\nvault_path='/abs'\nvault_key='k'\n",
            r"vault_path '/abs' must look like 'app' or 'team/app'",
        ),
        ("[keys]\nquit = 3\n", r"keys\.quit must be a key name"),
    ],
)
def test_bad_config_gives_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(str(path))
    assert str(path) in str(caught.value)


def test_duplicate_secret_names_and_targets(tmp_path: Path) -> None:
    entry = "[[secrets.declared]]\nname='{n}'\nenv='E{n}'\nvault_path='p'\nvault_key='{k}'\n"
    path = write(tmp_path / "dup.toml", entry.format(n="a", k="k1") + entry.format(n="a", k="k2"))
    with pytest.raises(ConfigError, match="'a' is declared twice"):
        load_config(str(path))
    path = write(tmp_path / "dup2.toml", entry.format(n="a", k="k") + entry.format(n="b", k="k"))
    with pytest.raises(ConfigError, match="two secrets write p#k"):
        load_config(str(path))


def test_turning_vault_tls_verification_off_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    assert load_config(None).vault.verify_tls and load_config(None).vault.tls_warning() is None
    path = write(tmp_path / "insecure.toml", "[vault]\ntls_verify = false\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: vault.tls_verify = false")
    assert "vault.insecure_skip_tls_verify = true" in message and INSECURE_VAULT_FLAG in message
    assert "vault.ca_cert or $VAULT_CACERT" in message

    # The flag (as the CLI passes it: it wins over a file saying otherwise) or the config key says it.
    refusing = write(
        tmp_path / "refusing.toml", "[vault]\ntls_verify = false\ninsecure_skip_tls_verify = false\n"
    )
    for config in (
        load_config(str(path), flags={"vault": {"insecure_skip_tls_verify": True}}),
        load_config(str(refusing), flags={"vault": {"insecure_skip_tls_verify": True}}),
        load_config(str(write(tmp_path / "opt-in.toml", "[vault]\ninsecure_skip_tls_verify = true\n"))),
    ):
        assert not config.vault.verify_tls
        warning = config.vault.tls_warning()
        assert warning is not None and "TLS verification of Vault is OFF" in warning


toml_scalars = st.one_of(
    st.integers(-5, 5), st.booleans(), st.text(max_size=8), st.floats(allow_nan=False, width=32), st.none()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
known_keys = st.sampled_from(
    [
        "cluster",
        "k3s",
        "flux",
        "vault",
        "external_secrets",
        "deployments",
        "secrets",
        "engine",
        "keys",
        "other",
    ]
)
inner_keys = st.sampled_from(
    [
        "namespace",
        "kv_mount",
        "key_shares",
        "declared",
        "writer",
        "install_command",
        "tls_verify",
        "insecure_skip_tls_verify",
        "bogus",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        known_keys, st.one_of(toml_values, st.dictionaries(inner_keys, toml_values, max_size=4)), max_size=4
    )
)
def test_random_documents_load_or_fail_cleanly(document: dict[str, Any]) -> None:
    try:
        config = config_from_document(document, "random.toml")
    except ConfigError as error:
        assert str(error).startswith("random.toml: ")
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_files_load_or_fail_cleanly(text: str) -> None:
    path = Path("random.toml")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates make invalid UTF-8
    try:
        load_config(str(path))
    except ConfigError as error:
        assert str(error).startswith("random.toml: ")
