"""The return trip's success paths (issue 4): each way a clientKey is trusted, with and
without a flow, both spellings; the row, the connected user, exactly one ``installed``
signal, the 303 target, the headers; repeats; the database being unavailable."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.http.response import HttpResponseBase
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from bitbucket_install.views import CallbackView
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
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

SPELLINGS = ["clientKey", "client_key"]
CONNECTED_TEXT = "The installation is connected to your account on this site."
NOT_CONNECTED_TEXT = "The installation is not connected to an account on this site"


def assert_protected(response: HttpResponseBase) -> None:
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"


def assert_success_redirect(response: HttpResponseBase, query: str, target: str) -> None:
    """A 303 to ``target`` that carries nothing of the return trip's query."""
    assert response.status_code == 303
    assert response["Location"] == target
    assert "jwt" not in response["Location"]
    assert "clientKey" not in response["Location"]
    assert "client_key" not in response["Location"]
    if "jwt=" in query:
        assert token_of(query) not in response["Location"]
    assert_protected(response)


def assert_one_installed(
    sent_signals: SignalRecorder,
    installation: Installation,
    user: User | None,
    *,
    created: bool,
) -> None:
    """Exactly one signal in all, ``installed``, with the documented arguments."""
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(installed)
    assert set(kwargs) == {"sender", "installation", "request", "user", "created"}
    assert kwargs["sender"] is Installation
    assert kwargs["installation"].pk == installation.pk
    assert kwargs["installation"].client_key == installation.client_key
    assert kwargs["request"].path == CALLBACK_PATH
    assert kwargs["created"] is created
    if user is None:
        assert kwargs["user"] is None
    else:
        assert kwargs["user"].pk == user.pk


def result_page(client: Client) -> str:
    response = client.get(RESULT_PATH)
    assert response.status_code == 200
    assert_protected(response)
    return response.content.decode()


def logged_in_with_flow(client: Client, with_flow: bool, next_url: str | None = None) -> Any:
    """The user the return should connect (or None), after starting a flow if asked."""
    if not with_flow:
        return None
    user = login(client, "ada")
    start_flow(client, next_url)
    return user


# Registered app, JWT signed with the app-level secret: the return creates the row.


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "no-flow"])
def test_registered_app_level_secret_creates_the_installation(
    client: Client, sent_signals: SignalRecorder, spelling: str, with_flow: bool
) -> None:
    user = logged_in_with_flow(client, with_flow)
    query = signed_query(KEY_A, APP_SECRET, spelling=spelling)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    [row] = Installation.objects.all()
    assert row.client_key == KEY_A
    assert row.addon_key == "example-app"
    assert row.shared_secret == ""
    assert row.confirmed_at is not None
    assert row.user_id == (user.pk if user else None)
    assert_one_installed(sent_signals, row, user, created=True)
    assert flow_ids(client) == []
    page = result_page(client)
    assert "The app is installed" in page
    assert (CONNECTED_TEXT if user else NOT_CONNECTED_TEXT) in page


# Registered app, JWT signed with the installation's secret from the lifecycle callback.


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "no-flow"])
def test_registered_installation_secret_confirms_the_lifecycle_row(
    client: Client, sent_signals: SignalRecorder, spelling: str, with_flow: bool
) -> None:
    user = logged_in_with_flow(client, with_flow)
    stored = installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = signed_query(KEY_A, INSTALL_SECRET, spelling=spelling)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    [row] = Installation.objects.all()
    assert row.pk == stored.pk
    assert row.shared_secret == INSTALL_SECRET
    assert row.confirmed_at is not None
    assert row.user_id == (user.pk if user else None)
    assert_one_installed(sent_signals, row, user, created=False)
    page = result_page(client)
    assert "It is installed on Acme Team." in page
    assert (CONNECTED_TEXT if user else NOT_CONNECTED_TEXT) in page


