"""flow.py: the browser flow the start view records (single-use, short-lived, per user)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.cache import SessionStore
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from bitbucket_install import flow as flows
from bitbucket_install.flow import (
    CONFIRMED_SESSION_KEY,
    MAX_FLOWS_PER_SESSION,
    SESSION_KEY,
    Flow,
)

ALICE = User(pk=7, username="alice")
BOB = User(pk=8, username="bob")


class Clock:
    """Stands in for the ``time`` module inside flow.py."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(flows, "time", fake)
    return fake


def make_request(user: Any = None, *, path: str = "/", secure: bool = False) -> HttpRequest:
    request = RequestFactory().get(path, secure=secure)
    request.session = SessionStore()
    request.user = user if user is not None else AnonymousUser()
    return request


# --- safe_next ------------------------------------------------------------------------

UNSAFE_NEXT = [
    "http://evil.test/x",
    "https://evil.test/x",
    "//evil.test",
    "//evil.test/x",
    "///evil.test",
    "\\\\evil.test",
    "/\\evil.test",
    "/\\/evil.test",
    "/a\\b",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "https://user@evil.test",
    "http://testserver@evil.test",
    "http://testserver/x",
    "/dashboard/\n",
    "/dash\nboard/",
    "/dash\rboard/",
    "/\tevil.test",
    "/x\x00",
    "/x\x1b[31m",
    "dashboard/",
    "./dashboard/",
    "../dashboard/",
    "?tab=1",
    " /dashboard/",
    "",
    None,
    "/" + "a" * 2048,
]
SAFE_NEXT = [
    "/dashboard/?tab=1",
    "/",
    "/a/b/c?x=1&y=2#frag",
    "/ünï/",
    "/a%2F%2Fb",
    "/" + "a" * 2047,
]


@pytest.mark.parametrize("candidate", UNSAFE_NEXT)
def test_safe_next_drops_unsafe_values(candidate: str | None) -> None:
    assert flows.safe_next(make_request(), candidate) == ""
    assert flows.safe_next(make_request(secure=True), candidate) == ""


@pytest.mark.parametrize("candidate", SAFE_NEXT)
def test_safe_next_keeps_paths_on_this_site(candidate: str) -> None:
    assert flows.safe_next(make_request(), candidate) == candidate
    assert flows.safe_next(make_request(secure=True), candidate) == candidate


# --- start ----------------------------------------------------------------------------


def test_start_records_one_flow(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, "/dashboard/?tab=1")
    assert flow.user_id == "7"
    assert flow.next == "/dashboard/?tab=1"
    assert flow.started_at == clock.now
    assert len(flow.id) >= 32
    assert request.session[SESSION_KEY] == [asdict(flow)]
    assert flows.pending(request) == [flow]


def test_start_anonymous_and_unsafe_next(clock: Clock) -> None:
    request = make_request()
    flow = flows.start(request, "//evil.test")
    assert flow.user_id is None
    assert flow.next == ""
    assert request.session[SESSION_KEY] == [asdict(flow)]


def test_start_without_user_attribute(clock: Clock) -> None:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    flow = flows.start(request, None)
    assert flow.user_id is None
    assert flows.pending(request) == [flow]


def test_flow_ids_are_random(clock: Clock) -> None:
    request = make_request(ALICE)
    ids = {flows.start(request, None).id for _ in range(MAX_FLOWS_PER_SESSION)}
    assert len(ids) == MAX_FLOWS_PER_SESSION


def test_pending_is_newest_first(clock: Clock) -> None:
    request = make_request(ALICE)
    first = flows.start(request, "/1")
    clock.now += 1
    second = flows.start(request, "/2")
    assert flows.pending(request) == [second, first]


def test_cap_drops_the_oldest(clock: Clock) -> None:
    request = make_request(ALICE)
    started = []
    for number in range(MAX_FLOWS_PER_SESSION + 2):
        clock.now += 1
        started.append(flows.start(request, f"/{number}"))
    assert MAX_FLOWS_PER_SESSION == 5
    kept = started[-MAX_FLOWS_PER_SESSION:]
    assert request.session[SESSION_KEY] == [asdict(flow) for flow in kept]
    assert flows.pending(request) == list(reversed(kept))
    assert started[0] not in flows.pending(request)
    assert started[1] not in flows.pending(request)


