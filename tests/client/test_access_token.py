"""``access_token()``: the JWT grant as sent (form, qsh without the body), and its cache:
reused within its lifetime, one per narrowing, refetched near expiry or for a new secret,
never where a token of another installation or Bitbucket could be returned."""

from __future__ import annotations

import hashlib

import pytest
from django.core.cache import cache

from bitbucket_install.client import BitbucketClient
from bitbucket_install.exceptions import BitbucketAPIError, RequestNotSent, TokenRefused
from bitbucket_install.models import Installation
from tests.client.conftest import FakeTime
from tests.client.fake_bitbucket import Answer, FakeBitbucket

GRANT_QSH = "f045c19462bc33df6431a1f69800ff8fc9e839dfea9d080be9f2bcd59360c73b"
REPO_UUID = "{b7ea02c9-0871-4858-a2a6-a190d7de977c}"


def test_the_grant_is_a_signed_form_post(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-1"
    assert bitbucket.problems == []
    (grant,) = bitbucket.received
    assert (grant.method, grant.target) == ("POST", "/site/oauth2/access_token")
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert grant.form == {"grant_type": ["urn:bitbucket:oauth2:jwt"]}
    assert grant.claims is not None
    assert (
        grant.claims["qsh"]
        == GRANT_QSH
        == hashlib.sha256(b"POST&/site/oauth2/access_token&").hexdigest()
    )


def test_scopes_are_space_separated_and_the_repository_passed_as_given(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        bb.access_token(scopes=["repository:write", "pullrequest", "repository:write"])
        bb.access_token(repository=REPO_UUID)
        bb.access_token("pullrequest:write", repository="b7ea02c9")
    assert bitbucket.problems == []
    assert [g.form for g in bitbucket.grants()] == [
        {"grant_type": ["urn:bitbucket:oauth2:jwt"], "scope": ["pullrequest repository:write"]},
        {"grant_type": ["urn:bitbucket:oauth2:jwt"], "bitbucket_repository": [REPO_UUID]},
        {
            "grant_type": ["urn:bitbucket:oauth2:jwt"],
            "scope": ["pullrequest:write"],
            "bitbucket_repository": ["b7ea02c9"],
        },
    ]
    # The body never enters the qsh: every grant signs the same request.
    assert {g.claims["qsh"] for g in bitbucket.grants() if g.claims} == {GRANT_QSH}


def test_a_second_call_within_the_lifetime_sends_nothing(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    with BitbucketClient(installation) as bb:
        first = bb.access_token()
        fake_time.now += 3600
        second = bb.access_token()
    with BitbucketClient(installation) as other_client:
        third = other_client.access_token()
    assert first == second == third == "access-token-1"
    assert len(bitbucket.received) == 1


def test_each_narrowing_has_its_own_token(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        tokens = [
            bb.access_token(),
            bb.access_token(scopes=["repository"]),
            bb.access_token(scopes=["repository", "pullrequest"]),
            bb.access_token(repository=REPO_UUID),
            bb.access_token(scopes="repository", repository=REPO_UUID),
            # The same narrowings again, spelt differently: all from the cache.
            bb.access_token(None, None),
            bb.access_token(scopes="repository"),
            bb.access_token(scopes=("pullrequest", "repository")),
            bb.access_token(scopes="pullrequest  repository"),
            bb.access_token(repository=REPO_UUID),
            bb.access_token(scopes=["repository"], repository=REPO_UUID),
        ]
    assert tokens[:5] == [f"access-token-{n}" for n in range(1, 6)]
    assert tokens[5:] == [tokens[0], tokens[1], tokens[2], tokens[2], tokens[3], tokens[4]]
    assert len(bitbucket.received) == 5


def test_a_token_is_refetched_shortly_before_it_expires(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    # 60 s of life: reused for 53 (a tenth, rounded up, is kept as a margin).
    bitbucket.grant_expires_in = 60
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-1"
        fake_time.now += 52.9
        assert bb.access_token() == "access-token-1"
        fake_time.now += 0.1
        assert bb.access_token() == "access-token-2"
    assert bitbucket.problems == []
    assert len(bitbucket.received) == 2


def test_an_hour_long_token_is_reused_until_a_minute_before_its_end(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.grant_expires_in = 3600
    bitbucket.leeway = 7200  # the client's clock runs an hour ahead of the server's
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-1"
        fake_time.now += 3539
        assert bb.access_token() == "access-token-1"
        fake_time.now += 1
        assert bb.access_token() == "access-token-2"
    assert bitbucket.problems == []
    assert len(bitbucket.received) == 2


def test_a_new_secret_gets_a_new_token(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-1"
    new_secret = "the-next-shared-secret-after-a-reinstall"
    Installation.objects.filter(pk=installation.pk).update(shared_secret=new_secret)
    installation.refresh_from_db()
    bitbucket.secrets[installation.client_key] = new_secret
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-2"
        assert bb.access_token() == "access-token-2"
    assert bitbucket.problems == []
    assert len(bitbucket.received) == 2


def test_another_installation_never_gets_the_cached_token(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    other = Installation.objects.create(
        client_key="connection:other",
        addon_key=installation.addon_key,
        shared_secret="other-installation-secret-0123456789",
        base_url=installation.base_url,
        base_api_url=installation.base_api_url,
    )
    bitbucket.secrets[other.client_key] = other.shared_secret
    with BitbucketClient(installation) as bb, BitbucketClient(other) as other_bb:
        assert bb.access_token() == "access-token-1"
        assert other_bb.access_token() == "access-token-2"
        assert bb.access_token() == "access-token-1"
    assert bitbucket.problems == []
    assert [g.claims["sub"] for g in bitbucket.grants() if g.claims] == [
        installation.client_key,
        other.client_key,
    ]


def test_the_cache_key_is_short_and_names_no_secret(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        key = bb._grant_call(["repository"], REPO_UUID).cache_key
    assert key.startswith("bitbucket_install:access_token:")
    assert len(key) < 100
    for secret_part in (
        installation.shared_secret,
        hashlib.sha256(installation.shared_secret.encode()).hexdigest(),
    ):
        assert secret_part not in key
    assert installation.client_key not in key


def test_a_token_without_a_lifetime_is_used_once_and_not_kept(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    bitbucket.grant_expires_in = None
    with BitbucketClient(installation) as bb:
        assert bb.access_token() == "access-token-1"
        assert bb.access_token() == "access-token-2"
    assert len(bitbucket.received) == 2


def test_a_cache_entry_of_another_shape_is_ignored(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(installation) as bb:
        key = bb._grant_call(None, None).cache_key
        for junk in ("a token", {"access_token": 5, "reuse_until": 1e12}, {"access_token": "x"}):
            cache.set(key, junk)
            assert bb.access_token().startswith("access-token-")
    assert len(bitbucket.received) == 3


@pytest.mark.parametrize(
    ("answer", "error", "message", "detail"),
    [
        (
            Answer.json(
                400, {"error": "invalid_grant", "error_description": "The JWT is not valid."}
            ),
            BitbucketAPIError,
            "invalid_grant",
            "The JWT is not valid.",
        ),
        (
            Answer.json(401, {"error": "unauthorized_client", "error_description": "No."}),
            TokenRefused,
            "unauthorized_client",
            "No.",
        ),
        (
            Answer.text(200, "not json"),
            BitbucketAPIError,
            "the JWT grant's answer has no access_token",
            "",
        ),
        (
            Answer.json(200, {"token_type": "bearer"}),
            BitbucketAPIError,
            "the JWT grant's answer has no access_token",
            "",
        ),
    ],
    ids=["invalid-grant", "refused", "not-json", "no-token"],
)
def test_a_refused_or_empty_grant_raises_and_keeps_nothing(
    installation: Installation,
    bitbucket: FakeBitbucket,
    answer: Answer,
    error: type[BitbucketAPIError],
    message: str,
    detail: str,
) -> None:
    bitbucket.script.append(answer)
    with BitbucketClient(installation) as bb:
        with pytest.raises(error) as raised:
            bb.access_token()
        key = bb._grant_call(None, None).cache_key
    assert type(raised.value) is error
    assert raised.value.status == answer.status
    assert raised.value.message == message
    assert raised.value.detail == detail
    assert "POST /site/oauth2/access_token" in str(raised.value)
    assert cache.get(key) is None
    assert len(bitbucket.received) == 1


@pytest.mark.parametrize(
    ("scopes", "repository", "reason"),
    [
        ([], None, "scope_malformed"),
        ("", None, "scope_malformed"),
        (["repository write"], None, "scope_malformed"),
        ([5], None, "scope_malformed"),
        (None, "", "repository_malformed"),
        (None, "{uuid with spaces}", "repository_malformed"),
    ],
)
def test_a_malformed_narrowing_is_refused_before_anything_is_sent(
    installation: Installation,
    bitbucket: FakeBitbucket,
    scopes: object,
    repository: str | None,
    reason: str,
) -> None:
    with BitbucketClient(installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.access_token(scopes, repository)  # type: ignore[arg-type]
    assert raised.value.reason == reason
    assert bitbucket.received == []


def test_the_token_never_reaches_the_logs(
    installation: Installation, bitbucket: FakeBitbucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="bitbucket_install")
    with BitbucketClient(installation) as bb:
        token = bb.access_token()
        bb.get("/2.0/user")
    assert caplog.records  # the client logged something...
    jwt_sent = bitbucket.received[0].headers["authorization"].removeprefix("JWT ")
    for record in caplog.records:
        text = record.getMessage()
        assert token not in text
        assert jwt_sent not in text
        assert installation.shared_secret not in text
