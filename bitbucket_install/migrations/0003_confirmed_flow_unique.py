"""One flow confirms at most one installation: ``confirmed_flow`` becomes unique.

Rows confirmed without a flow held ``""``; they hold NULL now, which a unique column may
hold any number of times on every database.
"""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def blank_to_null(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    installation = apps.get_model("bitbucket_install", "Installation")
    installation.objects.using(schema_editor.connection.alias).filter(confirmed_flow="").update(
        confirmed_flow=None
    )


def null_to_blank(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    installation = apps.get_model("bitbucket_install", "Installation")
    installation.objects.using(schema_editor.connection.alias).filter(
        confirmed_flow__isnull=True
    ).update(confirmed_flow="")


class Migration(migrations.Migration):
    dependencies = [("bitbucket_install", "0002_installation_admin_indexes")]

    operations = [
        migrations.AlterField(
            model_name="installation",
            name="confirmed_flow",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(blank_to_null, null_to_blank, elidable=False),
        migrations.AlterField(
            model_name="installation",
            name="confirmed_flow",
            field=models.CharField(
                blank=True, editable=False, max_length=64, null=True, unique=True
            ),
        ),
    ]
