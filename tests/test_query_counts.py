"""How many queries the callback and the lifecycle callback make, path by path.

A regression in database work (a query added to the success path, a lookup before a cheap
rejection) fails here without timing anything. Counts are pytest-django's
``django_assert_num_queries``; Django logs BEGIN, COMMIT and ROLLBACK among the queries on
every backend, so they count too, and each test also checks the statements in order (verb
and table: SQLite leaves out FOR UPDATE, the rest is the same on every database).

A flow's return (``callback/<flow id>/``) reads the session and the user (is the flow live,
and this user's?), then, in one transaction, reads the installation once under its row
lock, verifies the JWT and writes the row, then saves the session. A plain return
(``callback/``) never reads the user: it binds nobody, and reads the session only after
the commit, to keep the result (not at all for a visitor without one). A malformed return
is refused before any query, even with a flow; a return to a flow id this browser does not
have costs the session read; one whose JWT does not verify costs the lookup of the secret
and nothing else. An unsigned return (unregistered app, unsigned returns not trusted)
costs a flow's return the same reads, and writes the row only to record the confirmation
of a fresh one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoAssertNumQueries
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.tokens import encode_token
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    age_flows,
    flow_ids,
    flow_path,
    installed_via_lifecycle,
    login,
    return_url,
    signed_query,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+[`"]?(\w+)', re.IGNORECASE)
SHORT = {
    "bitbucket_install_installation": "installation",
    "django_session": "session",
    "auth_user": "user",
}

LOOKUP = ["BEGIN", "SELECT installation"]
FLOWS = ["SELECT session", "SELECT user"]  # this browser's flows, and whose they are
SAVE_SESSION = ["BEGIN", "UPDATE session", "COMMIT"]
MADE_UP_PATH = CALLBACK_PATH + "a-flow-id-nobody-was-given/"


def statements(captured: CaptureQueriesContext) -> list[str]:
    """``"VERB table"`` for each query (just the verb for BEGIN, COMMIT, ROLLBACK)."""
    summary = []
    for query in captured.captured_queries:
        sql = query["sql"]
        verb = sql.split(None, 1)[0].upper()
        match = TABLE.search(sql)
        summary.append(f"{verb} {SHORT.get(match[1], match[1])}" if match else verb)
    return summary


@contextmanager
def exactly(
    django_assert_num_queries: DjangoAssertNumQueries, expected: list[str]
) -> Iterator[None]:
    """The block makes exactly the queries ``expected`` describes, in that order."""
    with django_assert_num_queries(len(expected)) as captured:
        yield
    assert statements(captured) == expected


def flow_browser(username: str = "ada") -> tuple[Client, str]:
    """A logged-in browser that has just pressed the button, and its flow's path."""
    client = Client()
    login(client, username)
    return client, flow_path(client)


def signed_url(secret: str, path: str) -> str:
    return return_url(signed_query(KEY_A, secret, path=path), path)


# --- the callback: success ------------------------------------------------------------------


