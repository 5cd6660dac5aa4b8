"""The app's settings, read from ``django.conf.settings`` each time they are used.

Nothing is cached at import, so ``override_settings`` works. The project reads its
environment (django-environ); this app never does.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.conf import settings as django_settings
from django.urls import reverse

DEFAULT_AUTHORIZE_URL = "https://bitbucket.org/site/addons/authorize"
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


def _seconds(name: str, default: int) -> int:
    value = _get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


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
        return self.absolute_url(reverse("bitbucket_install:callback"))

    @property
    def SHARED_SECRET(self) -> str | None:
        return _text("SHARED_SECRET")

    @property
    def AUTHORIZE_URL(self) -> str:
        return _text("AUTHORIZE_URL") or DEFAULT_AUTHORIZE_URL

    @property
    def JWT_LEEWAY(self) -> int:
        return _seconds("JWT_LEEWAY", 30)

    @property
    def JWT_MAX_AGE(self) -> int:
        return _seconds("JWT_MAX_AGE", 600)

    @property
    def FLOW_MAX_AGE(self) -> int:
        return _seconds("FLOW_MAX_AGE", 900)

    @property
    def CONFIRM_WINDOW(self) -> int:
        return _seconds("CONFIRM_WINDOW", 120)

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
        return bool(_get("SIMULATOR", False)) and bool(django_settings.DEBUG)

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
