"""Bitbucket's error returns and the result page: one message per known code, a generic
one for others, the code and the description cleaned, ``install_failed`` only for the flow
the return names, the conflict page, ``BITBUCKET_INSTALL_FAILURE_URL``, answers in place
for browsers without a session, and every page rendered with the request."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install import returns, views
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    START_PATH,
    app_log,
    assert_protected,
    flow_id_of,
    flow_ids,
    flow_path,
    flow_return,
    installed_via_lifecycle,
    login,
    return_url,
    session_rows,
    sets_session_cookie,
    signed_query,
    token_of,
    used_entry,
    used_flow_hashes,
    used_flows,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

MESSAGES = {
    "access_denied": "You chose not to give the app access, so nothing was installed.",
    "invalid_descriptor": "Bitbucket could not read the app&#x27;s description.",
    "invalid_request": "Bitbucket could not follow the install link.",
    "server_error": "Bitbucket ran into a problem. Nothing was installed; please try again later.",
}
GENERIC = "Bitbucket did not install the app. Please try again."
CONFLICT = "already connected to another account on this site"
CONFLICT_HEADING = "Connected to another account"
REJECTED = "This install could not be confirmed"
FAILED_HEADING = "The app was not installed"


def error_return(client: Client, path: str, **params: str) -> str:
    """GET the return ``path`` with ``params``; check the 303 and give the result page."""
    response = client.get(return_url(urlencode(params), path))
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert_protected(response)
    page = client.get(RESULT_PATH)
    assert page.status_code == 200
    assert_protected(page)
    body = page.content.decode()
    assert FAILED_HEADING in body
    return body


def anonymous_flow(client: Client, next_url: str | None = None) -> str:
    """An anonymous flow in ``client``'s session; the path its return comes back to."""
    return flow_path(client, next_url)


def with_session(client: Client) -> None:
    """Give ``client`` a stored session that holds no flow."""
    session = client.session
    session["something"] = "else"
    session.save()


def assert_install_failed(
    sent_signals: SignalRecorder,
    *,
    user: User | None,
    error: str,
    error_description: str,
    path: str,
) -> None:
    """Exactly one signal, ``install_failed``, with these arguments."""
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(install_failed)
    assert set(kwargs) == {"sender", "request", "user", "error", "error_description"}
    assert kwargs["sender"] is Installation
    assert kwargs["request"].path == path
    assert kwargs["error"] == error
    assert kwargs["error_description"] == error_description
    if user is None:
        assert kwargs["user"] is None  # not AnonymousUser
    else:
        assert isinstance(kwargs["user"], User)
        assert kwargs["user"].pk == user.pk


# --- the messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_each_known_error_code_has_its_own_message(
    client: Client, sent_signals: SignalRecorder, code: str
) -> None:
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = installation_rows()
    path = anonymous_flow(client)

    body = error_return(client, path, error=code)

    assert MESSAGES[code] in body
    for other, message in MESSAGES.items():
        if other != code:
            assert message not in body
    assert GENERIC not in body
    assert "Bitbucket said:" not in body
    assert installation_rows() == rows
    assert_install_failed(sent_signals, user=None, error=code, error_description="", path=path)


@pytest.mark.parametrize(
    ("raw", "cleaned", "message"),
    [
        ("temporarily_unavailable", "temporarily_unavailable", GENERIC),
        ("  ACCESS_DENIED ", "access_denied", MESSAGES["access_denied"]),
        ("Server_Error", "server_error", MESSAGES["server_error"]),
        ("a" * 64, "a" * 64, GENERIC),
        ("a" * 65, "unknown_error", GENERIC),
        ("", "unknown_error", GENERIC),
        ("access denied", "unknown_error", GENERIC),
        ("access_denied\x00", "unknown_error", GENERIC),
        ("<script>", "unknown_error", GENERIC),
        ("a.b-c_9", "a.b-c_9", GENERIC),
    ],
    ids=[
        "unknown",
        "padded-upper",
        "mixed-case",
        "64-chars",
        "65-chars",
        "empty",
        "space",
        "nul",
        "markup",
        "allowed-punctuation",
    ],
)
def test_error_codes_are_cleaned(
    client: Client, sent_signals: SignalRecorder, raw: str, cleaned: str, message: str
) -> None:
    path = anonymous_flow(client)

    body = error_return(client, path, error=raw)

    assert message in body
    assert client.session[views.RESULT_SESSION_KEY] == {
        "ok": False,
        "error": cleaned,
        "error_description": "",
    }
    assert_install_failed(sent_signals, user=None, error=cleaned, error_description="", path=path)
    assert "&lt;script" not in body


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a" * 300, "a" * 300),
        ("a" * 301, "a" * 300),
        ("\u202e" + "a" * 300, "a" * 300),  # cleaned first, then cut
        ("line1\nline2\x00\x1b[31m\u202eend\u200b\u2028x\u00a0y", "line1line2[31mendx y"),
        ("\u2066gnp.exe\u2069", "gnp.exe"),
    ],
    ids=["300-chars", "301-chars", "bidi-then-300", "controls-and-bidi", "isolates"],
)
def test_error_description_is_cleaned_and_cut(
    client: Client, sent_signals: SignalRecorder, raw: str, cleaned: str
) -> None:
    path = anonymous_flow(client)

    body = error_return(client, path, error="server_error", error_description=raw)

    assert f"Bitbucket said: <q>{cleaned}</q>" in body
    assert client.session[views.RESULT_SESSION_KEY]["error_description"] == cleaned
    assert_install_failed(
        sent_signals, user=None, error="server_error", error_description=cleaned, path=path
    )


