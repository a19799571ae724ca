"""VaultClient against real OpenBao servers: dev (shared) for the API, raft (fresh) for init and unseal."""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import logging
import os
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest
import requests

from phases.secrets import REDACTED, SecretValue, SecretWiped
from phases.vault import (
    VaultClient,
    VaultError,
    VaultPermissionDenied,
    VaultSealed,
    VaultStatus,
    VaultUnreachable,
    kv_read_policy_hcl,
)
from sandbox.openbao import OpenBaoServer
from tests.fixtures.vault import DevOpenBao

SANDBOX_CA = Path(__file__).resolve().parents[2] / "sandbox" / "data" / "sandbox-ca.pem"


def secret(value: str, name: str = "test secret") -> SecretValue:
    return SecretValue.from_bytes(name, value.encode())


def reveal(value: SecretValue) -> bytes:
    """A test-only copy of a secret's bytes."""
    with value.exposed() as view:
        return bytes(view)


def distinctive(label: str) -> str:
    """A secret value that cannot appear anywhere by accident."""
    return f"{label}-{uuid.uuid4().hex}"


def raw(
    dev: DevOpenBao, method: str, path: str, *, content_type: str | None = None, **kwargs: Any
) -> requests.Response:
    """A request made around the client under test, to check what the server really holds."""
    headers = {"X-Vault-Token": dev.root_token}
    if content_type:
        headers["Content-Type"] = content_type
    return requests.request(method, f"{dev.url}/v1/{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def kv_mount(dev_vault: VaultClient, unique_name: str) -> str:
    dev_vault.enable_kv2(unique_name)
    return unique_name


# -- status ----------------------------------------------------------------------------------------------


def test_status_of_a_closed_port_is_unreachable_naming_address_and_cause(closed_port: int) -> None:
    address = f"http://127.0.0.1:{closed_port}"
    status = VaultClient(address).status()
    assert status == VaultStatus(False, False, False, None, status.error)
    assert status.label == "unreachable"
    assert status.error == f"cannot reach Vault at {address}: connection refused"


def test_operations_on_a_closed_port_raise_vault_unreachable(closed_port: int) -> None:
    client = VaultClient(f"http://127.0.0.1:{closed_port}", token=secret("t"))
    with pytest.raises(VaultUnreachable, match=f"127.0.0.1:{closed_port}: connection refused"):
        client.kv2_enabled("secret")


def test_status_of_a_server_that_accepts_but_never_answers_is_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or answers
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = VaultClient(address, timeout=0.3)
        status = client.status()
        assert status.label == "unreachable"
        assert status.error == f"cannot reach Vault at {address}: timed out after 0.3s"
        with pytest.raises(VaultUnreachable, match="timed out"):
            client.read_policy("default")


def test_status_of_an_http_server_that_is_not_vault_is_unreachable() -> None:
    class NotVault(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotVault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status = VaultClient(f"http://127.0.0.1:{server.server_address[1]}").status()
    finally:
        server.shutdown()
        server.server_close()
    assert status.label == "unreachable"
    assert status.error is not None and "does not answer like Vault" in status.error
    assert "HTTP 404" in status.error


def test_status_of_the_dev_server_is_unsealed_with_its_version(openbao_dev: DevOpenBao) -> None:
    status = VaultClient(openbao_dev.url).status()
    assert status.label == "unsealed"
    assert status.reachable and status.initialized and not status.sealed
    assert status.version is not None and status.version.startswith("2.")
    assert status.error is None


@pytest.fixture(scope="module")
def tls_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with OpenBaoServer.dev(tmp_path_factory.mktemp("openbao-tls"), tls=True) as server:
        yield server


def test_tls_verification_failure_is_unreachable_and_says_so(tls_dev_server: OpenBaoServer) -> None:
    status = VaultClient(tls_dev_server.url).status()
    assert status.label == "unreachable"
    assert status.error is not None
    assert status.error.startswith(
        f"cannot reach Vault at {tls_dev_server.url}: TLS certificate verification failed"
    )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_ca_cert_and_verify_false_are_honoured(tls_dev_server: OpenBaoServer) -> None:
    assert tls_dev_server.ca_cert_path is not None
    assert (
        VaultClient(tls_dev_server.url, ca_cert=str(tls_dev_server.ca_cert_path)).status().label == "unsealed"
    )
    assert VaultClient(tls_dev_server.url, verify=False).status().label == "unsealed"
    # A CA that did not sign the server's certificate is rejected.
    assert VaultClient(tls_dev_server.url, ca_cert=str(SANDBOX_CA)).status().label == "unreachable"


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="CA certificate file not found"):
        VaultClient("https://127.0.0.1:8200", ca_cert=str(tmp_path / "absent.pem"))


# -- initialise and unseal (real raft server) ------------------------------------------------------------


def test_initialise_5_of_3_then_unseal_seal_on_restart_and_keep_data(openbao_raft: OpenBaoServer) -> None:
    client = VaultClient(openbao_raft.url)
    assert client.status().label == "uninitialised"

    result = client.initialize(shares=5, threshold=3)
    assert len(result.unseal_keys) == 5
    key_bytes = [reveal(key) for key in result.unseal_keys]
    assert len(set(key_bytes)) == 5
    assert all(len(base64.b64decode(key, validate=True)) == 33 for key in key_bytes)
    assert result.root_token
    assert client.status().label == "sealed"

    # A stale wrong share from an earlier attempt would spoil ours: unseal resets the progress first.
    stale = base64.b64encode(os.urandom(33)).decode()
    stale_progress = requests.put(f"{openbao_raft.url}/v1/sys/unseal", json={"key": stale}, timeout=5).json()
    assert stale_progress["progress"] == 1
    with pytest.raises(VaultSealed, match=r"still sealed after 2 key.*2 of 3"):
        client.unseal(result.unseal_keys[:2])
    assert client.unseal(result.unseal_keys[2:]).label == "unsealed"

    client.set_token(result.root_token)
    client.enable_kv2("secret")
    client.kv2_write("secret", "app/db", {"password": secret("persisted")})

    openbao_raft.restart()
    assert client.status().label == "sealed"
    with pytest.raises(VaultSealed, match="is sealed"):
        client.kv2_keys("secret", "app/db")

    # Unsealing stops at the threshold: the wiped fourth key would raise if it were used.
    spent = secret("never used")
    spent.wipe()
    keys = [*result.unseal_keys[:3], spent]
    assert client.unseal(keys).label == "unsealed"
    assert client.unseal(keys).label == "unsealed"  # already unsealed: nothing submitted
    assert client.kv2_keys("secret", "app/db") == ["password"]
    assert client.kv2_recorded_keys("secret", "app/db") == {"password"}


def test_initialise_1_of_1_and_reject_a_second_initialisation(openbao_raft: OpenBaoServer) -> None:
    client = VaultClient(openbao_raft.url)
    result = client.initialize(shares=1, threshold=1)
    assert len(result.unseal_keys) == 1
    assert client.unseal(result.unseal_keys).label == "unsealed"
    with pytest.raises(VaultError, match="already initialized"):
        client.initialize(shares=1, threshold=1)
    result.wipe()
    assert result.root_token.wiped and all(key.wiped for key in result.unseal_keys)


def test_a_wrong_unseal_key_is_rejected_without_echoing_it(
    openbao_raft: OpenBaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = VaultClient(openbao_raft.url)
    client.initialize(shares=1, threshold=1)
    wrong = distinctive("wrongkey")
    with pytest.raises(VaultError) as failure:
        client.unseal([secret(wrong)])
    assert "unseal" in str(failure.value)
    assert wrong not in str(failure.value) and wrong not in repr(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert wrong not in caplog.text
    assert client.status().label == "sealed"


def test_unseal_of_an_uninitialised_server_and_initialise_with_bad_counts_fail_clearly(
    openbao_raft: OpenBaoServer,
) -> None:
    client = VaultClient(openbao_raft.url)
    with pytest.raises(VaultError, match="not initialised"):
        client.unseal([secret("x")])
    with pytest.raises(ValueError, match="threshold"):
        client.initialize(shares=2, threshold=3)


# -- KV v2 -----------------------------------------------------------------------------------------------


def test_enable_kv2_is_idempotent(dev_vault: VaultClient, openbao_dev: DevOpenBao, unique_name: str) -> None:
    assert not dev_vault.kv2_enabled(unique_name)
    dev_vault.enable_kv2(unique_name)
    assert dev_vault.kv2_enabled(unique_name)
    dev_vault.enable_kv2(f"/{unique_name}/")
    mount = raw(openbao_dev, "GET", "sys/mounts").json()["data"][f"{unique_name}/"]
    assert (mount["type"], mount["options"]["version"]) == ("kv", "2")


def test_enable_kv2_upgrades_a_kv1_mount_and_keeps_its_data(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, unique_name: str
) -> None:
    assert raw(openbao_dev, "POST", f"sys/mounts/{unique_name}", json={"type": "kv"}).status_code == 204
    assert raw(openbao_dev, "POST", f"{unique_name}/app", json={"old": "v1 value"}).status_code == 204
    assert not dev_vault.kv2_enabled(unique_name)
    dev_vault.enable_kv2(unique_name)
    assert dev_vault.kv2_enabled(unique_name)
    assert dev_vault.kv2_keys(unique_name, "app") == ["old"]


def test_enable_kv2_waits_out_the_kv2_upgrade_window(
    dev_vault: VaultClient, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window ("Upgrading from non-versioned to versioned data", HTTP 400) is real but too short to hit
    # on demand, so the server's first two answers on <mount>/config are replaced by that answer.
    adapter = dev_vault._adapter
    real_request = adapter.raw_request
    config_reads: list[int] = []

    def upgrading_at_first(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if url.endswith(f"/{unique_name}/config"):
            config_reads.append(1)
            if len(config_reads) <= 2:
                fake = requests.Response()
                fake.status_code = 400
                fake._content = (
                    b'{"errors":["Upgrading from non-versioned to versioned data. This backend..."]}'
                )
                return fake
        return real_request(method, url, *args, **kwargs)

    monkeypatch.setattr(adapter, "raw_request", upgrading_at_first)
    dev_vault.enable_kv2(unique_name)
    assert len(config_reads) == 3
    assert dev_vault.kv2_write(unique_name, "first", {"k": secret("v")}) == 1


def test_enable_kv2_refuses_a_mount_of_another_engine(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, unique_name: str
) -> None:
    assert raw(openbao_dev, "POST", f"sys/mounts/{unique_name}", json={"type": "transit"}).status_code == 204
    with pytest.raises(VaultError, match=f"{unique_name}/ .* already a transit engine, not KV"):
        dev_vault.enable_kv2(unique_name)


def test_kv2_write_merges_keys_and_records_their_names(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    assert dev_vault.kv2_write(kv_mount, "app/config", {"api_key": secret("k1")}) == 1
    assert dev_vault.kv2_write(kv_mount, "app/config", {"db_password": secret("p1")}) == 2
    assert dev_vault.kv2_write(kv_mount, "app/config", {"api_key": secret("k2")}) == 3

    stored = raw(openbao_dev, "GET", f"{kv_mount}/data/app/config").json()["data"]
    assert stored["data"] == {"api_key": "k2", "db_password": "p1"}
    assert dev_vault.kv2_keys(kv_mount, "app/config") == ["api_key", "db_password"]
    assert dev_vault.kv2_recorded_keys(kv_mount, "app/config") == {"api_key", "db_password"}
    metadata = raw(openbao_dev, "GET", f"{kv_mount}/metadata/app/config").json()["data"]
    assert metadata["custom_metadata"] == {"gitops-tui/keys": "api_key,db_password"}


def test_kv2_write_keeps_foreign_metadata_and_separates_recorders(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    dev_vault.kv2_write(kv_mount, "shared", {"a": secret("1")})
    patched = raw(
        openbao_dev,
        "PATCH",
        f"{kv_mount}/metadata/shared",
        json={"custom_metadata": {"owner": "platform-team"}},
        content_type="application/merge-patch+json",
    )
    assert patched.status_code == 204
    dev_vault.kv2_write(kv_mount, "shared", {"b": secret("2")}, recorded_by="other-tool")
    metadata = raw(openbao_dev, "GET", f"{kv_mount}/metadata/shared").json()["data"]["custom_metadata"]
    assert metadata == {"gitops-tui/keys": "a", "other-tool/keys": "b", "owner": "platform-team"}
    assert dev_vault.kv2_recorded_keys(kv_mount, "shared") == {"a"}
    assert dev_vault.kv2_recorded_keys(kv_mount, "shared", recorded_by="other-tool") == {"b"}


def test_kv2_write_records_many_key_names_within_the_metadata_value_limit(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    names = {f"setting_number_{index:03d}_of_many" for index in range(60)}  # ~1.8 KB of names
    dev_vault.kv2_write(kv_mount, "big", {name: secret("v") for name in names})
    metadata = raw(openbao_dev, "GET", f"{kv_mount}/metadata/big").json()["data"]["custom_metadata"]
    assert len(metadata) > 1
    assert all(len(value.encode()) <= 512 for value in metadata.values())
    assert dev_vault.kv2_recorded_keys(kv_mount, "big") == names


def test_kv2_write_after_the_latest_version_was_deleted_starts_afresh(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    dev_vault.kv2_write(kv_mount, "gone", {"old": secret("1")})
    assert raw(openbao_dev, "DELETE", f"{kv_mount}/data/gone").status_code == 204
    assert dev_vault.kv2_keys(kv_mount, "gone") == []
    assert dev_vault.kv2_write(kv_mount, "gone", {"new": secret("2")}) == 2
    assert dev_vault.kv2_keys(kv_mount, "gone") == ["new"]


def test_kv2_write_rejects_unrecordable_input(dev_vault: VaultClient, kv_mount: str) -> None:
    with pytest.raises(ValueError, match="comma"):
        dev_vault.kv2_write(kv_mount, "p", {"a,b": secret("1")})
    with pytest.raises(ValueError, match="empty"):
        dev_vault.kv2_write(kv_mount, "p", {})
    with pytest.raises(ValueError, match="invalid secret path"):
        dev_vault.kv2_write(kv_mount, "a/../b", {"k": secret("1")})
    wiped = secret("1")
    wiped.wipe()
    with pytest.raises(SecretWiped):
        dev_vault.kv2_write(kv_mount, "p", {"k": wiped})


def test_kv2_reads_of_a_missing_path_are_empty(dev_vault: VaultClient, kv_mount: str) -> None:
    assert dev_vault.kv2_recorded_keys(kv_mount, "no/such/path") == set()
    assert dev_vault.kv2_keys(kv_mount, "no/such/path") == []


def test_kv2_list_tree_returns_every_leaf_of_a_three_level_tree(
    dev_vault: VaultClient, kv_mount: str
) -> None:
    leaves = ["apps/web", "apps/api/db", "apps/api/cache/redis", "apps/api/cache/memcached", "infra/dns/cf"]
    for path in leaves:
        dev_vault.kv2_write(kv_mount, path, {"k": secret("v")})
    dev_vault.kv2_write(kv_mount, "apps", {"k": secret("v")})  # a leaf and a folder with the same name
    expected = sorted([*leaves, "apps"])
    assert dev_vault.kv2_list_tree(kv_mount) == expected
    assert dev_vault.kv2_list_tree(kv_mount, concurrency=1) == expected
    assert dev_vault.kv2_list_tree(kv_mount, "apps/api/") == [
        "apps/api/cache/memcached",
        "apps/api/cache/redis",
        "apps/api/db",
    ]
    assert dev_vault.kv2_list_tree(kv_mount, "nothing/here") == []
    with pytest.raises(VaultError, match="deeper than 2 levels"):
        dev_vault.kv2_list_tree(kv_mount, max_depth=2)


THREE_LEVELS = ["apps/web", "apps/api/db", "apps/api/cache/redis", "apps/api/cache/memcached", "infra/dns/cf"]


@contextlib.contextmanager
def recording_proxy(
    upstream: str, *, refuse_scan: bool = False
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A reverse proxy in front of OpenBao recording (method, path) of each request; with ``refuse_scan`` it
    answers SCAN with 405 as HashiCorp Vault (which has no SCAN) does."""
    target = urllib.parse.urlsplit(upstream)
    seen: list[tuple[str, str]] = []

    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            seen.append((self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if refuse_scan and self.command == "SCAN":
                status, headers, data = 405, [("Content-Type", "application/json")], b'{"errors":[]}'
            else:
                upstream_connection = http.client.HTTPConnection(target.netloc, timeout=10)
                skip = {"host", "connection", "content-length"}
                forwarded = {name: value for name, value in self.headers.items() if name.lower() not in skip}
                upstream_connection.request(self.command, self.path, body=body or None, headers=forwarded)
                answer = upstream_connection.getresponse()
                status, data = answer.status, answer.read()
                drop = {"connection", "content-length", "transfer-encoding"}
                headers = [(name, value) for name, value in answer.getheaders() if name.lower() not in drop]
                upstream_connection.close()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_LIST = do_SCAN = forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_kv2_list_tree_is_one_scan_request_on_openbao(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    for path in THREE_LEVELS:
        dev_vault.kv2_write(kv_mount, path, {"k": secret("v")})
    with (
        recording_proxy(openbao_dev.url) as (url, seen),
        VaultClient(url, token=openbao_dev.root_secret()) as client,
    ):
        assert client.kv2_list_tree(kv_mount) == sorted(THREE_LEVELS)
        assert client.kv2_list_tree(kv_mount, "apps/api") == [
            "apps/api/cache/memcached",
            "apps/api/cache/redis",
            "apps/api/db",
        ]
    # Metadata only, in one request each: no LIST per folder, no read of any value.
    requests_made = [(method, path.rstrip("/")) for method, path in seen]
    assert requests_made == [
        ("SCAN", f"/v1/{kv_mount}/metadata"),
        ("SCAN", f"/v1/{kv_mount}/metadata/apps/api"),
    ]


def test_kv2_list_tree_lists_folder_by_folder_where_the_server_has_no_scan(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    for path in THREE_LEVELS:
        dev_vault.kv2_write(kv_mount, path, {"k": secret("v")})
    with (
        recording_proxy(openbao_dev.url, refuse_scan=True) as (url, seen),
        VaultClient(url, token=openbao_dev.root_secret()) as client,
    ):
        assert client.kv2_list_tree(kv_mount) == sorted(THREE_LEVELS)
        assert client.kv2_list_tree(kv_mount, "apps/api/") == [
            "apps/api/cache/memcached",
            "apps/api/cache/redis",
            "apps/api/db",
        ]
        assert client.kv2_list_tree(kv_mount, "nothing/here") == []
        with pytest.raises(VaultError, match="deeper than 2 levels"):
            client.kv2_list_tree(kv_mount, max_depth=2)
    methods = [method for method, _ in seen]
    assert methods.count("SCAN") == 1  # the 405 is remembered: later listings go straight to LIST
    assert set(methods) == {"SCAN", "LIST"}
    assert all(path.startswith(f"/v1/{kv_mount}/metadata") for _, path in seen)  # never a data/ read


# -- permissions and secrecy -----------------------------------------------------------------------------


def narrow_token(dev: DevOpenBao, policy_name: str) -> SecretValue:
    created = raw(dev, "POST", "auth/token/create", json={"policies": [policy_name], "ttl": "10m"})
    return secret(created.json()["auth"]["client_token"], "narrow token")


def test_a_narrow_token_gets_permission_denied_naming_path_and_operation(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dev_vault.write_policy(kv_mount, kv_read_policy_hcl(kv_mount))
    token = narrow_token(openbao_dev, kv_mount)
    value = distinctive("denied-value")
    with VaultClient(openbao_dev.url, token=token) as reader, pytest.raises(VaultPermissionDenied) as failure:
        reader.kv2_write(kv_mount, "team/app", {"password": secret(value)})
    message = str(failure.value)
    assert f"cannot write {kv_mount}/data/team/app" in message
    assert "permission denied" in message
    assert failure.value.path == f"{kv_mount}/data/team/app"
    assert failure.value.status_code == 403
    token_text = reveal(token).decode()
    for leaked in (value, token_text):
        assert leaked not in message and leaked not in repr(failure.value)
        assert leaked not in caplog.text


def test_the_read_policy_lets_its_holder_read_but_not_write(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    dev_vault.kv2_write(kv_mount, "team/app", {"password": secret("p")})
    dev_vault.write_policy(kv_mount, kv_read_policy_hcl(kv_mount))
    with VaultClient(openbao_dev.url, token=narrow_token(openbao_dev, kv_mount)) as reader:
        assert reader.kv2_keys(kv_mount, "team/app") == ["password"]
        assert reader.kv2_list_tree(kv_mount) == ["team/app"]
        with pytest.raises(VaultPermissionDenied):
            reader.kv2_write(kv_mount, "team/app", {"password": secret("q")})


def test_an_invalid_token_is_permission_denied(openbao_dev: DevOpenBao) -> None:
    with pytest.raises(VaultPermissionDenied, match="sys/mounts"):
        openbao_dev.client(secret("not-a-token")).kv2_enabled("secret")


def test_secrets_written_never_reach_logs_or_messages(
    dev_vault: VaultClient, kv_mount: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    value = distinctive("written-value")
    dev_vault.kv2_write(kv_mount, "quiet", {"token": secret(value)})
    with pytest.raises(VaultError) as failure:
        dev_vault.kv2_write(f"{kv_mount}-missing", "quiet", {"token": secret(value)})
    assert "not found" in str(failure.value)
    assert value not in str(failure.value)
    assert value not in caplog.text
    assert "token" in caplog.text  # the key name is logged, its value is not


def test_the_token_is_kept_only_as_a_secret_value(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, kv_mount: str
) -> None:
    dev_vault.write_policy(kv_mount, kv_read_policy_hcl(kv_mount))
    token = narrow_token(openbao_dev, kv_mount)
    with VaultClient(openbao_dev.url, token=token) as client:
        assert client.kv2_recorded_keys(kv_mount, "anything") == set()  # an authenticated call worked
        adapter = client._adapter
        assert not adapter.token  # hvac's str slot stays empty
        assert "X-Vault-Token" not in adapter.session.headers
        assert adapter.secret_token is token


def test_a_server_message_quoting_a_secret_is_scrubbed(dev_vault: VaultClient) -> None:
    value = distinctive("echoed")
    with pytest.raises(VaultError) as failure, dev_vault._translated_errors("write", "kv/x", [secret(value)]):
        raise hvac.exceptions.InvalidRequest(errors=[f"invalid value {value!r} for field"])
    assert value not in str(failure.value)
    assert REDACTED in str(failure.value)
    assert str(failure.value).startswith("Vault at ")
    assert failure.value.__cause__ is None


# -- kubernetes auth and policies ------------------------------------------------------------------------


def test_kubernetes_auth_enable_configure_role_and_policy_round_trip(
    dev_vault: VaultClient, unique_name: str
) -> None:
    mount = f"k8s-{unique_name}"
    ca_pem = SANDBOX_CA.read_text()
    reviewer_jwt = distinctive("reviewer-jwt")

    assert not dev_vault.auth_method_enabled(mount)
    assert dev_vault.kubernetes_auth_config(mount) is None
    dev_vault.enable_kubernetes_auth(mount)
    dev_vault.enable_kubernetes_auth(mount)
    assert dev_vault.auth_method_enabled(mount)
    assert dev_vault.kubernetes_auth_config(mount) is None  # enabled, not configured

    # .invalid never resolves: the write returning at all shows Vault does not contact the host.
    dev_vault.configure_kubernetes_auth(
        mount=mount,
        kubernetes_host="https://kubernetes.invalid:6443",
        kubernetes_ca_cert=ca_pem,
        disable_local_ca_jwt=True,
        token_reviewer_jwt=secret(reviewer_jwt),
    )
    config = dev_vault.kubernetes_auth_config(mount)
    assert config is not None
    assert config["kubernetes_host"] == "https://kubernetes.invalid:6443"
    assert config["kubernetes_ca_cert"].strip() == ca_pem.strip()
    assert config["disable_local_ca_jwt"] is True
    assert config["token_reviewer_jwt_set"] is True
    assert reviewer_jwt not in repr(config)

    policy = kv_read_policy_hcl(f"secret-{unique_name}")
    assert dev_vault.read_policy(unique_name) is None
    dev_vault.write_policy(unique_name, policy)
    assert dev_vault.read_policy(unique_name) == policy

    assert dev_vault.read_kubernetes_role(mount=mount, role="external-secrets") is None
    dev_vault.write_kubernetes_role(
        mount=mount,
        role="external-secrets",
        service_account_names=["external-secrets"],
        namespaces=["external-secrets"],
        policies=[unique_name],
        ttl="1h",
    )
    role = dev_vault.read_kubernetes_role(mount=mount, role="external-secrets")
    assert role is not None
    assert role["bound_service_account_names"] == ["external-secrets"]
    assert role["bound_service_account_namespaces"] == ["external-secrets"]
    assert role["token_policies"] == [unique_name]
    assert role["token_ttl"] == 3600


def test_enable_kubernetes_auth_refuses_a_mount_of_another_auth_method(
    dev_vault: VaultClient, openbao_dev: DevOpenBao, unique_name: str
) -> None:
    assert raw(openbao_dev, "POST", f"sys/auth/{unique_name}", json={"type": "userpass"}).status_code == 204
    with pytest.raises(VaultError, match="already a userpass auth method, not kubernetes"):
        dev_vault.enable_kubernetes_auth(unique_name)


def test_configure_kubernetes_auth_rejects_a_ca_that_is_not_pem(
    dev_vault: VaultClient, unique_name: str
) -> None:
    dev_vault.enable_kubernetes_auth(unique_name)
    with pytest.raises(VaultError, match="kubernetes_ca_cert"):
        dev_vault.configure_kubernetes_auth(
            mount=unique_name,
            kubernetes_host="https://kubernetes.invalid:6443",
            kubernetes_ca_cert="not a certificate",
            disable_local_ca_jwt=True,
        )


def test_kv_read_policy_hcl_grants_read_on_data_and_read_list_on_metadata() -> None:
    assert kv_read_policy_hcl("/secret/") == (
        "# Read-only access to the KV v2 mount secret/ (written by gitops-tui).\n"
        'path "secret/data/*" {\n'
        '  capabilities = ["read"]\n'
        "}\n"
        "\n"
        'path "secret/metadata/*" {\n'
        '  capabilities = ["read", "list"]\n'
        "}\n"
    )
    with pytest.raises(ValueError, match="invalid mount"):
        kv_read_policy_hcl('secret" {} path "sys/*')
