"""Attacks on the return trip (issue 4, protocol.md section 7, design.md trust rules).

Every rejection: status 400 with the same generic page, no Installation row changed, no
``installed`` signal, and one log line with the reason. ``install_failed`` (the reason as
``error``) is sent, and the flow used up, only when this browser has a flow and the
return was well-formed enough to be looked up: a malformed return (bad parameters, a
token that does not parse or names another clientKey) is refused before any database
query and touches no flow.

A return that cannot be verified *yet* (no installation, no secret, or an uninstalled one:
its ``installed`` callback may still be on its way) while this browser's flow is recent
gets the "reload in a moment" 503 instead, changing nothing and keeping the flow; once the
flow is older than ``BITBUCKET_INSTALL_CONFIRM_WINDOW`` the same return is refused as above.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jwt
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.tokens import encode_token, query_string_hash
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    KEY_B,
    RESULT_PATH,
    START_PATH,
    age_flows,
    flow_ids,
    installed_via_lifecycle,
    login,
    return_url,
    signed_query,
    start_flow,
    token_of,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle

pytestmark = pytest.mark.django_db(transaction=True)

# Reasons decided from the query alone (ReturnTrip.from_query), before any lookup.
BEFORE_LOOKUP = {
    "parameter_repeated",
    "client_key_conflict",
    "client_key_or_error_required",
    "client_key_invalid",
    "token_missing",
    "token_malformed",
    "token_algorithm",
    "token_issuer",
}
REJECTED_TEXT = "This install could not be confirmed, so it was not connected."
GUESSED_KEY = "ari:cloud:bitbucket::app/{0e1d2c3b-cccc-4a59-8f7e-6d5c4b3a2918}/example-app"


class Browser:
    """A test client, optionally logged in, optionally with one install flow."""

    def __init__(self, *, with_flow: bool, username: str = "ada") -> None:
        self.client = Client()
        self.user: User | None = None
        self.with_flow = with_flow
        if with_flow:
            self.user = login(self.client, username)
            start_flow(self.client)


def assert_rejected(
    browser: Browser,
    url: str,
    reason: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    *,
    before_lookup: bool | None = None,
) -> str:
    """GET ``url``: the 400 page, nothing written, the documented signal, one log line;
    returns the page. ``before_lookup`` defaults to what ``reason`` implies."""
    if before_lookup is None:
        before_lookup = reason in BEFORE_LOOKUP
    flow_counts = browser.with_flow and not before_lookup
    rows = installation_rows()
    pending = flow_ids(browser.client)
    sent_signals.calls.clear()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    response = browser.client.get(url)

    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert REJECTED_TEXT in response.content.decode()
    assert installation_rows() == rows
    assert not sent_signals.of(installed)
    if flow_counts:
        assert len(sent_signals.calls) == 1
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["sender"] is Installation
        assert kwargs["request"].path == CALLBACK_PATH
        assert kwargs["error"] == reason
        assert kwargs["error_description"] == ""
        assert browser.user is not None
        assert kwargs["user"].pk == browser.user.pk
        assert flow_ids(browser.client) == pending[:-1]  # the flow is used up
    else:
        assert sent_signals.none_sent
        assert flow_ids(browser.client) == pending
    lines = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    assert len(lines) == 1
    assert lines[0].startswith(f"install return rejected: reason={reason} ")
    assert lines[0].endswith(f"flow={flow_counts}")
    for name, value in parse_qsl(url.partition("?")[2], keep_blank_values=True):
        if name == "jwt" and len(value) > 16:
            assert value not in caplog.text
    assert APP_SECRET not in caplog.text
    assert INSTALL_SECRET not in caplog.text
    return str(response.content.decode())


def assert_not_yet(
    browser: Browser,
    url: str,
    reason: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """GET ``url`` while this browser's flow is recent: the "reload in a moment" 503
    (the lifecycle callback may still be on its way); nothing written, no signal, the
    flow kept, one log line with the reason."""
    rows = installation_rows()
    pending = flow_ids(browser.client)
    assert pending
    sent_signals.calls.clear()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    response = browser.client.get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Cache-Control"] == "no-store"
    assert "Reload this page in a moment" in response.content.decode()
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(browser.client) == pending
    lines = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    assert len(lines) == 1
    assert lines[0].startswith(f"install return not verifiable yet: reason={reason} client_key=")


# Older than this, a flow's return is no longer "maybe before its lifecycle callback".
PAST_CONFIRM_WINDOW = 121


def confirmed_by_owner(client_key: str = KEY_A) -> User:
    """``client_key`` installed and confirmed by user "owner" in another browser."""
    owner = Browser(with_flow=True, username="owner")
    installed_via_lifecycle(client_key, INSTALL_SECRET)
    response = owner.client.get(return_url(signed_query(client_key, INSTALL_SECRET)))
    assert response.status_code == 303
    assert owner.user is not None
    return owner.user


def header_and_claims_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def valid_claims(query: str, iss: str = KEY_A) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": iss,
        "iat": now,
        "exp": now + 180,
        "qsh": query_string_hash("GET", CALLBACK_PATH, query),
    }


FLOW_IDS = ["flow", "no-flow"]


# A bare clientKey without JWT (the clientKey takeover Sentry fixed in 2018).


@pytest.mark.parametrize("spelling", ["clientKey", "client_key"])
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
@pytest.mark.parametrize("confirmed", [False, True], ids=["fresh", "confirmed"])
def test_registered_bare_client_key_without_jwt(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    spelling: str,
    with_flow: bool,
    confirmed: bool,
) -> None:
    if confirmed:
        confirmed_by_owner()
    else:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=with_flow)
    url = return_url(urlencode({spelling: KEY_A}))
    assert_rejected(browser, url, "token_missing", sent_signals, caplog)


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_registered_empty_jwt_is_no_jwt(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, with_flow: bool
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=with_flow)
    url = return_url(urlencode({"clientKey": KEY_A, "jwt": ""}))
    assert_rejected(browser, url, "token_missing", sent_signals, caplog)


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_unregistered_bare_client_key_of_a_confirmed_installation(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    with_flow: bool,
) -> None:
    """The attacker's flow began before the lifecycle callback, yet the row is taken."""
    unregistered(settings)
    browser = Browser(with_flow=with_flow, username="mallory")
    confirmed_by_owner()
    url = return_url(urlencode({"clientKey": KEY_A}))
    reason = "already_confirmed" if with_flow else "client_key_unverified"
    assert_rejected(browser, url, reason, sent_signals, caplog)
    assert Installation.objects.get().user is not None
    assert Installation.objects.get().user.username == "owner"


