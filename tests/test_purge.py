"""``manage.py bitbucket_install_purge``: delete installations uninstalled > N days ago,
in locked batches, and say that a purged clientKey is trusted on first use again."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.signals import post_delete, pre_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bitbucket_install.management.commands import bitbucket_install_purge
from bitbucket_install.models import Installation, WebhookDelivery
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

TRUST_NOTE = (
    "A purged clientKey is trusted on first use again: its next unsigned `installed` "
    "callback sets a new shared secret.\n"
)

pytestmark = pytest.mark.django_db


def deleted(installations: int, deliveries: int = 0) -> str:
    """The command's report of a purge."""
    return (
        f"{installations} installation(s) deleted.\n"
        f"{deliveries} webhook delivery record(s) deleted.\n" + TRUST_NOTE
    )


def would_delete(installations: int, deliveries: int = 0) -> str:
    """The command's report of a dry run."""
    return (
        f"{installations} installation(s) would be deleted.\n"
        f"{deliveries} webhook delivery record(s) would be deleted.\n" + TRUST_NOTE
    )


@pytest.fixture
def rows() -> None:
    now = timezone.now()
    for client_key, days in [
        ("connection:installed", None),
        ("connection:1-day", 1),
        ("connection:29-days", 29),
        ("connection:31-days", 31),
        ("connection:89-days", 89),
        ("connection:91-days", 91),
        ("connection:400-days", 400),
    ]:
        Installation.objects.create(
            client_key=client_key,
            shared_secret="s",
            uninstalled_at=None if days is None else now - timedelta(days=days),
        )
    # An installation created long ago but still installed is never purged.
    Installation.objects.filter(client_key="connection:installed").update(
        created_at=now - timedelta(days=1000)
    )


