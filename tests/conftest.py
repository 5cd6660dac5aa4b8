from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.dispatch import Signal

from bitbucket_install import signals

APP_SIGNALS = (
    signals.installed,
    signals.install_failed,
    signals.uninstalled,
    signals.webhook_received,
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
