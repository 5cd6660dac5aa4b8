"""The app's pages: what each state says, and the next step each one offers.

The result page is filled the way the callback fills it (a result in the session); the 503
page comes from a flow's return that names an installation not known yet. The browser tests
(tests/browser/test_pages.py) look at the same pages in Chromium.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.test.utils import override_script_prefix
from pytest_django.fixtures import Settings

from bitbucket_install.views import RESULT_SESSION_KEY
from tests.callback_helpers import RESULT_PATH, START_PATH, flow_path, signed_query, unregistered

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

LOGIN_THEN_START = "/accounts/login/?next=/bitbucket/install/"
SUCCESS = {"ok": True, "client_key": "k", "principal_name": "Acme Team", "connected": False}


class Page(HTMLParser):
    """The ids, links and headings of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, dict[str, str]] = {}
        self.hrefs: list[str] = []
        self.h1 = ""
        self._in_h1 = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "id" in values:
            self.by_id[values["id"]] = {"tag": tag, **values}
        if "href" in values:
            self.hrefs.append(values["href"])
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1 += data

    def href(self, element_id: str) -> str:
        return self.by_id[element_id]["href"]


def result_page(client: Client, result: dict[str, Any]) -> TestResponse:
    session = client.session
    session[RESULT_SESSION_KEY] = result
    session.save()
    response: TestResponse = client.get(RESULT_PATH)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    return response


# --- success, by connection -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "title", "actions"),
    [
        ("connected", "Connected to your account", {"home-link": "/"}),
        (
            "signed_out",
            "You were not signed in",
            {"sign-in-link": LOGIN_THEN_START, "home-link": "/"},
        ),
        ("unverified", "No installation was connected", {"home-link": "/"}),
        ("other_account", "Started from another account", {"home-link": "/"}),
        (
            "not_started_here",
            "Not started from this browser",
            {"start-link": START_PATH, "home-link": "/"},
        ),
    ],
)
def test_installed_page_says_how_the_installation_stands(
    client: Client, connection: str, title: str, actions: dict[str, str]
) -> None:
    result = {**SUCCESS, "connection": connection, "connected": connection == "connected"}
    html = result_page(client, result).content.decode()
    page = Page(html)
    # An unsigned return's page does not even say the app is installed: it names nothing.
    heading = "Back from Bitbucket" if connection == "unverified" else "The app is installed"
    assert page.h1 == heading
    assert page.by_id["connection"]["data-connection"] == connection
    assert f'<p class="bbi-callout__title">{title}</p>' in html
    links = {
        name: page.href(name)
        for name in ("home-link", "sign-in-link", "start-link")
        if name in page.by_id
    }
    assert links == actions
    assert "bbi-icon--success" in html


def test_unverified_page_names_no_workspace(client: Client) -> None:
    """Even if a result named one: nothing tells which installation an unsigned return was."""
    result = {**SUCCESS, "connection": "unverified"}
    html = result_page(client, result).content.decode()
    assert "Acme Team" not in html
    assert "It is installed on" not in html


@pytest.mark.parametrize("connection", ["connected", "signed_out", "not_started_here"])
def test_other_states_name_the_workspace(client: Client, connection: str) -> None:
    result = {**SUCCESS, "connection": connection, "connected": connection == "connected"}
    assert "It is installed on Acme Team." in result_page(client, result).content.decode()


def test_sign_in_link_follows_login_url(client: Client, settings: Settings) -> None:
    settings.LOGIN_URL = "/sign-in/?from=bitbucket"
    html = result_page(client, {**SUCCESS, "connection": "signed_out"}).content.decode()
    assert Page(html).href("sign-in-link") == "/sign-in/?from=bitbucket&next=/bitbucket/install/"


def test_home_link_is_under_the_script_prefix(client: Client) -> None:
    session = client.session
    session[RESULT_SESSION_KEY] = {**SUCCESS, "connection": "connected", "connected": True}
    session.save()
    with override_script_prefix("/site/"):  # as a WSGI server sets it from SCRIPT_NAME
        response = client.get(RESULT_PATH)
    assert Page(response.content.decode()).href("home-link") == "/site/"


