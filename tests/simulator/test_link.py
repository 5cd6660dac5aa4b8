"""The install link's parameters, checked as Bitbucket checks them, and where an error about
them may go: back to a ``redirect_uri`` this site owns, else onto the simulator's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.simulator.helpers import (
    APP_KEY,
    BASE_URL,
    CALLBACK_URL,
    DESCRIPTOR_URL,
    Router,
    assert_error_page,
    assert_error_redirect,
    error_description,
    link,
    open_link,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"redirect_uri": CALLBACK_URL}, id="neither"),
        pytest.param(
            {"addon_key": APP_KEY, "descriptor_uri": DESCRIPTOR_URL, "redirect_uri": CALLBACK_URL},
            id="both",
        ),
        pytest.param(
            {"addon_key": "", "descriptor_uri": "", "redirect_uri": CALLBACK_URL}, id="blank"
        ),
        pytest.param({"addon_key": [APP_KEY, APP_KEY], "redirect_uri": CALLBACK_URL}, id="twice"),
        pytest.param({"addon_key": "bad key!", "redirect_uri": CALLBACK_URL}, id="bad-key"),
        pytest.param(
            {"descriptor_uri": "/atlassian-connect.json", "redirect_uri": CALLBACK_URL},
            id="relative-descriptor",
        ),
        pytest.param(
            {"descriptor_uri": "http://app.example.com/d.json", "redirect_uri": CALLBACK_URL},
            id="http-descriptor",
        ),
        pytest.param(
            {"descriptor_uri": "https://app.example.com/{d}.json", "redirect_uri": CALLBACK_URL},
            id="templated-descriptor",
        ),
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_malformed_link_goes_back_as_invalid_request(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    params: dict[str, Any],
    method: str,
) -> None:
    before = installation_rows()
    response = open_link(client, method, link(**params))
    assert_error_redirect(response, "invalid_request")
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_descriptor_uri_must_use_https_says_so(client: Client, router: Router) -> None:
    response = client.get(
        link(descriptor_uri="http://app.example.com/d.json", redirect_uri=CALLBACK_URL)
    )
    assert error_description(response) == "The descriptor_uri must use HTTPS."


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": "/bitbucket/callback/"}, id="relative"
        ),
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": BASE_URL + "/{callback}"}, id="templated"
        ),
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": [CALLBACK_URL, CALLBACK_URL]}, id="twice"
        ),
        pytest.param({"redirect_uri": "https://evil.example.org/steal"}, id="elsewhere"),
        pytest.param({"addon_key": APP_KEY, "redirect_uri": "ftp://app.example.com/"}, id="ftp"),
        pytest.param({}, id="nothing"),
    ],
)
def test_error_without_usable_redirect_uri_is_shown_on_the_simulator(
    client: Client, router: Router, sent_signals: SignalRecorder, params: dict[str, Any]
) -> None:
    """No redirect_uri, a malformed one, or one this site does not own: never redirected to."""
    before = installation_rows()
    response = client.get(link(**params))
    assert_error_page(response, "invalid_request")
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_link_without_redirect_uri_is_valid(client: Client, router: Router) -> None:
    response = client.get(link(addon_key=APP_KEY))
    assert response.status_code == 200
    assert b'id="consent-title"' in response.content


def test_error_before_the_descriptor_goes_only_to_this_sites_base_url(
    client: Client, router: Router
) -> None:
    response = client.get(link(redirect_uri="https://evil.example.org/callback"))
    assert_error_page(response, "invalid_request")
    assert b"evil.example.org" not in response.content


def test_unknown_addon_key_is_invalid_request(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    """The simulator knows one registered app, this site's; its consent page needs no HTTP."""
    before = installation_rows()
    response = client.get(link(addon_key="someone-else", redirect_uri=CALLBACK_URL))
    assert_error_redirect(response, "invalid_request")
    assert error_description(response) == "No app is registered with the key someone-else."
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize("method", ["get", "post"])
def test_addon_key_without_a_base_url_is_unknown(
    settings: Settings,
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    method: str,
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = None
    before = installation_rows()
    response = open_link(client, method, link(addon_key=APP_KEY, redirect_uri=CALLBACK_URL))
    assert_error_page(response, "invalid_request")
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://elsewhere.example.com/bitbucket/callback/",
        "http://app.example.com/bitbucket/callback/",
        "https://app.example.com:8443/bitbucket/callback/",
        "https://app.example.com/bitbucket/callback/#x",
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_redirect_uri_outside_the_base_url_is_shown_not_followed(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    redirect_uri: str,
    method: str,
) -> None:
    before = installation_rows()
    response = open_link(client, method, link(addon_key=APP_KEY, redirect_uri=redirect_uri))
    assert_error_page(response, "invalid_request")
    assert "not under the descriptor" in response.content.decode()
    assert router.posts() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
