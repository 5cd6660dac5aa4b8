"""Webhook deliveries, recorded so that a redelivery is not signalled twice."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0004_installation_workspace_labels"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("request_uuid", models.UUIDField(verbose_name="request UUID")),
                ("event", models.CharField(max_length=64, verbose_name="event")),
                (
                    "received_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="received"
                    ),
                ),
                (
                    "installation",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhook_deliveries",
                        to="bitbucket_install.installation",
                        verbose_name="installation",
                    ),
                ),
            ],
            options={
                "verbose_name": "webhook delivery",
                "verbose_name_plural": "webhook deliveries",
                "indexes": [
                    models.Index(fields=["received_at"], name="bbinstall_delivery_received")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("installation", "request_uuid"), name="bbinstall_delivery_once"
                    )
                ],
            },
        ),
    ]
