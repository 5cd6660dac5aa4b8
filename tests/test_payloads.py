"""bitbucket_install.payloads: lifecycle bodies parsed and checked before any query."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bitbucket_install.payloads import (
    MAX_ACCOUNT_JSON_BYTES,
    MAX_BODY_BYTES,
    LifecyclePayload,
    PayloadError,
    parse_lifecycle,
)
from tests.lifecycle_helpers import APP_KEY, CLIENT_KEY, SHARED_SECRET, lifecycle_body


def parse(body: dict[str, Any] | bytes, event_type: str = "installed") -> LifecyclePayload:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_lifecycle(raw, event_type)


def reason(body: dict[str, Any] | bytes, event_type: str = "installed") -> str:
    with pytest.raises(PayloadError) as caught:
        parse(body, event_type)
    return caught.value.reason


def test_full_installed_body() -> None:
    payload = parse(lifecycle_body())
    assert payload == LifecyclePayload(
        event_type="installed",
        client_key=CLIENT_KEY,
        key=APP_KEY,
        shared_secret=SHARED_SECRET,
        public_key="MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        base_url="https://bitbucket.org",
        base_api_url="https://api.bitbucket.org",
        product_type="bitbucket",
        principal=lifecycle_body()["principal"],
        user=lifecycle_body()["user"],
    )
    assert payload.principal_uuid == "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}"
    assert payload.principal_name == "Acme Team"


def test_minimal_installed_body() -> None:
    payload = parse({"clientKey": "connection:1", "sharedSecret": "s"})
    assert payload.client_key == "connection:1"
    assert payload.shared_secret == "s"
    assert payload.key == payload.public_key == payload.base_url == payload.product_type == ""
    assert payload.principal is None
    assert payload.user is None
    assert payload.principal_uuid == ""
    assert payload.principal_name == ""


def test_null_text_fields_are_blank() -> None:
    payload = parse(lifecycle_body(publicKey=None, baseUrl=None, key=None, principal=None))
    assert payload.public_key == payload.base_url == payload.key == ""
    assert payload.principal is None


def test_uninstalled_body_may_omit_the_secret() -> None:
    body = lifecycle_body("uninstalled")
    del body["sharedSecret"]
    assert parse(body, "uninstalled").shared_secret == ""
    assert (
        parse(lifecycle_body("uninstalled", shared_secret=""), "uninstalled").shared_secret == ""
    )


def test_event_type_may_be_absent() -> None:
    body = lifecycle_body()
    del body["eventType"]
    assert parse(body).event_type == "installed"


def test_principal_name_falls_back_to_username_and_is_capped() -> None:
    payload = parse(lifecycle_body(principal={"username": "acme", "display_name": 7}))
    assert payload.principal_name == "acme"
    payload = parse(lifecycle_body(principal={"display_name": "n" * 300, "uuid": "u" * 100}))
    assert payload.principal_name == "n" * 255
    assert payload.principal_uuid == "u" * 64


def test_secret_of_255_characters_accepted() -> None:
    assert parse(lifecycle_body(shared_secret="x" * 255)).shared_secret == "x" * 255


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "payload_not_json"),
        (b"", "payload_not_json"),
        (b"\xff\xfe", "payload_not_json"),
        (b"[" * 100_000 + b"]" * 100_000, "payload_too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "payload_not_json"),
        (b"[]", "payload_not_object"),
        (b'"text"', "payload_not_object"),
        (b"null", "payload_not_object"),
        (b"x" * (MAX_BODY_BYTES + 1), "payload_too_large"),
    ],
    ids=["text", "empty", "binary", "deep", "recursion", "list", "string", "null", "large"],
)
def test_bad_raw_bodies(body: bytes, expected: str) -> None:
    assert reason(body) == expected


def test_body_at_the_size_limit_is_parsed() -> None:
    body = lifecycle_body(padding="")
    size = len(json.dumps(body).encode())
    body["padding"] = "p" * (MAX_BODY_BYTES - size)
    raw = json.dumps(body).encode()
    assert len(raw) == MAX_BODY_BYTES
    assert parse(raw).client_key == CLIENT_KEY


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"eventType": "uninstalled"}, "payload_event_type"),
        ({"eventType": None}, "payload_event_type"),
        ({"clientKey": None}, "payload_client_key"),
        ({"clientKey": 12}, "payload_client_key"),
        ({"clientKey": ""}, "payload_client_key"),
        ({"clientKey": "ck\x00"}, "payload_client_key"),
        ({"clientKey": "c" * 300}, "payload_client_key"),
        ({"clientKey": "clé"}, "payload_client_key"),
        ({"clientKey": "has space"}, "payload_client_key"),
        ({"sharedSecret": None}, "payload_shared_secret"),
        ({"sharedSecret": ""}, "payload_shared_secret"),
        ({"sharedSecret": 42}, "payload_shared_secret"),
        ({"sharedSecret": "with space"}, "payload_shared_secret"),
        ({"sharedSecret": "nul\x00"}, "payload_shared_secret"),
        ({"sharedSecret": "é" * 10}, "payload_shared_secret"),
        ({"sharedSecret": "x" * 256}, "payload_shared_secret"),
        ({"key": "bad key"}, "payload_key"),
        ({"key": "k" * 65}, "payload_key"),
        ({"key": 7}, "payload_key"),
        ({"publicKey": "a\x00b"}, "payload_publicKey"),
        ({"publicKey": "p" * 4097}, "payload_publicKey"),
        ({"productType": "bit\nbucket"}, "payload_productType"),
        ({"productType": "p" * 33}, "payload_productType"),
        ({"productType": ["bitbucket"]}, "payload_productType"),
        ({"baseUrl": "javascript:alert(1)"}, "payload_baseUrl"),
        ({"baseUrl": "bitbucket.org"}, "payload_baseUrl"),
        ({"baseUrl": "https://" + "b" * 250}, "payload_baseUrl"),
        ({"baseApiUrl": "ftp://api.bitbucket.org"}, "payload_baseApiUrl"),
        ({"baseApiUrl": "https://api.bitbucket.org/\x7f"}, "payload_baseApiUrl"),
        ({"principal": "acme"}, "payload_principal"),
        ({"principal": ["acme"]}, "payload_principal"),
        ({"principal": {"display_name": "a\x00b"}}, "payload_principal"),
        ({"principal": {"nul\x00": "x"}}, "payload_principal"),
        ({"principal": {"x": "y" * MAX_ACCOUNT_JSON_BYTES}}, "payload_principal"),
        ({"user": 5}, "payload_user"),
        ({"user": {"uuid": "\x00"}}, "payload_user"),
    ],
    ids=repr,
)
def test_bad_fields(overrides: dict[str, Any], expected: str) -> None:
    assert reason(lifecycle_body(**overrides)) == expected


def test_missing_client_key_refused() -> None:
    body = lifecycle_body()
    del body["clientKey"]
    assert reason(body) == "payload_client_key"


def test_missing_secret_refused_for_installed() -> None:
    body = lifecycle_body()
    del body["sharedSecret"]
    assert reason(body) == "payload_shared_secret"


def test_uninstalled_refuses_a_malformed_secret() -> None:
    assert reason(lifecycle_body("uninstalled", shared_secret="a b"), "uninstalled") == (
        "payload_shared_secret"
    )
    assert reason(lifecycle_body("uninstalled"), "installed") == "payload_event_type"


def test_error_carries_its_reason() -> None:
    error = PayloadError("payload_key")
    assert error.reason == "payload_key"
    assert str(error) == "payload_key"
