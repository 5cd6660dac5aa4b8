"""The client's pure parts on their own: Retry-After and backoff, error texts, the grant's
form and answer, path checks, claims, and the errors' own text."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest

from bitbucket_install.api_errors import MAX_TEXT_LENGTH, error_text
from bitbucket_install.exceptions import BitbucketAPIError, RateLimited, TokenRefused
from bitbucket_install.grant import (
    GrantAnswer,
    GrantRequest,
    cache_lifetime,
    grant_request,
    read_grant_answer,
)
from bitbucket_install.outgoing import OutgoingSigner, check_api_path
from bitbucket_install.ratelimit import MIN_WAIT, backoff, next_wait, retry_after
from bitbucket_install.tokens import query_string_hash

NOW = 1_700_000_000.0

# --- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("9999999999", 9999999999.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:13:50 -0000", 30.0),  # parses as naive: GMT all the same
        ("Tue, 14 Nov 2023 23:13:50 +0100", 30.0),
        (formatdate(NOW - 600, usegmt=True), 0.0),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("99999999999", None),
        ("soon", None),
        ("Tue, 14 Nov 2023 25:99:99 GMT", None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, NOW) == seconds


def test_backoff_doubles_up_to_the_cap_and_jitters_within_the_upper_half() -> None:
    assert [backoff(n, 1.0) for n in range(7)] == [2, 4, 8, 16, 30, 30, 30]
    assert [backoff(n, 0.0) for n in range(7)] == [1, 2, 4, 8, 15, 15, 15]
    assert backoff(2, 0.5) == 6
    assert backoff(10**6, 1.0) == 30
    assert backoff(0, -5.0) == backoff(0, 0.0)
    assert backoff(0, 5.0) == backoff(0, 1.0)


def test_next_wait() -> None:
    kwargs = {"retries": 3, "waited": 0.0, "max_wait": 60.0, "fraction": 1.0}
    assert next_wait(attempt=0, asked=None, **kwargs) == 2  # type: ignore[arg-type]
    assert next_wait(attempt=2, asked=None, **kwargs) == 8  # type: ignore[arg-type]
    assert next_wait(attempt=3, asked=None, **kwargs) is None  # type: ignore[arg-type]
    assert next_wait(attempt=0, asked=10.0, **kwargs) == 10  # type: ignore[arg-type]
    assert next_wait(attempt=0, asked=0.0, **kwargs) == MIN_WAIT  # type: ignore[arg-type]
    assert next_wait(attempt=0, asked=61.0, **kwargs) is None  # type: ignore[arg-type]
    waited = {**kwargs, "waited": 55.0}
    assert next_wait(attempt=1, asked=5.0, **waited) == 5  # type: ignore[arg-type]
    assert next_wait(attempt=1, asked=5.5, **waited) is None  # type: ignore[arg-type]
    assert next_wait(attempt=0, asked=None, retries=0, waited=0, max_wait=60, fraction=0) is None


# --- error texts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"type": "error", "error": {"message": "Not found", "detail": "No repo."}}',
            ("Not found", "No repo."),
        ),
        (b'{"type": "error", "error": {"message": "Bad", "data": {"x": 1}}}', ("Bad", "")),
        (
            b'{"error": "invalid_grant", "error_description": "Expired JWT"}',
            ("invalid_grant", "Expired JWT"),
        ),
        (b'{"error": "invalid_scope"}', ("invalid_scope", "")),
        (b'  {"error": {"message": "  two\\n lines\\t here "}}', ("two lines here", "")),
        (
            b"Rate limit for this resource has been exceeded",
            ("Rate limit for this resource has been exceeded", ""),
        ),
        (b"", ("Too Many Requests", "")),
        (b"   \n ", ("Too Many Requests", "")),
        (b"[1, 2]", ("[1, 2]", "")),
        (b'{"error": 5}', ('{"error": 5}', "")),
        (
            b'{"error": {"message": 5, "detail": "d"}}',
            ('{"error": {"message": 5, "detail": "d"}}', ""),
        ),
        (b'{"message": "not the shape"}', ('{"message": "not the shape"}', "")),
        (b"{not json", ("{not json", "")),
        (b"\xff\xfeoops", ("\ufffd\ufffdoops", "")),
        ("evil\u202etxt.exe\u200b".encode(), ("eviltxt.exe", "")),
    ],
)
def test_error_text(body: bytes, expected: tuple[str, str]) -> None:
    assert error_text(body, "Too Many Requests") == expected


def test_error_text_is_cut_and_survives_deep_nesting() -> None:
    message, detail = error_text(
        json.dumps({"error": {"message": "m" * 5000, "detail": "d" * 5000}}).encode()
    )
    assert (len(message), len(detail)) == (MAX_TEXT_LENGTH, MAX_TEXT_LENGTH)
    message, _ = error_text(b"{" * 200_000)
    assert message == "{" * MAX_TEXT_LENGTH
    assert error_text(b"") == ("", "")


# --- the grant --------------------------------------------------------------------------


def test_grant_request() -> None:
    assert grant_request() == GrantRequest(None, None)
    assert grant_request().form == {"grant_type": "urn:bitbucket:oauth2:jwt"}
    assert grant_request("b a a") == GrantRequest("a b", None)
    assert grant_request(["repository:write"], "{uuid}").form == {
        "grant_type": "urn:bitbucket:oauth2:jwt",
        "scope": "repository:write",
        "bitbucket_repository": "{uuid}",
    }
    assert grant_request(iter(["x", "y"])).scope == "x y"


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        (
            b'{"access_token": "t", "expires_in": 7200, "refresh_token": "r"}',
            GrantAnswer("t", 7200),
        ),
        (b'{"access_token": "t"}', GrantAnswer("t", None)),
        (b'{"access_token": "t", "expires_in": "7200"}', GrantAnswer("t", None)),
        (b'{"access_token": "t", "expires_in": true}', GrantAnswer("t", None)),
        (b'{"access_token": "t", "expires_in": 0}', GrantAnswer("t", None)),
        (b'{"access_token": "t", "expires_in": 1.5}', GrantAnswer("t", None)),
        (b'{"access_token": ""}', None),
        (b'{"access_token": 5}', None),
        (json.dumps({"access_token": "t" * 8193}).encode(), None),
        (b'["access_token"]', None),
        (b"not json", None),
        (b"[" * 200_000, None),
    ],
)
def test_read_grant_answer(body: bytes, answer: GrantAnswer | None) -> None:
    assert read_grant_answer(body) == answer


def test_cache_lifetime() -> None:
    assert cache_lifetime(None) == 0
    assert cache_lifetime(1) == 0
    assert cache_lifetime(10) == 8
    assert cache_lifetime(60) == 53
    assert cache_lifetime(3600) == 3540
    assert cache_lifetime(7200) == 7140


# --- signing ----------------------------------------------------------------------------


def test_claims_are_relative_to_the_base_path() -> None:
    signer = OutgoingSigner("app", "connection:1", "secret")
    claims = signer.claims("get", "/api/2.0/x/?b=2&a=1", "/api", now=NOW + 0.9, lifetime=60)
    assert claims == {
        "iss": "app",
        "sub": "connection:1",
        "iat": int(NOW),
        "exp": int(NOW) + 60,
        "qsh": query_string_hash("GET", "/2.0/x", "a=1&b=2"),
    }


@pytest.mark.parametrize("path", ["/", "/2.0/x", "/2.0/x?y=../z", "/2.0/a..b/.c/c."])
def test_check_api_path_accepts(path: str) -> None:
    assert check_api_path(path) == path


@pytest.mark.parametrize("path", [None, b"/2.0/x", 5, "x", "//x", "/a/%2E/b", "/a\\b", "/\x7f"])
def test_check_api_path_refuses(path: object) -> None:
    with pytest.raises(Exception, match="path") as raised:
        check_api_path(path)
    assert raised.value.reason.startswith("path_")  # type: ignore[attr-defined]


# --- the errors' text -------------------------------------------------------------------


def test_api_errors_say_what_they_are() -> None:
    error = BitbucketAPIError(404, "Not found", "No such repository", request="GET /2.0/x")
    assert str(error) == "Bitbucket answered 404 to GET /2.0/x: Not found"
    assert (error.status, error.message, error.detail) == (404, "Not found", "No such repository")
    assert str(BitbucketAPIError(500, "")) == "Bitbucket answered 500"
    assert str(TokenRefused(401, "Unauthorized")) == "Bitbucket answered 401: Unauthorized"
    limited = RateLimited(429, "slow down", request="GET /2.0/x", retry_after=30.0)
    assert limited.retry_after == 30.0
    assert RateLimited(429, "").retry_after is None
    assert isinstance(limited, BitbucketAPIError)
