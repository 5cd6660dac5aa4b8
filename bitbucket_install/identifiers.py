"""The shapes of what Bitbucket and the project name: clientKeys, app keys, shared secrets,
webhook event keys and delivery ids, origins, and the display text the app stores and shows.

Pure code: no Django imports. ``tokens``, ``authorize``, ``payloads`` and the Django-facing
modules all take their patterns from here, so a shape is decided in one place.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

import jwt
from jwt.algorithms import HMACAlgorithm

# clientKeys are "ari:cloud:bitbucket::app/{uuid}/{key}" or "connection:{id}"; anything
# else (control characters, spaces, markup, absurd lengths) is refused before a lookup.
CLIENT_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9:/{}._@+=-]{0,254}")
# Atlassian's rule for a descriptor key.
ADDON_KEY_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A shared secret as Bitbucket sends it: printable ASCII without spaces.
SECRET_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
# Bitbucket's webhook event keys ("repo:push", "pullrequest:comment_created"): a resource,
# a colon, an action. The descriptor's webhook module takes at most 64 characters, and "*"
# subscribes to every event (it is never the key of a delivery).
EVENT_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*:[a-z][a-z0-9_]*")
MAX_EVENT_KEY_LENGTH = 64
ALL_EVENTS = "*"
# A delivery's X-Request-UUID: a UUID in its usual hyphenated form, braces allowed.
REQUEST_UUID_PATTERN = re.compile(
    r"(?P<brace>\{)?[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?(brace)\})"
)
# An app-level secret verifies returns for every clientKey: it must resist guessing.
MIN_APP_SECRET_LENGTH = 32
DEFAULT_PORTS = {"http": 80, "https": 443}
# Unicode categories that never belong in a name shown to people: controls (ESC, CR, LF),
# format characters (bidi overrides, zero-width joiners and spaces), surrogates, private
# use, unassigned code points, and line and paragraph separators.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def is_valid_client_key(value: str) -> bool:
    return CLIENT_KEY_PATTERN.fullmatch(value) is not None


def is_valid_event_key(value: str) -> bool:
    """Is ``value`` shaped like a webhook event key (not ``"*"``)?"""
    return len(value) <= MAX_EVENT_KEY_LENGTH and EVENT_KEY_PATTERN.fullmatch(value) is not None


def is_webhook_subscription(value: str) -> bool:
    """May ``value`` be the ``event`` of a descriptor's webhook module: a key or ``"*"``?"""
    return value == ALL_EVENTS or is_valid_event_key(value)


def is_registered_client_key(client_key: str, addon_key: str) -> bool:
    """Does ``client_key`` belong to the registered app ``addon_key``? Its keys end with it
    (``ari:cloud:bitbucket::app/{workspace-uuid}/{app-key}``)."""
    return client_key.startswith("ari:") and client_key.endswith("/" + addon_key)


def is_usable_hmac_secret(secret: str) -> bool:
    """Would PyJWT take ``secret`` as an HMAC key? It refuses values shaped like public keys,
    certificates or JWKs (an algorithm-confusion defence), so such a secret could never
    verify a token; the lifecycle refuses it before it is stored."""
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret.encode())
    except jwt.InvalidKeyError:
        return False
    return True


def clean_display_text(text: str, limit: int | None = None) -> str:
    """``text`` without the characters that hide or reorder what is shown ("gnp.exe" with a
    right-to-left override renders as "exe.png"); other spaces become plain spaces."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in HIDDEN_CATEGORIES:
            continue
        kept.append(" " if category == "Zs" else char)
    cleaned = "".join(kept)
    return cleaned if limit is None else cleaned[:limit]


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased, the default port left out;
    None for anything else (no host, userinfo, another scheme, a malformed port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


# A Forge app's id as its manifest writes it (the descriptor's forgeAppId): an ARI around
# the app's UUID. Whether Bitbucket also takes the bare UUID is not documented.
FORGE_APP_ID_PATTERN = re.compile(
    r"ari:cloud:ecosystem::app/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def is_forge_app_id(value: object) -> bool:
    return isinstance(value, str) and FORGE_APP_ID_PATTERN.fullmatch(value) is not None
