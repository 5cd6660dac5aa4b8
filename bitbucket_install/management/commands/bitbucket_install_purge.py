"""``manage.py bitbucket_install_purge``: delete installations uninstalled long ago, and
the records of webhook deliveries older than a week (``--webhook-days``); with
``--never-confirmed-days``, also the installations nothing but their own callbacks ever
vouched for (made up by unsigned callbacks, or genuine and never connected by anyone).

Each batch is one transaction that locks the rows chosen for it, re-checks them and
deletes those still stale: a clientKey re-installed while the command runs is either
re-installed before the lock (and no longer stale, so kept) or waits for the batch to
commit (and then installs afresh). Without the lock, Django's delete (which selects the
rows first whenever a delete signal has a receiver, then deletes them by primary key)
would also delete a row re-installed in between.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.utils import timezone

from bitbucket_install.models import Installation, InstallationQuerySet, WebhookDelivery

# Rows locked and deleted per transaction: a large purge never holds one giant lock.
BATCH_SIZE = 500

TRUST_ON_FIRST_USE = (
    "A purged clientKey is trusted on first use again: its next unsigned `installed` "
    "callback sets a new shared secret."
)


def cutoff(days: int, option: str = "--days") -> datetime:
    """The moment ``days`` days ago, or CommandError (naming ``option``) when there is no
    such moment."""
    if days < 0:
        raise CommandError(f"{option} must not be negative.")
    now = timezone.now()
    try:
        return now - timedelta(days=days)
    except OverflowError:
        at_most = (now - datetime.min.replace(tzinfo=now.tzinfo)).days
        raise CommandError(
            f"{option} {days} is out of range: it must be at most {at_most} "
            "(the cutoff cannot be before the year 1)."
        ) from None


def stale(before: datetime) -> InstallationQuerySet:
    rows: InstallationQuerySet = Installation.objects.filter(uninstalled_at__lt=before)
    return rows


def never_confirmed(before: datetime) -> InstallationQuerySet:
    """Installations created before ``before`` that no return trip confirmed, Bitbucket
    never vouched for and nobody connected, and whose last callback is older too."""
    rows: InstallationQuerySet = Installation.objects.filter(
        models.Q(installed_at__isnull=True) | models.Q(installed_at__lt=before),
        created_at__lt=before,
        user__isnull=True,
        confirmed_flow__isnull=True,
        **{f"{name}__isnull": True for name in Installation.CONFIRMATION_FIELDS},
    )
    return rows


Selection = Callable[[datetime], InstallationQuerySet]


def next_batch(before: datetime, selection: Selection) -> list[str]:
    """The client keys of up to ``BATCH_SIZE`` installations of ``selection(before)``."""
    rows = selection(before).order_by("pk")
    return list(rows.values_list("client_key", flat=True)[:BATCH_SIZE])


def delete_batch(before: datetime, client_keys: list[str], selection: Selection) -> int:
    """Delete those of ``client_keys`` still in ``selection(before)``; how many."""
    with transaction.atomic():
        # Locked by clientKey, as the lifecycle callbacks lock their row: on MariaDB/MySQL
        # a lock taken through the primary key first would deadlock with a callback that
        # holds the clientKey's index entry and waits for the row. Re-checked under the
        # lock: a row re-installed since it was chosen is not stale any more.
        locked = list(
            selection(before)
            .filter(client_key__in=client_keys)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        _, deleted_by_model = Installation.objects.filter(pk__in=locked).delete()
    deleted: int = deleted_by_model.get(Installation._meta.label, 0)
    return deleted


def old_deliveries(before: datetime) -> models.QuerySet[WebhookDelivery]:
    rows: models.QuerySet[WebhookDelivery] = WebhookDelivery.objects.filter(received_at__lt=before)
    return rows


def delete_old_deliveries(before: datetime) -> int:
    """Delete the delivery records received before ``before``, ``BATCH_SIZE`` at a time;
    how many. (Nothing refers to them: a redelivery after this is signalled again.)"""
    total = 0
    while batch := list(old_deliveries(before).values_list("pk", flat=True)[:BATCH_SIZE]):
        deleted, _ = WebhookDelivery.objects.filter(pk__in=batch).delete()
        total += deleted
    return total


class Command(BaseCommand):
    help = (
        "Delete installations uninstalled more than --days days ago, with their shared "
        "secrets, and the records of webhook deliveries received more than --webhook-days "
        f"days ago (a redelivery of one is then signalled again). {TRUST_ON_FIRST_USE}"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=90, help="Default: 90.")
        parser.add_argument(
            "--webhook-days",
            type=int,
            default=7,
            help="Default: 7 (Bitbucket redelivers within minutes).",
        )
        parser.add_argument(
            "--never-confirmed-days",
            type=int,
            default=None,
            help=(
                "Also delete installations created more than this many days ago that "
                "nothing ever confirmed (no return trip, no word from Bitbucket, nobody "
                "connected): rows made by unsigned callbacks of anyone, and genuine "
                "installations nobody connected. Default: off."
            ),
        )
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(
        self,
        *args: Any,
        days: int,
        webhook_days: int,
        never_confirmed_days: int | None,
        dry_run: bool,
        **options: Any,
    ) -> None:
        before = cutoff(days)
        deliveries_before = cutoff(webhook_days, "--webhook-days")
        unconfirmed_before = (
            None
            if never_confirmed_days is None
            else cutoff(never_confirmed_days, "--never-confirmed-days")
        )
        if dry_run:
            lines = [
                f"{stale(before).count()} installation(s) would be deleted.",
                f"{old_deliveries(deliveries_before).count()} webhook delivery record(s) "
                "would be deleted.",
            ]
            if unconfirmed_before is not None:
                count = never_confirmed(unconfirmed_before).exclude(uninstalled_at__lt=before)
                lines.insert(
                    1, f"{count.count()} never-confirmed installation(s) would be deleted."
                )
            self.report(*lines)
            return
        deliveries = delete_old_deliveries(deliveries_before)
        total = 0
        while client_keys := next_batch(before, stale):
            total += delete_batch(before, client_keys, stale)
        lines = [f"{total} installation(s) deleted."]
        if unconfirmed_before is not None:
            unconfirmed = 0
            while client_keys := next_batch(unconfirmed_before, never_confirmed):
                unconfirmed += delete_batch(unconfirmed_before, client_keys, never_confirmed)
            lines.append(f"{unconfirmed} never-confirmed installation(s) deleted.")
        self.report(*lines, f"{deliveries} webhook delivery record(s) deleted.")

    def report(self, *lines: str) -> None:
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(TRUST_ON_FIRST_USE)
