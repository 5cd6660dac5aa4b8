"""The app's settings, read from ``django.conf.settings`` each time they are used.

Nothing is cached at import, so ``override_settings`` works. The project reads its
environment (django-environ); this app never does.
"""

from __future__ import annotations

import copy
from typing import Any, TypeGuard
from urllib.parse import SplitResult, urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from bitbucket_install.authorize import InstallLink, host_of
from bitbucket_install.forge.invocation import is_ic_label
from bitbucket_install.identifiers import (
    MIN_APP_SECRET_LENGTH,
    is_webhook_subscription,
    origin,
)

DEFAULT_AUTHORIZE_URL = "https://bitbucket.org/site/addons/authorize"
# Where Forge Invocation Tokens' signing keys are published (Atlassian's production JWKS).
DEFAULT_FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
DEFAULT_BITBUCKET_ORIGINS = ("https://bitbucket.org", "https://api.bitbucket.org")
# (smallest, largest, default) seconds of each duration setting: what the protocol needs
# and no more. A larger value would only weaken verification (a year of leeway accepts a
# token that expired months ago), so it is clamped here as well as reported by the checks.
DURATIONS = {
    "JWT_LEEWAY": (0, 5 * 60, 30),
    "JWT_MAX_AGE": (1, 60 * 60, 600),
    "CONFIRM_WINDOW": (1, 60 * 60, 120),
    "FLOW_MAX_AGE": (1, 24 * 60 * 60, 900),
}
# (smallest, largest, default) of the API client's limits (bitbucket_install.client): the
# timeout of one HTTP exchange in seconds, how many times a 429 is retried, and the most
# seconds one call may spend waiting out 429s. Beyond these a call would hang a worker
# (or hammer Bitbucket) for nothing; clamped here, reported by system check E023.
CLIENT_LIMITS = {
    "API_TIMEOUT": (1, 300, 10),
    "API_RETRIES": (0, 10, 3),
    "API_MAX_RETRY_WAIT": (0, 3600, 60),
}
# (smallest, largest, default) bytes of a webhook delivery's body. Bitbucket caps its
# webhook payloads at 256 KB; the default leaves room for Connect's envelope and more.
WEBHOOK_MAX_BYTES_BOUNDS = (1024, 16 * 1024 * 1024, 1024 * 1024)
# The TASKS alias and the queue of the app's tasks when the settings name none: those of
# Django's tasks framework.
DEFAULT_TASK_BACKEND = "default"
DEFAULT_TASK_QUEUE = "default"
# The CACHES alias that remembers the tokens single-use views accepted, when none is set.
DEFAULT_REPLAY_CACHE = "default"
DEFAULT_DESCRIPTOR: dict[str, Any] = {
    "scopes": ["account"],
    "contexts": ["account"],
    "modules": {},
}


def _get(name: str, default: Any = None) -> Any:
    return getattr(django_settings, f"BITBUCKET_INSTALL_{name}", default)


def _text(name: str) -> str | None:
    value = _get(name)
    return value if isinstance(value, str) and value else None


def _split(url: str) -> SplitResult:
    """``url`` split into parts; a URL urlsplit refuses (``http://[::1``) splits as empty,
    so the system checks report it (E007) instead of crashing."""
    try:
        return urlsplit(url)
    except ValueError:
        return urlsplit("")


def _app_path(name: str) -> str | None:
    """The path of the app's URL ``name``, or None when the project's URLconf does not
    include the app's URLs (system check E022 says so; nothing here crashes on it)."""
    try:
        return reverse(f"bitbucket_install:{name}")
    except NoReverseMatch:
        return None


