"""Atlassian Connect JWT: canonical request, query string hash, encode and verify.

Pure protocol code on PyJWT: no Django imports, so it can be reused and tested alone.
docs/protocol.rst ("Connect JWTs") describes what it implements.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

import jwt
from jwt.algorithms import HMACAlgorithm

from bitbucket_install.exceptions import TokenError
from bitbucket_install.identifiers import CLIENT_KEY_PATTERN, is_valid_client_key

__all__ = [
    "CLIENT_KEY_PATTERN",
    "TokenError",
    "canonical_request",
    "encode_token",
    "is_valid_client_key",
    "query_string_hash",
    "read_unverified",
    "sign_claims",
    "verify_token",
]

ALGORITHM = "HS256"
CONTEXT_QSH = "context-qsh"
MAX_TOKEN_LENGTH = 8192


class _ConnectHMAC(HMACAlgorithm):
    # Bitbucket chooses the shared secrets (some are short) and the app cannot change
    # them, so PyJWT's key-length warning would only be noise on every request.
    def check_key_length(self, key: bytes) -> str | None:
        return None

    def prepare_key(self, key: str | bytes) -> bytes:
        # PyJWT checks that an HMAC secret is no PEM, SSH, DER or JWK key (parsing it as
        # each) on every call; a secret passes or fails the same way each time.
        return _prepared_key(key.encode() if isinstance(key, str) else key)


@lru_cache(maxsize=256)
def _prepared_key(key: bytes) -> bytes:
    prepared: bytes = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)
    return prepared


_jws = jwt.PyJWS(algorithms=[])
_jws.register_algorithm(ALGORITHM, _ConnectHMAC(HMACAlgorithm.SHA256))


def _encode_component(value: str) -> str:
    return quote(value, safe="~")


def _decoded(component: str) -> str:
    """A query component decoded as ``parse_qsl`` decodes it (``+`` is a space)."""
    # Most components are plain: skipping unquote for them halves the qsh's cost.
    if "%" not in component and "+" not in component:
        return component
    return unquote(component.replace("+", " "))


def canonical_path(path: str, base_path: str = "") -> str:
    """The request path relative to the app's base path, as the qsh wants it."""
    base_path = base_path.rstrip("/")
    if base_path and (path == base_path or path.startswith(base_path + "/")):
        path = path[len(base_path) :]
    path = path.strip("/")
    return "/" + path.replace("&", "%26")


