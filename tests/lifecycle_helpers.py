"""Helpers to drive the ``installed`` / ``uninstalled`` lifecycle callbacks in tests.

- ``lifecycle_body(...)``: a JSON body as Bitbucket sends it; by default a valid claim
  under tests/settings.py (this app's key, one of its clientKeys, Bitbucket's URLs).
- ``body_with(field, value)``: the same with one field set, its name in a variable.
- ``lifecycle_token(...)``: a Connect JWT over ``POST <path>``, as Bitbucket signs a callback
  (qsh relative to the base URL's path, ``iss`` = the clientKey).
- ``raw_hmac_token(claims, secret)``: an HS256 token signed without PyJWT, which refuses
  to sign with a secret shaped like a public key (such secrets are stored by old rows).
- ``post_lifecycle(client, event_type, body, secret=...)``: POSTs the body to the real URL,
  signed with ``secret`` when one is given, unsigned otherwise.
- ``installation_rows()``: a snapshot of every Installation row, to compare before/after.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from django.test import Client
from django.urls import reverse

from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token, query_string_hash

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

APP_KEY = "example-app"  # BITBUCKET_INSTALL_ADDON_KEY of tests/settings.py
CLIENT_KEY = "ari:cloud:bitbucket::app/{0d6f5a1e-1111-4c5e-9a6b-5f1e2d3c4b5a}/example-app"
SHARED_SECRET = "first-shared-secret-0123456789"


def lifecycle_body(
    event_type: str = "installed",
    *,
    client_key: str = CLIENT_KEY,
    shared_secret: str = SHARED_SECRET,
    **overrides: Any,
) -> dict[str, Any]:
    """A full lifecycle body; ``overrides`` replace or add fields (by their JSON name).

    Without overrides it is a claim the app accepts: ``key`` is the descriptor's key,
    ``clientKey`` one of the registered app's, the URLs on Bitbucket's origins.
    """
    body: dict[str, Any] = {
        "key": APP_KEY,
        "clientKey": client_key,
        "publicKey": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        "sharedSecret": shared_secret,
        "baseUrl": "https://bitbucket.org",
        "baseApiUrl": "https://api.bitbucket.org",
        "productType": "bitbucket",
        "eventType": event_type,
        "principal": {
            "type": "workspace",
            "uuid": "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}",
            "display_name": "Acme Team",
            "username": "acme",
        },
        "user": {
            "type": "user",
            "uuid": "{a1b2c3d4-3333-4e5f-8a9b-0c1d2e3f4a5b}",
            "display_name": "Ada Admin",
        },
    }
    body.update(overrides)
    return body


def body_with(field: str, value: Any, event_type: str = "installed") -> dict[str, Any]:
    """``lifecycle_body(event_type)`` with ``field`` (a JSON name held in a variable) set."""
    body = lifecycle_body(event_type)
    body[field] = value
    return body


def lifecycle_token(
    secret: str,
    path: str,
    *,
    iss: str = CLIENT_KEY,
    method: str = "POST",
    query_string: str = "",
    base_path: str | None = None,
    **claims: Any,
) -> str:
    """A Connect JWT over ``method path?query_string``; ``claims`` add to or replace
    ``iss``/``qsh``/``iat``/``exp`` (a None value drops the claim). ``base_path`` defaults
    to the configured one."""
    if base_path is None:
        base_path = app_settings.BASE_PATH
    payload = {
        "iss": iss,
        "qsh": query_string_hash(method, path, query_string, base_path),
        **claims,
    }
    return encode_token(
        {name: value for name, value in payload.items() if value is not None}, secret
    )


def raw_hmac_token(claims: dict[str, Any], secret: str) -> str:
    """``claims`` as an HS256 JWT signed with ``secret``, whatever its shape."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def post_lifecycle(
    client: Client,
    event_type: str,
    body: dict[str, Any] | list[Any] | bytes | str,
    *,
    secret: str | None = None,
    iss: str | None = None,
    token: str | None = None,
    **claims: Any,
) -> TestResponse:
    """POST ``body`` (JSON-encoded unless bytes/str) to the ``event_type`` callback URL.

    With ``secret``, the request carries ``Authorization: JWT <token>`` signed with it over
    this exact request; ``iss`` defaults to the body's clientKey (else ``CLIENT_KEY``).
    ``token`` sends a token as is instead; ``claims`` go to ``lifecycle_token``.
    """
    path = reverse(f"bitbucket_install:{event_type}")
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    if secret is not None:
        if iss is None:
            body_key = body.get("clientKey") if isinstance(body, dict) else None
            iss = body_key if isinstance(body_key, str) else CLIENT_KEY
        token = lifecycle_token(secret, path, iss=iss, **claims)
    if token is None:
        return client.post(path, data=data, content_type="application/json")
    return client.post(
        path, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"JWT {token}"
    )


def installation_rows() -> list[dict[str, Any]]:
    """Every Installation row as a dict, in primary key order."""
    return list(Installation.objects.order_by("pk").values())
