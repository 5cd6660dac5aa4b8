"""A receiver of ``webhook_received`` for the worker processes of tests/worker: each signal
it gets is written down as one JSON line in ``settings.WORKER_SIGNAL_LOG`` (when set), with
the process that sent it, for the test to read."""

from __future__ import annotations

import json
import os
from typing import Any

from django.apps import AppConfig
from django.conf import settings


def write_down(installation: Any, event: str, payload: Any, request: Any, **kwargs: Any) -> None:
    path = getattr(settings, "WORKER_SIGNAL_LOG", None)
    if not path:
        return
    line = {
        "pid": os.getpid(),
        "client_key": installation.client_key,
        "event": event,
        "payload": payload,
        "request": None if request is None else request.path,
    }
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


class WorkerTestsConfig(AppConfig):
    name = "tests.worker"
    label = "worker_tests"

    def ready(self) -> None:
        from bitbucket_install.signals import webhook_received

        webhook_received.connect(write_down, dispatch_uid="tests.worker.write_down")
