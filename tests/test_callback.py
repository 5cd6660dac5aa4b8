"""The return trip's success paths.

A flow return (``callback/<flow id>/``) naming a live flow of this browser uses that flow
up and connects its user when the return is signed; a plain return (``callback/``)
confirms and binds nobody. An unsigned return binds only with
``BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS``; without it, it confirms a fresh installation
at most, keeps the flow and gets one neutral answer whatever it names.

Each way a clientKey is trusted, both spellings; the row, the connected user, exactly one
``installed`` signal, the 303 target, the result, the headers; what an earlier
confirmation changes; reloads (answered again from what this browser kept of the flow it
used up: the clientKey its return confirmed, its next, whether it was started signed in);
the answers that create no session (no cookie, a stale one, one this site did not sign,
an empty session); the session cookie; a base URL with a path; the log lines; the
database being unavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.http.response import HttpResponseBase
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install import returns
from bitbucket_install.models import Installation, InstallationQuerySet
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.views import RESULT_SESSION_KEY
from tests.attack_helpers import REFRESH_META, shown
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    KEY_B,
    RESULT_PATH,
    age_flows,
    app_log,
    assert_protected,
    flow_id_of,
    flow_ids,
    flow_path,
    flow_return,
    installed_via_lifecycle,
    login,
    records_mentioning,
    redirect_path,
    return_url,
    session_rows,
    sets_session_cookie,
    signed_query,
    start_flow,
    token_of,
    unregistered,
    used_entry,
    used_flow_hashes,
    used_flows,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db(transaction=True)

SPELLINGS = ["clientKey", "client_key"]
CONNECTION_TEXTS = {
    "connected": "The installation is connected to your account on this site.",
    "signed_out": "You were not signed in when you started the install",
    "unverified": "Bitbucket sent you back without a signature",
    "not_started_here": "because the install was not started from this browser",
    "other_account": "The install was started from another account on this site",
}
REJECTED_TEXT = "This install could not be confirmed"
# What every unsigned return gets while unsigned returns are not trusted, whatever it named.
NEUTRAL_RESULT = {
    "ok": True,
    "client_key": "",
    "principal_name": "",
    "connection": "unverified",
    "connected": False,
}


# --- helpers ------------------------------------------------------------------------------


def begin(
    client: Client, *, logged_in: bool = True, next_url: str | None = None, name: str = "ada"
) -> tuple[User | None, str]:
    """Log in (if asked) and start a flow: the user and the flow's return path."""
    user = login(client, name) if logged_in else None
    return user, flow_path(client, next_url)


def assert_success_redirect(response: HttpResponseBase, query: str, target: str) -> None:
    """A 303 to ``target`` that carries nothing of the return trip's query."""
    assert response.status_code == 303
    assert response["Location"] == target
    for leaked in ("jwt", "clientKey", "client_key", "callback"):
        assert leaked not in response["Location"]
    if "jwt=" in query:
        assert token_of(query) not in response["Location"]
    assert_protected(response)


def assert_one_installed(
    sent_signals: SignalRecorder,
    installation: Installation,
    user: User | None,
    *,
    created: bool,
    path: str,
) -> None:
    """Exactly one signal in all, ``installed``, with the documented arguments."""
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(installed)
    assert set(kwargs) == {"sender", "installation", "request", "user", "created"}
    assert kwargs["sender"] is Installation
    assert kwargs["installation"].pk == installation.pk
    assert kwargs["installation"].client_key == installation.client_key
    assert kwargs["request"].path == path
    assert kwargs["created"] is created
    if user is None:
        assert kwargs["user"] is None
    else:
        assert isinstance(kwargs["user"], User)
        assert kwargs["user"].pk == user.pk


def assert_flow_finished(
    client: Client, path: str, *, confirmed: str, next_url: str = "", signed_in: bool
) -> None:
    """The flow of ``path`` is used up, and this browser keeps its entry, newest (by its
    hash, never its id): ``confirmed`` is the clientKey its return confirmed, "" if none."""
    flow_id = flow_id_of(path)
    assert flow_id not in flow_ids(client)
    assert used_flows(client)[-1] == used_entry(
        path, confirmed=confirmed, next_url=next_url, signed_in=signed_in
    )
    assert flow_id not in repr(used_flows(client))


def result_page(client: Client) -> str:
    response = client.get(RESULT_PATH)
    assert response.status_code == 200
    assert_protected(response)
    return response.content.decode()


def assert_result(client: Client, installation: Installation, connection: str) -> str:
    """The result kept in the session and the page showing it say ``connection``."""
    assert client.session[RESULT_SESSION_KEY] == {
        "ok": True,
        "client_key": installation.client_key,
        "principal_name": installation.principal_name,
        "connection": connection,
        "connected": connection == "connected",
    }
    page = result_page(client)
    assert "The app is installed" in page
    for other, text in CONNECTION_TEXTS.items():
        assert (text in page) is (other == connection), other
    return page


def assert_neutral_stored(client: Client, named: str = KEY_A) -> None:
    """The result an unsigned return (not trusted) keeps: shown, the neutral one; for the
    server only, the clientKey it named, when it came back, one reload still to do."""
    stored = client.session[RESULT_SESSION_KEY]
    assert shown(stored) == NEUTRAL_RESULT
    assert stored["pending"] == named
    assert time.time() - 60 < stored["returned_at"] <= time.time()
    assert stored["refreshes"] == 1


def assert_neutral_result(client: Client, named: str = KEY_A) -> str:
    """The one answer of an unsigned return (not trusted): no clientKey, no workspace; its
    page reloads itself on this first view."""
    assert_neutral_stored(client, named)
    page = result_page(client)
    assert REFRESH_META in page
    assert client.session[RESULT_SESSION_KEY]["refreshes"] == 0
    # It does not even say the app is installed: the clientKey may be anybody's.
    assert "Back from Bitbucket" in page
    assert "The app is installed" not in page
    assert "It is installed on" not in page
    for other, text in CONNECTION_TEXTS.items():
        assert (text in page) is (other == "unverified"), other
    return page


# --- registered app, flow returns ---------------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_flow_return_with_the_app_level_secret_creates_the_installation(
    client: Client, sent_signals: SignalRecorder, spelling: str, logged_in: bool
) -> None:
    user, path = begin(client, logged_in=logged_in)
    query = signed_query(KEY_A, APP_SECRET, spelling=spelling, path=path)

    response = client.get(return_url(query, path))

    assert_success_redirect(response, query, RESULT_PATH)
    [row] = Installation.objects.all()
    assert row.client_key == KEY_A
    assert row.addon_key == "example-app"
    assert row.shared_secret == ""
    assert row.confirmed_at is not None
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
    assert row.user_id == (user.pk if user else None)
    assert_one_installed(sent_signals, row, user, created=True, path=path)
    assert flow_ids(client) == []
    assert used_flows(client) == [used_entry(path, confirmed=KEY_A, signed_in=logged_in)]
    assert used_flow_hashes(client) == [row.confirmed_flow]
    assert_result(client, row, "connected" if user else "signed_out")


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_flow_return_with_the_installation_secret_confirms_the_lifecycle_row(
    client: Client, sent_signals: SignalRecorder, spelling: str, logged_in: bool
) -> None:
    user, path = begin(client, logged_in=logged_in)
    stored = installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, INSTALL_SECRET, path, spelling=spelling)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    [row] = Installation.objects.all()
    assert row.pk == stored.pk
    assert row.shared_secret == INSTALL_SECRET
    assert row.confirmed_at is not None
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
    assert row.user_id == (user.pk if user else None)
    assert_one_installed(sent_signals, row, user, created=False, path=path)
    assert_flow_finished(client, path, confirmed=KEY_A, signed_in=logged_in)
    page = assert_result(client, row, "connected" if user else "signed_out")
    assert "It is installed on Acme Team." in page


