"""Browser return trips at the same moment, against the threaded live server.

- Twenty identical returns (a double click, a retry after a lost response, a browser
  restoring tabs), to the browser's own flow, plainly from a logged-in browser, and from
  browsers without any session, signed or (unregistered app) unsigned: one row, one
  ``installed`` signal, never a 5xx, the same answer for each, the user bound only
  through the flow (and, unsigned, only with ``TRUST_UNSIGNED_RETURNS``), and no session
  made for a visitor without one.
- Two valid returns of one flow for two different clientKeys, sent together from one
  session (a flow confirms at most one installation): however they interleave, at most
  one binds the flow's user, the other is refused and leaves its row as it was. Each such
  test repeats the race ``TRIALS`` times on fresh keys, and requires that in at least one
  trial both requests found the flow live (so the unique ``confirmed_flow`` decided, not
  the order the requests happened to run in).
"""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.test import Client
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from bitbucket_install import flow as flows
from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token
from tests.callback_helpers import installed_via_lifecycle, unregistered
from tests.concurrency.conftest import Response, SignalLog, http_request, send, send_together

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

CONCURRENT_RETURNS = 20
# Trials of each race of two returns: before a flow confirmed at most one installation,
# the second return won nine trials in ten.
TRIALS = 10
CALLBACK_PATH = "/bitbucket/callback/"
RESULT_PATH = "/bitbucket/result/"
INSTALL_SECRET = "installation-shared-secret-of-the-race"


def registered_key() -> str:
    """A fresh clientKey of the registered app ("example-app")."""
    return f"ari:cloud:bitbucket::app/{{{uuid.uuid4()}}}/example-app"


def signed_url(live_server: LiveServer, client_key: str, path: str, secret: str) -> str:
    """A registered app's return for ``client_key`` to ``path``, signed with ``secret``."""
    query = urlencode({"clientKey": client_key})
    token = encode_token({"iss": client_key}, secret, method="GET", path=path, query_string=query)
    return f"{live_server.url}{path}?{query}&{urlencode({'jwt': token})}"


def unsigned_url(live_server: LiveServer, client_key: str, path: str) -> str:
    return f"{live_server.url}{path}?{urlencode({'clientKey': client_key})}"


def logged_in_cookies(user: User) -> dict[str, str]:
    """The cookies of a browser where ``user`` is logged in."""
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def new_user(name: str) -> User:
    user: User = get_user_model().objects.create_user(username=name, password="unused")
    return user


def cookies_of(response: Response) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def start_flow(live_server: LiveServer, cookies: dict[str, str]) -> str:
    """Press the install button in this browser; the path its return will come back to."""
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
    location = pressed.headers["Location"]
    assert location.startswith(app_settings.AUTHORIZE_URL)
    cookies.update(cookies_of(pressed))
    [redirect_uri] = parse_qs(urlsplit(location).query)["redirect_uri"]
    path = urlsplit(redirect_uri).path
    assert path.startswith(CALLBACK_PATH)
    assert path != CALLBACK_PATH
    return path


def pending_flows(cookies: dict[str, str]) -> list[str]:
    session_key = cookies[settings.SESSION_COOKIE_NAME]
    stored = SessionStore(session_key=session_key).load().get(flows.SESSION_KEY, [])
    assert isinstance(stored, list)
    return [str(item["id"]) for item in stored]


def flow_hash_of(path: str) -> str:
    return flows.flow_hash(path[len(CALLBACK_PATH) : -1])


def return_many(url: str, cookies: dict[str, str] | None) -> list[Response]:
    headers = {"Cookie": cookie_header(cookies)} if cookies else {}
    requests = [http_request(url, headers=headers) for _ in range(CONCURRENT_RETURNS)]
    return send_together(requests)


def statuses(responses: list[Response]) -> list[int]:
    return [response.status for response in responses]


# --- identical returns ------------------------------------------------------------------------


