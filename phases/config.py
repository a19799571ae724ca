"""The gitops-tui configuration: one TOML file, every key optional.

Defaults follow ../shared/seed/gitops-workflow.md. Loading never raises anything
but ``ConfigError``, whose message names the file, the key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

CONFIG_ENV = "GITOPS_TUI_CONFIG"
CONFIG_FILE_NAME = "gitops-tui.toml"
# The command-line spelling of vault.insecure_skip_tls_verify = true (named in messages).
INSECURE_VAULT_FLAG: Final = "--vault-insecure-skip-verify"


class ConfigError(Exception):
    """Invalid configuration: the message is meant for a human, without a traceback."""


def xdg_dir(kind: Literal["config", "state", "data"]) -> Path:
    variable, fallback = {
        "config": ("XDG_CONFIG_HOME", ".config"),
        "state": ("XDG_STATE_HOME", ".local/state"),
        "data": ("XDG_DATA_HOME", ".local/share"),
    }[kind]
    base = os.environ.get(variable) or str(Path.home() / fallback)
    return Path(base) / "gitops-tui"


@dataclass(frozen=True)
class ClusterConfig:
    kubeconfig: str = ""  # "" means $KUBECONFIG, then /etc/rancher/k3s/k3s.yaml, then ~/.kube/config
    context: str = ""
    request_timeout: float = 30.0

    def resolved_kubeconfig(self) -> Path:
        if self.kubeconfig:
            return Path(self.kubeconfig).expanduser()
        from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        if from_env:
            return Path(from_env).expanduser()
        k3s = Path("/etc/rancher/k3s/k3s.yaml")
        if k3s.exists():
            return k3s
        return Path.home() / ".kube" / "config"


@dataclass(frozen=True)
class K3sConfig:
    install_command: tuple[str, ...] = ("sh", "-c", "curl -sfL https://get.k3s.io | sh -")
    node_ready_timeout: float = 300.0


@dataclass(frozen=True)
class FluxConfig:
    namespace: str = "flux-system"
    git_repository: str = "flux-system"
    interval: str = "1m"
    bootstrap_secret: str = "flux-system"
    git_auth_secret: str = "flux-git-auth"
    git_username: str = "git"
    token_secret: str = "github_token"  # the declared secret that authenticates Flux to Git
    infra_kustomization: str = "flux-system"
    infra_path: str = "./clusters/production/flux-system"
    apps_kustomization: str = "production"
    apps_path: str = "./clusters/production/apps"


@dataclass(frozen=True)
class VaultConfig:
    address: str = ""  # "" means: through the Service, else a managed port-forward
    namespace: str = "vault"
    release: str = "vault"
    service: str = "vault"
    chart: str = "openbao/openbao"
    chart_repo_name: str = "openbao"
    chart_repo_url: str = "https://openbao.github.io/openbao-helm"
    init_secret: str = "vault-init-keys"
    key_shares: int = 5
    key_threshold: int = 3
    kv_mount: str = "secret"
    ca_cert: str = ""  # "" means $VAULT_CACERT, else the system's trusted CAs
    tls_verify: bool = True  # false is refused unless insecure_skip_tls_verify says it on purpose
    insecure_skip_tls_verify: bool = False  # the explicit opt-in: Vault's certificate is not checked at all
    auth_mount: str = "kubernetes"
    kubernetes_host: str = "https://kubernetes.default.svc"
    kubernetes_ca_cert: str = ""  # "" means Vault uses its own pod's CA and token
    cluster_address: str = ""  # how pods reach Vault; "" means http://<service>.<namespace>.svc:8200
    policy: str = "external-secrets-read"
    role: str = "external-secrets"

    def resolved_cluster_address(self) -> str:
        return self.cluster_address or f"http://{self.service}.{self.namespace}.svc:8200"

    @property
    def verify_tls(self) -> bool:
        """Whether Vault's TLS certificate is verified: always, unless the opt-in is set."""
        return not self.insecure_skip_tls_verify

    def tls_warning(self) -> str | None:
        """The warning to show wherever the app runs while verification is off, else None."""
        if self.verify_tls:
            return None
        return (
            "TLS verification of Vault is OFF (vault.insecure_skip_tls_verify): anyone on the network "
            "path can impersonate Vault and receive the secrets and the root token sent to it"
        )


@dataclass(frozen=True)
class ExternalSecretsConfig:
    namespace: str = "external-secrets-system"
    release: str = "external-secrets"
    chart: str = "external-secrets/external-secrets"
    chart_repo_name: str = "external-secrets"
    chart_repo_url: str = "https://charts.external-secrets.io"
    service_account: str = "external-secrets"
    cluster_secret_store: str = "vault-backend"
    refresh_interval: str = "1m"


@dataclass(frozen=True)
class DeploymentsConfig:
    url: str = ""
    branch: str = "main"
    clone_dir: str = ""  # "" means <XDG data>/deployments
    allow_force_push: bool = False

    def resolved_clone_dir(self) -> Path:
        return Path(self.clone_dir).expanduser() if self.clone_dir else xdg_dir("data") / "deployments"


