"""The ``start`` view: the button's POST starts one flow and goes to Bitbucket with a 303;
GET shows the button; no CSRF token, no flow; an unsafe ``next`` is dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.cache import SessionStore
from django.http import HttpResponseBase
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from bitbucket_install.exceptions import InstallLinkError
from bitbucket_install.flow import MAX_FLOWS_PER_SESSION, SESSION_KEY
from bitbucket_install.models import Installation
from bitbucket_install.views import StartView
from tests.conftest import SignalRecorder
from tests.test_templatetags import STYLESHEET, Elements, assert_valid_button

pytestmark = pytest.mark.django_db

START = "/bitbucket/install/"
URL = (
    "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
    "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
)
UNSAFE_NEXT = [
    "http://evil.test/x",
    "https://evil.test/x",
    "//evil.test",
    "//evil.test/x",
    "\\\\evil.test",
    "/\\evil.test",
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


def assert_protected(response: HttpResponseBase, referrer_policy: str = "no-referrer") -> None:
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == referrer_policy


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
    assert response.status_code == 303
    assert response["Location"] == URL
    assert_protected(response)
    (flow,) = flows_in(browser)
    assert flow["user_id"] == str(user.pk)
    assert flow["next"] == "/dashboard/?tab=1"
    assert len(flow["id"]) >= 32
    assert set(flow) == {"id", "user_id", "next", "started_at"}


@pytest.mark.usefixtures("unchanged")
def test_post_anonymous_creates_one_flow_and_redirects(browser: Client) -> None:
    response = submit_button(browser)
    assert response.status_code == 303
    assert response["Location"] == URL
    assert_protected(response)
    (flow,) = flows_in(browser)
    assert flow["user_id"] is None
    assert flow["next"] == ""


@pytest.mark.usefixtures("unchanged")
def test_each_post_starts_its_own_flow_up_to_the_cap(browser: Client) -> None:
    ids = []
    for _ in range(MAX_FLOWS_PER_SESSION + 1):
        assert submit_button(browser).status_code == 303
        ids.append(flows_in(browser)[-1]["id"])
    assert len(set(ids)) == MAX_FLOWS_PER_SESSION + 1
    assert [flow["id"] for flow in flows_in(browser)] == ids[1:]


@override_settings(
    BITBUCKET_INSTALL_ADDON_KEY=None,
    BITBUCKET_INSTALL_DESCRIPTOR_URI="https://app.example.com/bitbucket/atlassian-connect.json",
    BITBUCKET_INSTALL_DESCRIPTOR={"key": "example-app", "name": "App", "description": "d"},
)
@pytest.mark.usefixtures("unchanged")
def test_post_unregistered_app_redirects_with_descriptor_uri(browser: Client) -> None:
    response = submit_button(browser)
    assert response.status_code == 303
    assert response["Location"] == (
        "https://bitbucket.org/site/addons/authorize"
        "?descriptor_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fatlassian-connect.json"
        "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
    )
    assert len(flows_in(browser)) == 1


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
    assert response.status_code == 303
    assert response["Location"] == URL
    (flow,) = flows_in(browser)
    assert flow["next"] == ""


@pytest.mark.usefixtures("unchanged")
def test_post_keeps_a_safe_next(browser: Client) -> None:
    browser.get(START)
    token = browser.cookies["csrftoken"].value
    response = browser.post(START, {"csrfmiddlewaretoken": token, "next": "/dashboard/?tab=1"})
    assert response.status_code == 303
    (flow,) = flows_in(browser)
    assert flow["next"] == "/dashboard/?tab=1"


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("method", ["put", "patch", "delete", "head", "options"])
def test_other_methods_are_not_allowed(method: str) -> None:
    browser = Client()  # without CSRF checks, so the view itself answers
    response = getattr(browser, method)(START)
    assert response.status_code == 405
    assert flows_in(browser) == []


@override_settings(BITBUCKET_INSTALL_REDIRECT_URI="https://evil.test/callback/")
def test_post_on_a_misconfigured_site_raises_before_starting_a_flow() -> None:
    request = RequestFactory().post(START)
    request.session = SessionStore()
    request.user = AnonymousUser()
    with pytest.raises(InstallLinkError) as caught:
        StartView.as_view()(request)
    assert caught.value.rule == "redirect_uri_under_base_url"
    assert SESSION_KEY not in request.session