def test_registered_app_level_secret_also_works_when_a_stored_secret_exists(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """The stored secret is tried first; a token signed with the app-level one still counts."""
    user = logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.shared_secret == INSTALL_SECRET
    assert_one_installed(sent_signals, row, user, created=False)


def test_registered_without_app_level_secret_uses_the_stored_one(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    user = logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = signed_query(KEY_A, INSTALL_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=False)


# Unregistered app (descriptor_uri): no JWT, a fresh lifecycle callback and a flow.


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_unregistered_confirmed_by_fresh_lifecycle_callback_and_flow(
    client: Client, sent_signals: SignalRecorder, settings: Settings, spelling: str
) -> None:
    unregistered(settings)
    user = logged_in_with_flow(client, True)
    stored = installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({spelling: KEY_A})

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    [row] = Installation.objects.all()
    assert row.pk == stored.pk
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert_one_installed(sent_signals, row, user, created=False)
    assert flow_ids(client) == []
    page = result_page(client)
    assert "It is installed on Acme Team." in page
    assert CONNECTED_TEXT in page


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_unregistered_anonymous_flow_confirms_without_connecting(
    client: Client, sent_signals: SignalRecorder, settings: Settings, spelling: str
) -> None:
    unregistered(settings)
    start_flow(client)  # not logged in: the flow has no user
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({spelling: KEY_A})

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id is None
    assert row.confirmed_at is not None
    assert_one_installed(sent_signals, row, None, created=False)
    assert flow_ids(client) == []
    assert NOT_CONNECTED_TEXT in result_page(client)


def test_unregistered_window_is_counted_from_the_lifecycle_callback(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    """A callback 100 s ago is inside the 120 s window (the negative side is an attack test)."""
    unregistered(settings)
    user = logged_in_with_flow(client, True)
    age_flows(client, 300)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(installed_at=timezone.now() - timedelta(seconds=100))

    response = client.get(return_url(urlencode({"clientKey": KEY_A})))

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=False)


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "no-flow"])
def test_unregistered_with_a_jwt_signed_by_the_installation_secret(
    client: Client,
    sent_signals: SignalRecorder,
    settings: Settings,
    spelling: str,
    with_flow: bool,
) -> None:
    """Sentry sees ``jwt`` on unregistered installs too: then the JWT is what counts."""
    unregistered(settings)
    user = logged_in_with_flow(client, with_flow)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = signed_query(KEY_A, INSTALL_SECRET, spelling=spelling)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id == (user.pk if user else None)
    assert_one_installed(sent_signals, row, user, created=False)


def test_both_spellings_with_the_same_value_are_one_client_key(
    client: Client, sent_signals: SignalRecorder
) -> None:
    query = signed_query(KEY_A, APP_SECRET, extra=[("client_key", KEY_A)])

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert_one_installed(sent_signals, row, None, created=True)


# Which flow, which user.