@dataclass(frozen=True)
class DeclaredSecret:
    name: str
    env: str
    vault_path: str
    vault_key: str
    description: str = ""
    pattern: str = ""

    def validate_pattern(self) -> str | None:
        """The reason the pattern is unusable, or None."""
        if not self.pattern:
            return None
        try:
            re.compile(self.pattern)
        except re.error as error:
            return f"invalid regular expression: {error}"
        return None


DEFAULT_SECRETS: tuple[DeclaredSecret, ...] = (
    DeclaredSecret(
        name="github_token",
        env="GITHUB_TOKEN",
        vault_path="github",
        vault_key="token",
        description="GitHub token Flux uses to read the deployments repository",
        pattern=r"^(gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255})$",
    ),
    DeclaredSecret(
        name="cloudflare_api_token",
        env="CLOUDFLARE_API_TOKEN",
        vault_path="cloudflare",
        vault_key="api_token",
        description="Cloudflare API token for cloudflared",
        pattern=r"^[A-Za-z0-9_-]{20,}$",
    ),
    DeclaredSecret(
        name="myapp_db_password",
        env="MYAPP_DB_PASSWORD",
        vault_path="myapp",
        vault_key="db_password",
        description="Database password of myapp",
        pattern=r"^.{8,}$",
    ),
    DeclaredSecret(
        name="myapp_api_key",
        env="MYAPP_API_KEY",
        vault_path="myapp",
        vault_key="api_key",
        description="API key of myapp",
        pattern=r"^.{8,}$",
    ),
)


@dataclass(frozen=True)
class SecretsConfig:
    writer: Literal["vault", "terraform"] = "vault"
    terraform_dir: str = ""
    declared: tuple[DeclaredSecret, ...] = DEFAULT_SECRETS

    def by_name(self, name: str) -> DeclaredSecret | None:
        return next((secret for secret in self.declared if secret.name == name), None)


@dataclass(frozen=True)
class EngineConfig:
    state_dir: str = ""  # "" means <XDG state>
    command_timeout: float = 900.0
    wait_timeout: float = 300.0
    poll_interval: float = 0.5

    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir).expanduser() if self.state_dir else xdg_dir("state")