def test_the_app_level_secret_also_works_when_a_stored_secret_exists(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """The stored secret is tried first; a token signed with the app-level one still counts."""
    user, path = begin(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert row.shared_secret == INSTALL_SECRET
    assert_one_installed(sent_signals, row, user, created=False, path=path)


def test_without_an_app_level_secret_the_stored_one_verifies(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    user, path = begin(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, INSTALL_SECRET, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=False, path=path)


def test_both_spellings_with_the_same_value_are_one_client_key(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user, path = begin(client)

    response = flow_return(client, KEY_A, APP_SECRET, path, extra=[("client_key", KEY_A)])

    assert response.status_code == 303
    row = Installation.objects.get()
    assert_one_installed(sent_signals, row, user, created=True, path=path)


def test_each_flow_return_uses_its_own_flow(client: Client, sent_signals: SignalRecorder) -> None:
    """Two installs started in one browser: each return takes the flow its path names,
    not the newest one, and leaves the other one live."""
    user = login(client, "ada")
    older = flow_path(client, "/older/")
    newer = flow_path(client, "/newer/")

    response = flow_return(client, KEY_A, APP_SECRET, older)

    assert response.status_code == 303
    assert response["Location"] == "/older/"
    assert flow_ids(client) == [flow_id_of(newer)]
    row = Installation.objects.get()
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(older))
    assert_one_installed(sent_signals, row, user, created=True, path=older)
    sent_signals.calls.clear()

    second = flow_return(client, KEY_B, APP_SECRET, newer)

    assert second.status_code == 303
    assert second["Location"] == "/newer/"
    assert flow_ids(client) == []
    other = Installation.objects.get(client_key=KEY_B)
    assert other.confirmed_flow == flows.flow_hash(flow_id_of(newer))
    assert_one_installed(sent_signals, other, user, created=True, path=newer)


def test_a_token_signs_its_own_flows_path_only(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """The qsh covers the path: a token for the return of flow A does not verify on the
    path of flow B (which it uses up, as any rejection of B's return), nor on the plain
    path; flow A's own return still works."""
    user = login(client, "ada")
    path_a = flow_path(client, "/a/")
    path_b = flow_path(client, "/b/")
    query_a = signed_query(KEY_A, APP_SECRET, path=path_a)

    on_b = client.get(return_url(query_a, path_b))
    on_plain = client.get(return_url(query_a, CALLBACK_PATH))

    for response in (on_b, on_plain):
        assert response.status_code == 400
        assert REJECTED_TEXT in response.content.decode()
    assert installation_rows() == []
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "token_qsh"
    assert failed["request"].path == path_b
    assert not sent_signals.of(installed)
    assert flow_ids(client) == [flow_id_of(path_a)]
    sent_signals.calls.clear()

    response = client.get(return_url(query_a, path_a))

    assert response.status_code == 303
    assert response["Location"] == "/a/"
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=True, path=path_a)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_signed_return_binds_on_an_unregistered_app_too(
    client: Client, sent_signals: SignalRecorder, settings: Settings, spelling: str
) -> None:
    """Bitbucket sends a ``jwt`` to unregistered apps too: then the JWT is what counts, and
    it binds without BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS."""
    unregistered(settings)
    user, path = begin(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, INSTALL_SECRET, path, spelling=spelling)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=False, path=path)
    assert_result(client, row, "connected")


# --- the flow began before Bitbucket signed (give or take the leeway) ----------------------


def assert_answered_for_the_flow(
    response: HttpResponseBase,
    user: User | None,
    sent_signals: SignalRecorder,
    *,
    accepted: bool,
) -> None:
    """Accepted: connected to ``user``, one ``installed``. Else refused as issued before
    the flow: no row, and the flow's ``install_failed`` the only signal."""
    if accepted:
        assert response.status_code == 303
        assert Installation.objects.get().user_id == (user.pk if user else None)
        assert len(sent_signals.of(installed)) == 1
    else:
        assert response.status_code == 400
        assert installation_rows() == []
        [failed] = sent_signals.of(install_failed)
        assert failed["error"] == "token_before_flow"
        assert len(sent_signals.calls) == 1


@pytest.mark.parametrize(("leeway", "accepted"), [(30, True), (5, False)])
def test_a_token_issued_shortly_before_the_flow_began(
    client: Client, sent_signals: SignalRecorder, settings: Settings, leeway: int, accepted: bool
) -> None:
    """The flow must have begun before the token's iat, give or take JWT_LEEWAY: a token
    issued 20 s before the flow started is a clock difference within 30 s, not within 5."""
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = leeway
    query_time = time.time() - 20
    user, path = begin(client)
    query = signed_query(KEY_A, APP_SECRET, path=path, now=query_time)

    response = client.get(return_url(query, path))

    assert_flow_finished(client, path, confirmed=KEY_A if accepted else "", signed_in=True)
    assert_answered_for_the_flow(response, user, sent_signals, accepted=accepted)


@pytest.mark.parametrize(("seconds_earlier", "accepted"), [(0, True), (1, False)])
def test_a_token_issued_at_the_edge_of_the_leeway_before_the_flow(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    seconds_earlier: int,
    accepted: bool,
) -> None:
    """An ``iat`` exactly JWT_LEEWAY before the flow began is still within the leeway; a
    second earlier is not."""
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = 30
    started_at = float(int(time.time()))
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: started_at)
        user, path = begin(client)
    issued_at = started_at - 30 - seconds_earlier
    query = signed_query(KEY_A, APP_SECRET, path=path, now=issued_at)

    response = client.get(return_url(query, path))

    assert_answered_for_the_flow(response, user, sent_signals, accepted=accepted)


# --- plain returns: confirm, bind nobody, touch no flow -----------------------------------

PLAIN_KINDS = ["app-level", "installation", "unsigned", "unsigned-trusted", "unregistered-jwt"]


def plain_return(client: Client, settings: Settings, kind: str) -> tuple[str, bool]:
    """Set the app up for a plain return of ``kind``; the query and whether the row existed."""
    if kind.startswith("unsigned") or kind == "unregistered-jwt":
        unregistered(settings)
    if kind == "unsigned-trusted":
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    if kind == "app-level":
        return signed_query(KEY_A, APP_SECRET), False
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if kind.startswith("unsigned"):
        return urlencode({"clientKey": KEY_A}), True
    return signed_query(KEY_A, INSTALL_SECRET), True


@pytest.mark.parametrize("kind", PLAIN_KINDS)
def test_a_plain_return_confirms_and_binds_nobody(
    client: Client, sent_signals: SignalRecorder, settings: Settings, kind: str
) -> None:
    """Install CSRF: a valid return opened in a logged-in browser with live flows of its own
    connects nobody and leaves the flows alone."""
    login(client, "victim")
    start_flow(client, "/dashboard/")
    start_flow(client)
    live = flow_ids(client)
    query, existed = plain_return(client, settings, kind)
    sent_signals.calls.clear()

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_at is not None
    assert row.confirmed_flow is None
    assert_one_installed(sent_signals, row, None, created=not existed, path=CALLBACK_PATH)
    assert flow_ids(client) == live
    assert used_flow_hashes(client) == []
    if kind == "unsigned":
        assert_neutral_result(client)
    else:
        assert_result(client, row, "not_started_here")


def test_a_plain_return_goes_to_the_success_url_never_to_a_flows_next(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    begin(client, next_url="/dashboard/")
    query = signed_query(KEY_A, APP_SECRET)
    assert_success_redirect(client.get(return_url(query)), query, RESULT_PATH)
    settings.BITBUCKET_INSTALL_SUCCESS_URL = "/welcome/"
    query = signed_query(KEY_B, APP_SECRET)
    assert_success_redirect(client.get(return_url(query)), query, "/welcome/")
    assert len(sent_signals.of(installed)) == 2
    assert len(flow_ids(client)) == 1


# --- unregistered app: unsigned flow returns ------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_an_unsigned_flow_return_records_a_fresh_install_and_keeps_the_flow(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    spelling: str,
    logged_in: bool,
) -> None:
    """Unsigned returns not trusted: the fresh installation it names is confirmed (nobody
    bound, no flow recorded), ``installed`` goes out with user None, the flow stays live
    and nothing is used up; the answer is the neutral one, to the flow's next."""
    unregistered(settings)
    _user, path = begin(client, logged_in=logged_in, next_url="/dashboard/")
    stored = installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({spelling: KEY_A})
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    response = client.get(return_url(query, path))

    assert_success_redirect(response, query, "/dashboard/")
    [row] = Installation.objects.all()
    assert row.pk == stored.pk
    assert row.user_id is None
    assert row.confirmed_at is not None
    assert row.confirmed_flow is None
    assert_one_installed(sent_signals, row, None, created=False, path=path)
    assert flow_ids(client) == [flow_id_of(path)]
    assert used_flow_hashes(client) == []
    assert app_log(caplog) == [
        ("INFO", f"install return without a token: client_key={KEY_A} recorded=True flow=True")
    ]
    assert records_mentioning(caplog, flow_id_of(path)) == []
    assert_neutral_result(client)


UNSIGNED_CASES = ["fresh", "unknown", "stale", "confirmed", "uninstalled", "flow-confirmed"]


def unsigned_case(case: str) -> None:
    """Set up the installation an unsigned return for KEY_A finds in ``case``."""
    if case == "unknown":
        return
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    now = timezone.now()
    if case == "stale":
        Installation.objects.update(installed_at=now - timedelta(hours=1))
    elif case == "confirmed":
        Installation.objects.update(confirmed_at=now)
    elif case == "uninstalled":
        Installation.objects.update(uninstalled_at=now)
    elif case == "flow-confirmed":
        Installation.objects.update(confirmed_at=now, confirmed_flow=flows.flow_hash("other"))


@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "plain"])
def test_an_unsigned_return_gets_one_answer_whatever_it_names(
    sent_signals: SignalRecorder, settings: Settings, with_flow: bool
) -> None:
    """Only the fresh, unconfirmed installation is changed (and signalled); the answer,
    its target, the result kept and the page are the same in every case."""
    unregistered(settings)
    answers = set()
    for case in UNSIGNED_CASES:
        Installation.objects.all().delete()
        unsigned_case(case)
        rows = installation_rows()
        sent_signals.calls.clear()
        client = Client()
        login(client, f"user-{case}")
        path = flow_path(client, "/dashboard/") if with_flow else CALLBACK_PATH
        live = flow_ids(client)

        response = client.get(return_url(urlencode({"clientKey": KEY_A}), path))

        assert response.status_code == 303
        assert_protected(response)
        answers.add(response["Location"])
        assert_neutral_stored(client)
        answers.add(result_page(client).replace(f"user-{case}", "someone"))
        assert flow_ids(client) == live
        assert not sent_signals.of(install_failed)
        if case == "fresh":
            assert Installation.objects.get().confirmed_at is not None
            assert len(sent_signals.of(installed)) == 1
        else:
            assert installation_rows() == rows
            assert sent_signals.none_sent
    assert len(answers) == 2  # one Location, one page


