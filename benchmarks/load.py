"""Load run: concurrent complete installs against the example project on gunicorn and
PostgreSQL, then a check that the database lost and duplicated nothing.

    python -m benchmarks.load --seconds 60 --clients 16     (or: make load SECONDS=60 CLIENTS=16)

1. Drops and creates the database ``bitbucket_install_load`` on the PostgreSQL server
   (``--postgres``, default ``$LOAD_POSTGRES_URL`` or ``postgres://postgres@127.0.0.1:5432``),
   serves the example project on it with gunicorn (``benchmarks.server``: registered app,
   DEBUG off, ``migrate`` first) and creates ``--users`` users.
2. A second process (``multiprocessing``, spawned) runs ``--clients`` threads for
   ``--seconds`` seconds, each over loopback with ``http.client``. Each thread repeats
   complete installs, each with a clientKey of its own:
   a browser logs in as one of the users through the login page (then does
   ``--installs-per-login`` installs before a new browser logs in again: PBKDF2 makes a
   login cost a second of CPU); for each install it GETs the landing page (CSRF cookie),
   POSTs the start view (303 to Bitbucket's authorize URL), then Bitbucket's part: the
   ``installed`` lifecycle POST (unsigned for a new clientKey; ``--reinstall-share`` of
   the installs re-install one of this user's earlier clientKeys, signed with its
   previous secret and bringing a new one), then the return to the callback with the
   clientKey and a JWT signed with the installation's secret (qsh over GET, the callback
   path and the query), following the 303 to the result page, and repeating the return 0
   to ``--max-repeats`` times (double clicks: 303 again, nothing new).
   Every answer is checked (status and target); anything else counts as an error.
3. The database is then checked: every completed install is exactly one row, confirmed,
   not uninstalled, connected to the user whose browser completed it, holding the secret
   of its last install; no other rows exist for the clientKeys of the run.

It prints the requests (by step), errors, p50/p99 latency, and as its last line
``installs completed: N, duplicates: 0, lost: 0, 5xx: 0, errors: 0``; the exit status is
1 unless duplicates, lost, 5xx and errors are all 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg

from benchmarks.server import ADDON_KEY, run_manage, serve_example_project
from bitbucket_install.tokens import encode_token

DATABASE = "bitbucket_install_load"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
PASSWORD = "load-run-password-0123"
CALLBACK_PATH = "/bitbucket/callback/"
REQUEST_TIMEOUT = 120.0


# --- the database ------------------------------------------------------------------------------


def fresh_database(server_url: str, name: str) -> str:
    """Drop and create database ``name``; its django-environ URL."""
    with psycopg.connect(server_url.rstrip("/") + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rstrip("/") + "/" + name


def create_users(database_url: str, count: int) -> list[str]:
    names = [f"load-user-{i}" for i in range(count)]
    code = (
        "from django.contrib.auth.models import User\n"
        f"for name in {names!r}:\n"
        f"    User.objects.create_user(name, password={PASSWORD!r})\n"
    )
    run_manage(database_url, "shell", "-c", code)
    return names


def stored_installations(database_url: str) -> list[tuple[str, str | None, str, bool, bool]]:
    """(client_key, username, shared_secret, confirmed, installed) for every row."""
    query = """
        SELECT i.client_key, u.username, i.shared_secret,
               i.confirmed_at IS NOT NULL, i.uninstalled_at IS NULL
        FROM bitbucket_install_installation i LEFT JOIN auth_user u ON u.id = i.user_id
    """
    with psycopg.connect(database_url) as conn:
        return [tuple(row) for row in conn.execute(query).fetchall()]


# --- one simulated browser ---------------------------------------------------------------------


class Unexpected(Exception):
    """An answer the install did not expect: counted as an error."""


@dataclass
class Stats:
    """What one client thread saw."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every clientKey sent in a lifecycle POST
    # clientKey -> (username, secret of its last completed install)
    completed: dict[str, tuple[str, str]] = field(default_factory=dict)
    installs: int = 0
    reinstalls: int = 0


