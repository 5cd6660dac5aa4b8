"""The app's signals: sent after the transaction commits, each receiver isolated; a
receiver that raises is logged and undoes nothing; ``user`` is the flow's user when the
return bound it (or, for ``install_failed``, the flow's user), else None."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.dispatch import Signal
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import signals
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed, send_on_commit, send_robust
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    age_flows,
    flow_id_of,
    flow_ids,
    flow_path,
    flow_return,
    installed_via_lifecycle,
    login,
    records_mentioning,
    return_url,
    signed_query,
    token_of,
    unregistered,
)
from tests.conftest import SignalRecorder

pytestmark = pytest.mark.django_db(transaction=True)


class ReceiverFailure(RuntimeError):
    pass


def broken_receiver(**kwargs: Any) -> None:
    raise ReceiverFailure("the project's receiver is broken")


@pytest.fixture
def connect() -> Iterator[Callable[[Signal, Callable[..., None]], None]]:
    """Connect receivers for one test; they are disconnected afterwards."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def _connect(signal: Signal, receiver: Callable[..., None]) -> None:
        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))

    yield _connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


def receiver_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bitbucket_install" and record.levelno == logging.ERROR
    ]


def assert_receiver_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    [record] = receiver_errors(caplog)
    assert "broken_receiver" in record.getMessage()
    assert "raised" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ReceiverFailure)


