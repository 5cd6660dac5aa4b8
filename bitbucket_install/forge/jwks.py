"""Where Forge Invocation Tokens' keys come from, and the client that fetches them.

The JWKS is fetched and cached by PyJWT's ``PyJWKClient`` (one per URL for the process):
``get_signing_key(kid)`` answers from the cached set, refetches it once for a ``kid`` it
does not hold (a rotated key), and refuses after that. No cryptography is imported here, so
the system checks can use the URL rule without the ``forge`` extra.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKError, PyJWTError

from bitbucket_install.authorize import host_of, is_loopback

# Seconds a fetched JWKS is used before it is fetched again. Atlassian documents no cache
# duration nor rotation cadence (docs/forge.rst, "Unknowns"): short enough that a key
# Atlassian withdraws stops verifying within minutes, long enough that one process fetches
# a few times an hour. A new kid is fetched at once, whatever this says.
JWKS_LIFESPAN = 300
# Seconds one fetch may take. Forge waits 5 s for an event's answer: a JWKS that takes
# longer than this would time the invocation out anyway.
JWKS_TIMEOUT = 3
# Seconds after a fetch during which an unknown kid is refused without fetching again:
# tokens with made-up kids, which anyone can send, cannot make every request a fetch.
JWKS_REFETCH_COOLDOWN = 10
JWKS_HEADERS = {"Accept": "application/json", "User-Agent": "django-bitbucket-install"}


class _Client(PyJWKClient):
    """``PyJWKClient`` whose every failure to get a usable JWKS is one
    ``PyJWKClientConnectionError``: an answer that is no JSON, no object or no usable key
    set is Forge's outage too, not a bad token."""

    def fetch_data(self) -> Any:
        try:
            return super().fetch_data()
        except PyJWKClientConnectionError:
            raise
        # OSError: a connection reset while reading the answer; ValueError: a body that
        # is not JSON (or not UTF-8); PyJWK(Set)Error: no usable key in the set.
        except (PyJWTError, PyJWKError, OSError, ValueError) as error:
            raise PyJWKClientConnectionError(
                f"unusable JWKS answer ({type(error).__name__})"
            ) from error


def is_allowed_jwks_url(url: object) -> bool:
    """HTTPS, or HTTP on a loopback host (the tests' and the simulator's key servers)."""
    if not isinstance(url, str) or host_of(url) is None:
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or is_loopback(parts)


@lru_cache(maxsize=8)
def jwks_client(url: str) -> PyJWKClient | None:
    """The process's client for the JWKS at ``url``; None if the URL is not allowed."""
    if not is_allowed_jwks_url(url):
        return None
    return _Client(
        url,
        cache_jwk_set=True,
        lifespan=JWKS_LIFESPAN,
        timeout=JWKS_TIMEOUT,
        headers=JWKS_HEADERS,
        cooldown_duration=JWKS_REFETCH_COOLDOWN,
    )
