"""The ``start`` view: the button's POST starts one flow and goes to Bitbucket with a 303,
the flow's id as the last segment of the ``redirect_uri``; GET shows the button; no CSRF
token, no flow; an unsafe ``next`` is dropped."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.cache import SessionStore
from django.http import HttpResponse, HttpResponseBase
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.authorize import is_under
from bitbucket_install.exceptions import InstallLinkError
from bitbucket_install.flow import MAX_FLOWS_PER_SESSION, SESSION_KEY
from bitbucket_install.models import Installation
from bitbucket_install.views import StartView, protect
from tests.callback_helpers import app_log, assert_protected, records_mentioning
from tests.conftest import SignalRecorder
from tests.test_templatetags import STYLESHEET, Elements, assert_valid_button

pytestmark = pytest.mark.django_db

START = "/bitbucket/install/"
AUTHORIZE = "https://bitbucket.org/site/addons/authorize"
REDIRECT_URI = "https://app.example.com/bitbucket/callback/"
BASE_URL = "https://app.example.com"
UNSAFE_NEXT = [
    "http://evil.test/x",
    "https://evil.test/x",
    "//evil.test",
    "//evil.test/x",
    "\\\\evil.test",
    "/\\evil.test",
    "//host/x",
    "/\\host",
    "javascript:alert(1)",
    "https://user@evil.test",
    "http://testserver@evil.test",
    "/dashboard/\x07",
    "/dashboard/\x00",
    "/dash\nboard/",
    "/dashboard/\r\nSet-Cookie: x=1",
    "/\tevil.test",
    "dashboard/",
    "evil.test/x",
]

CaptureCallbacks = Callable[..., AbstractContextManager[list[Callable[[], Any]]]]


def rows() -> list[dict[str, Any]]:
    return list(Installation.objects.order_by("pk").values())


@pytest.fixture
def existing_installation() -> Installation:
    """A row that must come through every test untouched."""
    installation: Installation = Installation.objects.create(
        client_key="ari:cloud:bitbucket::app/{11111111-2222-3333-4444-555555555555}/example-app",
        addon_key="example-app",
        shared_secret="stored-secret",
    )
    return installation


@pytest.fixture
def user() -> User:
    user: User = User.objects.create_user(username="alice", password="pw")
    return user


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def unchanged(
    existing_installation: Installation,
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: CaptureCallbacks,
) -> Iterator[None]:
    """Whatever the test does: no Installation row changes and no signal is sent."""
    before = rows()
    with django_capture_on_commit_callbacks(execute=True):
        yield
    assert rows() == before
    assert sent_signals.none_sent


def flows_in(client: Client) -> list[dict[str, Any]]:
    stored = client.session.get(SESSION_KEY)
    return [] if stored is None else list(stored)


def form_of(html: bytes) -> tuple[str, dict[str, str]]:
    """The action and fields of the page's install form, as a browser would submit it."""
    page = Elements(html.decode())
    form = page.one("form")
    fields = {
        element.attrs["name"]: element.attrs.get("value", "")
        for element in page.all("input")
        if "form" in element.ancestors
    }
    return form.attrs["action"], fields


def authorize_url(redirect_uri: str, app: tuple[str, str] = ("addon_key", "example-app")) -> str:
    """The authorize URL Bitbucket is sent to: the app, then the redirect_uri."""
    return AUTHORIZE + "?" + urlencode([app, ("redirect_uri", redirect_uri)])


def redirect_uri_of(response: HttpResponseBase) -> str:
    [redirect_uri] = parse_qs(urlsplit(response["Location"]).query)["redirect_uri"]
    return redirect_uri


def assert_sent_with_its_flow(
    response: HttpResponseBase,
    flow: dict[str, Any],
    redirect_uri: str = REDIRECT_URI,
    base_url: str = BASE_URL,
) -> None:
    """A 303 to Bitbucket whose redirect_uri is exactly ``redirect_uri`` + the id of
    ``flow`` + "/", and still under the base URL."""
    assert response.status_code == 303
    assert_protected(response)
    sent = redirect_uri_of(response)
    assert sent == redirect_uri + flow["id"] + "/"
    assert is_under(urlsplit(sent), urlsplit(base_url))
    assert sent.startswith(base_url.rstrip("/") + "/")


# --- GET: the page with the button --------------------------------------------------------


def test_start_url() -> None:
    assert reverse("bitbucket_install:start") == START


