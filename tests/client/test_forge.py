"""``BitbucketClient(forge_installation)``: the app system token Forge last sent, as
``Authorization: Bearer``, to the Forge installation's API base URL; nothing sent without
a cached token or to an origin not allowed; 429s retried as for Connect; no JWT grant.

The fake Bitbucket accepts the Bearer tokens it was told about (``bearer_tokens``) and
refuses any other, so a test that passes saw the right token arrive.
"""

from __future__ import annotations

import asyncio
import logging
import time

import jwt
import pytest
from pytest_django.fixtures import Settings

from bitbucket_install.client import AsyncBitbucketClient, BitbucketClient
from bitbucket_install.exceptions import (
    OriginNotAllowed,
    RateLimited,
    RequestNotSent,
    TokenRefused,
)
from bitbucket_install.forge import system_tokens
from bitbucket_install.models import ForgeInstallation
from tests.client.conftest import FakeTime
from tests.client.fake_bitbucket import Answer, FakeBitbucket, running

INSTALLATION_ID = "ari:cloud:ecosystem::installation/0b6f2c55-7d4e-4f7a-9d0c-3c1f0e8a2b11"
WORKSPACE_ID = "6c1a0f3e-2b4d-4e5f-8a9b-0c1d2e3f4a5b"
RATE_LIMITED = Answer.text(429, "Rate limit for this resource has been exceeded")


def system_token(lifetime: int = 3600) -> str:
    """A token shaped as Forge's: a JWT with an ``exp`` (the client never verifies it)."""
    claims = {"sub": INSTALLATION_ID, "exp": int(time.time()) + lifetime}
    return jwt.encode(claims, "forge-signing-key-not-checked-here", algorithm="HS256")


@pytest.fixture
def forge_installation(db: None, bitbucket: FakeBitbucket) -> ForgeInstallation:
    installation: ForgeInstallation = ForgeInstallation.objects.create(
        installation_id=INSTALLATION_ID,
        app_id="ari:cloud:ecosystem::app/5e0c4b1a-8f2d-4c3b-9a1e-7d6f5e4c3b2a",
        workspace_id=WORKSPACE_ID,
        api_base_url=bitbucket.url,
    )
    return installation


@pytest.fixture
def token(forge_installation: ForgeInstallation, bitbucket: FakeBitbucket) -> str:
    made = system_token()
    system_tokens.remember(forge_installation.installation_id, made)
    bitbucket.bearer_tokens.add(made)
    return made


def test_every_method_carries_the_system_token(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket, token: str
) -> None:
    with BitbucketClient(forge_installation) as bb:
        methods = [
            bb.get("/2.0/workspaces/w", params={"q": "a b"}).json()["method"],
            bb.post("/2.0/x", json={"a": 1}).json()["method"],
            bb.put("/2.0/x", content=b"raw").json()["method"],
            bb.patch("/2.0/x", data={"f": "v"}).json()["method"],
            bb.delete("/2.0/x").json()["method"],
            bb.request("get", "/2.0/x").json()["method"],
        ]
    assert methods == ["GET", "POST", "PUT", "PATCH", "DELETE", "GET"]
    assert bitbucket.problems == []
    assert [r.headers["authorization"] for r in bitbucket.received] == [f"Bearer {token}"] * 6
    assert bitbucket.received[0].target == "/2.0/workspaces/w?q=a%20b"


def test_the_base_url_is_the_forge_installations(
    db: None, bitbucket: FakeBitbucket, settings: Settings
) -> None:
    for fake in running("/gateway/api"):
        settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = [fake.origin]
        forge_installation = ForgeInstallation.objects.create(
            installation_id=INSTALLATION_ID, app_id="app", api_base_url=fake.url + "/"
        )
        made = system_token()
        system_tokens.remember(INSTALLATION_ID, made)
        fake.bearer_tokens.add(made)
        with BitbucketClient(forge_installation) as bb:
            answer = bb.get("/2.0/repositories/w")
        assert answer.json()["path"] == "/gateway/api/2.0/repositories/w"
        assert fake.problems == []
        assert bitbucket.received == []  # the fixture's fake, on another origin


