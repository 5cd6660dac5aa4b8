"""``ATOMIC_REQUESTS = True``: Django runs each view in one transaction unless it says not.

The callback, the lifecycle callbacks and the webhook view commit in transactions of their
own (a lost insert is retried in a new one, signals go out after the commit), so they are
``non_atomic_requests``: inside the request's transaction a retry would be a savepoint,
which keeps MariaDB's locks, and a receiver's failed query would abort the whole request
on PostgreSQL. The races under this setting are in ``test_atomic_requests_races.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.dispatch import Signal

from bitbucket_install.models import Installation, WebhookDelivery
from bitbucket_install.signals import install_failed, installed, webhook_received
from tests.callback_helpers import APP_SECRET, KEY_A, KEY_B, signed_query
from tests.configurations.site import (
    Site,
    connect_on_landing,
    install,
    install_from_bitbucket,
    press_button,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.webhook_helpers import (
    delivery_body,
    delivery_rows,
    http_headers,
    installation,
    webhook_path,
    webhook_token,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("atomic_requests")]


@pytest.fixture
def seen_at_signal() -> Iterator[list[dict[str, Any]]]:
    """What a receiver of ``installed`` / ``install_failed`` sees when it runs."""
    seen: list[dict[str, Any]] = []

    def receiver(signal: Signal, **kwargs: Any) -> None:
        installation = kwargs.get("installation")
        seen.append(
            {
                "signal": signal,
                "in_transaction": transaction.get_connection().in_atomic_block,
                "row_confirmed": installation is not None
                and Installation.objects.filter(
                    pk=installation.pk, confirmed_at__isnull=False
                ).exists(),
            }
        )

    for signal in (installed, install_failed):
        signal.connect(receiver, weak=False)
    yield seen
    for signal in (installed, install_failed):
        signal.disconnect(receiver)


def test_project_views_do_run_in_a_transaction(site: Site) -> None:
    """ATOMIC_REQUESTS is in effect (else the tests below prove nothing)."""
    answer = site.browser().get(site.url("/probe/transaction"))
    assert answer.status == 200
    assert json.loads(answer.content) == {"in_atomic_block": True}


def test_install_completes_and_signals_after_the_commit(
    site: Site, sent_signals: SignalRecorder, seen_at_signal: list[dict[str, Any]]
) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/"))

    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    assert row["shared_secret"]
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    assert sent["created"] is False  # the installed callback made the row
    # The receiver ran after the commit, outside any transaction, and saw the row.
    assert seen_at_signal == [
        {"signal": installed, "in_transaction": False, "row_confirmed": True}
    ]


def test_a_receiver_that_fails_on_the_database_does_not_break_the_return(
    site: Site, sent_signals: SignalRecorder, seen_at_signal: list[dict[str, Any]]
) -> None:
    """A project's ``install_failed`` receiver whose query fails (here: a duplicate key).
    Inside the request's transaction, PostgreSQL refused every later query of the request,
    the session's save included: the browser got 503 instead of the failure page."""
    Installation.objects.create(client_key=KEY_B)

    def failing_receiver(**kwargs: Any) -> None:
        Installation.objects.create(client_key=KEY_B)  # IntegrityError

    install_failed.connect(failing_receiver, weak=False)
    try:
        user = User.objects.create_user("ada")
        browser = site.browser()
        browser.force_login(user)
        _page, to_bitbucket = press_button(browser, site.url("/"))
        [redirect_uri] = parse_qs(urlsplit(to_bitbucket.location).query)["redirect_uri"]
        path = urlsplit(redirect_uri).path
        # A token over another path: refused (token_qsh), which uses the flow up.
        query = signed_query(KEY_A, APP_SECRET, path="/bitbucket/callback/")
        before = installation_rows()

        answer = browser.get(redirect_uri + "?" + query)
    finally:
        install_failed.disconnect(failing_receiver)

    assert answer.status == 400, answer.status
    assert "could not be confirmed" in answer.text
    assert path.startswith("/bitbucket/callback/")
    assert installation_rows() == before
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "token_qsh"
    assert failed["user"] == user
    assert sent_signals.of(installed) == []
    assert seen_at_signal == [
        {"signal": install_failed, "in_transaction": False, "row_confirmed": False}
    ]


HOOK_SECRET = "hook-secret-0123456789"


def deliver(site: Site) -> int:
    """One signed webhook delivery for ``KEY_A``; its status."""
    token = webhook_token(HOOK_SECRET, iss=KEY_A)
    body = json.dumps(delivery_body()).encode()
    return (
        site.browser()
        .agent.request("POST", site.url(webhook_path()), body, http_headers(token))
        .status
    )


def test_webhook_signals_after_the_commit(site: Site, sent_signals: SignalRecorder) -> None:
    hooked = installation(KEY_A, HOOK_SECRET)
    seen: list[tuple[bool, bool]] = []

    def receiver(installation: Installation, **kwargs: Any) -> None:
        seen.append(
            (
                transaction.get_connection().in_atomic_block,
                WebhookDelivery.objects.filter(installation=installation).exists(),
            )
        )

    webhook_received.connect(receiver, weak=False)
    try:
        assert deliver(site) == 204
        assert deliver(site) == 204  # the redelivery
    finally:
        webhook_received.disconnect(receiver)
    assert len(delivery_rows()) == 1
    [sent] = sent_signals.of(webhook_received)
    assert sent["installation"] == hooked
    # Once, after the commit, outside any transaction, with the delivery there to see.
    assert seen == [(False, True)]


def test_a_receiver_that_fails_on_the_database_does_not_break_the_webhook(
    site: Site, sent_signals: SignalRecorder
) -> None:
    """Inside the request's transaction, PostgreSQL would refuse every later query of the
    request after the receiver's failed one; outside it, the delivery stands and is 204."""
    installation(KEY_A, HOOK_SECRET)
    Installation.objects.create(client_key=KEY_B)

    def failing_receiver(**kwargs: Any) -> None:
        Installation.objects.create(client_key=KEY_B)  # IntegrityError

    webhook_received.connect(failing_receiver, weak=False)
    try:
        assert deliver(site) == 204
    finally:
        webhook_received.disconnect(failing_receiver)
    assert len(delivery_rows()) == 1
    assert len(sent_signals.of(webhook_received)) == 1


def test_a_connect_from_the_landing_signals_after_the_commit(
    site: Site,
    site_settings: Any,
    sent_signals: SignalRecorder,
    seen_at_signal: list[dict[str, Any]],
) -> None:
    site_settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)
    landing = install_from_bitbucket(browser, site.url("/bitbucket/simulator/console/"))
    connected = connect_on_landing(browser, landing.page)
    assert connected.status == 303
    assert Installation.objects.get().user_id == user.pk
    # The landing's confirmation (to nobody), then the connection: each after its commit.
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None, user]
    assert seen_at_signal == [
        {"signal": installed, "in_transaction": False, "row_confirmed": True},
        {"signal": installed, "in_transaction": False, "row_confirmed": True},
    ]
