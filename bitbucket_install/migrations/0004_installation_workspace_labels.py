"""The admin's labels: the principal is the workspace, its JSON "as Bitbucket sent it".

Labels only: no column changes.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0003_confirmed_flow_unique"),
    ]

    operations = [
        migrations.AlterField(
            model_name="installation",
            name="principal",
            field=models.JSONField(
                blank=True, null=True, verbose_name="workspace (as Bitbucket sent it)"
            ),
        ),
        migrations.AlterField(
            model_name="installation",
            name="principal_name",
            field=models.CharField(blank=True, max_length=255, verbose_name="workspace"),
        ),
        migrations.AlterField(
            model_name="installation",
            name="principal_uuid",
            field=models.CharField(blank=True, max_length=64, verbose_name="workspace UUID"),
        ),
    ]