def test_unregistered_bare_client_key_of_an_old_confirmed_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    unregistered(settings)
    browser = Browser(with_flow=True, username="mallory")
    age_flows(browser.client, 600)
    confirmed_by_owner()
    Installation.objects.update(installed_at=timezone.now() - timedelta(days=30))
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)


@pytest.mark.parametrize("logged_in", [True, False], ids=["logged-in", "anonymous"])
def test_unregistered_fresh_install_without_a_flow(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    logged_in: bool,
) -> None:
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=False)
    if logged_in:
        login(browser.client, "victim")
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)


def test_unregistered_after_the_confirm_window(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    """Flow and callback in the right order, but the callback is 200 s old (window 120 s)."""
    unregistered(settings)
    browser = Browser(with_flow=True)
    age_flows(browser.client, 300)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=200))
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)


def test_unregistered_flow_started_after_the_lifecycle_callback(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    """Someone else's fresh install: this browser only began its flow 60 s later. While
    the flow is recent it is told to reload (nothing changes); then it is refused."""
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=60))
    browser = Browser(with_flow=True, username="mallory")
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert_not_yet(browser, url, "client_key_unverified", sent_signals, caplog)
    age_flows(browser.client, PAST_CONFIRM_WINDOW)
    Installation.objects.update(
        installed_at=timezone.now() - timedelta(seconds=60 + PAST_CONFIRM_WINDOW)
    )
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)
    assert Installation.objects.get().user is None


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_unregistered_unknown_client_key(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    settings: Settings,
    with_flow: bool,
) -> None:
    unregistered(settings)
    browser = Browser(with_flow=with_flow)
    url = return_url(urlencode({"clientKey": GUESSED_KEY}))
    if with_flow:
        assert_not_yet(browser, url, "client_key_unverified", sent_signals, caplog)
        age_flows(browser.client, PAST_CONFIRM_WINDOW)
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)


