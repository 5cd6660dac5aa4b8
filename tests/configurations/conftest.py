"""Each module here runs the app in one configuration real projects use: the whole flow
(button, start view, simulator, lifecycle callbacks, return trip, result page), the
descriptor, the admin and a view behind ``connect_jwt_required``.

``site_settings`` is what they share: the URLs of ``tests/configurations/urls.py``, the
simulator on (``DEBUG``), the public host allowed, an empty simulator memory; ``site`` is a
``Site`` on Django's test client whose simulator reaches the app through the same front end.
A module changes the settings (or the front end, or the kind of agent) for its configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections
from pytest_django.fixtures import Settings

from bitbucket_install.simulator import transport
from tests.concurrency import conftest as concurrency_conftest
from tests.configurations.site import AgentFactory, FrontEnd, Site, TestClientAgent

HERE = Path(__file__).resolve().parent
CUSTOM_USER_MODEL = "custom_user.User"  # of tests/settings_custom_user.py
# test_custom_user.py runs in a process of its own, with tests/settings_custom_user.py:
#     python -m pytest --ds=tests.settings_custom_user tests/configurations/test_custom_user.py
# (any other settings have Django's user model, which it is not about).
collect_ignore = [] if settings.AUTH_USER_MODEL == CUSTOM_USER_MODEL else ["test_custom_user.py"]
TEMPLATES_DIR = HERE / "templates"
JINJA2_DIR = HERE / "jinja2"


@pytest.fixture(autouse=True)
def _concurrency_needs_a_database_server(request: pytest.FixtureRequest) -> None:
    """As in tests/concurrency: a race on SQLite proves nothing, so it fails there."""
    if request.node.get_closest_marker("concurrency") is not None and connection.vendor == (
        "sqlite"
    ):
        pytest.fail(
            "The concurrency tests need PostgreSQL or MariaDB (DATABASE_URL=postgres://... "
            'or mysql://...); deselect them with -m "not concurrency".',
            pytrace=False,
        )


@pytest.fixture
def site_settings(settings: Settings) -> Iterator[Settings]:
    settings.ROOT_URLCONF = "tests.configurations.urls"
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "app.example.com"]
    settings.LOGIN_URL = "/accounts/login/"
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [TEMPLATES_DIR]},
        *settings.TEMPLATES[1:],
    ]
    cache.clear()  # the simulator's memory of earlier installs
    yield settings
    cache.clear()


@pytest.fixture
def front_end() -> FrontEnd:
    """What stands between the Internet and Django (a module overrides it)."""
    return FrontEnd()


@pytest.fixture
def agent() -> AgentFactory:
    """How requests reach Django (a module overrides it)."""
    return TestClientAgent


@pytest.fixture
def site(
    site_settings: Settings,
    front_end: FrontEnd,
    agent: AgentFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Site:
    """The site; the simulator's HTTP (Bitbucket's calls) goes through its front end."""
    built = Site(front_end, agent)
    monkeypatch.setattr(transport, "send", built.bitbucket_send)
    return built


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ATOMIC_REQUESTS = True`` on every database: each view in a transaction of its own
    unless it says otherwise. (Set on the connections' settings, which every thread's
    connection shares: the live server's too.)"""
    for alias in connections:
        monkeypatch.setitem(connections[alias].settings_dict, "ATOMIC_REQUESTS", True)


# The live-server races' record of signals, as in tests/concurrency.
signal_log = concurrency_conftest.signal_log