def is_duration(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded(name: str, bounds: dict[str, tuple[int, int, int]] = DURATIONS) -> int:
    smallest, largest, default = bounds[name]
    value = _get(name, default)
    return min(max(value, smallest), largest) if is_duration(value) else default


def is_strong_app_secret(value: object) -> bool:
    return isinstance(value, str) and len(value.strip()) >= MIN_APP_SECRET_LENGTH


def with_path_segment(url: str, segment: str) -> str:
    """``url`` with ``segment`` added as the last segment of its path (trailing slash kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{segment}/"))


class Settings:
    """One typed property per ``BITBUCKET_INSTALL_*`` setting."""

    @property
    def ADDON_KEY(self) -> str | None:
        return _text("ADDON_KEY")

    @property
    def DESCRIPTOR_URI(self) -> str | None:
        return _text("DESCRIPTOR_URI")

    @property
    def BASE_URL(self) -> str | None:
        return _text("BASE_URL")

    @property
    def BASE_PATH(self) -> str:
        """The path part of the base URL, which Connect paths and qsh are relative to."""
        return _split(self.BASE_URL or "").path.rstrip("/")

    @property
    def REDIRECT_URI(self) -> str | None:
        explicit = _text("REDIRECT_URI")
        if explicit is not None or self.BASE_URL is None:
            return explicit
        callback = _app_path("callback")
        return None if callback is None else self.absolute_url(callback)

    def redirect_uri_is_default(self) -> bool:
        """Is ``REDIRECT_URI`` the one derived from the base URL (no setting gives it)?"""
        return _text("REDIRECT_URI") is None

    @property
    def SHARED_SECRET(self) -> str | None:
        """The app-level secret, or None. It verifies returns for every clientKey, so a weak
        one (system check E017) is never used."""
        value = _get("SHARED_SECRET")
        return value if is_strong_app_secret(value) else None

    @property
    def AUTHORIZE_URL(self) -> str:
        explicit = _text("AUTHORIZE_URL")
        if explicit is not None:
            return explicit
        simulator = _app_path("simulator") if self.SIMULATOR else None
        if simulator is not None and self.BASE_URL is not None:
            return self.absolute_url(simulator)
        return DEFAULT_AUTHORIZE_URL

    @property
    def TRUST_UNSIGNED_RETURNS(self) -> bool:
        return _get("TRUST_UNSIGNED_RETURNS") is True

    @property
    def CONFIRM_WITH_BITBUCKET(self) -> bool:
        """True: Bitbucket is asked whether an installation is genuine before anything
        confirms it or connects it to a user (``bitbucket_install.genuine``). Only True
        turns it on (check W008 recommends it for production)."""
        return _get("CONFIRM_WITH_BITBUCKET") is True

    @property
    def POST_INSTALL_REDIRECT(self) -> bool:
        """True: the descriptor's ``postInstallRedirect`` sends installs begun on
        Bitbucket's side to the ``landing`` view. Only True turns it on."""
        return _get("POST_INSTALL_REDIRECT") is True

    @property
    def FORGE_APP_ID(self) -> str | None:
        """The Forge app's ARI (``ari:cloud:ecosystem::app/<uuid>``), as in its manifest."""
        return _text("FORGE_APP_ID")

    @property
    def FORGE_APP_LINK(self) -> str | None:
        """The Forge app's install link, the descriptor's ``forgeAppLink``."""
        return _text("FORGE_APP_LINK")

    @property
    def FORGE_JWKS_URL(self) -> str:
        """Where the keys of Forge Invocation Tokens come from: the setting, else with the
        simulator on its own JWKS, else Atlassian's production one."""
        explicit = _text("FORGE_JWKS_URL")
        if explicit is not None:
            return explicit
        simulated = _app_path("simulator_forge_jwks") if self.SIMULATOR else None
        if simulated is not None and self.BASE_URL is not None:
            return self.absolute_url(simulated)
        return DEFAULT_FORGE_JWKS_URL

    @property
    def FORGE_IC_LABELS(self) -> frozenset[str]:
        """The Isolated Cloud labels whose Forge Invocation Tokens are accepted: the
        setting's well-formed ones (check E029 reports the rest); none by default, as
        for an app sold in the commercial cloud only."""
        configured = _get("FORGE_IC_LABELS", ())
        if isinstance(configured, str) or not isinstance(configured, list | tuple):
            return frozenset()
        return frozenset(label for label in configured if is_ic_label(label))

    @property
    def BITBUCKET_ORIGINS(self) -> frozenset[str]:
        """The origins an installation's Bitbucket URLs may have (and tokens may go to);
        with the simulator on, the site's own origin, where the simulator runs, too."""
        configured = _get("BITBUCKET_ORIGINS", DEFAULT_BITBUCKET_ORIGINS)
        if isinstance(configured, str) or not isinstance(configured, list | tuple):
            configured = ()  # system check E019 reports it
        origins = {origin(item) for item in configured if isinstance(item, str)}
        if self.SIMULATOR and self.BASE_URL is not None:
            origins.add(origin(self.BASE_URL))
        return frozenset(item for item in origins if item is not None)

    @property
    def JWT_LEEWAY(self) -> int:
        return _bounded("JWT_LEEWAY")

    @property
    def JWT_MAX_AGE(self) -> int:
        return _bounded("JWT_MAX_AGE")

    @property
    def FLOW_MAX_AGE(self) -> int:
        return _bounded("FLOW_MAX_AGE")

    @property
    def CONFIRM_WINDOW(self) -> int:
        return _bounded("CONFIRM_WINDOW")

    @property
    def API_TIMEOUT(self) -> int:
        return _bounded("API_TIMEOUT", CLIENT_LIMITS)

    @property
    def API_RETRIES(self) -> int:
        return _bounded("API_RETRIES", CLIENT_LIMITS)

    @property
    def API_MAX_RETRY_WAIT(self) -> int:
        return _bounded("API_MAX_RETRY_WAIT", CLIENT_LIMITS)

    @property
    def WEBHOOKS(self) -> tuple[str, ...]:
        """The event keys (or ``"*"``) the descriptor subscribes the ``webhook`` view to:
        the setting's well-shaped ones, each once, in its order (check E024 reports the
        rest)."""
        configured = _get("WEBHOOKS", ())
        if not isinstance(configured, list | tuple):
            return ()
        kept: list[str] = []
        for event in configured:
            if isinstance(event, str) and is_webhook_subscription(event) and event not in kept:
                kept.append(event)
        return tuple(kept)

    @property
    def WEBHOOK_MAX_BYTES(self) -> int:
        """The largest webhook body accepted, clamped to its bounds (check E025)."""
        smallest, largest, default = WEBHOOK_MAX_BYTES_BOUNDS
        value = _get("WEBHOOK_MAX_BYTES", default)
        return min(max(value, smallest), largest) if is_duration(value) else default

    @property
    def WEBHOOK_TASKS(self) -> bool:
        """True: each new delivery is signalled by a task in a worker, not in the request.
        Only True turns it on (W006 reports other values)."""
        return _get("WEBHOOK_TASKS") is True

    @property
    def TASK_BACKEND(self) -> str:
        """The ``TASKS`` alias the app's tasks are enqueued on (check E026)."""
        return _text("TASK_BACKEND") or DEFAULT_TASK_BACKEND

    @property
    def TASK_QUEUE(self) -> str:
        """The queue of that backend the app's tasks go to (check E026)."""
        return _text("TASK_QUEUE") or DEFAULT_TASK_QUEUE

    @property
    def REPLAY_CACHE(self) -> str:
        """The ``CACHES`` alias where ``connect_jwt_required(single_use=True)`` remembers
        the tokens it accepted (check W007)."""
        return _text("REPLAY_CACHE") or DEFAULT_REPLAY_CACHE

    @property
    def SUCCESS_URL(self) -> str | None:
        return _text("SUCCESS_URL")

    @property
    def FAILURE_URL(self) -> str | None:
        return _text("FAILURE_URL")

    @property
    def DESCRIPTOR(self) -> dict[str, Any]:
        configured = _get("DESCRIPTOR")
        if not isinstance(configured, dict):
            configured = {}  # system check E015 reports it
        descriptor = {**copy.deepcopy(DEFAULT_DESCRIPTOR), **configured}
        descriptor.setdefault("key", self.ADDON_KEY)
        descriptor.setdefault("name", descriptor["key"])
        return descriptor

    def app_name(self) -> str:
        """``DESCRIPTOR["name"]`` (or ``""``), without building the rest of the descriptor."""
        configured = _get("DESCRIPTOR")
        if not isinstance(configured, dict):
            configured = {}
        key = configured.get("key", self.ADDON_KEY)
        name = configured.get("name", key)
        return str(name) if name else ""

    @property
    def SIMULATOR(self) -> bool:
        # Only True turns it on: the strings "off", "False" or "0" from an environment
        # variable are truthy, and must not switch a development tool on.
        return _get("SIMULATOR") is True and bool(django_settings.DEBUG)

    def install_link(self, redirect_uri: str | None = None) -> InstallLink:
        """The install link these settings describe (the one place it is built), with
        ``redirect_uri`` instead of the configured one if given. Without ``DEBUG`` the
        authorize page must be on one of the Bitbucket origins."""
        return InstallLink(
            authorize_url=self.AUTHORIZE_URL,
            addon_key=self.ADDON_KEY,
            descriptor_uri=self.DESCRIPTOR_URI,
            redirect_uri=self.REDIRECT_URI if redirect_uri is None else redirect_uri,
            base_url=self.BASE_URL,
            authorize_origins=None if django_settings.DEBUG else self.BITBUCKET_ORIGINS,
        )

    def is_on_this_site(self, url: str) -> bool:
        """Is ``url`` (as ``resolve_url`` gives it) a path here, or on the base URL's host?
        Relative by Django's own test: browsers read "/\\evil.test" as another site."""
        if url_has_allowed_host_and_scheme(url, allowed_hosts=set()):
            return True
        base_host = host_of(self.BASE_URL or "")
        return base_host is not None and host_of(url) == base_host

    def absolute_url(self, path: str) -> str:
        """``path`` (as ``reverse`` gives it) on the scheme and host of the base URL."""
        base = _split(self.BASE_URL or "")
        return f"{base.scheme}://{base.netloc}{path}"

    def relative_to_base(self, path: str) -> str:
        """``path`` relative to the base URL's path, as the descriptor lists URLs."""
        base_path = self.BASE_PATH
        if base_path and path.startswith(base_path + "/"):
            return path[len(base_path) :]
        return path


app_settings = Settings()