@dataclass(frozen=True)
class Config:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    k3s: K3sConfig = field(default_factory=K3sConfig)
    flux: FluxConfig = field(default_factory=FluxConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    external_secrets: ExternalSecretsConfig = field(default_factory=ExternalSecretsConfig)
    deployments: DeploymentsConfig = field(default_factory=DeploymentsConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    keys: Mapping[str, str] = field(default_factory=dict)  # binding id -> key(s), for the UI
    source: str = "<defaults>"

    def token_secret(self) -> DeclaredSecret | None:
        return self.secrets.by_name(self.flux.token_secret)


# ---------------------------------------------------------------------------------------------
# Loading


def find_config_file(explicit: str | None) -> Path | None:
    """--config PATH, else $GITOPS_TUI_CONFIG, else ./gitops-tui.toml, else the XDG config dir."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (from ${CONFIG_ENV})")
        return path
    for candidate in (Path.cwd() / CONFIG_FILE_NAME, xdg_dir("config") / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    explicit: str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """The config file (or defaults). ``overrides`` are defaults a file may change (the sandbox's);
    ``flags`` come from the command line and win over the file."""
    path = find_config_file(explicit)
    document: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read: {error}") from None
        document = parse_toml(text, source)
    if overrides:
        document = merge_documents(dict(overrides), document)
    if flags:
        document = merge_documents(document, flags)
    return config_from_document(document, source)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's message already carries "(at line L, column C)".
        raise ConfigError(f"{source}: invalid TOML: {error}") from None


def merge_documents(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value in ``top`` wins."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_documents(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


_SECTIONS: dict[str, type[Any]] = {
    "cluster": ClusterConfig,
    "k3s": K3sConfig,
    "flux": FluxConfig,
    "vault": VaultConfig,
    "external_secrets": ExternalSecretsConfig,
    "deployments": DeploymentsConfig,
    "engine": EngineConfig,
}


def config_from_document(document: Mapping[str, Any], source: str = "<config>") -> Config:
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source}: the document must be a table")
    known = [*_SECTIONS, "secrets", "keys"]
    for key in document:
        if key not in known:
            raise ConfigError(f"{source}: unknown section [{key}]{_suggest(key, known)}")
    sections: dict[str, Any] = {}
    for name, section_type in _SECTIONS.items():
        sections[name] = _build_dataclass(section_type, document.get(name, {}), name, source)
    sections["secrets"] = _build_secrets(document.get("secrets", {}), source)
    sections["keys"] = _build_keys(document.get("keys", {}), source)
    config = Config(**sections, source=source)
    _check_consistency(config, source)
    return config


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build_dataclass(section_type: type[Any], table: Any, section: str, source: str) -> Any:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [{section}] must be a table, not {_type_name(table)}")
    hints = typing.get_type_hints(section_type)
    fields = {f.name for f in dataclasses.fields(section_type)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {section}.{key}{_suggest(key, sorted(fields))}")
        values[key] = _coerce(value, hints[key], f"{section}.{key}", source)
    return section_type(**values)


def _coerce(value: Any, expected: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(expected)
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, not {_type_name(value)}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {key} must be a number, not {_type_name(value)}")
        if value < 0:
            raise ConfigError(f"{source}: {key} must not be negative")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be a whole number, not {_type_name(value)}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, not {_type_name(value)}")
        return value
    if origin is Literal:
        allowed = typing.get_args(expected)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{source}: {key} must be one of {choices}, not {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{source}: {key} must be a non-empty list of strings")
        return tuple(value)
    raise ConfigError(f"{source}: {key}: unsupported type")  # pragma: no cover - schema bug


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    if isinstance(value, Mapping):
        return "a table"
    return names.get(type(value), type(value).__name__)


def _build_secrets(table: Any, source: str) -> SecretsConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: [secrets] must be a table, not {_type_name(table)}")
    plain = {key: value for key, value in table.items() if key != "declared"}
    base: SecretsConfig = _build_dataclass(_SecretsOptions, plain, "secrets", source).to_config()
    if "declared" not in table:
        return base
    declared_list = table["declared"]
    if not isinstance(declared_list, list):
        raise ConfigError(f"{source}: secrets.declared must be an array of tables ([[secrets.declared]])")
    declared: list[DeclaredSecret] = []
    for index, item in enumerate(declared_list):
        where = f"secrets.declared[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: {where} must be a table")
        _require_keys(item, where, source)
        secret: DeclaredSecret = _build_dataclass(DeclaredSecret, item, where, source)
        _validate_secret(secret, where, source)
        declared.append(secret)
    names = [s.name for s in declared]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{source}: secrets.declared: the name {name!r} is declared twice")
    targets = [(s.vault_path, s.vault_key) for s in declared]
    for target in targets:
        if targets.count(target) > 1:
            raise ConfigError(f"{source}: secrets.declared: two secrets write {target[0]}#{target[1]}")
    return dataclasses.replace(base, declared=tuple(declared))


@dataclass(frozen=True)
class _SecretsOptions:
    writer: Literal["vault", "terraform"] = "vault"
    terraform_dir: str = ""

    def to_config(self) -> SecretsConfig:
        return SecretsConfig(writer=self.writer, terraform_dir=self.terraform_dir)


_REQUIRED_SECRET_KEYS = ("name", "env", "vault_path", "vault_key")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VAULT_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def _require_keys(item: Mapping[str, Any], where: str, source: str) -> None:
    for key in _REQUIRED_SECRET_KEYS:
        if key not in item:
            raise ConfigError(f"{source}: {where}.{key} is required")


def _validate_secret(secret: DeclaredSecret, where: str, source: str) -> None:
    if not secret.name:
        raise ConfigError(f"{source}: {where}.name must not be empty")
    if not _ENV_NAME.match(secret.env):
        raise ConfigError(f"{source}: {where}.env {secret.env!r} is not a valid environment variable name")
    if not _VAULT_PATH.match(secret.vault_path):
        raise ConfigError(
            f"{source}: {where}.vault_path {secret.vault_path!r} must look like 'app' or 'team/app'"
        )
    if not secret.vault_key:
        raise ConfigError(f"{source}: {where}.vault_key must not be empty")
    reason = secret.validate_pattern()
    if reason:
        raise ConfigError(f"{source}: {where}.pattern: {reason}")


def _build_keys(table: Any, source: str) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ConfigError(f'{source}: [keys] must be a table of binding id = "key"')
    keys: dict[str, str] = {}
    for binding_id, key in table.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f'{source}: keys.{binding_id} must be a key name such as "ctrl+r"')
        keys[binding_id] = key
    return keys


def _check_consistency(config: Config, source: str) -> None:
    if not config.vault.tls_verify and not config.vault.insecure_skip_tls_verify:
        # An old or copied config must not switch verification off by accident: ask for the explicit key.
        raise ConfigError(
            f"{source}: vault.tls_verify = false would send secrets to Vault without checking its "
            "certificate; to do that on purpose set vault.insecure_skip_tls_verify = true (or pass "
            f"{INSECURE_VAULT_FLAG}); to trust a private CA instead set vault.ca_cert or $VAULT_CACERT"
        )
    if config.vault.key_threshold < 1 or config.vault.key_shares < 1:
        raise ConfigError(f"{source}: vault.key_shares and vault.key_threshold must be at least 1")
    if config.vault.key_threshold > config.vault.key_shares:
        raise ConfigError(f"{source}: vault.key_threshold must not exceed vault.key_shares")
    if config.secrets.writer == "terraform" and not config.secrets.terraform_dir:
        raise ConfigError(f'{source}: secrets.terraform_dir is required when secrets.writer = "terraform"')
    if config.secrets.by_name(config.flux.token_secret) is None:
        raise ConfigError(
            f"{source}: flux.token_secret names {config.flux.token_secret!r}, which is not a declared secret"
        )
