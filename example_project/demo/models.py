"""What the example site keeps of its own: the webhook deliveries its receiver recorded."""

from __future__ import annotations

import json

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ReceivedWebhook(models.Model):
    """One delivery the ``webhook_received`` signal announced (once per delivery).

    It names its installation by clientKey rather than by a foreign key: a record of what
    arrived, kept even if the installation's row goes.
    """

    client_key = models.CharField(_("client key"), max_length=255, db_index=True)
    workspace = models.CharField(_("workspace"), max_length=255, blank=True)
    event = models.CharField(_("event"), max_length=64)
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received"), default=timezone.now)

    # Declared, as the type checker's settings do not install the example's app.
    objects: models.Manager[ReceivedWebhook] = models.Manager()

    class Meta:
        # Explicit, so that the model can be imported where the app is not installed (the
        # test suite switches it in per test).
        app_label = "demo"
        verbose_name = _("received webhook")
        verbose_name_plural = _("received webhooks")
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.event} ({self.client_key})"

    @property
    def payload_text(self) -> str:
        return json.dumps(self.payload, indent=2, sort_keys=True)