# --- failure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "heading", "message", "actions"),
    [
        (
            "access_denied",
            "The app was not installed",
            "You chose not to give the app access, so nothing was installed.",
            {"start-link": START_PATH, "home-link": "/"},
        ),
        (
            "some_new_code",
            "The app was not installed",
            "Bitbucket did not install the app. Please try again.",
            {"start-link": START_PATH, "home-link": "/"},
        ),
        (
            "connected_to_another_user",
            "Connected to another account",
            "already connected to another account",
            {"home-link": "/"},
        ),
    ],
)
def test_failure_page_says_what_happened_in_words(
    client: Client, error: str, heading: str, message: str, actions: dict[str, str]
) -> None:
    result = {"ok": False, "error": error, "error_description": ""}
    html = result_page(client, result).content.decode()
    page = Page(html)
    assert page.h1 == heading
    assert message in html.split('role="alert">', 1)[1].split("</p>", 1)[0]
    # The code only as a small reference, after the words.
    assert f"Reference for support: <code>{error}</code>" in html
    assert html.index('role="alert"') < html.index('id="error-reference"')
    links = {name: page.href(name) for name in ("start-link", "home-link") if name in page.by_id}
    assert links == actions
    assert "bbi-icon--danger" in html


def test_rejected_return_page(client: Client) -> None:
    """Trust rule 4's one 400 page: the same words for every reason, and a way back."""
    response = client.get("/bitbucket/callback/?clientKey=a&error=b")
    assert response.status_code == 400
    page = Page(response.content.decode())
    assert page.h1 == "Nothing was connected"
    assert page.href("start-link") == START_PATH
    assert page.href("home-link") == "/"


# --- no result, start, 503 ----------------------------------------------------------------------


def test_result_page_without_a_result_is_a_friendly_404(client: Client) -> None:
    response = client.get(RESULT_PATH)
    assert response.status_code == 404
    assert response["Cache-Control"] == "no-store"
    assert response["X-Frame-Options"] == "DENY"
    page = Page(response.content.decode())
    assert page.h1 == "No install to show"
    assert page.href("home-link") == "/"
    assert page.href("start-link") == START_PATH


@pytest.mark.parametrize(("query", "cancel"), [("", "/"), ("?next=/dashboard/", "/dashboard/")])
def test_start_page_has_the_button_and_a_way_out(client: Client, query: str, cancel: str) -> None:
    html = client.get(START_PATH + query).content.decode()
    page = Page(html)
    assert page.h1 == "Connect to Bitbucket"
    assert 'class="bbi-button__logo"' in html
    assert page.href("cancel-link") == cancel


def test_unavailable_page_reloads_itself_and_links_no_flow(
    client: Client, settings: Settings
) -> None:
    """A young flow's return names an installation whose lifecycle callback has not come:
    503, Retry-After, and a page that reloads the very URL (no link repeats it)."""
    unregistered(settings)
    path = flow_path(client)
    flow_id = path.rstrip("/").rsplit("/", 1)[1]
    query = signed_query("connection:not-yet", "a-secret-nobody-stored", path=path)
    response = client.get(path + "?" + query)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    html = response.content.decode()
    assert 'data-bbi-reload-after="5"' in html
    assert "/static/bitbucket_install/reload.js" in html  # a file: a strict CSP allows it
    assert "<meta http-equiv" not in html  # a timed refresh nobody could stop
    assert "This page reloads by itself in 5 seconds." in html
    assert "<title>Please try again</title>" in html
    page = Page(html)
    assert page.h1 == "The install is not finished yet"
    assert page.href("reload-link") == ""
    assert flow_id not in html
    assert "connection:not-yet" not in html
    assert "bbi-icon--waiting" in html


def test_simulator_error_page_leads_back(client: Client, settings: Settings) -> None:
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    response = client.get("/bitbucket/simulator/authorize/")
    assert response.status_code == 400
    page = Page(response.content.decode())
    assert page.h1 == "The app could not be installed"
    assert page.href("home-link") == "/"