def test_unregistered_uninstalled_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    unregistered(settings)
    browser = Browser(with_flow=True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(uninstalled_at=timezone.now())
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert_not_yet(browser, url, "client_key_unverified", sent_signals, caplog)
    age_flows(browser.client, PAST_CONFIRM_WINDOW)
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)


def test_unregistered_repeat_after_a_reinstall_needs_a_new_flow(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    """The session remembers this browser confirmed the key; that answers repeats of that
    return only. Once reinstalled, the row must be confirmed by a new flow again."""
    unregistered(settings)
    browser = Browser(with_flow=True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}))
    assert browser.client.get(url).status_code == 303
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    browser.with_flow = False  # the flow was used up by the first return
    assert_rejected(browser, url, "client_key_unverified", sent_signals, caplog)
    assert Installation.objects.get().confirmed_at is None


# Guessable clientKeys and forged or misused JWTs.


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
@pytest.mark.parametrize("spelling", ["clientKey", "client_key"])
def test_guessable_unknown_client_key_with_a_wrongly_signed_jwt(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, with_flow: bool, spelling: str
) -> None:
    browser = Browser(with_flow=with_flow, username="mallory")
    url = return_url(signed_query(GUESSED_KEY, "a-guessed-secret", spelling=spelling))
    assert_rejected(browser, url, "token_signature", sent_signals, caplog)
    assert not Installation.objects.exists()


def test_unknown_client_key_without_an_app_level_secret(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    browser = Browser(with_flow=True)
    url = return_url(signed_query(GUESSED_KEY, APP_SECRET))
    assert_not_yet(browser, url, "unknown_installation", sent_signals, caplog)
    age_flows(browser.client, PAST_CONFIRM_WINDOW)
    assert_rejected(browser, url, "unknown_installation", sent_signals, caplog)


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
@pytest.mark.parametrize("b_exists", [False, True], ids=["b-unknown", "b-installed"])
def test_jwt_for_a_with_client_key_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, with_flow: bool, b_exists: bool
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if b_exists:
        installed_via_lifecycle(KEY_B, "secret-of-b-0123456789")
    browser = Browser(with_flow=with_flow, username="mallory")
    # A's token (iss=A), signed over a query that names B.
    url = return_url(signed_query(KEY_B, INSTALL_SECRET, iss=KEY_A))
    assert_rejected(browser, url, "token_issuer", sent_signals, caplog)


@pytest.mark.parametrize("b_exists", [False, True], ids=["b-unknown", "b-installed"])
def test_secret_of_installation_a_cannot_sign_for_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, b_exists: bool
) -> None:
    """The attacker owns installation A (knows its secret) and signs iss=B with it."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if b_exists:
        installed_via_lifecycle(KEY_B, "secret-of-b-0123456789")
    browser = Browser(with_flow=True, username="mallory")
    url = return_url(signed_query(KEY_B, INSTALL_SECRET))
    assert_rejected(browser, url, "token_signature", sent_signals, caplog)


def test_a_token_of_a_attached_to_client_key_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A's whole valid return URL with only the clientKey swapped."""
    installed_via_lifecycle(KEY_B, "secret-of-b-0123456789")
    token = token_of(signed_query(KEY_A, APP_SECRET))
    browser = Browser(with_flow=True, username="mallory")
    url = return_url(urlencode({"clientKey": KEY_B, "jwt": token}))
    assert_rejected(browser, url, "token_issuer", sent_signals, caplog)


