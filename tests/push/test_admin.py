"""The push's outcome in the admin: read-only on the change page, and the changelist's
"Forge migration" filter (Connect only, descriptor pushed, push failed; linked to Forge is
in tests/test_migration_admin.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.test import Client

from bitbucket_install.models import Installation
from tests.test_admin import CHANGELIST, change_url, listed

pytestmark = pytest.mark.django_db

PUSHED_AT = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def migrating() -> dict[str, Installation]:
    def make(client_key: str, **fields: object) -> Installation:
        row: Installation = Installation.objects.create(
            client_key=client_key, shared_secret="s" * 32, **fields
        )
        return row

    return {
        "connect": make("connection:1"),
        "pushed": make("connection:2", descriptor_pushed_at=PUSHED_AT),
        "failed": make("connection:3", descriptor_push_error="403 Improper authentication."),
        "refailed": make(
            "connection:4", descriptor_pushed_at=PUSHED_AT, descriptor_push_error="404 x"
        ),
    }


def test_the_filter_by_migration_state(
    admin_client: Client, migrating: dict[str, Installation]
) -> None:
    assert listed(admin_client, "?descriptor_push=connect") == {"connection:1"}
    assert listed(admin_client, "?descriptor_push=pushed") == {"connection:2"}
    assert listed(admin_client, "?descriptor_push=failed") == {"connection:3", "connection:4"}
    assert len(listed(admin_client)) == 4
    page = admin_client.get(CHANGELIST).content.decode()
    for label in ("Forge migration", "Connect only", "Descriptor pushed", "Push failed"):
        assert label in page


def test_an_unknown_choice_filters_nothing(
    admin_client: Client, migrating: dict[str, Installation]
) -> None:
    # Django answers an unknown lookup of a simple filter with every row.
    assert len(listed(admin_client, "?descriptor_push=other")) == 4


def test_the_change_page_shows_the_outcome_read_only(
    admin_client: Client, migrating: dict[str, Installation]
) -> None:
    response = admin_client.get(change_url(migrating["refailed"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Descriptor pushed" in page
    assert "Descriptor push error" in page
    assert "404 x" in page
    form = response.context["adminform"].form
    assert "descriptor_pushed_at" not in form.fields
    assert "descriptor_push_error" not in form.fields

    fields = ("descriptor_pushed_at", "descriptor_push_error")
    before = Installation.objects.values(*fields).get(pk=migrating["refailed"].pk)
    admin_client.post(
        change_url(migrating["refailed"]),
        {"descriptor_push_error": "", "descriptor_pushed_at": "", "_save": "Save"},
    )
    assert Installation.objects.values(*fields).get(pk=migrating["refailed"].pk) == before
    assert before == {"descriptor_pushed_at": PUSHED_AT, "descriptor_push_error": "404 x"}
