"""``manage.py bitbucket_install_purge``: delete installations uninstalled > N days ago."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from bitbucket_install.models import Installation
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db


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


def test_default_is_90_days(rows: None) -> None:
    assert purge() == "2 installation(s) deleted.\n"
    assert remaining() == {
        "connection:installed",
        "connection:1-day",
        "connection:29-days",
        "connection:31-days",
        "connection:89-days",
    }


def test_days(rows: None) -> None:
    assert purge("--days", "30") == "4 installation(s) deleted.\n"
    assert remaining() == {
        "connection:installed",
        "connection:1-day",
        "connection:29-days",
    }


def test_zero_days_purges_every_uninstalled_row(rows: None) -> None:
    assert purge("--days=0") == "6 installation(s) deleted.\n"
    assert remaining() == {"connection:installed"}


def test_dry_run_deletes_nothing(rows: None) -> None:
    before = installation_rows()
    assert purge("--days", "30", "--dry-run") == "4 installation(s) would be deleted.\n"
    assert installation_rows() == before


def test_nothing_to_purge(rows: None) -> None:
    assert purge("--days", "1000") == "0 installation(s) deleted.\n"
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
