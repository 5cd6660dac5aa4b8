"""Helpers for the attack tests of the return trip: browsers with and without a flow, and
what each kind of refusal must look like.

- ``Browser(username, with_flow=...)``: a test client, logged in or not, with a live flow
  (``flow_path``) or none.
- ``live_flows(client)``: the flow ids stored in the client's session, without creating a
  session for a client that has none (``Client.session`` would create one).
- ``made_up_flow_path()``: ``callback/<an id no browser was given>/``.
- ``assert_rejected(...)``: the 400 page, nothing written, ``install_failed`` and the flow
  used up only for the browser's own live flow, one log line with the reason.
- ``assert_not_yet(...)``: the "reload in a moment" 503, nothing written, no signal, the
  flow kept.
- ``assert_refused(...)``: ``assert_rejected``, preceded for a young live flow by the 503
  that the reasons of ``NOT_YET_REASONS`` earn first.
- ``assert_unverified(...)``: the one answer every unsigned return gets when unsigned
  returns are not trusted (the neutral success page), no flow touched, no
  ``install_failed``, and only the confirmation of a fresh row recorded (``recorded``).
- ``answer_of(response)``: everything a visitor sees of an answer but the dates, so two
  answers can be compared for an oracle; ``seen_after(browser, response)`` adds the result
  page the answer sends the browser to.
- ``session_rows()``: how many sessions the database holds.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.http.response import HttpResponseBase
from django.test import Client

from bitbucket_install import flow as flows
from bitbucket_install.models import Installation
from bitbucket_install.returns import NOT_YET_REASONS
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.views import RESULT_SESSION_KEY
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    RESULT_PATH,
    age_flows,
    flow_path,
    login,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

# Reasons decided from the query alone (returns.ReturnTrip.from_query), before any lookup:
# no flow is touched for them, not even the browser's own.
BEFORE_LOOKUP = frozenset(
    {
        "parameter_repeated",
        "client_key_conflict",
        "client_key_or_error_required",
        "client_key_invalid",
        "token_missing",
        "token_malformed",
        "token_algorithm",
        "token_issuer",
    }
)
REJECTED_TEXT = "This install could not be confirmed, so it was not connected."
TRY_AGAIN_TEXT = "Reload this page in a moment"
UNVERIFIED_TEXT = "Bitbucket sent you back without a signature"
# The result of every unsigned return when they are not trusted: nothing in it tells which
# installation it named, or whether it named one.
UNVERIFIED_RESULT = {
    "ok": True,
    "client_key": "",
    "principal_name": "",
    "connection": "unverified",
    "connected": False,
}
# The head of the result page of an unsigned return, on its first view: it reloads itself.
# What makes a page reload itself (reload.js reads it): in the page of an unsigned return.
REFRESH_META = 'data-bbi-reload-after="5"'
# What the result keeps for the server only: the named clientKey (the result page records
# it again while in the confirm window), when, and how often the page still reloads.
RETRY_FIELDS = ("pending", "returned_at", "refreshes")


def shown(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the fields only the server reads."""
    return {name: value for name, value in result.items() if name not in RETRY_FIELDS}


# A flow older than this (BITBUCKET_INSTALL_CONFIRM_WINDOW + 1 s) gets no "not yet".
PAST_CONFIRM_WINDOW = 121
# What differs between two answers that are the same: the moment they were made.
DATE_HEADERS = frozenset({"date", "expires", "last-modified"})


def live_flows(client: Client) -> list[str]:
    """Ids of the flows stored in ``client``'s session (none if it has no session)."""
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    if cookie is None:
        return []
    stored = client.session.get(flows.SESSION_KEY, [])
    return [str(item["id"]) for item in stored]


def made_up_flow_path() -> str:
    """A flow path of the right shape whose id no browser was ever given."""
    return f"{CALLBACK_PATH}{secrets.token_urlsafe(flows.FLOW_ID_BYTES)}/"


def flow_id_of(path: str) -> str:
    """The flow id in ``callback/<flow id>/``."""
    assert path.startswith(CALLBACK_PATH)
    assert path.endswith("/")
    return path[len(CALLBACK_PATH) : -1]


def session_rows() -> int:
    count: int = Session.objects.count()
    return count


