"""Installs begun on Bitbucket's side: the simulator's authorize page without a
``redirect_uri`` installs as a grant does, then follows the descriptor's
``postInstallRedirect`` to the site's landing, its context parameters filled in and, if
asked, a ``jwt`` over exactly that GET."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.landing import OFFER_SESSION_KEY
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from bitbucket_install.simulator.base import (
    Descriptor,
    SimulatedError,
    Workspace,
    check_descriptor,
    post_install_url,
)
from bitbucket_install.tokens import query_string_hash, verify_token
from tests.conftest import SignalRecorder
from tests.simulator.helpers import (
    APP_KEY,
    BASE_URL,
    DESCRIPTOR_URL,
    OTHER_APP,
    Router,
    grant,
    link,
    query_of,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONSOLE = "/bitbucket/simulator/console/"
LANDING_URL = BASE_URL + "/bitbucket/landing/"
DEMO = Workspace.named("Demo workspace")


@pytest.fixture(autouse=True)
def post_install_redirect(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True


def from_bitbucket(client: Client, *, send_jwt: bool) -> Any:
    data = {"action": "grant", "workspace": "", "follow_redirect": "on"}
    if send_jwt:
        data["send_jwt"] = "on"
    response = client.post(link(addon_key=APP_KEY), data)
    assert response.status_code == 302
    return response


def test_the_browser_lands_with_the_workspaces_context_and_a_jwt(
    client: Client, router: Router
) -> None:
    location = from_bitbucket(client, send_jwt=True)["Location"]
    [call] = router.posts()  # the installed callback, as for any grant
    assert location.startswith(LANDING_URL + "?")
    query = query_of(location)
    assert query["user_uuid"] == [DEMO.uuid]
    assert query["user_username"] == ["demo-workspace"]
    assert query["user_type"] == ["team"]
    signed = urlsplit(location).query.rsplit("&jwt=", 1)[0]
    assert "%7B" in signed  # the braces of the UUID are percent-encoded
    verify_token(
        query["jwt"][0],
        call.payload["sharedSecret"],
        qsh=query_string_hash("GET", "/bitbucket/landing/", signed),
        issuer=call.payload["clientKey"],
    )


def test_without_jwt_only_the_context_parameters(client: Client, router: Router) -> None:
    location = from_bitbucket(client, send_jwt=False)["Location"]
    assert set(query_of(location)) == {"user_uuid", "user_username", "user_type"}


@pytest.mark.parametrize("send_jwt", [True, False])
def test_the_landing_offers_what_the_simulator_installed(
    client: Client, router: Router, sent_signals: SignalRecorder, send_jwt: bool
) -> None:
    location = urlsplit(from_bitbucket(client, send_jwt=send_jwt)["Location"])
    landed = client.get(location.path + "?" + location.query)
    assert landed.status_code == 303
    row = Installation.objects.get()
    assert client.session[OFFER_SESSION_KEY]["client_key"] == row.client_key
    assert client.session[OFFER_SESSION_KEY]["signed"] is send_jwt
    # A jwt confirms the installation (to nobody); without one nothing is recorded.
    assert (row.confirmed_at is not None) is send_jwt
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None] * send_jwt


def test_not_following_the_redirect_stays_on_the_simulator(client: Client, router: Router) -> None:
    response = grant(client, link(addon_key=APP_KEY), workspace="")
    assert response.status_code == 200
    assert "It is installed on Demo workspace." in response.content.decode()
    assert len(router.posts()) == 1


def test_without_the_setting_the_user_stays_on_the_simulator(
    client: Client, router: Router, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = False
    response = grant(client, link(addon_key=APP_KEY), workspace="")
    assert response.status_code == 200
    assert "It is installed on Demo workspace." in response.content.decode()


def test_a_flows_redirect_uri_still_wins(client: Client, router: Router) -> None:
    callback = BASE_URL + "/bitbucket/callback/"
    response = grant(client, link(addon_key=APP_KEY, redirect_uri=callback))
    assert response["Location"].startswith(callback + "?clientKey=")


def test_the_consent_page_says_where_the_jwt_goes(client: Client) -> None:
    html = client.get(link(addon_key=APP_KEY)).content.decode()
    assert "Append a signed jwt to the post-install redirect" in html
    assert 'id="follow-redirect" name="follow_redirect" type="checkbox" value="on" checked' in html
    callback = BASE_URL + "/bitbucket/callback/"
    html = client.get(link(addon_key=APP_KEY, redirect_uri=callback)).content.decode()
    assert "Send a signed jwt back with the clientKey" in html
    assert 'id="follow-redirect"' not in html


def console_link(client: Client) -> str | None:
    """The href of the console's "Install from Bitbucket" link, or None."""
    html = client.get(CONSOLE).content.decode()
    found = re.findall(r'href="([^"]+)" id="install-from-bitbucket"', html)
    return found[0].replace("&amp;", "&") if found else None


def test_the_console_links_to_an_install_from_bitbucket(client: Client) -> None:
    assert console_link(client) == "/bitbucket/simulator/authorize/?addon_key=" + APP_KEY


def test_the_console_link_of_an_unregistered_app(client: Client, settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = DESCRIPTOR_URL
    assert console_link(client) == link(descriptor_uri=DESCRIPTOR_URL)


def test_no_console_link_without_an_app(client: Client, settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = None
    assert console_link(client) is None


# --- the descriptor's module ------------------------------------------------------------------


def with_redirect(module: object) -> dict[str, Any]:
    return {**OTHER_APP, "modules": {"postInstallRedirect": module}}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/landing/?u={user_uuid}", BASE_URL + "/landing/?u={user_uuid}"),
        (BASE_URL + "/welcome", BASE_URL + "/welcome"),
    ],
)
def test_the_module_url_is_made_absolute(url: str, expected: str) -> None:
    descriptor = check_descriptor(with_redirect({"key": "r", "url": url}), None, BASE_URL)
    assert descriptor.post_install_redirect == expected


def test_no_module_no_redirect() -> None:
    assert check_descriptor(OTHER_APP, None, BASE_URL).post_install_redirect == ""
    modules = {**OTHER_APP, "modules": []}
    assert check_descriptor(modules, None, BASE_URL).post_install_redirect == ""


@pytest.mark.parametrize(
    "module",
    [
        "text",
        {"key": "r"},
        {"key": "r", "url": ""},
        {"key": "r", "url": 7},
        {"key": "r", "url": "//evil.example.org/x"},
        {"key": "r", "url": "https://evil.example.org/landing/"},
        {"key": "r", "url": "relative/path"},
    ],
)
def test_a_module_url_the_simulator_would_not_follow_is_refused(module: object) -> None:
    with pytest.raises(SimulatedError) as raised:
        check_descriptor(with_redirect(module), None, BASE_URL)
    assert raised.value.code == "invalid_descriptor"


def test_post_install_url_under_a_base_path() -> None:
    descriptor = Descriptor(
        key="k",
        name="n",
        description="",
        vendor_name="",
        base_url=BASE_URL + "/app",
        installed_path="/installed",
        scopes=(),
        post_install_redirect=BASE_URL + "/app/landing/?w={user_username}&t={user_type}",
    )
    url = post_install_url(descriptor, "connection:1", "s" * 32, DEMO, send_jwt=True)
    assert url.startswith(BASE_URL + "/app/landing/?w=demo-workspace&t=team&jwt=")
    verify_token(
        query_of(url)["jwt"][0],
        "s" * 32,
        qsh=query_string_hash("GET", "/landing/", "w=demo-workspace&t=team"),
        issuer="connection:1",
    )
