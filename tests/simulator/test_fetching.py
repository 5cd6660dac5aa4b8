"""Which descriptors the simulator fetches, and when; what it checks in one before it sends
the ``installed`` callback anywhere.

It runs on a developer's machine: a web page that could make it fetch any URL on a GET
would turn it into a port scanner of that machine, and one that could name the callback's
URL would receive a fresh shared secret. So it connects only while handling a POST that
carries Django's CSRF token, only to this site's configured descriptor or one on a loopback
host, and sends the callback only under a baseUrl on this site or a loopback host.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.simulator.helpers import (
    CALLBACK_URL,
    DESCRIPTOR_URL,
    LOOPBACK_DESCRIPTOR,
    OTHER_APP,
    OTHER_DESCRIPTOR,
    Router,
    assert_error_page,
    assert_error_redirect,
    check,
    error_description,
    grant,
    link,
    loopback_link,
    open_link,
    registered_link,
)

pytestmark = pytest.mark.django_db

ALL_ACTIONS = ["check", "grant", "deny", "error"]


# --- this site's own app: the consent page needs no HTTP, Grant fetches -----------------


def test_consent_page_of_this_sites_registered_app_connects_nowhere(
    client: Client, router: Router
) -> None:
    response = client.get(registered_link())
    assert response.status_code == 200
    assert b'<h1 id="consent-title">Install Example app?</h1>' in response.content
    assert router.calls == []


def test_consent_page_of_this_sites_unregistered_app_connects_nowhere(
    unregistered: None, client: Client, router: Router
) -> None:
    response = client.get(link(descriptor_uri=DESCRIPTOR_URL, redirect_uri=CALLBACK_URL))
    assert response.status_code == 200
    assert b"An unregistered app, installed from its descriptor" in response.content
    assert router.calls == []


def test_grant_fetches_the_descriptor_over_http_then_posts_the_callback(
    client: Client, router: Router
) -> None:
    response = grant(client, registered_link())
    assert response.status_code == 302
    assert router.requests() == [
        ("GET", DESCRIPTOR_URL),
        ("POST", "https://app.example.com/bitbucket/installed"),
    ]


def test_grant_checks_the_fetched_descriptor_not_the_settings(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    """The consent page came from the settings; Grant reads what the descriptor URL serves,
    as Bitbucket does, and refuses to post anywhere its baseUrl does not allow."""
    router.answer_json(
        DESCRIPTOR_URL, {**OTHER_APP, "key": "example-app", "baseUrl": "https://evil.example.org"}
    )
    before = installation_rows()
    response = grant(client, registered_link())
    assert_error_redirect(response, "invalid_descriptor")
    assert router.requests() == [("GET", DESCRIPTOR_URL)]
    assert installation_rows() == before
    assert sent_signals.none_sent


# --- another app's descriptor on a loopback host: fetched when the user asks -------------


def test_loopback_descriptor_is_fetched_only_after_a_post(client: Client, router: Router) -> None:
    router.answer_json(LOOPBACK_DESCRIPTOR, OTHER_APP)
    page = client.get(loopback_link())
    assert page.status_code == 200
    html = page.content.decode()
    assert '<h1 id="check-title">' in html
    assert f'<code id="descriptor-uri">{LOOPBACK_DESCRIPTOR}</code>' in html
    assert 'method="post"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="action" value="check"' in html
    assert router.calls == []

    consent = check(client, loopback_link())
    assert consent.status_code == 200
    assert b'<h1 id="consent-title">Install Other app?</h1>' in consent.content
    assert router.requests() == [("GET", LOOPBACK_DESCRIPTOR)]


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_loopback_descriptor_needs_the_csrf_token(
    router: Router, sent_signals: SignalRecorder, action: str
) -> None:
    """Without the token another web page could post the form and make it connect."""
    router.answer_json(LOOPBACK_DESCRIPTOR, OTHER_APP)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(loopback_link())
    before = installation_rows()
    data = {"action": action, "error_code": "server_error"}
    assert browser.post(loopback_link(), data).status_code == 403
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    data["csrfmiddlewaretoken"] = page.context["csrf_token"]
    assert browser.post(loopback_link(), data).status_code in {200, 302}
    assert router.requests()[0] == ("GET", LOOPBACK_DESCRIPTOR)


@pytest.mark.parametrize(
    "descriptor_uri",
    [
        OTHER_DESCRIPTOR,
        "https://10.0.0.7/atlassian-connect.json",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1.nip.io/atlassian-connect.json",
        "https://app.example.com/other/atlassian-connect.json",
    ],
)
@pytest.mark.parametrize("method", ["get", *ALL_ACTIONS])
def test_any_other_descriptor_is_refused_before_any_connection(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    descriptor_uri: str,
    method: str,
) -> None:
    path = link(descriptor_uri=descriptor_uri, redirect_uri=CALLBACK_URL)
    before = installation_rows()
    if method == "get":
        response = client.get(path)
    else:
        response = client.post(path, {"action": method, "error_code": "server_error"})
    assert_error_redirect(response, "invalid_request")
    assert error_description(response) == (
        "The simulator fetches only this site's configured descriptor or one on a loopback host."
    )
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_the_configured_descriptor_uri_is_fetched_wherever_it_is(
    settings: Settings, client: Client, router: Router
) -> None:
    """The developer's own setting, not a link's choice: fetched on a POST."""
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = OTHER_DESCRIPTOR
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {"key": "other-app", "name": "Other app"}
    router.answer_json(OTHER_DESCRIPTOR, OTHER_APP)
    path = link(descriptor_uri=OTHER_DESCRIPTOR, redirect_uri=CALLBACK_URL)
    assert client.get(path).status_code == 200
    assert router.calls == []
    assert grant(client, path).status_code == 302
    assert router.requests()[0] == ("GET", OTHER_DESCRIPTOR)


# --- what a fetched descriptor must be ----------------------------------------------------


def _answer(data: dict[str, Any]) -> tuple[int, bytes]:
    return 200, json.dumps(data).encode()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(OSError("connection refused"), id="unreachable"),
        pytest.param((404, b"not found"), id="404"),
        pytest.param((302, b""), id="redirect"),
        pytest.param((200, b"{not json"), id="not-json"),
        pytest.param((200, b"\xff\xfe"), id="not-utf8"),
        pytest.param((200, b"[]"), id="not-object"),
        pytest.param(_answer({**OTHER_APP, "key": None}), id="no-key"),
        pytest.param(_answer({**OTHER_APP, "key": "a b"}), id="bad-key"),
        pytest.param(_answer({**OTHER_APP, "name": " "}), id="no-name"),
        pytest.param(_answer({**OTHER_APP, "baseUrl": "/app"}), id="relative-base"),
        pytest.param(_answer({**OTHER_APP, "baseUrl": 42}), id="base-not-text"),
        pytest.param(_answer({**OTHER_APP, "baseUrl": "http://app.example.com"}), id="http-base"),
        pytest.param(
            _answer({**OTHER_APP, "baseUrl": "https://app.example.com?a=1"}), id="base-with-query"
        ),
        pytest.param(
            _answer({**OTHER_APP, "baseUrl": "https://app.example.com#top"}),
            id="base-with-fragment",
        ),
        pytest.param(_answer({**OTHER_APP, "lifecycle": None}), id="no-lifecycle"),
        pytest.param(_answer({**OTHER_APP, "lifecycle": {}}), id="no-installed"),
        pytest.param(
            _answer({**OTHER_APP, "lifecycle": {"installed": "installed"}}),
            id="installed-relative",
        ),
        pytest.param(
            _answer({**OTHER_APP, "lifecycle": {"installed": "//evil.example.org/x"}}),
            id="installed-elsewhere",
        ),
    ],
)
@pytest.mark.parametrize("action", ["check", "grant"])
def test_bad_descriptor_goes_back_as_invalid_descriptor(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    answer: tuple[int, bytes] | Exception,
    action: str,
) -> None:
    router.answers[LOOPBACK_DESCRIPTOR] = answer
    before = installation_rows()
    response = client.post(loopback_link(), {"action": action, "workspace": "W"})
    assert_error_redirect(response, "invalid_descriptor")
    assert router.requests() == [("GET", LOOPBACK_DESCRIPTOR)]
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_redirecting_descriptor_url_says_the_simulator_follows_none(
    client: Client, router: Router
) -> None:
    router.answers[LOOPBACK_DESCRIPTOR] = (302, b"")
    response = check(client, loopback_link())
    assert error_description(response) == (
        "The descriptor URL answered HTTP 302: a redirect, which the simulator does not follow."
    )


@pytest.mark.parametrize(
    ("base_url", "installed"),
    [
        pytest.param("https://evil.example.org", "/installed", id="base-elsewhere"),
        pytest.param("https://app.example.com:8443", "/installed", id="base-other-port"),
        pytest.param("https://sub.app.example.com", "/installed", id="base-subdomain"),
        pytest.param("https://10.0.0.7", "/installed", id="base-private-address"),
        pytest.param("https://app.example.com/app", "/../steal", id="installed-dot-dot"),
        pytest.param("https://app.example.com/app", "/%2e%2e/steal", id="installed-encoded"),
        pytest.param("https://app.example.com/app", "/x\\..\\..\\steal", id="installed-backslash"),
        pytest.param("https://app.example.com/app", "/installed#x", id="installed-fragment"),
    ],
)
@pytest.mark.parametrize("action", ["check", "grant"])
def test_installed_callback_goes_only_under_a_base_url_on_this_site_or_loopback(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    base_url: str,
    installed: str,
    action: str,
) -> None:
    router.answer_json(
        LOOPBACK_DESCRIPTOR,
        {**OTHER_APP, "baseUrl": base_url, "lifecycle": {"installed": installed}},
    )
    before = installation_rows()
    response = client.post(loopback_link(), {"action": action, "workspace": "W"})
    assert_error_redirect(response, "invalid_descriptor")
    assert router.requests() == [("GET", LOOPBACK_DESCRIPTOR)]
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_base_url_off_site_says_why(client: Client, router: Router) -> None:
    router.answer_json(LOOPBACK_DESCRIPTOR, {**OTHER_APP, "baseUrl": "https://evil.example.org"})
    assert "neither on this site nor on a loopback host" in error_description(
        check(client, loopback_link())
    )


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:9000", "http://localhost:9000/app", "http://[::1]:9000"]
)
def test_a_loopback_base_url_is_allowed(client: Client, router: Router, base_url: str) -> None:
    router.answer_json(LOOPBACK_DESCRIPTOR, {**OTHER_APP, "baseUrl": base_url})
    installed_url = base_url + "/bitbucket/installed"
    router.answers[installed_url] = (204, b"")
    redirect_uri = base_url + "/callback/"
    response = grant(client, loopback_link(redirect_uri))
    assert response.status_code == 302
    assert response["Location"].startswith(redirect_uri + "?clientKey=")
    assert router.requests() == [("GET", LOOPBACK_DESCRIPTOR), ("POST", installed_url)]


def test_without_a_base_url_setting_only_loopback_base_urls_are_allowed(
    settings: Settings, client: Client, router: Router
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = None
    router.answer_json(LOOPBACK_DESCRIPTOR, OTHER_APP)
    assert_error_page(check(client, loopback_link()), "invalid_descriptor")
    router.answer_json(LOOPBACK_DESCRIPTOR, {**OTHER_APP, "baseUrl": "http://127.0.0.1:9000"})
    assert check(client, loopback_link("http://127.0.0.1:9000/cb")).status_code == 200


def test_redirect_uri_under_site_but_not_under_descriptor_base_url_is_shown(
    client: Client, router: Router
) -> None:
    """Once the descriptor is known, only its baseUrl decides where errors may go."""
    router.answer_json(
        LOOPBACK_DESCRIPTOR, {**OTHER_APP, "baseUrl": "https://app.example.com/other"}
    )
    response = check(client, loopback_link())
    assert_error_page(response, "invalid_request")
    assert router.posts() == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_descriptor_of_this_site_with_no_base_url_is_invalid(
    unregistered: None, settings: Settings, client: Client, router: Router, method: str
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = None
    response = open_link(client, method, link(descriptor_uri=DESCRIPTOR_URL))
    assert_error_page(response, "invalid_descriptor")
    assert router.posts() == []
