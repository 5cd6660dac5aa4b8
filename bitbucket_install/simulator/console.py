"""The simulator's console: the installations it made, a signed webhook of a chosen event
sent to this site, and the 429 switch of its API.

GET shows it; a POST (CSRF-protected) sends a webhook (``webhook``) or sets the switch
(``rate_limit``) and shows the page again with the outcome. A webhook goes only to this
site's own ``webhook`` view, on its base URL (checked before any connection, like every URL
of the simulator), signed as Bitbucket signs one: ``iss`` the clientKey, the shared secret
the simulator gave that installation, a qsh over that POST relative to the app's base URL,
with ``X-Event-Key`` and a fresh ``X-Request-UUID`` (or the one given, for a redelivery).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect

from bitbucket_install.api_errors import error_text
from bitbucket_install.conf import app_settings
from bitbucket_install.identifiers import ALL_EVENTS, is_valid_event_key
from bitbucket_install.simulator import state, transport
from bitbucket_install.simulator.base import (
    Workspace,
    is_under_base,
    request_token,
    webhook_payload,
)
from bitbucket_install.simulator.transport import TRANSPORT_ERRORS
from bitbucket_install.simulator.views import SimulatorPage
from bitbucket_install.templating import render

# Offered when the settings subscribe to no event key of their own (none, or only "*").
DEFAULT_EVENTS = ("repo:push", "pullrequest:created", "pullrequest:fulfilled", "issue:created")
MAX_RATE_LIMITED_CALLS = 100
TEMPLATE = "bitbucket_install/simulator/console.html"


class ConsoleRefusal(Exception):
    """A console request the simulator will not carry out; the message says why."""


def event_choices() -> tuple[str, ...]:
    """The events of the descriptor's webhook modules, or a few common ones."""
    own = tuple(event for event in app_settings.WEBHOOKS if event != ALL_EVENTS)
    return own or DEFAULT_EVENTS


def webhook_url() -> str:
    """Where a webhook may go: this site's ``webhook`` view, under its base URL."""
    base_url = app_settings.BASE_URL
    if base_url is None:
        raise ConsoleRefusal(
            "This site has no BITBUCKET_INSTALL_BASE_URL: the simulator sends webhooks "
            "only to the webhook view on it."
        )
    url = app_settings.absolute_url(reverse("bitbucket_install:webhook"))
    if not is_under_base(url, base_url):
        raise ConsoleRefusal(
            "The webhook view is not under BITBUCKET_INSTALL_BASE_URL: the simulator sends "
            "webhooks nowhere else."
        )
    return url


def chosen_event(data: dict[str, str]) -> str:
    event = data.get("custom_event", "").strip() or data.get("event", "")
    if not is_valid_event_key(event):
        raise ConsoleRefusal("The event must be an event key such as repo:push.")
    return event


def chosen_request_uuid(data: dict[str, str]) -> str:
    given = data.get("request_uuid", "").strip()
    if not given:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(given))
    except ValueError as error:
        raise ConsoleRefusal("The X-Request-UUID must be a UUID.") from error


def send_webhook(data: dict[str, str]) -> dict[str, Any]:
    """Send the webhook ``data`` describes; what was sent and how the site answered."""
    installation = state.installation(data.get("client_key", ""))
    if installation is None:
        raise ConsoleRefusal("The simulator made no installation with that clientKey.")
    event = chosen_event(data)
    request_uuid = chosen_request_uuid(data)
    url = webhook_url()
    body = json.dumps(webhook_payload(event, Workspace.named(installation.workspace)))
    token = request_token(
        installation.client_key, installation.shared_secret, "POST", url, app_settings.BASE_PATH
    )
    headers = {
        "Authorization": "JWT " + token,
        "Content-Type": "application/json",
        "X-Event-Key": event,
        "X-Request-UUID": request_uuid,
        "User-Agent": "Bitbucket-Webhooks/2.0 (simulated)",
    }
    sent = {
        "client_key": installation.client_key,
        "event": event,
        "request_uuid": request_uuid,
        "url": url,
    }
    try:
        status, answer = transport.send("POST", url, body.encode(), headers)
    except TRANSPORT_ERRORS:
        return {**sent, "status": None, "answer": "The site could not be reached."}
    text = error_text(answer)[0] if answer else ""
    return {**sent, "status": status, "ok": 200 <= status < 300, "answer": text}


def install_from_bitbucket_url() -> str:
    """The simulator's authorize page for this site's own app, without a ``redirect_uri``:
    an install begun on Bitbucket's side (its marketplace or workspace settings), after
    which the descriptor's ``postInstallRedirect``, if any, takes the browser back. "" when
    the settings name no app."""
    if app_settings.ADDON_KEY is not None:
        query = {"addon_key": app_settings.ADDON_KEY}
    elif app_settings.DESCRIPTOR_URI is not None:
        query = {"descriptor_uri": app_settings.DESCRIPTOR_URI}
    else:
        return ""
    return reverse("bitbucket_install:simulator") + "?" + urlencode(query)


def rate_limit(data: dict[str, str]) -> int:
    try:
        calls = int(data.get("calls", ""))
    except ValueError as error:
        raise ConsoleRefusal("The number of calls must be a whole number.") from error
    if not 0 <= calls <= MAX_RATE_LIMITED_CALLS:
        raise ConsoleRefusal(f"The number of calls must be 0 to {MAX_RATE_LIMITED_CALLS}.")
    state.set_rate_limited(calls)
    return calls


class ConsoleView(SimulatorPage):
    """The console page. ``bitbucket_install.urls`` routes to it only while the simulator
    is on (so only with ``DEBUG``)."""

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> HttpResponse:
        data = {key: request.POST.get(key, "") for key in request.POST}
        action = data.get("action")
        try:
            if action == "webhook":
                return self.page(request, webhook=send_webhook(data))
            if action == "rate_limit":
                return self.page(request, rate_limit_set=rate_limit(data))
            raise ConsoleRefusal("Unknown action.")
        except ConsoleRefusal as refusal:
            return self.page(request, status=400, refusal=str(refusal))

    def page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        context.update(
            installations=state.installations(),
            events=event_choices(),
            rate_limited_calls=state.rate_limited_calls(),
            max_calls=MAX_RATE_LIMITED_CALLS,
            install_url=install_from_bitbucket_url(),
            action=reverse("bitbucket_install:simulator_console"),
        )
        return render(request, TEMPLATE, context, status=status)


console_view = ConsoleView.as_view()
