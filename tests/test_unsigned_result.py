"""The result page of an unsigned return (unsigned returns not trusted): it reloads itself
once, whatever was named, and each load in the confirm window records the named
installation if its ``installed`` callback is in by then."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from bitbucket_install.views import RESULT_SESSION_KEY
from tests.attack_helpers import REFRESH_META
from tests.callback_helpers import (
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    flow_path,
    installed_via_lifecycle,
    login,
    return_url,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)
REFRESH = REFRESH_META


def unsigned_return(client: Client, client_key: str) -> None:
    response = client.get(return_url(urlencode({"clientKey": client_key}), flow_path(client)))
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH


def set_result(client: Client, **changes: Any) -> None:
    session = client.session
    session[RESULT_SESSION_KEY] = {**session[RESULT_SESSION_KEY], **changes}
    session.save()


def test_the_page_reloads_itself_once(settings: Settings) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, "connection:404")
    first, second = client.get(RESULT_PATH), client.get(RESULT_PATH)
    assert REFRESH in first.content.decode()
    assert REFRESH not in second.content.decode()
    assert client.session[RESULT_SESSION_KEY]["refreshes"] == 0


def test_known_and_unknown_keys_show_the_same_pages(settings: Settings) -> None:
    unregistered(settings)
    installed_via_lifecycle("connection:7", INSTALL_SECRET)
    pages = []
    for key in ("connection:7", "connection:8"):
        client = Client()
        login(client, f"user-{key[-1]}")
        unsigned_return(client, key)
        pages.append([client.get(RESULT_PATH).content, client.get(RESULT_PATH).content])
    assert pages[0] == pages[1]


def test_a_load_after_the_callback_records_it(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    assert installation_rows() == []
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    client.get(RESULT_PATH)
    row = Installation.objects.get()
    assert row.confirmed_at is not None
    assert row.user_id is None
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None
    client.get(RESULT_PATH)
    assert len(sent_signals.of(installed)) == 1  # recorded once


def test_a_load_at_the_end_of_the_confirm_window_still_records(
    settings: Settings,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The window is inclusive: a load exactly ``CONFIRM_WINDOW`` seconds after the return
    records, with the load's request in ``installed``, and says so in the log."""
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    now = float(int(time.time()))  # whole seconds: the difference below is exact
    set_result(client, returned_at=now - app_settings.CONFIRM_WINDOW)
    monkeypatch.setattr("bitbucket_install.views.time.time", lambda: now)
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    response = client.get(RESULT_PATH)
    assert response.status_code == 200
    [kwargs] = sent_signals.of(installed)
    assert kwargs["request"] is response.wsgi_request
    assert "install result: unsigned return recorded again=True" in caplog.messages


def test_an_install_reported_exactly_a_confirm_window_ago_is_recorded(
    settings: Settings, sent_signals: SignalRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``installed`` callback that arrived ``CONFIRM_WINDOW`` seconds before the return,
    to the microsecond, is still in the window (the window's start is inclusive)."""
    unregistered(settings)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    now = timezone.now()
    Installation.objects.update(installed_at=now - timedelta(seconds=app_settings.CONFIRM_WINDOW))
    monkeypatch.setattr("bitbucket_install.returns.timezone.now", lambda: now)
    sent_signals.calls.clear()
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    assert Installation.objects.get().confirmed_at == now
    [kwargs] = sent_signals.of(installed)
    assert kwargs["user"] is None


def test_no_record_after_the_confirm_window(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    set_result(client, returned_at=time.time() - app_settings.CONFIRM_WINDOW - 1)
    before = installation_rows()
    assert client.get(RESULT_PATH).status_code == 200
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "changes",
    [
        {"pending": "<script>"},
        {"pending": 42},
        {"returned_at": "yesterday"},
        {"pending": None, "returned_at": None, "refreshes": None},
    ],
)
def test_a_result_of_another_shape_is_shown_and_records_nothing(
    settings: Settings, sent_signals: SignalRecorder, changes: dict[str, Any]
) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    set_result(client, **changes)
    before = installation_rows()
    response = client.get(RESULT_PATH)
    assert response.status_code == 200
    assert "without a signature" in response.content.decode()
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_refresh_count_of_another_shape_reloads_nothing(settings: Settings) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    unsigned_return(client, KEY_A)
    set_result(client, refreshes="1")
    assert REFRESH not in client.get(RESULT_PATH).content.decode()
    assert client.session[RESULT_SESSION_KEY]["refreshes"] == "1"
