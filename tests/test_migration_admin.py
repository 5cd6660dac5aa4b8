"""The move to Forge in the admin: the state of each installation (column, change page,
filter), and the migration page (counts per state, progress by day, chart and table),
in a fixed number of queries, for staff who may view installations only."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bitbucket_install import migration
from bitbucket_install.admin_chart import chart
from bitbucket_install.models import ForgeInstallation, Installation
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.test_admin import CHANGELIST, change_url, listed, readonly_value

pytestmark = pytest.mark.django_db

MIGRATION = reverse("admin:bitbucket_install_installation_migration")
TODAY = date(2026, 11, 30)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=dt_timezone.utc)


def make(client_key: str, **fields: Any) -> Installation:
    row: Installation = Installation.objects.create(
        client_key=client_key, shared_secret="s" * 32, **fields
    )
    return row


def link(installation: Installation, number: int, linked_at: datetime | None) -> None:
    ForgeInstallation.objects.create(
        installation_id=f"ari:cloud:ecosystem::installation/{installation.pk}-{number}",
        app_id="ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c",
        connect_installation=installation,
        linked_at=linked_at,
    )


@pytest.fixture
def states() -> dict[str, Installation]:
    """One installation in each state, and the cases where two facts meet."""
    rows = {
        "connect": make("connection:1"),
        "pushed": make("connection:2", descriptor_pushed_at=at(TODAY - timedelta(days=2))),
        "failed": make("connection:3", descriptor_push_error="403 Improper authentication."),
        "refailed": make(
            "connection:4",
            descriptor_pushed_at=at(TODAY - timedelta(days=2)),
            descriptor_push_error="404 x",
        ),
        "linked": make("connection:5", descriptor_pushed_at=at(TODAY - timedelta(days=1))),
        # The link wins over a failed push, and over no push at all.
        "linked_failed": make("connection:6", descriptor_push_error="500 x"),
    }
    link(rows["linked"], 1, at(TODAY))
    link(rows["linked_failed"], 1, at(TODAY))
    return rows


EXPECTED = {
    "connect": "Connect only",
    "pushed": "Descriptor pushed",
    "failed": "Push failed",
    "refailed": "Push failed",
    "linked": "Linked to Forge",
    "linked_failed": "Linked to Forge",
}


def column(content: str, client_key: str) -> str:
    found = re.search(
        rf"{re.escape(client_key)}</a></th>.*?<td class=\"field-forge_migration\">(.*?)</td>",
        content,
        re.DOTALL,
    )
    assert found is not None, client_key
    return found[1]


# --- the state of each installation ---------------------------------------------------------


def test_the_column_shows_each_state(
    admin_client: Client, states: dict[str, Installation]
) -> None:
    response = admin_client.get(CHANGELIST)
    content = response.content.decode()
    headers = [header["text"] for header in response.context["result_headers"]][1:]
    assert headers == [
        "client key",
        "workspace",
        "connected user",
        "created",
        "Forge",
        "status",
    ]
    for name, label in EXPECTED.items():
        assert column(content, states[name].client_key) == label


def test_the_column_costs_no_query_per_row(
    admin_client: Client, states: dict[str, Installation]
) -> None:
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST)
    for number in range(20):
        row = make(f"connection:more-{number}", descriptor_push_error="x" if number % 2 else "")
        if number % 3 == 0:
            link(row, 1, at(TODAY))
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 26
    assert len(many.captured_queries) == len(few.captured_queries)


def test_the_change_page_shows_the_state(
    admin_client: Client, states: dict[str, Installation]
) -> None:
    for name, label in EXPECTED.items():
        content = admin_client.get(change_url(states[name])).content.decode()
        assert readonly_value(content, "forge_migration_state") == label
        assert "Forge migration" in content


@pytest.mark.parametrize(
    ("choice", "names"),
    [
        ("connect", {"connect"}),
        ("pushed", {"pushed"}),
        ("failed", {"failed", "refailed"}),
        ("linked", {"linked", "linked_failed"}),
    ],
)
def test_the_filter_agrees_with_the_column(
    admin_client: Client, states: dict[str, Installation], choice: str, names: set[str]
) -> None:
    assert listed(admin_client, f"?descriptor_push={choice}") == {
        states[name].client_key for name in names
    }
    # Each filtered row says the state it was filtered by.
    content = admin_client.get(f"{CHANGELIST}?descriptor_push={choice}").content.decode()
    for name in names:
        assert column(content, states[name].client_key) == str(migration.STATES[choice])


def test_the_filter_lists_the_four_states(
    admin_client: Client, states: dict[str, Installation]
) -> None:
    content = admin_client.get(CHANGELIST).content.decode()
    for label in ("Connect only", "Descriptor pushed", "Push failed", "Linked to Forge"):
        assert f">{label}</a>" in content
    assert len(listed(admin_client, "?descriptor_push=other")) == len(states)


def test_the_changelist_links_to_the_migration_page(
    admin_client: Client, states: dict[str, Installation]
) -> None:
    content = admin_client.get(CHANGELIST).content.decode()
    assert f'<a href="{MIGRATION}">Migration to Forge</a>' in content


# --- the migration page ---------------------------------------------------------------------


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> date:
    """The page's days end on TODAY; the days of stored times are read as before."""
    real_localdate = timezone.localdate

    def localdate(value: datetime | None = None) -> date:
        return TODAY if value is None else real_localdate(value)

    monkeypatch.setattr(timezone, "localdate", localdate)
    return TODAY


