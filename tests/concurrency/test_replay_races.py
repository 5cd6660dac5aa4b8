"""Copies of one single-use token sent at the same moment: exactly one gets through.

``connect_jwt_required(single_use=True)`` against Django's ``RedisCache`` on a real Redis
(127.0.0.1:6379, database 5), with the views on a threaded live server and the rows on
PostgreSQL or MariaDB. ``cache.add`` is Redis's ``SET NX``: whatever the timing, one
request adds the key and every other copy finds it. Without Redis these tests fail (they
never skip): CI starts it.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token
from tests.concurrency.conftest import SignalLog, http_request, send_together
from tests.decorators import views

pytestmark = [
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.decorators.views"),
]

REDIS_URL = "redis://127.0.0.1:6379/5"
CLIENT_KEY = "ari:cloud:bitbucket::app/{replay-race}/example-app"
SECRET = "secret-of-the-replay-race-0123456789"
COPIES = 8
# Each round races on a fresh token: a few rounds make a real overlap likely on every
# run, not just possible.
ROUNDS = 5


@pytest.fixture
def redis_replay_cache(settings: Settings) -> Iterator[str]:
    """The replay cache on the real Redis, under a prefix of this test; its keys are
    removed afterwards. Fails (never skips) when Redis does not answer."""
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        server.ping()
    except redis.RedisError as error:
        pytest.fail(
            f"The replay race tests need Redis at {REDIS_URL} ({error}); start it "
            "(redis-server) or deselect them.",
            pytrace=False,
        )
    prefix = f"bi-replay-race-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "replay": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
    }
    settings.BITBUCKET_INSTALL_REPLAY_CACHE = "replay"
    views.calls.clear()
    yield prefix
    views.calls.clear()
    keys = list(server.scan_iter(f"{prefix}:*"))
    if keys:
        server.delete(*keys)
    server.close()


def signed(path: str, method: str, *, now: float, **claims: object) -> str:
    return encode_token({"iss": CLIENT_KEY, **claims}, SECRET, method=method, path=path, now=now)


def copies_of(
    live_server: LiveServer, path: str, transport: str, tokens: list[str]
) -> list[urllib.request.Request]:
    if transport == "query":
        return [http_request(f"{live_server.url}{path}?jwt={jwt}") for jwt in tokens]
    return [
        http_request(f"{live_server.url}{path}", headers={"Authorization": f"JWT {jwt}"})
        for jwt in tokens
    ]


@pytest.mark.parametrize("path", ["/single", "/async-single"], ids=["sync", "async"])
@pytest.mark.parametrize("transport", ["header", "query"])
def test_copies_of_one_token_let_exactly_one_through(
    live_server: LiveServer,
    redis_replay_cache: str,
    signal_log: SignalLog,
    path: str,
    transport: str,
) -> None:
    installation = Installation.objects.create(client_key=CLIENT_KEY, shared_secret=SECRET)
    server = redis.Redis.from_url(REDIS_URL)
    start = time.time()
    for round_number in range(ROUNDS):
        # A second earlier each round (from one start: a round can take a second).
        jwt = signed(path, "GET", now=start - round_number)

        responses = send_together(copies_of(live_server, path, transport, [jwt] * COPIES))

        statuses = sorted(response.status for response in responses)
        assert statuses == [200] + [401] * (COPIES - 1), statuses
        assert len(views.calls) == round_number + 1
        # One key per accepted token, in Redis, expiring within the token's window.
        keys = list(server.scan_iter(f"{redis_replay_cache}:*"))
        assert len(keys) == round_number + 1
        assert all(0 < server.ttl(key) <= 180 + 30 + 1 for key in keys)
    assert Installation.objects.get(pk=installation.pk).principal_name == (
        f"changed by {path.strip('/').replace('-', '_')}"
    )
    assert signal_log.names() == []
    server.close()


def test_tokens_sharing_a_jti_let_exactly_one_through(
    live_server: LiveServer, redis_replay_cache: str, signal_log: SignalLog
) -> None:
    """Different tokens (each its own iat) with one ``jti`` are one token."""
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret=SECRET)
    start = time.time()
    for round_number in range(ROUNDS):
        token_id = f"delivery-{round_number}"
        tokens = [signed("/single", "POST", now=start - i, jti=token_id) for i in range(COPIES)]
        assert len(set(tokens)) == COPIES
        requests = [
            http_request(
                f"{live_server.url}/single",
                data=b"{}",
                headers={"Authorization": f"JWT {jwt}", "Content-Type": "application/json"},
                method="POST",
            )
            for jwt in tokens
        ]

        responses = send_together(requests)

        statuses = sorted(response.status for response in responses)
        assert statuses == [200] + [401] * (COPIES - 1), statuses
        assert len(views.calls) == round_number + 1
    assert signal_log.names() == []
