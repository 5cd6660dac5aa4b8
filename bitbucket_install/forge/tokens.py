"""Forge Invocation Tokens (FITs): take one from its request and verify it.

Pure protocol code on PyJWT (and its ``crypto`` extra, the ``forge`` extra of this app): the
caller passes the settings in. A token is accepted only if it is RS256, signed by the key
its ``kid`` names in the JWKS, issued by Forge for this app, within its times (a few
seconds of leeway), with a ``jti``, and from a commercial Forge installation unless its
Isolated Cloud label was allowed. Every refusal is an ``InvocationRefused`` whose
``reason`` is safe to log; a JWKS that cannot be fetched is ``JWKSUnavailable``.
docs/forge.rst describes it all.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

try:
    import cryptography  # noqa: F401
except ImportError as error:
    raise ImportError(
        "bitbucket_install.forge.tokens needs PyJWT's crypto extra (cryptography) to "
        "verify RS256 tokens, which the app's extra installs: "
        "pip install 'django-bitbucket-install[forge]'"
    ) from error

from jwt import PyJWKClientConnectionError, PyJWKClientError

from bitbucket_install.exceptions import InvocationRefused, JWKSUnavailable
from bitbucket_install.forge.invocation import Invocation, is_app_ari, is_ic_label
from bitbucket_install.forge.jwks import jwks_client

__all__ = [
    "ISSUER",
    "LEEWAY",
    "Invocation",
    "InvocationRefused",
    "JWKSUnavailable",
    "bearer_token",
    "check_trace_headers",
    "is_ic_label",
    "verify_invocation",
]

# PyJWKClient's refetch cooldown (2.14) and its cache of the parsed key set (2.15: a warm
# verification parses no key).
MINIMUM_PYJWT = (2, 15)
if tuple(int(part) for part in re.findall(r"\d+", jwt.__version__)[:2]) < MINIMUM_PYJWT:
    raise ImportError(
        f"bitbucket_install.forge.tokens needs PyJWT 2.15 or newer, not {jwt.__version__}: "
        "pip install 'django-bitbucket-install[forge]'"
    )

ALGORITHM = "RS256"
ISSUER = "forge/invocation-token"
# Seconds a token's times may be off. Atlassian documents no clock skew (docs/forge.rst,
# "Unknowns"); FITs live 25 s, so a few seconds is all the leeway that makes sense.
LEEWAY = 5
# FITs carry the whole installation context and grow with it (Atlassian's RFC-138 is
# about headers overflowing); a longer token is refused before anything is parsed.
MAX_TOKEN_LENGTH = 32 * 1024
TRACE_HEADERS = ("x-b3-traceid", "x-b3-spanid")
TIME_CLAIMS = ("exp", "nbf", "iat")

_jws = jwt.PyJWS(algorithms=[ALGORITHM])


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>`` (the scheme in any case)."""
    if not authorization:
        raise InvocationRefused("token_missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvocationRefused("token_scheme")
    token = token.strip()
    if not token:
        raise InvocationRefused("token_missing")
    return token


def check_trace_headers(headers: Mapping[str, str]) -> None:
    """Forge sends Zipkin trace ids with every invocation: a request without is not its."""
    if not all(headers.get(name) for name in TRACE_HEADERS):
        raise InvocationRefused("trace_headers_missing")


def verify_invocation(
    token: str,
    *,
    app_id: str | None,
    jwks_url: str,
    ic_labels: Iterable[str] = (),
    now: float | None = None,
) -> Invocation:
    """Verify a FIT for the app ``app_id`` (its ARI) and return what it says.

    The header is read first: anything but RS256 with a ``kid`` is refused before a key
    is looked up. ``ic_labels``: the Isolated Cloud labels accepted (none by default).
    """
    if not is_app_ari(app_id):
        raise InvocationRefused("app_id_not_configured")
    client = jwks_client(jwks_url)
    if client is None:
        raise InvocationRefused("jwks_url_not_allowed")
    kid = _key_id(token)
    try:
        key = client.get_signing_key(kid)
    except PyJWKClientConnectionError as error:
        raise JWKSUnavailable(str(error)) from error
    except PyJWKClientError as error:
        raise InvocationRefused("key_unknown") from error
    try:
        decoded = _jws.decode_complete(token, key=key, algorithms=[ALGORITHM])
    except (jwt.InvalidTokenError, jwt.PyJWKError) as error:
        raise InvocationRefused("token_signature") from error
    claims = _claims(decoded["payload"])
    _check_claims(claims, app_id, ic_labels, time.time() if now is None else now)
    return Invocation.from_claims(claims, app_id)


def _key_id(token: str) -> str:
    """The ``kid`` of ``token``'s header, once the header says RS256.

    Only the header segment is decoded here (PyJWT's own reading decodes the whole
    token, and checks every character of it: the cost of a second full verification).
    PyJWT reads the header again, strictly, when it verifies the signature, and refuses a
    token whose segments are not canonical base64url; so what this reads leniently can
    only let through a token that is refused a moment later.
    """
    if not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise InvocationRefused("token_malformed")
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError) as error:  # binascii.Error is a ValueError
        raise InvocationRefused("token_malformed") from error
    if not isinstance(header, dict):
        raise InvocationRefused("token_malformed")
    if header.get("alg") != ALGORITHM:
        # none, HS256 "signed" with the public key, ES*: none of them is Forge's.
        raise InvocationRefused("token_algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvocationRefused("token_kid")
    return kid


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    # RecursionError: JSON nested deeper than the interpreter's stack.
    except (ValueError, RecursionError) as error:
        raise InvocationRefused("token_malformed") from error
    if not isinstance(claims, dict):
        raise InvocationRefused("token_malformed")
    return claims


def _check_claims(
    claims: Mapping[str, Any], app_id: str, ic_labels: Iterable[str], now: float
) -> None:
    if claims.get("iss") != ISSUER:
        raise InvocationRefused("token_issuer")
    audience = claims.get("aud")
    if not (audience == app_id or (isinstance(audience, list) and app_id in audience)):
        raise InvocationRefused("token_audience")
    expires_at, not_before, issued_at = (_time(claims, name) for name in TIME_CLAIMS)
    if now >= expires_at + LEEWAY:
        raise InvocationRefused("token_expired")
    if now < not_before - LEEWAY:
        raise InvocationRefused("token_not_yet_valid")
    if now < issued_at - LEEWAY:
        raise InvocationRefused("token_issued_in_future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise InvocationRefused("token_claims")
    if "icLabel" in claims:
        label = claims["icLabel"]
        if not is_ic_label(label):
            raise InvocationRefused("ic_label_malformed")
        if label not in set(ic_labels):
            raise InvocationRefused("ic_label_not_allowed")


def _time(claims: Mapping[str, Any], name: str) -> float:
    """The claim ``name``: a finite number (NaN would compare false and never expire)."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvocationRefused("token_claims")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvocationRefused("token_claims")
    return value
