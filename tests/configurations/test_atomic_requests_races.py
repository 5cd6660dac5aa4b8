"""The races of tests/concurrency again, with ``ATOMIC_REQUESTS = True``: real concurrent
requests to the live server, on PostgreSQL or MariaDB (marker ``concurrency``).

Inside the request's transaction, the retry after a lost insert is only a savepoint; on
MariaDB the losing insert's shared lock outlives a savepoint's rollback, so concurrent
first deliveries deadlocked each other (503). The callback, lifecycle and webhook views
therefore run outside the request's transaction, and each race must still give one row and
one signal.
"""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from tests.concurrency import test_callback_races as callback_races
from tests.concurrency import test_lifecycle_races as lifecycle_races
from tests.concurrency import test_webhook_races as webhook_races
from tests.concurrency.conftest import SignalLog

pytestmark = [
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("atomic_requests"),
]


@pytest.mark.parametrize("deliveries", [2, 5])
def test_identical_first_installs_make_one_row(
    live_server: LiveServer, signal_log: SignalLog, deliveries: int
) -> None:
    lifecycle_races.test_identical_first_installs_make_one_row(live_server, signal_log, deliveries)


def test_first_installs_with_different_secrets_keep_the_winner(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    lifecycle_races.test_first_installs_with_different_secrets_keep_the_winner(
        live_server, signal_log
    )


def test_identical_returns_of_one_flow_connect_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    callback_races.test_identical_returns_of_one_flow_connect_once(live_server, signal_log)


def test_identical_returns_without_any_session_confirm_once(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    callback_races.test_identical_returns_without_any_session_confirm_once(live_server, signal_log)


@pytest.mark.parametrize("scenario", callback_races.SCENARIOS)
def test_two_client_keys_returned_through_one_flow_at_once_bind_at_most_one(
    live_server: LiveServer, signal_log: SignalLog, settings: Settings, scenario: str
) -> None:
    callback_races.test_two_client_keys_returned_through_one_flow_at_once_bind_at_most_one(
        live_server, signal_log, settings, scenario
    )


@pytest.mark.parametrize("copies", [2, 5])
def test_concurrent_redeliveries_are_signalled_once(
    live_server: LiveServer, signal_log: SignalLog, copies: int
) -> None:
    webhook_races.test_concurrent_redeliveries_are_signalled_once(live_server, signal_log, copies)