def test_without_a_cached_token_nothing_is_sent(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket
) -> None:
    with BitbucketClient(forge_installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("/2.0/workspaces/w")
    assert raised.value.reason == "no_system_token"
    assert INSTALLATION_ID in str(raised.value)
    assert bitbucket.received == []


def test_an_expired_token_is_not_sent(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket
) -> None:
    # Cached two minutes ago, expired a minute ago (the cache entry itself still there).
    made = system_token(lifetime=-60)
    system_tokens.remember(INSTALLATION_ID, made, now=time.time() - 120)
    bitbucket.bearer_tokens.add(made)
    with BitbucketClient(forge_installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("/2.0/workspaces/w")
    assert raised.value.reason == "no_system_token"
    assert bitbucket.received == []


@pytest.mark.parametrize("url", ["https://bitbucket.example.net/api", "", "not a url"])
def test_an_origin_not_allowed_gets_no_token(
    forge_installation: ForgeInstallation,
    bitbucket: FakeBitbucket,
    token: str,
    url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forge_installation.api_base_url = url
    with BitbucketClient(forge_installation) as bb, pytest.raises(OriginNotAllowed) as raised:
        bb.get("/2.0/workspaces/w")
    assert raised.value.reason == "origin_not_allowed"
    assert token not in str(raised.value)
    assert bitbucket.received == []
    assert f"installation_id={INSTALLATION_ID}" in caplog.text
    assert token not in caplog.text


def test_a_path_outside_the_api_is_refused(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket, token: str
) -> None:
    with BitbucketClient(forge_installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.get("https://elsewhere.example/2.0/x")
    assert raised.value.reason == "path_not_relative"
    assert bitbucket.received == []


def test_a_429_is_retried_with_the_token(
    forge_installation: ForgeInstallation,
    bitbucket: FakeBitbucket,
    token: str,
    fake_time: FakeTime,
) -> None:
    bitbucket.script.extend([Answer.text(429, "later", **{"Retry-After": "3"}), RATE_LIMITED])
    with BitbucketClient(forge_installation, sleep=fake_time.sleep) as bb:
        answer = bb.get("/2.0/workspaces/w")
    assert answer.status_code == 200
    assert fake_time.sleeps[0] == 3
    assert len(fake_time.sleeps) == 2
    assert [r.headers["authorization"] for r in bitbucket.received] == [f"Bearer {token}"] * 3
    assert bitbucket.problems == []


def test_retries_are_bounded(
    forge_installation: ForgeInstallation,
    bitbucket: FakeBitbucket,
    token: str,
    fake_time: FakeTime,
    settings: Settings,
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = 1
    bitbucket.script.extend([RATE_LIMITED] * 2)
    with (
        BitbucketClient(forge_installation, sleep=fake_time.sleep) as bb,
        pytest.raises(RateLimited) as raised,
    ):
        bb.get("/2.0/workspaces/w")
    assert raised.value.status == 429
    assert len(bitbucket.received) == 2


def test_a_refused_token_raises_token_refused(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket
) -> None:
    system_tokens.remember(INSTALLATION_ID, system_token())  # not one the fake knows
    with BitbucketClient(forge_installation) as bb, pytest.raises(TokenRefused) as raised:
        bb.get("/2.0/workspaces/w")
    assert raised.value.status == 401
    assert bitbucket.problems == ["unknown Bearer token"]


def test_there_is_no_jwt_grant_for_forge(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket, token: str
) -> None:
    with BitbucketClient(forge_installation) as bb, pytest.raises(RequestNotSent) as raised:
        bb.access_token()
    assert raised.value.reason == "forge_no_grant"
    assert "Forge" in str(raised.value)
    assert bitbucket.received == []


def test_the_async_client_carries_the_token_and_retries(
    forge_installation: ForgeInstallation,
    bitbucket: FakeBitbucket,
    token: str,
    fake_time: FakeTime,
) -> None:
    bitbucket.script.append(RATE_LIMITED)

    async def main() -> list[str]:
        async with AsyncBitbucketClient(forge_installation, sleep=fake_time.async_sleep) as bb:
            return [
                (await bb.get("/2.0/workspaces/w")).json()["path"],
                (await bb.post("/2.0/x", json={})).json()["method"],
            ]

    assert asyncio.run(main()) == ["/2.0/workspaces/w", "POST"]
    assert len(fake_time.sleeps) == 1
    assert [r.headers["authorization"] for r in bitbucket.received] == [f"Bearer {token}"] * 3
    assert bitbucket.problems == []


def test_the_async_client_sends_nothing_without_a_token_or_for_a_grant(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket
) -> None:
    async def main() -> list[str]:
        reasons = []
        async with AsyncBitbucketClient(forge_installation) as bb:
            for call in (bb.get("/2.0/workspaces/w"), bb.access_token()):
                try:
                    await call
                except RequestNotSent as error:
                    reasons.append(error.reason)
        return reasons

    assert asyncio.run(main()) == ["no_system_token", "forge_no_grant"]
    assert bitbucket.received == []


def test_logs_name_the_forge_installation_not_the_token(
    forge_installation: ForgeInstallation,
    bitbucket: FakeBitbucket,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bitbucket_install")
    with BitbucketClient(forge_installation) as bb:
        bb.get("/2.0/workspaces/w")
    assert "GET /2.0/workspaces/w answered 200" in caplog.text
    assert token not in caplog.text


def test_the_token_stays_out_of_reprs(
    forge_installation: ForgeInstallation, bitbucket: FakeBitbucket, token: str
) -> None:
    with BitbucketClient(forge_installation) as bb:
        prepared = bb._prepare(bb._http, "GET", "/2.0/workspaces/w", {})
    assert token not in repr(prepared)
    prepared.sign()
    assert prepared.request.headers["Authorization"] == f"Bearer {token}"
    assert bitbucket.received == []
