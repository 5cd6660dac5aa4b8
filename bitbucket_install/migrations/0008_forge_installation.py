"""Forge installations, and the Connect installation each is linked to."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0007_installation_verified_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="ForgeInstallation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "installation_id",
                    models.CharField(
                        max_length=255, unique=True, verbose_name="Forge installation id"
                    ),
                ),
                ("app_id", models.CharField(max_length=255, verbose_name="Forge app id")),
                (
                    "app_version",
                    models.CharField(blank=True, max_length=64, verbose_name="app version"),
                ),
                (
                    "environment_type",
                    models.CharField(blank=True, max_length=32, verbose_name="environment"),
                ),
                (
                    "environment_id",
                    models.CharField(blank=True, max_length=255, verbose_name="environment id"),
                ),
                (
                    "workspace_id",
                    models.CharField(blank=True, max_length=64, verbose_name="workspace UUID"),
                ),
                (
                    "api_base_url",
                    models.CharField(blank=True, max_length=255, verbose_name="API base URL"),
                ),
                ("linked_at", models.DateTimeField(blank=True, null=True, verbose_name="linked")),
                (
                    "installed_at",
                    models.DateTimeField(
                        blank=True, null=True, verbose_name="last installed event"
                    ),
                ),
                (
                    "upgraded_at",
                    models.DateTimeField(
                        blank=True, null=True, verbose_name="last upgraded event"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                ("updated_at", models.DateTimeField(auto_now=True, verbose_name="updated")),
                (
                    "connect_installation",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="forge_installations",
                        to="bitbucket_install.installation",
                        verbose_name="Connect installation",
                    ),
                ),
            ],
            options={
                "verbose_name": "Forge installation",
                "verbose_name_plural": "Forge installations",
                "ordering": ["-created_at", "-pk"],
                "indexes": [
                    models.Index(fields=["workspace_id"], name="bbinstall_forge_workspace")
                ],
            },
        ),
    ]
