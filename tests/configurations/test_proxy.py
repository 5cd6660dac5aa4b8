"""Behind a TLS-terminating proxy: Django gets plain HTTP from 127.0.0.1:8000 with
``X-Forwarded-Proto: https`` and ``X-Forwarded-Host: app.example.com``, and trusts them
(``SECURE_PROXY_SSL_HEADER``, ``USE_X_FORWARDED_HOST``), with the usual HTTPS settings on
(``SECURE_SSL_REDIRECT``, secure cookies). Only the public host is allowed.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from bitbucket_install.tokens import encode_token
from tests.configurations.site import FrontEnd, Site, admin_lists_installations, install
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def front_end() -> FrontEnd:
    return FrontEnd(tls_proxy=True)


@pytest.fixture(autouse=True)
def behind_a_proxy(site_settings: Settings) -> None:
    site_settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    site_settings.USE_X_FORWARDED_HOST = True
    site_settings.SECURE_SSL_REDIRECT = True
    site_settings.SESSION_COOKIE_SECURE = True
    site_settings.CSRF_COOKIE_SECURE = True
    site_settings.ALLOWED_HOSTS = ["app.example.com"]


def test_without_the_proxy_headers_django_redirects_to_https(site: Site) -> None:
    """The forwarded headers are what makes a request secure here (else the tests below
    prove nothing): the same request without them is sent to HTTPS."""
    answer = site.browser().agent.request(
        "GET", site.url("/"), headers={"X-Forwarded-Proto": "http"}
    )
    assert answer.status == 301
    assert answer.location == "https://app.example.com/"


def test_install_behind_the_proxy_connects_and_returns_to_next(
    site: Site, sent_signals: SignalRecorder
) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/bitbucket/install/?next=/dashboard/"))

    assert done.returned.status == 303
    # The flow's next (checked against the forwarded host and scheme) was kept.
    assert done.returned.location == "https://app.example.com/dashboard/"
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    assert row["shared_secret"]  # the installed callback came through the proxy too
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    for answer in browser.answers:
        location = answer.header("Location")
        if location is not None and "://" in location:
            assert urlsplit(location).scheme == "https", location


def test_result_page_behind_the_proxy(site: Site, sent_signals: SignalRecorder) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/"))

    assert done.returned.location == "https://app.example.com/bitbucket/result/"
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    assert len(sent_signals.of(installed)) == 1


def test_connect_jwt_view_behind_the_proxy(site: Site) -> None:
    Installation.objects.create(client_key="connection:1", shared_secret="hook-secret-0123")
    token = encode_token(
        {"iss": "connection:1"}, "hook-secret-0123", method="POST", path="/hooks/r1/push"
    )
    answer = site.browser().agent.request(
        "POST", site.url("/hooks/r1/push"), b"{}", {"Authorization": f"JWT {token}"}
    )
    assert answer.status == 200
    assert json.loads(answer.content)["client_key"] == "connection:1"


def test_admin_behind_the_proxy(site: Site) -> None:
    Installation.objects.create(client_key="connection:1", principal_name="Acme Team")
    admin_lists_installations(site, "Acme Team")