@pytest.mark.parametrize(
    "secret", [APP_SECRET, INSTALL_SECRET], ids=["app-secret", "installation-secret"]
)
@pytest.mark.parametrize(
    "tamper",
    ["signed-for-b", "param-added", "param-changed"],
)
def test_token_with_a_wrong_qsh(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str, tamper: str
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=True)
    if tamper == "signed-for-b":
        query = signed_query(KEY_A, secret, signed_for=urlencode({"clientKey": KEY_B}))
    elif tamper == "param-added":
        query = signed_query(KEY_A, secret) + "&next=%2F%2Fevil.test"
    else:
        query = signed_query(KEY_A, secret, extra=[("lang", "en")]).replace("lang=en", "lang=de")
    assert_rejected(browser, return_url(query), "token_qsh", sent_signals, caplog)


@pytest.mark.parametrize(
    ("reason", "now", "lifetime"),
    [
        ("token_expired", -1000, 180),
        ("token_too_old", -700, 1000),
        ("token_too_old", 0, 3600),
        ("token_issued_in_future", 600, 180),
    ],
)
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_token_out_of_its_time(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    reason: str,
    now: int,
    lifetime: int,
    with_flow: bool,
) -> None:
    browser = Browser(with_flow=with_flow)
    query = signed_query(KEY_A, APP_SECRET, now=time.time() + now, lifetime=lifetime)
    assert_rejected(browser, return_url(query), reason, sent_signals, caplog)


def _forged(kind: str) -> str:
    query = urlencode({"clientKey": KEY_A})
    claims = valid_claims(query)
    if kind == "alg-none":
        token = header_and_claims_token({"alg": "none", "typ": "JWT"}, claims)
    elif kind == "alg-none-signed":
        token = header_and_claims_token({"alg": "none"}, claims) + "c2lnbmF0dXJl"
    elif kind == "hs512":
        token = jwt.encode(claims, APP_SECRET + "-padded-to-64-bytes" * 4, algorithm="HS512")
    elif kind == "rs256-header":
        token = header_and_claims_token({"alg": "RS256", "kid": "x"}, claims) + "c2ln"
    elif kind == "garbage":
        token = "not.a.token"
    elif kind == "no-iss":
        token = encode_token({}, APP_SECRET, method="GET", path=CALLBACK_PATH, query_string=query)
    elif kind == "no-qsh":
        token = encode_token({"iss": KEY_A}, APP_SECRET)
    elif kind == "context-qsh":
        token = encode_token({"iss": KEY_A, "qsh": "context-qsh"}, APP_SECRET)
    else:  # "unsigned-hs256": the right header, no signature
        token = header_and_claims_token({"alg": "HS256", "typ": "JWT"}, claims)
    return return_url(query + "&" + urlencode({"jwt": token}))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("alg-none", "token_algorithm"),
        ("alg-none-signed", "token_algorithm"),
        ("hs512", "token_algorithm"),
        ("rs256-header", "token_algorithm"),
        ("garbage", "token_malformed"),
        ("no-iss", "token_claims"),
        ("no-qsh", "token_claims"),
        ("context-qsh", "token_context_qsh"),
        ("unsigned-hs256", "token_signature"),
    ],
)
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_forged_tokens(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    reason: str,
    with_flow: bool,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=with_flow)
    # A token without iss fails before the lookup; one without qsh only after it.
    before_lookup = reason in BEFORE_LOOKUP or kind == "no-iss"
    assert_rejected(
        browser, _forged(kind), reason, sent_signals, caplog, before_lookup=before_lookup
    )