class Browser:
    """A test client: logged in as a new user ``username`` (or anonymous), with a live
    install flow (``with_flow``: the button pressed just now) or none."""

    def __init__(
        self, username: str | None = None, *, with_flow: bool = False, next_url: str | None = None
    ) -> None:
        self.client = Client()
        self.user: User | None = None if username is None else login(self.client, username)
        self.flow_path: str | None = flow_path(self.client, next_url) if with_flow else None

    @property
    def flow_id(self) -> str:
        assert self.flow_path is not None
        return flow_id_of(self.flow_path)

    def path(self, kind: str) -> str:
        """The path a return of ``kind`` comes to: "flow" (this browser's own flow),
        "plain" (``callback/``) or "made-up" (a flow id nobody was given)."""
        if kind == "flow":
            assert self.flow_path is not None
            return self.flow_path
        if kind == "plain":
            return CALLBACK_PATH
        assert kind == "made-up"
        return made_up_flow_path()

    def get(self, url: str) -> TestResponse:
        return self.client.get(url)

    def age_flows(self, seconds: float = PAST_CONFIRM_WINDOW) -> None:
        age_flows(self.client, seconds)


def uses_the_flow(browser: Browser, url: str, reason: str) -> bool:
    """Does a rejection of ``url`` for ``reason`` use up ``browser``'s flow? Only a return to
    its own live flow's path that got past the checks of the query alone."""
    return (
        browser.flow_path is not None
        and urlsplit(url).path == browser.flow_path
        and reason not in BEFORE_LOOKUP
        and reason != "flow_unknown"
    )


def assert_protected(response: HttpResponseBase) -> None:
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"


def app_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "bitbucket_install"]


def assert_nothing_secret_logged(
    caplog: pytest.LogCaptureFixture, url: str, flow_ids: list[str]
) -> None:
    """No token, secret or flow id (the browser's, or the one in ``url``) in any log record,
    Django's own included."""
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == "jwt" and len(value) > 16:
            assert value not in logged
    assert APP_SECRET not in logged
    assert INSTALL_SECRET not in logged
    path = urlsplit(url).path
    ids = [*flow_ids, *([flow_id_of(path)] if path != CALLBACK_PATH else [])]
    for flow_id in ids:
        assert flow_id not in logged


@dataclass(frozen=True)
class Before:
    """What a request must leave alone, noted before it."""

    rows: list[dict[str, Any]]
    flows: list[str]


def note(
    browser: Browser, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> Before:
    before = Before(rows=installation_rows(), flows=live_flows(browser.client))
    sent_signals.calls.clear()
    caplog.clear()
    caplog.set_level(logging.INFO)
    return before


def assert_rejected(
    browser: Browser,
    url: str,
    reason: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    *,
    flow_used: bool | None = None,
) -> TestResponse:
    """GET ``url``: the 400 page, nothing written, no ``installed``, one log line with the
    reason. Only when ``flow_used`` (by default: ``uses_the_flow``) the browser's flow is
    used up and ``install_failed`` sent with the reason; otherwise no signal at all and
    every flow is kept."""
    if flow_used is None:
        flow_used = uses_the_flow(browser, url, reason)
    before = note(browser, sent_signals, caplog)

    response = browser.get(url)

    assert response.status_code == 400
    assert_protected(response)
    page = response.content.decode()
    assert REJECTED_TEXT in page
    assert installation_rows() == before.rows
    assert not sent_signals.of(installed)
    if flow_used:
        assert len(sent_signals.calls) == 1
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["sender"] is Installation
        assert kwargs["request"].path == browser.flow_path
        assert kwargs["error"] == reason
        assert kwargs["error_description"] == ""
        if browser.user is None:
            assert kwargs["user"] is None
        else:
            assert kwargs["user"].pk == browser.user.pk
        assert live_flows(browser.client) == [f for f in before.flows if f != browser.flow_id]
    else:
        assert sent_signals.none_sent
        assert live_flows(browser.client) == before.flows
    lines = app_log_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"install return rejected: reason={reason} ")
    assert lines[0].endswith(f"flow={flow_used}")
    assert_nothing_secret_logged(caplog, url, before.flows)
    return response


def assert_not_yet(
    browser: Browser,
    url: str,
    reason: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> TestResponse:
    """GET ``url`` with the browser's young flow: the "reload in a moment" 503 (the
    lifecycle callback may still be on its way); nothing written, no signal, every flow
    kept, one log line with the reason."""
    assert browser.flow_path is not None
    assert urlsplit(url).path == browser.flow_path
    before = note(browser, sent_signals, caplog)
    assert browser.flow_id in before.flows

    response = browser.get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert_protected(response)
    assert TRY_AGAIN_TEXT in response.content.decode()
    assert installation_rows() == before.rows
    assert sent_signals.none_sent
    assert live_flows(browser.client) == before.flows
    lines = app_log_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"install return not verifiable yet: reason={reason} client_key=")
    assert_nothing_secret_logged(caplog, url, before.flows)
    return response