def test_counts_per_state_of_installed_installations(
    admin_client: Client, states: dict[str, Installation], today: date
) -> None:
    # Uninstalled: left out of every number, whatever its state.
    gone = make("connection:gone", uninstalled_at=at(TODAY), descriptor_pushed_at=at(TODAY))
    link(gone, 1, at(TODAY))
    response = admin_client.get(MIGRATION)
    assert response.status_code == 200
    assert response.context["progress"].counts == {
        "connect": 1,
        "pushed": 1,
        "failed": 2,
        "linked": 2,
    }
    content = response.content.decode()
    assert "Installed installations only" in content
    table = re.search(r'<table id="bbi-migration-states">(.*?)</table>', content, re.DOTALL)
    assert table is not None
    cells = re.findall(
        r'<a href="([^"]+)">([^<]+)</a></th><td class="bbi-number">(\d+)</td>', table[1]
    )
    assert cells == [
        (f"{CHANGELIST}?status=installed&amp;descriptor_push=connect", "Connect only", "1"),
        (f"{CHANGELIST}?status=installed&amp;descriptor_push=pushed", "Descriptor pushed", "1"),
        (f"{CHANGELIST}?status=installed&amp;descriptor_push=failed", "Push failed", "2"),
        (f"{CHANGELIST}?status=installed&amp;descriptor_push=linked", "Linked to Forge", "2"),
    ]
    assert 'Total</th><td class="bbi-number">6</td>' in table[1]


def test_progress_is_cumulative_per_day_since_the_first_push(
    admin_client: Client, states: dict[str, Installation], today: date
) -> None:
    # A second Forge installation of a linked workspace (another environment), earlier:
    # the workspace counts once, on the day of its first link.
    link(states["linked"], 2, at(TODAY - timedelta(days=1), hour=1))
    link(states["connect"], 1, None)  # no time of link recorded: not in the series
    response = admin_client.get(MIGRATION)
    days = response.context["progress"].days
    assert [
        (day.day, day.pushed_that_day, day.pushed, day.linked_that_day, day.linked) for day in days
    ] == [
        (TODAY - timedelta(days=2), 2, 2, 0, 0),
        (TODAY - timedelta(days=1), 1, 3, 1, 1),
        (TODAY, 0, 3, 1, 2),
    ]
    content = response.content.decode()
    table = re.search(r'<table id="bbi-migration-days">(.*?)</table>', content, re.DOTALL)
    assert table is not None
    rows = re.findall(
        r'<time datetime="([\d-]+)">.*?</time></th>\s*'
        + r"\s*".join([r'<td class="bbi-number">(\d+)</td>'] * 4),
        table[1],
    )
    assert rows == [
        ("2026-11-28", "2", "2", "0", "0"),
        ("2026-11-29", "1", "3", "1", "1"),
        ("2026-11-30", "0", "3", "1", "2"),
    ]
    # The chart: one labelled group of bars a day, with the same numbers.
    titles = re.findall(r"<g>\s*<title>([^<]+)</title>", content)
    assert titles == [
        "11/28/2026: descriptor pushed 2, linked to Forge 0",
        "11/29/2026: descriptor pushed 3, linked to Forge 1",
        "11/30/2026: descriptor pushed 3, linked to Forge 2",
    ]
    assert 'role="img" aria-labelledby="bbi-chart-title bbi-chart-desc"' in content
    assert "<script" not in content.split('id="content-main"')[1]


def test_progress_covers_thirty_days_at_most(admin_client: Client, today: date) -> None:
    make("connection:old", descriptor_pushed_at=at(TODAY - timedelta(days=90)))
    make("connection:recent", descriptor_pushed_at=at(TODAY - timedelta(days=10)))
    linked = make("connection:linked-long-ago")
    link(linked, 1, at(TODAY - timedelta(days=60)))
    days = admin_client.get(MIGRATION).context["progress"].days
    assert len(days) == migration.PROGRESS_DAYS
    assert days[0].day == TODAY - timedelta(days=29)
    # What happened before the first day is in the totals from the start.
    assert (days[0].pushed, days[0].linked) == (1, 1)
    assert (days[-1].pushed, days[-1].linked) == (2, 1)
    assert sum(day.pushed_that_day for day in days) == 1


