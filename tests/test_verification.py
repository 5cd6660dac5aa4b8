"""bitbucket_install.verification: where a request's token is and which request it signs."""

from __future__ import annotations

import time

import pytest
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from bitbucket_install.tokens import TokenError, encode_token, query_string_hash
from bitbucket_install.verification import (
    printable,
    request_qsh,
    token_from_header,
    token_from_request,
    verify_request_token,
)

ISSUER = "connection:42"
SECRET = "s3cret"


def test_request_qsh_covers_method_path_and_query(rf: RequestFactory) -> None:
    request = rf.post("/bitbucket/installed?b=2&a=1&jwt=x")
    assert request_qsh(request) == query_string_hash("POST", "/bitbucket/installed", "a=1&b=2")
    assert request_qsh(request) != request_qsh(rf.get("/bitbucket/installed?b=2&a=1"))


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket/")
def test_request_qsh_is_relative_to_the_base_path(rf: RequestFactory) -> None:
    request = rf.post("/bitbucket/installed")
    assert request_qsh(request) == query_string_hash("POST", "/installed", "")


@override_settings(
    FORCE_SCRIPT_NAME="/prefix", BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix"
)
def test_request_qsh_under_a_script_prefix(rf: RequestFactory) -> None:
    request = rf.post("/bitbucket/installed")
    request.path = "/prefix/bitbucket/installed"  # as a handler mounted at /prefix sets it
    assert request_qsh(request) == query_string_hash("POST", "/bitbucket/installed", "")


def test_request_qsh_of_a_non_ascii_path_uses_the_encoded_path(rf: RequestFactory) -> None:
    request = rf.get("/caf%C3%A9/x%26y?q=%C3%A9")
    assert request.path == "/café/x&y"
    assert request_qsh(request) == query_string_hash("GET", "/caf%C3%A9/x&y", "q=%C3%A9")


def test_request_qsh_of_a_bare_request() -> None:
    assert request_qsh(HttpRequest()) == query_string_hash("GET", "/", "")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("JWT abc.def.ghi", "abc.def.ghi"),
        ("JWT   abc.def.ghi  ", "abc.def.ghi"),
        ("JWT ", None),
        ("JWT    ", None),
        ("JWT", None),
        ("Bearer abc.def.ghi", None),
        ("jwt abc.def.ghi", None),
        ("", None),
    ],
)
def test_token_from_header(rf: RequestFactory, header: str, expected: str | None) -> None:
    assert token_from_header(rf.post("/", HTTP_AUTHORIZATION=header)) == expected


def test_token_from_header_without_header(rf: RequestFactory) -> None:
    assert token_from_header(rf.post("/")) is None


def test_token_from_request_prefers_the_header(rf: RequestFactory) -> None:
    request = rf.get("/?jwt=query", HTTP_AUTHORIZATION="JWT header")
    assert token_from_request(request) == "header"


def test_token_from_request_reads_one_query_token(rf: RequestFactory) -> None:
    assert token_from_request(rf.get("/?jwt=query&x=1")) == "query"
    assert token_from_request(rf.get("/?x=1")) is None


def test_token_from_request_refuses_repeated_query_tokens(rf: RequestFactory) -> None:
    with pytest.raises(TokenError) as caught:
        token_from_request(rf.get("/?jwt=one&jwt=two"))
    assert caught.value.reason == "token_repeated"


def test_verify_request_token_accepts_a_token_over_this_request(rf: RequestFactory) -> None:
    request = rf.get("/hook/?a=1")
    token = encode_token({"iss": ISSUER}, SECRET, method="GET", path="/hook/", query_string="a=1")
    assert verify_request_token(request, token, SECRET, issuer=ISSUER)["iss"] == ISSUER


@pytest.mark.parametrize(
    ("path", "issuer", "secret", "expected"),
    [
        ("/other/?a=1", ISSUER, SECRET, "token_qsh"),
        ("/hook/?a=2", ISSUER, SECRET, "token_qsh"),
        ("/hook/?a=1", "connection:43", SECRET, "token_issuer"),
        ("/hook/?a=1", ISSUER, "other-secret", "token_signature"),
    ],
)
def test_verify_request_token_refusals(
    rf: RequestFactory, path: str, issuer: str, secret: str, expected: str
) -> None:
    token = encode_token({"iss": ISSUER}, SECRET, method="GET", path="/hook/", query_string="a=1")
    with pytest.raises(TokenError) as caught:
        verify_request_token(rf.get(path), token, secret, issuer=issuer)
    assert caught.value.reason == expected


def test_verify_request_token_reads_leeway_and_max_age_settings(rf: RequestFactory) -> None:
    request = rf.get("/hook/")
    old = encode_token({"iss": ISSUER}, SECRET, method="GET", path="/hook/", now=0, lifetime=1)
    with pytest.raises(TokenError) as caught:
        verify_request_token(request, old, SECRET, issuer=ISSUER)
    assert caught.value.reason == "token_expired"

    long_lived = encode_token({"iss": ISSUER}, SECRET, method="GET", path="/hook/", lifetime=900)
    with pytest.raises(TokenError) as caught:
        verify_request_token(request, long_lived, SECRET, issuer=ISSUER)
    assert caught.value.reason == "token_too_old"
    with override_settings(BITBUCKET_INSTALL_JWT_MAX_AGE=900):
        assert verify_request_token(request, long_lived, SECRET, issuer=ISSUER)

    just_expired = encode_token({"iss": ISSUER}, SECRET, method="GET", path="/hook/", lifetime=1)
    expired_a_minute_ago = encode_token(
        {"iss": ISSUER}, SECRET, method="GET", path="/hook/", now=time.time() - 62, lifetime=1
    )
    with override_settings(BITBUCKET_INSTALL_JWT_LEEWAY=120):
        assert verify_request_token(request, expired_a_minute_ago, SECRET, issuer=ISSUER)
    with override_settings(BITBUCKET_INSTALL_JWT_LEEWAY=0):
        assert verify_request_token(request, just_expired, SECRET, issuer=ISSUER)
        with pytest.raises(TokenError) as caught:
            verify_request_token(request, expired_a_minute_ago, SECRET, issuer=ISSUER)
        assert caught.value.reason == "token_expired"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b\nc\x1b", "a\\x00b\\nc\\x1b"),
        ("é", "\\xe9"),
        (None, "None"),
        (42, "42"),
        ("x" * 500, "x" * 120),
    ],
)
def test_printable(value: object, expected: str) -> None:
    assert printable(value) == expected


def test_printable_limit() -> None:
    assert printable("abcdef", limit=3) == "abc"
