"""``connect_jwt_required(single_use=True)``: a token accepted once is refused after, for as
long as it verifies; a cache that fails refuses everything (503)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import replay
from bitbucket_install.exceptions import ReplayCacheUnavailable, TokenError
from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.decorators.conftest import (
    CLIENT_KEY,
    OTHER_KEY,
    OTHER_SECRET,
    called_views,
    locmem,
    token,
)
from tests.lifecycle_helpers import installation_rows

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.decorators.views")]

# Nothing listens on port 1 of this machine: a Redis client there fails at once.
UNREACHABLE_REDIS = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": "redis://127.0.0.1:1/0",
}


DUMMY = "django.core.cache.backends.dummy.DummyCache"


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]


def post(client: Client, path: str, jwt: str) -> Any:
    return client.post(path, HTTP_AUTHORIZATION=f"JWT {jwt}")


def vary(response: Any) -> list[str]:
    return [name.strip() for name in response["Vary"].split(",")]


def token_key(jwt: str) -> str:
    signed_part = jwt.rpartition(".")[0]
    return f"bitbucket_install:replay:token:{hashlib.sha256(signed_part.encode()).hexdigest()}"


def jti_key(issuer: str, token_id: str) -> str:
    named = json.dumps([issuer, token_id])
    return f"bitbucket_install:replay:jti:{hashlib.sha256(named.encode()).hexdigest()}"


@pytest.mark.parametrize(
    "path", ["/single", "/class", "/single-confirmed"], ids=["function", "class", "confirmed"]
)
def test_the_same_token_twice_is_refused_the_second_time(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    Installation.objects.filter(pk=installation.pk).update(confirmed_at="2026-01-01T00:00Z")
    jwt = token(path)
    first = post(client, path, jwt)
    assert first.status_code == 200
    assert len(called_views()) == 1
    before = installation_rows()
    caplog.clear()

    second = post(client, path, jwt)

    assert second.status_code == 401
    assert second.content == b""
    assert len(called_views()) == 1
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_lines(caplog) == [f"Connect JWT refused on {path}: reason=token_replayed"]
    assert jwt not in caplog.text


def test_a_different_token_is_accepted(client: Client, installation: Installation) -> None:
    now = time.time()
    first, second = token("/single", now=now), token("/single", now=now - 1)
    assert first != second
    assert post(client, "/single", first).status_code == 200
    assert post(client, "/single", second).status_code == 200
    assert called_views() == ["single", "single"]


def test_another_installations_token_is_accepted(
    client: Client, installation: Installation
) -> None:
    now = time.time()
    assert post(client, "/single", token("/single", now=now)).status_code == 200
    other = token("/single", now=now, iss=OTHER_KEY, secret=OTHER_SECRET)
    response = post(client, "/single", other)
    assert response.status_code == 200
    assert response.json()["client_key"] == OTHER_KEY


def test_a_token_without_jti_is_keyed_by_the_hash_of_its_signed_part(
    client: Client, installation: Installation
) -> None:
    jwt = token("/single")
    assert post(client, "/single", jwt).status_code == 200
    assert caches["default"].get(token_key(jwt)) == 1
    assert replay.replay_key(jwt, {"iss": CLIENT_KEY}) == token_key(jwt)


def test_tokens_with_the_same_jti_are_one_token(
    client: Client, installation: Installation, sent_signals: SignalRecorder
) -> None:
    now = time.time()
    first = token("/single", now=now, jti="delivery-1")
    second = token("/single", now=now - 5, jti="delivery-1")
    assert first != second
    assert post(client, "/single", first).status_code == 200
    assert caches["default"].get(jti_key(CLIENT_KEY, "delivery-1")) == 1
    assert caches["default"].get(token_key(first)) is None
    before = installation_rows()

    assert post(client, "/single", second).status_code == 401

    assert called_views() == ["single"]
    assert installation_rows() == before
    assert sent_signals.none_sent
    # Another id, or the same id from another installation, is another token.
    assert post(client, "/single", token("/single", now=now, jti="delivery-2")).status_code == 200
    other = token("/single", now=now, iss=OTHER_KEY, secret=OTHER_SECRET, jti="delivery-1")
    assert post(client, "/single", other).status_code == 200


@pytest.mark.parametrize("token_id", ["", 7, None, ["a"]], ids=["empty", "int", "null", "list"])
def test_a_jti_that_is_no_string_keys_by_the_hash(token_id: object) -> None:
    jwt = token("/single", jti=token_id)
    assert replay.replay_key(jwt, {"iss": CLIENT_KEY, "jti": token_id}) == token_key(jwt)


def test_the_key_never_holds_the_token_or_the_jti() -> None:
    jwt = token("/single", jti="a b:c\n" * 50)
    for key in (
        replay.replay_key(jwt, {"iss": CLIENT_KEY}),
        replay.replay_key(jwt, {"iss": CLIENT_KEY, "jti": "a b:c\n" * 50}),
    ):
        assert len(key) < 120
        assert key.isprintable()
        assert " " not in key


def test_the_signature_is_not_part_of_the_key() -> None:
    """For one secret the signature follows from the signed part: another spelling of it
    (which a lenient base64 decoder might accept) must not make another token."""
    jwt = token("/single")
    respelled = jwt[:-1] + ("A" if jwt[-1] != "A" else "B")
    assert replay.replay_key(respelled, {"iss": CLIENT_KEY}) == replay.replay_key(
        jwt, {"iss": CLIENT_KEY}
    )


@pytest.mark.parametrize(
    ("exp", "leeway", "now", "expected"),
    [
        (1000, 30, 1000, 31),  # at exp: the leeway, and a second
        (1000, 30, 400, 631),  # just issued, 600 s tokens: the longest with the defaults
        (1000, 30, 1030, 1),  # the last second it verifies
        (1000, 0, 999.5, 2),  # partial seconds round up
        (1000.25, 0, 1000, 2),
    ],
)
def test_the_timeout_covers_exp_and_leeway(
    exp: float, leeway: int, now: float, expected: int
) -> None:
    assert replay.replay_timeout({"exp": exp}, leeway=leeway, now=now) == expected


def test_the_cache_holds_the_token_until_it_expires(
    client: Client, installation: Installation, settings: Settings, monkeypatch: Any
) -> None:
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = 45
    added: list[tuple[str, int]] = []
    cache = caches["default"]
    original = cache.add

    def spying_add(key: str, value: Any, timeout: Any = None, version: Any = None) -> bool:
        added.append((key, timeout))
        return original(key, value, timeout=timeout, version=version)

    monkeypatch.setattr(cache, "add", spying_add)
    now = int(time.time())
    jwt = token("/single", now=now)  # exp = now + 180
    assert post(client, "/single", jwt).status_code == 200
    [(key, timeout)] = added
    assert key == token_key(jwt)
    # exp + leeway - now (the request ran a moment after "now"), plus the margin.
    assert 180 + 45 - 2 <= timeout <= 180 + 45 + replay.TIMEOUT_MARGIN


def test_the_replay_cache_setting_picks_the_cache(
    client: Client, installation: Installation, settings: Settings
) -> None:
    settings.CACHES = {"default": locmem(), "replay": locmem()}
    settings.BITBUCKET_INSTALL_REPLAY_CACHE = "replay"
    jwt = token("/single")
    assert post(client, "/single", jwt).status_code == 200
    assert caches["replay"].get(token_key(jwt)) == 1
    assert caches["default"].get(token_key(jwt)) is None
    assert post(client, "/single", jwt).status_code == 401


def test_a_token_refused_for_another_reason_is_not_used_up(
    client: Client, installation: Installation, sent_signals: SignalRecorder
) -> None:
    jwt = token("/single")
    before = installation_rows()
    # The same token on another path fails its qsh: refused before the cache is asked.
    assert post(client, "/single-cached", jwt).status_code == 401
    # Unconfirmed: refused after verifying, still before the cache is asked.
    unconfirmed = token("/single-confirmed")
    assert post(client, "/single-confirmed", unconfirmed).status_code == 401
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert caches["default"].get(token_key(jwt)) is None
    assert caches["default"].get(token_key(unconfirmed)) is None
    assert post(client, "/single", jwt).status_code == 200


def test_views_without_single_use_accept_a_token_again(
    client: Client, installation: Installation
) -> None:
    jwt = token("/bare")
    assert [post(client, "/bare", jwt).status_code for _ in range(3)] == [200] * 3
    assert called_views() == ["bare"] * 3


class BrokenCache:
    """Stands for a cache whose server went away."""

    def add(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


@pytest.mark.parametrize(
    "cache",
    [
        pytest.param({"default": UNREACHABLE_REDIS}, id="redis-down"),
        pytest.param({"other": {"BACKEND": DUMMY}}, id="alias-missing"),
        pytest.param({"default": {"BACKEND": "no.such.Backend"}}, id="backend-missing"),
    ],
)
def test_a_failing_cache_refuses_with_503_and_runs_nothing(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    cache: dict[str, Any],
) -> None:
    settings.CACHES = cache
    before = installation_rows()
    jwt = token("/single")

    response = post(client, "/single", jwt)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "Authorization" in vary(response)
    assert response["Cache-Control"] == "private"
    assert response.content == b""
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    [line] = refusal_lines(caplog)
    assert line.startswith(
        "Connect JWT not accepted on /single: the replay cache default is unavailable ("
    )
    assert line.endswith("); answered 503")
    assert jwt not in caplog.text


def test_a_failing_cache_is_one_error() -> None:
    error = replay._unavailable("replay", ConnectionError("down"))
    assert isinstance(error, ReplayCacheUnavailable)
    assert error.alias == "replay"
    assert str(error) == "the replay cache 'replay' failed: ConnectionError"


def test_first_use_raises_token_replayed(settings: Settings) -> None:
    claims = {"iss": CLIENT_KEY, "exp": time.time() + 60}
    replay.first_use("a.b.c", claims)
    with pytest.raises(TokenError) as caught:
        replay.first_use("a.b.c", claims)
    assert caught.value.reason == "token_replayed"
    replay.first_use("a.b.d-is-the-same-signed-part", {**claims, "jti": "x"})


def test_first_use_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "caches", {"default": BrokenCache()})
    with pytest.raises(ReplayCacheUnavailable) as caught:
        replay.first_use("a.b.c", {"iss": CLIENT_KEY, "exp": time.time() + 60})
    assert isinstance(caught.value.__cause__, ConnectionError)
