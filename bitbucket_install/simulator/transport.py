"""The simulator's one HTTP function, :func:`send`.

The simulator calls it only as ``transport.send`` (looked up on this module at each call),
so tests replace it with ``monkeypatch.setattr(transport, "send", ...)`` and route the
requests wherever they like, e.g. through Django's test client.

Its callers check every URL before they call it; it adds what a caller cannot: it never
follows a redirect (a 3xx answer comes back as it is), uses no proxy, and reads no more
than ``MAX_RESPONSE_BYTES`` of an answer.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from bitbucket_install.identifiers import DEFAULT_PORTS

TIMEOUT_SECONDS = 10
MAX_RESPONSE_BYTES = 1024 * 1024
# What ``send`` raises when no HTTP answer arrives (refused, timed out, garbled, bad TLS).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


def send(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """Send one HTTP request to ``url``; return the answer's status and (capped) body.
    Raises a ``TRANSPORT_ERRORS`` error when no HTTP answer arrives."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as error:
        raise OSError(f"malformed port in {url!r}") from error
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url!r}")
    # An explicit port always: without one, http.client reads "::1" as host ":" port 1.
    port = DEFAULT_PORTS[parts.scheme] if port is None else port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=TIMEOUT_SECONDS, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=TIMEOUT_SECONDS)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, response.read(MAX_RESPONSE_BYTES)
    finally:
        connection.close()
