"""Profile the callback path: ``python -m benchmarks.profile_callback [COUNT]``.

Creates its own database (``bitbucket_install_bench_profile``, dropped at the end), sends
COUNT (default 500) first returns, each with a fresh flow of a logged-in user, exactly as
figure 1 does, through Django's whole stack in this process (the test client: middleware,
view, templates, PostgreSQL), under cProfile, and prints where the time went: the
functions with the most time of their own, then the app's functions by cumulative time,
and the queries of one return.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
from typing import Any

from benchmarks import database, server, throughput

SITE_ENV = {"DJANGO_SETTINGS_MODULE": "benchmarks.baseline.settings"}


def main(count: int) -> None:
    url = database.recreate("profile")
    try:
        server.run_manage(url, "migrate", "--noinput")
        os.environ.update(server.site_environment(url, 8000, SITE_ENV))
        import django

        django.setup()
        from django.db import connection
        from django.test import Client

        calls = throughput.prepare_returns(count + 1, server.SHARED_SECRET)
        client = Client(HTTP_HOST="127.0.0.1")

        def send(call: throughput.Call) -> None:
            client.cookies.clear()
            name, _, value = call.cookie.partition("=")
            client.cookies[name] = value
            response = client.get(call.path)
            if (response.status_code, response.get("Location")) != (call.status, call.location):
                raise RuntimeError(f"unexpected answer {response.status_code}")

        queries: list[str] = []

        def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            send(calls[0])
        profiler = cProfile.Profile()
        profiler.enable()
        for call in calls[1:]:
            send(call)
        profiler.disable()
        output = io.StringIO()
        stats = pstats.Stats(profiler, stream=output)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats("bitbucket_install", 25)
        print(output.getvalue())
        print(f"Statements of one first return ({len(queries)}, BEGIN/COMMIT not shown):")
        for sql in queries:
            print(f"  {sql[:150]}")
    finally:
        from django.db import connections

        connections.close_all()
        database.drop(url)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
