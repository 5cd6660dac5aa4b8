"""bitbucket_install.payloads: lifecycle bodies parsed and checked before any query, and
what an ``installed`` callback may claim (``check_claim``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bitbucket_install.payloads import (
    MAX_ACCOUNT_DEPTH,
    MAX_ACCOUNT_JSON_BYTES,
    MAX_BODY_BYTES,
    ExpectedApp,
    LifecyclePayload,
    PayloadError,
    check_claim,
    parse_lifecycle,
)
from tests.lifecycle_helpers import APP_KEY, CLIENT_KEY, SHARED_SECRET, body_with, lifecycle_body


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


def body_of_size(size: int) -> bytes:
    body = lifecycle_body(padding="")
    body["padding"] = "p" * (size - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


def test_body_at_the_size_limit_is_parsed() -> None:
    assert parse(body_of_size(MAX_BODY_BYTES)).client_key == CLIENT_KEY


def test_valid_body_one_byte_over_the_size_limit_refused() -> None:
    assert reason(body_of_size(MAX_BODY_BYTES + 1)) == "payload_too_large"


def account_of_size(size: int) -> dict[str, Any]:
    """An account whose JSON is exactly ``size`` bytes, as the limit measures it."""
    account = {"display_name": "Acme", "pad": ""}
    account["pad"] = "x" * (size - len(json.dumps(account)))
    assert len(json.dumps(account)) == size
    return account


def account_of_depth(depth: int) -> dict[str, Any]:
    """An account nested ``depth`` containers deep, itself the first."""
    inner: list[Any] = []
    for _ in range(depth - 2):
        inner = [inner]
    return {"nested": inner}


@pytest.mark.parametrize("field", ["principal", "user"])
def test_accounts_at_their_limits_parsed(field: str) -> None:
    at_size = account_of_size(MAX_ACCOUNT_JSON_BYTES)
    assert getattr(parse(body_with(field, at_size)), field) == at_size
    at_depth = account_of_depth(MAX_ACCOUNT_DEPTH)
    assert getattr(parse(body_with(field, at_depth)), field) == at_depth


@pytest.mark.parametrize("field", ["principal", "user"])
def test_accounts_one_past_their_limits_refused(field: str) -> None:
    over_size = account_of_size(MAX_ACCOUNT_JSON_BYTES + 1)
    assert reason(body_with(field, over_size)) == f"payload_{field}"
    over_depth = account_of_depth(MAX_ACCOUNT_DEPTH + 1)
    assert reason(body_with(field, over_depth)) == f"payload_{field}"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["principal", "user"])
def test_accounts_with_non_finite_numbers_refused(field: str, number: str) -> None:
    """json.loads takes them; no database takes them back as JSON."""
    body = json.dumps(body_with(field, {"size": "NUMBER"})).replace('"NUMBER"', number)
    assert reason(body.encode()) == f"payload_{field}"


def test_account_depth_counts_dicts_and_lists_alike() -> None:
    deep: Any = {}
    for level in range(MAX_ACCOUNT_DEPTH - 2):
        deep = {"d": deep} if level % 2 else [deep]
    assert parse(lifecycle_body(user={"u": deep})).user == {"u": deep}
    assert reason(lifecycle_body(user={"u": [deep]})) == "payload_user"


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


# --- display text -----------------------------------------------------------------------------

RLO = "\u202e"  # right-to-left override: "gnp.exe" after it renders as "exe.png"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"{RLO}gnp.exe", "gnp.exe"),
        ("Ac\u200bme", "Acme"),
        ("\ufeffAcme", "Acme"),
        ("\x1b[2JAcme", "[2JAcme"),
        ("Acme\r\nTeam", "AcmeTeam"),
        ("Acme\u00a0Team", "Acme Team"),
        ("Acme\u2028Team\u2029", "AcmeTeam"),
        ("\u2066Acme\u2069\u200e", "Acme"),
        ("Équipe 日本 😀", "Équipe 日本 😀"),
    ],
    ids=repr,
)
def test_display_text_is_cleaned_everywhere_it_is_stored(raw: str, shown: str) -> None:
    principal = {"display_name": raw, "links": {"self": {"name": raw}}, "tags": [raw, 1]}
    payload = parse(lifecycle_body(principal=principal, user={"display_name": raw}))
    assert payload.principal_name == shown
    assert payload.principal == {
        "display_name": shown,
        "links": {"self": {"name": shown}},
        "tags": [shown, 1],
    }
    assert payload.user == {"display_name": shown}


def test_principal_name_is_cut_after_cleaning() -> None:
    payload = parse(lifecycle_body(principal={"display_name": "\u200b" * 10 + "n" * 300}))
    assert payload.principal_name == "n" * 255


def test_names_of_hidden_characters_only_fall_back_to_the_username() -> None:
    payload = parse(lifecycle_body(principal={"display_name": RLO, "username": "acme\u200b"}))
    assert payload.principal_name == "acme"


def test_keys_and_non_text_values_of_accounts_are_kept() -> None:
    account = {"display_name": "Acme", "n": 1.5, "ok": True, "none": None, "k\u200b": "v"}
    assert parse(lifecycle_body(principal=account)).principal == account


# --- what an installed callback may claim --------------------------------------------------

APP = ExpectedApp(
    key=APP_KEY,
    registered_key=APP_KEY,
    bitbucket_origins=frozenset({"https://bitbucket.org", "https://api.bitbucket.org"}),
)
UNREGISTERED = ExpectedApp(
    key=APP_KEY, registered_key=None, bitbucket_origins=APP.bitbucket_origins
)


def claim_reason(body: dict[str, Any], app: ExpectedApp = APP) -> str | None:
    """The reason ``check_claim`` refuses the parsed ``body`` for, or None."""
    payload = parse(body, body.get("eventType", "installed"))
    try:
        check_claim(payload, app)
    except PayloadError as error:
        return error.reason
    return None


def test_the_default_body_is_a_valid_claim() -> None:
    assert claim_reason(lifecycle_body()) is None
    assert claim_reason(lifecycle_body("uninstalled")) is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"key": None}, "payload_key_missing"),
        ({"key": "other-app"}, "payload_key_other_app"),
        ({"clientKey": "connection:1"}, "payload_client_key_other_app"),
        ({"clientKey": "ari:cloud:bitbucket::app/{u}/other-app"}, "payload_client_key_other_app"),
        ({"baseUrl": None}, "payload_baseUrl_missing"),
        ({"baseApiUrl": None}, "payload_baseApiUrl_missing"),
        ({"baseUrl": "https://bitbucket.org.evil.com"}, "payload_baseUrl_origin"),
        ({"baseUrl": "https://user@bitbucket.org"}, "payload_baseUrl_origin"),
        ({"baseUrl": "http://bitbucket.org"}, "payload_baseUrl_origin"),
        ({"baseApiUrl": "http://169.254.169.254/latest/"}, "payload_baseApiUrl_origin"),
        ({"baseApiUrl": "https://api.bitbucket.org:99999"}, "payload_baseApiUrl_origin"),
        ({"baseApiUrl": "https://[::1]:443/2.0"}, "payload_baseApiUrl_origin"),
        ({"sharedSecret": "ecdsa-sha2-nistp256AAAA"}, "payload_shared_secret_unusable"),
        ({"sharedSecret": '{"kty":"oct"}'}, "payload_shared_secret_unusable"),
        ({"baseUrl": "https://BitBucket.org:443/"}, None),
        ({"baseApiUrl": "https://api.bitbucket.org/2.0/"}, None),
    ],
    ids=repr,
)
def test_installed_claims(overrides: dict[str, Any], expected: str | None) -> None:
    assert claim_reason(lifecycle_body(**overrides)) == expected


def test_an_unregistered_app_takes_any_client_key_of_the_right_shape() -> None:
    for client_key in ("connection:1", "ari:cloud:bitbucket::app/{u}/other-app"):
        assert claim_reason(lifecycle_body(clientKey=client_key), UNREGISTERED) is None
    assert claim_reason(lifecycle_body(key="other-app"), UNREGISTERED) == "payload_key_other_app"


def test_without_a_configured_key_no_install_is_this_apps() -> None:
    app = ExpectedApp(key=None, registered_key=None, bitbucket_origins=APP.bitbucket_origins)
    assert claim_reason(lifecycle_body(), app) == "payload_key_other_app"
    assert claim_reason(lifecycle_body(key=None), app) == "payload_key_missing"


def test_origins_are_the_apps_own() -> None:
    app = ExpectedApp(
        key=APP_KEY, registered_key=APP_KEY, bitbucket_origins=frozenset({"https://bb.example"})
    )
    assert claim_reason(lifecycle_body(), app) == "payload_baseUrl_origin"
    body = lifecycle_body(baseUrl="https://bb.example/x", baseApiUrl="https://BB.example:443")
    assert claim_reason(body, app) is None
    assert claim_reason(body) == "payload_baseUrl_origin"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"key": None, "baseUrl": None, "baseApiUrl": None, "clientKey": "connection:1"}, None),
        ({"baseApiUrl": "http://169.254.169.254/"}, None),  # nothing of it is stored
        ({"key": "other-app"}, "payload_key_other_app"),
    ],
    ids=repr,
)
def test_uninstalled_claims(overrides: dict[str, Any], expected: str | None) -> None:
    assert claim_reason(lifecycle_body("uninstalled", **overrides)) == expected