@override_settings(BITBUCKET_INSTALL_FLOW_MAX_AGE=60)
def test_flow_expires_after_flow_max_age(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    clock.now += 60
    assert flows.pending(request) == [flow]
    clock.now += 0.5
    assert flows.pending(request) == []
    # The next start forgets it for good.
    newer = flows.start(request, None)
    assert request.session[SESSION_KEY] == [asdict(newer)]


def test_flow_max_age_default_is_15_minutes(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    clock.now += 900
    assert flows.pending(request) == [flow]
    clock.now += 1
    assert flows.pending(request) == []


# --- finish: single use -----------------------------------------------------------------


def test_finish_is_single_use(clock: Clock) -> None:
    request = make_request(ALICE)
    first = flows.start(request, "/1")
    clock.now += 1
    second = flows.start(request, "/2")
    flows.finish(request, second)
    assert flows.pending(request) == [first]
    flows.finish(request, second)  # a second use finds nothing
    assert flows.pending(request) == [first]
    flows.finish(request, first)
    assert flows.pending(request) == []
    assert request.session[SESSION_KEY] == []


# --- pending: only the current user's ---------------------------------------------------


def test_pending_only_returns_flows_of_the_current_user(clock: Clock) -> None:
    request = make_request(ALICE)
    alices = flows.start(request, "/alice")
    request.user = BOB
    assert flows.pending(request) == []
    bobs = flows.start(request, "/bob")
    assert flows.pending(request) == [bobs]
    request.user = AnonymousUser()
    assert flows.pending(request) == []
    anonymous = flows.start(request, "/anon")
    assert flows.pending(request) == [anonymous]
    request.user = ALICE
    assert flows.pending(request) == [alices]
    assert alices.belongs_to(request)
    assert not bobs.belongs_to(request)
    assert not anonymous.belongs_to(request)


# --- garbage in the session -------------------------------------------------------------


@pytest.mark.parametrize("stored", ["junk", 5, None, {"id": "x"}, [], True, 3.5])
def test_garbage_session_value_is_ignored(clock: Clock, stored: Any) -> None:
    request = make_request(ALICE)
    request.session[SESSION_KEY] = stored
    assert flows.pending(request) == []
    flow = flows.start(request, "/ok")
    assert request.session[SESSION_KEY] == [asdict(flow)]


def test_garbage_items_are_ignored(clock: Clock) -> None:
    request = make_request(ALICE)
    good: dict[str, Any] = {"id": "good", "user_id": "7", "next": "/ok", "started_at": clock.now}
    request.session[SESSION_KEY] = [
        "junk",
        5,
        None,
        [1, 2],
        {},
        {"id": "missing-fields"},
        {**good, "id": "extra-field", "extra": 1},
        {**good, "id": "bad-time", "started_at": "yesterday"},
        {**good, "id": "no-time", "started_at": None},
        {**good, "id": "bool-time", "started_at": True},
        {**good, "id": 5},
        {**good, "id": "bad-next", "next": 5},
        {**good, "id": "bad-user", "user_id": 7},
        good,
    ]
    assert flows.pending(request) == [Flow("good", "7", "/ok", clock.now)]
    flows.start(request, None)
    assert [item["id"] for item in request.session[SESSION_KEY]][:1] == ["good"]
    assert len(request.session[SESSION_KEY]) == 2


# --- remember_confirmed / has_confirmed -------------------------------------------------


def test_remember_confirmed_and_has_confirmed() -> None:
    request = make_request(ALICE)
    assert not flows.has_confirmed(request, "ari:a")
    flows.remember_confirmed(request, "ari:a")
    assert flows.has_confirmed(request, "ari:a")
    assert not flows.has_confirmed(request, "ari:b")
    flows.remember_confirmed(request, "ari:b")
    flows.remember_confirmed(request, "ari:a")  # again: moved to the end, not duplicated
    assert request.session[CONFIRMED_SESSION_KEY] == ["ari:b", "ari:a"]


def test_remember_confirmed_keeps_the_newest_five() -> None:
    request = make_request()
    for number in range(7):
        flows.remember_confirmed(request, f"ari:{number}")
    assert request.session[CONFIRMED_SESSION_KEY] == [f"ari:{n}" for n in range(2, 7)]
    assert not flows.has_confirmed(request, "ari:0")
    assert not flows.has_confirmed(request, "ari:1")
    assert flows.has_confirmed(request, "ari:6")


@pytest.mark.parametrize("stored", ["ari:a", 5, None, {"ari:a": 1}, True])
def test_confirmed_garbage_is_ignored(stored: Any) -> None:
    request = make_request()
    request.session[CONFIRMED_SESSION_KEY] = stored
    assert not flows.has_confirmed(request, "ari:a")
    assert not flows.has_confirmed(request, "a")
    flows.remember_confirmed(request, "ari:b")
    assert request.session[CONFIRMED_SESSION_KEY] == ["ari:b"]
    assert flows.has_confirmed(request, "ari:b")
