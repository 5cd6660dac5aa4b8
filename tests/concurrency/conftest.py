"""Real concurrency: many HTTP requests at once against a threaded live server.

These tests need a database server that takes concurrent connections and row locks
(PostgreSQL or MariaDB/MySQL, picked by DATABASE_URL). SQLite serialises writers and runs
the live server on one shared in-memory connection, so a pass there would prove nothing:
selected on SQLite, every test here fails loudly instead of passing or skipping.
``make test`` deselects them (``-m "not concurrency"``); ``.ci/run`` runs them with
``-m concurrency`` on PostgreSQL and on MariaDB.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pytest
from django.db import connection
from django.dispatch import Signal

from bitbucket_install import signals

REQUEST_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _concurrency_needs_a_database_server(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("concurrency") is None:
        pytest.fail("every test in tests/concurrency must be marked `concurrency`", pytrace=False)
    if connection.vendor == "sqlite":
        pytest.fail(
            "The concurrency tests need PostgreSQL or MariaDB: SQLite cannot run them. "
            "Set DATABASE_URL=postgres://... or mysql://..., or deselect them with "
            '-m "not concurrency".',
            pytrace=False,
        )


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """Hand 3xx answers back as they are: the tests look at the redirect itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment: the live server is on this machine.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _KeepRedirects())


def http_request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> urllib.request.Request:
    """A request to the live server (plain HTTP on this machine, nothing else)."""
    if not url.startswith("http://"):
        raise ValueError(f"not a live server URL: {url!r}")
    return urllib.request.Request(url, data=data, headers=headers or {}, method=method)  # noqa: S310


def send(request: urllib.request.Request) -> Response:
    """One request; any HTTP status comes back as a ``Response`` (never raised)."""
    try:
        with _opener.open(request, timeout=REQUEST_TIMEOUT) as answer:
            return Response(answer.status, answer.headers, answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.headers, error.read())


def send_together(requests: list[urllib.request.Request]) -> list[Response]:
    """Send ``requests`` from one thread each, all released at the same moment."""
    barrier = threading.Barrier(len(requests))

    def fire(request: urllib.request.Request) -> Response:
        barrier.wait(timeout=REQUEST_TIMEOUT)
        return send(request)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(fire, requests))


@dataclass
class SignalLog:
    """The app's signals as the live server's threads send them (thread-safe)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, name: str, kwargs: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append((name, kwargs))

    def of(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [kwargs for sent, kwargs in self.calls if sent == name]

    def names(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.calls]

    def clear(self) -> None:
        with self.lock:
            self.calls.clear()


@pytest.fixture
def signal_log() -> Iterator[SignalLog]:
    log = SignalLog()
    connected: list[tuple[Signal, Any]] = []
    for name in ("installed", "install_failed", "uninstalled", "webhook_received"):
        signal: Signal = getattr(signals, name)

        def receiver(name: str = name, **kwargs: Any) -> None:
            log.record(name, kwargs)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
    yield log
    for signal, receiver in connected:
        signal.disconnect(receiver)
