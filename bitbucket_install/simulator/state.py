"""What the simulator remembers between requests, in Django's default cache: for each
(app, workspace) it installed, the clientKey and the current shared secret (which signs the
next install's callback, as Bitbucket signs a re-install), and the counter behind
``connection:<n>`` clientKeys; for its API, each installation by clientKey (the secret its
tokens must be signed with, the app, the workspace, the scopes), the access tokens the JWT
grant issued, the application properties, the 429 switch, and for ``PUT /2.0/addon`` how
many each installation received and which are made to refuse it.

It is a development tool's memory: entries are read and written without locks, and a
list of installations is kept for the console (the cache cannot enumerate its keys)."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from bitbucket_install.simulator.base import Descriptor, LinkParameters, Workspace

CACHE_PREFIX = "bitbucket_install_simulator:"
CONNECTION_COUNTER = CACHE_PREFIX + "connection"
INSTALLATIONS = CACHE_PREFIX + "installations"
RATE_LIMITED = CACHE_PREFIX + "rate_limited"
# The console lists this many installations, the most recent first.
MAX_LISTED = 50


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


@dataclass(frozen=True)
class SimulatedInstallation:
    """An installation as the simulated Bitbucket knows it: what verifies its tokens."""

    client_key: str
    shared_secret: str
    app_key: str
    workspace: str
    scopes: tuple[str, ...]
    # DELETE /2.0/addon: Bitbucket deleted it, and accepts its tokens no more.
    deleted: bool = False


def _hashed(prefix: str, *parts: str) -> str:
    return CACHE_PREFIX + prefix + hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def remember_install(
    key: str,
    client_key: str,
    shared_secret: str,
    *,
    app_key: str,
    workspace: str,
    scopes: tuple[str, ...],
) -> None:
    cache.set(key, {"client_key": client_key, "shared_secret": shared_secret}, None)
    save_installation(
        SimulatedInstallation(client_key, shared_secret, app_key, workspace, tuple(scopes))
    )
    listed = cache.get(INSTALLATIONS)
    keys = [item for item in listed if item != client_key] if isinstance(listed, list) else []
    cache.set(INSTALLATIONS, [client_key, *keys][:MAX_LISTED], None)


def save_installation(installation: SimulatedInstallation) -> None:
    cache.set(_hashed("installation:", installation.client_key), vars(installation), None)


def installation(client_key: str) -> SimulatedInstallation | None:
    """The installation of ``client_key``; None if there is none, or it is garbled."""
    stored = cache.get(_hashed("installation:", client_key))
    try:
        found = SimulatedInstallation(**stored)
    except TypeError:
        return None
    return found if found.client_key == client_key else None


def installations() -> list[SimulatedInstallation]:
    """The installations the console lists, the most recent first."""
    listed = cache.get(INSTALLATIONS)
    found = (installation(key) for key in listed) if isinstance(listed, list) else ()
    return [item for item in found if item is not None]


def issue_access_token(
    client_key: str, scopes: tuple[str, ...], repository: str | None, lifetime: int
) -> str:
    """A new access token of the JWT grant, remembered for ``lifetime`` seconds."""
    token = secrets.token_urlsafe(32)
    entry = {"client_key": client_key, "scopes": list(scopes), "repository": repository}
    cache.set(_hashed("token:", token), entry, lifetime)
    return token


def access_token(token: str) -> tuple[str, str | None] | None:
    """``(clientKey, repository)`` of a live access token, or None."""
    stored = cache.get(_hashed("token:", token))
    if not isinstance(stored, dict) or not isinstance(stored.get("client_key"), str):
        return None
    repository = stored.get("repository")
    return stored["client_key"], repository if isinstance(repository, str) else None


def property_value(address: tuple[str, ...]) -> Any:
    """The stored value of the application property at ``address`` (None: none)."""
    return cache.get(_hashed("property:", *address))


def set_property(address: tuple[str, ...], value: dict[str, Any]) -> None:
    cache.set(_hashed("property:", *address), value, None)


def delete_property(address: tuple[str, ...]) -> bool:
    """Delete it; True if there was one."""
    return bool(cache.delete(_hashed("property:", *address)))


def set_rate_limited(calls: int) -> None:
    """The next ``calls`` API calls answer 429 (0 turns the switch off)."""
    cache.set(RATE_LIMITED, max(calls, 0), None)


def rate_limited_calls() -> int:
    value = cache.get(RATE_LIMITED)
    return value if isinstance(value, int) else 0


def take_rate_limited() -> bool:
    """Should this API call answer 429? Counts the switch down."""
    try:
        remaining = cache.decr(RATE_LIMITED)
    except ValueError:  # the switch was never set
        return False
    if remaining < 0:
        cache.set(RATE_LIMITED, 0, None)
        return False
    return True


def next_connection_number() -> int:
    # A random start keeps numbers apart from installs a forgotten cache once made.
    cache.add(CONNECTION_COUNTER, secrets.randbelow(900_000) + 100_000, timeout=None)
    return int(cache.incr(CONNECTION_COUNTER))


# The statuses PUT /2.0/addon can be made to answer for chosen installations: Bitbucket's
# refusal of the token's rights, and an installation it no longer knows.
ADDON_UPDATE_REFUSALS = {403: "Improper authentication.", 404: "Resource not found"}


def refuse_addon_update(client_key: str, status: int | None) -> None:
    """From now on ``PUT /2.0/addon`` of ``client_key`` answers ``status`` (one of
    ``ADDON_UPDATE_REFUSALS``); None accepts it again."""
    key = _hashed("addon_refused:", client_key)
    if status is None:
        cache.delete(key)
        return
    if status not in ADDON_UPDATE_REFUSALS:
        raise ValueError(f"PUT /2.0/addon can be made to answer {sorted(ADDON_UPDATE_REFUSALS)}")
    cache.set(key, status, None)


def addon_update_refusal(client_key: str) -> int | None:
    stored = cache.get(_hashed("addon_refused:", client_key))
    return stored if stored in ADDON_UPDATE_REFUSALS else None


def count_addon_update(client_key: str) -> None:
    """One more ``PUT /2.0/addon`` received for ``client_key`` (refused or not)."""
    key = _hashed("addon_updates:", client_key)
    cache.add(key, 0, None)
    cache.incr(key)


def addon_updates(client_key: str) -> int:
    """How many ``PUT /2.0/addon`` ``client_key`` sent (with a verified token)."""
    value = cache.get(_hashed("addon_updates:", client_key))
    return value if isinstance(value, int) else 0