# Replays and other people's installations.


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_a_valid_return_replayed_from_another_session(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, with_flow: bool
) -> None:
    owner = Browser(with_flow=True, username="owner")
    query = signed_query(KEY_A, APP_SECRET)
    assert owner.client.get(return_url(query)).status_code == 303
    attacker = Browser(with_flow=with_flow, username="mallory")

    assert_rejected(attacker, return_url(query), "already_confirmed", sent_signals, caplog)

    row = Installation.objects.get()
    assert owner.user is not None
    assert row.user_id == owner.user.pk
    assert attacker.client.get(RESULT_PATH).status_code == 404  # nothing to show


def test_installation_of_user_1_claimed_by_user_2s_flow(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Reinstalled (so unconfirmed again), still connected to user 1: user 2's flow with a
    valid token gets install_failed(connected_to_another_user), never the installation."""
    owner = confirmed_by_owner()
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None
    second = Browser(with_flow=True, username="user2")

    url = return_url(signed_query(KEY_A, INSTALL_SECRET))
    assert_rejected(second, url, "connected_to_another_user", sent_signals, caplog)

    assert Installation.objects.get().user_id == owner.pk


@pytest.mark.parametrize(
    "secret", [APP_SECRET, INSTALL_SECRET], ids=["app-secret", "installation-secret"]
)
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_uninstalled_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str, with_flow: bool
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    body = lifecycle_body("uninstalled", client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET).status_code == 204
    browser = Browser(with_flow=with_flow)
    url = return_url(signed_query(KEY_A, secret))
    if with_flow:  # a reinstall's lifecycle callback may still be on its way
        assert_not_yet(browser, url, "installation_uninstalled", sent_signals, caplog)
        age_flows(browser.client, PAST_CONFIRM_WINDOW)
    assert_rejected(browser, url, "installation_uninstalled", sent_signals, caplog)


def test_a_flow_started_before_logging_in_does_not_bind_the_user(
    sent_signals: SignalRecorder,
) -> None:
    """Trust rule 2: a flow belongs to the session *and* the user who started it."""
    client = Client()
    start_flow(client)  # anonymous
    login(client, "ada")
    pending = flow_ids(client)

    response = client.get(return_url(signed_query(KEY_A, APP_SECRET)))

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id is None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None
    assert flow_ids(client) == pending


# Markup in what comes back.

XSS = '<script>alert("x")</script>'


@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_xss_in_error_and_error_description(sent_signals: SignalRecorder, with_flow: bool) -> None:
    browser = Browser(with_flow=with_flow)
    rows = installation_rows()
    url = return_url(urlencode({"error": XSS, "error_description": XSS}))

    response = browser.client.get(url)
    page = browser.client.get(RESULT_PATH)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert page.status_code == 200
    for body in (response.content.decode(), page.content.decode()):
        assert "<script" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.content.decode()
    assert "Bitbucket did not install the app. Please try again." in page.content.decode()
    assert installation_rows() == rows
    assert not sent_signals.of(installed)
    if with_flow:
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["error"] == "unknown_error"  # never the raw markup
        assert kwargs["error_description"] == XSS  # documented as untrusted text
    else:
        assert sent_signals.none_sent


@pytest.mark.parametrize(
    "query",
    [
        urlencode({"clientKey": XSS}),
        urlencode({"client_key": XSS, "jwt": XSS}),
        urlencode({"clientKey": KEY_A, "error": XSS, "error_description": XSS}),
        urlencode({"error": XSS, "error_description": XSS, "clientKey": XSS}),
    ],
    ids=["client-key", "client-key-and-jwt", "with-error", "all"],
)
def test_xss_in_rejected_returns_is_never_echoed(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    browser = Browser(with_flow=False)
    page = assert_rejected(browser, return_url(query), _reason_of(query), sent_signals, caplog)
    assert "<script" not in page
    assert "alert(" not in page


def _reason_of(query: str) -> str:
    return "client_key_or_error_required" if "error=" in query else "client_key_invalid"


def test_markup_in_the_workspace_name_is_escaped(sent_signals: SignalRecorder) -> None:
    """The lifecycle payload's principal name is untrusted too (trust on first use)."""
    principal = {"type": "workspace", "uuid": "{1}", "display_name": XSS}
    installed_via_lifecycle(KEY_A, INSTALL_SECRET, principal=principal)
    browser = Browser(with_flow=True)

    response = browser.client.get(return_url(signed_query(KEY_A, INSTALL_SECRET)))
    page = browser.client.get(RESULT_PATH).content.decode()

    assert response.status_code == 303
    assert "<script" not in page
    assert "It is installed on &lt;script&gt;" in page
    assert len(sent_signals.of(installed)) == 1


# Malformed parameters.


def _repeated(kind: str) -> tuple[str, str]:
    if kind == "clientKey-twice":
        query = signed_query(KEY_A, APP_SECRET, extra=[("clientKey", KEY_A)])
        return query, "parameter_repeated"
    if kind == "client_key-twice":
        query = signed_query(
            KEY_A, APP_SECRET, spelling="client_key", extra=[("client_key", KEY_B)]
        )
        return query, "parameter_repeated"
    if kind == "jwt-twice":
        query = signed_query(KEY_A, APP_SECRET)
        return query + "&jwt=" + token_of(query), "parameter_repeated"
    if kind == "jwt-twice-one-empty":
        return signed_query(KEY_A, APP_SECRET) + "&jwt=", "parameter_repeated"
    if kind == "error-twice":
        return "error=access_denied&error=server_error", "parameter_repeated"
    if kind == "error_description-twice":
        return "error=access_denied&error_description=a&error_description=b", "parameter_repeated"
    if kind == "encoded-name-twice":
        query = signed_query(KEY_A, APP_SECRET, extra=[("client%4Bey", KEY_B)])
        return query.replace("client%254Bey", "client%4Bey"), "parameter_repeated"
    if kind == "both-spellings-differ":
        query = signed_query(KEY_A, APP_SECRET, extra=[("client_key", KEY_B)])
        return query, "client_key_conflict"
    if kind == "client-key-and-error":
        query = signed_query(KEY_A, APP_SECRET, extra=[("error", "access_denied")])
        return query, "client_key_or_error_required"
    if kind == "neither":
        return "", "client_key_or_error_required"
    if kind == "only-jwt":
        return "jwt=" + token_of(signed_query(KEY_A, APP_SECRET)), "client_key_or_error_required"
    if kind == "only-error_description":
        return "error_description=hello", "client_key_or_error_required"
    # "empty-client-key"
    return "clientKey=&" + urlencode({"jwt": "x"}), "client_key_invalid"


@pytest.mark.parametrize(
    "kind",
    [
        "clientKey-twice",
        "client_key-twice",
        "jwt-twice",
        "jwt-twice-one-empty",
        "error-twice",
        "error_description-twice",
        "encoded-name-twice",
        "both-spellings-differ",
        "client-key-and-error",
        "neither",
        "only-jwt",
        "only-error_description",
        "empty-client-key",
    ],
)
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_duplicated_conflicting_or_missing_parameters(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str, with_flow: bool
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=with_flow)
    query, reason = _repeated(kind)
    assert_rejected(browser, return_url(query), reason, sent_signals, caplog)


@pytest.mark.parametrize(
    "client_key",
    [
        "ari:cloud:bitbucket::app/" + "a" * 275,  # 300 characters
        "a" * 256,
        KEY_A + "\x00",
        "ari:cloud:bitbucket::app/\x00/example-app",
        KEY_A.replace("example", "ex\u0430mple"),  # a Cyrillic a
        "ari:cloud:bitbucket::app/{é}/example-app",
        "ari:cloud:bitbucket::app/ x/example-app",
        "ari:cloud:bitbucket::app/x\r\nFAKE install return accepted",
        ":starts-with-a-colon",
    ],
    ids=[
        "300-chars",
        "256-chars",
        "nul-end",
        "nul-inside",
        "homoglyph",
        "non-ascii",
        "space",
        "crlf",
        "bad-first",
    ],
)
@pytest.mark.parametrize("with_flow", [True, False], ids=FLOW_IDS)
def test_malformed_client_keys(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    client_key: str,
    with_flow: bool,
) -> None:
    """Validly signed with the app-level secret: only the key's shape is wrong."""
    browser = Browser(with_flow=with_flow)
    url = return_url(signed_query(client_key, APP_SECRET))
    assert_rejected(browser, url, "client_key_invalid", sent_signals, caplog)
    for record in caplog.records:
        message = record.getMessage()
        assert "\x00" not in message
        assert "\n" not in message
        assert "\r" not in message
    assert "\nFAKE" not in caplog.text


def test_longest_valid_client_key_is_accepted(sent_signals: SignalRecorder) -> None:
    """The other side of the 300-character test: 255 characters fit the column."""
    client_key = "ari:cloud:bitbucket::app/" + "a" * 230
    response = Client().get(return_url(signed_query(client_key, APP_SECRET)))
    assert response.status_code == 303
    assert Installation.objects.get().client_key == client_key
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "head", "options"])
def test_other_methods_are_not_allowed(sent_signals: SignalRecorder, method: str) -> None:
    client = Client()
    login(client, "ada")
    start_flow(client)
    pending = flow_ids(client)
    query = signed_query(KEY_A, APP_SECRET)
    rows = installation_rows()

    response = getattr(client, method)(return_url(query))

    assert response.status_code == 405
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == pending


