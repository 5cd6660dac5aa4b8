"""The app's tasks, run by the project's tasks framework (see ``task_framework``).

``check_installation`` asks Bitbucket whether a new installation is genuine, shortly after
its ``installed`` callback (``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``).

``send_webhook_received`` signals a webhook delivery in a worker, when
``BITBUCKET_INSTALL_WEBHOOK_TASKS`` hands deliveries over instead of signalling them in
the request. Its arguments are the delivery's primary key and the payload (JSON): the
payload is not stored in the delivery row, and the key names this very recording of the
delivery, so a task of a delivery that was withdrawn does nothing.

``push_installation_descriptor`` pushes the descriptor to one installation, for
``bitbucket_install_push_descriptor --enqueue``, and records the outcome as the command
does.

Importing this module defines the tasks, which asks the framework and the configured
backend: the ``webhook`` and ``installed`` views import it only when tasks are on.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from bitbucket_install import genuine
from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation, WebhookDelivery
from bitbucket_install.task_framework import app_task, enqueue, task_backends
from bitbucket_install.webhooks import send_webhook_received as send_signal

logger = logging.getLogger("bitbucket_install")


@app_task
def send_webhook_received(delivery_pk: int, payload: dict[str, Any]) -> bool:
    """Send ``webhook_received`` for the delivery (``request=None``), once: True if this
    run sent it, False if another run did, or the delivery is gone."""
    with transaction.atomic():
        # One UPDATE ... WHERE signalled_at IS NULL: it takes the row's lock, so a second
        # run of the task (a worker that retries, two workers) waits for the first, then
        # finds the mark and does nothing.
        claimed = WebhookDelivery.objects.filter(pk=delivery_pk, signalled_at__isnull=True).update(
            signalled_at=timezone.now()
        )
        if not claimed:
            logger.info(
                "webhook task: delivery %s already signalled or no longer recorded; nothing sent",
                delivery_pk,
            )
            return False
        delivery = WebhookDelivery.objects.select_related("installation").get(pk=delivery_pk)
        # After the commit, as in the request: the mark stands whatever the receivers do.
        transaction.on_commit(lambda: send_signal(delivery, payload, None))
    logger.info(
        "webhook task: signalled client_key=%s event=%s request_uuid=%s",
        delivery.installation.client_key,
        delivery.event,
        delivery.request_uuid,
    )
    return True


def hand_off(delivery: WebhookDelivery, payload: dict[str, Any]) -> None:
    """Enqueue ``send_webhook_received`` for a committed delivery."""
    enqueue(send_webhook_received, delivery.pk, payload)


@app_task
def check_installation(installation_pk: int) -> str:
    """Ask Bitbucket whether the installation is genuine, shortly after its ``installed``
    callback (``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``): record it if so, remove it if
    Bitbucket refuses its secret outright and nothing vouched for it. Returns what it did:
    ``verified``, ``removed``, ``kept`` (no proof either way yet) or ``nothing``."""
    installation = Installation.objects.filter(pk=installation_pk).first()
    if installation is None or not genuine.is_vouched_for_by_nobody(installation):
        return "nothing"
    verdict = genuine.verify(installation)
    if verdict is genuine.Verdict.GENUINE:
        return "verified"
    if verdict is genuine.Verdict.MADE_UP:
        if not genuine.is_settled(installation):
            logger.info(
                "installation check: client_key=%s refused within %d s of its callback; "
                "kept (Bitbucket may not have had the callback's answer yet)",
                installation.client_key,
                genuine.SETTLING_SECONDS,
            )
            return "kept"
        if genuine.remove_made_up(installation):
            return "removed"
    return "kept"


def check_soon(installation: Installation) -> None:
    """Enqueue ``check_installation`` for a committed installation: after
    ``genuine.SETTLING_SECONDS`` where the backend can defer a task, else now (then a 401
    is not conclusive and the row is kept; binding still asks Bitbucket first)."""
    task = check_installation
    if task_backends()[app_settings.TASK_BACKEND].supports_defer:
        task = task.using(run_after=timezone.now() + timedelta(seconds=genuine.SETTLING_SECONDS))
    enqueue(task, installation.pk)


@app_task
def push_installation_descriptor(installation_pk: int) -> str:
    """Push the descriptor to the installation (``PUT /2.0/addon``) and record the
    outcome: ``pushed``, ``failed``, or ``nothing`` when it is gone or uninstalled."""
    # Here, not at the top: the push needs the client's extra (httpx), which a project
    # that only hands webhooks to tasks may not have installed.
    from bitbucket_install import push

    installation = Installation.objects.installed().filter(pk=installation_pk).first()
    if installation is None:
        return "nothing"
    return "pushed" if push.push_descriptor(installation) is None else "failed"