def test_a_retry_of_an_unsigned_flow_return_answers_the_same(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    unregistered(settings)
    _user, path = begin(client, next_url="/dashboard/")
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}), path)
    first = client.get(url)
    rows = installation_rows()

    retries = [client.get(url) for _ in range(2)]

    for response in [first, *retries]:
        assert response.status_code == 303
        assert response["Location"] == "/dashboard/"
    assert installation_rows() == rows
    assert len(sent_signals.calls) == 1
    assert flow_ids(client) == [flow_id_of(path)]
    assert_neutral_result(client)


def test_an_unsigned_plain_return_without_a_session_is_answered_in_place(
    sent_signals: SignalRecorder, settings: Settings
) -> None:
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client = Client()

    response = client.get(return_url(urlencode({"clientKey": KEY_A})))

    assert response.status_code == 200
    assert_protected(response)
    assert not sets_session_cookie(response)
    assert session_rows() == 0
    page = response.content.decode()
    assert CONNECTION_TEXTS["unverified"] in page
    assert "Acme Team" not in page
    assert KEY_A not in page
    # Nothing kept to record it again: the page does not reload itself.
    assert REFRESH_META not in page
    assert_one_installed(
        sent_signals, Installation.objects.get(), None, created=False, path=CALLBACK_PATH
    )


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_unsigned_flow_return_binds_when_unsigned_returns_are_trusted(
    client: Client, sent_signals: SignalRecorder, settings: Settings, spelling: str
) -> None:
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    user, path = begin(client, next_url="/dashboard/")
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({spelling: KEY_A})

    response = client.get(return_url(query, path))

    assert_success_redirect(response, query, "/dashboard/")
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
    assert_one_installed(sent_signals, row, user, created=False, path=path)
    assert_result(client, row, "connected")


def test_trusted_unsigned_returns_of_an_anonymous_flow_bind_nobody(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    _user, path = begin(client, logged_in=False)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, None, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id is None
    assert_one_installed(sent_signals, row, None, created=False, path=path)
    assert_result(client, row, "signed_out")


@pytest.mark.parametrize("value", ["True", "on", 1, "1", [True]])
def test_only_true_trusts_unsigned_returns(
    client: Client, sent_signals: SignalRecorder, settings: Settings, value: Any
) -> None:
    """A truthy string from an environment variable does not switch the trust on."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = value
    _user, path = begin(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)

    response = flow_return(client, KEY_A, None, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_flow is None
    assert_one_installed(sent_signals, row, None, created=False, path=path)
    assert flow_ids(client) == [flow_id_of(path)]
    assert_neutral_result(client)


@pytest.mark.parametrize(("seconds_ago", "accepted"), [(100, True), (125, False)])
def test_the_unsigned_window_is_counted_from_the_lifecycle_callback(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    seconds_ago: int,
    accepted: bool,
) -> None:
    """A callback 100 s ago is inside the 120 s window (the flow began before it); one
    125 s ago is not, and the flow, older than the window, is not "not yet" either."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    user, path = begin(client)
    age_flows(client, 300)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=seconds_ago))
    rows = installation_rows()

    response = flow_return(client, KEY_A, None, path)

    assert_flow_finished(client, path, confirmed=KEY_A if accepted else "", signed_in=True)
    if accepted:
        assert response.status_code == 303
        row = Installation.objects.get()
        assert user is not None
        assert row.user_id == user.pk
        assert_one_installed(sent_signals, row, user, created=False, path=path)
    else:
        assert response.status_code == 400
        assert installation_rows() == rows
        [failed] = sent_signals.of(install_failed)
        assert failed["error"] == "client_key_unverified"
        assert len(sent_signals.calls) == 1


