"""The Vault / OpenBao client the phases drive.

Blocking on purpose: the engine calls it through ``asyncio.to_thread``. hvac supplies the HTTP adapter, its
exception types and the endpoint helpers; this module adds three things hvac does not do:

* Secrets stay in :class:`SecretValue` buffers all the way down, and never become ``bytes`` or ``str``: the
  one place requests are sent, :func:`_send_request`, assembles the whole request (token header and JSON
  body, whose SecretValues :func:`_reveal_for_json` writes in) in a locked buffer and writes that buffer to
  the socket (plain or TLS). Answers that carry secrets (the init answer, a KV read) are read into a locked
  buffer too, and the secrets in them become SecretValues in :func:`_secret_from_answer`.
* Every failure reaches callers as a :class:`VaultError` with one human line naming the address, the
  operation and the path, translated in one place (:meth:`VaultClient._translated_errors`). Messages never
  contain a secret: server texts are scrubbed of the secrets the call carried, and hvac/requests exceptions
  (which may hold the prepared request, token header included) are not chained.
* KV v2 writes merge (JSON merge patch) and record the key *names* in the path's custom metadata, so later
  checks know which keys exist without reading any value.

Requests ignore the environment (no proxy variables, no ``REQUESTS_CA_BUNDLE``) and follow no redirect.
The caller decides TLS settings (it reads ``VAULT_CACERT``, not this module); without a CA file the certifi
bundle requests would use is trusted.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode, urlsplit

import hvac
import hvac.adapters
import hvac.exceptions
import requests
import requests.structures
import requests.utils

from phases import memory
from phases.errors import GitOpsError
from phases.secrets import REDACTED, SecretValue

__all__ = [
    "InitResult",
    "VaultClient",
    "VaultError",
    "VaultPermissionDenied",
    "VaultSealed",
    "VaultStatus",
    "VaultUnreachable",
    "kv_read_policy_hcl",
]

_log = logging.getLogger(__name__)

# /v1/sys/health codes that carry a status body: active, standby, DR secondary, perf standby, uninit, sealed.
_HEALTH_CODES: Final = frozenset({200, 429, 472, 473, 501, 503})
_MERGE_PATCH: Final = "application/merge-patch+json"
_POOL_SIZE: Final = 16  # HTTP connections kept per client; also caps kv2_list_tree's threads
# SCAN answers that mean "list folder by folder instead": no such operation (HashiCorp Vault, OpenBao < 2.2),
# no `scan` capability in the token's policy (403), no such mount (404; the LISTs then find nothing too).
_SCAN_FALLBACK_CODES: Final = frozenset({400, 403, 404, 405, 501})
_SCAN_UNSUPPORTED_CODES: Final = frozenset({400, 405, 501})  # the server's answer: not asked again
_KV_UPGRADE_TIMEOUT: Final = 30.0
_KV_UPGRADE_POLL: Final = 0.05
_KV_NOT_READY_SIGNS: Final = (
    "upgrade from non-versioned",
    "Upgrading from non-versioned",
    "no handler for route",
)
_WRITE_ATTEMPTS: Final = 5
_ACTIVE_WAIT: Final = 5.0  # a single node turns active ~50 ms after unseal
_ACTIVE_POLL: Final = 0.02
_SERVER_TEXT_LIMIT: Final = 200
# KV v2 custom_metadata limits (Vault and OpenBao): values at most 512 bytes, at most 64 entries.
_METADATA_VALUE_LIMIT: Final = 512
_KEY_NAME_SEPARATOR: Final = ","
_MOUNT_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)*")

StatusLabel = Literal["unreachable", "uninitialised", "sealed", "unsealed"]


# -- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultStatus:
    """What ``/v1/sys/health`` says (never raised: an unreachable server is a status too)."""

    reachable: bool
    initialized: bool
    sealed: bool
    version: str | None
    error: str | None

    @property
    def label(self) -> StatusLabel:
        if not self.reachable:
            return "unreachable"
        if not self.initialized:
            return "uninitialised"
        return "sealed" if self.sealed else "unsealed"


@dataclass
class InitResult:
    """The root token and the unseal keys (base64 forms) from initialisation. Wipe them when stored."""

    root_token: SecretValue
    unseal_keys: list[SecretValue]

    def wipe(self) -> None:
        self.root_token.wipe()
        for key in self.unseal_keys:
            key.wipe()


# -- errors ----------------------------------------------------------------------------------------------


class VaultError(GitOpsError):
    """A Vault operation failed. ``str(error)`` is one line for humans and never contains a secret."""

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        operation: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.address = address
        self.operation = operation
        self.path = path
        self.status_code = status_code


class VaultUnreachable(VaultError):
    """No HTTP answer: connection refused, TLS verification failed, timeout, unknown host."""


class VaultSealed(VaultError):
    """Vault answered but is sealed."""


class VaultPermissionDenied(VaultError):
    """403: the token may not perform ``operation`` on ``path`` (or the token is invalid)."""


# -- the wire: the only place where secrets leave their buffers -------------------------------------------

_USER_AGENT: Final = "gitops-tui/0.1"


def _reveal_for_json(value: object, out: memory.LockedWriter) -> None:
    """``write_json`` hook: a SecretValue in a request body is written as a JSON string straight into the
    (locked) request buffer. Anything else JSON cannot encode is refused."""
    if isinstance(value, SecretValue):
        with value.exposed() as view:
            try:
                memory.write_json_string(out, view)
            except ValueError:
                raise ValueError(f"secret {value.name!r} is not UTF-8 text; Vault stores text") from None
        return
    raise TypeError(f"cannot send a {type(value).__name__} to Vault")


def _vault_pool(address: str, *, ca_cert: str | None, verify: bool) -> memory.HttpPool:
    """Keep-alive connections to Vault; TLS as requests would do it (certifi unless a CA file is given)."""
    context = None
    if address.startswith("https://"):
        context = memory.tls_context(verify=verify, ca_file=ca_cert or requests.utils.DEFAULT_CA_BUNDLE_PATH)
    return memory.HttpPool(address, ssl_context=context, max_idle=_POOL_SIZE)


@dataclass
class _SecretAnswer:
    """An answer whose body may hold secrets: it stays in locked memory until ``wipe()``."""

    status: int
    answer: memory.HttpAnswer

    def body(self) -> memoryview:
        return self.answer.body()

    def wipe(self) -> None:
        self.answer.close()


def _send_request(
    pool: memory.HttpPool,
    method: str,
    url: str,
    *,
    token: SecretValue | None,
    headers: Mapping[str, str],
    params: Mapping[str, Any] | None,
    body: object | None,
    timeout: float,
    secret_answer: bool = False,
) -> requests.Response | _SecretAnswer:
    """Send one request. The ONLY function that puts outgoing secrets on the wire, and it copies none.

    The request line, the headers (``X-Vault-Token`` written from the token's buffer) and the JSON body
    (SecretValues written by :func:`_reveal_for_json`) are assembled in one locked buffer, which is written
    to the socket and zeroed. The answer is read into a locked buffer: with ``secret_answer`` it is returned
    as it is (the caller wipes it); otherwise it becomes a ``requests.Response`` (answers without secrets).
    Failures are raised as ``requests`` exceptions, as hvac and :meth:`VaultClient._translated_errors` expect.
    """
    parts = urlsplit(url)
    target = parts.path or "/"
    query = urlencode(params, doseq=True) if params else parts.query
    if query:
        target += "?" + query
    wire_headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", **headers}
    request = memory.LockedWriter()
    payload: memory.LockedWriter | None = None
    try:
        if body is not None:
            payload = memory.LockedWriter()
            memory.write_json(payload, body, default=_reveal_for_json)
            wire_headers.setdefault("Content-Type", "application/json")
        request.write_ascii(f"{method} {target} HTTP/1.1\r\nHost: {pool.host_header}\r\n")
        for name, value in wire_headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"invalid header value for {name}")
            request.write(f"{name}: {value}\r\n".encode("latin-1"))
        if token is not None:
            with token.exposed() as view:
                if memory.find_byte(view, 0x0D) != -1 or memory.find_byte(view, 0x0A) != -1:
                    raise ValueError("the Vault token contains a line break")
                request.write(b"X-Vault-Token: ")
                request.write(view)
            request.write(b"\r\n")
        if payload is not None or method in ("POST", "PUT", "PATCH"):
            request.write_ascii(f"Content-Length: {payload.length if payload is not None else 0}\r\n")
        request.write(b"\r\n")
        if payload is not None:
            with payload.view() as view:
                request.write(view)
            payload.close()
        with request.view() as wire:
            answer = _exchange(pool, wire, method, timeout)
    finally:
        request.close()
        if payload is not None:
            payload.close()
    if secret_answer:
        return _SecretAnswer(answer.status, answer)
    try:
        return _as_response(answer, method, url)
    finally:
        answer.close()


def _exchange(pool: memory.HttpPool, wire: memoryview, method: str, timeout: float) -> memory.HttpAnswer:
    """The pool's exchange with its failures as the requests exceptions the error translation knows."""
    try:
        return pool.exchange(wire, method=method, timeout=timeout)
    except TimeoutError as error:
        raise requests.exceptions.Timeout(error) from None
    except ssl.SSLError as error:
        raise requests.exceptions.SSLError(error) from None
    except memory.HttpProtocolError as error:
        raise requests.exceptions.ConnectionError(error) from None
    except OSError as error:
        raise requests.exceptions.ConnectionError(error) from None


def _as_response(answer: memory.HttpAnswer, method: str, url: str) -> requests.Response:
    """A ``requests.Response`` for hvac, from an answer that holds no secret."""
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    merged: dict[str, str] = {}
    for name, value in answer.headers:
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    response.headers = requests.structures.CaseInsensitiveDict(merged)
    response._content = answer.body_bytes()
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.url = url
    prepared = requests.PreparedRequest()
    prepared.method, prepared.url, prepared.body = method, url, None
    prepared.headers = requests.structures.CaseInsensitiveDict()
    response.request = prepared
    return response


def _secret_from_answer(name: str, encoded: memoryview) -> SecretValue:
    """The ONLY place where a secret received from Vault becomes a SecretValue.

    ``encoded`` is a JSON string's content (between the quotes) inside an answer held in locked memory: it is
    unescaped into a locked buffer, and from there into the SecretValue. No ``str`` or ``bytes`` is made.
    """
    with memory.LockedWriter(len(encoded)) as plain:
        memory.json_unescape_into(encoded, plain)
        with plain.view() as view:
            return SecretValue.from_bytes(name, view)


class _SecretTokenAdapter(hvac.adapters.JSONAdapter):  # type: ignore[misc]  # hvac is untyped
    """hvac adapter that sends every request through :func:`_send_request` with the SecretValue token.

    hvac's own ``token`` attribute stays empty: the token is never a ``str`` on this object.
    """

    secret_token: SecretValue | None = None
    wire: memory.HttpPool | None = None

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
        super().close()

    def raw_request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        params = kwargs.pop("params", None)
        body = kwargs.pop("json", None)
        if kwargs:
            raise TypeError(f"unsupported request options: {sorted(kwargs)}")
        while "//" in url:  # Vault reads '//' as '/', and requests would follow a redirect otherwise
            url = url.replace("//", "/")
        full_url = self.urljoin(self.base_uri, url)
        assert self.wire is not None, "VaultClient sets the adapter's connection pool"
        response = _send_request(
            self.wire,
            method.upper(),
            full_url,
            token=self.secret_token,
            headers={"X-Vault-Request": "true", **(headers or {})},
            params=params,
            body=body,
            timeout=self._kwargs["timeout"],
        )
        assert isinstance(response, requests.Response)
        if raise_exception and not response.ok:
            self._raise_for_error(method, full_url, response)
        return response

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        raise_exception: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any] | requests.Response:
        """hvac's contract: the JSON dict for a 200 with a body, else the response."""
        response = self.raw_request(method, url, headers, raise_exception, **kwargs)
        if response.status_code == 200:
            try:
                answer: dict[str, Any] = response.json()
            except ValueError:
                return response
            return answer
        return response


