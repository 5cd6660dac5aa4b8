"""How many queries the callback and the lifecycle callback make, path by path (issue 7).

A regression in database work (a query added to the success path, a lookup before a cheap
rejection) fails here without timing anything. Counts are pytest-django's
``django_assert_num_queries``; Django logs BEGIN, COMMIT and ROLLBACK among the queries on
every backend, so they count too, and each test also checks the statements in order (verb
and table: SQLite leaves out FOR UPDATE, the rest is the same on every database).

The callback's success path reads the session and the user (this browser's flows), then,
in one transaction, reads the installation once under its row lock, verifies the JWT and
writes the row, then saves the session. A malformed return is refused before any query;
a return whose JWT does not verify costs the lookup of the secret and nothing else.
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
    installed_via_lifecycle,
    login,
    return_url,
    signed_query,
    start_flow,
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


# --- the callback: success ------------------------------------------------------------------


def test_first_return_with_a_flow(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    client = Client()
    login(client, "ada")
    start_flow(client)
    url = return_url(signed_query(KEY_A, APP_SECRET))

    expected = [*FLOWS, *LOOKUP, "INSERT installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.user is not None
    assert installation.user.username == "ada"
    assert installation.confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


def test_repeated_return(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    client = Client()
    login(client, "ada")
    start_flow(client)
    url = return_url(signed_query(KEY_A, APP_SECRET))
    assert client.get(url).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()

    # Confirmed already: the locked read decides, nothing is written but the session.
    # (The flow is used up, so the user is read only for the result, after the commit.)
    expected = ["SELECT session", *LOOKUP, "COMMIT", "SELECT user", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_return_of_a_known_installation_signed_with_its_secret(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client = Client()
    login(client, "ada")
    start_flow(client)
    url = return_url(signed_query(KEY_A, INSTALL_SECRET))

    expected = [*FLOWS, *LOOKUP, "UPDATE installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    installation = Installation.objects.get(client_key=KEY_A)
    assert installation.user is not None
    assert installation.confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


def test_unregistered_return_confirmed_by_a_fresh_install(
    django_assert_num_queries: DjangoAssertNumQueries,
    settings: Settings,
    sent_signals: SignalRecorder,
) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    start_flow(client)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    url = return_url(urlencode({"clientKey": KEY_A}))

    expected = [*FLOWS, *LOOKUP, "UPDATE installation", "COMMIT", *SAVE_SESSION]
    with exactly(django_assert_num_queries, expected):
        response = client.get(url)

    assert response.status_code == 303
    assert Installation.objects.get(client_key=KEY_A).confirmed_at is not None
    assert len(sent_signals.of(installed)) == 1


# --- the callback: rejections ---------------------------------------------------------------

MALFORMED = {
    "client_key_invalid": urlencode({"clientKey": "bad key\x00"}),
    "parameter_repeated": urlencode([("clientKey", KEY_A), ("clientKey", KEY_A)]),
    "token_missing": urlencode({"clientKey": KEY_A}),
    "token_malformed": urlencode({"clientKey": KEY_A, "jwt": "not.a-token"}),
    "token_issuer": signed_query(KEY_A, APP_SECRET, iss="connection:someone-else"),
}


@pytest.mark.parametrize("with_flow", [False, True], ids=["anonymous", "with-flow"])
@pytest.mark.parametrize("query", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_return_makes_no_query(
    django_assert_num_queries: DjangoAssertNumQueries,
    sent_signals: SignalRecorder,
    query: str,
    with_flow: bool,
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client = Client()
    if with_flow:
        login(client, "ada")
        start_flow(client)
    rows = installation_rows()

    with exactly(django_assert_num_queries, []):
        response = client.get(CALLBACK_PATH + "?" + query)

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
    url = return_url(signed_query(KEY_A, "a-wrong-secret"))

    with exactly(django_assert_num_queries, [*LOOKUP, "ROLLBACK"]):
        response = Client().get(url)

    assert response.status_code == 400
    assert installation_rows() == rows
    assert sent_signals.none_sent


def test_bad_signature_with_a_flow_uses_the_flow_up(
    django_assert_num_queries: DjangoAssertNumQueries, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client = Client()
    login(client, "ada")
    start_flow(client)
    rows = installation_rows()
    url = return_url(signed_query(KEY_A, "a-wrong-secret"))

    with exactly(django_assert_num_queries, [*FLOWS, *LOOKUP, "ROLLBACK", *SAVE_SESSION]):
        response = client.get(url)

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
