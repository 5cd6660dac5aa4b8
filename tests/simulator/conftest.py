"""The simulator is on (DEBUG and the setting) for every test here, with an empty cache;
``router`` routes its HTTP through Django's test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from pytest_django.fixtures import Settings

from bitbucket_install.simulator import transport
from tests.simulator.helpers import APP_KEY, DESCRIPTOR_URL, Router


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Router:
    routed = Router()
    monkeypatch.setattr(transport, "send", routed)
    return routed


@pytest.fixture(autouse=True)
def simulator_on(settings: Settings) -> Iterator[None]:
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def unregistered(settings: Settings) -> None:
    """This site is an unregistered app, installed from its own descriptor."""
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = DESCRIPTOR_URL
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {
        "key": APP_KEY,
        "name": "Example app",
        "description": "An app used by the test suite.",
        "scopes": ["account", "repository", "made-up-scope"],
    }
