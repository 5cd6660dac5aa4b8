"""Connect POSTs from the landing at the same moment, by the same signed-in user (a double
click, a retry after a lost response), against the threaded live server: one binding, one
``installed`` signal, never a 5xx, each answered as connected. With
``CONFIRM_WITH_BITBUCKET`` the same holds while Bitbucket is asked outside the row lock.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.conf import settings
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from bitbucket_install import genuine
from bitbucket_install.models import Installation
from tests.callback_helpers import installed_via_lifecycle
from tests.concurrency.conftest import SignalLog, http_request, send, send_together
from tests.concurrency.test_callback_races import (
    INSTALL_SECRET,
    cookie_header,
    cookies_of,
    logged_in_cookies,
    new_user,
    registered_key,
)

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

LANDING_PATH = "/bitbucket/landing/"
RESULT_PATH = "/bitbucket/result/"
CONCURRENT_POSTS = 10
TRIALS = 3


def offered(live_server: LiveServer, cookies: dict[str, str]) -> str:
    """A fresh installation on a fresh workspace, landed on in this browser: its clientKey."""
    client_key = registered_key()
    workspace = "{" + str(uuid.uuid4()) + "}"
    installed_via_lifecycle(
        client_key, INSTALL_SECRET, principal={"uuid": workspace, "display_name": "Race"}
    )
    query = urlencode({"user_uuid": workspace, "user_username": "race", "user_type": "team"})
    landed = send(
        http_request(
            f"{live_server.url}{LANDING_PATH}?{query}",
            headers={"Cookie": cookie_header(cookies)},
        )
    )
    assert landed.status == 303
    cookies.update(cookies_of(landed))
    page = send(
        http_request(
            f"{live_server.url}{LANDING_PATH}", headers={"Cookie": cookie_header(cookies)}
        )
    )
    assert page.status == 200
    assert b'data-state="offer"' in page.body
    cookies.update(cookies_of(page))
    return client_key


def connect_together(live_server: LiveServer, cookies: dict[str, str], client_key: str) -> Any:
    body = urlencode({"client_key": client_key}).encode()
    headers = {
        "Cookie": cookie_header(cookies),
        "X-CSRFToken": cookies[settings.CSRF_COOKIE_NAME],
        "Content-Type": "application/x-www-form-urlencoded",
    }
    requests = [
        http_request(f"{live_server.url}{LANDING_PATH}", data=body, headers=headers, method="POST")
        for _ in range(CONCURRENT_POSTS)
    ]
    return send_together(requests)


def assert_one_binding(
    live_server: LiveServer, signal_log: SignalLog, with_bitbucket: bool
) -> None:
    user = new_user("ada")
    cookies = logged_in_cookies(user)
    for _ in range(TRIALS):
        client_key = offered(live_server, cookies)
        signal_log.clear()
        answers = connect_together(live_server, cookies, client_key)
        assert [answer.status for answer in answers] == [303] * CONCURRENT_POSTS
        assert {answer.headers["Location"] for answer in answers} == {RESULT_PATH}
        row = Installation.objects.get(client_key=client_key)
        assert row.user_id == user.pk
        assert row.confirmed_at is not None
        assert (row.verified_at is not None) is with_bitbucket
        sent = signal_log.of("installed")
        assert [(kwargs["installation"].pk, kwargs["user"].pk) for kwargs in sent] == [
            (row.pk, user.pk)
        ]
        assert signal_log.names() == ["installed"]


def test_concurrent_connects_by_the_same_user_bind_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    assert_one_binding(live_server, signal_log, with_bitbucket=False)


def test_concurrent_connects_asking_bitbucket_bind_once(
    live_server: LiveServer,
    signal_log: SignalLog,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"values": []})

    monkeypatch.setattr(genuine, "transport", httpx.MockTransport(handler))
    assert_one_binding(live_server, signal_log, with_bitbucket=True)
