"""tests/worker: a real worker process (django-tasks-db's ``db_worker``) runs the app's
tasks against the test database. They need tests/settings_worker.py, so a process of their
own (any other settings ignore this directory)::

    DATABASE_URL=postgres://... python -m pytest --ds=tests.settings_worker tests/worker

On an in-memory SQLite database no other process can see the data: selected there, they
fail loudly instead of passing or skipping. ``.ci/run`` runs them on PostgreSQL and on a
SQLite file.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import connection

collect_ignore = [] if "django_tasks_db" in settings.INSTALLED_APPS else ["test_db_worker.py"]


@pytest.fixture(autouse=True)
def _worker_needs_a_shared_database() -> None:
    sqlite: Any = connection  # is_in_memory_db() is the SQLite backend's own
    if connection.vendor == "sqlite" and sqlite.is_in_memory_db():
        pytest.fail(
            "The worker tests need a database another process can open: PostgreSQL, "
            "MariaDB, or a SQLite file (DATABASE_URL=sqlite:////tmp/worker.sqlite3).",
            pytrace=False,
        )
