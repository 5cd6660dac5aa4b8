"""``AsyncBitbucketClient``: the same signed requests, grant, cache and retries, awaited.

Each test runs its coroutine with ``asyncio.run`` (the suite has no asyncio plugin and
needs none): the fake Bitbucket checks what arrives as for the sync client.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from bitbucket_install.client import AsyncBitbucketClient
from bitbucket_install.exceptions import (
    OriginNotAllowed,
    RateLimited,
    RequestNotSent,
    TokenRefused,
)
from bitbucket_install.models import Installation
from tests.client.conftest import FakeTime
from tests.client.fake_bitbucket import Answer, FakeBitbucket

UUID = "{b7ea02c9-0871-4858-a2a6-a190d7de977c}"


def test_every_method_is_signed_over_itself(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    async def main() -> list[str]:
        async with AsyncBitbucketClient(installation) as bb:
            return [
                (await bb.get(f"/2.0/repositories/{UUID}/r", params={"q": "a b"})).json()[
                    "method"
                ],
                (await bb.post("/2.0/x", json={"a": 1})).json()["method"],
                (await bb.put("/2.0/x", content=b"raw")).json()["method"],
                (await bb.patch("/2.0/x", data={"f": "v"})).json()["method"],
                (await bb.delete("/2.0/x")).json()["method"],
                (await bb.request("get", "/2.0/x")).json()["method"],
            ]

    assert asyncio.run(main()) == ["GET", "POST", "PUT", "PATCH", "DELETE", "GET"]
    assert bitbucket.problems == []
    first = bitbucket.received[0]
    assert first.target == "/2.0/repositories/%7Bb7ea02c9-0871-4858-a2a6-a190d7de977c%7D/r?q=a%20b"
    assert first.claims is not None
    canonical = "GET&/2.0/repositories/%7Bb7ea02c9-0871-4858-a2a6-a190d7de977c%7D/r&q=a%20b"
    assert first.claims["qsh"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_access_token_is_cached(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.grant_expires_in = 60

    async def main() -> list[str]:
        async with AsyncBitbucketClient(installation) as bb:
            tokens = [await bb.access_token(), await bb.access_token()]
            tokens.append(await bb.access_token(scopes=["repository"]))
            fake_time.now += 53
            tokens.append(await bb.access_token())
            return tokens

    assert asyncio.run(main()) == [
        "access-token-1",
        "access-token-1",
        "access-token-2",
        "access-token-3",
    ]
    assert bitbucket.problems == []
    assert len(bitbucket.grants()) == 3


def test_a_token_without_a_lifetime_is_not_kept(
    installation: Installation, bitbucket: FakeBitbucket
) -> None:
    bitbucket.grant_expires_in = None

    async def main() -> list[str]:
        async with AsyncBitbucketClient(installation) as bb:
            return [await bb.access_token(), await bb.access_token()]

    assert asyncio.run(main()) == ["access-token-1", "access-token-2"]


def test_429s_are_retried_with_the_async_sleep(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.extend(
        [Answer.text(429, "later", **{"Retry-After": "4"}), Answer.text(429, "later")]
    )

    async def main() -> int:
        bb = AsyncBitbucketClient(installation, sleep=fake_time.async_sleep)
        try:
            return (await bb.get("/2.0/user")).status_code
        finally:
            await bb.aclose()

    assert asyncio.run(main()) == 200
    assert fake_time.sleeps[0] == 4
    assert 2 <= fake_time.sleeps[1] <= 4
    assert bitbucket.problems == []
    assert len(bitbucket.received) == 3


def test_errors_raise_as_in_the_sync_client(
    installation: Installation, bitbucket: FakeBitbucket, fake_time: FakeTime
) -> None:
    bitbucket.script.extend([Answer.text(429, "Rate limit exceeded")] * 4)
    bitbucket.script.append(Answer.json(403, {"type": "error", "error": {"message": "Forbidden"}}))

    async def main() -> None:
        async with AsyncBitbucketClient(installation, sleep=fake_time.async_sleep) as bb:
            with pytest.raises(RateLimited):
                await bb.get("/2.0/user")
            with pytest.raises(TokenRefused) as refused:
                await bb.get("/2.0/user")
            assert refused.value.message == "Forbidden"

    asyncio.run(main())
    assert len(fake_time.sleeps) == 3
    assert len(bitbucket.received) == 5


def test_refusals_send_nothing(installation: Installation, bitbucket: FakeBitbucket) -> None:
    def no_request(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"the client sent {request.method} {request.url}")

    async def main() -> None:
        transport = httpx.MockTransport(no_request)
        async with AsyncBitbucketClient(installation, transport=transport) as bb:
            with pytest.raises(RequestNotSent):
                await bb.get("//evil.test/x")
            installation.base_url = "https://evil.test"
            with pytest.raises(OriginNotAllowed):
                await bb.access_token()

    asyncio.run(main())
    assert bitbucket.received == []
