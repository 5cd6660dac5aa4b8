"""Figures 1 and 5: prepared return trips, and the load generator that sends them (figure
6's calls too, ``benchmarks.receiving``).

What is sent (``prepare_returns``): every request of ours is a realistic *first* return
from Bitbucket, each in a session of its own that holds a fresh flow (as the ``start``
view leaves it) of a logged-in user of its own (as when different people install),
carrying a new clientKey and a JWT signed with the app-level secret over that very
request. The callback verifies it, creates and connects the installation, consumes the
flow, sends ``installed`` (the example project's receiver adds a message), stores the
result and answers 303 to the result page. The baseline's requests (``prepare_baseline``)
carry a new clientKey each; its view creates the row and answers 303. The bound baseline's
requests (``prepare_bound``) are the baseline's in sessions like ours (a logged-in user of
their own each, the same flow in the session, unused): its view creates the row connected
to that user, writes the session and answers 303. Users and sessions are written to the
database beforehand, so the timed part is only the requests.

The load generator (``python -m benchmarks.throughput URL CALLS_JSON CONCURRENCY``) runs
in a process of its own: CONCURRENCY threads, each sending the next call (its method,
headers and body) with http.client over loopback (a new connection per request:
gunicorn's sync workers close them), and
prints one JSON object: requests, seconds, requests per second, latency percentiles and
every answer that was not the expected one.
"""

from __future__ import annotations

import http.client
import json
import secrets
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

CALLBACK_PATH = "/bitbucket/callback/"
BASELINE_PATH = "/baseline/callback/"
BOUND_PATH = "/baseline/bound/"
RESULT_PATH = "/bitbucket/result/"
TOKEN_LIFETIME = 540  # seconds; within the app's JWT_MAX_AGE (600)


@dataclass(frozen=True)
class Call:
    """One request to send and the answer that counts as a success (``location``: the
    ``Location`` header it must have, ``""`` for none)."""

    path: str
    cookie: str
    status: int
    location: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    unexpected: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def new_client_key() -> str:
    return f"ari:cloud:bitbucket::app/{{{uuid.uuid4()}}}/bench-app"


def _sessions(count: int) -> list[tuple[str, str]]:
    """``count`` new sessions, each of a new logged-in user with a fresh flow of theirs (as
    the ``start`` view leaves it); their keys and flow ids. Needs Django set up with the
    served site's settings (the same SECRET_KEY and database)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from bitbucket_install import flow as flows

    users = User.objects.bulk_create(
        [
            User(username=f"bench-{uuid.uuid4().hex}", password=make_password(None))
            for _ in range(count)
        ],
        batch_size=1000,
    )
    store = SessionStore()
    expires = timezone.now() + timedelta(days=1)
    started_at = time.time() - 1
    keys = []
    rows = []
    for user in users:
        key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
        flow_id = secrets.token_urlsafe(24)
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: user.get_session_auth_hash(),
            flows.SESSION_KEY: [
                {
                    "id": flow_id,
                    "user_id": str(user.pk),
                    "next": "",
                    "started_at": started_at,
                }
            ],
        }
        keys.append((key, flow_id))
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
    Session.objects.bulk_create(rows, batch_size=1000)
    return keys


def prepare_returns(count: int, shared_secret: str) -> list[Call]:
    """``count`` first returns of ours, each in its own session with a fresh flow, to that
    flow's redirect URI (``callback/<flow id>/``) with a JWT over it."""
    from bitbucket_install.tokens import encode_token

    calls = []
    for session_key, flow_id in _sessions(count):
        client_key = new_client_key()
        query = urlencode({"clientKey": client_key})
        path = f"{CALLBACK_PATH}{flow_id}/"
        token = encode_token(
            {"iss": client_key},
            shared_secret,
            method="GET",
            path=path,
            query_string=query,
            lifetime=TOKEN_LIFETIME,
        )
        calls.append(
            Call(
                path=f"{path}?{query}&{urlencode({'jwt': token})}",
                cookie=f"sessionid={session_key}",
                status=303,
                location=RESULT_PATH,
            )
        )
    return calls


def _upserts(path: str, cookies: list[str]) -> list[Call]:
    """A request to a hand-written view at ``path`` per cookie, each with a new clientKey."""
    return [
        Call(
            path=f"{path}?{urlencode({'clientKey': new_client_key()})}",
            cookie=cookie,
            status=303,
            location="/",
        )
        for cookie in cookies
    ]


def prepare_baseline(count: int) -> list[Call]:
    """``count`` requests to the hand-written view, without a session."""
    return _upserts(BASELINE_PATH, [""] * count)


def prepare_bound(count: int) -> list[Call]:
    """``count`` requests to the hand-written view bound to the user, in sessions like ours."""
    return _upserts(BOUND_PATH, [f"sessionid={key}" for key, _ in _sessions(count)])


def drive(base_url: str, calls: list[Call], concurrency: int) -> Result:
    """Send ``calls`` with ``concurrency`` threads; in this process (see ``run_driver``)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lock = threading.Lock()
    pending = iter(calls)
    latencies: list[float] = []
    unexpected: Counter[str] = Counter()

    def worker() -> None:
        while True:
            with lock:
                call = next(pending, None)
            if call is None:
                return
            started = time.perf_counter()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            try:
                headers = dict(call.headers)
                if call.cookie:
                    headers["Cookie"] = call.cookie
                body = call.body.encode() if call.body else None
                connection.request(call.method, call.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                outcome = (response.status, response.getheader("Location", ""))
            except (OSError, http.client.HTTPException) as error:
                outcome = (0, type(error).__name__)
            finally:
                connection.close()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if outcome != (call.status, call.location):
                    unexpected[f"{outcome[0]} {outcome[1]}"] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return Result(
        requests=len(ordered),
        seconds=seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        unexpected=dict(unexpected),
    )


def run_driver(base_url: str, calls: list[Call], concurrency: int, workdir: Path) -> Result:
    """``drive`` in a second process, so the client's work is not the measured server's."""
    import subprocess

    calls_path = workdir / f"calls-{uuid.uuid4().hex}.json"
    calls_path.write_text(json.dumps([asdict(call) for call in calls]))
    try:
        command = [sys.executable, "-m", "benchmarks.throughput", base_url, str(calls_path)]
        done = subprocess.run(
            [*command, str(concurrency)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        calls_path.unlink()
    data = json.loads(done.stdout)
    return Result(**data)


def main(argv: list[str]) -> None:
    base_url, calls_path, concurrency = argv
    calls = [Call(**item) for item in json.loads(Path(calls_path).read_text())]
    result = drive(base_url, calls, int(concurrency))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1:])
