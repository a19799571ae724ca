"""ServiceAccount TokenRequest and TokenReview for :mod:`sandbox.emulator`.

Tokens are JWT-shaped (``header.claims.signature``, base64url) with the claims of a real projected
service-account token, so OpenBao's Kubernetes auth method can parse them. The signature is random:
verifiers trust TokenReview, and the emulator reviews a token by looking it up among those it issued.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, cast

from sandbox.emulator_model import JsonObject

TOKEN_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"
DEFAULT_TOKEN_AUDIENCES: Final = ("https://kubernetes.default.svc.cluster.local", "k3s")
DEFAULT_TOKEN_SECONDS: Final = 3600

# (namespace, name) -> uid of the service account as it exists now, or None when it is gone.
AccountLookup = Callable[[str, str], str | None]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_token_claims(token: str) -> JsonObject:
    """The claims of a JWT-shaped token (no signature check): handy for tests and diagnostics."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return cast(JsonObject, claims)


def _spec_of(body: Any) -> JsonObject:
    spec = body.get("spec") if isinstance(body, dict) else None
    return spec if isinstance(spec, dict) else {}


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    namespace: str
    service_account: str
    uid: str
    audiences: tuple[str, ...]
    expires_at: float
    token_id: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class ServiceAccountTokens:
    """Issues tokens for service accounts and reviews them; remembers every token it issued."""

    def __init__(self) -> None:
        self._issued: dict[str, IssuedToken] = {}

    def issue(self, namespace: str, name: str, uid: str, request_body: Any) -> JsonObject:
        """Answer a TokenRequest for the service account ``namespace/name`` (whose uid is ``uid``)."""
        spec = _spec_of(request_body)
        audiences = tuple(spec.get("audiences") or DEFAULT_TOKEN_AUDIENCES)
        lifetime = int(spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
        issued_at = int(time.time())
        issued = IssuedToken(namespace, name, uid, audiences, issued_at + lifetime, str(uuid.uuid4()))
        claims: JsonObject = {
            "aud": list(audiences),
            "exp": int(issued.expires_at),
            "iat": issued_at,
            "nbf": issued_at,
            "iss": TOKEN_ISSUER,
            "jti": issued.token_id,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
            "sub": issued.username,
        }
        header = {"alg": "RS256", "kid": "sandbox-" + secrets.token_hex(8)}
        token = ".".join(
            (
                _b64url(json.dumps(header, separators=(",", ":")).encode()),
                _b64url(json.dumps(claims, separators=(",", ":")).encode()),
                _b64url(secrets.token_bytes(256)),  # random: nobody verifies it, TokenReview decides
            )
        )
        self._issued[token] = issued
        expiration = datetime.datetime.fromtimestamp(issued.expires_at, tz=datetime.UTC)
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": list(audiences),
                "expirationSeconds": lifetime,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }

    def review(self, request_body: Any, account_uid: AccountLookup) -> JsonObject:
        """Answer a TokenReview: authenticated only for live tokens we issued to accounts that still exist."""
        spec = _spec_of(request_body)
        wanted_audiences = [str(audience) for audience in spec.get("audiences") or []]
        issued = self._issued.get(str(spec.get("token") or ""))
        status: JsonObject
        if issued is None:
            status = self._rejected("token lookup failed")
        elif issued.expires_at <= time.time():
            status = self._rejected("service account token has expired")
        elif account_uid(issued.namespace, issued.service_account) != issued.uid:
            status = self._rejected("service account has been deleted or recreated")
        elif wanted_audiences and not set(wanted_audiences) & set(issued.audiences):
            status = self._rejected("token audiences is invalid for the target audiences")
        else:
            status = {
                "authenticated": True,
                "user": {
                    "username": issued.username,
                    "uid": issued.uid,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{issued.namespace}",
                        "system:authenticated",
                    ],
                    "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={issued.token_id}"]},
                },
                "audiences": [
                    audience
                    for audience in issued.audiences
                    if not wanted_audiences or audience in wanted_audiences
                ],
            }
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status,
        }

    @staticmethod
    def _rejected(why: str) -> JsonObject:
        return {"authenticated": False, "user": {}, "error": f"[invalid bearer token, {why}]"}