@pytest.mark.usefixtures("unchanged")
def test_get_renders_the_button_and_creates_no_flow(browser: Client) -> None:
    response = browser.get(START)
    assert response.status_code == 200
    # The form's POST must carry a real Origin for the CSRF check (see StartView.get).
    assert_protected(response, referrer_policy="same-origin")
    assert [t.name for t in response.templates][:3] == [
        "bitbucket_install/start.html",
        "bitbucket_install/base.html",
        "bitbucket_install/button.html",
    ]
    html = response.content.decode()
    assert html.startswith("<!DOCTYPE html>")
    page = Elements(html)
    assert_valid_button(page, action=START)
    assert page.one("html").attrs["lang"] == "en"
    assert not [e for e in page.all("meta") if e.attrs.get("name") == "referrer"]
    head_links = [e for e in page.all("link") if "head" in e.ancestors]
    assert [e.attrs["href"] for e in head_links] == [STYLESHEET]
    assert page.one("h1")
    assert page.all("input") == [page.one("input", name="csrfmiddlewaretoken")]
    assert flows_in(browser) == []
    assert "csrftoken" in browser.cookies


@pytest.mark.usefixtures("unchanged")
def test_get_when_logged_in_creates_no_flow(browser: Client, user: User) -> None:
    browser.force_login(user)
    response = browser.get(START, {"next": "/dashboard/?tab=1"})
    assert response.status_code == 200
    assert flows_in(browser) == []
    assert SESSION_KEY not in browser.session


@pytest.mark.usefixtures("unchanged")
def test_get_keeps_a_safe_next_in_the_form(browser: Client) -> None:
    response = browser.get(START, {"next": "/dashboard/?tab=1&x=\"'"})
    _action, fields = form_of(response.content)
    assert fields["next"] == "/dashboard/?tab=1&x=\"'"
    assert 'value="/dashboard/?tab=1&amp;x=&quot;&#x27;"' in response.content.decode()


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("candidate", UNSAFE_NEXT)
def test_get_drops_an_unsafe_next(browser: Client, candidate: str) -> None:
    response = browser.get(START, {"next": candidate})
    assert response.status_code == 200
    _action, fields = form_of(response.content)
    assert set(fields) == {"csrfmiddlewaretoken"}
    assert "evil.test" not in response.content.decode()
    assert "javascript" not in response.content.decode()


@override_settings(BITBUCKET_INSTALL_DESCRIPTOR={"name": '<script>alert(1)</script>"'})
@pytest.mark.usefixtures("unchanged")
def test_get_escapes_a_hostile_app_name(browser: Client) -> None:
    response = browser.get(START)
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in html


# --- POST: the button's form ----------------------------------------------------------------


def submit_button(browser: Client, next_url: str | None = None) -> HttpResponseBase:
    """Load the start page and submit its form, as a browser would."""
    page = browser.get(START, {} if next_url is None else {"next": next_url})
    action, fields = form_of(page.content)
    return browser.post(action, fields)


@pytest.mark.usefixtures("unchanged")
def test_post_logged_in_creates_one_flow_and_redirects(browser: Client, user: User) -> None:
    browser.force_login(user)
    response = submit_button(browser, "/dashboard/?tab=1")
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow)
    assert response["Location"] == authorize_url(REDIRECT_URI + flow["id"] + "/")
    assert flow["user_id"] == str(user.pk)
    assert flow["next"] == "/dashboard/?tab=1"
    assert len(flow["id"]) == 32
    assert set(flow) == {"id", "user_id", "next", "started_at"}


@pytest.mark.usefixtures("unchanged")
def test_post_anonymous_creates_one_flow_and_redirects(browser: Client) -> None:
    response = submit_button(browser)
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow)
    assert response["Location"] == authorize_url(REDIRECT_URI + flow["id"] + "/")
    assert flow["user_id"] is None
    assert flow["next"] == ""


@pytest.mark.usefixtures("unchanged")
def test_each_post_starts_its_own_flow_up_to_the_cap(browser: Client) -> None:
    ids = []
    redirect_uris = []
    for _ in range(MAX_FLOWS_PER_SESSION + 1):
        response = submit_button(browser)
        assert_sent_with_its_flow(response, flows_in(browser)[-1])
        ids.append(flows_in(browser)[-1]["id"])
        redirect_uris.append(redirect_uri_of(response))
    assert len(set(ids)) == MAX_FLOWS_PER_SESSION + 1
    assert redirect_uris == [REDIRECT_URI + flow_id + "/" for flow_id in ids]
    assert [flow["id"] for flow in flows_in(browser)] == ids[1:]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(
    "configured",
    [
        "https://app.example.com/bitbucket/callback/",
        "https://app.example.com/bitbucket/callback",
    ],
    ids=["trailing-slash", "no-trailing-slash"],
)
def test_post_adds_the_flow_id_to_an_explicit_redirect_uri(
    browser: Client, settings: Settings, configured: str
) -> None:
    settings.BITBUCKET_INSTALL_REDIRECT_URI = configured
    response = submit_button(browser)
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow, redirect_uri=REDIRECT_URI)
    assert response["Location"] == authorize_url(REDIRECT_URI + flow["id"] + "/")


