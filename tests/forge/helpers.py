"""Tokens for the Forge tests: the vector's own (a copy in tests/data), and tokens minted
with its private key or with keys the tests make."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "forge-fit-vector.json").read_text()
)
APP_ID: str = VECTOR["expected_audience"]
KID: str = VECTOR["header"]["kid"]
CLAIMS: dict[str, Any] = VECTOR["claims"]
INSTALLATION_ID: str = CLAIMS["app"]["installationId"]
# Within the vector's [nbf, exp): its token is from 2023.
NOW = CLAIMS["iat"] + 1
PRIVATE_PEM: bytes = VECTOR["private_key_pem"].encode()
TRACE = {"x-b3-traceid": "a523b7549f0b88c9", "x-b3-spanid": "2a2436c64727923f"}
SYSTEM_TOKEN_LIFETIME = 7200


def claims(**changes: Any) -> dict[str, Any]:
    """The vector's claims with ``changes`` (a value of ``None`` removes the claim)."""
    result = copy.deepcopy(CLAIMS)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def mint(
    payload: dict[str, Any] | None = None,
    *,
    key: Any = None,
    kid: str | None = KID,
    algorithm: str = "RS256",
) -> str:
    """A token of ``payload`` (the vector's claims by default) signed with ``key`` (the
    vector's private key by default), with ``kid`` in its header."""
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(
        CLAIMS if payload is None else payload,
        PRIVATE_PEM if key is None else key,
        algorithm=algorithm,
        headers=headers,
    )


def _segment(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_with_public_key(public_pem: bytes) -> str:
    """The algorithm-confusion token: HS256, its HMAC secret the public key itself (PyJWT
    refuses to make one, so it is made by hand)."""
    signing_input = f"{_segment({'alg': 'HS256', 'kid': KID, 'typ': 'JWT'})}.{_segment(CLAIMS)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def unsigned() -> str:
    """``alg: none``, the vector's claims, no signature."""
    return f"{_segment({'alg': 'none', 'kid': KID, 'typ': 'JWT'})}.{_segment(CLAIMS)}."


def vector_public_pem() -> bytes:
    private = serialization.load_pem_private_key(PRIVATE_PEM, password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@functools.cache
def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def system_token(exp: float | None, **claims: Any) -> str:
    """An OAuth token shaped as Forge's (a JWT; its signature is never checked here)."""
    payload = dict(claims) if exp is None else {**claims, "exp": exp}
    return jwt.encode(payload, "not-the-real-signing-key-of-forge-tokens", algorithm="HS256")


def headers(token: str | None, *, scheme: str = "Bearer", **extra: str) -> dict[str, str]:
    """Forge's request headers: trace ids, ``Authorization``, and ``extra``."""
    result = dict(TRACE)
    if token is not None:
        result["Authorization"] = f"{scheme} {token}"
    result.update(extra)
    return result
