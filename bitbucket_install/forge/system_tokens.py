"""The app system tokens Forge sends (``x-forge-oauth-system``), kept for later calls.

A verified invocation's system token is put in Django's default cache, keyed by its
installation, until the token's own ``exp``: Forge offers no way to ask for one, so work
done outside a request (a task, a command) takes the last one it sent. The token is a JWT
whose ``exp`` is read without verifying it (Forge calls the tokens opaque; only its expiry
is read); one without a readable ``exp`` is used for its request only, never cached.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

import jwt
from django.core.cache import cache

logger = logging.getLogger("bitbucket_install")

CACHE_KEY_PREFIX = "bitbucket_install:forge:system_token:"


def cache_key(installation_id: str) -> str:
    # Hashed: an installation ARI has characters (and a length) some backends refuse.
    return CACHE_KEY_PREFIX + hashlib.sha256(installation_id.encode()).hexdigest()


def expiry(token: str) -> float | None:
    """The ``exp`` of ``token`` read without verifying it; None if it has no usable one."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.InvalidTokenError, ValueError, RecursionError):
        return None
    value = claims.get("exp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def remember(installation_id: str, token: str | None, *, now: float | None = None) -> None:
    """Keep ``token`` as the system token of ``installation_id`` until its ``exp``."""
    if not token:
        return
    expires_at = expiry(token)
    if expires_at is None:
        return
    timeout = math.floor(min(expires_at, 2**53) - (time.time() if now is None else now))
    if timeout <= 0:
        return
    try:
        cache.set(cache_key(installation_id), (token, expires_at), timeout)
    # The request that brought the token still has it: a cache that is down only means
    # later work waits for the next invocation, so it is logged, not raised.
    except Exception as error:
        logger.warning(
            "Forge system token not cached: the cache is unavailable (%s)", type(error).__name__
        )


def system_token(installation_id: str, *, now: float | None = None) -> str | None:
    """The last system token Forge sent for ``installation_id``, if it has not expired."""
    entry = cache.get(cache_key(installation_id))
    if not (isinstance(entry, tuple) and len(entry) == 2):
        return None
    token, expires_at = entry
    if expires_at <= (time.time() if now is None else now):
        return None
    return str(token)
