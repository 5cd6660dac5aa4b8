from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from bitbucket_install.models import Installation


class Command(BaseCommand):
    help = "Delete installations uninstalled more than --days days ago (their secrets too)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=90, help="Default: 90.")
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, days: int, dry_run: bool, **options: Any) -> None:
        if days < 0:
            raise CommandError("--days must not be negative.")
        stale = Installation.objects.filter(
            uninstalled_at__lt=timezone.now() - timedelta(days=days)
        )
        if dry_run:
            self.stdout.write(f"{stale.count()} installation(s) would be deleted.")
            return
        deleted, _ = stale.delete()
        self.stdout.write(f"{deleted} installation(s) deleted.")