@pytest.mark.parametrize(("leeway", "accepted"), [(30, True), (5, False)])
def test_an_install_reported_shortly_before_the_flow_began(
    client: Client, sent_signals: SignalRecorder, settings: Settings, leeway: int, accepted: bool
) -> None:
    """Trusted unsigned returns: the flow must have begun before the ``installed``
    callback, give or take the leeway; if not, its own callback may be on its way: "not
    yet" (503), nothing written, the flow kept."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    settings.BITBUCKET_INSTALL_JWT_LEEWAY = leeway
    settings.BITBUCKET_INSTALL_CONFIRM_WINDOW = 60
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=20))
    user, path = begin(client)
    rows = installation_rows()

    response = flow_return(client, KEY_A, None, path)

    if accepted:
        assert response.status_code == 303
        assert_flow_finished(client, path, confirmed=KEY_A, signed_in=True)
        row = Installation.objects.get()
        assert user is not None
        assert row.user_id == user.pk
        assert_one_installed(sent_signals, row, user, created=False, path=path)
    else:
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert installation_rows() == rows
        assert sent_signals.none_sent
        assert flow_ids(client) == [flow_id_of(path)]


# --- what an earlier confirmation changes ---------------------------------------------------


def test_a_plain_confirmation_is_connected_by_a_later_flow_return(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """Confirmed by a plain return, connected to nobody: a signed flow return connects it,
    and ``installed`` is sent again, with the user, ``created`` False."""
    plain = signed_query(KEY_A, APP_SECRET)
    assert Client().get(return_url(plain)).status_code == 200
    [first] = sent_signals.of(installed)
    assert first["user"] is None
    assert first["created"] is True
    sent_signals.calls.clear()
    user, path = begin(client)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
    assert_one_installed(sent_signals, row, user, created=False, path=path)
    assert_result(client, row, "connected")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned-trusted"])
def test_an_anonymous_flow_adds_nothing_to_a_plain_confirmation(
    client: Client, sent_signals: SignalRecorder, settings: Settings, signed: bool
) -> None:
    """Confirmed by a plain return, nobody connected: an anonymous flow's return has nobody
    to connect, so the row stays as it was and nothing is sent again."""
    if not signed:
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    plain = signed_query(KEY_A, INSTALL_SECRET) if signed else urlencode({"clientKey": KEY_A})
    assert Client().get(return_url(plain)).status_code == 200
    rows = installation_rows()
    sent_signals.calls.clear()
    _nobody, path = begin(client, logged_in=False)

    response = flow_return(client, KEY_A, INSTALL_SECRET if signed else None, path)

    assert response.status_code == 303
    assert installation_rows() == rows
    assert Installation.objects.get().confirmed_flow is None
    assert sent_signals.none_sent
    assert_flow_finished(client, path, confirmed=KEY_A, signed_in=False)
    assert_result(client, Installation.objects.get(), "signed_out")


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_unsigned_plain_confirmation_then_an_unsigned_flow_return(
    client: Client, sent_signals: SignalRecorder, settings: Settings, trusted: bool
) -> None:
    """Trusted, the flow return connects the plainly confirmed row; untrusted, it adds
    nothing: same row, no signal, the neutral answer, the flow kept."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = trusted
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert Client().get(return_url(urlencode({"clientKey": KEY_A}))).status_code == 200
    sent_signals.calls.clear()
    user, path = begin(client)
    rows = installation_rows()

    response = flow_return(client, KEY_A, None, path)

    assert response.status_code == 303
    row = Installation.objects.get()
    if trusted:
        assert_flow_finished(client, path, confirmed=KEY_A, signed_in=True)
        assert user is not None
        assert row.user_id == user.pk
        assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
        assert_one_installed(sent_signals, row, user, created=False, path=path)
        assert_result(client, row, "connected")
    else:
        assert installation_rows() == rows
        assert row.confirmed_flow is None
        assert sent_signals.none_sent
        assert flow_ids(client) == [flow_id_of(path)]
        assert_neutral_result(client)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_plain_return_for_a_confirmed_row_changes_nothing(
    client: Client, sent_signals: SignalRecorder, settings: Settings, signed: bool
) -> None:
    if not signed:
        unregistered(settings)
    owner_client = Client()
    _owner, path = begin(owner_client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    first = flow_return(owner_client, KEY_A, INSTALL_SECRET if signed else None, path)
    assert first.status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()
    login(client, "bob")
    query = signed_query(KEY_A, INSTALL_SECRET) if signed else urlencode({"clientKey": KEY_A})

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    assert installation_rows() == rows
    if signed:
        assert_result(client, Installation.objects.get(), "not_started_here")
    else:
        assert_neutral_result(client)
    assert sent_signals.none_sent


def test_another_flow_of_the_same_user_changes_nothing(
    client: Client, sent_signals: SignalRecorder
) -> None:
    _user, first = begin(client)
    assert flow_return(client, KEY_A, APP_SECRET, first).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()
    second = flow_path(client, "/again/")

    response = flow_return(client, KEY_A, APP_SECRET, second)

    assert response.status_code == 303
    assert response["Location"] == "/again/"
    assert installation_rows() == rows
    assert Installation.objects.get().confirmed_flow == flows.flow_hash(flow_id_of(first))
    assert sent_signals.none_sent
    assert_flow_finished(client, second, confirmed=KEY_A, next_url="/again/", signed_in=True)
    assert_result(client, Installation.objects.get(), "connected")


def test_an_anonymous_flow_for_a_row_another_flow_confirmed_is_refused(
    client: Client, sent_signals: SignalRecorder
) -> None:
    owner_client = Client()
    _owner, first = begin(owner_client)
    assert flow_return(owner_client, KEY_A, APP_SECRET, first).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()
    _nobody, path = begin(client, logged_in=False)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 400
    assert REJECTED_TEXT in response.content.decode()
    assert installation_rows() == rows
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "already_confirmed"
    assert failed["user"] is None
    assert len(sent_signals.calls) == 1
    assert_flow_finished(client, path, confirmed="", signed_in=False)


@pytest.mark.parametrize(
    ("logged_in", "signed"),
    [(True, True), (False, True), (True, False)],
    ids=["user", "anonymous", "unsigned-trusted"],
)
def test_a_repeat_with_the_same_flow_is_idempotent(
    client: Client, sent_signals: SignalRecorder, settings: Settings, logged_in: bool, signed: bool
) -> None:
    """What a concurrent identical return sees once the first one committed: the row was
    confirmed by this very flow (its hash is stored), while this request still has it."""
    if not signed:
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    user, path = begin(client, next_url="/dashboard/", logged_in=logged_in)
    row = installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.filter(pk=row.pk).update(
        confirmed_at=timezone.now(),
        confirmed_flow=flows.flow_hash(flow_id_of(path)),
        user=user,
    )
    rows = installation_rows()

    response = flow_return(client, KEY_A, INSTALL_SECRET if signed else None, path)

    assert response.status_code == 303
    assert response["Location"] == "/dashboard/"
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert_flow_finished(
        client, path, confirmed=KEY_A, next_url="/dashboard/", signed_in=logged_in
    )
    assert_result(client, Installation.objects.get(), "connected" if user else "signed_out")


def test_a_reinstall_by_the_same_user_keeps_the_connection(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user, path = begin(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert flow_return(client, KEY_A, INSTALL_SECRET, path).status_code == 303
    # Bitbucket reinstalls: the callback is signed with the stored secret.
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None
    again = flow_path(client)
    sent_signals.calls.clear()

    response = flow_return(client, KEY_A, INSTALL_SECRET, again)

    assert response.status_code == 303
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(again))
    assert_one_installed(sent_signals, row, user, created=False, path=again)


def test_a_plain_return_after_a_reinstall_keeps_the_connection_but_does_not_claim_it(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """Reinstalled by someone not logged in here: the row stays with its user, the page and
    the signal say nobody was connected by this return."""
    owner_client = Client()
    owner, path = begin(owner_client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert flow_return(owner_client, KEY_A, INSTALL_SECRET, path).status_code == 303
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    sent_signals.calls.clear()
    login(client, "bob")
    query = signed_query(KEY_A, INSTALL_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert owner is not None
    assert row.user_id == owner.pk
    assert row.confirmed_flow is None
    assert_one_installed(sent_signals, row, None, created=False, path=CALLBACK_PATH)
    assert_result(client, row, "not_started_here")


# --- where the browser goes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("success_url", "next_url", "target"),
    [
        (None, None, RESULT_PATH),
        (None, "/dashboard/?tab=bitbucket", "/dashboard/?tab=bitbucket"),
        ("/welcome/", None, "/welcome/"),
        ("https://app.example.com/welcome/", None, "https://app.example.com/welcome/"),
        ("admin:index", None, "/admin/"),
        ("/welcome/", "/dashboard/", "/dashboard/"),
    ],
    ids=["result-page", "next", "url", "absolute-url", "url-name", "next-wins"],
)
def test_success_redirect_target(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    success_url: str | None,
    next_url: str | None,
    target: str,
) -> None:
    settings.BITBUCKET_INSTALL_SUCCESS_URL = success_url
    user, path = begin(client, next_url=next_url)
    query = signed_query(KEY_A, APP_SECRET, path=path)

    response = client.get(return_url(query, path))

    assert_success_redirect(response, query, target)
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=True, path=path)
    # Wherever it goes, the result is in the session for the result page.
    assert_result(client, Installation.objects.get(), "connected")


@pytest.mark.parametrize("trust", ["signed", "unsigned-trusted"])
def test_a_confirming_flow_return_goes_to_its_flows_next(
    client: Client, sent_signals: SignalRecorder, settings: Settings, trust: str
) -> None:
    """A confirming flow return goes to its flow's ``next`` (the Decision carries it),
    signed or trusted-unsigned, before BITBUCKET_INSTALL_SUCCESS_URL."""
    secret: str | None = APP_SECRET
    if trust == "unsigned-trusted":
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
        secret = None
    settings.BITBUCKET_INSTALL_SUCCESS_URL = "/welcome/"
    user, path = begin(client, next_url="/dashboard/")

    response = flow_return(client, KEY_A, secret, path)

    assert response.status_code == 303
    assert_one_installed(
        sent_signals, Installation.objects.get(), user, created=secret is not None, path=path
    )
    assert response["Location"] == "/dashboard/"


@pytest.mark.parametrize("unsafe", ["//host/x", "/\\host", "https://evil.test/"])
def test_an_unsafe_next_given_to_the_button_is_dropped(
    client: Client, sent_signals: SignalRecorder, unsafe: str
) -> None:
    _user, path = begin(client, next_url=unsafe)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert len(sent_signals.of(installed)) == 1


# --- reloads: the back button, a double click ------------------------------------------------


def reload_url(response: TestResponse) -> str:
    """The URL (path and query) of the return that gave ``response``."""
    return response.wsgi_request.get_full_path()


def assert_answered_again(
    client: Client,
    url: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    *,
    location: str,
    connection: str,
) -> None:
    """GET the reload ``url``: the success answer again (303 to ``location``, the result of
    ``KEY_A`` with ``connection`` kept), and nothing else: no row, flow or used entry
    changed, no signal, one log line without the flow id."""
    rows, live, used = installation_rows(), flow_ids(client), used_flows(client)
    sent_signals.calls.clear()
    caplog.set_level(logging.INFO)
    caplog.clear()

    response = client.get(url)

    assert response.status_code == 303
    assert response["Location"] == location
    assert_protected(response)
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == live
    assert used_flows(client) == used
    assert app_log(caplog) == [("INFO", f"install return repeated: client_key={KEY_A}")]
    assert records_mentioning(caplog, flow_id_of(urlsplit(url).path)) == []
    assert_result(client, Installation.objects.get(client_key=KEY_A), connection)


def assert_reload_refused(
    client: Client,
    url: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    *,
    client_key: str = KEY_A,
) -> None:
    """GET the reload ``url``: the rejection page for ``flow_unknown``; no row, flow, used
    entry or kept result changed, no signal at all."""
    rows, live, used = installation_rows(), flow_ids(client), used_flows(client)
    result = client.session.get(RESULT_SESSION_KEY)
    sent_signals.calls.clear()
    caplog.set_level(logging.INFO)
    caplog.clear()

    response = client.get(url)

    assert response.status_code == 400
    assert REJECTED_TEXT in response.content.decode()
    assert_protected(response)
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == live
    assert used_flows(client) == used
    assert client.session.get(RESULT_SESSION_KEY) == result
    assert app_log(caplog) == [
        (
            "WARNING",
            f"install return rejected: reason=flow_unknown client_key={client_key} flow=False",
        )
    ]
    assert records_mentioning(caplog, flow_id_of(urlsplit(url).path)) == []


@pytest.mark.parametrize(
    "kind", ["signed", "unsigned-trusted", "unsigned-trusted-after-window", "anonymous"]
)
def test_a_reload_of_a_finished_flow_return_answers_the_same_again(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    secret: str | None = INSTALL_SECRET
    if kind.startswith("unsigned"):
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
        secret = None
    user, path = begin(client, logged_in=kind != "anonymous")
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    first = flow_return(client, KEY_A, secret, path)
    assert first.status_code == 303
    first_result = client.session[RESULT_SESSION_KEY]
    first_page = result_page(client)
    if kind.endswith("after-window"):
        Installation.objects.update(installed_at=timezone.now() - timedelta(hours=1))
    rows = installation_rows()
    url = reload_url(first)
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    caplog.clear()

    repeats = [client.get(url) for _ in range(3)]

    for response in repeats:
        assert response.status_code == 303
        assert response["Location"] == first["Location"]
        assert_protected(response)
    assert installation_rows() == rows
    assert len(sent_signals.calls) == 1  # the first return's
    assert client.session[RESULT_SESSION_KEY] == first_result
    assert result_page(client) == first_page
    assert app_log(caplog) == [("INFO", f"install return repeated: client_key={KEY_A}")] * 3
    assert Installation.objects.get().user_id == (user.pk if user else None)


@pytest.mark.parametrize(
    ("success_url", "next_url", "target"),
    [
        (None, "/dashboard/", "/dashboard/"),
        ("/welcome/", "/dashboard/", "/dashboard/"),
        ("/welcome/", None, "/welcome/"),
        (None, None, RESULT_PATH),
    ],
    ids=["next", "next-wins", "success-url", "result-page"],
)
def test_a_reload_goes_where_the_first_answer_went(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    success_url: str | None,
    next_url: str | None,
    target: str,
) -> None:
    """The flow's ``next`` is kept with its used entry: the reload goes there again (else
    to BITBUCKET_INSTALL_SUCCESS_URL, else to the result page), like the first answer."""
    settings.BITBUCKET_INSTALL_SUCCESS_URL = success_url
    _user, path = begin(client, next_url=next_url)
    first = flow_return(client, KEY_A, APP_SECRET, path)
    assert first.status_code == 303
    assert_flow_finished(client, path, confirmed=KEY_A, next_url=next_url or "", signed_in=True)

    assert_answered_again(
        client, reload_url(first), sent_signals, caplog, location=target, connection="connected"
    )
    assert first["Location"] == target


def test_a_reload_goes_to_the_next_of_the_flow_it_reloads(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Two flows of one browser confirmed the same installation: each reload goes to the
    ``next`` of its own flow."""
    _user, first_path = begin(client, next_url="/first/")
    first = flow_return(client, KEY_A, APP_SECRET, first_path)
    second_path = flow_path(client, "/second/")
    second = flow_return(client, KEY_A, APP_SECRET, second_path)
    assert second.status_code == 303

    assert_answered_again(
        client, reload_url(first), sent_signals, caplog, location="/first/", connection="connected"
    )
    assert_answered_again(
        client,
        reload_url(second),
        sent_signals,
        caplog,
        location="/second/",
        connection="connected",
    )


@pytest.mark.parametrize("kind", ["same-user-second-flow", "anonymous-after-plain"])
def test_a_reload_of_an_accepted_return_that_changed_nothing_answers_the_same_again(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    """A flow return accepted without changing the row (the same user's second flow for a
    row their first flow confirmed; an anonymous flow's signed return for a row a plain
    return confirmed) records nothing of its flow in the row; its used entry says what it
    confirmed, so its reload answers the same again."""
    if kind == "same-user-second-flow":
        _user, first = begin(client)
        assert flow_return(client, KEY_A, APP_SECRET, first).status_code == 303
        connection = "connected"
    else:
        plain = Client().get(return_url(signed_query(KEY_A, APP_SECRET)))
        assert plain.status_code == 200
        connection = "signed_out"
    confirmed_flow = Installation.objects.get().confirmed_flow
    path = flow_path(client, "/again/")
    accepted = flow_return(client, KEY_A, APP_SECRET, path)
    assert accepted.status_code == 303
    assert Installation.objects.get().confirmed_flow == confirmed_flow  # not this flow's
    assert_flow_finished(
        client, path, confirmed=KEY_A, next_url="/again/", signed_in=connection == "connected"
    )

    assert_answered_again(
        client,
        reload_url(accepted),
        sent_signals,
        caplog,
        location="/again/",
        connection=connection,
    )
    assert accepted["Location"] == "/again/"


def test_a_reload_shows_the_connection_its_flow_had(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Started signed out, reloaded after signing in: still "you were not signed in when
    you started" (the flow's), not an answer for the user signed in now."""
    _nobody, path = begin(client, logged_in=False)
    first = flow_return(client, KEY_A, APP_SECRET, path)
    assert first.status_code == 303
    assert Installation.objects.get().user_id is None
    login(client, "ada")

    assert_answered_again(
        client,
        reload_url(first),
        sent_signals,
        caplog,
        location=RESULT_PATH,
        connection="signed_out",
    )
    assert Installation.objects.get().user_id is None


def test_a_reload_without_the_authentication_middleware_answers_the_same_again(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Flows work without AuthenticationMiddleware (every flow is anonymous), and so does
    the reload: it reads no ``request.user``."""
    settings.MIDDLEWARE = [
        name for name in settings.MIDDLEWARE if not name.endswith("AuthenticationMiddleware")
    ]
    path = flow_path(client, "/dashboard/")
    first = flow_return(client, KEY_A, APP_SECRET, path)
    assert first.status_code == 303
    assert_flow_finished(client, path, confirmed=KEY_A, next_url="/dashboard/", signed_in=False)

    assert_answered_again(
        client,
        reload_url(first),
        sent_signals,
        caplog,
        location="/dashboard/",
        connection="signed_out",
    )


def test_a_reload_naming_another_client_key_is_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The used flow answers again only for the installation its return confirmed, not for
    another one, even a confirmed one."""
    _user, path = begin(client)
    assert flow_return(client, KEY_A, APP_SECRET, path).status_code == 303
    installed_via_lifecycle(KEY_B, INSTALL_SECRET)
    other = Client()
    other_path = begin(other, name="bob")[1]
    assert flow_return(other, KEY_B, INSTALL_SECRET, other_path).status_code == 303
    assert Installation.objects.get(client_key=KEY_B).confirmed_at is not None
    query = signed_query(KEY_B, INSTALL_SECRET, path=path)

    assert_reload_refused(client, return_url(query, path), sent_signals, caplog, client_key=KEY_B)
    assert client.session[RESULT_SESSION_KEY]["client_key"] == KEY_A


@pytest.mark.parametrize("who", ["same-user", "other-user", "anonymous"])
def test_a_reload_in_another_browser_is_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, who: str
) -> None:
    """Only the browser that used the flow up keeps its entry: the same URL in any other
    browser, even the same user's, is refused."""
    user, path = begin(client)
    query = signed_query(KEY_A, APP_SECRET, path=path)
    assert client.get(return_url(query, path)).status_code == 303
    other = Client()
    if who == "same-user":
        assert user is not None
        other.force_login(user)
    elif who == "other-user":
        login(other, "ada-elsewhere")
    else:
        with_session = other.session
        with_session["something"] = "else"
        with_session.save()

    assert_reload_refused(other, return_url(query, path), sent_signals, caplog)
    assert RESULT_SESSION_KEY not in other.session


@pytest.mark.parametrize("refusal", ["token-before-flow", "error", "conflict"])
def test_a_reload_of_a_flow_return_that_confirmed_nothing_is_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    """Its used entry names no clientKey: refused again, even once the installation it
    named is confirmed by another return."""
    if refusal == "conflict":
        owner = Client()
        owner_path = begin(owner, name="owner")[1]
        assert flow_return(owner, KEY_A, APP_SECRET, owner_path).status_code == 303
    _user, path = begin(client)
    if refusal == "token-before-flow":
        query = signed_query(KEY_A, APP_SECRET, path=path, now=time.time() - 300, lifetime=600)
    elif refusal == "error":
        query = urlencode({"error": "access_denied"})
    else:
        query = signed_query(KEY_A, APP_SECRET, path=path)
    first = client.get(return_url(query, path))
    assert first.status_code == (303 if refusal != "token-before-flow" else 400)
    assert_flow_finished(client, path, confirmed="", signed_in=True)
    if refusal != "conflict":
        assert Client().get(return_url(signed_query(KEY_A, APP_SECRET))).status_code == 200
    assert Installation.objects.get().confirmed_at is not None
    reload = return_url(signed_query(KEY_A, APP_SECRET, path=path), path)

    assert_reload_refused(client, reload, sent_signals, caplog)


def stored_used_flows(client: Client, entries: list[Any]) -> None:
    session = client.session
    session[flows.USED_SESSION_KEY] = entries
    session.save()


# What an earlier version kept (the bare hash), and entries of other shapes.
GARBAGE_USED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "bare-hash": lambda entry: entry["hash"],
    "hash-list": lambda entry: [entry["hash"]],
    "keyed-by-hash": lambda entry: {entry["hash"]: entry},
    "missing-field": lambda entry: {k: v for k, v in entry.items() if k != "signed_in"},
    "extra-field": lambda entry: {**entry, "user": 1},
    "hash-not-text": lambda entry: {**entry, "hash": [entry["hash"]]},
    "client-key-not-text": lambda entry: {**entry, "client_key": [entry["client_key"]]},
    "client-key-none": lambda entry: {**entry, "client_key": None},
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE_USED))
def test_a_used_entry_of_another_shape_answers_no_reload(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    garbage: str,
) -> None:
    """The session's used list holding anything but used-flow entries (an earlier
    version's, a bug's): those count for nothing; the next flow finished keeps only good
    entries."""
    _user, path = begin(client, next_url="/dashboard/")
    first = flow_return(client, KEY_A, APP_SECRET, path)
    assert first.status_code == 303
    [entry] = used_flows(client)
    stored_used_flows(client, [GARBAGE_USED[garbage](entry)])

    assert_reload_refused(client, reload_url(first), sent_signals, caplog)

    again = flow_path(client)
    assert flow_return(client, KEY_A, APP_SECRET, again).status_code == 303
    assert used_flows(client) == [used_entry(again, confirmed=KEY_A, signed_in=True)]


@pytest.mark.parametrize("next_value", [5, ["/x/"]], ids=["number", "list"])
def test_a_used_entry_whose_next_is_not_text_counts_for_nothing(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    next_value: Any,
) -> None:
    """A used entry of the right keys whose ``next`` is not text counts for nothing: its
    reload is refused as ``flow_unknown`` (it would hand that ``next`` to ``resolve_url``)."""
    _user, path = begin(client, next_url="/dashboard/")
    first = flow_return(client, KEY_A, APP_SECRET, path)
    assert first.status_code == 303
    [entry] = used_flows(client)
    stored_used_flows(client, [{**entry, "next": next_value}])

    assert_reload_refused(client, reload_url(first), sent_signals, caplog)


def test_a_used_list_of_another_shape_answers_no_reload(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    _user, path = begin(client)
    first = flow_return(client, KEY_A, APP_SECRET, path)
    [entry] = used_flows(client)
    session = client.session
    session[flows.USED_SESSION_KEY] = {"entries": [entry]}
    session.save()

    assert_reload_refused(client, reload_url(first), sent_signals, caplog)


def test_a_reload_answers_the_same_only_while_the_installation_is_confirmed(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Reinstalled and not confirmed yet, the old return's reload is refused; once a newer
    flow of this browser confirmed the installation again, it answers the same again."""
    _user, old = begin(client, next_url="/old/")
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    old_url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=old), old)
    assert client.get(old_url).status_code == 303
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None

    assert_reload_refused(client, old_url, sent_signals, caplog)

    new = flow_path(client, "/new/")
    assert flow_return(client, KEY_A, INSTALL_SECRET, new).status_code == 303
    assert Installation.objects.get().confirmed_flow == flows.flow_hash(flow_id_of(new))

    assert_answered_again(
        client, old_url, sent_signals, caplog, location="/old/", connection="connected"
    )


# --- answers that create no session ---------------------------------------------------------


def stale_cookie(client: Client) -> None:
    """A session cookie whose session the server has forgotten (expired, flushed)."""
    session = client.session
    session["something"] = "else"
    session.save()
    Session.objects.all().delete()


@pytest.mark.parametrize("cookie", ["no-cookie", "stale-cookie"])
@pytest.mark.parametrize("answer", ["success", "error", "rejection"])
def test_a_return_without_flow_or_session_creates_no_session(
    sent_signals: SignalRecorder, cookie: str, answer: str
) -> None:
    client = Client()
    if cookie == "stale-cookie":
        stale_cookie(client)
    query = {
        "success": signed_query(KEY_A, APP_SECRET),
        "error": urlencode({"error": "access_denied"}),
        "rejection": signed_query(KEY_A, "not-the-secret-of-anything"),
    }[answer]

    response = client.get(return_url(query))

    assert response.status_code == {"success": 200, "error": 200, "rejection": 400}[answer]
    assert_protected(response)
    assert not sets_session_cookie(response)
    assert session_rows() == 0
    page = response.content.decode()
    if answer == "success":
        assert "The app is installed" in page
        assert CONNECTION_TEXTS["not_started_here"] in page
        row = Installation.objects.get()
        assert row.confirmed_at is not None
        assert_one_installed(sent_signals, row, None, created=True, path=CALLBACK_PATH)
    else:
        expected = "You chose not to give" if answer == "error" else REJECTED_TEXT
        assert expected in page
        assert installation_rows() == []
        assert sent_signals.none_sent
    if "jwt=" in query:
        assert token_of(query) not in page


def test_a_return_without_flow_in_a_browser_with_a_session_keeps_the_result_there(
    client: Client, sent_signals: SignalRecorder
) -> None:
    session = client.session
    session["something"] = "else"
    session.save()
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    assert session_rows() == 1
    assert_result(client, Installation.objects.get(), "not_started_here")
    assert len(sent_signals.of(installed)) == 1


def test_a_flow_return_whose_session_the_server_forgot_is_refused_and_creates_none(
    client: Client, sent_signals: SignalRecorder
) -> None:
    _user, path = begin(client, logged_in=False)
    Session.objects.all().delete()

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 400
    assert REJECTED_TEXT in response.content.decode()
    assert_protected(response)
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert not sets_session_cookie(response)
    assert session_rows() == 0


@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_signed_cookie_sessions_get_the_changed_cookie(
    client: Client, sent_signals: SignalRecorder, settings: Settings, logged_in: bool
) -> None:
    """With signed cookies the session is its cookie, and it changes on every write: the
    return must send the new one, or the browser keeps the live flow and loses the result."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    user, path = begin(client, logged_in=logged_in, next_url="/dashboard/")
    before = client.cookies[settings.SESSION_COOKIE_NAME].value

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    assert response["Location"] == "/dashboard/"
    assert sets_session_cookie(response)
    assert response.cookies[settings.SESSION_COOKIE_NAME].value != before
    assert flow_ids(client) == []
    assert_flow_finished(
        client, path, confirmed=KEY_A, next_url="/dashboard/", signed_in=logged_in
    )
    row = Installation.objects.get()
    assert_one_installed(sent_signals, row, user, created=True, path=path)
    assert_result(client, row, "connected" if logged_in else "signed_out")
    # The reload, with the new cookie, answers the same again.
    reload = flow_return(client, KEY_A, APP_SECRET, path)
    assert reload.status_code == 303
    assert len(sent_signals.calls) == 1


@pytest.mark.parametrize("answer", ["success", "error", "rejection"])
def test_with_signed_cookies_a_cookie_this_site_did_not_sign_is_no_session(
    client: Client, sent_signals: SignalRecorder, settings: Settings, answer: str
) -> None:
    """A session cookie this site cannot read (not signed by it) loads as an empty session:
    like no session at all, a return without a flow is answered in place and gets no
    cookie (not one for a brand-new session holding its result)."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    client.cookies[settings.SESSION_COOKIE_NAME] = "not-a-cookie-this-site-signed"
    query = {
        "success": signed_query(KEY_A, APP_SECRET),
        "error": urlencode({"error": "access_denied"}),
        "rejection": signed_query(KEY_A, "not-the-secret-of-anything"),
    }[answer]

    response = client.get(return_url(query))

    assert response.status_code == {"success": 200, "error": 200, "rejection": 400}[answer]
    assert_protected(response)
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    page = response.content.decode()
    if answer == "success":
        assert CONNECTION_TEXTS["not_started_here"] in page
        assert_one_installed(
            sent_signals, Installation.objects.get(), None, created=True, path=CALLBACK_PATH
        )
    else:
        assert ("You chose not to give" if answer == "error" else REJECTED_TEXT) in page
        assert installation_rows() == []
        assert sent_signals.none_sent


def test_with_signed_cookies_a_session_holding_something_keeps_the_result(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    """A cookie this site signed, holding data: the result goes into it, and the browser
    gets the changed cookie."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    session = client.session
    session["something"] = "else"
    session.save()
    # With signed cookies the session's key is its (signed) data, the cookie to send.
    assert session.session_key is not None
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    assert sets_session_cookie(response)
    assert client.session["something"] == "else"
    assert_result(client, Installation.objects.get(), "not_started_here")
    assert len(sent_signals.calls) == 1


def test_a_stored_session_holding_nothing_is_no_session(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """A session row with nothing in it (what the browser's cookie names) counts as no
    session: the return without a flow is answered in place and stores nothing in it."""
    session = client.session
    session.save()
    assert dict(session.items()) == {}
    rows = session_rows()
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert response.status_code == 200
    assert_protected(response)
    assert CONNECTION_TEXTS["not_started_here"] in response.content.decode()
    assert not sets_session_cookie(response)
    assert session_rows() == rows
    assert RESULT_SESSION_KEY not in client.session
    assert len(sent_signals.of(installed)) == 1


# --- a base URL with a path --------------------------------------------------------------------


def test_a_flow_return_under_a_base_url_with_a_path(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    """Base URL https://app.example.com/sub/, the site under /sub/: the qsh is over the
    path relative to /sub; a token over the whole path does not verify."""
    settings.ROOT_URLCONF = "tests.sub_urls"
    settings.BITBUCKET_INSTALL_BASE_URL = "https://app.example.com/sub/"
    user = login(client, "ada")
    first = redirect_path(client.post("/sub/bitbucket/install/"))
    second = redirect_path(client.post("/sub/bitbucket/install/", {"next": "/sub/home/"}))
    first_id, second_id = flow_ids(client)
    assert first == f"/sub/bitbucket/callback/{first_id}/"
    assert second == f"/sub/bitbucket/callback/{second_id}/"

    whole = client.get(return_url(signed_query(KEY_A, APP_SECRET, path=first), first))

    assert whole.status_code == 400
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "token_qsh"
    assert installation_rows() == []
    sent_signals.calls.clear()

    relative = signed_query(KEY_A, APP_SECRET, path=second, base_path="/sub")
    response = client.get(return_url(relative, second))

    assert response.status_code == 303
    assert response["Location"] == "/sub/home/"
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.confirmed_flow == flows.flow_hash(second_id)
    assert_one_installed(sent_signals, row, user, created=True, path=second)
    assert "The app is installed" in client.get("/sub/bitbucket/result/").content.decode()


# --- markup in the clientKey ---------------------------------------------------------------


@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "plain"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_markup_in_the_client_key_is_refused_and_never_echoed(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    with_flow: bool,
    spelling: str,
) -> None:
    """Refused while parsing: no lookup, the flow untouched, no install_failed, the value
    nowhere in the page or the log."""
    path = begin(client)[1] if with_flow else CALLBACK_PATH
    live = flow_ids(client)
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    caplog.clear()
    markup = "<script>alert(1)</script>"
    query = urlencode({spelling: markup})

    response = client.get(return_url(query, path))

    assert response.status_code == 400
    assert_protected(response)
    page = response.content.decode()
    assert REJECTED_TEXT in page
    for fragment in ("<script", "&lt;script", "alert(1)", "&lt;/script"):
        assert fragment not in page
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert flow_ids(client) == live
    assert used_flow_hashes(client) == []
    assert app_log(caplog) == [
        (
            "WARNING",
            "install return rejected: reason=client_key_invalid client_key=None flow=False",
        )
    ]
    assert "alert" not in caplog.text


# --- headers on every answer -------------------------------------------------------------------


def test_every_answer_of_the_callback_and_result_is_protected(
    client: Client, settings: Settings
) -> None:
    """no-store, no-referrer and X-Frame-Options DENY on 303, 400, 503 and 200 answers."""
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    _user, path = begin(client)
    not_yet = flow_return(client, KEY_B, APP_SECRET, path)  # no secret for it yet
    assert not_yet.status_code == 503
    assert not_yet["Retry-After"] == "5"
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    confirmed = flow_return(client, KEY_A, INSTALL_SECRET, path)
    assert confirmed.status_code == 303
    rejected = client.get(return_url(urlencode({"clientKey": KEY_A})))
    assert rejected.status_code == 400
    in_place = Client().get(return_url(urlencode({"error": "access_denied"})))
    assert in_place.status_code == 200
    result = client.get(RESULT_PATH)
    assert result.status_code == 200
    for response in (not_yet, confirmed, rejected, in_place, result):
        assert_protected(response)


# --- the database goes away in the middle of the return -------------------------------------


@pytest.mark.parametrize("existing_row", [False, True], ids=["new-row", "lifecycle-row"])
def test_database_unavailable_gives_503_and_a_retry_works(
    client: Client,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    existing_row: bool,
) -> None:
    caplog.set_level(logging.INFO)
    user, path = begin(client, next_url="/dashboard/")
    secret = APP_SECRET
    if existing_row:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
        secret = INSTALL_SECRET
    sent_signals.calls.clear()
    rows = installation_rows()
    live = flow_ids(client)
    query = signed_query(KEY_A, secret, path=path)

    def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(returns, "_record", unavailable)
    response = client.get(return_url(query, path))

    assert response.status_code == 503
    assert_protected(response)
    assert "Please try again" in response.content.decode()
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == live
    assert "install return: database unavailable" in [r.getMessage() for r in caplog.records]
    assert token_of(query) not in caplog.text
    assert secret not in caplog.text
    assert records_mentioning(caplog, flow_id_of(path)) == []

    monkeypatch.undo()
    retry = client.get(return_url(query, path))

    assert_success_redirect(retry, query, "/dashboard/")
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=not existing_row, path=path)
    assert flow_ids(client) == []


def test_a_concurrent_first_insert_is_taken_over(
    client: Client, sent_signals: SignalRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IntegrityError branch: another identical return committed the row between this
    one's lookup and its insert; this one confirms that row instead of failing."""
    user, path = begin(client)
    # What the concurrent return committed; the first lookup below does not see it yet.
    Installation.objects.create(client_key=KEY_A, addon_key="example-app")
    real_select_for_update = InstallationQuerySet.select_for_update
    lookups: list[str] = []

    def racing_select_for_update(self: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append("lookup")
        if len(lookups) == 1:
            return Installation.objects.none()
        return real_select_for_update(self, *args, **kwargs)

    monkeypatch.setattr(InstallationQuerySet, "select_for_update", racing_select_for_update)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    assert len(lookups) == 2
    row = Installation.objects.get()
    assert user is not None
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert row.confirmed_flow == flows.flow_hash(flow_id_of(path))
    assert_one_installed(sent_signals, row, user, created=False, path=path)
    assert flow_ids(client) == []


# --- logs: one line per outcome, its fields; no token, secret or flow id ---------------------


@pytest.mark.parametrize(
    ("logged_in", "lifecycle_first"),
    [(True, False), (False, False), (True, True)],
    ids=["user-created", "anonymous-created", "user-existing"],
)
def test_the_accepted_line_has_its_fields(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    logged_in: bool,
    lifecycle_first: bool,
) -> None:
    user, path = begin(client, logged_in=logged_in)
    if lifecycle_first:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    secret = INSTALL_SECRET if lifecycle_first else APP_SECRET
    query = signed_query(KEY_A, secret, path=path)
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    client.get(return_url(query, path))

    user_field = user.pk if user else None
    assert app_log(caplog) == [
        (
            "INFO",
            f"install return accepted: client_key={KEY_A} created={not lifecycle_first} "
            f"signalled=True user={user_field}",
        )
    ]
    assert token_of(query) not in caplog.text
    assert INSTALL_SECRET not in caplog.text
    assert APP_SECRET not in caplog.text
    assert records_mentioning(caplog, flow_id_of(path)) == []
    assert len(sent_signals.of(installed)) == 1


def test_an_accepted_return_that_changes_nothing_says_signalled_false(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    user, first = begin(client)
    assert flow_return(client, KEY_A, APP_SECRET, first).status_code == 303
    second = flow_path(client)
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    caplog.clear()

    assert flow_return(client, KEY_A, APP_SECRET, second).status_code == 303

    assert user is not None
    assert app_log(caplog) == [
        (
            "INFO",
            f"install return accepted: client_key={KEY_A} created=False signalled=False "
            f"user={user.pk}",
        )
    ]


def the_flow_return(client: Client, settings: Settings, outcome: str, path: str) -> int:
    """Make the flow return of ``path`` come to ``outcome``; its status code."""
    if outcome == "accepted":
        return flow_return(client, KEY_A, APP_SECRET, path).status_code
    if outcome == "rejected":  # a token issued long before the flow began
        query = signed_query(KEY_A, APP_SECRET, path=path, now=time.time() - 300, lifetime=600)
        return client.get(return_url(query, path)).status_code
    if outcome == "not-yet":  # no secret to verify it with yet
        settings.BITBUCKET_INSTALL_SHARED_SECRET = None
        return flow_return(client, KEY_A, APP_SECRET, path).status_code
    if outcome == "error":
        return client.get(return_url(urlencode({"error": "access_denied"}), path)).status_code
    if outcome == "unsigned":  # unregistered app, unsigned returns not trusted
        unregistered(settings)
        return flow_return(client, KEY_A, None, path).status_code
    if outcome == "unknown-flow":  # a flow of another browser
        return flow_return(Client(), KEY_A, APP_SECRET, path).status_code
    assert outcome == "malformed"
    return client.get(return_url(urlencode({"clientKey": "<x>"}), path)).status_code


@pytest.mark.parametrize(
    ("outcome", "status", "lines"),
    [
        (
            "accepted",
            303,
            [
                (
                    "INFO",
                    f"install return accepted: client_key={KEY_A} created=True "
                    "signalled=True user=None",
                )
            ],
        ),
        (
            "rejected",
            400,
            [
                (
                    "WARNING",
                    "install return rejected: reason=token_before_flow "
                    f"client_key={KEY_A} flow=True",
                )
            ],
        ),
        (
            "not-yet",
            503,
            [
                (
                    "INFO",
                    "install return not verifiable yet: reason=unknown_installation "
                    f"client_key={KEY_A}",
                )
            ],
        ),
        ("error", 303, [("INFO", "install return with error=access_denied (flow=True)")]),
        (
            "unsigned",
            303,
            [
                (
                    "INFO",
                    f"install return without a token: client_key={KEY_A} recorded=False flow=True",
                )
            ],
        ),
        (
            "unknown-flow",
            400,
            [
                (
                    "WARNING",
                    f"install return rejected: reason=flow_unknown client_key={KEY_A} flow=False",
                )
            ],
        ),
        (
            "malformed",
            400,
            [
                (
                    "WARNING",
                    "install return rejected: reason=client_key_invalid client_key=None "
                    "flow=False",
                )
            ],
        ),
    ],
)
def test_the_flow_id_is_never_logged(
    client: Client,
    settings: Settings,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    outcome: str,
    status: int,
    lines: list[tuple[str, str]],
) -> None:
    """Not by the app, and not by Django's request logger ("Bad Request: <path>")."""
    _user, path = begin(client, logged_in=False)
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    assert the_flow_return(client, settings, outcome, path) == status

    assert app_log(caplog) == lines
    assert records_mentioning(caplog, flow_id_of(path)) == []
    assert not [r for r in caplog.records if r.name == "django.request"]


@pytest.mark.parametrize("method", ["post", "head", "options"])
def test_another_method_on_a_flow_path_logs_no_flow_id(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    """The callback answers only GET; its 405 for any other method on ``callback/<flow id>/``
    (HEAD and OPTIONS too) is logged by the app, naming the method only: Django's own line
    ("Method Not Allowed (<method>): <path>") would put the live flow's id in the log."""
    _user, path = begin(client)
    caplog.set_level(logging.DEBUG)
    caplog.clear()

    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert_protected(response)
    assert flow_ids(client) == [flow_id_of(path)]
    assert sent_signals.none_sent
    assert records_mentioning(caplog, flow_id_of(path)) == []
    assert [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"] == [
        f"install return refused: method {method.upper()} not allowed"
    ]


def test_django_logs_a_plain_rejection_as_usual(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The capture above does see Django's request log: a plain path holds no flow id."""
    caplog.set_level(logging.DEBUG)

    response = client.get(return_url(urlencode({"clientKey": "<x>"})))

    assert response.status_code == 400
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == [
        f"Bad Request: {CALLBACK_PATH}"
    ]


@pytest.mark.parametrize("then", ["signed_out", "another_user"])
def test_a_reload_after_the_account_changed_says_so(
    client: Client, sent_signals: SignalRecorder, then: str
) -> None:
    """The flow's user connected it; the same browser reloads the return signed out, or
    signed in as someone else, its session kept (Django's own login and logout flush it,
    but a project's single sign-on may only swap the session's user): the page says the
    install was another account's."""
    user, path = begin(client, logged_in=True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=path), path)
    assert client.get(url).status_code == 303
    before = installation_rows()
    sent_before = list(sent_signals.calls)
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY

    session = client.session
    if then == "signed_out":
        del session[SESSION_KEY], session[HASH_SESSION_KEY]
    else:
        bob = User.objects.create_user("bob")
        session[SESSION_KEY] = str(bob.pk)
        session[HASH_SESSION_KEY] = bob.get_session_auth_hash()
    session.save()

    reloaded = client.get(url)

    assert reloaded.status_code == 303
    assert installation_rows() == before
    assert sent_signals.calls == sent_before
    page = result_page(client)
    assert CONNECTION_TEXTS["other_account"] in page
    for other, text in CONNECTION_TEXTS.items():
        assert (text in page) is (other == "other_account"), other
    assert Installation.objects.get(client_key=KEY_A).user_id == (user.pk if user else None)
