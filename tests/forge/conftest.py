"""Fixtures of the Forge tests: the vector's JWKS served over real HTTP, the app ARI and
that JWKS in the settings, the clock inside the vector's lifetime, fresh caches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from bitbucket_install.forge import jwks
from tests.forge import jwks_server, views
from tests.forge.helpers import APP_ID, NOW, VECTOR


@pytest.fixture
def keys() -> Iterator[jwks_server.JWKSServer]:
    with jwks_server.running({"keys": list(VECTOR["jwks"]["keys"])}) as server:
        yield server


@pytest.fixture(autouse=True)
def _forge_settings(settings: Settings, keys: jwks_server.JWKSServer) -> Iterator[None]:
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = APP_ID
    settings.BITBUCKET_INSTALL_FORGE_JWKS_URL = keys.url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"forge-{uuid.uuid4().hex}",
        }
    }
    jwks.jwks_client.cache_clear()
    views.calls.clear()
    yield
    jwks.jwks_client.cache_clear()
    views.calls.clear()


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> float:
    """The clock inside the vector's lifetime (its token is from 2023)."""
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    return float(NOW)


@pytest.fixture
def no_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown kid refetches the JWKS even right after a fetch."""
    monkeypatch.setattr(jwks, "JWKS_REFETCH_COOLDOWN", 0)
