"""Phase 2: bootstrap secrets into Vault KV v2, Kubernetes auth for ESO, the ClusterSecretStore.

Values travel only in ``SecretValue`` buffers: to Vault through the API (the request
is assembled in a locked buffer), or to Terraform through a var-file that is a pipe
(``/dev/fd/3``, filled from a locked buffer), never argv and never an environment
variable. The engine wipes every buffer when this phase ends (``wipe_secrets_after``).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phases import manifests, memory, shell
from phases.config import Config, DeclaredSecret
from phases.engine import Phase, Step, StepContext, StepError
from phases.health import store_ready
from phases.kube import CLUSTER_SECRET_STORES
from phases.platform import Platform, wait_until
from phases.secrets import SecretValue


def secrets_by_path(declared: tuple[DeclaredSecret, ...]) -> dict[str, list[DeclaredSecret]]:
    grouped: dict[str, list[DeclaredSecret]] = defaultdict(list)
    for secret in declared:
        grouped[secret.vault_path].append(secret)
    return dict(grouped)


def build_secret_population_phase(config: Config, platform: Platform) -> Phase:
    vault, eso = config.vault, config.external_secrets
    declared = config.secrets.declared
    grouped = secrets_by_path(declared)
    timeout = config.engine.wait_timeout

    # -- KV v2 -------------------------------------------------------------------------

    def paths_missing_keys() -> list[str]:
        client = platform.authenticated_vault()
        missing = []
        for path, secrets in grouped.items():
            recorded = client.kv2_recorded_keys(vault.kv_mount, path)
            absent = [s.vault_key for s in secrets if s.vault_key not in recorded]
            if absent:
                missing.append(f"{vault.kv_mount}/{path} ({', '.join(absent)})")
        return missing

    async def secrets_check(ctx: StepContext) -> bool:
        missing = await ctx.to_thread(paths_missing_keys)
        if missing:
            ctx.log("not in Vault yet: " + "; ".join(missing))
        return not missing

    async def secrets_write(ctx: StepContext) -> None:
        if config.secrets.writer == "terraform":
            await _write_with_terraform(ctx, config, platform, grouped)
            return
        client = await ctx.to_thread(platform.authenticated_vault)
        for path, secrets in grouped.items():
            values: dict[str, SecretValue] = {s.vault_key: ctx.secret(s.name) for s in secrets}
            version = await ctx.to_thread(client.kv2_write, vault.kv_mount, path, values)
            ctx.log(f"wrote {vault.kv_mount}/{path} keys {', '.join(sorted(values))} (version {version})")

    # -- Kubernetes auth for the External Secrets Operator ------------------------------

    def read_kubernetes_ca() -> str:
        """The CA Vault uses to call the Kubernetes API; "" lets Vault use its own pod's CA."""
        if not vault.kubernetes_ca_cert:
            return ""
        try:
            return Path(vault.kubernetes_ca_cert).expanduser().read_text(encoding="utf-8")
        except OSError as error:
            raise StepError(
                f"vault.kubernetes_ca_cert: cannot read {vault.kubernetes_ca_cert}: {error}"
            ) from None

    def auth_configured() -> bool:
        client = platform.authenticated_vault()
        if not client.auth_method_enabled(vault.auth_mount):
            return False
        current = client.kubernetes_auth_config(vault.auth_mount) or {}
        if current.get("kubernetes_host") != vault.kubernetes_host:
            return False
        role = client.read_kubernetes_role(mount=vault.auth_mount, role=vault.role) or {}
        if eso.service_account not in (role.get("bound_service_account_names") or []):
            return False
        if eso.namespace not in (role.get("bound_service_account_namespaces") or []):
            return False
        if vault.policy not in (role.get("token_policies") or role.get("policies") or []):
            return False
        return client.read_policy(vault.policy) is not None

    async def auth_check(ctx: StepContext) -> bool:
        return await ctx.to_thread(auth_configured)

    def configure_auth() -> None:
        from phases.vault import kv_read_policy_hcl

        ca_pem = read_kubernetes_ca()
        client = platform.authenticated_vault()
        client.enable_kubernetes_auth(vault.auth_mount)
        client.configure_kubernetes_auth(
            mount=vault.auth_mount,
            kubernetes_host=vault.kubernetes_host,
            kubernetes_ca_cert=ca_pem or None,
            disable_local_ca_jwt=bool(ca_pem),
        )
        client.write_policy(vault.policy, kv_read_policy_hcl(vault.kv_mount))
        client.write_kubernetes_role(
            mount=vault.auth_mount,
            role=vault.role,
            service_account_names=[eso.service_account],
            namespaces=[eso.namespace],
            policies=[vault.policy],
        )

    async def auth_apply(ctx: StepContext) -> None:
        ctx.log(f"Kubernetes auth at auth/{vault.auth_mount} -> {vault.kubernetes_host}")
        await ctx.to_thread(configure_auth)
        ctx.log(
            f"policy {vault.policy} (read {vault.kv_mount}/*), "
            f"role {vault.role} for {eso.namespace}/{eso.service_account}"
        )

    # -- ClusterSecretStore ------------------------------------------------------------------

    store_manifest = manifests.cluster_secret_store(config, vault.resolved_cluster_address())

    def store_state() -> tuple[bool, str]:
        store = platform.kube.get(CLUSTER_SECRET_STORES, eso.cluster_secret_store)
        return store_ready(store) if store is not None else (False, "not found")

    async def store_check(ctx: StepContext) -> bool:
        def configured_and_ready() -> bool:
            store = platform.kube.get(CLUSTER_SECRET_STORES, eso.cluster_secret_store)
            if store is None or (store.get("spec") or {}) != store_manifest["spec"]:
                return False
            return store_ready(store)[0]

        return await ctx.to_thread(configured_and_ready)

    async def store_apply(ctx: StepContext) -> None:
        ctx.log(f"ensure ClusterSecretStore {eso.cluster_secret_store} -> {vault.resolved_cluster_address()}")
        await ctx.to_thread(platform.kube.ensure, CLUSTER_SECRET_STORES, store_manifest)
        await wait_until(ctx, f"ClusterSecretStore {eso.cluster_secret_store}", store_state, timeout=timeout)

    writer_plan = (
        tuple(
            f"PATCH /v1/{vault.kv_mount}/data/{path} keys {', '.join(s.vault_key for s in secrets)}"
            for path, secrets in grouped.items()
        )
        if config.secrets.writer == "vault"
        else (
            f"terraform init -input=false (in {config.secrets.terraform_dir})",
            "terraform apply -auto-approve -input=false -var-file=<a pipe: values never in argv or env>",
        )
    )
    return Phase(
        2,
        "Bootstrap secrets",
        (
            Step(
                "write-secrets",
                f"Secrets written to {vault.kv_mount}/ (writer: {config.secrets.writer})",
                secrets_check,
                secrets_write,
                writer_plan,
                needs_secrets=tuple(s.name for s in declared),
            ),
            Step(
                "kubernetes-auth",
                "Vault Kubernetes auth for ESO",
                auth_check,
                auth_apply,
                (
                    f"POST /v1/sys/auth/{vault.auth_mount} (type kubernetes)",
                    f"POST /v1/auth/{vault.auth_mount}/config (kubernetes_host={vault.kubernetes_host})",
                    f"PUT /v1/sys/policies/acl/{vault.policy}",
                    f"POST /v1/auth/{vault.auth_mount}/role/{vault.role}",
                ),
            ),
            Step(
                "secret-store",
                f"ClusterSecretStore {eso.cluster_secret_store} Ready",
                store_check,
                store_apply,
                (f"create ClusterSecretStore {eso.cluster_secret_store}",),
            ),
        ),
        wipe_secrets_after=True,
    )