def test_identical_returns_of_one_flow_connect_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    user = new_user("alice")
    cookies = logged_in_cookies(user)
    path = start_flow(live_server, cookies)
    client_key = registered_key()
    url = signed_url(live_server, client_key, path, settings.BITBUCKET_INSTALL_SHARED_SECRET)

    responses = return_many(url, cookies)

    # Every repeat of this browser's own return gets the same success answer.
    assert statuses(responses) == [303] * CONCURRENT_RETURNS
    assert {response.headers["Location"] for response in responses} == {RESULT_PATH}
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == client_key
    assert rows[0]["user_id"] == user.pk
    assert rows[0]["confirmed_at"] is not None
    assert rows[0]["confirmed_flow"] == flow_hash_of(path)
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["installation"].client_key == client_key
    assert sent["user"].pk == user.pk
    assert sent["created"] is True
    # The flow was used up: it cannot serve another return trip.
    assert pending_flows(cookies) == []


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "trust-unsigned-returns"])
def test_identical_unsigned_returns_of_one_flow_answer_alike(
    live_server: LiveServer, signal_log: SignalLog, settings: Settings, trusted: bool
) -> None:
    """A double click of an unsigned return (unregistered app): every request gets the
    same answer, the row's confirmation is recorded once, one ``installed``. Untrusted, it
    binds nobody, leaves ``confirmed_flow`` unset and keeps the flow; trusted, it binds
    the flow's user once and uses the flow up (the requests that read the session before
    the first one saved it find the row confirmed by this very flow: no change)."""
    unregistered(settings)
    settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = trusted
    user = new_user("uma")
    cookies = logged_in_cookies(user)
    path = start_flow(live_server, cookies)
    pending = pending_flows(cookies)
    installed_via_lifecycle("connection:race-unsigned", INSTALL_SECRET)

    responses = return_many(unsigned_url(live_server, "connection:race-unsigned", path), cookies)

    assert statuses(responses) == [303] * CONCURRENT_RETURNS
    assert {response.headers["Location"] for response in responses} == {RESULT_PATH}
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["confirmed_at"] is not None
    assert rows[0]["confirmed_flow"] == (flow_hash_of(path) if trusted else None)
    assert rows[0]["user_id"] == (user.pk if trusted else None)
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["installation"].client_key == "connection:race-unsigned"
    assert (sent["user"].pk if sent["user"] else None) == rows[0]["user_id"]
    assert sent["created"] is False
    assert pending_flows(cookies) == ([] if trusted else pending)


def test_identical_unsigned_returns_without_any_session_answer_alike(
    live_server: LiveServer, signal_log: SignalLog, settings: Settings
) -> None:
    """Twenty visitors without a session at once, each with the plain unsigned return of
    a fresh install (unsigned returns not trusted): the same page in place for all, no
    session made, the confirmation recorded once, one ``installed`` with nobody."""
    unregistered(settings)
    installed_via_lifecycle("connection:race-plain", INSTALL_SECRET)

    responses = return_many(
        unsigned_url(live_server, "connection:race-plain", CALLBACK_PATH), None
    )

    assert statuses(responses) == [200] * CONCURRENT_RETURNS
    assert len({response.body for response in responses}) == 1
    assert b"race-plain" not in responses[0].body
    assert all(not cookies_of(response) for response in responses)
    assert not Session.objects.exists()
    [row] = Installation.objects.values()
    assert row["confirmed_at"] is not None
    assert row["user_id"] is None
    assert row["confirmed_flow"] is None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["user"] is None
    assert sent["created"] is False


