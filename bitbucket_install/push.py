"""Pushing the descriptor to installations: ``PUT /2.0/addon`` with ``{}`` asks Bitbucket
to read the installation's descriptor again from its URL (how ``forgeAppId`` and
``forgeAppLink`` reach installations made before they were set).

``push_descriptor(installation)`` pushes to one installation through the API client and
records the outcome on its row: ``descriptor_pushed_at`` when Bitbucket accepted it (and
``descriptor_push_error`` cleared), else the error, short and cleaned (Bitbucket's status
and message, or why nothing was sent), never a token or secret. A 429 is retried by the
client within its bounds; any other refusal is recorded at once, not retried.
``push_all`` does it for many, on a bounded number of threads; ``pending`` and
``recorded`` select and count what the command works on. Used by
``bitbucket_install_push_descriptor`` and the ``push_installation_descriptor`` task.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import httpx
from django.db.models import Q
from django.utils import timezone

from bitbucket_install.client import BitbucketClient
from bitbucket_install.exceptions import BitbucketAPIError, RequestNotSent
from bitbucket_install.identifiers import clean_display_text
from bitbucket_install.models import Installation, InstallationQuerySet
from bitbucket_install.verification import printable

logger = logging.getLogger("bitbucket_install")

PUSH_PATH = "/2.0/addon"
MAX_ERROR_LENGTH = 255  # Installation.descriptor_push_error's max_length
# Rows read per query: memory stays that of one page whatever the table's size.
PAGE_SIZE = 500
# Seconds the reader waits on the threads before it records what they have done.
WAIT = 0.05
# What the client needs to sign and send (the public key and JSON fields are never read).
SENDING_FIELDS = (
    "client_key",
    "addon_key",
    "shared_secret",
    "base_url",
    "base_api_url",
    "uninstalled_at",
)

# How the client waits out a 429 (one name, so that tests need not wait).
sleep: Callable[[float], None] = time.sleep

Transport = httpx.BaseTransport | None
Outcome = Callable[[Installation, "str | None"], None]


def push_descriptor(installation: Installation, *, transport: Transport = None) -> str | None:
    """Push the descriptor to ``installation`` and record the outcome: None when
    Bitbucket accepted it, else the error text that was recorded."""
    error = send(installation, transport=transport)
    record([(installation, error)])
    return error


def send(installation: Installation, *, transport: Transport = None) -> str | None:
    """``PUT /2.0/addon`` with ``{}`` as ``installation``; nothing recorded: None when
    Bitbucket accepted it, else the error, as it is recorded."""
    try:
        with BitbucketClient(installation, sleep=sleep, transport=transport) as client:
            client.put(PUSH_PATH, json={})
    except BitbucketAPIError as error:  # TokenRefused and RateLimited are ones too
        error_text = f"{error.status} {error.message}".rstrip()
    except RequestNotSent as error:
        error_text = f"not sent ({error.reason})"
    except httpx.HTTPError as error:
        # The exception's text names the URL and may quote the network's words: its type
        # says what happened well enough.
        error_text = f"no answer ({type(error).__name__})"
    else:
        logger.info("descriptor pushed: client_key=%s", printable(installation.client_key))
        return None
    error_text = clean_display_text(error_text, MAX_ERROR_LENGTH)
    logger.warning(
        "descriptor push failed: client_key=%s: %s",
        printable(installation.client_key),
        error_text,
    )
    return error_text


def record(outcomes: list[tuple[Installation, str | None]]) -> None:
    """Record each ``(installation, error)`` of ``send``: the successes in one UPDATE,
    the failures one UPDATE per error text (a run's failures share a few texts)."""
    pushed = [installation.pk for installation, error in outcomes if error is None]
    if pushed:
        Installation.objects.filter(pk__in=pushed).update(
            descriptor_pushed_at=timezone.now(), descriptor_push_error=""
        )
    failed: dict[str, list[int]] = {}
    for installation, error in outcomes:
        if error is not None:
            failed.setdefault(error, []).append(installation.pk)
    for error, keys in failed.items():
        Installation.objects.filter(pk__in=keys).update(descriptor_push_error=error)


def pending(*, only_failed: bool) -> InstallationQuerySet:
    """The installed installations to push to: all, or (``only_failed``) those whose last
    push failed or that were never pushed to, which is what an interrupted run left."""
    rows: InstallationQuerySet = Installation.objects.installed()
    if only_failed:
        narrowed: InstallationQuerySet = rows.filter(
            ~Q(descriptor_push_error="") | Q(descriptor_pushed_at__isnull=True)
        )
        return narrowed
    return rows


def pages(rows: InstallationQuerySet, page_size: int = PAGE_SIZE) -> Iterator[Installation]:
    """``rows`` in primary-key order, read ``page_size`` at a time after the last key seen.

    Not ``.iterator()``: its cursor would stay open for the whole run while the workers
    write outcomes into the same table, which SQLite refuses ("database table is locked")
    and which holds a snapshot open for hours on PostgreSQL. A page read after the last
    key costs one indexed query and holds nothing between pages.
    """
    after = 0
    while True:
        page = list(rows.filter(pk__gt=after).order_by("pk").only(*SENDING_FIELDS)[:page_size])
        yield from page
        if len(page) < page_size:
            return
        after = page[-1].pk
        # httpx leaves reference cycles behind every request; the pushes in flight keep
        # them alive long enough to reach the oldest generation, which Python collects
        # rarely. A collection per page keeps them to a page's worth on a long run.
        gc.collect()


@dataclass(frozen=True)
class Recorded:
    """What the recorded outcomes say of the installed installations."""

    pushed: int
    failed: int
    never: int

    @property
    def total(self) -> int:
        return self.pushed + self.failed + self.never


def recorded() -> Recorded:
    rows = Installation.objects.installed()
    failed = rows.exclude(descriptor_push_error="").count()
    pushed = rows.filter(descriptor_push_error="", descriptor_pushed_at__isnull=False).count()
    never = rows.filter(descriptor_push_error="", descriptor_pushed_at__isnull=True).count()
    return Recorded(pushed, failed, never)


def push_all(
    installations: Iterable[Installation],
    *,
    concurrency: int,
    on_outcome: Outcome,
) -> None:
    """Push to each of ``installations``, ``concurrency`` at a time, and record the
    outcomes; ``on_outcome(installation, error)`` after each is recorded.

    Threads with a sync client each rather than the async client and a semaphore: the
    client's 429 waits and the ORM are synchronous, and a thread that waits out a 429
    holds up no other push. The threads only send; this thread reads the rows and records
    the outcomes, in batches, on its one database connection: no connection per thread,
    and no two writers on the table (SQLite refuses concurrent writers to a table). The
    queue between the reader and the threads is bounded, so at most a few rows per thread
    are in memory, however many installations there are. An exception (a
    KeyboardInterrupt among them) stops the reading; the pushes already begun finish and
    are recorded, and ``--only-failed`` resumes from there.
    """
    work: queue.Queue[Installation | None] = queue.Queue(maxsize=2 * concurrency)
    done: queue.Queue[tuple[Installation, str | None]] = queue.Queue()
    crashed: list[BaseException] = []

    def worker() -> None:
        # One connection pool per thread, shared by its clients: a client of its own
        # would build a TLS context and open a connection for every installation.
        pool = httpx.HTTPTransport()
        kept = _KeptOpen(pool)
        try:
            while (installation := work.get()) is not None:
                if crashed:
                    continue  # keep taking rows so the reader never blocks
                try:
                    done.put((installation, send(installation, transport=kept)))
                except Exception as error:  # a bug, say: raised by the reader at the end
                    crashed.append(error)
        finally:
            pool.close()

    def record_done() -> None:
        outcomes = []
        while True:
            try:
                outcomes.append(done.get_nowait())
            except queue.Empty:
                break
        record(outcomes)
        for installation, error in outcomes:
            on_outcome(installation, error)

    def hand_over(item: Installation | None) -> None:
        while True:
            try:
                work.put(item, timeout=WAIT)
                return
            except queue.Full:
                record_done()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        for installation in installations:
            if crashed:
                break
            hand_over(installation)
            record_done()
    except BaseException:
        _drain(work)
        raise
    finally:
        for _ in threads:
            hand_over(None)
        for thread in threads:
            while thread.is_alive():
                thread.join(WAIT)
                record_done()
        record_done()
    if crashed:
        raise crashed[0]


class _KeptOpen(httpx.BaseTransport):
    """``transport``, left open when a client closes: the thread closes it at its end."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport.handle_request(request)

    def close(self) -> None:
        pass


def _drain(work: queue.Queue[Installation | None]) -> None:
    """Drop the rows no thread has taken yet: they stay pending for the next run."""
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return
