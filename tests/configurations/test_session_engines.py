"""The flow and the result page with each of Django's session engines: ``db``, ``cache``
(Django's own ``RedisCache`` on the Redis at 127.0.0.1:6379), ``cached_db`` (the same Redis
in front of the database) and ``signed_cookies``.

With signed cookies the session is the cookie itself: the browser can send an old one again,
flows and all. A flow then confirms at most one installation only because the database's
``confirmed_flow`` is unique: a replayed cookie must not bind a second installation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from tests.callback_helpers import APP_SECRET, KEY_A, signed_query
from tests.configurations.site import (
    Browser,
    Site,
    admin_lists_installations,
    connect_on_landing,
    grant,
    install,
    install_from_bitbucket,
    press_button,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/0"
ENGINES = ["db", "cache", "cached_db", "signed_cookies"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, site_settings: Settings) -> Iterator[str]:
    """The session engine of this test; the Redis keys it made are removed afterwards."""
    name: str = request.param
    prefix = f"bi-configs-test-{uuid.uuid4().hex}"
    site_settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{name}"
    site_settings.CACHES = {
        **site_settings.CACHES,
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
    }
    site_settings.SESSION_CACHE_ALIAS = "sessions"
    yield name
    server = redis.Redis.from_url(REDIS_URL)
    keys = list(server.scan_iter(f"{prefix}:*"))
    if keys:
        server.delete(*keys)


def session_cookie(browser: Browser) -> str:
    value: str = browser.agent.client.cookies[django_settings.SESSION_COOKIE_NAME].value  # type: ignore[attr-defined]
    return value


def set_session_cookie(browser: Browser, value: str) -> None:
    browser.agent.client.cookies[django_settings.SESSION_COOKIE_NAME] = value  # type: ignore[attr-defined]


def test_signed_in_install_connects_and_shows_the_result(
    engine: str, site: Site, sent_signals: SignalRecorder
) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/"))

    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    assert row["confirmed_flow"] is not None
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    assert sent_signals.of(install_failed) == []
    session = browser.agent.client.session  # type: ignore[attr-defined]
    assert session.get(flows.SESSION_KEY) == []  # the flow is used up
    # A reload of the return answers the same, and changes nothing.
    again = browser.get(done.return_url)
    assert again.status == 303
    assert installation_rows() == [row]
    assert len(sent_signals.of(installed)) == 1


def test_signed_out_install_is_confirmed_for_nobody(
    engine: str, site: Site, sent_signals: SignalRecorder
) -> None:
    done = install(site.browser(), site.url("/"))

    assert done.returned.status == 303
    assert done.result.status == 200
    assert "You were not signed in" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] is None
    assert row["confirmed_at"] is not None
    [sent] = sent_signals.of(installed)
    assert sent["user"] is None


def test_return_of_a_browser_without_a_session_makes_none(
    engine: str, site: Site, sent_signals: SignalRecorder
) -> None:
    browser = site.browser()
    answer = browser.get(site.url("/bitbucket/callback/?" + signed_query(KEY_A, APP_SECRET)))

    assert answer.status == 200
    assert "The app is installed" in answer.text
    cookies: SimpleCookie = browser.agent.client.cookies  # type: ignore[attr-defined]
    assert django_settings.SESSION_COOKIE_NAME not in cookies
    assert [row["client_key"] for row in installation_rows()] == [KEY_A]
    assert len(sent_signals.of(installed)) == 1


def test_an_old_session_cookie_sent_again_binds_no_second_installation(
    engine: str, site: Site, sent_signals: SignalRecorder
) -> None:
    """The user keeps the cookie that holds the flow, finishes the install on workspace A,
    then sends the old cookie again with a return of the same flow for workspace B."""
    user = User.objects.create_user("mallory")
    browser = site.browser()
    browser.force_login(user)
    _page, to_bitbucket = press_button(browser, site.url("/"))
    cookie_with_the_flow = session_cookie(browser)
    first = grant(browser, to_bitbucket, workspace="Workspace A")
    assert first.returned.status == 303
    [row_a] = installation_rows()
    assert row_a["user_id"] == user.pk
    sent_signals.calls.clear()

    set_session_cookie(browser, cookie_with_the_flow)
    second = grant(browser, to_bitbucket, workspace="Workspace B")

    assert second.returned.status == 400
    assert "could not be confirmed" in second.returned.text
    assert second.client_key != first.client_key
    rows = {row["client_key"]: row for row in installation_rows()}
    assert rows[first.client_key] == row_a
    # Workspace B's installed callback arrived; its return confirmed and bound nothing.
    row_b = rows[second.client_key]
    assert row_b["user_id"] is None
    assert row_b["confirmed_at"] is None
    assert row_b["confirmed_flow"] is None
    assert Installation.objects.filter(user=user).count() == 1
    assert sent_signals.of(installed) == []
    failures = [kwargs["error"] for kwargs in sent_signals.of(install_failed)]
    # Signed cookies bring the flow back, and the database refuses it a second
    # installation; a server-side session no longer has the flow at all.
    assert failures == (["flow_used"] if engine == "signed_cookies" else [])


def test_admin_with_the_session_engine(engine: str, site: Site) -> None:
    Installation.objects.create(client_key=KEY_A, principal_name="Acme Team")
    admin_lists_installations(site, "Acme Team")


def test_an_install_from_bitbucket_lands_and_connects(
    engine: str, site: Site, site_settings: Settings, sent_signals: SignalRecorder
) -> None:
    """The offer rides in the session of each engine; an old cookie sent again (the
    signed-cookie session still holding the offer) connects nothing twice."""
    site_settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)
    landing = install_from_bitbucket(browser, site.url("/bitbucket/simulator/console/"))
    assert 'data-state="offer"' in landing.page.text
    with_offer = session_cookie(browser)

    connected = connect_on_landing(browser, landing.page)
    assert connected.status == 303
    assert "connected to your account" in browser.get(connected.location).text
    [row] = installation_rows()
    assert row["user_id"] == user.pk

    set_session_cookie(browser, with_offer)
    again = connect_on_landing(browser, landing.page)
    assert again.status == 303
    assert installation_rows() == [row]
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None, user]
