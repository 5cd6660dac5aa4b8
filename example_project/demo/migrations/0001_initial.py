import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="ReceivedWebhook",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "client_key",
                    models.CharField(db_index=True, max_length=255, verbose_name="client key"),
                ),
                (
                    "workspace",
                    models.CharField(blank=True, max_length=255, verbose_name="workspace"),
                ),
                ("event", models.CharField(max_length=64, verbose_name="event")),
                ("payload", models.JSONField(verbose_name="payload")),
                (
                    "received_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="received"
                    ),
                ),
            ],
            options={
                "verbose_name": "received webhook",
                "verbose_name_plural": "received webhooks",
                "ordering": ["-received_at", "-pk"],
            },
        ),
    ]
