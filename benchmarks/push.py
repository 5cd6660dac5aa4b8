"""Figure 9, one size: ``bitbucket_install_push_descriptor`` to ROWS installations.

Run by ``benchmarks.run`` as ``python -m benchmarks.push ROWS BASE_URL`` with the example
project's environment (``benchmarks.server.site_environment``): ``DATABASE_URL`` is a
database of its own, and ``CACHE_URL`` the Redis database that the site served at
BASE_URL (gunicorn, the simulator on) shares with this process, so that the simulated
Bitbucket knows the installations made here; it is emptied before and after. Prints one
JSON object:

- ``seconds_per_installation``: the command's wall time over ROWS, its outcomes not yet
  recorded (every push goes over HTTP to the simulated ``PUT /2.0/addon``);
- ``peak_kib``: the peak of the memory Python allocated during a second run (tracemalloc,
  started just before it: a run traced is slower, so it is not the one timed);
- ``pushed``: how many the recorded outcomes say were pushed (ROWS, or the figure is
  invalid).
"""

from __future__ import annotations

import io
import json
import sys
import time
import tracemalloc

CONCURRENCY = 4
BATCH = 1000
APP_KEY = "bench-app"  # benchmarks.server.ADDON_KEY


def make(rows: int, base_url: str) -> None:
    from django.core.cache import cache
    from django.utils import timezone

    from bitbucket_install.models import Installation
    from bitbucket_install.simulator import state

    Installation.objects.all().delete()
    cache.clear()
    for start in range(0, rows, BATCH):
        made = []
        for number in range(start, min(start + BATCH, rows)):
            client_key = f"connection:{number}"
            secret = f"bench-installation-{number}-shared-secret-0123456789"
            state.save_installation(
                state.SimulatedInstallation(client_key, secret, APP_KEY, "Bench", ("account",))
            )
            made.append(
                Installation(
                    client_key=client_key,
                    addon_key=APP_KEY,
                    shared_secret=secret,
                    base_url=base_url + "/bitbucket/simulator",
                    base_api_url=base_url + "/bitbucket/simulator/api",
                    product_type="bitbucket",
                    installed_at=timezone.now(),
                )
            )
        Installation.objects.bulk_create(made)


def push_all() -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    try:
        call_command(
            "bitbucket_install_push_descriptor",
            "--concurrency",
            str(CONCURRENCY),
            stdout=io.StringIO(),
        )
    except Exception as error:  # CommandError: some failed; the count below says how many
        print(f"push run: {error}", file=sys.stderr)
    return time.perf_counter() - started


def measure(rows: int, base_url: str) -> dict[str, float]:
    import django

    django.setup()
    from django.conf import settings

    from bitbucket_install import push
    from bitbucket_install.models import Installation

    # The client sends tokens only to these origins; this process has no simulator.
    settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = [base_url]
    make(rows, base_url)
    seconds = push_all()
    pushed = push.recorded().pushed
    Installation.objects.update(descriptor_pushed_at=None, descriptor_push_error="")
    tracemalloc.start()
    push_all()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    from django.core.cache import cache

    cache.clear()
    return {
        "seconds_per_installation": seconds / rows,
        "peak_kib": peak / 1024,
        "pushed": min(pushed, push.recorded().pushed),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))
