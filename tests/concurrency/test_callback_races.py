"""Twenty identical browser return trips at once (issue 4): a double click, a retry after
a lost response, a browser restoring tabs. Whatever the timing: one row, one ``installed``
signal, never a 5xx, and the installation is bound only through this browser's flow.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from bitbucket_install import flow as flows
from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token
from tests.concurrency.conftest import Response, SignalLog, http_request, send, send_together

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

CONCURRENT_RETURNS = 20
CALLBACK_PATH = "/bitbucket/callback/"
RESULT_PATH = "/bitbucket/result/"


def callback_url(live_server: LiveServer, client_key: str) -> str:
    """A registered app's return for ``client_key``, signed with the app-level secret."""
    query = urlencode({"clientKey": client_key})
    token = encode_token(
        {"iss": client_key},
        settings.BITBUCKET_INSTALL_SHARED_SECRET,
        method="GET",
        path=CALLBACK_PATH,
        query_string=query,
    )
    return f"{live_server.url}{CALLBACK_PATH}?{query}&{urlencode({'jwt': token})}"


def logged_in_session(user: User) -> str:
    """The session key of a browser where ``user`` is logged in."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def cookies_of(response: Response) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def start_flow(live_server: LiveServer, cookies: dict[str, str]) -> None:
    """Press the install button in this browser: the start view records a flow."""
    start_url = f"{live_server.url}/bitbucket/install/"
    page = send(http_request(start_url, headers={"Cookie": cookie_header(cookies)}))
    assert page.status == 200
    cookies.update(cookies_of(page))
    csrf_token = cookies[settings.CSRF_COOKIE_NAME]
    pressed = send(
        http_request(
            start_url,
            data=b"",
            headers={"Cookie": cookie_header(cookies), "X-CSRFToken": csrf_token},
            method="POST",
        )
    )
    assert pressed.status == 303
    assert pressed.headers["Location"].startswith(app_settings.AUTHORIZE_URL)
    cookies.update(cookies_of(pressed))


def pending_flows(session_key: str) -> list[object]:
    stored = SessionStore(session_key=session_key).load().get(flows.SESSION_KEY, [])
    assert isinstance(stored, list)
    return stored


def return_many(url: str, cookies: dict[str, str] | None) -> list[Response]:
    headers = {"Cookie": cookie_header(cookies)} if cookies else {}
    requests = [http_request(url, headers=headers) for _ in range(CONCURRENT_RETURNS)]
    return send_together(requests)


def assert_no_server_error(responses: list[Response]) -> None:
    statuses = [response.status for response in responses]
    assert all(status < 500 for status in statuses), statuses


def test_identical_returns_of_one_flow_connect_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    user = get_user_model().objects.create_user(username="alice", password="unused")
    cookies = {settings.SESSION_COOKIE_NAME: logged_in_session(user)}
    start_flow(live_server, cookies)
    session_key = cookies[settings.SESSION_COOKIE_NAME]
    assert len(pending_flows(session_key)) == 1

    responses = return_many(callback_url(live_server, "race-with-flow"), cookies)

    assert_no_server_error(responses)
    # Every repeat of this browser's own return gets the same success answer.
    assert [response.status for response in responses] == [303] * CONCURRENT_RETURNS
    assert {response.headers["Location"] for response in responses} == {RESULT_PATH}
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == "race-with-flow"
    assert rows[0]["user_id"] == user.pk
    assert rows[0]["confirmed_at"] is not None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["installation"].client_key == "race-with-flow"
    assert sent["user"].pk == user.pk
    assert sent["created"] is True
    # The flow was used up: it cannot serve another return trip.
    assert pending_flows(session_key) == []


def test_identical_returns_of_a_logged_in_browser_without_flow_bind_nobody(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    user = get_user_model().objects.create_user(username="bob", password="unused")
    cookies = {settings.SESSION_COOKIE_NAME: logged_in_session(user)}

    responses = return_many(callback_url(live_server, "race-logged-in-no-flow"), cookies)

    assert_no_server_error(responses)
    statuses = [response.status for response in responses]
    assert 303 in statuses
    # Without a flow, a repeat is recognised by the session's note of the confirmed
    # clientKey, which concurrent repeats that loaded the session before the first one
    # saved it do not see: those get the rejection page (400), never a 5xx, a second row
    # or a second signal.
    assert set(statuses) <= {303, 400}, statuses
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == "race-logged-in-no-flow"
    # Trust rule 2: no flow of this browser, so nobody is bound, logged in or not.
    assert rows[0]["user_id"] is None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["user"] is None
    assert sent["created"] is True


def test_identical_returns_without_any_session_confirm_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    responses = return_many(callback_url(live_server, "race-no-session"), None)

    assert_no_server_error(responses)
    # Each request is a browser of its own: the first confirms, the others are replays
    # from other sessions and are refused.
    assert sorted(response.status for response in responses) == [303] + [400] * (
        CONCURRENT_RETURNS - 1
    )
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == "race-no-session"
    assert rows[0]["user_id"] is None
    assert rows[0]["confirmed_at"] is not None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["user"] is None
    assert sent["created"] is True