def assert_refused(
    browser: Browser,
    url: str,
    reason: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> TestResponse:
    """A refusal as the browser meets it: a return to its own young flow for one of the
    ``NOT_YET_REASONS`` is told to reload first (503, flow kept); once the flow is older
    than the confirm window, the same return is rejected (``assert_rejected``)."""
    if uses_the_flow(browser, url, reason) and reason in NOT_YET_REASONS:
        assert_not_yet(browser, url, reason, sent_signals, caplog)
        browser.age_flows()
    return assert_rejected(browser, url, reason, sent_signals, caplog)


def has_session(browser: Browser) -> bool:
    """Does ``browser`` hold a session cookie (the server may still not know it)?"""
    return browser.client.cookies.get(settings.SESSION_COOKIE_NAME) is not None


def assert_unverified(
    browser: Browser,
    url: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    *,
    recorded: bool,
    location: str = RESULT_PATH,
) -> TestResponse:
    """GET the unsigned return ``url`` (unsigned returns not trusted): the neutral success
    answer (a 303 to ``location`` with the neutral result kept in the session, or that page
    in place for a browser without a session, which gets none), whatever the clientKey
    names. Every flow kept, no ``install_failed``, one log line. Only when ``recorded`` the
    named row, installed moments ago and unconfirmed, has its confirmation recorded
    (``confirmed_at``, nothing else: nobody bound, ``confirmed_flow`` untouched) and one
    ``installed`` is sent with ``user=None``; otherwise nothing is written and nothing
    sent."""
    [client_key] = parse_qs(urlsplit(url).query)["clientKey"]
    own_flow = browser.flow_path is not None and urlsplit(url).path == browser.flow_path
    in_place = not has_session(browser)
    sessions = session_rows()
    before = note(browser, sent_signals, caplog)

    response = browser.get(url)

    assert_protected(response)
    if in_place:
        assert response.status_code == 200
        assert UNVERIFIED_TEXT in response.content.decode()
        # Nothing kept to record it again by: the page does not reload itself.
        assert REFRESH_META not in response.content.decode()
        assert session_rows() == sessions
        assert settings.SESSION_COOKIE_NAME not in response.cookies
    else:
        assert response.status_code == 303
        assert response["Location"] == location
        stored = browser.client.session[RESULT_SESSION_KEY]
        assert shown(stored) == UNVERIFIED_RESULT
        assert stored["refreshes"] == 1
    after = installation_rows()
    if recorded:
        assert len(after) == len(before.rows)
        changes = [index for index, row in enumerate(before.rows) if row != after[index]]
        assert len(changes) == 1, changes
        [changed] = changes
        assert after[changed]["client_key"] == client_key
        assert before.rows[changed]["confirmed_at"] is None
        assert after[changed]["confirmed_at"] is not None
        assert {
            name for name, value in before.rows[changed].items() if after[changed][name] != value
        } == {"confirmed_at", "updated_at"}
        assert len(sent_signals.calls) == 1
        [kwargs] = sent_signals.of(installed)
        assert kwargs["sender"] is Installation
        assert kwargs["installation"].client_key == client_key
        assert kwargs["user"] is None
        assert kwargs["created"] is False
        assert kwargs["request"].path == urlsplit(url).path
    else:
        assert after == before.rows
        assert sent_signals.none_sent
    assert live_flows(browser.client) == before.flows
    assert app_log_lines(caplog) == [
        f"install return without a token: client_key={client_key} recorded={recorded} "
        f"flow={own_flow}"
    ]
    assert_nothing_secret_logged(caplog, url, before.flows)
    return response


def answer_of(response: TestResponse) -> tuple[int, bytes, list[tuple[str, str]], list[str]]:
    """Status, body, headers (but the dates) and the names of the cookies set: what a
    visitor can compare between two answers."""
    headers = sorted(
        (name.lower(), value)
        for name, value in response.headers.items()
        if name.lower() not in DATE_HEADERS
    )
    return response.status_code, response.content, headers, sorted(response.cookies)


def seen_after(
    browser: Browser, response: TestResponse
) -> list[tuple[int, bytes, list[tuple[str, str]], list[str]]]:
    """``answer_of(response)``, and for a redirect to the result page that page too: all
    that the visitor is shown of one return."""
    seen = [answer_of(response)]
    if response.status_code == 303 and response["Location"] == RESULT_PATH:
        seen.append(answer_of(browser.get(RESULT_PATH)))
    return seen
