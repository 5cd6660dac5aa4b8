"""Lifecycle callback bodies and webhook deliveries, parsed and checked before any query.

``parse_lifecycle`` checks every value for type, length and characters, so SQLite,
PostgreSQL and MariaDB see the same clean data (PostgreSQL refuses NUL bytes; MariaDB would
truncate), and strips the characters that hide or reorder text from the account names.
``check_claim`` then checks what the body claims against what this app is (an
``ExpectedApp``, built from the settings by the caller): a first install is trusted, so it
may claim nothing that would make the app send tokens elsewhere or take another app's keys.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bitbucket_install.exceptions import PayloadError
from bitbucket_install.identifiers import (
    ADDON_KEY_PATTERN,
    REQUEST_UUID_PATTERN,
    SECRET_PATTERN,
    clean_display_text,
    is_registered_client_key,
    is_usable_hmac_secret,
    is_valid_client_key,
    is_valid_event_key,
    origin,
)

__all__ = [
    "ExpectedApp",
    "LifecyclePayload",
    "PayloadError",
    "check_claim",
    "parse_lifecycle",
    "parse_webhook_body",
    "request_uuid",
    "webhook_event",
]

MAX_BODY_BYTES = 64 * 1024
MAX_ACCOUNT_JSON_BYTES = 8 * 1024
# Bitbucket's accounts are a level or two deep. A deeper one (json.loads takes ~1400
# levels) would overflow the stack when the ORM encodes it again, deeper in the call stack.
MAX_ACCOUNT_DEPTH = 16
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Bitbucket's event payloads are a dozen levels deep at most; a receiver that stores or
# encodes a payload much deeper would overflow the stack.
MAX_WEBHOOK_DEPTH = 64
# JSON's "\ud800" escapes decode to lone surrogates, which no database driver can encode.
SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class LifecyclePayload:
    event_type: str
    client_key: str
    key: str
    shared_secret: str
    public_key: str
    base_url: str
    base_api_url: str
    product_type: str
    principal: dict[str, Any] | None
    user: dict[str, Any] | None

    @property
    def principal_uuid(self) -> str:
        return _account_text(self.principal, "uuid", 64)

    @property
    def principal_name(self) -> str:
        return _account_text(self.principal, "display_name", 255) or _account_text(
            self.principal, "username", 255
        )


def _account_text(account: dict[str, Any] | None, field: str, max_length: int) -> str:
    # The account's strings were cleaned by ``_account``: what is cut here is what shows.
    value = (account or {}).get(field)
    return value[:max_length] if isinstance(value, str) else ""


@dataclass(frozen=True)
class ExpectedApp:
    """What a callback must be addressed to."""

    # The descriptor's key; None when the settings give none (a system check reports it).
    key: str | None
    # The key of a registered app, whose clientKeys all end with it; None if unregistered.
    registered_key: str | None
    # Normalised ``scheme://host[:port]`` origins of Bitbucket: the installation's URLs
    # must be on them, since the app sends the installation's tokens there.
    bitbucket_origins: frozenset[str]


def parse_lifecycle(body: bytes, event_type: str) -> LifecyclePayload:
    """The body of an ``installed`` or ``uninstalled`` callback, or ``PayloadError``."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError("payload_too_large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise PayloadError("payload_not_json") from error
    if not isinstance(data, dict):
        raise PayloadError("payload_not_object")
    if data.get("eventType", event_type) != event_type:
        raise PayloadError("payload_event_type")
    client_key = data.get("clientKey")
    if not isinstance(client_key, str) or not is_valid_client_key(client_key):
        raise PayloadError("payload_client_key")
    shared_secret = data.get("sharedSecret", "")
    required_secret = event_type == "installed"
    if not isinstance(shared_secret, str) or (
        (required_secret or shared_secret) and not SECRET_PATTERN.fullmatch(shared_secret)
    ):
        raise PayloadError("payload_shared_secret")
    key = _text(data, "key", 64)
    if key and not ADDON_KEY_PATTERN.fullmatch(key):
        raise PayloadError("payload_key")
    return LifecyclePayload(
        event_type=event_type,
        client_key=client_key,
        key=key,
        shared_secret=shared_secret,
        public_key=_text(data, "publicKey", 4096),
        base_url=_url(data, "baseUrl"),
        base_api_url=_url(data, "baseApiUrl"),
        product_type=_text(data, "productType", 32),
        principal=_account(data, "principal"),
        user=_account(data, "user"),
    )