def test_logged_in_without_a_flow_connects_nobody(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """Install CSRF: a valid return opened in a logged-in browser that started nothing."""
    login(client, "victim")
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id is None
    assert_one_installed(sent_signals, row, None, created=True)
    assert NOT_CONNECTED_TEXT in result_page(client)


def test_a_flow_started_after_the_token_was_issued_is_not_used(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """The flow must have begun before Bitbucket signed the return (iat, give or take 30 s)."""
    query = signed_query(KEY_A, APP_SECRET, now=time.time() - 100)
    login(client, "ada")
    start_flow(client, "/after/")
    pending = flow_ids(client)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    row = Installation.objects.get()
    assert row.user_id is None
    assert_one_installed(sent_signals, row, None, created=True)
    assert flow_ids(client) == pending  # not consumed


def test_the_newest_flow_started_before_the_token_is_consumed(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user = login(client, "ada")
    start_flow(client, "/older/")
    start_flow(client, "/newer/")
    older, _newer = flow_ids(client)
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, "/newer/")
    assert flow_ids(client) == [older]
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=True)


def test_a_reinstall_by_the_same_user_keeps_the_connection(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user = logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert client.get(return_url(signed_query(KEY_A, INSTALL_SECRET))).status_code == 303
    # Bitbucket reinstalls: the callback is signed with the stored secret.
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    assert Installation.objects.get().confirmed_at is None
    start_flow(client)
    sent_signals.calls.clear()

    response = client.get(return_url(signed_query(KEY_A, INSTALL_SECRET)))

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert_one_installed(sent_signals, row, user, created=False)


def test_a_return_without_flow_keeps_an_earlier_connection_but_does_not_claim_it(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """Reinstalled by someone not logged in here: the row stays with its user, the page and
    the signal say nobody was connected by this return."""
    owner_client = Client()
    owner = logged_in_with_flow(owner_client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    assert owner_client.get(return_url(signed_query(KEY_A, INSTALL_SECRET))).status_code == 303
    body = lifecycle_body(client_key=KEY_A, shared_secret=INSTALL_SECRET)
    assert post_lifecycle(Client(), "installed", body, secret=INSTALL_SECRET).status_code == 204
    sent_signals.calls.clear()

    response = client.get(return_url(signed_query(KEY_A, INSTALL_SECRET)))

    assert response.status_code == 303
    row = Installation.objects.get()
    assert row.user_id == owner.pk
    assert_one_installed(sent_signals, row, None, created=False)
    page = result_page(client)
    assert CONNECTED_TEXT not in page
    assert NOT_CONNECTED_TEXT in page


# Where the browser goes.


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
    user = logged_in_with_flow(client, True, next_url)
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, target)
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=True)
    # Wherever it goes, the result is in the session for the result page.
    assert "The app is installed" in result_page(client)


def test_success_url_without_a_flow(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_SUCCESS_URL = "/welcome/"
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, "/welcome/")
    assert_one_installed(sent_signals, Installation.objects.get(), None, created=True)


# Repeats: double click, back button, a retry after a lost response.


@pytest.mark.parametrize("with_flow", [True, False], ids=["flow", "no-flow"])
def test_a_repeated_registered_return_is_idempotent(
    client: Client, sent_signals: SignalRecorder, with_flow: bool
) -> None:
    user = logged_in_with_flow(client, with_flow)
    query = signed_query(KEY_A, APP_SECRET)
    first = client.get(return_url(query))
    first_page = result_page(client)
    rows = installation_rows()

    repeats = [client.get(return_url(query)) for _ in range(3)]

    for response in repeats:
        assert_success_redirect(response, query, first["Location"])
    assert installation_rows() == rows
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=True)
    assert result_page(client) == first_page


def test_a_repeated_unregistered_return_is_idempotent(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    """Without a JWT the repeat cannot be verified again by the fresh-install rule (the row
    is confirmed and the flow is used up): the session remembers this browser's return."""
    unregistered(settings)
    user = logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({"clientKey": KEY_A})
    first = client.get(return_url(query))
    assert first.status_code == 303
    first_page = result_page(client)
    rows = installation_rows()

    repeats = [client.get(return_url(query)) for _ in range(2)]

    for response in repeats:
        assert_success_redirect(response, query, first["Location"])
    assert installation_rows() == rows
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=False)
    assert result_page(client) == first_page


def test_a_repeated_unregistered_return_after_the_window_is_still_idempotent(
    client: Client, sent_signals: SignalRecorder, settings: Settings
) -> None:
    unregistered(settings)
    user = logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = urlencode({"clientKey": KEY_A})
    assert client.get(return_url(query)).status_code == 303
    Installation.objects.update(installed_at=timezone.now() - timedelta(hours=1))
    rows = installation_rows()

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    assert installation_rows() == rows
    assert_one_installed(sent_signals, Installation.objects.get(), user, created=False)


def test_a_repeat_with_the_same_flow_is_idempotent(
    client: Client, sent_signals: SignalRecorder
) -> None:
    """What a concurrent identical return sees once the first one committed: the row was
    confirmed by this very flow (its hash is stored), while this request still has it."""
    user = login(client, "ada")
    start_flow(client, "/dashboard/")
    [flow_id] = flow_ids(client)
    row = installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.filter(pk=row.pk).update(
        confirmed_at=timezone.now(),
        confirmed_flow=hashlib.sha256(flow_id.encode()).hexdigest(),
        user=user,
    )
    rows = installation_rows()
    query = signed_query(KEY_A, INSTALL_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, "/dashboard/")
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == []
    assert CONNECTED_TEXT in result_page(client)


def test_a_concurrent_first_insert_is_taken_over(
    client: Client, sent_signals: SignalRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IntegrityError branch: another identical return committed the row between this
    one's lookup and its insert; this one confirms that row instead of failing."""
    user = logged_in_with_flow(client, True)
    # What the concurrent return committed; the first lookup below does not see it yet.
    Installation.objects.create(client_key=KEY_A, addon_key="example-app")
    manager_class = type(Installation.objects)
    real_select_for_update = manager_class.select_for_update
    lookups: list[str] = []

    def racing_select_for_update(self: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append("lookup")
        if len(lookups) == 1:
            return Installation.objects.none()
        return real_select_for_update(self, *args, **kwargs)

    monkeypatch.setattr(manager_class, "select_for_update", racing_select_for_update)
    query = signed_query(KEY_A, APP_SECRET)

    response = client.get(return_url(query))

    assert_success_redirect(response, query, RESULT_PATH)
    assert len(lookups) == 2
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    assert_one_installed(sent_signals, row, user, created=False)


# The database goes away in the middle of the return.


@pytest.mark.parametrize("existing_row", [False, True], ids=["new-row", "lifecycle-row"])
def test_database_unavailable_gives_503_and_a_retry_works(
    client: Client,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    existing_row: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    user = logged_in_with_flow(client, True, "/dashboard/")
    secret = APP_SECRET
    if existing_row:
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
        secret = INSTALL_SECRET
    sent_signals.calls.clear()
    rows = installation_rows()
    pending = flow_ids(client)
    query = signed_query(KEY_A, secret)

    def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(CallbackView, "record", unavailable)
    response = client.get(return_url(query))

    assert response.status_code == 503
    assert_protected(response)
    assert "Please try again" in response.content.decode()
    assert installation_rows() == rows
    assert sent_signals.none_sent
    assert flow_ids(client) == pending
    assert "database unavailable" in caplog.text
    assert token_of(query) not in caplog.text
    assert secret not in caplog.text

    monkeypatch.undo()
    retry = client.get(return_url(query))

    assert_success_redirect(retry, query, "/dashboard/")
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert_one_installed(sent_signals, row, user, created=not existing_row)
    assert flow_ids(client) == []


# Logs: one line per outcome, no token, no secret.


def test_success_logs_one_line_without_token_or_secret(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    logged_in_with_flow(client, True)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    query = signed_query(KEY_A, INSTALL_SECRET)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="bitbucket_install")

    client.get(return_url(query))

    records = [r for r in caplog.records if r.name == "bitbucket_install"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("install return accepted: ")
    assert f"client_key={KEY_A}" in message
    assert "signalled=True" in message
    assert token_of(query) not in caplog.text
    assert INSTALL_SECRET not in caplog.text
    assert APP_SECRET not in caplog.text
    assert len(sent_signals.of(installed)) == 1
