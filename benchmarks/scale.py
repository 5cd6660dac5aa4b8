"""Figure 4, one table size: time the admin and the callback's lookup in this process.

Run by ``benchmarks.run`` as ``python -m benchmarks.scale ROWS`` with the example
project's environment (``benchmarks.server.site_environment``) pointing ``DATABASE_URL``
at a database that ``benchmarks.database.load`` filled with ROWS installations. Prints one
JSON object: the median seconds of each operation, over rotating targets that exist.

- ``changelist``: the admin's first page of installations, as a superuser sees it.
- ``search_client_key``: the admin searched by a clientKey (exact; one result).
- ``search_principal``: the admin searched by a principal's name, in lower case (the
  search is case-insensitive; one result).
- ``callback_lookup``: the callback's read of the installation, under its row lock, in a
  transaction (``Installation.objects.locked``), for a clientKey that exists. The transaction is
  rolled back: a commit would add the disk's flush time, which has nothing to do with
  the table's size.

Pages go through Django's test client (the whole stack, middleware to template), not
over HTTP: what grows with the table is the database's work, and that is what's compared.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable

WARMUP = 3
PAGE_RUNS = 25
LOOKUP_RUNS = 300


def _median_seconds(operation: Callable[[int], None], runs: int) -> float:
    for index in range(WARMUP):
        operation(index)
    timings = []
    for index in range(runs):
        started = time.perf_counter()
        operation(index)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def measure(rows: int) -> dict[str, float]:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.test import Client
    from django.urls import reverse

    from benchmarks import database
    from bitbucket_install.models import Installation

    admin, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(admin)
    changelist = reverse("admin:bitbucket_install_installation_changelist")
    picker = random.Random(rows)
    numbers = [picker.randint(1, rows) for _ in range(max(PAGE_RUNS, LOOKUP_RUNS) + WARMUP)]

    def page(query: dict[str, str], expected: str) -> None:
        response = client.get(changelist, query)
        if response.status_code != 200 or expected.encode() not in response.content:
            raise RuntimeError(f"admin {query}: {response.status_code}, {expected!r} missing")

    def first_page(index: int) -> None:
        page({}, database.client_key(rows))  # the newest row comes first

    def by_client_key(index: int) -> None:
        key = database.client_key(numbers[index])
        page({"q": key}, key)

    def by_principal(index: int) -> None:
        number = numbers[index]
        page({"q": database.principal_name(number).lower()}, database.client_key(number))

    def lookup(index: int) -> None:
        key = database.client_key(numbers[index])
        with transaction.atomic():
            found = Installation.objects.locked(key)
            transaction.set_rollback(True)
        if found is None:
            raise RuntimeError(f"no installation {key}")

    return {
        "changelist": _median_seconds(first_page, PAGE_RUNS),
        "search_client_key": _median_seconds(by_client_key, PAGE_RUNS),
        "search_principal": _median_seconds(by_principal, PAGE_RUNS),
        "callback_lookup": _median_seconds(lookup, LOOKUP_RUNS),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