def canonical_query(query_string: str) -> str:
    """The query, minus ``jwt``, sorted and encoded as the reference libraries do."""
    values_by_name: dict[str, list[str]] = {}
    # A "jwt=..." part is dropped before decoding (it would be dropped after, and it is
    # most of the query); a "jwt" spelled with escapes is decoded, then dropped below.
    kept = "&".join(
        part for part in query_string.split("&") if part != "jwt" and not part.startswith("jwt=")
    )
    for part in kept.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = _decoded(name), _decoded(value)
        if name != "jwt":
            values_by_name.setdefault(name, []).append(value)
    pairs = sorted(
        (_encode_component(name), ",".join(_encode_component(v) for v in sorted(values)))
        for name, values in values_by_name.items()
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def canonical_request(method: str, path: str, query_string: str, base_path: str = "") -> str:
    return "&".join(
        (method.upper(), canonical_path(path, base_path), canonical_query(query_string))
    )


def query_string_hash(method: str, path: str, query_string: str, base_path: str = "") -> str:
    canonical = canonical_request(method, path, query_string, base_path)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_token(
    claims: Mapping[str, Any],
    secret: str,
    *,
    method: str | None = None,
    path: str = "/",
    query_string: str = "",
    base_path: str = "",
    lifetime: int = 180,
    now: float | None = None,
) -> str:
    """A Connect JWT signed with ``secret``; with ``method``, bound to that request."""
    issued_at = int(time.time() if now is None else now)
    payload: dict[str, Any] = {"iat": issued_at, "exp": issued_at + lifetime, **claims}
    if method is not None:
        payload["qsh"] = query_string_hash(method, path, query_string, base_path)
    return _jws.encode(
        json.dumps(payload, separators=(",", ":")).encode(),
        secret.encode(),
        algorithm=ALGORITHM,
        headers={"typ": "JWT"},
    )


def sign_claims(claims: Mapping[str, Any], secret: str) -> str:
    """An HS256 token of exactly ``claims``, in their order, as compact JSON.

    The header is ``{"typ":"JWT","alg":"HS256"}`` in that order, as atlassian-jwt and
    atlassian-connect-express write it, so a token for the same claims is byte for byte
    theirs.
    """
    return _jws.encode(
        json.dumps(claims, separators=(",", ":")).encode(),
        secret.encode(),
        algorithm=ALGORITHM,
        headers={"typ": "JWT"},
        sort_headers=False,
    )


@dataclass(frozen=True)
class UnverifiedToken:
    """A token's header and claims before its signature is checked: look, don't trust."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def issuer(self) -> str:
        """The ``iss`` claim, checked for type and shape, safe to use as a lookup key."""
        issuer = self.claims.get("iss")
        if not isinstance(issuer, str):
            raise TokenError("token_claims")
        if not is_valid_client_key(issuer):
            raise TokenError("token_issuer")
        return issuer


def read_unverified(token: str) -> UnverifiedToken:
    """Parse a token without trusting it; any malformation is one ``TokenError``."""
    _check_length(token)
    try:
        decoded = _jws.decode_complete(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError) as error:
        raise TokenError("token_malformed") from error
    return _parsed(decoded)


def _check_length(token: str) -> None:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise TokenError("token_malformed")


def _parsed(decoded: dict[str, Any]) -> UnverifiedToken:
    """The header and claims of what ``PyJWS.decode_complete`` returned."""
    try:
        claims = json.loads(decoded["payload"])
    # RecursionError: JSON nested deeper than the interpreter's stack (a few KB of "[").
    except (ValueError, RecursionError) as error:
        raise TokenError("token_malformed") from error
    header = decoded["header"]
    if not isinstance(claims, dict):
        raise TokenError("token_malformed")
    if header.get("alg") != ALGORITHM:
        # Signed installs (RS256 with a kid) would need Atlassian's key server, which
        # Bitbucket does not use: refuse them rather than ever skip the check.
        raise TokenError("token_algorithm")
    return UnverifiedToken(header=header, claims=claims)


def _signed(token: str, secret: str) -> UnverifiedToken:
    """``token`` parsed once, with its signature checked against ``secret``.

    The reasons are those of reading it first and checking the signature after: a token
    that fails to verify is read again (unverified) to tell a malformed one or another
    algorithm from a bad signature. A good token is parsed once, not twice.
    """
    _check_length(token)
    try:
        decoded = _jws.decode_complete(token, key=secret.encode(), algorithms=[ALGORITHM])
    except jwt.InvalidKeyError as error:
        # A secret PyJWT refuses as an HMAC key (shaped like a public key) verifies nothing.
        read_unverified(token)
        raise TokenError("secret_unusable") from error
    except jwt.InvalidTokenError as error:
        read_unverified(token)  # raises token_malformed or token_algorithm if that is why
        raise TokenError("token_signature") from error
    return _parsed(decoded)


def verify_token(
    token: str,
    secret: str,
    *,
    qsh: str | None,
    issuer: str | None = None,
    audience: str | None = None,
    check_audience: bool = True,
    leeway: int = 30,
    max_age: int = 600,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a Connect JWT and return its claims, or raise ``TokenError``.

    ``qsh`` is the hash of the request being served; None is only for callers that bind
    the token to the request some other way (nobody in this app). An ``aud``, when
    present, must be ``audience`` (default: the issuer) unless ``check_audience`` is
    False: then any ``aud`` is ignored (the signature with the installation's own secret
    already binds the token to it).
    """
    unverified = _signed(token, secret)
    claims = unverified.claims
    _check_times(claims, leeway=leeway, max_age=max_age, now=time.time() if now is None else now)
    token_issuer = unverified.issuer
    if issuer is not None and token_issuer != issuer:
        raise TokenError("token_issuer")
    if (
        check_audience
        and "aud" in claims
        and not _audience_matches(claims["aud"], audience or token_issuer)
    ):
        raise TokenError("token_audience")
    token_qsh = claims.get("qsh")
    if not isinstance(token_qsh, str):
        raise TokenError("token_claims")
    if token_qsh == CONTEXT_QSH:
        raise TokenError("token_context_qsh")
    if qsh is not None and not hmac.compare_digest(token_qsh.encode(), qsh.encode()):
        raise TokenError("token_qsh")
    return claims


def _check_times(claims: Mapping[str, Any], *, leeway: int, max_age: int, now: float) -> None:
    issued_at, expires_at = claims.get("iat"), claims.get("exp")
    if not (isinstance(issued_at, (int, float)) and isinstance(expires_at, (int, float))):
        raise TokenError("token_claims")
    if isinstance(issued_at, bool) or isinstance(expires_at, bool):
        raise TokenError("token_claims")
    # JSON's NaN and Infinity parse as floats, and NaN compares false to everything: such
    # a token would pass every time check below and never expire.
    # (Only floats can be: math.isfinite would overflow on a huge int.)
    if any(
        isinstance(value, float) and not math.isfinite(value) for value in (issued_at, expires_at)
    ):
        raise TokenError("token_claims")
    if expires_at + leeway < now:
        raise TokenError("token_expired")
    if issued_at - leeway > now:
        raise TokenError("token_issued_in_future")
    # With the lifetime capped, an unexpired token is at most max_age + leeway old.
    if expires_at - issued_at > max_age:
        raise TokenError("token_too_old")


def _audience_matches(audience: object, expected: str) -> bool:
    if isinstance(audience, str):
        return audience == expected
    if isinstance(audience, list):
        return expected in audience
    return False
