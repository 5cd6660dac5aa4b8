"""When webhook_received was claimed for a delivery: the mark that lets a task hand a
delivery to a worker and still signal it once. Deliveries recorded before this field were
signalled by their request: they are marked as signalled when they were received."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def mark_recorded_deliveries_signalled(
    apps: StateApps, schema_editor: BaseDatabaseSchemaEditor
) -> None:
    delivery = apps.get_model("bitbucket_install", "WebhookDelivery")
    delivery.objects.using(schema_editor.connection.alias).filter(
        signalled_at__isnull=True
    ).update(signalled_at=models.F("received_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0005_webhook_delivery"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="signalled_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="signalled"),
        ),
        migrations.RunPython(mark_recorded_deliveries_signalled, migrations.RunPython.noop),
    ]
