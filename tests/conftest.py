from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django.dispatch import Signal

from bitbucket_install import signals

APP_SIGNALS = (
    signals.installed,
    signals.install_failed,
    signals.uninstalled,
    signals.webhook_received,
    signals.forge_installed,
    signals.forge_upgraded,
)


@dataclass
class SignalRecorder:
    """Every call of the app's signals during a test, in order."""

    calls: list[tuple[Signal, dict[str, Any]]] = field(default_factory=list)

    def of(self, signal: Signal) -> list[dict[str, Any]]:
        return [kwargs for sent, kwargs in self.calls if sent is signal]

    @property
    def none_sent(self) -> bool:
        return not self.calls


@pytest.fixture
def empty_cache() -> Iterator[None]:
    """Django's default cache, empty before and after the test (tokens, JWKS, the
    simulator's memory); a package's conftest makes it automatic where it matters."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def sent_signals() -> Iterator[SignalRecorder]:
    recorder = SignalRecorder()
    receivers: list[Callable[..., None]] = []
    for signal in APP_SIGNALS:

        def receiver(signal: Signal = signal, **kwargs: Any) -> None:
            recorder.calls.append((signal, kwargs))

        signal.connect(receiver, weak=False)
        receivers.append(receiver)
    yield recorder
    for signal, receiver in zip(APP_SIGNALS, receivers, strict=True):
        signal.disconnect(receiver)


@pytest.fixture
def server_threads_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Closes, after the test, the in-memory SQLite connections that threads other than the
    test's opened. Django never closes a connection to an in-memory SQLite database (closing the
    last one would drop the database), so those of the server's threads would be left to
    the garbage collector, which Python 3.13 reports as an unclosed database."""
    wrapper_class = type(connections[DEFAULT_DB_ALIAS])
    open_connection = wrapper_class.get_new_connection
    opened_elsewhere: list[Any] = []

    def recording(wrapper: Any, params: dict[str, Any]) -> Any:
        opened = open_connection(wrapper, params)
        in_memory = wrapper.vendor == "sqlite" and wrapper.is_in_memory_db()
        if in_memory and threading.current_thread() is not threading.main_thread():
            opened_elsewhere.append(opened)
        return opened

    monkeypatch.setattr(wrapper_class, "get_new_connection", recording)
    yield
    for opened in opened_elsewhere:
        opened.close()
