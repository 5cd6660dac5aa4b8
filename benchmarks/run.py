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
from dataclasses import dataclass
from pathlib import Path

from benchmarks import database, memory, micro, server, throughput

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


# Figure 1b: the callback against the hand-written view that does the least binding to a
# browser and user (trust rule 2) takes with Django. What the app adds on top of that
# (JWT, qsh, flow checks, signal, log line) may cost a tenth of the throughput at most.
# Figure 1, against the plain view, measures what Django's session and user cost: shown
# for information, with no target.
BOUND_TARGET = 0.9

FULL = Sizes(7, 600, 150, 1_000, 1_000_000, 100, 10_000)
QUICK = Sizes(2, 100, 30, 1_000, 20_000, 50, 300)


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
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    def line(self) -> str:
        comparison = ">=" if self.higher_is_better else "<="
        decimals = {"req/s": 1, "us": 1, "ms": 2, "KiB": 0}.get(self.unit, 3)
        ours = f"{self.ours:.{decimals}f} {self.unit}"
        baseline = f"{self.baseline:.{decimals}f} {self.unit}"
        if self.target is None:
            verdict = "no target  info"
        else:
            verdict = f"target {comparison} {self.target:.2f}  {'PASS' if self.passed else 'FAIL'}"
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


THROUGHPUT_VIEWS = ("baseline", "bound", "ours")


def prepare_calls(view: str, count: int) -> list[throughput.Call]:
    if view == "baseline":
        return throughput.prepare_baseline(count)
    if view == "bound":
        return throughput.prepare_bound(count)
    return throughput.prepare_returns(count, server.SHARED_SECRET)


def figure_throughput(base_url: str, sizes: Sizes, workers: int, workdir: Path) -> list[Figure]:
    concurrency = 2 * workers
    rates: dict[str, list[float]] = {view: [] for view in THROUGHPUT_VIEWS}
    problems: dict[str, int] = {}

    def measured(calls: list[throughput.Call], view_rates: list[float] | None) -> None:
        result = throughput.run_driver(base_url, calls, concurrency, workdir)
        for answer, count in result.unexpected.items():
            problems[answer] = problems.get(answer, 0) + count
        if view_rates is not None:
            view_rates.append(result.per_second)
            progress(
                f"  {len(calls)} requests: {result.per_second:.1f}/s, p50 {result.p50_ms:.1f} ms,"
                f" p99 {result.p99_ms:.1f} ms, unexpected answers {result.unexpected or 0}"
            )

    for view in THROUGHPUT_VIEWS:
        measured(prepare_calls(view, sizes.warmup), None)
    for round_number in range(1, sizes.rounds + 1):
        # Each view goes first in turn, so a drift of the machine's speed during a round
        # does not favour one of them.
        shift = (round_number - 1) % len(THROUGHPUT_VIEWS)
        order = THROUGHPUT_VIEWS[shift:] + THROUGHPUT_VIEWS[:shift]
        calls = {view: prepare_calls(view, sizes.per_round) for view in order}
        for view in order:
            progress(f"figure 1, round {round_number}: {view}")
            measured(calls[view], rates[view])
    median = {view: statistics.median(rates[view]) for view in THROUGHPUT_VIEWS}

    def paired(ours: str, baseline: str) -> float:
        return statistics.median(a / b for a, b in zip(rates[ours], rates[baseline], strict=True))

    note = (
        f"{workers} workers, {concurrency} clients, {sizes.rounds} rounds: median rates,"
        " median of the rounds' ratios"
    )
    # Every request must be a success for the figures to count.
    invalid = f"unexpected answers {problems}" if problems else ""

    def compared(label: str, ours: str, baseline: str, target: float | None, why: str) -> Figure:
        return Figure(
            label,
            median[ours],
            median[baseline],
            "req/s",
            target,
            higher_is_better=True,
            note=why,
            invalid=invalid,
            paired_ratio=paired(ours, baseline),
        )

    return [
        compared("1 callback vs update_or_create view", "ours", "baseline", None, note),
        compared(
            "1b callback vs that view bound to the user", "ours", "bound", BOUND_TARGET, note
        ),
        compared(
            "1c bound view vs update_or_create view",
            "bound",
            "baseline",
            None,
            "what Django's session and user cost alone",
        ),
    ]


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
            if "1" in only:
                progress(f"figure 1: gunicorn with {workers} workers on PostgreSQL")
                with server.serve_example_project(
                    url, workers=workers, extra_env=SITE_ENV
                ) as base:
                    figures.extend(figure_throughput(base, sizes, workers, workdir))
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
                if "1" not in only:
                    server.run_manage(url, "migrate", "--noinput", extra_env=SITE_ENV)
                figures.append(figure_memory(url, sizes, workdir))
    finally:
        if not keep:
            from django.db import connections

            connections.close_all()
            for created_url in created:
                database.drop(created_url)
    print()
    for line in lines:
        print(line)
    for figure in figures:
        print(figure.line())
    return 0 if all(figure.passed for figure in figures) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--only", default="1,2,3,4,5", help="the figures to measure, e.g. --only 1,5"
    )
    options = parser.parse_args(argv)
    only = {part.strip() for part in options.only.split(",")}
    return run(QUICK if options.quick else FULL, options.keep, only)


if __name__ == "__main__":
    sys.exit(main())