# Open redirects through ``next``.

EVIL_NEXTS = [
    "http://evil.test",
    "https://evil.test/bitbucket/result/",
    "//evil.test",
    "///evil.test",
    "\\\\evil.test",
    "/\\evil.test",
    "\\/evil.test",
    "/\t/evil.test",
    " //evil.test",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http:evil.test",
    "https://app.example.com.evil.test/",
]


@pytest.mark.parametrize("success_url", [None, "/welcome/"], ids=["default", "success-url"])
@pytest.mark.parametrize("evil", EVIL_NEXTS)
def test_next_open_redirects_never_become_the_target(
    sent_signals: SignalRecorder, settings: Settings, evil: str, success_url: str | None
) -> None:
    settings.BITBUCKET_INSTALL_SUCCESS_URL = success_url
    client = Client()
    user = login(client, "ada")
    start_flow(client, evil)

    response = client.get(return_url(signed_query(KEY_A, APP_SECRET)))

    assert response.status_code == 303
    assert response["Location"] == (success_url or RESULT_PATH)
    assert "evil" not in response["Location"]
    assert Installation.objects.get().user_id == user.pk
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("evil", EVIL_NEXTS)
def test_start_page_does_not_carry_an_unsafe_next(evil: str) -> None:
    response = Client().get(START_PATH + "?" + urlencode({"next": evil}))
    assert response.status_code == 200
    body = response.content.decode()
    assert "evil" not in body
    assert "alert(" not in body
    assert 'name="next"' not in body


def test_start_page_carries_a_safe_next() -> None:
    response = Client().get(START_PATH + "?" + urlencode({"next": "/dashboard/"}))
    assert response.status_code == 200
    assert 'name="next" value="/dashboard/"' in response.content.decode()
    assert response["Cache-Control"] == "no-store"


# Logs never carry a token or a secret.


def test_a_rejected_token_is_never_logged(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser(with_flow=True)
    query = signed_query(KEY_A, INSTALL_SECRET, signed_for="clientKey=" + quote(KEY_B))
    assert_rejected(browser, return_url(query), "token_qsh", sent_signals, caplog)
    assert token_of(query) not in caplog.text
    assert token_of(query).split(".")[2] not in caplog.text
