"""Webhook deliveries handed over to a task (``BITBUCKET_INSTALL_WEBHOOK_TASKS``).

With Django's ImmediateBackend the task runs at once, in the request's thread; with its
DummyBackend it is only stored, and the tests run it themselves (as a worker would, once
or twice). Each refusal asserts its status, that no row was recorded, that no signal was
sent and that no task was enqueued. tests/worker runs a real worker process.
"""

from __future__ import annotations

import importlib
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import signals, task_framework, tasks, webhooks
from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import TaskFrameworkMissing
from bitbucket_install.models import Installation, WebhookDelivery
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.webhook_helpers import (
    EVENT,
    REQUEST_UUID,
    delivery_body,
    delivery_rows,
    installation,
    post_webhook,
    webhook_path,
    webhook_token,
)

pytestmark = pytest.mark.django_db(transaction=True)

FRAMEWORK = task_framework.framework().__name__
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"
OTHER_UUID = "0b7e2c1a-3d4f-4a5b-8c6d-9e0f1a2b3c4d"


@pytest.fixture
def installed() -> Installation:
    return installation()


@pytest.fixture
def immediate(settings: Settings) -> Settings:
    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}}
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = True
    return settings


@pytest.fixture
def dummy(settings: Settings) -> Iterator[Any]:
    """The DummyBackend the deliveries are enqueued on: ``.results`` holds them."""
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = True
    backend = backend_of("default")
    yield backend
    backend.clear()


def backend_of(alias: str) -> Any:
    """The backend of ``TASKS[alias]`` (a DummyBackend's ``results`` and ``clear()``)."""
    return task_framework.task_backends()[alias]


def run(result: Any) -> Any:
    """Run an enqueued task as a worker does: its function, with its stored arguments."""
    return result.task.call(*result.args, **result.kwargs)


def delivery_signals(sent_signals: SignalRecorder) -> list[dict[str, Any]]:
    return sent_signals.of(signals.webhook_received)


# --- the framework ------------------------------------------------------------------------


def test_the_built_in_framework_is_preferred() -> None:
    expected = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
    assert task_framework.framework().__name__ == expected
    assert task_framework.FRAMEWORKS == ("django.tasks", "django_tasks")


def test_the_backport_is_used_without_the_built_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_framework, "FRAMEWORKS", ("django.no_such_tasks", "django_tasks"))
    assert task_framework.framework() is importlib.import_module("django_tasks")


def test_without_a_framework_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_framework, "FRAMEWORKS", ("django.no_such_tasks",))
    with pytest.raises(TaskFrameworkMissing) as caught:
        task_framework.task_backends()
    assert isinstance(caught.value, ImproperlyConfigured)
    assert "django-bitbucket-install[tasks]" in str(caught.value)
    assert "Django 6.0" in str(caught.value)


def test_the_task_is_found_by_its_dotted_path() -> None:
    """How a worker finds it again: the module-level Task under the function's name."""
    task = tasks.send_webhook_received
    assert task.module_path == "bitbucket_install.tasks.send_webhook_received"
    assert isinstance(task, importlib.import_module(f"{FRAMEWORK}.base").Task)


def test_the_task_settings_and_their_defaults(settings: Settings) -> None:
    assert app_settings.WEBHOOK_TASKS is False
    assert (app_settings.TASK_BACKEND, app_settings.TASK_QUEUE) == ("default", "default")
    settings.BITBUCKET_INSTALL_TASK_BACKEND = "worker"
    settings.BITBUCKET_INSTALL_TASK_QUEUE = "bitbucket"
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = True
    assert (app_settings.TASK_BACKEND, app_settings.TASK_QUEUE) == ("worker", "bitbucket")
    assert app_settings.WEBHOOK_TASKS is True
    settings.BITBUCKET_INSTALL_TASK_BACKEND = ""
    settings.BITBUCKET_INSTALL_TASK_QUEUE = 5
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = "True"  # a string from the environment: off
    assert (app_settings.TASK_BACKEND, app_settings.TASK_QUEUE) == ("default", "default")
    assert app_settings.WEBHOOK_TASKS is False


# --- handed over, run at once (ImmediateBackend) --------------------------------------------


def test_the_signal_is_sent_in_the_task_without_the_request(
    client: Client, installed: Installation, immediate: Any, sent_signals: SignalRecorder
) -> None:
    started = timezone.now()
    response = post_webhook(client)
    assert response.status_code == 204
    assert response["Cache-Control"] == "no-store"
    [row] = delivery_rows()
    assert row["request_uuid"] == uuid.UUID(REQUEST_UUID)
    assert started <= row["received_at"] <= row["signalled_at"] <= timezone.now()
    [sent] = delivery_signals(sent_signals)
    assert sent == {
        "sender": Installation,
        "installation": installed,
        "event": EVENT,
        "payload": delivery_body(),
        "request": None,
    }
    assert len(sent_signals.calls) == 1


