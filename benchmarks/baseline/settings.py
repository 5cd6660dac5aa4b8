"""The example project's settings (as ``benchmarks.server`` configures them through the
environment), with the URLconf that adds the hand-written view beside the app's, and
persistent database connections, as a production site has them (pgbouncer or
CONN_MAX_AGE): otherwise every request opens a PostgreSQL connection (a process forked on
the server), and that fixed cost would hide most of what the two views cost themselves."""

from __future__ import annotations

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES

ROOT_URLCONF = "benchmarks.baseline.urls"
DATABASES["default"]["CONN_MAX_AGE"] = 60