@pytest.mark.usefixtures("unchanged")
def test_post_under_a_base_url_with_a_path(browser: Client, settings: Settings) -> None:
    """A base URL whose path ends in "/" and the site under that prefix: the redirect_uri
    is the callback under that prefix, with the flow's id."""
    settings.ROOT_URLCONF = "tests.sub_urls"
    settings.BITBUCKET_INSTALL_BASE_URL = "https://app.example.com/sub/"
    page = browser.get("/sub/bitbucket/install/")
    action, fields = form_of(page.content)
    assert action == "/sub/bitbucket/install/"

    response = browser.post(action, fields)

    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(
        response,
        flow,
        redirect_uri="https://app.example.com/sub/bitbucket/callback/",
        base_url="https://app.example.com/sub/",
    )


@override_settings(
    BITBUCKET_INSTALL_ADDON_KEY=None,
    BITBUCKET_INSTALL_DESCRIPTOR_URI="https://app.example.com/bitbucket/atlassian-connect.json",
    BITBUCKET_INSTALL_DESCRIPTOR={"key": "example-app", "name": "App", "description": "d"},
)
@pytest.mark.usefixtures("unchanged")
def test_post_unregistered_app_redirects_with_descriptor_uri(browser: Client) -> None:
    response = submit_button(browser)
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow)
    assert response["Location"] == authorize_url(
        REDIRECT_URI + flow["id"] + "/",
        app=("descriptor_uri", "https://app.example.com/bitbucket/atlassian-connect.json"),
    )


@pytest.mark.usefixtures("unchanged")
def test_post_logs_the_user_but_never_the_flow_id(
    browser: Client, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    browser.force_login(user)
    caplog.set_level(logging.DEBUG)
    response = submit_button(browser)
    assert response.status_code == 303
    (flow,) = flows_in(browser)
    assert app_log(caplog) == [("INFO", f"install flow started: user={user.pk}")]
    assert records_mentioning(caplog, flow["id"]) == []


@pytest.mark.usefixtures("unchanged")
def test_post_without_csrf_token_is_refused(browser: Client, user: User) -> None:
    browser.force_login(user)
    browser.get(START)  # the CSRF cookie is there, the token is not posted
    response = browser.post(START, {"next": "/dashboard/"})
    assert response.status_code == 403
    assert flows_in(browser) == []
    assert "bitbucket.org" not in response.get("Location", "")


@pytest.mark.usefixtures("unchanged")
def test_post_without_csrf_cookie_is_refused(browser: Client) -> None:
    response = browser.post(START)
    assert response.status_code == 403
    assert flows_in(browser) == []


@pytest.mark.usefixtures("unchanged")
def test_post_with_a_wrong_csrf_token_is_refused(browser: Client) -> None:
    browser.get(START)
    response = browser.post(START, {"csrfmiddlewaretoken": "x" * 64})
    assert response.status_code == 403
    assert flows_in(browser) == []


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("candidate", UNSAFE_NEXT)
def test_post_drops_an_unsafe_next(browser: Client, candidate: str) -> None:
    browser.get(START)
    token = browser.cookies["csrftoken"].value
    response = browser.post(START, {"csrfmiddlewaretoken": token, "next": candidate})
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow)
    assert flow["next"] == ""
    assert "evil.test" not in response["Location"]
    assert "host" not in response["Location"].replace("app.example.com", "")


@pytest.mark.usefixtures("unchanged")
def test_post_keeps_a_safe_next(browser: Client) -> None:
    browser.get(START)
    token = browser.cookies["csrftoken"].value
    response = browser.post(START, {"csrfmiddlewaretoken": token, "next": "/dashboard/?tab=1"})
    (flow,) = flows_in(browser)
    assert_sent_with_its_flow(response, flow)
    assert flow["next"] == "/dashboard/?tab=1"
    # The next stays in the session: Bitbucket never sees it.
    assert "dashboard" not in response["Location"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("method", ["put", "patch", "delete", "head", "options"])
def test_other_methods_are_not_allowed(method: str) -> None:
    browser = Client()  # without CSRF checks, so the view itself answers
    response = getattr(browser, method)(START)
    assert response.status_code == 405
    # Django's own answer, protected too; no form on it, so no-referrer.
    assert_protected(response)
    assert flows_in(browser) == []


def test_protect_keeps_a_referrer_policy_the_view_set() -> None:
    """The start page's same-origin survives the protection every answer gets after the
    view; the other headers are always the app's."""
    response = HttpResponse()
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "max-age=3600"
    response["X-Frame-Options"] = "SAMEORIGIN"

    assert protect(response) is response
    assert_protected(response, referrer_policy="same-origin")
    assert_protected(protect(HttpResponse()))


@override_settings(BITBUCKET_INSTALL_REDIRECT_URI="https://evil.test/callback/")
def test_post_on_a_misconfigured_site_raises_before_starting_a_flow() -> None:
    request = RequestFactory().post(START)
    request.session = SessionStore()
    request.user = AnonymousUser()
    with pytest.raises(InstallLinkError) as caught:
        StartView.as_view()(request)
    assert caught.value.rule == "redirect_uri_under_base_url"
    assert SESSION_KEY not in request.session
