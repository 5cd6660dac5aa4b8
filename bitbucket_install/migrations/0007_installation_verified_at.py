"""When Bitbucket vouched for an installation: it accepted a call signed with the stored
secret (``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0006_webhook_delivery_signalled_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="installation",
            name="verified_at",
            field=models.DateTimeField(
                blank=True, null=True, verbose_name="verified with Bitbucket"
            ),
        ),
    ]