def test_first_return_with_a_flow(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    client, path = flow_browser()

    expected = [*FLOWS, *LOOKUP, "INSERT installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(signed_url(APP_SECRET, path))

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.user is not None
    assert installation.user.username == "ada"
    assert installation.confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


def test_reload_of_a_finished_flow_return(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    client, path = flow_browser()
    url = signed_url(APP_SECRET, path)
    assert client.get(url).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()

    # The flow is used up: the session's note of it and the row that flow confirmed
    # answer the same again, without a transaction; the user is read for the result.
    expected = ["SELECT session", "SELECT installation", "SELECT user", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_flow_return_of_a_known_installation_signed_with_its_secret(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, path = flow_browser()

    expected = [*FLOWS, *LOOKUP, "UPDATE installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(signed_url(INSTALL_SECRET, path))

    assert response.status_code == 303
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.user is not None
    assert installation.confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


def test_unregistered_flow_return_confirmed_by_a_fresh_install(
    django_assert_num_queries: DjangoAssertNumQueries,
    settings: Settings,
    sent_signals: SignalRecorder,
) -> None:
    """Unsigned returns not trusted: the row's confirmation recorded under its lock,
    nobody bound, the flow kept; the session is saved for the neutral result."""
    unregistered(settings)
    client, path = flow_browser()
    pending = flow_ids(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}), path)

    expected = [*FLOWS, *LOOKUP, "UPDATE installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.confirmed_at is not None
    assert installation.user_id is None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None
    assert flow_ids(client) == pending


@pytest.mark.parametrize("known", [True, False], ids=["confirmed", "unknown"])
def test_unregistered_flow_return_that_records_nothing(
    django_assert_num_queries: DjangoAssertNumQueries,
    settings: Settings,
    sent_signals: SignalRecorder,
    known: bool,
) -> None:
    """Unsigned returns not trusted, naming an unknown key or one confirmed already: the
    locked read decides, nothing is written but the session (the neutral result)."""
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, path = flow_browser()
    url = return_url(urlencode({"clientKey": KEY_A if known else "connection:4712"}), path)
    if known:
        assert client.get(url).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()

    with exactly(django_assert_num_queries, [*FLOWS, *LOOKUP, "COMMIT", *SAVE_SESSION]):
        response = client.get(url)

    assert response.status_code == 303
    assert installation_rows() == rows
    assert sent_signals.none_sent


@pytest.mark.parametrize("known", [True, False], ids=["fresh", "unknown"])
def test_unregistered_plain_return_without_a_session(
    django_assert_num_queries: DjangoAssertNumQueries,
    settings: Settings,
    sent_signals: SignalRecorder,
    known: bool,
) -> None:
    """Answered in place, no session read or written; a fresh row's confirmation is the
    one write."""
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A if known else "connection:4712"}))
    write = ["UPDATE installation"] if known else []

    with exactly(django_assert_num_queries, [*LOOKUP, *write, "COMMIT"]):
        response = Client().get(url)

    assert response.status_code == 200
    assert (Installation.objects.get().confirmed_at is not None) is known
    assert len(sent_signals.of(installed)) == (1 if known else 0)


def test_trusted_unsigned_flow_return(
    django_assert_num_queries: DjangoAssertNumQueries,
    settings: Settings,
    sent_signals: SignalRecorder,
) -> None:
    """With ``TRUST_UNSIGNED_RETURNS``: bound to the flow's user, the flow used up."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True
    client, path = flow_browser()
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}), path)

    expected = [*FLOWS, *LOOKUP, "UPDATE installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.user is not None
    assert installation.user.username == "ada"
    assert len(sent_signals.of(installed)) == 1
    assert flow_ids(client) == []


def test_plain_return_of_a_logged_in_browser(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    """No flow to look up, nobody to bind: the user is never read."""
    client = Client()
    login(client, "ada")

    expected = [*LOOKUP, "INSERT installation", "COMMIT", "SELECT session", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(signed_url(APP_SECRET, CALLBACK_PATH))

    assert response.status_code == 303
    assert Installation.objects.get(client_key=KEY_A).user is None
    assert len(sent_signals.of(installed)) == 1


def test_repeated_plain_return(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    client = Client()
    login(client, "ada")
    url = signed_url(APP_SECRET, CALLBACK_PATH)
    assert client.get(url).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()

    # Confirmed already: the locked read decides, nothing is written but the session.
    expected = [*LOOKUP, "COMMIT", "SELECT session", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_plain_return_without_a_session(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    """Answered in place: no session read, none written."""
    with exactly(django_assert_num_queries, [*LOOKUP, "INSERT installation", "COMMIT"]):
        response = Client().get(signed_url(APP_SECRET, CALLBACK_PATH))

    assert response.status_code == 200
    assert Installation.objects.get(client_key=KEY_A).confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


def test_error_returns(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    """Bitbucket's ``error=``: nothing but the flow (its own return uses it up)."""
    with exactly(django_assert_num_queries, []):
        anonymous = Client().get(return_url("error=access_denied"))
    client, path = flow_browser()
    with exactly(django_assert_num_queries, [*FLOWS, *SAVE_SESSION]):
        own = client.get(return_url("error=access_denied", path))

    assert anonymous.status_code == 200
    assert own.status_code == 303
    assert [kwargs["error"] for kwargs in sent_signals.of(install_failed)] == ["access_denied"]
    assert installation_rows() == []


# --- the callback: rejections ---------------------------------------------------------------

MALFORMED = {
    "client_key_invalid": urlencode({"clientKey": "bad key\x00"}),
    "parameter_repeated": urlencode([("clientKey", KEY_A), ("clientKey", KEY_A)]),
    "token_missing": urlencode({"clientKey": KEY_A}),
    "token_malformed": urlencode({"clientKey": KEY_A, "jwt": "not.a-token"}),
    "token_issuer": signed_query(KEY_A, APP_SECRET, iss="connection:someone-else"),
}


@pytest.mark.parametrize("where", ["anonymous", "plain-with-a-flow", "own-flow", "made-up"])
@pytest.mark.parametrize("query", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_return_makes_no_query(
    django_assert_num_queries: DjangoAssertNumQueries,
    sent_signals: SignalRecorder,
    query: str,
    where: str,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, path = (Client(), CALLBACK_PATH) if where == "anonymous" else flow_browser()
    if where == "plain-with-a-flow":
        path = CALLBACK_PATH
    elif where == "made-up":
        path = MADE_UP_PATH
    pending = flow_ids(client) if where != "anonymous" else []
    rows = installation_rows()

    with exactly(django_assert_num_queries, []):
        response = client.get(return_url(query, path))

    assert response.status_code == 400
    assert installation_rows() == rows
    assert sent_signals.none_sent
    if where != "anonymous":
        assert flow_ids(client) == pending


def test_return_to_a_flow_id_this_browser_does_not_have(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    """Refused on the session read alone: no lookup of the installation or the user."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, _ = flow_browser()
    rows = installation_rows()
    url = return_url(signed_query(KEY_A, INSTALL_SECRET, path=MADE_UP_PATH), MADE_UP_PATH)

    with exactly(django_assert_num_queries, ["SELECT session"]):
        response = client.get(url)

    assert response.status_code == 400
    assert installation_rows() == rows
    assert sent_signals.none_sent


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
def test_bad_signature_costs_the_lookup_only(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder, known: bool
) -> None:
    # Known: its own secret is tried, then the app-level one; unknown: the app-level one.
    if known:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()

    with exactly(django_assert_num_queries, [*LOOKUP, "ROLLBACK"]):
        response = Client().get(signed_url("a-wrong-secret", CALLBACK_PATH))

    assert response.status_code == 400
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_bad_signature_with_a_young_flow_writes_nothing(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    """ "Reload in a moment": the flow is kept, so the session is not written either."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, path = flow_browser()
    rows = installation_rows()

    with exactly(django_assert_num_queries, [*FLOWS, *LOOKUP, "ROLLBACK"]):
        response = client.get(signed_url("a-wrong-secret", path))

    assert response.status_code == 503
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_bad_signature_with_an_old_flow_uses_the_flow_up(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client, path = flow_browser()
    age_flows(client, 121)
    rows = installation_rows()

    with exactly(django_assert_num_queries, [*FLOWS, *LOOKUP, "ROLLBACK", *SAVE_SESSION]):
        response = client.get(signed_url("a-wrong-secret", path))

    assert response.status_code == 400
    assert installation_rows() == rows
    assert [kwargs["error"] for kwargs in sent_signals.of(install_failed)] == ["token_signature"]
    assert not sent_signals.of(installed)


# --- the lifecycle callback -----------------------------------------------------------------


def test_first_installed_callback(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)

    with exactly(django_assert_num_queries, [*LOOKUP, "INSERT installation", "COMMIT"]):
        response = post_lifecycle(Client(), "installed", body)

    assert response.status_code == 204
    assert Installation.objects.get(client_key=KEY_A).shared_secret == INSTALL_SECRET


def test_signed_reinstall(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    body = lifecycle_body(client_key=KEY_A, shared_secret="a-rotated-secret-0123")

    with exactly(django_assert_num_queries, [*LOOKUP, "UPDATE installation", "COMMIT"]):
        response = post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET)

    assert response.status_code == 204
    assert Installation.objects.get(client_key=KEY_A).shared_secret == "a-rotated-secret-0123"


def test_unsigned_retry_of_the_stored_install(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)

    with exactly(django_assert_num_queries, [*LOOKUP, "COMMIT"]):
        response = post_lifecycle(Client(), "installed", body)

    assert response.status_code == 204
    assert installation_rows() == rows


def test_reinstall_with_a_bad_signature(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()
    body = lifecycle_body(client_key=KEY_A, shared_secret="a-rotated-secret-0123")

    with exactly(django_assert_num_queries, [*LOOKUP, "ROLLBACK"]):
        response = post_lifecycle(Client(), "installed", body, secret="a-wrong-secret")

    assert response.status_code == 401
    assert installation_rows() == rows


def test_malformed_lifecycle_body_makes_no_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    token = encode_token({"iss": KEY_A}, INSTALL_SECRET)
    with exactly(django_assert_num_queries, []):
        response = post_lifecycle(Client(), "installed", b"{not json", token=token)

    assert response.status_code == 400
    assert not Installation.objects.exists()