def test_progress_without_any_push_is_the_last_thirty_days_of_zeros(
    admin_client: Client, today: date
) -> None:
    make("connection:1")
    response = admin_client.get(MIGRATION)
    days = response.context["progress"].days
    assert len(days) == migration.PROGRESS_DAYS
    assert all(day.pushed == day.linked == 0 for day in days)
    assert response.context["chart"].scale == 1
    assert response.context["progress"].counts == {
        "connect": 1,
        "pushed": 0,
        "failed": 0,
        "linked": 0,
    }


def test_a_push_dated_in_the_future_ends_the_series_today(
    admin_client: Client, today: date
) -> None:
    # A clock ahead of this one: the series still ends today, and the push is not lost
    # from the state counts.
    make("connection:1", descriptor_pushed_at=at(TODAY + timedelta(days=3)))
    response = admin_client.get(MIGRATION)
    days = response.context["progress"].days
    assert [day.day for day in days] == [TODAY]
    assert response.context["progress"].counts["pushed"] == 1


def test_the_page_takes_a_fixed_number_of_queries(
    admin_client: Client,
    today: date,
    django_assert_num_queries: Any,
) -> None:
    def rows(start: int, number: int) -> None:
        for index in range(start, start + number):
            row = make(
                f"connection:{index}",
                descriptor_pushed_at=at(TODAY - timedelta(days=index % 40)),
                descriptor_push_error="x" if index % 5 == 0 else "",
            )
            if index % 2:
                link(row, 1, at(TODAY - timedelta(days=index % 35)))

    rows(0, 3)
    # The session, the user, then the page's six.
    with django_assert_num_queries(8):
        admin_client.get(MIGRATION)
    rows(3, 60)
    with django_assert_num_queries(8):
        response = admin_client.get(MIGRATION)
    assert response.context["progress"].total == 63


def test_the_chart_scales_to_the_largest_number() -> None:
    days = [
        migration.Day(day=TODAY, pushed=4, linked=2, pushed_that_day=4, linked_that_day=2),
    ]
    drawn = chart(days)
    assert drawn.scale == 4
    (bar,) = drawn.bars
    assert bar.pushed_y == drawn.top
    assert bar.pushed_height == drawn.baseline - drawn.top
    assert bar.linked_height == (drawn.baseline - drawn.top) / 2
    assert bar.linked_x == bar.x + bar.width
    assert chart([]).bars == []


def test_the_page_uses_the_admin_layout(admin_client: Client, today: date) -> None:
    response = admin_client.get(MIGRATION)
    names = [template.name for template in response.templates]
    assert "admin/base_site.html" in names
    content = response.content.decode()
    assert "<h1>Migration to Forge</h1>" in content
    assert f'<a href="{CHANGELIST}">Installations</a>' in content
    assert "viewBox=" in content
    assert "http://" not in re.sub(r'xmlns="[^"]+"', "", content.split('id="content-main"')[1])


# --- who may see it ---------------------------------------------------------------------------


def staff(django_user_model: type[User], *codenames: str) -> Client:
    user = django_user_model.objects.create_user(f"staff-{len(codenames)}", password="pw")
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_sees_the_page(
    django_user_model: type[User], states: dict[str, Installation], today: date
) -> None:
    response = staff(django_user_model, "view_installation").get(MIGRATION)
    assert response.status_code == 200


def test_non_staff_are_sent_to_log_in(
    client: Client,
    django_user_model: type[User],
    states: dict[str, Installation],
    sent_signals: SignalRecorder,
) -> None:
    before = installation_rows()
    response = client.get(MIGRATION)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    user = django_user_model.objects.create_user("plain", password="pw")
    client.force_login(user)
    response = client.get(MIGRATION)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_staff_without_the_view_permission_are_refused(
    django_user_model: type[User],
    states: dict[str, Installation],
    sent_signals: SignalRecorder,
) -> None:
    before = installation_rows()
    forge_before = list(ForgeInstallation.objects.order_by("pk").values())
    client = staff(django_user_model, "view_forgeinstallation")
    response = client.get(MIGRATION)
    assert response.status_code == 403
    assert b"Connect only" not in response.content
    assert client.post(MIGRATION).status_code == 403
    assert installation_rows() == before
    assert list(ForgeInstallation.objects.order_by("pk").values()) == forge_before
    assert sent_signals.none_sent


def test_the_page_in_french(admin_client: Client, today: date) -> None:
    make("connection:1", descriptor_pushed_at=at(TODAY))
    response = admin_client.get(MIGRATION, headers={"accept-language": "fr"})
    content = response.content.decode()
    assert "Migration vers Forge" in content
    # Numbers in the SVG keep a point, whatever the language's decimal separator.
    assert not re.search(r'(x|y|width|height)="\d+,\d', content)
