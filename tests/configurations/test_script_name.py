"""The site under a URL prefix: ``FORCE_SCRIPT_NAME = "/sub"`` (the front end strips it
before Django), with ``BITBUCKET_INSTALL_BASE_URL = "https://app.example.com/sub"``.

Connect signs paths relative to the base URL's path: every signed endpoint (the return
trip, the lifecycle callbacks, webhooks, views behind ``connect_jwt_required``) must check the qsh
over ``/bitbucket/...``, not ``/sub/bitbucket/...``, and the descriptor must list its
URLs relative to the base URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test.utils import override_script_prefix
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed, uninstalled, webhook_received
from bitbucket_install.tokens import encode_token
from tests.callback_helpers import APP_SECRET, KEY_A, signed_query
from tests.configurations.site import (
    FrontEnd,
    Site,
    connect_on_landing,
    install,
    install_from_bitbucket,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, lifecycle_token
from tests.webhook_helpers import delivery_body, delivery_rows, http_headers, installation

pytestmark = pytest.mark.django_db(transaction=True)

PREFIX = "/sub"
BASE_URL = "https://app.example.com/sub"


@pytest.fixture
def front_end() -> FrontEnd:
    return FrontEnd(script_name=PREFIX)


@pytest.fixture(autouse=True)
def under_a_prefix(site_settings: Settings) -> Iterator[None]:
    site_settings.FORCE_SCRIPT_NAME = PREFIX
    site_settings.BITBUCKET_INSTALL_BASE_URL = BASE_URL
    # What Django's WSGI handler does on every request (its test client does not).
    with override_script_prefix(PREFIX + "/"):
        yield


def test_install_under_the_prefix_connects_and_reinstalls_signed(
    site: Site, sent_signals: SignalRecorder
) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    first = install(browser, site.url("/sub/"))
    [first_row] = installation_rows()
    # The same workspace again: the simulator signs this installed callback with the
    # secret of the first, over the path relative to the base URL.
    second = install(browser, site.url("/sub/"))

    [redirect_uri] = parse_qs(urlsplit(first.to_bitbucket.location).query)["redirect_uri"]
    assert redirect_uri.startswith(BASE_URL + "/bitbucket/callback/")
    assert urlsplit(first.to_bitbucket.location).path == "/sub/bitbucket/simulator/authorize/"
    for done in (first, second):
        assert done.returned.status == 303
        assert done.returned.location == site.url("/sub/bitbucket/result/")
        assert done.result.status == 200
        assert "connected to your account" in done.result.text
    assert second.client_key == first.client_key
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    # The signed re-install was accepted: its new secret replaced the first.
    assert row["shared_secret"] != first_row["shared_secret"]
    # Each install is confirmed by its own return trip.
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [user, user]


def test_descriptor_lists_urls_relative_to_the_base_url(site: Site) -> None:
    answer = site.browser().get(site.url("/sub/bitbucket/atlassian-connect.json"))
    assert answer.status == 200
    descriptor = json.loads(answer.content)
    assert descriptor["baseUrl"] == BASE_URL
    assert descriptor["lifecycle"] == {
        "installed": "/bitbucket/installed",
        "uninstalled": "/bitbucket/uninstalled",
    }


@pytest.mark.parametrize(
    ("signed_path", "status"),
    [("/sub/bitbucket/uninstalled", 204), ("/sub/bitbucket/uninstalled-full-path", 401)],
    ids=["relative-to-base", "full-path"],
)
def test_uninstalled_qsh_is_relative_to_the_base_path(
    site: Site, sent_signals: SignalRecorder, signed_path: str, status: int
) -> None:
    Installation.objects.create(client_key=KEY_A, shared_secret="s1-0123456789abcdef")
    path = reverse("bitbucket_install:uninstalled")
    assert path == "/sub/bitbucket/uninstalled"
    if status == 204:
        token = lifecycle_token("s1-0123456789abcdef", path, iss=KEY_A)
    else:  # over the whole path, as if the base URL had no path
        token = lifecycle_token("s1-0123456789abcdef", path, iss=KEY_A, base_path="")
    before = installation_rows()
    body = json.dumps(lifecycle_body("uninstalled", client_key=KEY_A)).encode()

    answer = site.browser().agent.request(
        "POST",
        site.url(path),
        body,
        {"Content-Type": "application/json", "Authorization": f"JWT {token}"},
    )

    assert answer.status == status
    if status == 204:
        [row] = installation_rows()
        assert row["uninstalled_at"] is not None
        assert len(sent_signals.of(uninstalled)) == 1
    else:
        assert installation_rows() == before
        assert sent_signals.none_sent


@pytest.mark.parametrize(
    ("base_path", "status"), [(PREFIX, 204), ("", 401)], ids=["relative-to-base", "full-path"]
)
def test_webhook_qsh_is_relative_to_the_base_path(
    site: Site, sent_signals: SignalRecorder, base_path: str, status: int
) -> None:
    installation(KEY_A, "hook-secret-0123456789")
    path = reverse("bitbucket_install:webhook")
    assert path == "/sub/bitbucket/webhook"
    token = lifecycle_token("hook-secret-0123456789", path, iss=KEY_A, base_path=base_path)
    before = installation_rows()

    answer = site.browser().agent.request(
        "POST", site.url(path), json.dumps(delivery_body()).encode(), http_headers(token)
    )

    assert answer.status == status
    assert installation_rows() == before
    if status == 204:
        assert len(delivery_rows()) == 1
        assert len(sent_signals.of(webhook_received)) == 1
    else:
        assert delivery_rows() == []
        assert sent_signals.none_sent


def test_descriptor_lists_the_webhook_url_relative_to_the_base_url(
    site: Site, site_settings: Settings
) -> None:
    site_settings.BITBUCKET_INSTALL_WEBHOOKS = ["repo:push"]
    answer = site.browser().get(site.url("/sub/bitbucket/atlassian-connect.json"))
    assert answer.status == 200
    assert json.loads(answer.content)["modules"]["webhooks"] == [
        {"event": "repo:push", "url": "/bitbucket/webhook"}
    ]


@pytest.mark.parametrize(
    ("base_path", "status"), [(PREFIX, 200), ("", 401)], ids=["relative-to-base", "full-path"]
)
def test_connect_jwt_view_qsh_is_relative_to_the_base_path(
    site: Site, base_path: str, status: int
) -> None:
    Installation.objects.create(client_key="connection:1", shared_secret="hook-secret-0123")
    token = encode_token(
        {"iss": "connection:1"},
        "hook-secret-0123",
        method="POST",
        path="/sub/hooks/r1/push",
        base_path=base_path,
    )
    answer = site.browser().agent.request(
        "POST", site.url("/sub/hooks/r1/push"), b"{}", {"Authorization": f"JWT {token}"}
    )
    assert answer.status == status
    if status == 200:
        assert json.loads(answer.content)["repo"] == "r1"


def test_return_signed_over_the_full_path_is_refused(
    site: Site, sent_signals: SignalRecorder
) -> None:
    """A plain return whose qsh covers ``/sub/bitbucket/callback/``: refused, nothing made."""
    query = signed_query(KEY_A, APP_SECRET, path="/sub/bitbucket/callback/")
    answer = site.browser().get(site.url("/sub/bitbucket/callback/?" + query))
    assert answer.status == 400
    assert installation_rows() == []
    assert sent_signals.none_sent


def test_return_signed_relative_to_the_base_path_is_accepted(
    site: Site, sent_signals: SignalRecorder
) -> None:
    query = signed_query(KEY_A, APP_SECRET, path="/bitbucket/callback/")
    answer = site.browser().get(site.url("/sub/bitbucket/callback/?" + query))
    assert answer.status == 200
    assert [row["client_key"] for row in installation_rows()] == [KEY_A]
    assert len(sent_signals.of(installed)) == 1


def test_admin_under_the_prefix(site: Site) -> None:
    admin = User.objects.create_superuser("root", password="unused-password")
    Installation.objects.create(client_key=KEY_A, principal_name="Acme Team")
    browser = site.browser()
    browser.force_login(admin)

    listed = browser.get(site.url("/sub/admin/bitbucket_install/installation/"))

    assert listed.status == 200
    assert "Acme Team" in listed.text
    installation = Installation.objects.get()
    assert f'href="/sub/admin/bitbucket_install/installation/{installation.pk}/change/' in (
        listed.text
    )


@pytest.mark.parametrize("send_jwt", [True, False])
def test_an_install_from_bitbucket_lands_and_connects_under_the_prefix(
    site: Site, site_settings: Settings, sent_signals: SignalRecorder, send_jwt: bool
) -> None:
    """The descriptor's postInstallRedirect is relative to the base URL; the landing's jwt
    is signed over ``/bitbucket/landing/`` and verified so."""
    site_settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)
    descriptor = json.loads(browser.get(site.url("/sub/bitbucket/atlassian-connect.json")).text)
    assert descriptor["modules"]["postInstallRedirect"]["url"].startswith("/bitbucket/landing/?")

    landing = install_from_bitbucket(
        browser, site.url("/sub/bitbucket/simulator/console/"), send_jwt=send_jwt
    )
    assert urlsplit(landing.back.location).path == "/sub/bitbucket/landing/"
    assert ("jwt" in parse_qs(urlsplit(landing.back.location).query)) is send_jwt
    assert landing.landed.location == site.url("/sub/bitbucket/landing/")
    assert 'data-state="offer"' in landing.page.text
    assert 'action="/sub/bitbucket/landing/"' in landing.page.text

    connected = connect_on_landing(browser, landing.page)
    assert connected.status == 303
    assert connected.location == site.url("/sub/bitbucket/result/")
    assert "connected to your account" in browser.get(connected.location).text
    assert Installation.objects.get().user_id == user.pk
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None] * send_jwt + [user]
