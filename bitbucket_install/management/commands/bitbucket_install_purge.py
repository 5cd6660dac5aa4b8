"""``manage.py bitbucket_install_purge``: delete installations uninstalled long ago.

Each batch is one transaction that locks the rows chosen for it, re-checks them and
deletes those still stale: a clientKey re-installed while the command runs is either
re-installed before the lock (and no longer stale, so kept) or waits for the batch to
commit (and then installs afresh). Without the lock, Django's delete (which selects the
rows first whenever a delete signal has a receiver, then deletes them by primary key)
would also delete a row re-installed in between.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from bitbucket_install.models import Installation, InstallationQuerySet

# Rows locked and deleted per transaction: a large purge never holds one giant lock.
BATCH_SIZE = 500

TRUST_ON_FIRST_USE = (
    "A purged clientKey is trusted on first use again: its next unsigned `installed` "
    "callback sets a new shared secret."
)


def cutoff(days: int) -> datetime:
    """The moment ``days`` days ago, or CommandError when there is no such moment."""
    if days < 0:
        raise CommandError("--days must not be negative.")
    now = timezone.now()
    try:
        return now - timedelta(days=days)
    except OverflowError:
        at_most = (now - datetime.min.replace(tzinfo=now.tzinfo)).days
        raise CommandError(
            f"--days {days} is out of range: it must be at most {at_most} "
            "(the cutoff cannot be before the year 1)."
        ) from None


def stale(before: datetime) -> InstallationQuerySet:
    rows: InstallationQuerySet = Installation.objects.filter(uninstalled_at__lt=before)
    return rows


def next_batch(before: datetime) -> list[str]:
    """The client keys of up to ``BATCH_SIZE`` installations uninstalled before ``before``."""
    return list(stale(before).order_by("pk").values_list("client_key", flat=True)[:BATCH_SIZE])


def delete_batch(before: datetime, client_keys: list[str]) -> int:
    """Delete those of ``client_keys`` still uninstalled before ``before``; how many."""
    with transaction.atomic():
        # Locked by clientKey, as the lifecycle callbacks lock their row: on MariaDB/MySQL
        # a lock taken through the primary key first would deadlock with a callback that
        # holds the clientKey's index entry and waits for the row. Re-checked under the
        # lock: a row re-installed since it was chosen is not stale any more.
        locked = list(
            stale(before)
            .filter(client_key__in=client_keys)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        _, deleted_by_model = Installation.objects.filter(pk__in=locked).delete()
    deleted: int = deleted_by_model.get(Installation._meta.label, 0)
    return deleted


class Command(BaseCommand):
    help = (
        "Delete installations uninstalled more than --days days ago, with their shared "
        f"secrets. {TRUST_ON_FIRST_USE}"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=90, help="Default: 90.")
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, days: int, dry_run: bool, **options: Any) -> None:
        before = cutoff(days)
        if dry_run:
            self.report(f"{stale(before).count()} installation(s) would be deleted.")
            return
        total = 0
        while client_keys := next_batch(before):
            total += delete_batch(before, client_keys)
        self.report(f"{total} installation(s) deleted.")

    def report(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.write(TRUST_ON_FIRST_USE)
