"""The benchmarks, side by side in one run: ``make bench`` (or
``python -m benchmarks.run``) from the repository root.

It needs PostgreSQL (``BENCH_POSTGRES_URL``, default ``postgres://postgres@127.0.0.1:5432``,
a user that may create databases) and creates its own databases, dropped and created
afresh each run and dropped at the end: ``bitbucket_install_bench_*``. It prints the
machine, then one line per figure: ours, the baseline, the ratio, the target, PASS/FAIL.
The exit status is 1 if a figure with a target fails (or a run gave an unexpected answer).

1. Requests per second of the callback (first returns with a fresh flow each: JWT, flow,
   upsert, signal, redirect) against a hand-written ``update_or_create`` view, all under
   one gunicorn (``benchmarks.server``) with ``nproc`` sync workers, driven by a second
   process with twice as many client threads; rounds rotate the order, the median counts.
   1b: the callback against the hand-written view that also binds the row to the logged-in
   user and writes the session (``benchmarks.baseline.views.bound_callback``); 1c: that
   view against the plain one, what Django's sessions and auth cost alone (no target).
2. ``verify_token`` with the qsh computed per call against a bare ``jwt.decode``.
3. ``{% bitbucket_install_button %}`` against a template holding its markup.
4. The admin's changelist, its search (by clientKey, by principal name) and the
   callback's lookup with 1,000,000 installations against 1,000 (``benchmarks.scale``).
5. Peak RSS of a single gunicorn worker after 10,000 callbacks against after 100.
6. Receiving Bitbucket's signed calls, on the same gunicorn as figure 1, rounds as there:
   6a a project's own view behind ``connect_jwt_required`` against the same view
   unprotected (it finds the installation by the token's unverified ``iss``); 6b the
   ``webhook`` view (a new ``X-Request-UUID`` each) against the same view unprotected
   (``benchmarks.baseline.views``); for information, 6c both webhook views answering
   redeliveries and 6d the protected view against one that reads no installation at all
   (``benchmarks.receiving``).
7. Signing one outgoing request as ``BitbucketClient`` does against a bare ``jwt.encode`` of
   the same claims; 7b, for information, the whole preparation of the request (checks,
   httpx request, signature) against httpx's ``build_request`` and that ``jwt.encode``.
8. A cached ``BitbucketClient.access_token()``: no HTTP request (counted by the client's
   transport) and under 50 microseconds a call; a bare ``cache.get`` of the same entry
   shown beside it.
9. Verifying a Forge Invocation Token (RS256) with the JWKS warm, against a bare
   ``jwt.decode`` of the same token with the key in hand; no JWKS fetch in the timed calls.
10. ``bitbucket_install_push_descriptor`` to 10,000 installations against 1,000, over HTTP
    to the simulated ``PUT /2.0/addon`` (the example project on gunicorn, the simulator on,
    sharing a Redis database, ``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/15``,
    which the run empties, with the measuring process): 10a the time per installation, 10b
    the peak memory Python allocated during the run (``benchmarks.push``).

``--quick`` runs everything smaller (a smoke test of the benchmark itself, not figures to
quote). ``--only 1,5`` measures some figures only. ``--keep`` leaves the databases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from benchmarks import database, memory, micro, receiving, server, throughput

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = secrets.token_urlsafe(48)
SITE_ENV = {"DJANGO_SETTINGS_MODULE": "benchmarks.baseline.settings", "SECRET_KEY": SECRET_KEY}


@dataclass(frozen=True)
class Sizes:
    rounds: int
    per_round: int
    warmup: int
    small_table: int
    large_table: int
    memory_early: int
    memory_late: int
    push_small: int
    push_large: int


# Figure 1b: the callback against the hand-written view that does the least binding to a
# browser and user (trust rule 2) takes with Django. What the app adds on top of that
# (JWT, qsh, flow checks, signal, log line) may cost a tenth of the throughput at most.
# Figure 1, against the plain view, measures what Django's session and user cost: shown
# for information, with no target.
BOUND_TARGET = 0.9
# Figure 6: what verifying Bitbucket's JWT (and, for webhooks, recording each delivery
# once under the installation's lock) may cost a view, against the same view unprotected.
RECEIVING_TARGET = 0.8
# Figure 7: signing a request as the client does, against a bare jwt.encode of the claims.
SIGNING_TARGET = 1.5
# Figure 8: a cached access_token(), in microseconds a call (and no HTTP request at all).
CACHED_TOKEN_BUDGET_US = 50.0
# Figure 9: a Forge Invocation Token verified with a warm JWKS, against jwt.decode with the
# key in hand.
FORGE_TARGET = 1.3
# Figure 6: the installations the signed calls go to in turn, each with a secret of its own.
RECEIVING_INSTALLATIONS = 100

FULL = Sizes(7, 600, 150, 1_000, 1_000_000, 100, 10_000, 1_000, 10_000)
QUICK = Sizes(2, 100, 30, 1_000, 20_000, 50, 300, 100, 1_000)
# Figure 9: the push's time per installation and its peak memory may grow by a tenth at
# most from 1,000 installations to 10,000 (the rows stream; nothing grows with them).
PUSH_TARGET = 1.10
PUSH_WARMUP = 200
# The cache the served simulator and the measuring process share: a Redis database the
# run empties at its start and end. Not the database cache: it counts its rows on every
# write, which would make the simulator's own work grow with the number of installations.
PUSH_CACHE_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass(frozen=True)
class Figure:
    label: str
    ours: float
    baseline: float
    unit: str
    target: float | None  # None: shown for what it explains, with no target
    higher_is_better: bool
    note: str = ""
    invalid: str = ""  # why the figure cannot count (answers that were not successes)
    # Figure 1: the median of each round's ratio, ours and the baseline measured one after
    # the other; steadier than the ratio of the medians when the machine's speed drifts.
    paired_ratio: float | None = None
    # True: the target bounds ``ours`` itself (in ``unit``), not the ratio; the baseline
    # is shown for what it explains.
    absolute: bool = False

    @property
    def ratio(self) -> float:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.ours / self.baseline

    @property
    def passed(self) -> bool:
        if self.invalid:
            return False
        if self.target is None:
            return True
        measured = self.ours if self.absolute else self.ratio
        if self.higher_is_better:
            return measured >= self.target
        return measured <= self.target

    def line(self) -> str:
        comparison = ">=" if self.higher_is_better else "<="
        decimals = {"req/s": 1, "us": 1, "ms": 2, "KiB": 0}.get(self.unit, 3)
        ours = f"{self.ours:.{decimals}f} {self.unit}"
        baseline = f"{self.baseline:.{decimals}f} {self.unit}"
        if self.target is None:
            verdict = "no target  info"
        else:
            bound = (
                f"ours {comparison} {self.target:.{decimals}f} {self.unit}"
                if self.absolute
                else f"{comparison} {self.target:.2f}"
            )
            verdict = f"target {bound}  {'PASS' if self.passed else 'FAIL'}"
        text = (
            f"{self.label:<44} ours {ours:>13}  baseline {baseline:>13}  "
            f"ratio {self.ratio:5.2f}  {verdict}"
        )
        text += f"  ({self.note})" if self.note else ""
        return text + (f"  INVALID: {self.invalid}" if self.invalid else "")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import django

    return [
        f"machine: {os.cpu_count()} CPUs (nproc), {model}; {platform.platform()}",
        f"software: Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {database.server_version()}",
    ]


def setup_django(database_url: str) -> None:
    """This process as the served site: same settings, SECRET_KEY and database."""
    os.environ.update(server.site_environment(database_url, 8000, SITE_ENV))
    import django

    django.setup()


Prepare = Callable[[int], list[throughput.Call]]


@dataclass(frozen=True)
class Rounds:
    """Requests per second of each view in every round, and the answers that were not the
    expected ones, per view."""

    rates: dict[str, list[float]]
    problems: dict[str, dict[str, int]]
    note: str

    def compared(
        self, label: str, ours: str, baseline: str, target: float | None, note: str = ""
    ) -> Figure:
        """``ours`` against ``baseline``: the median rates, the median of the rounds'
        ratios; invalid unless every request of both was a success."""
        paired = statistics.median(
            a / b for a, b in zip(self.rates[ours], self.rates[baseline], strict=True)
        )
        problems = {view: self.problems[view] for view in (ours, baseline) if self.problems[view]}
        return Figure(
            label,
            statistics.median(self.rates[ours]),
            statistics.median(self.rates[baseline]),
            "req/s",
            target,
            higher_is_better=True,
            note=note or self.note,
            invalid=f"unexpected answers {problems}" if problems else "",
            paired_ratio=paired,
        )


def measure_rounds(
    figure: str,
    base_url: str,
    views: Mapping[str, Prepare],
    sizes: Sizes,
    workers: int,
    workdir: Path,
) -> Rounds:
    """Every view's calls (made by its ``Prepare`` before they are timed) sent by
    ``2 x workers`` client threads: a warm-up each, then ``sizes.rounds`` rounds."""
    concurrency = 2 * workers
    names = tuple(views)
    rates: dict[str, list[float]] = {view: [] for view in names}
    problems: dict[str, dict[str, int]] = {view: {} for view in names}

    def measured(view: str, calls: list[throughput.Call], timed: bool) -> None:
        result = throughput.run_driver(base_url, calls, concurrency, workdir)
        for answer, count in result.unexpected.items():
            problems[view][answer] = problems[view].get(answer, 0) + count
        if timed:
            rates[view].append(result.per_second)
            progress(
                f"  {len(calls)} requests: {result.per_second:.1f}/s, p50 {result.p50_ms:.1f} ms,"
                f" p99 {result.p99_ms:.1f} ms, unexpected answers {result.unexpected or 0}"
            )

    for view in names:
        measured(view, views[view](sizes.warmup), timed=False)
    for round_number in range(1, sizes.rounds + 1):
        # Each view goes first in turn, so a drift of the machine's speed during a round
        # does not favour one of them.
        shift = (round_number - 1) % len(names)
        order = names[shift:] + names[:shift]
        calls = {view: views[view](sizes.per_round) for view in order}
        for view in order:
            progress(f"figure {figure}, round {round_number}: {view}")
            measured(view, calls[view], timed=True)
    note = (
        f"{workers} workers, {concurrency} clients, {sizes.rounds} rounds: median rates,"
        " median of the rounds' ratios"
    )
    return Rounds(rates, problems, note)


def figure_throughput(base_url: str, sizes: Sizes, workers: int, workdir: Path) -> list[Figure]:
    views: dict[str, Prepare] = {
        "baseline": throughput.prepare_baseline,
        "bound": throughput.prepare_bound,
        "ours": partial(throughput.prepare_returns, shared_secret=server.SHARED_SECRET),
    }
    rounds = measure_rounds("1", base_url, views, sizes, workers, workdir)
    compared = rounds.compared
    return [
        compared("1 callback vs update_or_create view", "ours", "baseline", None),
        compared("1b callback vs that view bound to the user", "ours", "bound", BOUND_TARGET),
        compared(
            "1c bound view vs update_or_create view",
            "bound",
            "baseline",
            None,
            "what Django's session and user cost alone",
        ),
    ]


def figure_receiving(base_url: str, sizes: Sizes, workers: int, workdir: Path) -> list[Figure]:
    installations = receiving.create_installations(RECEIVING_INSTALLATIONS)

    def view_calls(path: str) -> Prepare:
        return partial(receiving.prepare_view_calls, path, installations=installations)

    def deliveries(path: str, *, delivered: bool) -> Prepare:
        return partial(
            receiving.prepare_deliveries, path, installations=installations, delivered=delivered
        )

    views = {
        "connect_jwt_required": view_calls(receiving.CONNECT_VIEW_PATH),
        "unprotected view": view_calls(receiving.OPEN_VIEW_PATH),
        "view without installation": view_calls(receiving.BARE_VIEW_PATH),
        "webhook": deliveries(receiving.WEBHOOK_PATH, delivered=False),
        "unprotected webhook": deliveries(receiving.BASELINE_WEBHOOK_PATH, delivered=False),
        "webhook, redeliveries": deliveries(receiving.WEBHOOK_PATH, delivered=True),
        "unprotected webhook, redeliveries": deliveries(
            receiving.BASELINE_WEBHOOK_PATH, delivered=True
        ),
    }
    rounds = measure_rounds("6", base_url, views, sizes, workers, workdir)
    spread = f"; {RECEIVING_INSTALLATIONS} installations"
    return [
        rounds.compared(
            "6a connect_jwt_required view vs unprotected",
            "connect_jwt_required",
            "unprotected view",
            RECEIVING_TARGET,
            rounds.note + spread,
        ),
        rounds.compared(
            "6b webhook view vs unprotected twin",
            "webhook",
            "unprotected webhook",
            RECEIVING_TARGET,
            rounds.note + spread + "; a new X-Request-UUID each",
        ),
        rounds.compared(
            "6c webhook redelivery vs unprotected twin's",
            "webhook, redeliveries",
            "unprotected webhook, redeliveries",
            None,
            "each delivery recorded beforehand: answered, not signalled again",
        ),
        rounds.compared(
            "6d connect_jwt_required view vs no lookup",
            "connect_jwt_required",
            "view without installation",
            None,
            "against a view that reads no installation: the lookup and verification together",
        ),
    ]


def figure_signing() -> list[Figure]:
    signing = micro.request_signing(server.SHARED_SECRET)
    invalid = f"{signing.http_requests} HTTP requests made" if signing.http_requests else ""
    return [
        Figure(
            "7 signing a request vs jwt.encode",
            signing.sign * 1e6,
            signing.bare_encode * 1e6,
            "us",
            SIGNING_TARGET,
            False,
            note="the client's Authorization header against a bare jwt.encode of its claims",
            invalid=invalid,
        ),
        Figure(
            "7b request built+signed vs build+encode",
            signing.prepare_and_sign * 1e6,
            signing.build_and_encode * 1e6,
            "us",
            None,
            False,
            note="with the client's checks, against httpx's build_request and jwt.encode",
            invalid=invalid,
        ),
    ]


def figure_cached_token() -> Figure:
    cached = micro.cached_access_token(server.SHARED_SECRET)
    return Figure(
        "8 cached access_token() vs cache.get",
        cached.access_token * 1e6,
        cached.cache_get * 1e6,
        "us",
        CACHED_TOKEN_BUDGET_US,
        False,
        note=f"{cached.http_requests} HTTP requests in the timed calls; local-memory cache",
        invalid=f"{cached.http_requests} HTTP requests made" if cached.http_requests else "",
        absolute=True,
    )


def figure_forge() -> Figure:
    forge = micro.forge_verification()
    return Figure(
        "9 FIT verification vs jwt.decode",
        forge.verify * 1e6,
        forge.bare_decode * 1e6,
        "us",
        FORGE_TARGET,
        False,
        note=f"warm JWKS, {forge.fetches} fetches in the timed calls; RS256 with the key in hand",
        invalid=f"{forge.fetches} JWKS fetches made" if forge.fetches else "",
    )


def figure_memory(database_url: str, sizes: Sizes, workdir: Path) -> Figure:
    early = throughput.prepare_returns(sizes.memory_early, server.SHARED_SECRET)
    late = throughput.prepare_returns(sizes.memory_late - sizes.memory_early, server.SHARED_SECRET)
    with server.serve_example_project(
        database_url, workers=1, migrate=False, extra_env=SITE_ENV
    ) as base_url:
        (worker,) = memory.gunicorn_workers(base_url)
        results = [throughput.run_driver(base_url, early, 2, workdir)]
        peak_early = memory.peak_rss_kib(worker)
        progress(f"figure 5: after {sizes.memory_early} callbacks, peak RSS {peak_early} KiB")
        results.append(throughput.run_driver(base_url, late, 2, workdir))
        peak_late = memory.peak_rss_kib(worker)
        progress(f"figure 5: after {sizes.memory_late} callbacks, peak RSS {peak_late} KiB")
        if memory.gunicorn_workers(base_url) != [worker]:
            raise RuntimeError("the gunicorn worker was replaced during the memory run")
    problems = [result.unexpected for result in results if result.unexpected]
    return Figure(
        "5 gunicorn worker peak RSS",
        peak_late,
        peak_early,
        "KiB",
        1.10,
        higher_is_better=False,
        note=f"one worker, after {sizes.memory_late:,} callbacks vs {sizes.memory_early:,}",
        invalid=f"unexpected answers {problems}" if problems else "",
    )


def push_figures(sizes: Sizes, workers: int, created: list[str]) -> list[Figure]:
    url = database.recreate("push")
    created.append(url)
    site = {
        **SITE_ENV,
        "DEBUG": "true",
        "BITBUCKET_INSTALL_SIMULATOR": "true",
        "CACHE_URL": PUSH_CACHE_URL,
    }
    server.run_manage(url, "migrate", "--noinput", extra_env=site)
    # The measuring process: DEBUG off (with it on, every query would be kept in memory).
    measuring = {**SITE_ENV, "CACHE_URL": PUSH_CACHE_URL}
    with server.serve_example_project(url, workers=workers, migrate=False, extra_env=site) as base:
        # Untimed: the workers import the simulator and open their connections on their
        # first calls, which would be counted against the first size alone.
        push_run(PUSH_WARMUP, base, url, measuring)
        small = push_run(sizes.push_small, base, url, measuring)
        large = push_run(sizes.push_large, base, url, measuring)
    invalid = ", ".join(
        f"{int(run['pushed'])} of {rows} pushed"
        for rows, run in ((sizes.push_small, small), (sizes.push_large, large))
        if int(run["pushed"]) != rows
    )
    note = f"{sizes.push_large:,} installations vs {sizes.push_small:,}, concurrency 4"
    return [
        Figure(
            "10a push_descriptor time per installation",
            large["seconds_per_installation"] * 1000,
            small["seconds_per_installation"] * 1000,
            "ms",
            PUSH_TARGET,
            False,
            note=note + f", {workers} gunicorn workers",
            invalid=invalid,
        ),
        Figure(
            "10b push_descriptor peak memory",
            large["peak_kib"],
            small["peak_kib"],
            "KiB",
            PUSH_TARGET,
            False,
            note=note + ", tracemalloc peak",
            invalid=invalid,
        ),
    ]


def push_run(rows: int, base_url: str, url: str, environment: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.push", str(rows), base_url],
        env=server.site_environment(url, 8000, environment),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.push failed:\n{done.stdout}{done.stderr}")
    run: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    progress(
        f"figure 10: {rows} installations: {run['seconds_per_installation'] * 1000:.2f} ms each, "
        f"peak {run['peak_kib']:.0f} KiB, {int(run['pushed'])} pushed"
    )
    return run


def scale_timings(rows: int, created: list[str]) -> dict[str, float]:
    url = database.recreate(f"rows_{rows}")
    created.append(url)
    server.run_manage(url, "migrate", "--noinput")
    seconds = database.load(url, rows)
    progress(f"figure 4: {rows} installations loaded in {seconds:.1f} s")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", str(rows)],
        env=server.site_environment(url, 8000, SITE_ENV),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.scale failed:\n{done.stdout}{done.stderr}")
    timings: dict[str, float] = json.loads(done.stdout)
    progress(
        f"figure 4: {rows} rows: "
        + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in timings.items())
    )
    return timings


def run(sizes: Sizes, keep: bool, only: set[str]) -> int:
    lines = machine()
    for line in lines:
        progress(line)
    figures: list[Figure] = []
    created: list[str] = []
    workers = os.cpu_count() or 2
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as directory:
            workdir = Path(directory)
            url = database.recreate("site")
            created.append(url)  # figures 1 and 5
            setup_django(url)
            if only & {"1", "6"}:
                progress(f"figures 1 and 6: gunicorn with {workers} workers on PostgreSQL")
                with server.serve_example_project(
                    url, workers=workers, extra_env=SITE_ENV
                ) as base:
                    if "1" in only:
                        figures.extend(figure_throughput(base, sizes, workers, workdir))
                    if "6" in only:
                        progress("figure 6: receiving Bitbucket's signed calls")
                        figures.extend(figure_receiving(base, sizes, workers, workdir))
            if "2" in only:
                progress("figure 2: JWT verification")
                ours, bare = micro.jwt_verification(server.SHARED_SECRET)
                figures.append(
                    Figure(
                        "2 verify_token+qsh vs jwt.decode",
                        ours * 1e6,
                        bare * 1e6,
                        "us",
                        1.5,
                        False,
                    )
                )
            if "3" in only:
                progress("figure 3: button render")
                ours, static = micro.button_render()
                figures.append(
                    Figure(
                        "3 button tag vs static form", ours * 1e6, static * 1e6, "us", 2.0, False
                    )
                )
            if "4" in only:
                small = scale_timings(sizes.small_table, created)
                large = scale_timings(sizes.large_table, created)
                for key, label in (
                    ("changelist", "4a admin changelist"),
                    ("search_client_key", "4b admin search, clientKey"),
                    ("search_principal", "4c admin search, principal name"),
                    ("callback_lookup", "4d callback's locked lookup"),
                ):
                    figures.append(
                        Figure(
                            label,
                            large[key] * 1000,
                            small[key] * 1000,
                            "ms",
                            2.0,
                            False,
                            note=f"{sizes.large_table:,} rows vs {sizes.small_table:,}",
                        )
                    )
            if "5" in only:
                progress("figure 5: memory of one worker")
                if not only & {"1", "6"}:
                    server.run_manage(url, "migrate", "--noinput", extra_env=SITE_ENV)
                figures.append(figure_memory(url, sizes, workdir))
            if "7" in only:
                progress("figure 7: signing an outgoing request")
                figures.extend(figure_signing())
            if "8" in only:
                progress("figure 8: a cached access token")
                figures.append(figure_cached_token())
            if "9" in only:
                progress("figure 9: a Forge Invocation Token")
                figures.append(figure_forge())
            if "10" in only:
                progress("figure 10: pushing the descriptor")
                figures.extend(push_figures(sizes, workers, created))
    finally:
        if not keep:
            from django.db import connections

            connections.close_all()
            for created_url in created:
                database.drop(created_url)
    print()
    for line in lines:
        print(line)
    # In the order of their numbers (figure 6 is measured with figure 1, on its gunicorn).
    for figure in sorted(figures, key=lambda figure: int(figure.label.split()[0].rstrip("abcd"))):
        print(figure.line())
    return 0 if all(figure.passed for figure in figures) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--only", default="1,2,3,4,5,6,7,8,9,10", help="the figures to measure, e.g. --only 1,5"
    )
    options = parser.parse_args(argv)
    only = {part.strip() for part in options.only.split(",")}
    return run(QUICK if options.quick else FULL, options.keep, only)


if __name__ == "__main__":
    sys.exit(main())
