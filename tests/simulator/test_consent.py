"""The simulator's pages: the consent page, the page that asks before fetching another
app's descriptor, and the headers every page carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from django.test import Client

from bitbucket_install.simulator.base import TRIGGERABLE_ERRORS
from tests.simulator.helpers import (
    APP_KEY,
    CALLBACK_URL,
    DESCRIPTOR_URL,
    LOOPBACK_DESCRIPTOR,
    OTHER_APP,
    Router,
    check,
    grant,
    link,
    loopback_link,
    registered_link,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db


def test_consent_page_of_a_registered_app(client: Client, router: Router) -> None:
    response = client.get(registered_link())
    assert response.status_code == 200
    html = response.content.decode()
    assert '<h1 id="consent-title">Install Example app?</h1>' in html
    assert "An app used by the test suite." in html
    assert "By Example Inc." in html
    assert "installed by its app key example-app" in html
    assert "<code>account</code>: Read your account information" in html
    assert 'id="workspace" name="workspace" type="text" value="Demo workspace"' in html
    assert 'id="grant"' in html
    assert ">Grant access</button>" in html
    assert 'id="deny"' in html
    assert ">Deny</button>" in html
    for code in TRIGGERABLE_ERRORS:
        assert f'<option value="{code}">{code}</option>' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "csrftoken" in response.cookies


def test_consent_page_of_an_unregistered_app(
    unregistered: None, client: Client, router: Router
) -> None:
    response = client.get(link(descriptor_uri=DESCRIPTOR_URL, redirect_uri=CALLBACK_URL))
    html = response.content.decode()
    assert response.status_code == 200
    assert "An unregistered app, installed from its descriptor" in html
    assert "<code>repository</code>: Read your repositories" in html
    assert "<li><code>made-up-scope</code></li>" in html
    assert "By " not in html


def test_consent_page_without_scopes_or_vendor(client: Client, router: Router) -> None:
    router.answer_json(LOOPBACK_DESCRIPTOR, OTHER_APP)
    response = check(client, link(descriptor_uri=LOOPBACK_DESCRIPTOR))
    assert response.status_code == 200
    assert "Nothing beyond the installation itself." in response.content.decode()
    assert 'id="app-vendor"' not in response.content.decode()


@pytest.mark.parametrize("path", [registered_link(), loopback_link()])
def test_pages_post_back_to_the_same_link(client: Client, router: Router, path: str) -> None:
    router.answer_json(LOOPBACK_DESCRIPTOR, OTHER_APP)
    expected = f'action="{path.replace("&", "&amp;")}"'
    assert expected in client.get(path).content.decode()
    assert expected in check(client, path).content.decode()


def _consent(client: Client) -> TestResponse:
    response: TestResponse = client.get(registered_link())
    return response


def _check_page(client: Client) -> TestResponse:
    response: TestResponse = client.get(loopback_link())
    return response


def _error_page(client: Client) -> TestResponse:
    response: TestResponse = client.get(link())
    return response


def _installed_page(client: Client) -> TestResponse:
    return grant(client, link(addon_key=APP_KEY))


def _redirect(client: Client) -> TestResponse:
    return grant(client, registered_link())


@pytest.mark.parametrize(
    "page",
    [_consent, _check_page, _error_page, _installed_page, _redirect],
    ids=lambda f: f.__name__,
)
def test_every_answer_refuses_framing_and_caching(
    client: Client, router: Router, page: Callable[[Client], TestResponse]
) -> None:
    """Framed by another site, a Grant button could be clicked without the user knowing."""
    response = page(client)
    assert response.status_code in {200, 302, 400}
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cache-Control"] == "no-store"


def test_pages_let_the_browser_send_its_origin(client: Client, router: Router) -> None:
    """Under a "no-referrer" policy browsers POST with "Origin: null", which Django's CSRF
    check refuses: the simulator's pages must not set one (header or meta tag)."""
    for response in (client.get(registered_link()), client.get(loopback_link())):
        assert response["Referrer-Policy"] == "same-origin"
        assert 'name="referrer"' not in response.content.decode()