def test_a_redelivery_enqueues_nothing_and_signals_nothing(
    client: Client, installed: Installation, immediate: Any, sent_signals: SignalRecorder
) -> None:
    enqueued: list[Any] = []
    framework_signals = importlib.import_module(f"{FRAMEWORK}.signals")

    def on_enqueued(task_result: Any, **kwargs: Any) -> None:
        enqueued.append(task_result)

    framework_signals.task_enqueued.connect(on_enqueued, weak=False)
    try:
        assert post_webhook(client).status_code == 204
        assert post_webhook(client).status_code == 204
        assert post_webhook(client, request_uuid=OTHER_UUID).status_code == 204
    finally:
        framework_signals.task_enqueued.disconnect(on_enqueued)
    assert [result.task.name for result in enqueued] == ["send_webhook_received"] * 2
    assert len(delivery_rows()) == 2
    assert len(delivery_signals(sent_signals)) == 2


def test_each_step_is_logged(
    client: Client, installed: Installation, immediate: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bitbucket_install")
    assert post_webhook(client).status_code == 204
    assert post_webhook(client).status_code == 204
    lines = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    assert any(line.startswith("webhook task: signalled client_key=") for line in lines)
    assert any(line.startswith("webhook accepted, handed over to a task:") for line in lines)
    assert any(line.startswith("webhook redelivery answered without a signal") for line in lines)


# --- handed over, run later (DummyBackend) --------------------------------------------------


def test_the_delivery_waits_in_the_queue_until_a_worker_runs_it(
    client: Client, installed: Installation, dummy: Any, sent_signals: SignalRecorder
) -> None:
    response = post_webhook(client)
    assert response.status_code == 204
    [row] = delivery_rows()
    assert row["signalled_at"] is None
    assert sent_signals.none_sent
    [result] = dummy.results
    assert result.task.module_path == "bitbucket_install.tasks.send_webhook_received"
    assert (result.backend, result.task.queue_name) == ("default", "default")
    # What a worker backend stores: plain JSON, the delivery's key and the payload.
    assert json.loads(json.dumps([result.args, result.kwargs])) == [
        [row["id"], delivery_body()],
        {},
    ]

    assert run(result) is True
    [sent] = delivery_signals(sent_signals)
    assert sent["request"] is None
    assert sent["installation"] == installed
    assert sent["payload"] == delivery_body()
    assert WebhookDelivery.objects.get().signalled_at is not None


def test_a_task_run_twice_signals_once(
    client: Client, installed: Installation, dummy: Any, sent_signals: SignalRecorder
) -> None:
    assert post_webhook(client).status_code == 204
    [result] = dummy.results
    assert run(result) is True
    signalled_at = WebhookDelivery.objects.get().signalled_at
    assert run(result) is False
    assert len(delivery_signals(sent_signals)) == 1
    assert WebhookDelivery.objects.get().signalled_at == signalled_at


def test_a_redelivery_while_queued_enqueues_nothing(
    client: Client, installed: Installation, dummy: Any, sent_signals: SignalRecorder
) -> None:
    assert post_webhook(client).status_code == 204
    assert post_webhook(client).status_code == 204
    assert len(dummy.results) == 1
    assert len(delivery_rows()) == 1
    assert sent_signals.none_sent
    run(dummy.results[0])
    assert post_webhook(client).status_code == 204
    assert len(dummy.results) == 1
    assert len(delivery_signals(sent_signals)) == 1


def test_the_task_of_a_delivery_no_longer_recorded_does_nothing(
    client: Client, installed: Installation, dummy: Any, sent_signals: SignalRecorder
) -> None:
    """A purged delivery, a withdrawn one, an uninstalled installation deleted with its
    deliveries: the task finds no row and sends nothing."""
    assert post_webhook(client).status_code == 204
    WebhookDelivery.objects.all().delete()
    assert run(dummy.results[0]) is False
    assert sent_signals.none_sent


def test_the_settings_pick_the_backend_and_queue(
    client: Client, installed: Installation, settings: Settings
) -> None:
    settings.TASKS = {
        "default": {"BACKEND": IMMEDIATE},
        "worker": {"BACKEND": DUMMY, "QUEUES": ["bitbucket"]},
    }
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = True
    settings.BITBUCKET_INSTALL_TASK_BACKEND = "worker"
    settings.BITBUCKET_INSTALL_TASK_QUEUE = "bitbucket"
    worker = backend_of("worker")
    try:
        assert post_webhook(client).status_code == 204
        [result] = worker.results
    finally:
        worker.clear()
    assert (result.backend, result.task.queue_name) == ("worker", "bitbucket")


def test_tasks_off_signals_in_the_request_and_enqueues_nothing(
    client: Client, installed: Installation, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.TASKS = {"default": {"BACKEND": DUMMY}}
    backend = backend_of("default")
    assert post_webhook(client).status_code == 204
    assert backend.results == []
    [sent] = delivery_signals(sent_signals)
    assert sent["request"].path == webhook_path()
    assert WebhookDelivery.objects.get().signalled_at is not None


# --- refused: nothing recorded, signalled or enqueued ----------------------------------------


@pytest.mark.parametrize(
    ("post", "status"),
    [
        pytest.param({"token": "not-a-token"}, 401, id="bad-token"),
        pytest.param({"unsigned": True}, 401, id="no-token"),
        pytest.param({"secret": "another-secret-of-thirty-characters"}, 401, id="bad-signature"),
        pytest.param({"body": b"{not json"}, 400, id="malformed-body"),
        pytest.param({"body": b"x" * (2 * 1024 * 1024)}, 413, id="too-large"),
        pytest.param({"request_uuid": "not-a-uuid"}, 400, id="bad-request-uuid"),
        pytest.param({"event": "Repo:Push!"}, 400, id="bad-event"),
    ],
)
def test_a_refused_delivery_enqueues_nothing(
    client: Client,
    installed: Installation,
    dummy: Any,
    sent_signals: SignalRecorder,
    post: dict[str, Any],
    status: int,
) -> None:
    before = installation_rows()
    response = post_webhook(client, **post)
    assert response.status_code == status
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert dummy.results == []


def test_a_delivery_for_an_unknown_installation_enqueues_nothing(
    client: Client, dummy: Any, sent_signals: SignalRecorder
) -> None:
    response = post_webhook(client, token=webhook_token())
    assert response.status_code == 401
    assert delivery_rows() == []
    assert sent_signals.none_sent
    assert dummy.results == []


# --- the backend refuses the task ------------------------------------------------------------


def test_a_backend_that_raises_gets_503_and_the_delivery_withdrawn(
    client: Client,
    installed: Installation,
    dummy: Any,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bitbucket redelivers after a 5xx: with the row kept, the redelivery would be taken
    for a copy and the event lost. Withdrawn, the redelivery is recorded and handed over."""

    def broker_down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the broker is down")

    before = installation_rows()
    with monkeypatch.context() as patch:
        patch.setattr(dummy, "enqueue", broker_down)
        response = post_webhook(client)
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert dummy.results == []
    [logged] = [r for r in caplog.records if r.name == "bitbucket_install" and r.exc_info]
    assert "task backend refused the delivery; withdrawn, answered 503" in logged.getMessage()
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ConnectionError

    assert post_webhook(client).status_code == 204
    [result] = dummy.results
    assert run(result) is True
    assert len(delivery_signals(sent_signals)) == 1
    assert len(delivery_rows()) == 1


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"BITBUCKET_INSTALL_TASK_BACKEND": "nowhere"}, id="unknown-alias"),
        pytest.param({"BITBUCKET_INSTALL_TASK_QUEUE": "not-a-queue"}, id="unknown-queue"),
    ],
)
def test_a_configuration_the_backend_refuses_gets_503(
    client: Client,
    installed: Installation,
    settings: Settings,
    sent_signals: SignalRecorder,
    broken: dict[str, str],
) -> None:
    settings.TASKS = {"default": {"BACKEND": DUMMY, "QUEUES": ["default"]}}
    settings.BITBUCKET_INSTALL_WEBHOOK_TASKS = True
    for name, value in broken.items():
        setattr(settings, name, value)
    backend = backend_of("default")
    assert post_webhook(client).status_code == 503
    assert delivery_rows() == []
    assert sent_signals.none_sent
    assert backend.results == []


def test_a_backend_that_ran_the_task_and_raised_keeps_the_signalled_delivery(
    client: Client,
    installed: Installation,
    immediate: Any,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Withdrawn only while no run claimed it: once signalled, the delivery stands, and
    Bitbucket is told so (a redelivery would then rightly send nothing)."""
    backend = backend_of("default")
    real_enqueue = backend.enqueue

    def ran_then_raised(*args: Any, **kwargs: Any) -> Any:
        real_enqueue(*args, **kwargs)
        raise TimeoutError("no acknowledgement from the broker")

    monkeypatch.setattr(backend, "enqueue", ran_then_raised)
    assert post_webhook(client).status_code == 204
    assert len(delivery_rows()) == 1
    assert len(delivery_signals(sent_signals)) == 1
    assert post_webhook(client).status_code == 204
    assert len(delivery_signals(sent_signals)) == 1


def test_hand_over_returns_whether_the_delivery_is_queued(
    installed: Installation, dummy: Any
) -> None:
    delivery = WebhookDelivery.objects.create(
        installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    assert webhooks.hand_over(delivery, {"data": {}}) is True
    assert [result.args for result in dummy.results] == [[delivery.pk, {"data": {}}]]


# --- migration 0006 --------------------------------------------------------------------------


def test_migration_0006_marks_the_deliveries_recorded_before_as_signalled(
    installed: Installation,
) -> None:
    """They were signalled by their requests: a task must never signal them again."""
    executor = MigrationExecutor(connection)
    executor.migrate([("bitbucket_install", "0005_webhook_delivery")])
    old_apps = executor.loader.project_state(("bitbucket_install", "0005_webhook_delivery")).apps
    old_delivery = old_apps.get_model("bitbucket_install", "WebhookDelivery")
    old_delivery.objects.create(
        installation_id=installed.pk, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("bitbucket_install", "0006_webhook_delivery_signalled_at")])
    [row] = delivery_rows()
    assert row["signalled_at"] == row["received_at"]
    # The later migrations again, for the tests that follow on this database.
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
