"""Where each Connect installation is in the move to Forge, and how the move went over time.

One database expression (``state_expression``) decides an installation's state: the
admin's column, its filter and the migration page's counts all read it, so they never
disagree. The figures of the migration page take a fixed number of queries whatever the
table's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from bitbucket_install.models import ForgeInstallation, Installation

CONNECT_ONLY = "connect"
PUSHED = "pushed"
FAILED = "failed"
LINKED = "linked"

# In the order of the move: the admin's filter and the migration page list them so.
STATES: dict[str, Promise] = {
    CONNECT_ONLY: _("Connect only"),
    PUSHED: _("Descriptor pushed"),
    FAILED: _("Push failed"),
    LINKED: _("Linked to Forge"),
}

# The annotation the admin's queryset carries: the state of each row.
STATE_ANNOTATION = "migration_state"

# How many days the migration page's progress covers at most.
PROGRESS_DAYS = 30


def linked_to_forge() -> Exists:
    """True for a Connect installation a Forge installation is linked to."""
    return Exists(ForgeInstallation.objects.filter(connect_installation=OuterRef("pk")))


def state_expression() -> Case:
    """The state of each installation. A link to Forge wins over the push's outcome: once
    the Forge app runs for the workspace, pushing the descriptor again is beside the
    point."""
    return Case(
        When(linked_to_forge(), then=Value(LINKED)),
        When(~Q(descriptor_push_error=""), then=Value(FAILED)),
        When(descriptor_pushed_at__isnull=False, then=Value(PUSHED)),
        default=Value(CONNECT_ONLY),
        output_field=CharField(),
    )


def with_state(queryset: QuerySet[Installation]) -> QuerySet[Installation]:
    annotated: QuerySet[Installation] = queryset.annotate(**{STATE_ANNOTATION: state_expression()})
    return annotated


def state_label(state: str) -> str:
    return str(STATES[state])


@dataclass(frozen=True)
class Day:
    """One day of the progress: how many installations had been pushed and linked by its
    end (cumulative), and how many were on that very day."""

    day: date
    pushed: int
    linked: int
    pushed_that_day: int
    linked_that_day: int


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    days: list[Day]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def first_link_time() -> Subquery:
    """When the first Forge installation was linked to each Connect installation."""
    return Subquery(
        ForgeInstallation.objects.filter(
            connect_installation=OuterRef("pk"), linked_at__isnull=False
        )
        .order_by("linked_at")
        .values("linked_at")[:1]
    )


def per_day(queryset: QuerySet[Installation], moment: str, since: datetime) -> dict[date, int]:
    """How many rows of ``queryset`` have ``moment`` on each local day from ``since``."""
    rows: QuerySet[Any, dict[str, Any]] = (
        queryset.filter(**{f"{moment}__gte": since})
        .annotate(day=TruncDate(moment))
        .order_by()
        .values("day")
        .annotate(number=Count("pk"))
    )
    return {row["day"]: row["number"] for row in rows}


def progress(today: date | None = None) -> Progress:
    """The counts per state of the installed installations, and their progress: each day
    of the last ``PROGRESS_DAYS`` (or since the first push, when that is more recent), how
    many had been pushed and linked. Six queries, whatever the number of rows."""
    today = today or timezone.localdate()
    installed = Installation.objects.installed()
    counted = (
        with_state(installed).order_by().values(STATE_ANNOTATION).annotate(number=Count("pk"))
    )
    counts = dict.fromkeys(STATES, 0)
    counts.update({row[STATE_ANNOTATION]: row["number"] for row in counted})

    linked = installed.annotate(first_linked_at=first_link_time()).filter(
        first_linked_at__isnull=False
    )
    pushed = installed.filter(descriptor_pushed_at__isnull=False)
    first_pushed = pushed.order_by("descriptor_pushed_at").values_list(
        "descriptor_pushed_at", flat=True
    )[:1]
    first_day = today - timedelta(days=PROGRESS_DAYS - 1)
    if first_pushed:
        first_day = max(first_day, min(timezone.localdate(first_pushed[0]), today))
    since = timezone.make_aware(datetime.combine(first_day, time.min))

    pushed_before = pushed.filter(descriptor_pushed_at__lt=since).count()
    linked_before = linked.filter(first_linked_at__lt=since).count()
    pushed_per_day = per_day(pushed, "descriptor_pushed_at", since)
    linked_per_day = per_day(linked, "first_linked_at", since)

    days = []
    pushed_total, linked_total = pushed_before, linked_before
    for offset in range((today - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        pushed_total += pushed_per_day.get(day, 0)
        linked_total += linked_per_day.get(day, 0)
        days.append(
            Day(
                day=day,
                pushed=pushed_total,
                linked=linked_total,
                pushed_that_day=pushed_per_day.get(day, 0),
                linked_that_day=linked_per_day.get(day, 0),
            )
        )
    return Progress(counts=counts, days=days)