def test_raising_installed_receiver_does_not_undo_the_installation(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    connect(installed, broken_receiver)
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    query = signed_query(KEY_A, APP_SECRET, path=path)

    response = client.get(return_url(query, path))

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    row = Installation.objects.get()
    assert row.confirmed_at is not None
    assert row.user_id == user.pk
    assert flow_ids(client) == []
    page = client.get(RESULT_PATH)
    assert page.status_code == 200
    assert "The app is installed" in page.content.decode()
    assert_receiver_error_logged(caplog)
    # The other receivers still ran.
    assert len(sent_signals.of(installed)) == 1
    assert token_of(query) not in caplog.text
    assert APP_SECRET not in caplog.text
    assert records_mentioning(caplog, flow_id_of(path)) == []


def test_raising_receiver_before_the_recorder_does_not_stop_it(
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    seen: list[dict[str, Any]] = []
    connect(installed, broken_receiver)
    connect(installed, lambda **kwargs: seen.append(kwargs))

    response = Client().get(return_url(signed_query(KEY_A, APP_SECRET)))

    assert response.status_code == 200  # answered in place: no session
    assert len(seen) == 1
    assert seen[0]["created"] is True
    assert seen[0]["user"] is None
    assert_receiver_error_logged(caplog)


def test_raising_install_failed_receiver_on_a_bitbucket_error(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    connect(install_failed, broken_receiver)
    client = Client()
    path = flow_path(client)

    response = client.get(return_url(urlencode({"error": "access_denied"}), path))

    assert response.status_code == 303
    page = client.get(RESULT_PATH)
    assert page.status_code == 200
    assert "You chose not to give the app access" in page.content.decode()
    assert_receiver_error_logged(caplog)
    assert len(sent_signals.of(install_failed)) == 1
    assert flow_ids(client) == []


def test_raising_install_failed_receiver_on_a_rejection(
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    connect(install_failed, broken_receiver)
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    rows = list(Installation.objects.order_by("pk").values())
    client = Client()
    path = flow_path(client)
    # Past the confirm window, a wrong signature is a rejection, not "not yet".
    age_flows(client, 600)
    sent_signals.calls.clear()

    # Signed with a secret nobody has: refused after the lookup, so the flow counts.
    response = client.get(return_url(signed_query(KEY_A, "not-the-secret", path=path), path))

    assert response.status_code == 400
    assert "could not be confirmed" in response.content.decode()
    assert list(Installation.objects.order_by("pk").values()) == rows
    assert_receiver_error_logged(caplog)
    [kwargs] = sent_signals.of(install_failed)
    assert kwargs["error"] == "token_signature"
    assert kwargs["user"] is None
    assert not sent_signals.of(installed)
    assert flow_ids(client) == []


def test_installed_is_sent_after_the_commit(
    connect: Callable[[Signal, Callable[..., None]], None],
) -> None:
    """When the receiver runs, no transaction is open and the row is there to read."""
    seen: list[tuple[bool, bool]] = []

    def receiver(installation: Installation, **kwargs: Any) -> None:
        committed = Installation.objects.filter(
            pk=installation.pk, confirmed_at__isnull=False
        ).exists()
        seen.append((connection.in_atomic_block, committed))

    connect(installed, receiver)
    client = Client()
    path = flow_path(client)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 303
    assert seen == [(False, True)]


# --- who the signals name -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bound"),
    [
        ("signed-user", True),
        ("signed-anonymous", False),
        ("unsigned-user", False),
        ("unsigned-trusted-user", True),
        ("plain-user", False),
    ],
)
def test_installed_names_the_user_only_when_it_bound_one(
    sent_signals: SignalRecorder, settings: Settings, kind: str, bound: bool
) -> None:
    """``user`` is the flow's user when this return connected it, else None (never
    AnonymousUser, never the user of a browser whose flow it was not)."""
    client = Client()
    user = login(client, "ada") if kind.endswith("-user") else None
    path = flow_path(client) if not kind.startswith("plain") else CALLBACK_PATH
    if kind.startswith("unsigned"):
        unregistered(settings)
        settings.BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS = "trusted" in kind
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    sent_signals.calls.clear()

    response = flow_return(
        client, KEY_A, None if kind.startswith("unsigned") else INSTALL_SECRET, path
    )

    assert response.status_code == 303
    [kwargs] = sent_signals.of(installed)
    assert len(sent_signals.calls) == 1
    assert kwargs["created"] is False
    assert kwargs["request"].path == path
    assert kwargs["installation"].client_key == KEY_A
    if bound:
        assert user is not None
        assert isinstance(kwargs["user"], User)
        assert kwargs["user"].pk == user.pk
        assert Installation.objects.get().user_id == user.pk
    else:
        assert kwargs["user"] is None
        assert Installation.objects.get().user_id is None


@pytest.mark.parametrize("logged_in", [True, False], ids=["user", "anonymous"])
def test_install_failed_names_the_flows_user_or_none(
    sent_signals: SignalRecorder, logged_in: bool
) -> None:
    client = Client()
    user = login(client, "ada") if logged_in else None
    path = flow_path(client)

    response = client.get(return_url(urlencode({"error": "server_error"}), path))

    assert response.status_code == 303
    [kwargs] = sent_signals.of(install_failed)
    if user is None:
        assert kwargs["user"] is None
    else:
        assert isinstance(kwargs["user"], User)
        assert kwargs["user"].pk == user.pk
    assert kwargs["request"].path == path


def test_no_signal_for_a_return_that_is_not_verifiable_yet(
    sent_signals: SignalRecorder, settings: Settings
) -> None:
    """Not yet: nothing written, nothing sent, the flow kept for the reload."""
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    client = Client()
    login(client, "ada")
    path = flow_path(client)

    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert sent_signals.none_sent
    assert flow_ids(client) == [flow_id_of(path)]
    assert not Installation.objects.exists()


def test_send_on_commit_waits_for_the_commit(sent_signals: SignalRecorder) -> None:
    with transaction.atomic():
        send_on_commit(signals.uninstalled, installation=None, request=None)
        assert sent_signals.none_sent
    [kwargs] = sent_signals.of(signals.uninstalled)
    assert kwargs == {"sender": Installation, "installation": None, "request": None}


def test_send_on_commit_sends_nothing_when_rolled_back(sent_signals: SignalRecorder) -> None:
    def failing_transaction() -> None:
        with transaction.atomic():
            send_on_commit(installed, installation=None, request=None, user=None, created=True)
            raise ReceiverFailure("the transaction fails")

    with pytest.raises(ReceiverFailure):
        failing_transaction()
    assert sent_signals.none_sent


def test_send_robust_sends_with_sender_installation(sent_signals: SignalRecorder) -> None:
    send_robust(install_failed, request=None, user=None, error="e", error_description="d")
    assert sent_signals.of(install_failed) == [
        {
            "sender": Installation,
            "request": None,
            "user": None,
            "error": "e",
            "error_description": "d",
        }
    ]