class Browser:
    """Cookies and a fresh loopback connection per request (like a browser, no proxy)."""

    def __init__(self, base_url: str, stats: Stats) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.cookies: dict[str, str] = {}
        self.stats = stats

    def request(
        self,
        step: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        cookies: bool = True,
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if cookies and self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            content = response.read()
        finally:
            connection.close()
        self.stats.latencies.setdefault(step, []).append(time.perf_counter() - started)
        self.stats.statuses[response.status] += 1
        if cookies:
            for header in response.headers.get_all("Set-Cookie") or []:
                cookie: SimpleCookie = SimpleCookie()
                cookie.load(header)
                for name, morsel in cookie.items():
                    self.cookies[name] = morsel.value
        return response.status, dict(response.headers.items()), content

    def form_post(self, step: str, path: str, data: dict[str, str]) -> tuple[int, dict[str, str]]:
        fields = {"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **data}
        status, headers, _ = self.request(
            step,
            "POST",
            path,
            urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        return status, headers


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Unexpected(message)


def log_in(browser: Browser, username: str) -> None:
    status, _, _ = browser.request("login-page", "GET", "/accounts/login/")
    expect(status == 200, f"login page answered {status}")
    status, _ = browser.form_post(
        "login", "/accounts/login/", {"username": username, "password": PASSWORD}
    )
    expect(status == 302 and "sessionid" in browser.cookies, f"login answered {status}")


def lifecycle_installed(
    browser: Browser, client_key: str, secret: str, previous: str | None
) -> None:
    body = {
        "key": ADDON_KEY,
        "clientKey": client_key,
        "publicKey": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
        "sharedSecret": secret,
        "baseUrl": "https://bitbucket.org",
        "baseApiUrl": "https://api.bitbucket.org",
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": {"type": "workspace", "uuid": "{" + str(uuid.uuid4()) + "}"},
        "user": {"type": "user", "uuid": "{" + str(uuid.uuid4()) + "}"},
    }
    headers = {"Content-Type": "application/json"}
    if previous is not None:
        token = encode_token(
            {"iss": client_key}, previous, method="POST", path="/bitbucket/installed"
        )
        headers["Authorization"] = f"JWT {token}"
    status, _, _ = browser.request(
        "lifecycle",
        "POST",
        "/bitbucket/installed",
        json.dumps(body).encode(),
        headers,
        cookies=False,
    )
    expect(status == 204, f"installed callback answered {status}")


def install(
    browser: Browser,
    username: str,
    client_key: str,
    secret: str,
    previous: str | None,
    repeats: int,
) -> None:
    """One complete install, as the user's browser and Bitbucket make it."""
    status, _, page = browser.request("landing", "GET", "/")
    expect(status == 200 and b"bitbucket/install/" in page, f"landing page answered {status}")
    expect("csrftoken" in browser.cookies, "no CSRF cookie")
    status, headers = browser.form_post("start", "/bitbucket/install/", {})
    location = headers.get("Location", "")
    expect(
        status == 303 and f"addon_key={ADDON_KEY}" in location and "redirect_uri=" in location,
        f"start answered {status} {location[:80]}",
    )
    # Bitbucket: the lifecycle callback, then the browser sent back with the clientKey.
    lifecycle_installed(browser, client_key, secret, previous)
    query = urlencode({"clientKey": client_key})
    token = encode_token(
        {"iss": client_key}, secret, method="GET", path=CALLBACK_PATH, query_string=query
    )
    url = f"{CALLBACK_PATH}?{query}&{urlencode({'jwt': token})}"
    status, headers, _ = browser.request("callback", "GET", url)
    target = headers.get("Location", "")
    expect(status == 303 and target == "/bitbucket/result/", f"callback answered {status}")
    status, _, page = browser.request("result", "GET", target)
    expect(
        status == 200 and b"connected to your account" in page,
        f"result page answered {status}, connected: {b'connected to your account' in page}",
    )
    for _ in range(repeats):  # double clicks: the same answer, nothing new
        status, headers, _ = browser.request("repeat", "GET", url)
        expect(
            status == 303 and headers.get("Location") == "/bitbucket/result/",
            f"repeated return answered {status}",
        )


def client_thread(
    index: int, base_url: str, users: list[str], options: dict[str, Any], stats: Stats
) -> None:
    rng = random.Random(index)
    deadline = time.monotonic() + options["seconds"]
    mine: dict[str, list[str]] = {}  # username -> this thread's completed clientKeys
    while time.monotonic() < deadline:
        username = users[(index + stats.installs) % len(users)]
        browser = Browser(base_url, stats)
        try:
            log_in(browser, username)
        except (Unexpected, OSError, http.client.HTTPException) as error:
            stats.errors.append(f"login {username}: {error!r}")
            continue
        for _ in range(options["installs_per_login"]):
            if time.monotonic() >= deadline:
                break
            keys = mine.setdefault(username, [])
            previous = None
            if keys and rng.random() < options["reinstall_share"]:
                client_key = rng.choice(keys)
                previous = stats.completed[client_key][1]
            else:
                client_key = f"ari:cloud:bitbucket::app/{{{uuid.uuid4()}}}/{ADDON_KEY}"
                stats.issued.append(client_key)
            secret = secrets.token_urlsafe(32)
            try:
                install(
                    browser,
                    username,
                    client_key,
                    secret,
                    previous,
                    rng.randint(0, options["max_repeats"]),
                )
            except (Unexpected, OSError, http.client.HTTPException) as error:
                stats.errors.append(f"install {client_key} as {username}: {error!r}")
                if previous is not None:  # the row may hold either secret now
                    keys.remove(client_key)
                    stats.completed.pop(client_key, None)
                continue
            stats.installs += 1
            if previous is None:
                keys.append(client_key)
            else:
                stats.reinstalls += 1
            stats.completed[client_key] = (username, secret)


def drive(base_url: str, users: list[str], options: dict[str, Any], out: Connection) -> None:
    """The second process: ``clients`` threads until the time is up; results to ``out``."""
    all_stats = [Stats() for _ in range(options["clients"])]
    threads = [
        threading.Thread(target=client_thread, args=(i, base_url, users, options, stats))
        for i, stats in enumerate(all_stats)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send(all_stats)
    out.close()


# --- the report --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(
    all_stats: list[Stats], rows: list[tuple[str, str | None, str, bool, bool]], took: float
) -> int:
    latencies: dict[str, list[float]] = {}
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    issued: set[str] = set()
    completed: dict[str, tuple[str, str]] = {}
    installs = reinstalls = 0
    for stats in all_stats:
        for step, values in stats.latencies.items():
            latencies.setdefault(step, []).extend(values)
        statuses.update(stats.statuses)
        errors += stats.errors
        issued.update(stats.issued)
        completed.update(stats.completed)
        installs += stats.installs
        reinstalls += stats.reinstalls
    every = [value for values in latencies.values() for value in values]
    requests = len(every)
    server_errors = sum(count for status, count in statuses.items() if status >= 500)

    by_key: dict[str, list[tuple[str, str | None, str, bool, bool]]] = {}
    for row in rows:
        by_key.setdefault(row[0], []).append(row)
    duplicates = sum(len(found) - 1 for found in by_key.values() if len(found) > 1)
    duplicates += sum(1 for key in by_key if key not in issued)  # rows nobody installed
    lost: list[str] = []
    for key, (username, secret) in completed.items():
        found = by_key.get(key, [])
        if len(found) != 1:
            lost.append(f"{key}: {len(found)} rows")
            continue
        _, user, stored_secret, confirmed, installed = found[0]
        if not (user == username and stored_secret == secret and confirmed and installed):
            lost.append(
                f"{key}: user={user} expected {username}, secret ok="
                f"{stored_secret == secret}, confirmed={confirmed}, installed={installed}"
            )

    print(f"ran {took:.1f} s, {len(all_stats)} clients")
    print(
        f"requests: {requests} ({requests / took:.1f}/s); statuses: "
        + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    )
    for step, values in sorted(latencies.items()):
        print(
            f"  {step:<11} {len(values):>7}  p50 {1000 * percentile(values, 0.5):8.1f} ms"
            f"  p99 {1000 * percentile(values, 0.99):8.1f} ms"
        )
    print(
        f"latency (all requests): p50 {1000 * percentile(every, 0.5):.1f} ms, "
        f"p99 {1000 * percentile(every, 0.99):.1f} ms, "
        f"mean {1000 * (statistics.fmean(every) if every else 0):.1f} ms"
    )
    print(
        f"installs: {installs} completed ({reinstalls} re-installs signed with the "
        f"previous secret), {len(completed)} clientKeys, {len(rows)} rows in the database"
    )
    print(f"errors: {len(errors)}")
    for line in errors[:10]:
        print(f"  {line}")
    for line in lost[:10]:
        print(f"  lost: {line}")
    print(
        f"installs completed: {installs}, duplicates: {duplicates}, lost: {len(lost)}, "
        f"5xx: {server_errors}, errors: {len(errors)}"
    )
    return 0 if duplicates == len(lost) == server_errors == len(errors) == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers (default: 2 x CPUs)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads per gunicorn worker (gthread; 1 = sync workers)",
    )
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--installs-per-login", type=int, default=10)
    parser.add_argument("--reinstall-share", type=float, default=0.2)
    parser.add_argument("--max-repeats", type=int, default=2)
    parser.add_argument(
        "--postgres", default=os.environ.get("LOAD_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--database", default=DATABASE)
    args = parser.parse_args(argv)

    print(
        f"CPUs: {os.cpu_count()}; gunicorn: {args.workers} workers x {args.threads} threads; "
        f"{args.clients} clients for {args.seconds:.0f} s"
    )
    database_url = fresh_database(args.postgres, args.database)
    options = {
        "seconds": args.seconds,
        "clients": args.clients,
        "installs_per_login": args.installs_per_login,
        "reinstall_share": args.reinstall_share,
        "max_repeats": args.max_repeats,
    }
    with serve_example_project(database_url, workers=args.workers, threads=args.threads) as url:
        users = create_users(database_url, args.users)
        print(f"serving {url} on database {args.database}; {len(users)} users")
        receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
        driver = multiprocessing.get_context("spawn").Process(
            target=drive, args=(url, users, options, sender), name="load-driver"
        )
        started = time.monotonic()
        driver.start()
        sender.close()
        all_stats: list[Stats] = receiver.recv()
        driver.join()
        took = time.monotonic() - started
    rows = stored_installations(database_url)
    return report(all_stats, rows, took)


if __name__ == "__main__":
    sys.exit(main())
