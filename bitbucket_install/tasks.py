"""The app's tasks, run by the project's tasks framework (see ``task_framework``).

``send_webhook_received`` signals a webhook delivery in a worker, when
``BITBUCKET_INSTALL_WEBHOOK_TASKS`` hands deliveries over instead of signalling them in
the request. Its arguments are the delivery's primary key and the payload (JSON): the
payload is not stored in the delivery row, and the key names this very recording of the
delivery, so a task of a delivery that was withdrawn does nothing.

Importing this module defines the tasks, which asks the framework and the configured
backend: the ``webhook`` view imports it only when tasks are on.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from bitbucket_install.models import WebhookDelivery
from bitbucket_install.task_framework import app_task, enqueue
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
