"""Error answers: 401/403 as ``TokenRefused``, 429 as ``RateLimited`` after bounded retries
(``Retry-After`` in seconds or as a date, else capped backoff with jitter), other statuses as
``BitbucketAPIError``; Bitbucket's message read from JSON, OAuth JSON or plain text."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from pytest_django.fixtures import Settings

from bitbucket_install import client
from bitbucket_install.client import BitbucketClient
from bitbucket_install.exceptions import (
    BitbucketAPIError,
    BitbucketInstallError,
    RateLimited,
    TokenRefused,
)
from bitbucket_install.models import Installation
from tests.client.conftest import FakeTime
from tests.client.fake_bitbucket import Answer, FakeBitbucket

RATE_LIMITED = Answer.text(429, "Rate limit for this resource has been exceeded")
PATH = "/2.0/repositories/my-workspace/my-repo"


def api_error(status: int, message: str, detail: str | None = None) -> Answer:
    error: dict[str, str] = {"message": message}
    if detail is not None:
        error["detail"] = detail
    return Answer.json(status, {"type": "error", "error": error})


def call(installation: Installation, fake_time: FakeTime) -> BitbucketAPIError:
    with (
        BitbucketClient(installation, sleep=fake_time.sleep) as bb,
        pytest.raises(BitbucketAPIError) as raised,
    ):
        bb.get(PATH, params={"secret-ish": "value"})
    return raised.value


@pytest.mark.parametrize(
    ("answer", "error", "message", "detail"),
    [
        (api_error(401, "Unauthorized"), TokenRefused, "Unauthorized", ""),
        (
            api_error(403, "Your credentials lack one or more required privilege scopes.", "x"),
            TokenRefused,
            "Your credentials lack one or more required privilege scopes.",
            "x",
        ),
        (api_error(404, "Repository not found"), BitbucketAPIError, "Repository not found", ""),
        (
            Answer.json(400, {"type": "error", "error": {"message": "Bad", "detail": {"f": 1}}}),
            BitbucketAPIError,
            "Bad",
            "",
        ),
        (
            Answer(500, b"<html><body>Oops</body></html>", {"Content-Type": "text/html"}),
            BitbucketAPIError,
            "<html><body>Oops</body></html>",
            "",
        ),
        (Answer(502, b""), BitbucketAPIError, "Bad Gateway", ""),
        (Answer(503, b"\xff\xfe not utf-8"), BitbucketAPIError, "\ufffd\ufffd not utf-8", ""),
        (
            Answer.json(401, {"error": "invalid_token", "error_description": "Expired."}),
            TokenRefused,
            "invalid_token",
            "Expired.",
        ),
    ],
    ids=[
        "401",
        "403",
        "404",
        "400-detail-object",
        "500-html",
        "502-empty",
        "503-bytes",
        "401-oauth",
    ],
)
def test_error_statuses_raise_with_what_bitbucket_said(
    installation: Installation,
    bitbucket: FakeBitbucket,
    fake_time: FakeTime,
    answer: Answer,
    error: type[BitbucketAPIError],
    message: str,
    detail: str,
) -> None:
    bitbucket.script.append(answer)
    raised = call(installation, fake_time)
    assert type(raised) is error
    assert isinstance(raised, BitbucketInstallError)
    assert (raised.status, raised.message, raised.detail) == (answer.status, message, detail)
    assert str(raised) == f"Bitbucket answered {answer.status} to GET {PATH}: {message}"
    assert "secret-ish" not in str(raised)  # the query stays out of messages
    assert len(bitbucket.received) == 1  # only 429 is retried
    assert fake_time.sleeps == []


def test_a_long_or_hostile_message_is_cleaned_and_cut(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.append(api_error(400, "bad\u202e\r\nline " + "x" * 10_000))
    raised = call(installation, fake_time)
    assert raised.message.startswith("bad line xxx")
    assert len(raised.message) == 500


def test_a_429_then_success_returns_the_success(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.extend([RATE_LIMITED, RATE_LIMITED])
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        response = bb.get(PATH)
    assert response.status_code == 200
    assert bitbucket.problems == []
    assert len(bitbucket.received) == 3
    # No Retry-After (Bitbucket's usual 429): exponential backoff, jittered within
    # the second half of 2 s, then of 4 s.
    first, second = fake_time.sleeps
    assert 1 <= first <= 2
    assert 2 <= second <= 4


def test_each_retry_is_signed_afresh(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.extend([Answer.text(429, "slow down", **{"Retry-After": "5"})] * 2)
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        bb.get(PATH)
    assert bitbucket.problems == []
    issued = [r.claims["iat"] for r in bitbucket.received if r.claims]
    start = issued[0]
    assert issued == [start, start + 5, start + 10]
    assert len({r.headers["authorization"] for r in bitbucket.received}) == 3


def test_retries_are_bounded_and_then_rate_limited_raises(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.extend([RATE_LIMITED] * 10)
    raised = call(installation, fake_time)
    assert type(raised) is RateLimited
    assert raised.status == 429
    assert raised.message == "Rate limit for this resource has been exceeded"
    assert raised.retry_after is None
    assert len(bitbucket.received) == 4  # the call and three retries (the default)
    assert len(fake_time.sleeps) == 3
    for attempt, wait in enumerate(fake_time.sleeps):
        assert 2**attempt <= wait <= 2 ** (attempt + 1)


@pytest.mark.parametrize("retries", [0, 1, 5])
def test_the_number_of_retries_is_a_setting(
    installation: Installation,
    bitbucket: FakeBitbucket,
    fake_time: FakeTime,
    settings: Settings,
    retries: int,
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = retries
    bitbucket.script.extend([RATE_LIMITED] * 10)
    assert type(call(installation, fake_time)) is RateLimited
    assert len(bitbucket.received) == retries + 1
    assert len(fake_time.sleeps) == retries


def test_retry_after_in_seconds_is_honoured(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.append(Answer.text(429, "later", **{"Retry-After": "7"}))
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        assert bb.get(PATH).status_code == 200
    assert fake_time.sleeps == [7]


def test_retry_after_as_a_date_is_honoured(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    date = formatdate(fake_time.now + 12, usegmt=True)
    bitbucket.script.append(Answer.text(429, "later", **{"Retry-After": date}))
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        assert bb.get(PATH).status_code == 200
    assert fake_time.sleeps == [12]


@pytest.mark.parametrize("value", ["0", formatdate(0, usegmt=True)], ids=["zero", "past-date"])
def test_a_retry_after_of_nothing_still_waits_a_second(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime, value: str
) -> None:
    bitbucket.script.append(Answer.text(429, "now", **{"Retry-After": value}))
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        assert bb.get(PATH).status_code == 200
    assert fake_time.sleeps == [1]


def test_an_unreadable_retry_after_falls_back_to_backoff(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.append(Answer.text(429, "?", **{"Retry-After": "soon"}))
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        assert bb.get(PATH).status_code == 200
    (wait,) = fake_time.sleeps
    assert 1 <= wait <= 2


def test_a_retry_after_beyond_the_wait_cap_gives_up_at_once(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.append(Answer.text(429, "an hour", **{"Retry-After": "3600"}))
    raised = call(installation, fake_time)
    assert type(raised) is RateLimited
    assert raised.retry_after == 3600  # for the caller to schedule a later attempt
    assert fake_time.sleeps == []
    assert len(bitbucket.received) == 1


class FixedJitter:
    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


@pytest.mark.parametrize(
    ("fraction", "waits"),
    [(1.0, [2, 4, 8]), (0.0, [1, 2, 4, 8])],
    ids=["longest-jitter", "shortest-jitter"],
)
def test_the_total_wait_is_capped(
    installation: Installation,
    bitbucket: FakeBitbucket,
    fake_time: FakeTime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    fraction: float,
    waits: list[float],
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = 10
    settings.BITBUCKET_INSTALL_API_MAX_RETRY_WAIT = 20
    monkeypatch.setattr(client, "_jitter", FixedJitter(fraction))
    bitbucket.script.extend([RATE_LIMITED] * 20)
    assert type(call(installation, fake_time)) is RateLimited
    # The next wait (16 s, or 15 s at the shortest) would pass 20 s in all: given up.
    assert fake_time.sleeps == waits
    assert len(bitbucket.received) == len(waits) + 1


def test_backoff_is_capped_at_thirty_seconds_a_wait(
    installation: Installation,
    bitbucket: FakeBitbucket,
    fake_time: FakeTime,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = 8
    settings.BITBUCKET_INSTALL_API_MAX_RETRY_WAIT = 3600
    monkeypatch.setattr(client, "_jitter", FixedJitter(1.0))
    bitbucket.leeway = 3600  # the client's clock moves on by minutes
    bitbucket.script.extend([RATE_LIMITED] * 20)
    assert type(call(installation, fake_time)) is RateLimited
    assert fake_time.sleeps == [2, 4, 8, 16, 30, 30, 30, 30]
    assert bitbucket.problems == []


def test_no_wait_allowed_means_no_retry(
    installation: Installation,
    bitbucket: FakeBitbucket,
    fake_time: FakeTime,
    settings: Settings,
) -> None:
    settings.BITBUCKET_INSTALL_API_MAX_RETRY_WAIT = 0
    bitbucket.script.extend([RATE_LIMITED] * 5)
    assert type(call(installation, fake_time)) is RateLimited
    assert fake_time.sleeps == []
    assert len(bitbucket.received) == 1


def test_a_rate_limited_grant_is_retried_too(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.append(Answer.text(429, "later", **{"Retry-After": "3"}))
    with BitbucketClient(installation, sleep=fake_time.sleep) as bb:
        assert bb.access_token() == "access-token-1"
    assert fake_time.sleeps == [3]
    assert bitbucket.problems == []
    assert len(bitbucket.grants()) == 2


def test_the_fake_refuses_a_token_signed_with_another_secret(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    """The stand-in really checks: a wrong secret is Bitbucket's 401, ``TokenRefused``."""
    bitbucket.secrets[installation.client_key] = "not-the-secret-the-client-has-0123"
    raised = call(installation, fake_time)
    assert type(raised) is TokenRefused
    assert raised.status == 401
    assert bitbucket.problems == ["InvalidSignatureError: Signature verification failed"]