def purge(*args: str) -> str:
    out = StringIO()
    call_command("bitbucket_install_purge", *args, stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(Installation.objects.values_list("client_key", flat=True))


@pytest.fixture
def delete_receivers() -> Iterator[list[str]]:
    """pre/post_delete receivers of Installation, as a project may connect: Django's
    delete then selects the rows before deleting them by primary key. The client keys
    each saw, in order."""
    seen: list[str] = []

    def receiver(signal: Any, instance: Installation, **kwargs: Any) -> None:
        seen.append(f"{'pre' if signal is pre_delete else 'post'} {instance.client_key}")

    pre_delete.connect(receiver, sender=Installation, weak=False)
    post_delete.connect(receiver, sender=Installation, weak=False)
    yield seen
    pre_delete.disconnect(receiver, sender=Installation)
    post_delete.disconnect(receiver, sender=Installation)


def test_default_is_90_days(rows: None) -> None:
    assert purge() == deleted(2)
    assert remaining() == {
        "connection:installed",
        "connection:1-day",
        "connection:29-days",
        "connection:31-days",
        "connection:89-days",
    }


def test_days(rows: None) -> None:
    assert purge("--days", "30") == deleted(4)
    assert remaining() == {
        "connection:installed",
        "connection:1-day",
        "connection:29-days",
    }


def test_zero_days_purges_every_uninstalled_row(rows: None) -> None:
    assert purge("--days=0") == deleted(6)
    assert remaining() == {"connection:installed"}


def test_dry_run_deletes_nothing(rows: None) -> None:
    before = installation_rows()
    assert purge("--days", "30", "--dry-run") == (would_delete(4))
    assert installation_rows() == before


def test_nothing_to_purge(rows: None) -> None:
    assert purge("--days", "1000") == deleted(0)
    assert len(remaining()) == 7


def test_negative_days_refused(rows: None) -> None:
    before = installation_rows()
    with pytest.raises(CommandError, match="must not be negative"):
        purge("--days", "-1")
    assert installation_rows() == before


def test_days_must_be_a_number(rows: None) -> None:
    before = installation_rows()
    with pytest.raises(CommandError):
        purge("--days", "ten")
    assert installation_rows() == before


@pytest.mark.parametrize("days", ["1000000000", "999999999", "800000"])
def test_days_out_of_range_refused(rows: None, days: str, sent_signals: SignalRecorder) -> None:
    before = installation_rows()
    with pytest.raises(CommandError, match=rf"^--days {days} is out of range: it must be at most"):
        purge("--days", days)
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_the_largest_days_the_error_names_works(rows: None) -> None:
    with pytest.raises(CommandError) as refused:
        purge("--days", "1000000000")
    found = re.search(r"at most (\d+) ", str(refused.value))
    assert found is not None
    at_most = found[1]
    before = installation_rows()
    assert purge("--days", at_most) == deleted(0)
    assert installation_rows() == before
    with pytest.raises(CommandError, match="out of range"):
        purge("--days", str(int(at_most) + 1))


def test_help_says_a_purged_client_key_is_trusted_on_first_use_again() -> None:
    command = bitbucket_install_purge.Command()
    help_text = " ".join(
        command.create_parser("manage.py", "bitbucket_install_purge").format_help().split()
    )
    assert "trusted on first use again" in help_text
    assert "its next unsigned `installed` callback sets a new shared secret" in help_text


def test_dry_run_counts_with_delete_receivers(rows: None, delete_receivers: list[str]) -> None:
    before = installation_rows()
    assert purge("--days", "0", "--dry-run") == would_delete(6)
    assert installation_rows() == before
    assert delete_receivers == []


def test_purges_in_locked_batches(
    rows: None, monkeypatch: pytest.MonkeyPatch, delete_receivers: list[str]
) -> None:
    monkeypatch.setattr(bitbucket_install_purge, "BATCH_SIZE", 4)
    with CaptureQueriesContext(connection) as queries:
        assert purge("--days", "0") == deleted(6)
    assert remaining() == {"connection:installed"}
    deletes = [
        query["sql"]
        for query in queries
        if query["sql"].startswith("DELETE") and "_installation" in query["sql"].split()[2]
    ]
    assert len(deletes) == 2  # 4 rows, then 2 (each with its deliveries, if any)
    # The project's receivers saw each purged row once.
    purged = [seen.split(" ", 1)[1] for seen in delete_receivers if seen.startswith("post")]
    assert sorted(purged) == sorted(
        [
            "connection:1-day",
            "connection:29-days",
            "connection:31-days",
            "connection:89-days",
            "connection:91-days",
            "connection:400-days",
        ]
    )


def test_a_row_reinstalled_after_the_batch_was_chosen_stays(
    rows: None, monkeypatch: pytest.MonkeyPatch, delete_receivers: list[str]
) -> None:
    """The delete re-checks each row of the batch: one re-installed after the batch was
    chosen (here, by hand, in between; concurrently the lock makes the re-install wait,
    see tests/concurrency/test_purge_races.py) is kept."""
    choose = bitbucket_install_purge.stale
    chosen: list[int] = []

    def stale_then_reinstall(before: Any) -> Any:
        if len(chosen) == 1:  # the batch was chosen: now its first row is re-installed
            Installation.objects.filter(client_key="connection:400-days").update(
                uninstalled_at=None, shared_secret="new-secret"
            )
        chosen.append(1)
        return choose(before)

    monkeypatch.setattr(bitbucket_install_purge, "stale", stale_then_reinstall)
    assert purge() == deleted(1)
    assert remaining() == {
        "connection:installed",
        "connection:1-day",
        "connection:29-days",
        "connection:31-days",
        "connection:89-days",
        "connection:400-days",
    }
    kept = Installation.objects.get(client_key="connection:400-days")
    assert kept.uninstalled_at is None
    assert kept.shared_secret == "new-secret"


# --- webhook delivery records ----------------------------------------------------------------


@pytest.fixture
def deliveries() -> None:
    """Delivery records of one installed installation, received 0 to 30 days ago."""
    installation = Installation.objects.create(client_key="connection:hooks", shared_secret="s")
    now = timezone.now()
    for number, days in enumerate([0, 1, 6, 8, 30]):
        WebhookDelivery.objects.create(
            installation=installation,
            request_uuid=uuid.UUID(int=number),
            event=f"repo:push_{days}",
            received_at=now - timedelta(days=days, minutes=1),
        )


def delivery_events() -> set[str]:
    return set(WebhookDelivery.objects.values_list("event", flat=True))


def test_delivery_records_older_than_a_week_are_deleted(deliveries: None) -> None:
    assert purge() == deleted(0, 2)
    assert delivery_events() == {"repo:push_0", "repo:push_1", "repo:push_6"}
    assert Installation.objects.filter(client_key="connection:hooks").exists()


def test_webhook_days(deliveries: None) -> None:
    assert purge("--webhook-days", "1") == deleted(0, 4)
    assert delivery_events() == {"repo:push_0"}
    assert purge("--webhook-days=0") == deleted(0, 1)
    assert delivery_events() == set()


def test_dry_run_counts_delivery_records(deliveries: None) -> None:
    assert purge("--webhook-days", "1", "--dry-run") == would_delete(0, 4)
    assert len(delivery_events()) == 5


@pytest.mark.parametrize(
    ("days", "error"),
    [
        ("-1", "--webhook-days must not be negative."),
        ("1000000000", "--webhook-days 1000000000 is out of range"),
    ],
)
def test_bad_webhook_days_refused(deliveries: None, days: str, error: str) -> None:
    with pytest.raises(CommandError, match=f"^{re.escape(error)}"):
        purge("--webhook-days", days)
    assert len(delivery_events()) == 5


def test_delivery_records_are_deleted_in_batches(
    deliveries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bitbucket_install_purge, "BATCH_SIZE", 3)
    with CaptureQueriesContext(connection) as queries:
        assert purge("--webhook-days", "0") == deleted(0, 5)
    deletes = [query["sql"] for query in queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 2  # 3 rows, then 2
    assert delivery_events() == set()


def test_a_purged_installation_takes_its_delivery_records(rows: None) -> None:
    stale = Installation.objects.get(client_key="connection:400-days")
    WebhookDelivery.objects.create(
        installation=stale, request_uuid=uuid.UUID(int=1), event="repo:push"
    )
    assert purge() == deleted(2)
    assert WebhookDelivery.objects.count() == 0


# --- --never-confirmed-days ---------------------------------------------------------------


@pytest.fixture
def unconfirmed_rows() -> None:
    """Installations made 10 days ago, each vouched for in one way, or in none."""
    from django.contrib.auth.models import User

    now = timezone.now()
    long_ago = now - timedelta(days=10)
    vouched: dict[str, dict[str, Any]] = {
        "connection:nobody": {},
        "connection:nobody-recent-callback": {"installed_at": now - timedelta(days=1)},
        "connection:confirmed": {"confirmed_at": long_ago},
        "connection:verified": {"verified_at": long_ago},
        "connection:by-a-flow": {"confirmed_flow": "b" * 64},
        "connection:connected": {"user": User.objects.create_user("ada")},
    }
    for client_key, fields in vouched.items():
        Installation.objects.create(
            client_key=client_key, shared_secret="s", **{"installed_at": long_ago, **fields}
        )
    Installation.objects.update(created_at=long_ago)
    Installation.objects.create(client_key="connection:nobody-new", shared_secret="s")


def test_never_confirmed_installations_are_purged_only_when_asked(
    unconfirmed_rows: None, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    assert purge() == deleted(0)
    assert installation_rows() == before

    assert purge("--never-confirmed-days", "7") == (
        "0 installation(s) deleted.\n"
        "1 never-confirmed installation(s) deleted.\n"
        "0 webhook delivery record(s) deleted.\n" + TRUST_NOTE
    )
    assert remaining() == {
        "connection:nobody-recent-callback",
        "connection:confirmed",
        "connection:verified",
        "connection:by-a-flow",
        "connection:connected",
        "connection:nobody-new",
    }
    assert sent_signals.none_sent


def test_never_confirmed_dry_run_counts_each_row_once(unconfirmed_rows: None) -> None:
    # Uninstalled long ago and never confirmed: the first rule deletes it, not the second.
    Installation.objects.filter(client_key="connection:nobody").update(
        uninstalled_at=timezone.now() - timedelta(days=100)
    )
    Installation.objects.create(
        client_key="connection:nobody-too",
        shared_secret="s",
        installed_at=timezone.now() - timedelta(days=10),
    )
    Installation.objects.filter(client_key="connection:nobody-too").update(
        created_at=timezone.now() - timedelta(days=10)
    )
    before = installation_rows()
    assert purge("--never-confirmed-days=7", "--dry-run") == (
        "1 installation(s) would be deleted.\n"
        "1 never-confirmed installation(s) would be deleted.\n"
        "0 webhook delivery record(s) would be deleted.\n" + TRUST_NOTE
    )
    assert installation_rows() == before
    assert purge("--never-confirmed-days=7").startswith(
        "1 installation(s) deleted.\n1 never-confirmed installation(s) deleted.\n"
    )


def test_bad_never_confirmed_days_refused(unconfirmed_rows: None) -> None:
    before = installation_rows()
    with pytest.raises(CommandError, match="--never-confirmed-days must not be negative"):
        purge("--never-confirmed-days", "-1")
    assert installation_rows() == before