def test_error_description_is_escaped(client: Client, sent_signals: SignalRecorder) -> None:
    path = anonymous_flow(client)
    description = "<b>&\"'" + "a" * 400

    body = error_return(client, path, error="server_error", error_description=description)

    assert "&lt;b&gt;&amp;&quot;&#x27;" + "a" * 294 + "</q>" in body
    assert "a" * 295 not in body
    assert "<b>" not in body
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error_description"] == description[:300]


# --- install_failed: only for the flow the return names ---------------------------------------


@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_install_failed_is_sent_for_the_flow_of_the_return(
    client: Client, sent_signals: SignalRecorder, logged_in: bool
) -> None:
    user = login(client, "ada") if logged_in else None
    path = flow_path(client, "/dashboard/")
    other = flow_path(client)
    rows = installation_rows()

    body = error_return(client, path, error="access_denied", error_description="You said no.")

    assert MESSAGES["access_denied"] in body
    assert "Bitbucket said: <q>You said no.</q>" in body
    assert_install_failed(
        sent_signals,
        user=user,
        error="access_denied",
        error_description="You said no.",
        path=path,
    )
    # Used up (the next return cannot use it), remembered by its hash; the other flow lives.
    assert flow_ids(client) == [flow_id_of(other)]
    assert used_flows(client) == [used_entry(path, next_url="/dashboard/", signed_in=logged_in)]
    assert used_flow_hashes(client) == [flows.flow_hash(flow_id_of(path))]
    assert installation_rows() == rows


def test_a_plain_error_return_sends_nothing_and_touches_no_flow(
    client: Client, sent_signals: SignalRecorder
) -> None:
    login(client, "ada")
    flow_path(client)
    live = flow_ids(client)

    body = error_return(client, CALLBACK_PATH, error="server_error", error_description="Oops")

    assert MESSAGES["server_error"] in body
    assert sent_signals.none_sent
    assert flow_ids(client) == live
    assert used_flow_hashes(client) == []


def test_an_error_return_naming_another_browsers_flow_is_refused(
    client: Client, sent_signals: SignalRecorder
) -> None:
    other = Client()
    login(other, "ada")
    path = flow_path(other)

    response = client.get(return_url(urlencode({"error": "access_denied"}), path))

    assert response.status_code == 400
    assert REJECTED in response.content.decode()
    assert_protected(response)
    assert sent_signals.none_sent
    assert flow_ids(other) == [flow_id_of(path)]
    assert not sets_session_cookie(response)


def test_a_reloaded_error_return_is_refused(client: Client, sent_signals: SignalRecorder) -> None:
    """Only a confirmation is answered again; the flow of an error return is used up."""
    path = anonymous_flow(client)
    error_return(client, path, error="access_denied")
    sent_signals.calls.clear()

    response = client.get(return_url(urlencode({"error": "access_denied"}), path))

    assert response.status_code == 400
    assert sent_signals.none_sent


def test_flow_next_is_not_used_for_a_failure(client: Client, sent_signals: SignalRecorder) -> None:
    path = anonymous_flow(client, "/dashboard/")
    response = client.get(return_url(urlencode({"error": "access_denied"}), path))
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
@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "plain"])
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
        path = anonymous_flow(client, "/dashboard/")
    else:
        path = CALLBACK_PATH
        with_session(client)
    query = urlencode({"error": "access_denied", "error_description": "No", "jwt": "eyJ.x.y"})

    response = client.get(return_url(query, path))

    assert response.status_code == 303
    assert response["Location"] == target
    assert "jwt" not in response["Location"]
    assert_protected(response)
    assert len(sent_signals.of(install_failed)) == (1 if with_flow else 0)
    assert len(sent_signals.calls) == (1 if with_flow else 0)
    # The project's page can still link to the result page.
    assert MESSAGES["access_denied"] in client.get(RESULT_PATH).content.decode()