def check_claim(payload: LifecyclePayload, app: ExpectedApp) -> None:
    """``PayloadError`` unless ``payload`` is a callback for ``app`` from Bitbucket.

    Checked on every ``installed`` callback, signed or not: the first one is trusted on
    first use, and a later one may not claim what the first could not.
    """
    if payload.key and payload.key != app.key:
        raise PayloadError("payload_key_other_app")
    if payload.event_type != "installed":
        return
    if not payload.key:
        raise PayloadError("payload_key_missing")
    if app.registered_key is not None and not is_registered_client_key(
        payload.client_key, app.registered_key
    ):
        raise PayloadError("payload_client_key_other_app")
    for field, url in (("baseUrl", payload.base_url), ("baseApiUrl", payload.base_api_url)):
        if not url:
            raise PayloadError(f"payload_{field}_missing")
        if origin(url) not in app.bitbucket_origins:
            raise PayloadError(f"payload_{field}_origin")
    if not is_usable_hmac_secret(payload.shared_secret):
        # PyJWT refuses a secret shaped like a public key, certificate or JWK as an HMAC
        # key (algorithm confusion), so stored it could never verify a later callback.
        raise PayloadError("payload_shared_secret_unusable")


def _text(data: dict[str, Any], field: str, max_length: int) -> str:
    value = data.get(field, "")
    if value is None:
        return ""
    if (
        not isinstance(value, str)
        or len(value) > max_length
        or CONTROL_CHARACTERS.search(value) is not None
        or SURROGATES.search(value) is not None
    ):
        raise PayloadError(f"payload_{field}")
    return value


def _url(data: dict[str, Any], field: str) -> str:
    value = _text(data, field, 255)
    if value and urlsplit(value).scheme not in {"http", "https"}:
        raise PayloadError(f"payload_{field}")
    return value


def _account(data: dict[str, Any], field: str) -> dict[str, Any] | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, dict) or _deeper_than(value, MAX_ACCOUNT_DEPTH):
        raise PayloadError(f"payload_{field}")
    try:
        # allow_nan=False: NaN and Infinity (1e999 parses as one) are not JSON to jsonb.
        encoded = json.dumps(value, allow_nan=False)
    except ValueError as error:
        raise PayloadError(f"payload_{field}") from error
    # json.dumps writes NUL as \u0000, which PostgreSQL's jsonb refuses; lone surrogates
    # (in keys or values) no driver can encode.
    if (
        len(encoded) > MAX_ACCOUNT_JSON_BYTES
        or "\\u0000" in encoded
        or SURROGATES.search(json.dumps(value, ensure_ascii=False)) is not None
    ):
        raise PayloadError(f"payload_{field}")
    cleaned: dict[str, Any] = _cleaned(value)
    return cleaned


def _cleaned(value: Any) -> Any:
    """``value`` with every string in it made safe to show (``clean_display_text``): its
    names end up on the installed page, in the admin and in messages. (Recursive, but on
    a value already known to be at most ``MAX_ACCOUNT_DEPTH`` deep.)"""
    if isinstance(value, str):
        return clean_display_text(value)
    if isinstance(value, dict):
        return {name: _cleaned(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Is ``value`` nested more than ``limit`` lists/dicts deep? (Level by level: no
    recursion, so it is safe on any depth json.loads returned.)"""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def parse_webhook_body(body: bytes) -> dict[str, Any]:
    """A webhook delivery's body: a JSON object in UTF-8, or ``PayloadError``.

    Strict JSON only: no ``NaN`` or ``Infinity`` (nor numbers that overflow to it), which
    a receiver could not store in a JSON column. The size is the caller's to check.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError("payload_not_utf8") from error
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        raise PayloadError("payload_not_json") from error
    if not isinstance(data, dict):
        raise PayloadError("payload_not_object")
    if _deeper_than(data, MAX_WEBHOOK_DEPTH):
        raise PayloadError("payload_too_deep")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def webhook_event(header: str | None, data: dict[str, Any]) -> str:
    """The delivery's event key: the ``X-Event-Key`` header, else the body's ``event``
    (where Connect's envelope ``{"event": ..., "data": ...}`` carries it)."""
    event = header if header is not None else data.get("event")
    if event is None:
        raise PayloadError("event_missing")
    if not isinstance(event, str) or not is_valid_event_key(event):
        raise PayloadError("event_malformed")
    return event


def request_uuid(header: str | None) -> uuid.UUID:
    """The delivery's id from its ``X-Request-UUID`` header, which every redelivery of it
    repeats: required, since it is what a redelivery is recognised by."""
    if header is None:
        raise PayloadError("request_uuid_missing")
    if REQUEST_UUID_PATTERN.fullmatch(header) is None:
        raise PayloadError("request_uuid_malformed")
    return uuid.UUID(header)  # the pattern allows braces; UUID() takes them off