async def _write_with_terraform(
    ctx: StepContext, config: Config, platform: Platform, grouped: dict[str, list[DeclaredSecret]]
) -> None:
    directory = await ctx.to_thread(Path(config.secrets.terraform_dir).expanduser)
    if not await ctx.to_thread(directory.is_dir):
        raise StepError(f"secrets.terraform_dir {directory} is not a directory")
    client = await ctx.to_thread(platform.authenticated_vault)
    secret_env: dict[str, SecretValue] = {"VAULT_TOKEN": platform.root_token()}
    values = {secret.name: ctx.secret(secret.name) for secrets in grouped.values() for secret in secrets}
    env = {"VAULT_ADDR": client.address, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
    await ctx.run(["terraform", "init", "-input=false", "-no-color"], cwd=directory, env=env)
    with _tfvars_json(values) as tfvars, shell.secret_pipe(tfvars) as pipe_path:
        var_file = await ctx.to_thread(_var_file_link, pipe_path)
        try:
            await ctx.run(
                ["terraform", "apply", "-auto-approve", "-input=false", "-no-color", f"-var-file={var_file}"],
                cwd=directory,
                env=env,
                secret_env=secret_env,
            )
        finally:
            await ctx.to_thread(_remove_link, var_file)
    # Terraform wrote the values; record which keys exist (names only) so later runs can skip.
    for path, secrets in grouped.items():
        wanted = {s.vault_key for s in secrets}
        present = set(await ctx.to_thread(client.kv2_keys, config.vault.kv_mount, path))
        absent = wanted - present
        if absent:
            raise StepError(
                f"terraform apply succeeded but {config.vault.kv_mount}/{path} "
                f"lacks {', '.join(sorted(absent))}: "
                f"check that {directory} writes every declared secret"
            )
        await ctx.to_thread(client.kv2_record_keys, config.vault.kv_mount, path, sorted(wanted))
    ctx.log("terraform wrote every declared secret")


@contextmanager
def _tfvars_json(values: dict[str, SecretValue]) -> Iterator[memoryview]:
    """``{"name": "value", ...}`` assembled in a locked buffer (zeroed afterwards)."""
    with memory.LockedWriter() as document:
        document.write(b"{")
        for index, (name, value) in enumerate(values.items()):
            if index:
                document.write(b", ")
            memory.write_json(document, name)
            document.write(b": ")
            with value.exposed() as view:
                try:
                    memory.write_json_string(document, view)
                except ValueError:
                    raise StepError(
                        f"the secret {name} is not UTF-8 text; Terraform variables are text"
                    ) from None
        document.write(b"}\n")
        with document.view() as view:
            yield view


def _var_file_link(pipe_path: str) -> Path:
    """A ``*.tfvars.json`` name for the pipe (Terraform reads JSON only from files named so)."""
    directory = Path(tempfile.mkdtemp(prefix="gitops-tui-tfvars-"))
    link = directory / "secrets.tfvars.json"
    link.symlink_to(pipe_path)
    return link


def _remove_link(link: Path) -> None:
    link.unlink(missing_ok=True)
    link.parent.rmdir()