@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "plain"])
def test_an_error_return_logs_one_line(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    with_flow: bool,
) -> None:
    if with_flow:
        path = anonymous_flow(client)
    else:
        path = CALLBACK_PATH
        with_session(client)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    error_return(client, path, error="access_denied", error_description="secret\nstuff")

    assert app_log(caplog) == [
        ("INFO", f"install return with error=access_denied (flow={with_flow})")
    ]
    assert "secret" not in caplog.text
    assert len(sent_signals.of(install_failed)) == (1 if with_flow else 0)


# --- answered in place: a browser without a session ----------------------------------------


@pytest.mark.parametrize("failure_url", [None, "/sorry/"])
def test_an_anonymous_plain_error_return_is_shown_in_place(
    sent_signals: SignalRecorder, settings: Settings, failure_url: str | None
) -> None:
    settings.BITBUCKET_INSTALL_FAILURE_URL = failure_url
    client = Client()
    query = urlencode({"error": "access_denied", "error_description": "<i>No</i>"})

    response = client.get(return_url(query))

    assert response.status_code == 200
    assert_protected(response)
    body = response.content.decode()
    assert FAILED_HEADING in body
    assert MESSAGES["access_denied"] in body
    assert "Bitbucket said: <q>&lt;i&gt;No&lt;/i&gt;</q>" in body
    assert not sets_session_cookie(response)
    assert session_rows() == 0
    assert sent_signals.none_sent
    assert client.get(RESULT_PATH).status_code == 404


# --- the conflict: connected to another account --------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failure_url", [None, "/sorry/"])
def test_a_return_connecting_another_users_installation_is_a_conflict(
    client: Client, sent_signals: SignalRecorder, settings: Settings, failure_url: str | None
) -> None:
    """Genuine, but the row is connected to another account of this site: the failure page
    with its own message, install_failed with that error, the flow used up, no change."""
    settings.BITBUCKET_INSTALL_FAILURE_URL = failure_url
    owner_client = Client()
    login(owner_client, "owner")
    owner_path = flow_path(owner_client)
    assert flow_return(owner_client, KEY_A, APP_SECRET, owner_path).status_code == 303
    rows = installation_rows()
    sent_signals.calls.clear()
    user = login(client, "bob")
    path = flow_path(client, "/dashboard/")

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    assert response["Location"] == (failure_url or RESULT_PATH)
    assert_protected(response)
    assert installation_rows() == rows
    assert_install_failed(
        sent_signals,
        user=user,
        error="connected_to_another_user",
        error_description="",
        path=path,
    )
    assert not sent_signals.of(installed)
    assert flow_ids(client) == []
    # Nothing confirmed: a reload of this return finds nothing to show again.
    assert used_flows(client) == [used_entry(path, next_url="/dashboard/", signed_in=True)]
    assert client.session[views.RESULT_SESSION_KEY] == {
        "ok": False,
        "error": "connected_to_another_user",
        "error_description": "",
    }
    body = client.get(RESULT_PATH).content.decode()
    assert CONFLICT_HEADING in body
    assert FAILED_HEADING not in body
    assert CONFLICT in body
    assert GENERIC not in body
    assert REJECTED not in body


# --- the result page itself ---------------------------------------------------------------


def test_result_page_without_a_result_is_404(client: Client) -> None:
    """A page that says so and leads back, protected like every answer of the app."""
    response = client.get(RESULT_PATH)
    assert response.status_code == 404
    assert_protected(response)
    body = response.content.decode()
    assert "No install to show" in body
    assert 'id="start-link"' in body


@pytest.mark.parametrize("stored", [["ok"], "ok", 1, None])
def test_result_page_ignores_garbage_in_the_session(client: Client, stored: object) -> None:
    session = client.session
    session[views.RESULT_SESSION_KEY] = stored
    session.save()
    assert client.get(RESULT_PATH).status_code == 404


