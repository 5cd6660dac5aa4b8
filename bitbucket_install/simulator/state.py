"""What the simulator remembers between requests, in Django's default cache: for each
(app, workspace) it installed, the clientKey and the current shared secret (which signs the
next install's callback, as Bitbucket signs a re-install), and the counter behind
``connection:<n>`` clientKeys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.core.cache import cache

from bitbucket_install.simulator.base import Descriptor, LinkParameters, Workspace

CACHE_PREFIX = "bitbucket_install_simulator:"
CONNECTION_COUNTER = CACHE_PREFIX + "connection"


@dataclass(frozen=True)
class PreviousInstall:
    client_key: str
    shared_secret: str


def install_key(link: LinkParameters, descriptor: Descriptor, workspace: Workspace) -> str:
    """The cache key of one app on one workspace (a registered app and an unregistered one
    with the same key are different apps, as on Bitbucket)."""
    mode = "registered" if link.addon_key is not None else "descriptor"
    identity = f"{mode}\n{descriptor.key}\n{workspace.uuid}".encode()
    return CACHE_PREFIX + hashlib.sha256(identity).hexdigest()


def previous_install(key: str) -> PreviousInstall | None:
    """The install remembered under ``key``; None if there is none, or it is garbled."""
    stored = cache.get(key)
    if not isinstance(stored, dict):
        return None
    client_key, shared_secret = stored.get("client_key"), stored.get("shared_secret")
    if isinstance(client_key, str) and isinstance(shared_secret, str):
        return PreviousInstall(client_key, shared_secret)
    return None


def remember_install(key: str, client_key: str, shared_secret: str) -> None:
    cache.set(key, {"client_key": client_key, "shared_secret": shared_secret}, None)


def next_connection_number() -> int:
    # A random start keeps numbers apart from installs a forgotten cache once made.
    cache.add(CONNECTION_COUNTER, secrets.randbelow(900_000) + 100_000, timeout=None)
    return int(cache.incr(CONNECTION_COUNTER))
