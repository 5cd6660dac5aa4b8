"""Bitbucket's error returns and the result page (issue 4): one message per known code, a
generic one for others, the description escaped and cut, ``install_failed`` only for a
flow of this browser, ``BITBUCKET_INSTALL_FAILURE_URL``."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import views
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    flow_ids,
    installed_via_lifecycle,
    login,
    return_url,
    signed_query,
    start_flow,
    token_of,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db

MESSAGES = {
    "access_denied": "You chose not to give the app access, so nothing was installed.",
    "invalid_descriptor": "Bitbucket could not read the app&#x27;s description.",
    "invalid_request": "Bitbucket could not follow the install link.",
    "server_error": "Bitbucket ran into a problem. Nothing was installed; please try again later.",
}
GENERIC = "Bitbucket did not install the app. Please try again."
FAILED_HEADING = "The app was not installed"


def error_return(client: Client, **params: str) -> str:
    """GET the callback with ``params``; check the 303 and return the result page."""
    response = client.get(return_url(urlencode(params)))
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    page = client.get(RESULT_PATH)
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    body = page.content.decode()
    assert FAILED_HEADING in body
    return body


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_each_known_error_code_has_its_own_message(
    client: Client, sent_signals: SignalRecorder, code: str
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()

    body = error_return(client, error=code)

    assert MESSAGES[code] in body
    for other, message in MESSAGES.items():
        if other != code:
            assert message not in body
    assert GENERIC not in body
    assert "Bitbucket said:" not in body
    assert installation_rows() == rows
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("temporarily_unavailable", GENERIC),
        ("  ACCESS_DENIED ", MESSAGES["access_denied"]),
        ("Server_Error", MESSAGES["server_error"]),
        ("x" * 65, GENERIC),
        ("", GENERIC),
        ("access denied", GENERIC),
        ("access_denied\x00", GENERIC),
    ],
    ids=["unknown", "padded-upper", "mixed-case", "too-long", "empty", "space", "nul"],
)
def test_unknown_or_odd_codes(
    client: Client, sent_signals: SignalRecorder, raw: str, message: str
) -> None:
    body = error_return(client, error=raw)
    assert message in body
    assert sent_signals.none_sent


@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_install_failed_is_sent_for_a_flow_of_this_browser(
    client: Client, sent_signals: SignalRecorder, logged_in: bool
) -> None:
    user = login(client, "ada") if logged_in else None
    start_flow(client, "/dashboard/")
    rows = installation_rows()

    body = error_return(client, error="access_denied", error_description="You said no.")

    assert MESSAGES["access_denied"] in body
    assert "Bitbucket said: <q>You said no.</q>" in body
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(install_failed)
    assert set(kwargs) == {"sender", "request", "user", "error", "error_description"}
    assert kwargs["sender"] is Installation
    assert kwargs["request"].path == CALLBACK_PATH
    assert kwargs["error"] == "access_denied"
    assert kwargs["error_description"] == "You said no."
    if user is None:
        assert kwargs["user"] is None
    else:
        assert kwargs["user"].pk == user.pk
    assert flow_ids(client) == []  # used up: the next return cannot use it
    assert installation_rows() == rows


def test_unknown_code_is_sent_cleaned(client: Client, sent_signals: SignalRecorder) -> None:
    start_flow(client)
    error_return(client, error=" Temporarily_Unavailable ")
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error"] == "temporarily_unavailable"


def test_no_install_failed_without_a_flow(client: Client, sent_signals: SignalRecorder) -> None:
    login(client, "ada")  # logged in, but this browser started nothing
    error_return(client, error="server_error", error_description="Oops")
    assert sent_signals.none_sent


def test_a_flow_of_another_browser_does_not_count(
    client: Client, sent_signals: SignalRecorder
) -> None:
    other = Client()
    login(other, "ada")
    start_flow(other)
    error_return(client, error="access_denied")
    assert sent_signals.none_sent
    assert len(flow_ids(other)) == 1


def test_error_description_is_escaped_and_cut_to_300_characters(
    client: Client, sent_signals: SignalRecorder
) -> None:
    start_flow(client)
    description = "<b>&\"'" + "a" * 400

    body = error_return(client, error="server_error", error_description=description)

    assert "&lt;b&gt;&amp;&quot;&#x27;" + "a" * 294 + "</q>" in body
    assert "a" * 295 not in body
    assert "<b>" not in body
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error_description"] == description[:300]


def test_control_characters_are_dropped_from_the_description(
    client: Client, sent_signals: SignalRecorder
) -> None:
    start_flow(client)
    body = error_return(
        client, error="server_error", error_description="line1\nline2\x00\x1b[31m\u202eend"
    )
    assert "<q>line1line2[31mend</q>" in body
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error_description"] == "line1line2[31mend"


def test_flow_next_is_not_used_for_a_failure(client: Client, sent_signals: SignalRecorder) -> None:
    start_flow(client, "/dashboard/")
    response = client.get(return_url(urlencode({"error": "access_denied"})))
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert len(sent_signals.of(install_failed)) == 1


@pytest.mark.parametrize(
    ("failure_url", "target"),
    [
        ("/sorry/", "/sorry/"),
        ("https://app.example.com/sorry/", "https://app.example.com/sorry/"),
        ("admin:index", "/admin/"),
    ],
    ids=["url", "absolute-url", "url-name"],
)
@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "no-flow"])
def test_failure_url(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    failure_url: str,
    target: str,
    with_flow: bool,
) -> None:
    settings.BITBUCKET_INSTALL_FAILURE_URL = failure_url
    if with_flow:
        start_flow(client, "/dashboard/")
    query = urlencode({"error": "access_denied", "error_description": "No", "jwt": "eyJ.x.y"})

    response = client.get(return_url(query))

    assert response.status_code == 303
    assert response["Location"] == target
    assert "jwt" not in response["Location"]
    assert response["Cache-Control"] == "no-store"
    assert len(sent_signals.of(install_failed)) == (1 if with_flow else 0)
    assert len(sent_signals.calls) == (1 if with_flow else 0)
    # The project's page can still link to the result page.
    assert MESSAGES["access_denied"] in client.get(RESULT_PATH).content.decode()


def test_an_error_return_logs_one_line(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    start_flow(client)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    error_return(client, error="access_denied", error_description="secret\nstuff")

    lines = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    assert lines == ["install return with error=access_denied (flow=True)"]
    assert len(sent_signals.of(install_failed)) == 1


# The result page itself.


def test_result_page_without_a_result_is_404(client: Client) -> None:
    assert client.get(RESULT_PATH).status_code == 404


@pytest.mark.parametrize("stored", [["ok"], "ok", 1, None])
def test_result_page_ignores_garbage_in_the_session(client: Client, stored: object) -> None:
    session = client.session
    session[views.RESULT_SESSION_KEY] = stored
    session.save()
    assert client.get(RESULT_PATH).status_code == 404


def test_result_page_only_allows_get(client: Client) -> None:
    client.get(return_url(urlencode({"error": "access_denied"})))
    assert client.post(RESULT_PATH).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_result_page_after_a_return_that_created_the_row(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """No lifecycle callback yet, so no workspace name to show."""
    query = signed_query(KEY_A, APP_SECRET)
    assert client.get(return_url(query)).status_code == 303

    page = client.get(RESULT_PATH)

    assert page.status_code == 200
    body = page.content.decode()
    assert "The app is installed" in body
    assert "It is installed on" not in body
    assert "not connected to an account on this site" in body
    assert token_of(query) not in body
    assert KEY_A not in body
    assert len(sent_signals.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_result_page_is_per_browser(client: Client, sent_signals: SignalRecorder) -> None:
    login(client, "ada")
    start_flow(client)
    assert client.get(return_url(signed_query(KEY_A, APP_SECRET))).status_code == 303
    assert "connected to your account" in client.get(RESULT_PATH).content.decode()
    assert Client().get(RESULT_PATH).status_code == 404
    assert len(sent_signals.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_a_later_error_replaces_an_earlier_success(
    client: Client, sent_signals: SignalRecorder
) -> None:
    assert client.get(return_url(signed_query(KEY_A, APP_SECRET))).status_code == 303
    body = error_return(client, error="access_denied")
    assert "The app is installed" not in body
    assert MESSAGES["access_denied"] in body
    assert len(sent_signals.calls) == 1
