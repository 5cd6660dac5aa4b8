"""Single-use Connect JWTs: refuse a verified token that was accepted before.

Connect tokens carry no nonce that Bitbucket promises to check, so a token is accepted
any number of times while its times allow (``iat - leeway`` to ``exp + leeway``). A view
that asks for single use remembers each token it accepted, for that whole window, in a
cache every process shares; ``cache.add`` is atomic, so of N copies sent at the same
moment exactly one gets through.

The key and the timeout are pure functions of the verified claims; ``first_use`` and
``afirst_use`` are the only Django-facing part (the cache of
``BITBUCKET_INSTALL_REPLAY_CACHE``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache

from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import ReplayCacheUnavailable, TokenError

KEY_PREFIX = "bitbucket_install:replay:"
# Set on every view ``connect_jwt_required(single_use=True)`` returns: system check W007
# looks for it among the URLconf's views (the replay cache matters only to them).
SINGLE_USE_ATTRIBUTE = "connect_jwt_single_use"
# A second more than the window, so that a cache whose clock rounds differently, or
# expires a key a little early, never forgets a token its verification still accepts.
TIMEOUT_MARGIN = 1


def replay_key(token: str, claims: Mapping[str, Any]) -> str:
    """The cache key that stands for this verified token.

    With a ``jti`` (a non-empty string), every token of that issuer with that id is one
    token: keyed by the issuer and the id. Without, keyed by the SHA-256 of the token's
    signed part (header and claims as sent). Its signature is left out on purpose: for a
    given secret it follows from the signed part, and a base64 decoder that tolerated
    another spelling of the same signature bytes would otherwise make one token many.
    Hashed either way, so any id is a short key of safe characters for every backend.
    """
    token_id = claims.get("jti")
    if isinstance(token_id, str) and token_id:
        named = json.dumps([claims.get("iss"), token_id], ensure_ascii=True)
        return f"{KEY_PREFIX}jti:{hashlib.sha256(named.encode()).hexdigest()}"
    signed_part = token.rpartition(".")[0]
    return f"{KEY_PREFIX}token:{hashlib.sha256(signed_part.encode()).hexdigest()}"


def replay_timeout(claims: Mapping[str, Any], *, leeway: int, now: float) -> int:
    """Whole seconds from ``now`` until verification refuses the token as expired
    (``exp + leeway``), plus ``TIMEOUT_MARGIN``; at least that margin.

    ``claims`` passed verification, so ``exp`` is a finite number at most ``max_age``
    after ``iat``, and ``iat`` at most ``leeway`` ahead of ``now``: the timeout is at
    most ``max_age + 2 * leeway + TIMEOUT_MARGIN`` (661 s with the defaults).
    """
    expires_at: float = claims["exp"]
    return max(math.ceil(expires_at + leeway - now), 0) + TIMEOUT_MARGIN


def _entry(token: str, claims: Mapping[str, Any], now: float | None) -> tuple[str, int]:
    moment = time.time() if now is None else now
    return replay_key(token, claims), replay_timeout(
        claims, leeway=app_settings.JWT_LEEWAY, now=moment
    )


def _cache() -> tuple[str, BaseCache]:
    alias = app_settings.REPLAY_CACHE
    try:
        return alias, caches[alias]
    except Exception as error:  # InvalidCacheBackendError, or a backend that fails to load
        raise _unavailable(alias, error) from error


def _unavailable(alias: str, error: Exception) -> ReplayCacheUnavailable:
    return ReplayCacheUnavailable(
        alias, f"the replay cache {alias!r} failed: {type(error).__name__}"
    )


def first_use(token: str, claims: Mapping[str, Any], *, now: float | None = None) -> None:
    """Record this verified token as used; ``TokenError("token_replayed")`` if it was.

    Any failure of the cache is ``ReplayCacheUnavailable``: without it nobody can tell a
    replay from a first use, so the caller refuses the request (fails closed).
    """
    key, timeout = _entry(token, claims, now)
    alias, cache = _cache()
    try:
        added = cache.add(key, 1, timeout=timeout)
    except Exception as error:  # whatever the backend raises (redis, pymemcache, a database)
        raise _unavailable(alias, error) from error
    if not added:
        raise TokenError("token_replayed")


async def afirst_use(token: str, claims: Mapping[str, Any], *, now: float | None = None) -> None:
    """``first_use`` for async views, through the cache's async API."""
    key, timeout = _entry(token, claims, now)
    alias, cache = _cache()
    try:
        added = await cache.aadd(key, 1, timeout=timeout)
    except Exception as error:  # whatever the backend raises (redis, pymemcache, a database)
        raise _unavailable(alias, error) from error
    if not added:
        raise TokenError("token_replayed")
