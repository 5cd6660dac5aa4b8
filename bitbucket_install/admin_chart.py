"""The geometry of the migration page's chart, drawn by the server as inline SVG: no
JavaScript, no library, and the same numbers as the table beside it."""

from __future__ import annotations

from dataclasses import dataclass

from bitbucket_install.migration import Day

# The drawing's own units: the SVG scales to its box through its viewBox.
WIDTH = 400
HEIGHT = 180
# Room at the left for the scale's labels, at the bottom for the first and last day.
LEFT = 36
BOTTOM = 24
TOP = 10


@dataclass(frozen=True)
class Bar:
    day: Day
    x: float
    width: float
    linked_x: float
    pushed_y: float
    pushed_height: float
    linked_y: float
    linked_height: float


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: int
    top: int
    scale: int
    bars: list[Bar]


def chart(days: list[Day]) -> Chart:
    """Two bars a day, pushed then linked, cumulative, over a scale from 0 to the largest
    number (at least 1, so an empty chart still has a scale)."""
    scale = max([1, *(day.pushed for day in days), *(day.linked for day in days)])
    baseline = HEIGHT - BOTTOM
    room = baseline - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    width = slot * 0.4
    bars = []
    for index, day in enumerate(days):
        x = LEFT + index * slot + slot * 0.1
        pushed = room * day.pushed / scale
        linked = room * day.linked / scale
        bars.append(
            Bar(
                day=day,
                x=round(x, 2),
                width=round(width, 2),
                linked_x=round(x + width, 2),
                pushed_y=round(baseline - pushed, 2),
                pushed_height=round(pushed, 2),
                linked_y=round(baseline - linked, 2),
                linked_height=round(linked, 2),
            )
        )
    return Chart(
        width=WIDTH, height=HEIGHT, left=LEFT, baseline=baseline, top=TOP, scale=scale, bars=bars
    )
