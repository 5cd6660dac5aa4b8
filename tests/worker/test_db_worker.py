"""End to end: deliveries handed over to django-tasks-db, signalled by its ``db_worker``.

The view enqueues the task in the test database; real worker processes (two at once for
the copies of one task) run it there and send ``webhook_received`` in their own process,
which tests/worker/apps.py writes down. Exactly one signal per delivery, whatever the
redeliveries and however often the task runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_tasks_db.models import DBTaskResult

from bitbucket_install.models import WebhookDelivery
from bitbucket_install.task_framework import enqueue
from bitbucket_install.tasks import send_webhook_received
from tests.lifecycle_helpers import CLIENT_KEY
from tests.webhook_helpers import EVENT, delivery_body, installation, post_webhook

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 120


def start_worker(signal_log: Path) -> subprocess.Popen[str]:
    """``manage.py db_worker`` on the app's queue, until that queue is empty."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_worker",
        "WORKER_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "WORKER_SIGNAL_LOG": str(signal_log),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "db_worker",
            "--batch",
            "--no-startup-delay",
            "--queue-name",
            "bitbucket",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait(worker: subprocess.Popen[str]) -> None:
    output, _ = worker.communicate(timeout=WORKER_TIMEOUT)
    assert worker.returncode == 0, output


def signals_sent(signal_log: Path) -> list[dict[str, Any]]:
    if not signal_log.exists():
        return []
    return [json.loads(line) for line in signal_log.read_text().splitlines()]


def test_the_worker_signals_each_delivery_once(client: Client, tmp_path: Path) -> None:
    installation()
    signal_log = tmp_path / "signals.jsonl"
    assert post_webhook(client).status_code == 204
    assert post_webhook(client).status_code == 204  # a redelivery: nothing more queued
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.signalled_at is None
    [queued] = DBTaskResult.objects.all()
    assert queued.status == "READY"
    assert (queued.backend_name, queued.queue_name) == ("default", "bitbucket")
    assert queued.task_path == "bitbucket_install.tasks.send_webhook_received"
    assert queued.args_kwargs == {"args": [delivery.pk, delivery_body()], "kwargs": {}}

    wait(start_worker(signal_log))

    [sent] = signals_sent(signal_log)
    assert sent["pid"] != os.getpid()
    assert sent == {
        "pid": sent["pid"],
        "client_key": CLIENT_KEY,
        "event": EVENT,
        "payload": delivery_body(),
        "request": None,
    }
    delivery.refresh_from_db()
    assert delivery.signalled_at is not None
    queued.refresh_from_db()
    assert (queued.status, queued.return_value) == ("SUCCESSFUL", True)
    assert post_webhook(client).status_code == 204  # after the signal: still nothing
    assert DBTaskResult.objects.count() == 1


def test_copies_of_the_task_run_by_two_workers_at_once_signal_once(
    client: Client, tmp_path: Path
) -> None:
    """A queue that hands a task out again (a worker died, a broker redelivered): the
    copies may run in two workers at the same moment; the delivery row's lock and mark
    let one of them signal."""
    installation()
    signal_log = tmp_path / "signals.jsonl"
    assert post_webhook(client).status_code == 204
    [delivery] = WebhookDelivery.objects.all()
    for _ in range(3):
        enqueue(send_webhook_received, delivery.pk, delivery_body())
    assert DBTaskResult.objects.count() == 4

    workers = [start_worker(signal_log) for _ in range(2)]
    for worker in workers:
        wait(worker)

    assert len(signals_sent(signal_log)) == 1
    results = DBTaskResult.objects.values_list("status", "return_value")
    assert sorted(results, key=str) == [
        ("SUCCESSFUL", False),
        ("SUCCESSFUL", False),
        ("SUCCESSFUL", False),
        ("SUCCESSFUL", True),
    ]
