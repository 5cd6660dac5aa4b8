"""Attacks on the return trip: each test is one attack as an outsider would make it.

A flow's return comes to ``callback/<flow id>/``; only a return naming a live flow of this
browser (and of its current user) can use that flow up, send ``install_failed`` or
connect the flow's user. A plain return (``callback/``) binds nobody and touches no flow;
a return naming any other flow id is refused (``flow_unknown``) and touches nothing.

Every rejection: status 400 with the same generic page, no Installation row changed, no
``installed`` signal, one log line with the reason, and no token, secret or flow id in any
log record. ``install_failed`` (the reason as ``error``) is sent, and the flow used up,
only for a return to the browser's own live flow that got past the checks of the query
alone. A return to a young flow (begun less than ``CONFIRM_WINDOW`` ago) that cannot be
verified *yet* gets the "reload in a moment" 503 first, changing nothing and keeping the
flow (``tests/attack_helpers.assert_refused``).

A return without a JWT (an unregistered app) is not a rejection unless the project trusts
unsigned returns: whatever clientKey it names, it gets one neutral success answer that
names no installation, binds nobody, touches no flow and sends no ``install_failed``; it
only records the confirmation of an installation reported moments ago and not confirmed
yet (``tests/attack_helpers.assert_unverified``).

Most tests send the same attack three ways from a browser whose user has just pressed the
install button: to that browser's own flow ("flow"), to ``callback/`` ("plain") and to a
flow id nobody was given ("made-up").
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import jwt
import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import IntegrityError, transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install.identifiers import is_usable_hmac_secret
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.tokens import encode_token, query_string_hash
from tests.attack_helpers import (
    BEFORE_LOOKUP,
    PAST_CONFIRM_WINDOW,
    REJECTED_TEXT,
    UNVERIFIED_TEXT,
    Browser,
    answer_of,
    app_log_lines,
    assert_not_yet,
    assert_protected,
    assert_refused,
    assert_rejected,
    assert_unverified,
    live_flows,
    made_up_flow_path,
    seen_after,
    session_rows,
)
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    KEY_B,
    RESULT_PATH,
    START_PATH,
    flow_path,
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

GUESSED_KEY = "ari:cloud:bitbucket::app/{0e1d2c3b-cccc-4a59-8f7e-6d5c4b3a2918}/example-app"
# Unregistered apps' clientKeys: "connection:<number>", easy to count through.
VICTIM_KEY = "connection:4711"
UNKNOWN_KEY = "connection:4712"
SECRET_OF_B = "secret-of-b-0123456789"
PATH_KINDS = ["flow", "plain", "made-up"]
SPELLINGS = ["clientKey", "client_key"]
NOT_STARTED_HERE_TEXT = "because the install was not started from this browser"
CONNECTED_TEXT = "The installation is connected to your account on this site."


def on(kind: str, reason: str) -> str:
    """The reason a return of ``kind`` is refused for: a made-up flow id is refused as
    ``flow_unknown`` once the query itself is sound, before anything is verified."""
    return "flow_unknown" if kind == "made-up" and reason not in BEFORE_LOOKUP else reason


def signed_url(client_key: str, secret: str, path: str, **query: Any) -> str:
    """A return to ``path`` signed with ``secret`` over ``path`` and its query."""
    return return_url(signed_query(client_key, secret, path=path, **query), path)


def unsigned_url(client_key: str, path: str) -> str:
    return return_url(urlencode({"clientKey": client_key}), path)


def confirmed_by_owner(client_key: str = KEY_A) -> Browser:
    """``client_key`` installed and confirmed through the flow of user "owner"."""
    owner = Browser("owner", with_flow=True)
    installed_via_lifecycle(client_key, INSTALL_SECRET)
    assert owner.flow_path is not None
    response = owner.get(signed_url(client_key, INSTALL_SECRET, owner.flow_path))
    assert response.status_code == 303
    assert owner.user is not None
    assert Installation.objects.get(client_key=client_key).user_id == owner.user.pk
    return owner


def assert_connects(
    browser: Browser, client_key: str, secret: str, sent_signals: SignalRecorder
) -> None:
    """The browser's own genuine return: 303, its user connected, one ``installed``."""
    assert browser.flow_path is not None
    assert browser.user is not None
    sent_signals.calls.clear()
    response = browser.get(signed_url(client_key, secret, browser.flow_path))
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    row = Installation.objects.get(client_key=client_key)
    assert row.user_id == browser.user.pk
    assert row.confirmed_flow == flows.flow_hash(browser.flow_id)
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"].pk == browser.user.pk
    assert browser.flow_id not in live_flows(browser.client)
    assert CONNECTED_TEXT in browser.get(RESULT_PATH).content.decode()


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


# --- a bare clientKey without JWT (the clientKey takeover) ------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("confirmed", [False, True], ids=["fresh", "confirmed"])
def test_registered_bare_client_key_without_jwt(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    spelling: str,
    kind: str,
    confirmed: bool,
) -> None:
    if confirmed:
        confirmed_by_owner()
    else:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("mallory", with_flow=True)
    url = return_url(urlencode({spelling: KEY_A}), browser.path(kind))
    assert_rejected(browser, url, "token_missing", sent_signals, caplog)


