"""Indexes for the admin at scale (a million installations).

- ``bbinstall_created`` on (created_at, id): the admin's ordering, newest first; it also
  serves everything the single-column index on created_at did, which it replaces.
- On PostgreSQL, indexes on the expressions the admin's case-insensitive search compares:
  ``UPPER(client_key)`` and ``UPPER(principal_uuid)`` (exact match), and
  ``UPPER(principal_name)`` with ``text_pattern_ops`` (match from the start, LIKE 'X%'),
  so a search reads a few index entries instead of scanning the table. They are plain SQL,
  outside the model state: other databases do without them (MariaDB has no expression
  indexes, and Django would warn about one on every ``check``).
"""

from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

TABLE = "bitbucket_install_installation"
SEARCH_INDEXES = {
    "bbinstall_client_key_upper": 'UPPER("client_key"::text)',
    "bbinstall_principal_name_upper": 'UPPER("principal_name"::text) text_pattern_ops',
    "bbinstall_principal_uuid_upper": 'UPPER("principal_uuid"::text)',
}


def create_search_indexes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in SEARCH_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX "{name}" ON "{TABLE}" ({expression})')


def drop_search_indexes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in SEARCH_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("bitbucket_install", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="installation",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True, verbose_name="created"),
        ),
        migrations.AddIndex(
            model_name="installation",
            index=models.Index(fields=["created_at", "id"], name="bbinstall_created"),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes, elidable=False),
    ]
