"""The test settings with a real worker backend, django-tasks-db, for tests/worker. Its
own process, with its own settings::

    DATABASE_URL=postgres://... python -m pytest --ds=tests.settings_worker tests/worker

The worker (``manage.py db_worker``) is a process of its own on the test database, so
that database must be one processes share: PostgreSQL or MariaDB, or a SQLite file
(``DATABASE_URL=sqlite:////path/to/db.sqlite3``: the test database is a file beside it).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db", "tests.worker"]  # noqa: F405
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "bitbucket"],
    }
}
BITBUCKET_INSTALL_WEBHOOK_TASKS = True
BITBUCKET_INSTALL_TASK_QUEUE = "bitbucket"

_database = DATABASES["default"]  # noqa: F405
if _database["ENGINE"] == "django.db.backends.sqlite3" and _database["NAME"] != ":memory:":
    _database["TEST"]["NAME"] = f"{_database['NAME']}.test"
# The worker processes the tests start: the test database they work on, and the file
# where tests/worker/apps.py writes down each webhook_received they send.
if os.environ.get("WORKER_DATABASE_NAME"):
    _database["NAME"] = os.environ["WORKER_DATABASE_NAME"]
WORKER_SIGNAL_LOG = os.environ.get("WORKER_SIGNAL_LOG")