def test_identical_plain_returns_of_a_logged_in_browser_bind_nobody(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    user = new_user("bob")
    cookies = logged_in_cookies(user)
    client_key = registered_key()
    url = signed_url(
        live_server, client_key, CALLBACK_PATH, settings.BITBUCKET_INSTALL_SHARED_SECRET
    )

    responses = return_many(url, cookies)

    # A plain return for a confirmed row gets the success answer again.
    assert statuses(responses) == [303] * CONCURRENT_RETURNS
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == client_key
    # No flow of this browser: nobody is bound, logged in or not.
    assert rows[0]["user_id"] is None
    assert rows[0]["confirmed_flow"] is None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["user"] is None
    assert sent["created"] is True


def test_identical_returns_without_any_session_confirm_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    client_key = registered_key()
    url = signed_url(
        live_server, client_key, CALLBACK_PATH, settings.BITBUCKET_INSTALL_SHARED_SECRET
    )

    responses = return_many(url, None)

    # Each request is a browser of its own without a session: each is shown the success
    # page in place, and none gets a session (or adds a session row).
    assert statuses(responses) == [200] * CONCURRENT_RETURNS
    assert all(not cookies_of(response) for response in responses)
    assert not Session.objects.exists()
    rows = list(Installation.objects.values())
    assert len(rows) == 1
    assert rows[0]["client_key"] == client_key
    assert rows[0]["user_id"] is None
    assert rows[0]["confirmed_at"] is not None
    assert signal_log.names() == ["installed"]
    [sent] = signal_log.of("installed")
    assert sent["user"] is None
    assert sent["created"] is True


# --- two clientKeys, one flow -----------------------------------------------------------------

SCENARIOS = ["registered-new-rows", "registered-lifecycle-rows", "unregistered-trusted"]


def prepare_keys(scenario: str, trial: int) -> tuple[list[str], str | None]:
    """Two fresh clientKeys for ``scenario`` (their ``installed`` callbacks already in when
    the scenario needs them), and the secret that signs their returns (None: unsigned)."""
    if scenario == "unregistered-trusted":
        keys = [f"connection:race-{trial}-{side}" for side in ("a", "b")]
    else:
        keys = [registered_key(), registered_key()]
    if scenario == "registered-new-rows":
        return keys, settings.BITBUCKET_INSTALL_SHARED_SECRET
    for key in keys:
        installed_via_lifecycle(key, INSTALL_SECRET)
    return keys, INSTALL_SECRET if scenario == "registered-lifecycle-rows" else None


def rows_of(keys: list[str]) -> dict[str, dict[str, Any]]:
    return {
        row["client_key"]: row for row in Installation.objects.filter(client_key__in=keys).values()
    }


def race_trial(live_server: LiveServer, signal_log: SignalLog, scenario: str, trial: int) -> bool:
    """One race of two returns of one flow; True if both found the flow live."""
    user = new_user(f"racer-{trial}")
    cookies = logged_in_cookies(user)
    path = start_flow(live_server, cookies)  # before the install callbacks, as in life
    keys, secret = prepare_keys(scenario, trial)
    before = rows_of(keys)
    signal_log.clear()
    urls = [
        unsigned_url(live_server, key, path)
        if secret is None
        else signed_url(live_server, key, path, secret)
        for key in keys
    ]
    headers = {"Cookie": cookie_header(cookies)}

    responses = send_together([http_request(url, headers=headers) for url in urls])

    assert sorted(statuses(responses)) == [303, 400], (trial, statuses(responses))
    winner, loser = keys if responses[0].status == 303 else keys[::-1]
    after = rows_of(keys)
    assert after[winner]["user_id"] == user.pk
    assert after[winner]["confirmed_flow"] == flow_hash_of(path)
    if scenario == "registered-new-rows":
        assert loser not in after  # its row, made from the return alone, rolled back
    else:
        assert after[loser] == before[loser]  # untouched: not confirmed, nobody bound
    assert Installation.objects.filter(confirmed_flow=flow_hash_of(path)).count() == 1
    assert Installation.objects.filter(user=user).count() == 1
    [sent] = signal_log.of("installed")
    assert sent["installation"].client_key == winner
    assert sent["user"].pk == user.pk
    failed = signal_log.of("install_failed")
    assert set(signal_log.names()) <= {"installed", "install_failed"}
    # The loser found the flow live and lost on confirmed_flow (install_failed for its
    # flow), or read the session after the winner used the flow up (no flow: no signal).
    assert [kwargs["error"] for kwargs in failed] in ([], ["flow_used"])
    assert all(kwargs["user"].pk == user.pk for kwargs in failed)
    assert pending_flows(cookies) == []
    return bool(failed)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_client_keys_returned_through_one_flow_at_once_bind_at_most_one(
    live_server: LiveServer, signal_log: SignalLog, settings: Settings, scenario: str
) -> None:
    if scenario == "unregistered-trusted":
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = True  # so that a return binds
    raced = [race_trial(live_server, signal_log, scenario, trial) for trial in range(TRIALS)]
    assert any(raced), "no trial had both returns find the flow live: nothing raced"
