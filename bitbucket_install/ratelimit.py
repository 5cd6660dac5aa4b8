"""How long to wait before retrying a 429, and when to stop.

Pure code. Bitbucket's 429s usually carry no ``Retry-After`` (and no rate-limit headers on
JWT calls): the client honours the header when it comes, and otherwise backs off
exponentially with jitter. Retries are bounded in number and in total wait, and every
wait is at least ``MIN_WAIT``: never a tight loop.
"""

from __future__ import annotations

import re
from datetime import timezone
from email.utils import parsedate_to_datetime

MIN_WAIT = 1.0
BACKOFF_BASE = 2.0
BACKOFF_CAP = 30.0
# delta-seconds: digits only; ten of them are three centuries, more is nonsense.
DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks for (delta-seconds or an
    HTTP date), 0 for a date in the past, None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    # Python 3.10 raises TypeError for some malformed dates, later versions ValueError.
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # An HTTP date is GMT; one written with "-0000" parses as naive, and is GMT too.
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def backoff(attempt: int, fraction: float) -> float:
    """The wait before retry ``attempt + 1`` without ``Retry-After``: 2, 4, 8... seconds
    up to ``BACKOFF_CAP``, of which a random ``fraction`` (0 to 1) of the second half is
    kept, so that many clients limited at once do not come back at once."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (1 << min(attempt, 16)))
    return ceiling * (1 + min(max(fraction, 0.0), 1.0)) / 2


def next_wait(
    *,
    attempt: int,
    retries: int,
    waited: float,
    max_wait: float,
    asked: float | None,
    fraction: float,
) -> float | None:
    """Seconds to wait before retrying after the 429 of attempt ``attempt`` (0 for the
    first), or None to give up: no retries left, or the wait would take the call past
    ``max_wait`` seconds of waiting in all. A ``Retry-After`` too long is given up on at
    once: waiting less would only earn another 429."""
    if attempt >= retries:
        return None
    wait = max(MIN_WAIT, asked if asked is not None else backoff(attempt, fraction))
    if waited + wait > max_wait:
        return None
    return wait