@pytest.mark.parametrize("kind", PATH_KINDS)
def test_registered_empty_jwt_is_no_jwt(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("mallory", with_flow=True)
    url = return_url(urlencode({"clientKey": KEY_A, "jwt": ""}), browser.path(kind))
    assert_rejected(browser, url, "token_missing", sent_signals, caplog)


# --- unregistered apps: unsigned returns (no JWT) ---------------------------------------------
#
# Unsigned returns are not trusted by default: each gets the one neutral answer
# (``assert_unverified``) whatever it names, binds nobody, touches no flow and records only
# the confirmation of a fresh, unconfirmed installation. ``TRUST_UNSIGNED_RETURNS`` opts in
# to binding the flow's user, with the checks of a fresh install that follows the flow.


def test_unsigned_return_for_a_fresh_install_that_is_not_theirs(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A logged-in user's own recent flow, and someone else's install that Bitbucket
    reported just after it: ``?clientKey=connection:N`` (nothing proves whose it is). Its
    confirmation is recorded, binding nobody; the flow is kept, another browser's flow is
    untouched, and the page names no workspace."""
    unregistered(settings)
    mallory = Browser("mallory", with_flow=True)
    victim = Browser("victim", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)

    assert_unverified(
        mallory,
        unsigned_url(VICTIM_KEY, mallory.path("flow")),
        sent_signals,
        caplog,
        recorded=True,
    )

    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_flow is None
    assert live_flows(mallory.client) == [mallory.flow_id]
    assert live_flows(victim.client) == [victim.flow_id]
    page = mallory.get(RESULT_PATH).content.decode()
    assert UNVERIFIED_TEXT in page
    assert "Acme Team" not in page
    assert VICTIM_KEY not in page


def test_unsigned_return_for_a_fresh_install_that_is_not_theirs_binds_when_trusted(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    """The same with ``TRUST_UNSIGNED_RETURNS``: it binds the flow's user (the documented
    residual risk of that opt-in) and uses the flow up."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    mallory = Browser("mallory", with_flow=True)
    victim = Browser("victim", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    [before] = installation_rows()
    sent_signals.calls.clear()

    assert mallory.flow_path is not None
    response = mallory.get(unsigned_url(VICTIM_KEY, mallory.flow_path))

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert_protected(response)
    [after] = installation_rows()
    assert mallory.user is not None
    assert changed_fields(before, after) == {
        "confirmed_at",
        "confirmed_flow",
        "updated_at",
        "user_id",
    }
    assert after["user_id"] == mallory.user.pk
    assert after["confirmed_flow"] == flows.flow_hash(mallory.flow_id)
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(installed)
    assert kwargs["created"] is False
    assert kwargs["user"].pk == mallory.user.pk
    assert live_flows(mallory.client) == []
    assert live_flows(victim.client) == [victim.flow_id]  # another browser's, untouched
    assert CONNECTED_TEXT in mallory.get(RESULT_PATH).content.decode()


def test_victims_unsigned_return_after_an_attackers_gets_the_same_answer(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """An attacker's own flow names the victim's fresh install first (recording its
    confirmation, binding nobody). The victim's own return of that install then gets the
    answer the attacker got, the one it would have got had it come first: the same status,
    headers and page; nothing written, no signal, no ``install_failed``, the victim's flow
    kept. Nobody can make another's install fail."""
    unregistered(settings)
    mallory = Browser("mallory", with_flow=True)
    victim = Browser("victim", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    first = assert_unverified(
        mallory,
        unsigned_url(VICTIM_KEY, mallory.path("flow")),
        sent_signals,
        caplog,
        recorded=True,
    )
    attackers = seen_after(mallory, first)

    response = assert_unverified(
        victim, unsigned_url(VICTIM_KEY, victim.path("flow")), sent_signals, caplog, recorded=False
    )

    assert seen_after(victim, response) == attackers
    assert live_flows(victim.client) == [victim.flow_id]
    # And a retry (a reload, a double click) is answered the same again.
    again = assert_unverified(
        victim, unsigned_url(VICTIM_KEY, victim.path("flow")), sent_signals, caplog, recorded=False
    )
    assert seen_after(victim, again) == attackers


def test_an_attackers_unsigned_return_leaves_the_victim_to_connect_with_a_signed_one(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The attacker's unsigned return recorded the confirmation of the victim's fresh
    install first; the victim's flow, untouched, still connects it with a return signed
    with the installation's secret."""
    unregistered(settings)
    mallory = Browser("mallory", with_flow=True)
    victim = Browser("victim", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    assert_unverified(
        mallory,
        unsigned_url(VICTIM_KEY, mallory.path("flow")),
        sent_signals,
        caplog,
        recorded=True,
    )

    assert_connects(victim, VICTIM_KEY, INSTALL_SECRET, sent_signals)

    assert live_flows(mallory.client) == [mallory.flow_id]


def test_unsigned_return_naming_an_install_another_flow_connected_binds_nobody_when_trusted(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``TRUST_UNSIGNED_RETURNS``: once the victim's own flow has connected their fresh
    install, another browser's unsigned return naming it gets the "reload in a moment"
    answer of an unknown key (nothing written, no signal, the flow kept), never the row."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    victim = Browser("victim", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    assert victim.get(unsigned_url(VICTIM_KEY, victim.path("flow"))).status_code == 303
    [connected] = installation_rows()
    assert victim.user is not None
    assert connected["user_id"] == victim.user.pk
    sent_signals.calls.clear()
    mallory = Browser("mallory", with_flow=True)

    assert_not_yet(
        mallory,
        unsigned_url(VICTIM_KEY, mallory.path("flow")),
        "client_key_unverified",
        sent_signals,
        caplog,
    )
    assert installation_rows() == [connected]


def test_unsigned_return_for_an_install_reported_before_the_flow_began(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``TRUST_UNSIGNED_RETURNS``: someone else's fresh install, reported 60 s before
    this browser pressed the button, binds nobody. While the flow is young it is told to
    reload (as for an unknown key: answered alike), nothing written, the flow kept; once the
    flow is past the confirm window, so is that install, and the return is refused."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=60))
    mallory = Browser("mallory", with_flow=True)
    unknown = Browser("prober-of-an-unknown-key", with_flow=True)
    url = unsigned_url(VICTIM_KEY, mallory.path("flow"))

    answer = assert_not_yet(mallory, url, "installed_before_flow", sent_signals, caplog)
    expected = assert_not_yet(
        unknown,
        unsigned_url(UNKNOWN_KEY, unknown.path("flow")),
        "client_key_unverified",
        sent_signals,
        caplog,
    )
    assert answer_of(answer) == answer_of(expected)
    # A reload that is still early: the same again.
    assert_not_yet(mallory, url, "installed_before_flow", sent_signals, caplog)

    # Time passes for the flow and the install alike.
    mallory.age_flows()
    Installation.objects.update(
        installed_at=F("installed_at") - timedelta(seconds=PAST_CONFIRM_WINDOW)
    )
    assert_rejected(mallory, url, "client_key_unverified", sent_signals, caplog)
    row = Installation.objects.get()
    assert row.confirmed_at is None
    assert row.user_id is None


def test_unsigned_double_click_of_a_trusted_flow_answers_the_same(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    """With ``TRUST_UNSIGNED_RETURNS``: the same unsigned return of one flow sent again
    while the flow is still live in the stored session (a double click whose requests both
    read the session before either saved it) is this very return again: the same answer,
    no change, no second signal. (After a failed session write: tests/test_faults.py.)"""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    browser = Browser("ada", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    url = unsigned_url(VICTIM_KEY, browser.path("flow"))
    flows_read_first = browser.client.session[flows.SESSION_KEY]
    first = browser.get(url)
    assert first.status_code == 303
    assert browser.user is not None
    assert Installation.objects.get().user_id == browser.user.pk
    shown = browser.get(RESULT_PATH).content
    # The session as the second request read it.
    session = browser.client.session
    session[flows.SESSION_KEY] = flows_read_first
    session.save()
    rows = installation_rows()
    sent_signals.calls.clear()

    again = browser.get(url)

    assert answer_of(again) == answer_of(first)
    assert browser.get(RESULT_PATH).content == shown
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert live_flows(browser.client) == []


# Known states of a clientKey a prober cannot tell apart from an unknown key.
PROBED_STATES = ["unknown", "installed-long-ago", "confirmed", "connected", "uninstalled"]


def probed(state: str) -> str:
    """The clientKey to probe, put in ``state`` (installed by its owner, not the prober):
    "confirmed" by an unsigned return of the owner's flow, "connected" to the owner by a
    return signed with the installation's secret."""
    if state == "unknown":
        return UNKNOWN_KEY
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    if state == "installed-long-ago":
        Installation.objects.update(installed_at=timezone.now() - timedelta(minutes=10))
    elif state == "confirmed":
        owner = Browser("owner", with_flow=True)
        assert owner.get(unsigned_url(VICTIM_KEY, owner.path("flow"))).status_code == 303
        assert Installation.objects.get().confirmed_at is not None
    elif state == "connected":
        owner = Browser("owner", with_flow=True)
        assert (
            owner.get(signed_url(VICTIM_KEY, INSTALL_SECRET, owner.path("flow"))).status_code
            == 303
        )
        assert owner.user is not None
        assert Installation.objects.get().user_id == owner.user.pk
    else:
        body = lifecycle_body("uninstalled", client_key=VICTIM_KEY, shared_secret=INSTALL_SECRET)
        response = post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET)
        assert response.status_code == 204
    return VICTIM_KEY


@pytest.mark.parametrize("state", PROBED_STATES)
def test_probing_with_an_own_flow_answers_alike_for_known_and_unknown_keys(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    """The prober's own flow, young and then past the confirm window: the same neutral
    answer and page for every key, nothing written, no signal, the flow kept."""
    unregistered(settings)
    client_key = probed(state)
    unknown = Browser("prober-of-an-unknown-key", with_flow=True)
    prober = Browser("prober", with_flow=True)

    for _flow_age in ("young", "past the confirm window"):
        expected = assert_unverified(
            unknown,
            unsigned_url(UNKNOWN_KEY, unknown.path("flow")),
            sent_signals,
            caplog,
            recorded=False,
        )
        answer = assert_unverified(
            prober,
            unsigned_url(client_key, prober.path("flow")),
            sent_signals,
            caplog,
            recorded=False,
        )
        assert seen_after(prober, answer) == seen_after(unknown, expected)
        unknown.age_flows()
        prober.age_flows()

    assert live_flows(prober.client) == [prober.flow_id]


@pytest.mark.parametrize("state", PROBED_STATES)
@pytest.mark.parametrize("prober_kind", ["no-session", "with-own-flow"])
def test_plain_probing_answers_alike_and_touches_no_flow(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    state: str,
    prober_kind: str,
) -> None:
    """Plain returns counting through ``connection:N``: the same neutral answer for known
    and unknown keys (in place, and no session, for a visitor without one), no flow of the
    prober's or the owner's touched, nothing written, no signal."""
    unregistered(settings)
    client_key = probed(state)
    victim = Browser("victim", with_flow=True)  # pressed the button, not yet back
    with_flow = prober_kind == "with-own-flow"
    prober = Browser("prober" if with_flow else None, with_flow=with_flow)
    sessions = session_rows()

    expected = assert_unverified(
        prober, unsigned_url(UNKNOWN_KEY, CALLBACK_PATH), sent_signals, caplog, recorded=False
    )
    # Each probe's result page right after it (it reloads itself once, whatever was named).
    seen_for_unknown_key = seen_after(prober, expected)
    answer = assert_unverified(
        prober, unsigned_url(client_key, CALLBACK_PATH), sent_signals, caplog, recorded=False
    )

    assert seen_after(prober, answer) == seen_for_unknown_key
    assert live_flows(victim.client) == [victim.flow_id]
    assert session_rows() == sessions  # a visitor without a session got none


def test_own_flow_probe_of_a_fresh_install_answers_like_an_unknown_key(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Probing ``connection:N`` with an own young flow: a key whose install was reported
    shortly before the flow began gets the answer an unknown key gets (same status, headers
    and page, no workspace named); its confirmation is recorded, binding nobody, and the
    flow is kept. Probing it again: the same answer, nothing more recorded."""
    unregistered(settings)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=30))
    unknown = Browser("prober-of-an-unknown-key", with_flow=True)
    prober = Browser("prober", with_flow=True)
    unknown_url = unsigned_url(UNKNOWN_KEY, unknown.path("flow"))
    url = unsigned_url(VICTIM_KEY, prober.path("flow"))

    expected = seen_after(
        unknown, assert_unverified(unknown, unknown_url, sent_signals, caplog, recorded=False)
    )
    answer = seen_after(
        prober, assert_unverified(prober, url, sent_signals, caplog, recorded=True)
    )

    assert answer == expected
    assert all(b"Acme Team" not in body for _, body, _, _ in answer)
    again = assert_unverified(prober, url, sent_signals, caplog, recorded=False)
    assert seen_after(prober, again) == expected
    assert Installation.objects.get().user_id is None


def test_plain_probe_of_a_fresh_install_answers_like_an_unknown_key(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """An anonymous visitor without a flow or a session counting through plain
    ``?clientKey=connection:N``: an install reported moments ago gets the page an unknown
    key gets, in place, naming no workspace, and no session; its confirmation is recorded
    (one ``installed``, nobody bound)."""
    unregistered(settings)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    prober = Browser()

    expected = assert_unverified(
        prober, unsigned_url(UNKNOWN_KEY, CALLBACK_PATH), sent_signals, caplog, recorded=False
    )
    answer = assert_unverified(
        prober, unsigned_url(VICTIM_KEY, CALLBACK_PATH), sent_signals, caplog, recorded=True
    )

    assert "Acme Team" not in answer.content.decode()
    assert answer_of(answer) == answer_of(expected)
    assert session_rows() == 0


def test_unsigned_return_of_an_old_confirmed_installation(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Installed and connected to its owner a month ago: the neutral answer, the owner's
    connection untouched, the prober's old flow kept."""
    unregistered(settings)
    mallory = Browser("mallory", with_flow=True)
    mallory.age_flows(600)
    owner = confirmed_by_owner(VICTIM_KEY)
    Installation.objects.update(installed_at=timezone.now() - timedelta(days=30))
    url = unsigned_url(VICTIM_KEY, mallory.path("flow"))
    assert_unverified(mallory, url, sent_signals, caplog, recorded=False)
    assert owner.user is not None
    assert Installation.objects.get().user_id == owner.user.pk


def test_unsigned_return_after_the_confirm_window(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Flow and callback in the right order, but the callback is 200 s old (window 120 s):
    nothing recorded, the neutral answer, the flow kept."""
    unregistered(settings)
    browser = Browser("ada", with_flow=True)
    browser.age_flows(300)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=200))
    url = unsigned_url(VICTIM_KEY, browser.path("flow"))
    assert_unverified(browser, url, sent_signals, caplog, recorded=False)
    assert Installation.objects.get().confirmed_at is None


def test_unsigned_repeat_after_a_reinstall_records_it_and_binds_nobody(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The browser's unsigned return confirmed the key (its flow kept); once reinstalled,
    that return replayed from the history names a fresh, unconfirmed install again: its
    confirmation is recorded, nobody bound, as for any unsigned return."""
    unregistered(settings)
    browser = Browser("ada", with_flow=True)
    installed_via_lifecycle(VICTIM_KEY, INSTALL_SECRET)
    url = unsigned_url(VICTIM_KEY, browser.path("flow"))
    assert_unverified(browser, url, sent_signals, caplog, recorded=True)
    body = lifecycle_body(client_key=VICTIM_KEY, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None

    assert_unverified(browser, url, sent_signals, caplog, recorded=True)

    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_flow is None


# --- guessed clientKeys and forged or misused JWTs --------------------------------------------


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_guessable_unknown_client_key_with_a_wrongly_signed_jwt(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str, spelling: str
) -> None:
    browser = Browser("mallory", with_flow=True)
    path = browser.path(kind)
    url = signed_url(GUESSED_KEY, "a-guessed-secret", path, spelling=spelling)
    assert_refused(browser, url, on(kind, "token_signature"), sent_signals, caplog)
    assert not Installation.objects.exists()


@pytest.mark.parametrize("kind", PATH_KINDS)
def test_unknown_client_key_without_an_app_level_secret(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, settings: Settings, kind: str
) -> None:
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    browser = Browser("ada", with_flow=True)
    url = signed_url(GUESSED_KEY, APP_SECRET, browser.path(kind))
    assert_refused(browser, url, on(kind, "unknown_installation"), sent_signals, caplog)


@pytest.mark.parametrize(
    "client_key",
    ["connection:77", "ari:cloud:bitbucket::app/{1a2b3c4d-eeee-4f5a-8b9c-0d1e2f3a4b5c}/other-app"],
    ids=["connection", "another-app"],
)
@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_app_level_secret_makes_no_row_for_another_apps_client_key(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, client_key: str, kind: str
) -> None:
    """The app-level secret verifies for every clientKey; a row made from the return alone
    must be one of this registered app's."""
    browser = Browser("ada", with_flow=True)
    url = signed_url(client_key, APP_SECRET, browser.path(kind))
    assert_rejected(browser, url, "client_key_other_app", sent_signals, caplog)
    assert not Installation.objects.exists()


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("b_exists", [False, True], ids=["b-unknown", "b-installed"])
def test_jwt_for_a_with_client_key_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str, b_exists: bool
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if b_exists:
        installed_via_lifecycle(KEY_B, SECRET_OF_B)
    browser = Browser("mallory", with_flow=True)
    # A's token (iss=A), signed over a query that names B.
    url = signed_url(KEY_B, INSTALL_SECRET, browser.path(kind), iss=KEY_A)
    assert_rejected(browser, url, "token_issuer", sent_signals, caplog)


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("b_exists", [False, True], ids=["b-unknown", "b-installed"])
def test_secret_of_installation_a_cannot_sign_for_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str, b_exists: bool
) -> None:
    """The attacker owns installation A (knows its secret) and signs iss=B with it."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if b_exists:
        installed_via_lifecycle(KEY_B, SECRET_OF_B)
    browser = Browser("mallory", with_flow=True)
    url = signed_url(KEY_B, INSTALL_SECRET, browser.path(kind))
    assert_refused(browser, url, on(kind, "token_signature"), sent_signals, caplog)


def test_a_token_of_a_attached_to_client_key_b(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A's whole valid return URL with only the clientKey swapped."""
    installed_via_lifecycle(KEY_B, SECRET_OF_B)
    browser = Browser("mallory", with_flow=True)
    path = browser.path("flow")
    token = token_of(signed_query(KEY_A, APP_SECRET, path=path))
    url = return_url(urlencode({"clientKey": KEY_B, "jwt": token}), path)
    assert_rejected(browser, url, "token_issuer", sent_signals, caplog)


TAMPERS = [
    "signed-for-b",
    "param-added",
    "param-changed",
    "signed-for-another-flow",
    "signed-for-the-plain-path",
]


@pytest.mark.parametrize("secret", [APP_SECRET, INSTALL_SECRET], ids=["app", "installation"])
@pytest.mark.parametrize("tamper", TAMPERS)
def test_token_with_a_wrong_qsh(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str, tamper: str
) -> None:
    """The qsh covers the path too: a token for one flow (or for ``callback/``) never
    verifies on another path."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("ada", with_flow=True)
    path = browser.path("flow")
    if tamper == "signed-for-b":
        query = signed_query(KEY_A, secret, path=path, signed_for=urlencode({"clientKey": KEY_B}))
    elif tamper == "param-added":
        query = signed_query(KEY_A, secret, path=path) + "&next=%2F%2Fevil.test"
    elif tamper == "param-changed":
        query = signed_query(KEY_A, secret, path=path, extra=[("lang", "en")])
        query = query.replace("lang=en", "lang=de")
    elif tamper == "signed-for-another-flow":
        query = signed_query(KEY_A, secret, path=made_up_flow_path())
    else:
        query = signed_query(KEY_A, secret, path=CALLBACK_PATH)
    assert_rejected(browser, return_url(query, path), "token_qsh", sent_signals, caplog)


def test_a_flows_token_does_not_verify_on_the_plain_path(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The victim's genuine return URL with its flow id cut off (to confirm without the
    flow): refused, and the victim's flow is still there for the real return."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    victim = Browser("victim", with_flow=True)
    query = signed_query(KEY_A, INSTALL_SECRET, path=victim.path("flow"))
    assert_rejected(victim, return_url(query, CALLBACK_PATH), "token_qsh", sent_signals, caplog)
    assert_connects(victim, KEY_A, INSTALL_SECRET, sent_signals)


@pytest.mark.parametrize(
    ("reason", "now", "lifetime"),
    [
        ("token_expired", -1000, 180),
        ("token_too_old", -700, 1000),
        ("token_too_old", 0, 3600),
        ("token_issued_in_future", 600, 180),
    ],
)
@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_token_out_of_its_time(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    reason: str,
    now: int,
    lifetime: int,
    kind: str,
) -> None:
    browser = Browser("ada", with_flow=True)
    browser.age_flows(850)  # before every token here was issued; within FLOW_MAX_AGE
    path = browser.path(kind)
    url = signed_url(KEY_A, APP_SECRET, path, now=time.time() + now, lifetime=lifetime)
    assert_rejected(browser, url, reason, sent_signals, caplog)


def test_token_issued_before_the_flow_began(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A sound token for this flow's path, issued before the button was pressed."""
    browser = Browser("ada", with_flow=True)
    url = signed_url(KEY_A, APP_SECRET, browser.path("flow"), now=time.time() - 120)
    assert_rejected(browser, url, "token_before_flow", sent_signals, caplog)


def header_and_claims_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def _forged(kind: str, path: str) -> str:
    query = urlencode({"clientKey": KEY_A})
    now = int(time.time())
    claims = {
        "iss": KEY_A,
        "iat": now,
        "exp": now + 180,
        "qsh": query_string_hash("GET", path, query),
    }
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
        token = encode_token({}, APP_SECRET, method="GET", path=path, query_string=query)
    elif kind == "no-qsh":
        token = encode_token({"iss": KEY_A}, APP_SECRET)
    elif kind == "context-qsh":
        token = encode_token({"iss": KEY_A, "qsh": "context-qsh"}, APP_SECRET)
    else:  # "unsigned-hs256": the right header, no signature
        token = header_and_claims_token({"alg": "HS256", "typ": "JWT"}, claims)
    return return_url(query + "&" + urlencode({"jwt": token}), path)


@pytest.mark.parametrize(
    ("forgery", "reason"),
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
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_forged_tokens(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    forgery: str,
    reason: str,
    kind: str,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("ada", with_flow=True)
    url = _forged(forgery, browser.path(kind))
    if forgery == "no-iss":  # refused by the issuer check on the query alone
        assert_rejected(browser, url, reason, sent_signals, caplog, flow_used=False)
    else:
        assert_refused(browser, url, on(kind, reason), sent_signals, caplog)


# --- a badly signed return for an existing clientKey, sent by another site --------------------


@pytest.mark.parametrize("kind", ["plain", "made-up"])
def test_a_badly_signed_return_does_not_spend_the_victims_flow(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Any page can navigate a visitor who just pressed the install button to a return
    with a badly signed token for an existing clientKey, plainly or to a made-up flow id:
    refused without using up the victim's flow and without ``install_failed``; the victim's
    real return afterwards still connects."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    victim = Browser("victim", with_flow=True)
    path = victim.path(kind)
    url = signed_url(KEY_A, "what-the-attacker-guessed", path)

    assert_rejected(victim, url, on(kind, "token_signature"), sent_signals, caplog)

    assert live_flows(victim.client) == [victim.flow_id]
    assert_connects(victim, KEY_A, INSTALL_SECRET, sent_signals)


# --- install CSRF with an installation the attacker made up -----------------------------------

ATTACKER_KEY = "ari:cloud:bitbucket::app/{0f1e2d3c-dddd-4b5a-9c8d-7e6f5a4b3c2d}/example-app"
ATTACKER_SECRET = "a-secret-the-attacker-chose-0123456789"


def made_up_installation() -> dict[str, Any]:
    """The attacker's own installation: an unsigned first ``installed`` callback (trusted
    on first use) with a clientKey and a secret of their choice."""
    body = lifecycle_body(client_key=ATTACKER_KEY, shared_secret=ATTACKER_SECRET)
    body["principal"] = {"type": "workspace", "uuid": "{e}", "display_name": "Evil Corp"}
    assert post_lifecycle(Client(), "installed", body).status_code == 204
    [row] = installation_rows()
    return row


def test_install_csrf_to_the_plain_callback_binds_nobody(
    sent_signals: SignalRecorder,
) -> None:
    """The attacker signs a valid plain return for their made-up installation and sends a
    victim who pressed the button 14 minutes ago to it: it confirms the attacker's row,
    connected to nobody; the victim's flow is still live and their real return connects."""
    before = made_up_installation()
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    victim = Browser("victim", with_flow=True)
    victim.age_flows(14 * 60)
    sent_signals.calls.clear()

    response = victim.get(signed_url(ATTACKER_KEY, ATTACKER_SECRET, CALLBACK_PATH))

    assert response.status_code == 303
    assert_protected(response)
    after = Installation.objects.filter(client_key=ATTACKER_KEY).values()[0]
    assert changed_fields(before, after) == {"confirmed_at", "updated_at"}
    assert after["user_id"] is None
    assert after["confirmed_flow"] is None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None
    assert not sent_signals.of(install_failed)
    assert live_flows(victim.client) == [victim.flow_id]
    assert NOT_STARTED_HERE_TEXT in victim.get(RESULT_PATH).content.decode()
    assert_connects(victim, KEY_A, INSTALL_SECRET, sent_signals)
    assert Installation.objects.get(client_key=ATTACKER_KEY).user_id is None


def test_install_csrf_with_a_guessed_flow_id_binds_nobody(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The same with a flow id the attacker guessed (and signed over): refused, nothing
    written, the victim's flow live."""
    made_up_installation()
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    victim = Browser("victim", with_flow=True)
    victim.age_flows(14 * 60)
    url = signed_url(ATTACKER_KEY, ATTACKER_SECRET, made_up_flow_path())

    assert_rejected(victim, url, "flow_unknown", sent_signals, caplog)

    assert live_flows(victim.client) == [victim.flow_id]
    assert_connects(victim, KEY_A, INSTALL_SECRET, sent_signals)
    assert Installation.objects.get(client_key=ATTACKER_KEY).confirmed_at is None


# --- existence oracle without an app-level secret ---------------------------------------------


def test_no_existence_oracle_on_plain_returns(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Without an app-level secret, a guess-signed plain return for an unknown clientKey
    (no secret at all) and for an installed one (its secret does not verify it) get the
    same answer."""
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    prober = Browser("mallory")

    expected = assert_rejected(
        prober,
        signed_url(GUESSED_KEY, "a-guess", CALLBACK_PATH),
        "unknown_installation",
        sent_signals,
        caplog,
    )
    answer = assert_rejected(
        prober,
        signed_url(KEY_A, "a-guess", CALLBACK_PATH),
        "token_signature",
        sent_signals,
        caplog,
    )

    assert answer_of(answer) == answer_of(expected)


def test_no_existence_oracle_on_returns_of_an_own_flow(
    settings: Settings, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The same with the prober's own live flow: both 503 while it is young, both 400
    (using it up) after the confirm window."""
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    unknown = Browser("prober-of-an-unknown-key", with_flow=True)
    known = Browser("prober-of-a-known-key", with_flow=True)
    unknown_url = signed_url(GUESSED_KEY, "a-guess", unknown.path("flow"))
    known_url = signed_url(KEY_A, "a-guess", known.path("flow"))

    expected = assert_not_yet(unknown, unknown_url, "unknown_installation", sent_signals, caplog)
    answer = assert_not_yet(known, known_url, "token_signature", sent_signals, caplog)
    assert answer_of(answer) == answer_of(expected)

    unknown.age_flows()
    known.age_flows()
    expected = assert_rejected(unknown, unknown_url, "unknown_installation", sent_signals, caplog)
    answer = assert_rejected(known, known_url, "token_signature", sent_signals, caplog)
    assert answer_of(answer) == answer_of(expected)


# --- a stored secret PyJWT refuses as an HMAC key ---------------------------------------------

UNUSABLE_SECRET = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABB"


def row_with_an_unusable_secret() -> None:
    """Made directly: the lifecycle callback refuses to store such a secret."""
    assert not is_usable_hmac_secret(UNUSABLE_SECRET)
    Installation.objects.create(
        client_key=KEY_A,
        addon_key="example-app",
        shared_secret=UNUSABLE_SECRET,
        principal_name="Acme Team",
        installed_at=timezone.now(),
    )


@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_unusable_stored_secret_then_the_app_level_secret_verifies(
    sent_signals: SignalRecorder, kind: str
) -> None:
    row_with_an_unusable_secret()
    browser = Browser("ada", with_flow=True)

    response = browser.get(signed_url(KEY_A, APP_SECRET, browser.path(kind)))

    assert response.status_code == 303
    assert_protected(response)
    row = Installation.objects.get()
    assert row.confirmed_at is not None
    assert browser.user is not None
    assert row.user_id == (browser.user.pk if kind == "flow" else None)
    [kwargs] = sent_signals.of(installed)
    assert kwargs["created"] is False


@pytest.mark.parametrize("kind", ["flow", "plain"])
@pytest.mark.parametrize("app_secret", [True, False], ids=["app-secret", "no-app-secret"])
def test_unusable_stored_secret_with_a_garbage_signature(
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    app_secret: bool,
) -> None:
    """Never a 500: the usual 503 for a young flow, then 400, always no-store."""
    if not app_secret:
        settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    row_with_an_unusable_secret()
    browser = Browser("ada", with_flow=True)
    url = signed_url(KEY_A, "garbage-secret", browser.path(kind))
    reason = "token_signature" if app_secret else "secret_unusable"
    assert_refused(browser, url, reason, sent_signals, caplog)


# --- oversized queries and sessions -----------------------------------------------------------


@pytest.mark.parametrize("kind", PATH_KINDS)
def test_a_query_with_too_many_fields_gets_the_apps_400(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    browser = Browser("ada", with_flow=True)
    path = browser.path(kind)
    filler = [(f"f{number}", "x") for number in range(1000)]
    url = signed_url(KEY_A, APP_SECRET, path, extra=filler)
    rows = installation_rows()
    caplog.set_level("INFO")

    response = browser.get(url)

    assert response.status_code == 400
    assert_protected(response)
    assert REJECTED_TEXT in response.content.decode()
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert live_flows(browser.client) == [browser.flow_id]
    assert app_log_lines(caplog) == ["install return rejected: reason=query_too_large"]


@pytest.mark.parametrize(
    "cookie", [None, "a-session-key-the-server-never-made"], ids=["no-cookie", "unknown-cookie"]
)
@pytest.mark.parametrize("kind", ["plain", "made-up"])
@pytest.mark.parametrize(
    "query",
    ["error=access_denied", "&".join(f"f{number}=x" for number in range(1001))],
    ids=["error", "too-many-fields"],
)
def test_anonymous_returns_create_no_session(
    sent_signals: SignalRecorder, cookie: str | None, kind: str, query: str
) -> None:
    """Each visitor's return without a flow would otherwise add a session row."""
    client = Client()
    if cookie is not None:
        client.cookies[django_settings.SESSION_COOKIE_NAME] = cookie
    path = CALLBACK_PATH if kind == "plain" else made_up_flow_path()

    response = client.get(path + "?" + query)

    made_up = kind == "made-up" or "f1000" in query
    assert response.status_code == (400 if made_up else 200)
    assert_protected(response)
    assert session_rows() == 0
    # No session cookie given (an unknown one is only cleared, as Django does).
    set_cookie = response.cookies.get(django_settings.SESSION_COOKIE_NAME)
    assert set_cookie is None or (cookie is not None and set_cookie.value == "")
    assert sent_signals.none_sent
    assert not Installation.objects.exists()


# --- replays, other people's flows and installations ------------------------------------------


@pytest.mark.parametrize("attacker_kind", ["no-session", "logged-in", "with-own-flow"])
def test_a_return_for_someone_elses_flow_is_refused_like_any_rejection(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, attacker_kind: str
) -> None:
    """The owner's genuine return URL (their flow id, a valid token) opened in another
    browser: refused exactly like any other rejection, and the owner's flow stays live."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    owner = Browser("owner", with_flow=True)
    genuine = signed_url(KEY_A, INSTALL_SECRET, owner.path("flow"))
    attacker = Browser(
        None if attacker_kind == "no-session" else "mallory",
        with_flow=attacker_kind == "with-own-flow",
    )
    made_up = signed_url(KEY_A, INSTALL_SECRET, made_up_flow_path())
    other = signed_url(KEY_A, "a-guess", CALLBACK_PATH)

    unheard_of = assert_rejected(attacker, made_up, "flow_unknown", sent_signals, caplog)
    plain = assert_rejected(attacker, other, "token_signature", sent_signals, caplog)
    answer = assert_rejected(attacker, genuine, "flow_unknown", sent_signals, caplog)

    # Nothing tells a live flow id of someone else's from one nobody was given...
    assert answer_of(answer) == answer_of(unheard_of)
    # ...and the page is that of any rejection. (Only "Vary: Cookie" differs from a
    # plain return's, which never reads the session: that tells the path, not the flow.)
    assert (answer.status_code, answer.content) == (plain.status_code, plain.content)
    assert live_flows(owner.client) == [owner.flow_id]
    assert_connects(owner, KEY_A, INSTALL_SECRET, sent_signals)


@pytest.mark.parametrize("attacker_kind", ["no-session", "logged-in", "with-own-flow"])
def test_a_finished_return_replayed_in_another_browser(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, attacker_kind: str
) -> None:
    owner = Browser("owner", with_flow=True)
    url = signed_url(KEY_A, APP_SECRET, owner.path("flow"))
    assert owner.get(url).status_code == 303
    attacker = Browser(
        None if attacker_kind == "no-session" else "mallory",
        with_flow=attacker_kind == "with-own-flow",
    )

    assert_rejected(attacker, url, "flow_unknown", sent_signals, caplog)

    assert owner.user is not None
    assert Installation.objects.get().user_id == owner.user.pk
    assert attacker.get(RESULT_PATH).status_code == 404  # nothing to show


def test_installation_of_user_1_claimed_by_user_2s_flow(sent_signals: SignalRecorder) -> None:
    """Reinstalled (so unconfirmed again), still connected to user 1: user 2's own flow
    with a valid token gets the conflict page and install_failed, never the installation."""
    owner = confirmed_by_owner()
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None
    second = Browser("user2", with_flow=True)
    rows = installation_rows()
    sent_signals.calls.clear()

    response = second.get(signed_url(KEY_A, INSTALL_SECRET, second.path("flow")))

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert installation_rows() == rows
    assert owner.user is not None
    assert Installation.objects.get().user_id == owner.user.pk
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error"] == "connected_to_another_user"
    assert not sent_signals.of(installed)
    assert live_flows(second.client) == []
    page = second.get(RESULT_PATH).content.decode()
    assert "already connected to another account on this site" in page


@pytest.mark.parametrize("secret", [APP_SECRET, INSTALL_SECRET], ids=["app", "installation"])
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_uninstalled_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str, kind: str
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    body = lifecycle_body("uninstalled", client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "uninstalled", body, secret=INSTALL_SECRET).status_code == 204
    browser = Browser("ada", with_flow=True)
    url = signed_url(KEY_A, secret, browser.path(kind))
    assert_refused(browser, url, on(kind, "installation_uninstalled"), sent_signals, caplog)


def test_a_flow_started_before_logging_in_is_not_the_users(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A flow belongs to the session *and* the user who started it: started signed out,
    its return once signed in names no flow of this user (and binds nobody)."""
    browser = Browser(with_flow=True)  # anonymous
    path = browser.path("flow")
    browser.user = login(browser.client, "ada")
    assert live_flows(browser.client) == [browser.flow_id]
    url = signed_url(KEY_A, APP_SECRET, path)
    assert_rejected(browser, url, "flow_unknown", sent_signals, caplog)
    assert not Installation.objects.exists()


def test_a_genuine_return_of_another_flow_for_a_confirmed_installation_binds_nobody(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Confirmed through a signed-out flow (connected to nobody): a signed-in user's own
    flow coming back for the same installation, with a valid token, does not take it."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    first = Browser(with_flow=True)
    assert first.get(signed_url(KEY_A, INSTALL_SECRET, first.path("flow"))).status_code == 303
    assert Installation.objects.get().user_id is None
    second = Browser("mallory", with_flow=True)
    url = signed_url(KEY_A, INSTALL_SECRET, second.path("flow"))
    assert_rejected(second, url, "already_confirmed", sent_signals, caplog)
    assert Installation.objects.get().confirmed_flow == flows.flow_hash(first.flow_id)


def test_another_flow_of_the_connected_user_changes_nothing(sent_signals: SignalRecorder) -> None:
    """The user who connected it installs again (a new flow, a genuine return): the same
    success answer, nothing written, no second signal, the new flow used up."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    ada = Browser("ada", with_flow=True)
    assert_connects(ada, KEY_A, INSTALL_SECRET, sent_signals)
    rows = installation_rows()
    path = flow_path(ada.client)
    sent_signals.calls.clear()

    response = ada.get(signed_url(KEY_A, INSTALL_SECRET, path))

    assert response.status_code == 303
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert live_flows(ada.client) == []
    assert CONNECTED_TEXT in ada.get(RESULT_PATH).content.decode()


def test_a_flow_connects_an_installation_a_plain_return_confirmed(
    sent_signals: SignalRecorder,
) -> None:
    """A plain return confirms and binds nobody; the installer's own flow then connects it
    (``installed`` again, now with the user)."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert Client().get(signed_url(KEY_A, INSTALL_SECRET, CALLBACK_PATH)).status_code == 200
    assert Installation.objects.get().confirmed_at is not None
    assert Installation.objects.get().user_id is None
    ada = Browser("ada", with_flow=True)
    assert_connects(ada, KEY_A, INSTALL_SECRET, sent_signals)
    [kwargs] = sent_signals.of(installed)
    assert kwargs["created"] is False


@pytest.mark.parametrize(
    "flow_id", ["x" * 65, "x" * 4000, "Zz0", "_" * 64], ids=["65", "4000", "short", "64"]
)
def test_odd_flow_ids_are_no_flow(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, flow_id: str
) -> None:
    browser = Browser("ada", with_flow=True)
    path = f"{CALLBACK_PATH}{flow_id}/"
    assert_rejected(
        browser, signed_url(KEY_A, APP_SECRET, path), "flow_unknown", sent_signals, caplog
    )


# --- a flow confirms at most one installation -------------------------------------------------


def test_a_used_up_flow_cannot_confirm_another_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Browser("ada", with_flow=True)
    path = browser.path("flow")
    assert browser.get(signed_url(KEY_A, APP_SECRET, path)).status_code == 303

    assert_rejected(
        browser, signed_url(KEY_B, APP_SECRET, path), "flow_unknown", sent_signals, caplog
    )

    assert list(Installation.objects.values_list("client_key", flat=True)) == [KEY_A]


def test_a_second_installation_for_a_flow_that_lost_the_race_is_refused(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Two returns of one flow for two clientKeys, the second read the session before the
    first saved it (the session is put back to that moment): the second is refused as
    ``flow_used`` and connects nothing."""
    browser = Browser("ada", with_flow=True)
    path = browser.path("flow")
    session_key = browser.client.session.session_key
    assert session_key is not None
    as_loaded = dict(SessionStore(session_key=session_key).load())
    assert browser.get(signed_url(KEY_A, APP_SECRET, path)).status_code == 303
    store = SessionStore(session_key=session_key)
    store.update(as_loaded)
    store.save()
    assert live_flows(browser.client) == [browser.flow_id]

    assert_rejected(
        browser, signed_url(KEY_B, APP_SECRET, path), "flow_used", sent_signals, caplog
    )

    [row] = Installation.objects.all()
    assert row.client_key == KEY_A
    assert row.confirmed_flow == flows.flow_hash(browser.flow_id)


def test_the_database_refuses_a_second_installation_for_one_flow() -> None:
    browser = Browser("ada", with_flow=True)
    assert browser.get(signed_url(KEY_A, APP_SECRET, browser.path("flow"))).status_code == 303
    installed_via_lifecycle(KEY_B, SECRET_OF_B)
    rows = installation_rows()

    with pytest.raises(IntegrityError), transaction.atomic():
        Installation.objects.filter(client_key=KEY_B).update(
            confirmed_flow=flows.flow_hash(browser.flow_id), confirmed_at=timezone.now()
        )

    assert installation_rows() == rows


# --- markup in what comes back ----------------------------------------------------------------

XSS = '<script>alert("x")</script>'


@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_xss_in_error_and_error_description(sent_signals: SignalRecorder, kind: str) -> None:
    browser = Browser("ada", with_flow=True)
    rows = installation_rows()
    url = return_url(urlencode({"error": XSS, "error_description": XSS}), browser.path(kind))

    response = browser.get(url)
    page = browser.get(RESULT_PATH)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert page.status_code == 200
    for body in (response.content.decode(), page.content.decode()):
        assert "<script" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.content.decode()
    assert "Bitbucket did not install the app. Please try again." in page.content.decode()
    assert installation_rows() == rows
    assert not sent_signals.of(installed)
    if kind == "flow":
        [kwargs] = sent_signals.of(install_failed)
        assert kwargs["error"] == "unknown_error"  # never the raw markup
        assert kwargs["error_description"] == XSS  # documented as untrusted text
        assert live_flows(browser.client) == []
    else:
        assert sent_signals.none_sent
        assert live_flows(browser.client) == [browser.flow_id]


def test_xss_in_an_anonymous_error_return_is_escaped_in_place(
    sent_signals: SignalRecorder,
) -> None:
    response = Client().get(return_url(urlencode({"error": XSS, "error_description": XSS})))
    assert response.status_code == 200
    assert "<script" not in response.content.decode()
    assert "&lt;script&gt;" in response.content.decode()
    assert sent_signals.none_sent
    assert session_rows() == 0


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
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_xss_in_rejected_returns_is_never_echoed(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, query: str, kind: str
) -> None:
    browser = Browser("ada", with_flow=True)
    reason = "client_key_or_error_required" if "error=" in query else "client_key_invalid"
    response = assert_rejected(
        browser, return_url(query, browser.path(kind)), reason, sent_signals, caplog
    )
    page = response.content.decode()
    assert "<script" not in page
    assert "alert(" not in page


def test_markup_in_the_workspace_name_is_escaped(sent_signals: SignalRecorder) -> None:
    """The lifecycle payload's principal name is untrusted too (trust on first use)."""
    principal = {"type": "workspace", "uuid": "{1}", "display_name": XSS}
    installed_via_lifecycle(KEY_A, INSTALL_SECRET, principal=principal)
    browser = Browser("ada", with_flow=True)

    response = browser.get(signed_url(KEY_A, INSTALL_SECRET, browser.path("flow")))
    page = browser.get(RESULT_PATH).content.decode()

    assert response.status_code == 303
    assert "<script" not in page
    assert "It is installed on &lt;script&gt;" in page
    assert len(sent_signals.of(installed)) == 1


# --- malformed parameters ---------------------------------------------------------------------


def _malformed(kind: str, path: str) -> tuple[str, str]:
    def signed(**query: Any) -> str:
        return signed_query(KEY_A, APP_SECRET, path=path, **query)

    if kind == "clientKey-twice":
        return signed(extra=[("clientKey", KEY_A)]), "parameter_repeated"
    if kind == "client_key-twice":
        query = signed_query(
            KEY_A, APP_SECRET, spelling="client_key", extra=[("client_key", KEY_B)], path=path
        )
        return query, "parameter_repeated"
    if kind == "jwt-twice":
        query = signed()
        return query + "&jwt=" + token_of(query), "parameter_repeated"
    if kind == "jwt-twice-one-empty":
        return signed() + "&jwt=", "parameter_repeated"
    if kind == "error-twice":
        return "error=access_denied&error=server_error", "parameter_repeated"
    if kind == "error_description-twice":
        return "error=access_denied&error_description=a&error_description=b", "parameter_repeated"
    if kind == "encoded-name-twice":
        query = signed(extra=[("client%4Bey", KEY_B)])
        return query.replace("client%254Bey", "client%4Bey"), "parameter_repeated"
    if kind == "both-spellings-differ":
        return signed(extra=[("client_key", KEY_B)]), "client_key_conflict"
    if kind == "client-key-and-error":
        return signed(extra=[("error", "access_denied")]), "client_key_or_error_required"
    if kind == "neither":
        return "", "client_key_or_error_required"
    if kind == "only-jwt":
        return "jwt=" + token_of(signed()), "client_key_or_error_required"
    if kind == "only-error_description":
        return "error_description=hello", "client_key_or_error_required"
    assert kind == "empty-client-key"
    return "clientKey=&" + urlencode({"jwt": "x"}), "client_key_invalid"


MALFORMED = [
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
]


@pytest.mark.parametrize("malformed", MALFORMED)
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_duplicated_conflicting_or_missing_parameters(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, malformed: str, kind: str
) -> None:
    """Refused on the query alone: not even the browser's own flow is touched."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("ada", with_flow=True)
    path = browser.path(kind)
    query, reason = _malformed(malformed, path)
    assert_rejected(browser, return_url(query, path), reason, sent_signals, caplog)


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
@pytest.mark.parametrize("kind", PATH_KINDS)
def test_malformed_client_keys(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, client_key: str, kind: str
) -> None:
    """Validly signed with the app-level secret: only the key's shape is wrong."""
    browser = Browser("ada", with_flow=True)
    url = signed_url(client_key, APP_SECRET, browser.path(kind))
    assert_rejected(browser, url, "client_key_invalid", sent_signals, caplog)
    for record in caplog.records:
        message = record.getMessage()
        assert "\x00" not in message
        assert "\n" not in message
        assert "\r" not in message
    assert "\nFAKE" not in caplog.text


def test_longest_valid_client_key_is_accepted(sent_signals: SignalRecorder) -> None:
    """The other side of the 256-character test: 255 characters fit the column."""
    client_key = "ari:cloud:bitbucket::app/" + "a" * 218 + "/example-app"
    assert len(client_key) == 255
    browser = Browser("ada", with_flow=True)

    response = browser.get(signed_url(client_key, APP_SECRET, browser.path("flow")))

    assert response.status_code == 303
    assert Installation.objects.get().client_key == client_key
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "head", "options"])
@pytest.mark.parametrize("kind", ["flow", "plain"])
def test_other_methods_are_not_allowed(
    sent_signals: SignalRecorder, method: str, kind: str
) -> None:
    browser = Browser("ada", with_flow=True)
    url = signed_url(KEY_A, APP_SECRET, browser.path(kind))
    rows = installation_rows()

    response = getattr(browser.client, method)(url)

    assert response.status_code == 405
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert live_flows(browser.client) == [browser.flow_id]


# --- open redirects through ``next`` ----------------------------------------------------------

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
    browser = Browser("ada", with_flow=True, next_url=evil)

    response = browser.get(signed_url(KEY_A, APP_SECRET, browser.path("flow")))

    assert response.status_code == 303
    assert response["Location"] == (success_url or RESULT_PATH)
    assert "evil" not in response["Location"]
    assert browser.user is not None
    assert Installation.objects.get().user_id == browser.user.pk
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


def test_a_next_given_with_the_return_is_ignored(sent_signals: SignalRecorder) -> None:
    """``next`` is the flow's, from the button; one added to the (signed) return is not."""
    client = Client()
    login(client, "ada")
    start_flow(client)
    browser_path = CALLBACK_PATH + live_flows(client)[0] + "/"
    extra = [("next", "//evil.test")]

    response = client.get(signed_url(KEY_A, APP_SECRET, browser_path, extra=extra))

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert len(sent_signals.of(installed)) == 1


# --- logs never carry a token, a secret or a flow id ------------------------------------------


def test_a_rejected_token_is_never_logged(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    browser = Browser("ada", with_flow=True)
    path = browser.path("flow")
    query = signed_query(KEY_A, INSTALL_SECRET, path=path, signed_for="clientKey=" + quote(KEY_B))
    assert_rejected(browser, return_url(query, path), "token_qsh", sent_signals, caplog)
    assert token_of(query) not in caplog.text
    assert token_of(query).split(".")[2] not in caplog.text
    assert browser.flow_id not in caplog.text
    assert "Bad Request" not in caplog.text  # Django's line would carry the flow id


def test_the_flow_id_is_not_in_the_database() -> None:
    """Only its hash is kept: the id is what binds a user."""
    browser = Browser("ada", with_flow=True)
    assert browser.get(signed_url(KEY_A, APP_SECRET, browser.path("flow"))).status_code == 303
    [row] = installation_rows()
    assert browser.flow_id not in json.dumps(row, default=str)
    assert row["confirmed_flow"] == hashlib.sha256(browser.flow_id.encode()).hexdigest()