# -- helpers ---------------------------------------------------------------------------------------------


def _clean_mount(mount: str) -> str:
    cleaned = mount.strip("/")
    if not _MOUNT_PATTERN.fullmatch(cleaned):
        raise ValueError(f"invalid mount path {mount!r}: letters, digits, '_', '-', '.' and '/' only")
    return cleaned


def _clean_path(path: str, *, allow_empty: bool = False) -> str:
    cleaned = path.strip("/")
    if not cleaned and not allow_empty:
        raise ValueError("a secret path must not be empty")
    if cleaned and any(part in {"", ".", ".."} for part in cleaned.split("/")):
        raise ValueError(f"invalid secret path {path!r}")
    return cleaned


def _url_path(*parts: str) -> str:
    return "/v1/" + "/".join(quote(part, safe="/") for part in parts if part)


def _connection_failure(error: BaseException) -> str:
    """The root cause of a failed connection, found by walking the requests -> urllib3 -> socket chain."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return (
                f"TLS certificate verification failed ({current.verify_message}): set vault.ca_cert "
                "or $VAULT_CACERT to the CA that signed Vault's certificate"
            )
        if isinstance(current, ssl.SSLError):
            return f"TLS handshake failed ({current.reason or current.strerror})"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host name"
        if isinstance(current, TimeoutError):
            return "timed out"
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return "connection failed"


def _scrub(text: str, secrets: Iterable[SecretValue]) -> str:
    """``text`` with every occurrence of the given secrets replaced, compared in place (no copy)."""
    raw = bytearray(text, "utf-8")
    mask = REDACTED.encode()
    for secret in secrets:
        if not secret:
            continue
        with secret.exposed() as view:
            start = raw.find(view)
            while start != -1:
                raw[start : start + len(view)] = mask
                start = raw.find(view, start + len(mask))
    return raw.decode("utf-8", errors="replace")


def _server_text(error: hvac.exceptions.VaultError) -> str:
    errors = error.errors
    if isinstance(errors, list):
        text = "; ".join(str(item) for item in errors if item)
    elif errors:
        text = str(errors)
    else:
        text = str(error.args[0]) if error.args and error.args[0] else ""
    text = " ".join(text.split())  # one line
    if len(text) > _SERVER_TEXT_LIMIT:
        text = text[: _SERVER_TEXT_LIMIT - 1] + "…"
    return text


def _encode_recorded_keys(names: Iterable[str], recorded_by: str) -> dict[str, str]:
    """Key names as custom_metadata entries ``<by>/keys``, ``<by>/keys.2``, ..., each within the limit."""
    values: list[str] = []
    current = ""
    for name in sorted(names):
        if len(name.encode()) > _METADATA_VALUE_LIMIT:
            raise ValueError(f"key name {name[:40]!r}... is longer than {_METADATA_VALUE_LIMIT} bytes")
        candidate = f"{current}{_KEY_NAME_SEPARATOR}{name}" if current else name
        if len(candidate.encode()) > _METADATA_VALUE_LIMIT:
            values.append(current)
            candidate = name
        current = candidate
    if current:
        values.append(current)
    return {_recorded_keys_entry(recorded_by, index): value for index, value in enumerate(values)}


def _recorded_keys_entry(recorded_by: str, index: int) -> str:
    return f"{recorded_by}/keys" if index == 0 else f"{recorded_by}/keys.{index + 1}"


def _decode_recorded_keys(custom_metadata: Mapping[str, str] | None, recorded_by: str) -> set[str]:
    if not custom_metadata:
        return set()
    first = f"{recorded_by}/keys"
    names: set[str] = set()
    for entry, value in custom_metadata.items():
        if entry == first or (entry.startswith(first + ".") and entry[len(first) + 1 :].isdigit()):
            names.update(name for name in value.split(_KEY_NAME_SEPARATOR) if name)
    return names


def kv_read_policy_hcl(mount: str) -> str:
    """A read-only ACL policy for a KV v2 mount: read values, read and list metadata."""
    name = _clean_mount(mount)  # the pattern keeps quotes and braces out of the HCL
    return (
        f"# Read-only access to the KV v2 mount {name}/ (written by gitops-tui).\n"
        f'path "{name}/data/*" {{\n'
        f'  capabilities = ["read"]\n'
        f"}}\n"
        f"\n"
        f'path "{name}/metadata/*" {{\n'
        f'  capabilities = ["read", "list"]\n'
        f"}}\n"
    )


# -- the client ------------------------------------------------------------------------------------------


class VaultClient:
    """A blocking client for one Vault/OpenBao server. Thread-safe for concurrent reads."""

    _scan_supported = True  # until the server says it has no SCAN (then kv2_list_tree LISTs)

    def __init__(
        self,
        address: str,
        *,
        token: SecretValue | None = None,
        ca_cert: str | None = None,
        verify: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self.address = address.rstrip("/")
        if ca_cert is not None and verify and not Path(ca_cert).is_file():
            raise VaultError(f"CA certificate file not found: {ca_cert}", address=self.address)
        self._timeout = timeout
        session = requests.Session()
        session.trust_env = False
        session.verify = (ca_cert or True) if verify else False  # hvac's view; requests go through the pool
        # token="" keeps hvac from reading VAULT_TOKEN or ~/.vault-token into a str.
        self._hvac = hvac.Client(
            url=self.address, token="", timeout=timeout, session=session, adapter=_SecretTokenAdapter
        )
        self._adapter: _SecretTokenAdapter = self._hvac.adapter
        self._adapter.secret_token = token
        self._adapter.wire = _vault_pool(self.address, ca_cert=ca_cert, verify=verify)

    def set_token(self, token: SecretValue) -> None:
        self._adapter.secret_token = token

    def close(self) -> None:
        self._adapter.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VaultClient({self.address!r})"

    # -- error translation (the one place) ---------------------------------------------------------------

    @contextmanager
    def _translated_errors(
        self, operation: str, path: str, secrets: Iterable[SecretValue] = ()
    ) -> Iterator[None]:
        """Turn hvac/requests failures into VaultErrors. ``from None``: the originals may hold secrets."""
        try:
            yield
        except VaultError:
            raise
        except requests.exceptions.Timeout:
            reason = f"timed out after {self._timeout:g}s"
            raise self._unreachable(reason, operation, path) from None
        except requests.exceptions.ConnectionError as error:
            raise self._unreachable(_connection_failure(error), operation, path) from None
        except requests.exceptions.RequestException as error:  # invalid URL, not JSON, ...
            raise VaultError(
                f"{operation} {path} at {self.address} failed: {type(error).__name__}",
                address=self.address,
                operation=operation,
                path=path,
            ) from None
        except hvac.exceptions.VaultError as error:
            raise self._refusal(error, operation, path, [*secrets, *self._token_list()]) from None

    def _token_list(self) -> list[SecretValue]:
        token = self._adapter.secret_token
        return [token] if token else []

    def _unreachable(self, reason: str, operation: str, path: str) -> VaultUnreachable:
        return VaultUnreachable(
            f"cannot reach Vault at {self.address}: {reason}",
            address=self.address,
            operation=operation,
            path=path,
        )

    def _refusal(
        self, error: hvac.exceptions.VaultError, operation: str, path: str, secrets: Sequence[SecretValue]
    ) -> VaultError:
        said = _scrub(_server_text(error), secrets)
        detail = f": {said}" if said else ""
        context: dict[str, Any] = {"address": self.address, "operation": operation, "path": path}
        if isinstance(error, hvac.exceptions.ParamValidationError):
            return VaultError(f"cannot {operation} {path}{detail}", **context)
        if isinstance(error, hvac.exceptions.Forbidden):
            return VaultPermissionDenied(
                f"permission denied: cannot {operation} {path} at {self.address}{detail} "
                "(check the token and its policies)",
                status_code=403,
                **context,
            )
        if isinstance(error, hvac.exceptions.VaultDown):
            if "sealed" in said.lower() or not said:
                return VaultSealed(
                    f"Vault at {self.address} is sealed: cannot {operation} {path}",
                    status_code=503,
                    **context,
                )
            return VaultError(
                f"Vault at {self.address} is unavailable: cannot {operation} {path}{detail}",
                status_code=503,
                **context,
            )
        if isinstance(error, hvac.exceptions.VaultNotInitialized):
            return VaultError(
                f"Vault at {self.address} is not initialised: cannot {operation} {path}",
                status_code=501,
                **context,
            )
        if isinstance(error, hvac.exceptions.InvalidPath):
            return VaultError(
                f"cannot {operation} {path} at {self.address}: not found{detail}", status_code=404, **context
            )
        if isinstance(error, hvac.exceptions.Unauthorized):
            return VaultPermissionDenied(
                f"not authenticated: cannot {operation} {path} at {self.address}{detail}",
                status_code=401,
                **context,
            )
        status_codes = {
            hvac.exceptions.InvalidRequest: 400,
            hvac.exceptions.RateLimitExceeded: 429,
            hvac.exceptions.InternalServerError: 500,
            hvac.exceptions.BadGateway: 502,
        }
        status = next((code for kind, code in status_codes.items() if isinstance(error, kind)), None)
        shown = f"HTTP {status}" if status else type(error).__name__
        return VaultError(
            f"Vault at {self.address} refused to {operation} {path} ({shown}){detail}",
            status_code=status,
            **context,
        )

    def _call(
        self,
        method: str,
        url_path: str,
        *,
        body: object | None = None,
        content_type: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One request; the JSON answer, or None for an empty answer (or a 404 when ``missing_ok``)."""
        headers = {"Content-Type": content_type} if content_type else None
        response = self._adapter.raw_request(method, url_path, headers, raise_exception=False, json=body)
        if missing_ok and response.status_code == 404:
            return None
        if not response.ok:
            self._adapter._raise_for_error(method, url_path, response)
        if not response.content:
            return None
        answer: dict[str, Any] = response.json()
        return answer

    def _secret_call(
        self, method: str, url_path: str, *, body: object | None = None, missing_ok: bool = False
    ) -> _SecretAnswer | None:
        """One request whose answer holds secrets: returned in locked memory (the caller wipes it)."""
        adapter = self._adapter
        assert adapter.wire is not None
        answer = _send_request(
            adapter.wire,
            method,
            adapter.urljoin(adapter.base_uri, url_path),
            token=adapter.secret_token,
            headers={"X-Vault-Request": "true"},
            params=None,
            body=body,
            timeout=adapter._kwargs["timeout"],
            secret_answer=True,
        )
        assert isinstance(answer, _SecretAnswer)
        if 200 <= answer.status < 300:
            return answer
        try:
            if missing_ok and answer.status == 404:
                return None
            # An error answer carries no secret: hand hvac an ordinary response to raise from.
            response = _as_response(answer.answer, method, url_path)
        finally:
            answer.wipe()
        adapter._raise_for_error(method, url_path, response)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- lifecycle: status, init, unseal -----------------------------------------------------------------

    def status(self) -> VaultStatus:
        """Health of the server; unreachable (or not a Vault) is reported, never raised."""
        try:
            with self._translated_errors("read", "sys/health"):
                response = self._adapter.raw_request("GET", "/v1/sys/health", raise_exception=False)
        except VaultUnreachable as error:
            return VaultStatus(False, False, False, None, str(error))
        try:
            if response.status_code not in _HEALTH_CODES:
                raise ValueError(f"HTTP {response.status_code}")
            health: dict[str, Any] = response.json()
            initialized, sealed = bool(health["initialized"]), bool(health["sealed"])
        except (ValueError, KeyError, TypeError) as error:
            reason = f"{self.address} does not answer like Vault on /v1/sys/health ({error})"
            return VaultStatus(False, False, False, None, reason)
        version = health.get("version")
        return VaultStatus(True, initialized, sealed, str(version) if version else None, None)

    def initialize(self, *, shares: int = 5, threshold: int = 3) -> InitResult:
        """Initialise the server: Shamir shares/threshold. The caller stores and then wipes the result."""
        if not 1 <= threshold <= shares:
            raise ValueError(f"need 1 <= threshold <= shares, got threshold={threshold} shares={shares}")
        with self._translated_errors("initialise", "sys/init"):
            answer = self._secret_call(
                "PUT", "/v1/sys/init", body={"secret_shares": shares, "secret_threshold": threshold}
            )
        if answer is None or answer.status != 200:
            raise VaultError(f"Vault at {self.address} gave no init answer", address=self.address)
        root_token: SecretValue | None = None
        keys: list[SecretValue] = []
        try:
            with answer.body() as document:
                for item in memory.json_values(document):
                    if item.kind != "string":
                        continue
                    with document[item.start : item.end] as encoded:
                        if item.path == ("root_token",):
                            root_token = _secret_from_answer("VAULT_ROOT_TOKEN", encoded)
                        elif len(item.path) == 2 and item.path[0] == "keys_base64":
                            keys.append(_secret_from_answer(f"VAULT_UNSEAL_KEY_{len(keys) + 1}", encoded))
        except ValueError:
            raise VaultError(f"Vault at {self.address} sent an init answer that is not JSON") from None
        finally:
            answer.wipe()
        if root_token is None or not keys:
            for key in keys:
                key.wipe()
            raise VaultError(
                f"Vault at {self.address} sent an init answer without keys", address=self.address
            )
        return InitResult(root_token=root_token, unseal_keys=keys)

    def unseal(self, keys: Sequence[SecretValue]) -> VaultStatus:
        """Submit keys one by one until unsealed; a no-op when already unsealed.

        Raises VaultSealed if the keys run out first, VaultUnreachable if the server is down.
        """
        before = self.status()
        if not before.reachable:
            raise VaultUnreachable(
                before.error or f"cannot reach Vault at {self.address}", address=self.address
            )
        if not before.initialized:
            raise VaultError(
                f"Vault at {self.address} is not initialised: nothing to unseal", address=self.address
            )
        if not before.sealed:
            return before
        with self._translated_errors("read", "sys/seal-status"):
            progress = int(self._hvac.sys.read_seal_status().get("progress", 0))
        if progress:  # a half-finished attempt (ours, earlier): start from zero so our keys count
            with self._translated_errors("reset unseal", "sys/unseal"):
                self._hvac.sys.submit_unseal_key(reset=True)
        for key in keys:
            with self._translated_errors("unseal", "sys/unseal", [key]):
                answer = self._hvac.sys.submit_unseal_key(key=key)
            if not answer["sealed"]:
                _log.info("Vault at %s unsealed", self.address)
                self._wait_until_active()
                return self.status()
        with self._translated_errors("read", "sys/seal-status"):
            seal = self._hvac.sys.read_seal_status()
        raise VaultSealed(
            f"Vault at {self.address} is still sealed after {len(keys)} key(s): "
            f"{seal.get('progress', 0)} of {seal.get('t', '?')} needed",
            address=self.address,
            operation="unseal",
            path="sys/unseal",
        )

    def _wait_until_active(self) -> None:
        """Give a just-unsealed node the moment it needs to become active (health 429 -> 200).

        Until then writes fail with 503. A standby of an HA cluster stays 429: we stop waiting after
        ``_ACTIVE_WAIT`` seconds and leave it be.
        """
        deadline = time.monotonic() + _ACTIVE_WAIT
        while time.monotonic() < deadline:
            with self._translated_errors("read", "sys/health"):
                response = self._adapter.raw_request("GET", "/v1/sys/health", raise_exception=False)
            if response.status_code != 429:
                return
            time.sleep(_ACTIVE_POLL)

    # -- KV v2 -------------------------------------------------------------------------------------------

    def _secrets_engine(self, mount: str) -> dict[str, Any] | None:
        with self._translated_errors("list", "sys/mounts"):
            mounts = self._hvac.sys.list_mounted_secrets_engines()
        entry: dict[str, Any] | None = mounts["data"].get(f"{mount}/")
        return entry

    @staticmethod
    def _is_kv2(entry: Mapping[str, Any] | None) -> bool:
        if entry is None or entry.get("type") != "kv":
            return False
        return str((entry.get("options") or {}).get("version")) == "2"

    def kv2_enabled(self, mount: str) -> bool:
        return self._is_kv2(self._secrets_engine(_clean_mount(mount)))

    def enable_kv2(self, mount: str) -> None:
        """Make ``mount`` a KV v2 engine: enable it, or upgrade a KV v1 mount in place (data kept).

        Returns once the engine serves requests: a KV v2 mount first runs a short background "upgrade"
        (also when freshly created) during which every request fails.
        """
        mount = _clean_mount(mount)
        entry = self._secrets_engine(mount)
        if entry is None:
            try:
                with self._translated_errors("enable KV v2 at", f"sys/mounts/{mount}"):
                    self._hvac.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
            except VaultError:
                if not self.kv2_enabled(mount):  # else a concurrent caller enabled it first
                    raise
            else:
                _log.info("enabled KV v2 at %s/", mount)
        elif entry.get("type") != "kv":
            raise VaultError(
                f"{mount}/ at {self.address} is already a {entry.get('type')} engine, not KV: "
                "choose another mount or remove it",
                address=self.address,
                operation="enable KV v2 at",
                path=mount,
            )
        elif not self._is_kv2(entry):
            # KV v1: upgrade in place, like `bao kv enable-versioning`.
            with self._translated_errors("upgrade to KV v2", f"sys/mounts/{mount}/tune"):
                self._hvac.sys.tune_mount_configuration(path=mount, options={"version": "2"})
            _log.info("upgrading %s/ from KV v1 to KV v2", mount)
        self._wait_until_kv2_ready(mount)

    def _wait_until_kv2_ready(self, mount: str) -> None:
        deadline = time.monotonic() + _KV_UPGRADE_TIMEOUT
        config_path = f"{mount}/config"
        while True:
            with self._translated_errors("read", config_path):
                response = self._adapter.raw_request("GET", _url_path(mount, "config"), raise_exception=False)
                if response.status_code in {200, 403}:  # ready, or this token may not look: writes will tell
                    return
                # "Upgrading from non-versioned to versioned data..." (400), or not routed yet (404).
                if not any(sign in response.text for sign in _KV_NOT_READY_SIGNS):
                    self._adapter._raise_for_error("GET", config_path, response)
            if time.monotonic() >= deadline:
                raise VaultError(
                    f"{mount}/ at {self.address} was not ready as KV v2 within {_KV_UPGRADE_TIMEOUT:g}s",
                    address=self.address,
                    operation="enable KV v2 at",
                    path=mount,
                )
            time.sleep(_KV_UPGRADE_POLL)

    def kv2_write(
        self,
        mount: str,
        path: str,
        data: Mapping[str, SecretValue],
        *,
        recorded_by: str = "gitops-tui",
    ) -> int:
        """Merge ``data`` into the secret at ``mount/path`` (other keys there survive); the new version.

        Then records the key names (never values) in the path's custom metadata under ``<recorded_by>/keys``.
        """
        mount, path = _clean_mount(mount), _clean_path(path)
        if not data:
            raise ValueError("nothing to write: data is empty")
        for name in data:
            if not name or _KEY_NAME_SEPARATOR in name:
                raise ValueError(f"invalid key name {name!r}: must be non-empty and contain no comma")
        secrets = list(data.values())
        with self._translated_errors("write", f"{mount}/data/{path}", secrets):
            version = self._merge_into_kv2(mount, path, dict(data))
        self._record_key_names(mount, path, data.keys(), recorded_by)
        _log.info("wrote keys %s to %s/%s (version %d)", sorted(data), mount, path, version)
        return version

    def _merge_into_kv2(self, mount: str, path: str, data: dict[str, SecretValue]) -> int:
        data_url = _url_path(mount, "data", path)
        for _ in range(_WRITE_ATTEMPTS):
            merged = self._call(
                "PATCH", data_url, body={"data": data}, content_type=_MERGE_PATCH, missing_ok=True
            )
            if merged is not None:
                return int(merged["data"]["version"])
            # Nothing to merge with (never written, or its latest version deleted): create. The check-and-set
            # makes a concurrent writer's version win; we then merge into it on the next round.
            metadata = self._kv2_metadata(mount, path)
            current = int(metadata["current_version"]) if metadata else 0
            try:
                created = self._call("POST", data_url, body={"options": {"cas": current}, "data": data})
            except hvac.exceptions.InvalidRequest as refused:
                if "check-and-set" in _server_text(refused):
                    continue
                raise
            assert created is not None
            return int(created["data"]["version"])
        raise VaultError(
            f"could not write {mount}/data/{path} at {self.address}: other writers kept changing it",
            address=self.address,
            operation="write",
            path=f"{mount}/data/{path}",
        )

    def _kv2_metadata(self, mount: str, path: str) -> dict[str, Any] | None:
        answer = self._call("GET", _url_path(mount, "metadata", path), missing_ok=True)
        if answer is None:
            return None
        metadata: dict[str, Any] = answer["data"]
        return metadata

    def _record_key_names(self, mount: str, path: str, names: Iterable[str], recorded_by: str) -> None:
        wanted = set(names)
        metadata_path = f"{mount}/metadata/{path}"
        for _ in range(_WRITE_ATTEMPTS):
            with self._translated_errors("read", metadata_path):
                metadata = self._kv2_metadata(mount, path)
            recorded = _decode_recorded_keys((metadata or {}).get("custom_metadata"), recorded_by)
            if wanted <= recorded:
                return
            # Read, union, patch, read again: a concurrent writer's names are merged on the next round.
            entries = _encode_recorded_keys(recorded | wanted, recorded_by)
            with self._translated_errors("record key names in", metadata_path):
                self._call(
                    "PATCH",
                    _url_path(mount, "metadata", path),
                    body={"custom_metadata": entries},
                    content_type=_MERGE_PATCH,
                )
        raise VaultError(
            f"could not record key names in {metadata_path} at {self.address}: "
            "other writers kept changing it",
            address=self.address,
            operation="record key names in",
            path=metadata_path,
        )

    def kv2_record_keys(
        self, mount: str, path: str, names: Iterable[str], *, recorded_by: str = "gitops-tui"
    ) -> None:
        """Record key names written by someone else (e.g. Terraform), as :meth:`kv2_write` does."""
        self._record_key_names(_clean_mount(mount), _clean_path(path), names, recorded_by)

    def kv2_recorded_keys(self, mount: str, path: str, *, recorded_by: str = "gitops-tui") -> set[str]:
        """Key names recorded by :meth:`kv2_write`, from metadata only; empty when the path does not exist."""
        mount, path = _clean_mount(mount), _clean_path(path)
        with self._translated_errors("read", f"{mount}/metadata/{path}"):
            metadata = self._kv2_metadata(mount, path)
        return _decode_recorded_keys((metadata or {}).get("custom_metadata"), recorded_by)

    def kv2_list_tree(
        self, mount: str, prefix: str = "", *, max_depth: int = 10, concurrency: int = 8
    ) -> list[str]:
        """Every secret path under ``prefix`` (relative to the mount), sorted, from metadata only.

        One ``SCAN`` request (OpenBao >= 2.2's recursive list) where the server and the token allow it; else
        ``LIST``s of ``metadata/`` folder by folder, each level's folders concurrently. Raises VaultError when
        the tree is deeper than ``max_depth`` folder levels rather than returning part of it.
        """
        mount = _clean_mount(mount)
        root = _clean_path(prefix, allow_empty=True)
        found = self._scan_tree(mount, root)
        if found is None:
            return sorted(self._walk_tree(mount, root, max_depth=max_depth, concurrency=concurrency))
        if any(key.count("/") >= max_depth for key in found):
            raise self._too_deep(mount, root, max_depth)
        return sorted(f"{root}/{key}" if root else key for key in found)

    def _scan_tree(self, mount: str, root: str) -> list[str] | None:
        """Paths under ``root`` (relative to it) from one SCAN, or None when the server or token cannot."""
        if not self._scan_supported:
            return None
        url_path = _url_path(mount, "metadata", root) + "/"
        with self._translated_errors("list", f"{mount}/metadata/{root}"):
            response = self._adapter.raw_request("SCAN", url_path, None, raise_exception=False)
            if response.status_code in _SCAN_FALLBACK_CODES:
                if response.status_code in _SCAN_UNSUPPORTED_CODES:
                    self._scan_supported = False
                return None
            if not response.ok:
                self._adapter._raise_for_error("SCAN", url_path, response)
            answer: dict[str, Any] = response.json() if response.content else {}
        keys: list[str] = (answer.get("data") or {}).get("keys") or []
        return [key for key in keys if not key.endswith("/")]  # leaves only; no folder is expected

    def _walk_tree(self, mount: str, root: str, *, max_depth: int, concurrency: int) -> list[str]:
        leaves: list[str] = []
        level = [root]
        workers = max(1, min(concurrency, _POOL_SIZE))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vault-list") as pool:
            for _depth in range(max_depth):
                listings = list(pool.map(lambda folder: self._list_folder(mount, folder), level))
                next_level: list[str] = []
                for folder, entries in zip(level, listings, strict=True):
                    for entry in entries:
                        full = f"{folder}/{entry}" if folder else entry
                        if entry.endswith("/"):
                            next_level.append(full.rstrip("/"))
                        else:
                            leaves.append(full)
                level = next_level
                if not level:
                    return leaves
        raise self._too_deep(mount, root, max_depth)

    def _too_deep(self, mount: str, root: str, max_depth: int) -> VaultError:
        return VaultError(
            f"{mount}/{root} at {self.address} is deeper than {max_depth} levels; not listing all of it",
            address=self.address,
            operation="list",
            path=f"{mount}/metadata/{root}",
        )

    def _list_folder(self, mount: str, folder: str) -> list[str]:
        with self._translated_errors("list", f"{mount}/metadata/{folder}"):
            answer = self._call("LIST", _url_path(mount, "metadata", folder) + "/", missing_ok=True)
        if answer is None:
            return []
        keys: list[str] = answer["data"]["keys"]
        return keys

    def kv2_keys(self, mount: str, path: str) -> list[str]:
        """Key names of the latest version, sorted; empty when the path does not exist or is deleted.

        This READS the values, but only into locked memory: the answer is read into a locked buffer, only the
        key names are decoded, and the buffer is zeroed. Prefer :meth:`kv2_recorded_keys`, which reads no
        value at all, for checks.
        """
        mount, path = _clean_mount(mount), _clean_path(path)
        with self._translated_errors("read", f"{mount}/data/{path}"):
            answer = self._secret_call("GET", _url_path(mount, "data", path), missing_ok=True)
        if answer is None:
            return []
        names: set[str] = set()
        try:
            with answer.body() as document:
                for item in memory.json_values(document):
                    if len(item.path) == 3 and item.path[:2] == ("data", "data"):
                        names.add(str(item.path[2]))
        except ValueError:
            raise VaultError(f"{mount}/data/{path} at {self.address}: the answer is not JSON") from None
        finally:
            answer.wipe()
        return sorted(names)

    # -- auth methods and policies -----------------------------------------------------------------------

    def _auth_method(self, mount: str) -> dict[str, Any] | None:
        with self._translated_errors("list", "sys/auth"):
            methods = self._hvac.sys.list_auth_methods()
        entry: dict[str, Any] | None = methods["data"].get(f"{mount}/")
        return entry

    def auth_method_enabled(self, mount: str) -> bool:
        return self._auth_method(_clean_mount(mount)) is not None

    def enable_kubernetes_auth(self, mount: str = "kubernetes") -> None:
        mount = _clean_mount(mount)
        entry = self._auth_method(mount)
        if entry is None:
            try:
                with self._translated_errors("enable kubernetes auth at", f"sys/auth/{mount}"):
                    self._hvac.sys.enable_auth_method("kubernetes", path=mount)
            except VaultError:
                entry = self._auth_method(mount)  # a concurrent caller enabled it first?
                if entry is None:
                    raise
            else:
                _log.info("enabled kubernetes auth at auth/%s", mount)
                return
        if entry.get("type") != "kubernetes":
            raise VaultError(
                f"auth/{mount} at {self.address} is already a {entry.get('type')} auth method, "
                "not kubernetes",
                address=self.address,
                operation="enable kubernetes auth at",
                path=f"sys/auth/{mount}",
            )

    def configure_kubernetes_auth(
        self,
        *,
        mount: str,
        kubernetes_host: str,
        kubernetes_ca_cert: str | None,
        disable_local_ca_jwt: bool,
        token_reviewer_jwt: SecretValue | None = None,
    ) -> None:
        """Write ``auth/<mount>/config``. Vault does not contact ``kubernetes_host`` while doing so."""
        mount = _clean_mount(mount)
        secrets = [token_reviewer_jwt] if token_reviewer_jwt is not None else []
        with self._translated_errors("configure", f"auth/{mount}/config", secrets):
            self._hvac.auth.kubernetes.configure(
                kubernetes_host=kubernetes_host,
                kubernetes_ca_cert=kubernetes_ca_cert,
                token_reviewer_jwt=token_reviewer_jwt,
                disable_local_ca_jwt=disable_local_ca_jwt,
                mount_point=mount,
            )

    def kubernetes_auth_config(self, mount: str) -> dict[str, Any] | None:
        """The stored config (the reviewer JWT is never returned, only ``token_reviewer_jwt_set``)."""
        mount = _clean_mount(mount)
        with self._translated_errors("read", f"auth/{mount}/config"):
            answer = self._call("GET", _url_path("auth", mount, "config"), missing_ok=True)
        return None if answer is None else dict(answer["data"])

    def write_policy(self, name: str, hcl: str) -> None:
        with self._translated_errors("write policy", f"sys/policies/acl/{name}"):
            self._hvac.sys.create_or_update_acl_policy(name=name, policy=hcl)

    def read_policy(self, name: str) -> str | None:
        with self._translated_errors("read policy", f"sys/policies/acl/{name}"):
            answer = self._call("GET", _url_path("sys/policies/acl", name), missing_ok=True)
        return None if answer is None else str(answer["data"]["policy"])

    def write_kubernetes_role(
        self,
        *,
        mount: str,
        role: str,
        service_account_names: Sequence[str],
        namespaces: Sequence[str],
        policies: Sequence[str],
        ttl: str = "1h",
    ) -> None:
        mount = _clean_mount(mount)
        if not service_account_names or not namespaces:
            raise ValueError("a kubernetes role needs at least one service account name and one namespace")
        role_path = f"auth/{mount}/role/{role}"
        with self._translated_errors("write role", role_path):
            self._call(
                "POST",
                _url_path("auth", mount, "role", role),
                body={
                    "bound_service_account_names": list(service_account_names),
                    "bound_service_account_namespaces": list(namespaces),
                    "token_policies": list(policies),
                    "token_ttl": ttl,
                },
            )

    def read_kubernetes_role(self, *, mount: str, role: str) -> dict[str, Any] | None:
        mount = _clean_mount(mount)
        with self._translated_errors("read role", f"auth/{mount}/role/{role}"):
            answer = self._call("GET", _url_path("auth", mount, "role", role), missing_ok=True)
        return None if answer is None else dict(answer["data"])
