"""The simulator's console: its page, a signed webhook sent to this site's ``webhook`` view
(received, recorded and signalled once; a redelivery not again), the targets it refuses,
CSRF, and the 429 switch.

The webhook goes out through the simulator's transport, which ``router`` routes through
Django's test client to the app's real webhook view.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation, WebhookDelivery
from bitbucket_install.signals import webhook_received
from bitbucket_install.simulator import state
from bitbucket_install.simulator.console import DEFAULT_EVENTS
from bitbucket_install.tokens import query_string_hash, verify_token
from tests.conftest import SignalRecorder
from tests.simulator.helpers import BASE_URL, Router, grant, registered_link

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

CONSOLE = "/bitbucket/simulator/console/"
WEBHOOK_URL = BASE_URL + "/bitbucket/webhook"


@pytest.fixture
def installed(client: Client, router: Router) -> Installation:
    """An installation made through the simulator (its callback reached the app)."""
    assert grant(client, registered_link()).status_code == 302
    router.calls.clear()
    installation: Installation = Installation.objects.get()
    return installation


def send(client: Client, **data: str) -> TestResponse:
    response: TestResponse = client.post(CONSOLE, {"action": "webhook", **data})
    return response


def test_the_page_lists_installations_and_events(
    client: Client, installed: Installation, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_WEBHOOKS = ["pullrequest:created", "*"]
    response = client.get(CONSOLE)
    html = response.content.decode()
    assert response.status_code == 200
    assert installed.client_key in html
    assert "example-app on Demo workspace" in html
    assert '<option value="pullrequest:created">' in html
    assert '<option value="repo:push">' not in html
    assert "csrftoken" in response.cookies
    assert response["Cache-Control"] == "no-store"
    assert response["X-Frame-Options"] == "DENY"
    assert "API calls are answered normally." in html


def test_without_installations_or_subscriptions(client: Client) -> None:
    html = client.get(CONSOLE).content.decode()
    assert 'id="no-installations"' in html
    assert 'id="webhook-form"' not in html
    state.remember_install(
        "k", "connection:1", "s" * 32, app_key="example-app", workspace="W", scopes=()
    )
    html = client.get(CONSOLE).content.decode()
    for event in DEFAULT_EVENTS:
        assert f'<option value="{event}">' in html


def test_a_webhook_is_sent_signed_received_and_signalled_once(
    client: Client,
    installed: Installation,
    router: Router,
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = send(client, client_key=installed.client_key, event="repo:push")
    html = response.content.decode()
    assert response.status_code == 200
    assert "The site answered HTTP 204." in html
    [call] = router.calls
    assert (call.method, call.url) == ("POST", WEBHOOK_URL)
    assert call.headers["X-Event-Key"] == "repo:push"
    request_uuid = call.headers["X-Request-UUID"]
    assert str(uuid.UUID(request_uuid)) == request_uuid
    assert request_uuid in html
    scheme, token = call.headers["Authorization"].split(" ")
    assert scheme == "JWT"
    claims = verify_token(
        token,
        installed.shared_secret,
        qsh=query_string_hash("POST", "/bitbucket/webhook", ""),
        issuer=installed.client_key,
    )
    assert claims["iss"] == installed.client_key
    assert call.payload["event"] == "repo:push"
    assert call.payload["data"]["repository"]["full_name"] == "demo-workspace/website"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.installation, delivery.event) == (installed, "repo:push")
    assert str(delivery.request_uuid) == request_uuid
    [signalled] = sent_signals.of(webhook_received)
    assert signalled["installation"] == installed
    assert signalled["event"] == "repo:push"
    assert signalled["payload"] == call.payload

    again = send(
        client, client_key=installed.client_key, event="repo:push", request_uuid=request_uuid
    )
    assert "The site answered HTTP 204." in again.content.decode()
    assert WebhookDelivery.objects.count() == 1
    assert len(sent_signals.of(webhook_received)) == 1


def test_a_typed_event_wins(client: Client, installed: Installation, router: Router) -> None:
    send(client, client_key=installed.client_key, event="repo:push", custom_event=" repo:fork ")
    assert router.calls[0].headers["X-Event-Key"] == "repo:fork"
    assert WebhookDelivery.objects.get().event == "repo:fork"


def test_the_site_refusing_is_shown(
    client: Client, installed: Installation, router: Router, sent_signals: SignalRecorder
) -> None:
    Installation.objects.update(shared_secret="another-secret-than-the-simulators")
    response = send(client, client_key=installed.client_key, event="repo:push")
    assert response.status_code == 200
    assert "The site answered HTTP 401." in response.content.decode()
    assert not WebhookDelivery.objects.exists()
    assert not sent_signals.of(webhook_received)


def test_an_unreachable_site_is_shown(
    client: Client, installed: Installation, router: Router
) -> None:
    router.answers[WEBHOOK_URL] = OSError("refused")
    response = send(client, client_key=installed.client_key, event="repo:push")
    assert "Not delivered:" in response.content.decode()
    router.answers[WEBHOOK_URL] = (400, b"Bad request text")
    response = send(client, client_key=installed.client_key, event="repo:push")
    html = response.content.decode()
    assert "The site answered HTTP 400.</strong> Bad request text" in html


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"client_key": "connection:404", "event": "repo:push"}, "no installation"),
        ({"client_key": "", "event": "repo:push"}, "no installation"),
        ({"event": "not an event"}, "The event must be"),
        ({"event": ""}, "The event must be"),
        ({"event": "repo:push", "request_uuid": "not-a-uuid"}, "must be a UUID"),
    ],
)
def test_refused_webhooks_send_nothing(
    client: Client,
    installed: Installation,
    router: Router,
    sent_signals: SignalRecorder,
    data: dict[str, str],
    why: str,
) -> None:
    data.setdefault("client_key", installed.client_key)
    response = send(client, **data)
    assert response.status_code == 400
    assert why in response.content.decode()
    assert router.calls == []
    assert not WebhookDelivery.objects.exists()
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        (None, "has no BITBUCKET_INSTALL_BASE_URL"),
        ("https://app.example.com/elsewhere", "not under BITBUCKET_INSTALL_BASE_URL"),
    ],
)
def test_targets_off_the_base_url_are_refused(
    client: Client,
    installed: Installation,
    router: Router,
    sent_signals: SignalRecorder,
    settings: Settings,
    base_url: str | None,
    why: str,
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = base_url
    response = send(client, client_key=installed.client_key, event="repo:push")
    assert response.status_code == 400
    assert why in response.content.decode()
    assert router.calls == []
    assert not WebhookDelivery.objects.exists()
    assert sent_signals.none_sent


def test_posts_need_the_csrf_token(
    installed: Installation, router: Router, sent_signals: SignalRecorder
) -> None:
    browser = Client(enforce_csrf_checks=True)
    for data in (
        {"action": "webhook", "client_key": installed.client_key, "event": "repo:push"},
        {"action": "rate_limit", "calls": "5"},
    ):
        assert browser.post(CONSOLE, data).status_code == 403
    assert router.calls == []
    assert not WebhookDelivery.objects.exists()
    assert sent_signals.none_sent
    assert state.rate_limited_calls() == 0
    page = browser.get(CONSOLE)
    token = page.cookies["csrftoken"].value
    response = browser.post(
        CONSOLE, {"action": "rate_limit", "calls": "2", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert state.rate_limited_calls() == 2


def test_the_rate_limit_switch(client: Client) -> None:
    response = client.post(CONSOLE, {"action": "rate_limit", "calls": "3"})
    html = response.content.decode()
    assert "The next 3 API calls answer 429." in html
    assert "The next 3 API calls answer 429, without Retry-After." in html
    assert state.rate_limited_calls() == 3
    html = client.post(CONSOLE, {"action": "rate_limit", "calls": "1"}).content.decode()
    assert "The next API call answers 429, without Retry-After." in html
    html = client.post(CONSOLE, {"action": "rate_limit", "calls": "0"}).content.decode()
    assert "The 429 switch is off." in html
    assert state.rate_limited_calls() == 0


@pytest.mark.parametrize("calls", ["", "x", "-1", "101"])
def test_the_rate_limit_switch_refuses_nonsense(client: Client, calls: str) -> None:
    state.set_rate_limited(4)
    response = client.post(CONSOLE, {"action": "rate_limit", "calls": calls})
    assert response.status_code == 400
    assert 'id="refusal"' in response.content.decode()
    assert state.rate_limited_calls() == 4


def test_an_unknown_action(client: Client, router: Router) -> None:
    response = client.post(CONSOLE, {"action": "explode"})
    assert response.status_code == 400
    assert "Unknown action." in response.content.decode()
    assert router.calls == []


def test_a_deleted_installation_is_listed_but_not_offered(
    client: Client, installed: Installation
) -> None:
    remembered = state.installation(installed.client_key)
    assert remembered is not None
    state.save_installation(state.SimulatedInstallation(**{**vars(remembered), "deleted": True}))
    html = client.get(CONSOLE).content.decode()
    assert "deleted through the API" in html
    assert f'<option value="{installed.client_key}">' not in html