def test_result_page_only_allows_get(client: Client) -> None:
    error_return(client, anonymous_flow(client), error="access_denied")
    assert client.post(RESULT_PATH).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_result_page_after_a_return_that_created_the_row(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """No lifecycle callback yet, so no workspace name to show."""
    path = anonymous_flow(client)
    query = signed_query(KEY_A, APP_SECRET, path=path)
    assert client.get(return_url(query, path)).status_code == 303

    page = client.get(RESULT_PATH)

    assert page.status_code == 200
    assert_protected(page)
    body = page.content.decode()
    assert "The app is installed" in body
    assert "It is installed on" not in body
    assert "You were not signed in when you started the install" in body
    assert token_of(query) not in body
    assert KEY_A not in body
    assert len(sent_signals.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_result_page_is_per_browser(client: Client, sent_signals: SignalRecorder) -> None:
    login(client, "ada")
    path = flow_path(client)
    assert flow_return(client, KEY_A, APP_SECRET, path).status_code == 303
    assert "connected to your account" in client.get(RESULT_PATH).content.decode()
    assert Client().get(RESULT_PATH).status_code == 404
    assert len(sent_signals.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_a_later_error_replaces_an_earlier_success(
    client: Client, sent_signals: SignalRecorder
) -> None:
    path = anonymous_flow(client)
    assert flow_return(client, KEY_A, APP_SECRET, path).status_code == 303
    body = error_return(client, CALLBACK_PATH, error="access_denied")
    assert "The app is installed" not in body
    assert MESSAGES["access_denied"] in body
    assert len(sent_signals.calls) == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", RESULT_PATH, 404),
        ("post", RESULT_PATH, 405),
        ("post", CALLBACK_PATH, 405),
        ("post", CALLBACK_PATH + "some-flow-id/", 405),
        ("put", START_PATH, 405),
    ],
    ids=[
        "result-without-result",
        "post-result",
        "post-callback",
        "post-flow-callback",
        "put-start",
    ],
)
def test_the_refusals_of_the_views_are_protected(method: str, path: str, status: int) -> None:
    """Every answer of start, callback and result carries no-store, no-referrer and
    X-Frame-Options DENY: the result page's 404 and Django's own 405s too. (Only the
    start page's GET, which holds the button's form, is same-origin.)"""
    response = getattr(Client(), method)(path)
    assert response.status_code == status
    assert_protected(response)


# --- every page is rendered with the request -------------------------------------------------


@pytest.fixture
def base_using_request(settings: Settings, tmp_path: Path) -> None:
    """A project's base.html that uses ``request`` (a menu, the user's name)."""
    folder = tmp_path / "bitbucket_install"
    folder.mkdir()
    (folder / "base.html").write_text(
        '<p id="where">path={{ request.path }} user={{ request.user.username }}</p>\n'
        "{% block content %}{% endblock %}\n"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]


def rendered_with_request(response: TestResponse, path: str, username: str) -> str:
    body: str = response.content.decode()
    assert f'<p id="where">path={path} user={username}</p>' in body
    return body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("base_using_request")
def test_every_page_is_rendered_with_the_request(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(client, "ada")
    assert "Connect" in rendered_with_request(client.get(START_PATH), START_PATH, "ada")
    # The result page before any return: the page that says there is nothing to show.
    nothing = client.get(RESULT_PATH)
    assert nothing.status_code == 404
    rendered_with_request(nothing, RESULT_PATH, "ada")

    # Not yet (no secret to verify with), then the database unavailable: both 503 pages.
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    path = flow_path(client)
    not_yet = flow_return(client, KEY_A, APP_SECRET, path)
    assert not_yet.status_code == 503
    rendered_with_request(not_yet, path, "ada")

    def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("could not connect to server")

    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    monkeypatch.setattr(returns, "_record", unavailable)
    down = flow_return(client, KEY_A, INSTALL_SECRET, path)
    assert down.status_code == 503
    rendered_with_request(down, path, "ada")
    monkeypatch.undo()

    # Success and failure on the result page.
    assert flow_return(client, KEY_A, INSTALL_SECRET, path).status_code == 303
    success = client.get(RESULT_PATH)
    assert "The app is installed" in rendered_with_request(success, RESULT_PATH, "ada")
    assert client.get(return_url(urlencode({"error": "access_denied"}))).status_code == 303
    failure = client.get(RESULT_PATH)
    assert MESSAGES["access_denied"] in rendered_with_request(failure, RESULT_PATH, "ada")

    # The rejection page.
    rejected = client.get(return_url(urlencode({"clientKey": KEY_A})))
    assert rejected.status_code == 400
    assert REJECTED in rendered_with_request(rejected, CALLBACK_PATH, "ada")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("base_using_request")
def test_the_pages_answered_in_place_are_rendered_with_the_request() -> None:
    success = Client().get(return_url(signed_query(KEY_A, APP_SECRET)))
    assert success.status_code == 200
    assert "The app is installed" in rendered_with_request(success, CALLBACK_PATH, "")
    failure = Client().get(return_url(urlencode({"error": "access_denied"})))
    assert failure.status_code == 200
    assert MESSAGES["access_denied"] in rendered_with_request(failure, CALLBACK_PATH, "")
