"""flow.py: the browser flow the start view records (single-use, short-lived, per user),
found again only by its id, and what a browser keeps of the flows it used up."""

from __future__ import annotations

import hashlib
import string
from dataclasses import asdict
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.cache import SessionStore
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from bitbucket_install import flow as flows
from bitbucket_install.flow import (
    MAX_FLOW_ID_LENGTH,
    MAX_FLOWS_PER_SESSION,
    SESSION_KEY,
    USED_SESSION_KEY,
    Flow,
    UsedFlow,
)

ALICE = User(pk=7, username="alice")
BOB = User(pk=8, username="bob")
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


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


def stored_ids(request: HttpRequest) -> list[str]:
    return [item["id"] for item in request.session.get(SESSION_KEY, [])]


def store(request: HttpRequest, *items: Flow) -> None:
    request.session[SESSION_KEY] = [asdict(item) for item in items]


# --- safe_next ------------------------------------------------------------------------

UNSAFE_NEXT = [
    "http://evil.test/x",
    "https://evil.test/x",
    "//evil.test",
    "//evil.test/x",
    "//host/x",
    "///evil.test",
    "\\\\evil.test",
    "/\\host",
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
    "/a\x1fb",  # the last control character below the space
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
    "/a b/",  # a space (the first character that is not a control) is a path's own
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


@pytest.mark.parametrize("candidate", ["//host/x", "/\\host"])
def test_start_drops_a_next_that_browsers_read_as_another_host(
    clock: Clock, candidate: str
) -> None:
    request = make_request(ALICE)
    assert flows.start(request, candidate).next == ""
    assert request.session[SESSION_KEY][0]["next"] == ""


# --- start ----------------------------------------------------------------------------


def test_start_records_one_flow(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, "/dashboard/?tab=1")
    assert flow.user_id == "7"
    assert flow.next == "/dashboard/?tab=1"
    assert flow.started_at == clock.now
    # token_urlsafe(24): 32 URL-safe characters, fit for a path segment.
    assert len(flow.id) == 32
    assert set(flow.id) <= URL_SAFE
    assert request.session[SESSION_KEY] == [asdict(flow)]
    assert flows.live(request, flow.id) == flow
    assert USED_SESSION_KEY not in request.session


def test_start_anonymous_and_unsafe_next(clock: Clock) -> None:
    request = make_request()
    flow = flows.start(request, "//evil.test")
    assert flow.user_id is None
    assert flow.next == ""
    assert request.session[SESSION_KEY] == [asdict(flow)]
    assert flows.live(request, flow.id) == flow


def test_start_without_user_attribute(clock: Clock) -> None:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    flow = flows.start(request, None)
    assert flow.user_id is None
    assert flows.live(request, flow.id) == flow


def test_flow_ids_are_random(clock: Clock) -> None:
    request = make_request(ALICE)
    ids = {flows.start(request, None).id for _ in range(MAX_FLOWS_PER_SESSION)}
    assert len(ids) == MAX_FLOWS_PER_SESSION


def test_cap_drops_the_oldest(clock: Clock) -> None:
    request = make_request(ALICE)
    started = []
    for number in range(MAX_FLOWS_PER_SESSION + 2):
        clock.now += 1
        started.append(flows.start(request, f"/{number}"))
    assert MAX_FLOWS_PER_SESSION == 5
    kept = started[-MAX_FLOWS_PER_SESSION:]
    assert request.session[SESSION_KEY] == [asdict(flow) for flow in kept]
    assert [flows.live(request, flow.id) for flow in kept] == kept
    assert flows.live(request, started[0].id) is None
    assert flows.live(request, started[1].id) is None


@override_settings(BITBUCKET_INSTALL_FLOW_MAX_AGE=60)
def test_flow_expires_after_flow_max_age(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    clock.now += 60
    assert flows.live(request, flow.id) == flow
    clock.now += 0.5
    assert flows.live(request, flow.id) is None
    # The next start forgets it for good.
    newer = flows.start(request, None)
    assert request.session[SESSION_KEY] == [asdict(newer)]


def test_flow_max_age_default_is_15_minutes(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    clock.now += 900
    assert flows.live(request, flow.id) == flow
    clock.now += 1
    assert flows.live(request, flow.id) is None


# --- live: only by its id, only the current user's -------------------------------------


def test_live_finds_each_flow_by_its_own_id_only(clock: Clock) -> None:
    request = make_request(ALICE)
    first = flows.start(request, "/1")
    second = flows.start(request, "/2")
    assert flows.live(request, first.id) == first
    assert flows.live(request, second.id) == second
    for near_miss in [
        first.id[:-1],
        first.id + "x",
        first.id.upper() if first.id.upper() != first.id else first.id.lower(),
        " " + first.id,
        first.hash,
        "",
    ]:
        assert flows.live(request, near_miss) is None
    # Looking does not use anything up.
    assert stored_ids(request) == [first.id, second.id]


def test_live_only_finds_flows_of_the_current_user(clock: Clock) -> None:
    request = make_request(ALICE)
    alices = flows.start(request, "/alice")
    request.user = BOB
    assert flows.live(request, alices.id) is None
    bobs = flows.start(request, "/bob")
    assert flows.live(request, bobs.id) == bobs
    request.user = AnonymousUser()
    assert flows.live(request, alices.id) is None
    assert flows.live(request, bobs.id) is None
    anonymous = flows.start(request, "/anon")
    assert flows.live(request, anonymous.id) == anonymous
    request.user = ALICE
    assert flows.live(request, alices.id) == alices
    assert flows.live(request, anonymous.id) is None
    assert alices.belongs_to(request)
    assert not bobs.belongs_to(request)
    assert not anonymous.belongs_to(request)
    # A flow of another user is left where it is.
    assert stored_ids(request) == [alices.id, bobs.id, anonymous.id]


def test_an_anonymous_flow_belongs_to_a_request_without_user(clock: Clock) -> None:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    flow = flows.start(request, None)
    assert flow.belongs_to(request)
    request.user = ALICE
    assert not flow.belongs_to(request)
    assert flows.live(request, flow.id) is None


def test_live_id_length_edges(clock: Clock) -> None:
    """Ids up to MAX_FLOW_ID_LENGTH characters are looked at; an empty id or a longer one
    never matches, even a stored flow that has that id."""
    request = make_request(ALICE)
    longest = Flow("a" * MAX_FLOW_ID_LENGTH, "7", "/ok", clock.now)
    too_long = Flow("b" * (MAX_FLOW_ID_LENGTH + 1), "7", "/ok", clock.now)
    empty = Flow("", "7", "/ok", clock.now)
    store(request, longest, too_long, empty)
    assert MAX_FLOW_ID_LENGTH == 64
    assert flows.live(request, longest.id) == longest
    assert flows.live(request, too_long.id) is None
    assert flows.live(request, "") is None


def test_live_with_a_non_ascii_id_finds_nothing(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    assert flows.live(request, "é" * 10) is None
    assert flows.live(request, flow.id + "é") is None
    assert flows.live(request, flow.id) == flow


# --- finish: single use, remembered as used ---------------------------------------------


def used(flow: Flow, confirmed: str = "") -> dict[str, Any]:
    """The used-flow entry ``finish`` keeps of ``flow``, as stored in the session."""
    return asdict(UsedFlow(flow.hash, confirmed, flow.next, flow.user_id is not None))


def test_finish_uses_up_that_flow_only(clock: Clock) -> None:
    request = make_request(ALICE)
    first = flows.start(request, "/1")
    clock.now += 1
    second = flows.start(request, "/2")

    flows.finish(request, second, confirmed="key-2")

    assert flows.live(request, second.id) is None
    assert flows.live(request, first.id) == first
    assert request.session[USED_SESSION_KEY] == [used(second, "key-2")]
    assert flows.used_here(request, second.id) == UsedFlow(second.hash, "key-2", "/2", True)
    assert flows.used_here(request, first.id) is None
    flows.finish(request, first)
    assert stored_ids(request) == []
    assert request.session[SESSION_KEY] == []
    assert request.session[USED_SESSION_KEY] == [used(second, "key-2"), used(first)]
    assert flows.used_here(request, first.id) == UsedFlow(first.hash, "", "/1", True)


def test_finish_without_a_confirmation_keeps_an_empty_client_key(clock: Clock) -> None:
    """A flow whose return failed or was refused: a reload of it finds nothing to show."""
    request = make_request()
    flow = flows.start(request, "/dashboard/")

    flows.finish(request, flow)

    assert flows.used_here(request, flow.id) == UsedFlow(flow.hash, "", "/dashboard/", False)


@pytest.mark.parametrize(("user", "signed_in"), [(ALICE, True), (None, False)])
def test_the_used_entry_says_whether_the_flow_was_started_signed_in(
    clock: Clock, user: Any, signed_in: bool
) -> None:
    request = make_request(user)
    flow = flows.start(request, "//evil.test")

    flows.finish(request, flow, confirmed="key")

    # Its next is the flow's, so already made safe when the flow started.
    assert flows.used_here(request, flow.id) == UsedFlow(flow.hash, "key", "", signed_in)


def test_the_used_list_keeps_hashes_never_ids(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    flows.finish(request, flow, confirmed="key")
    [kept] = request.session[USED_SESSION_KEY]
    assert kept["hash"] == hashlib.sha256(flow.id.encode()).hexdigest()
    assert flow.id not in repr(dict(request.session.items()))


def test_the_used_list_keeps_the_newest_five(clock: Clock) -> None:
    request = make_request(ALICE)
    finished = []
    for number in range(MAX_FLOWS_PER_SESSION + 2):
        flow = flows.start(request, f"/{number}")
        flows.finish(request, flow, confirmed=f"key-{number}")
        finished.append(flow)
    assert (
        request.session[USED_SESSION_KEY]
        == [used(flow, f"key-{number}") for number, flow in enumerate(finished)][-5:]
    )
    assert flows.used_here(request, finished[0].id) is None
    assert flows.used_here(request, finished[1].id) is None
    for number, flow in enumerate(finished[2:], start=2):
        assert flows.used_here(request, flow.id) == UsedFlow(
            flow.hash, f"key-{number}", f"/{number}", True
        )


def test_used_here_finds_the_entry_of_that_flow_only(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    flows.finish(request, flow, confirmed="key")
    assert flows.used_here(request, flow.id) is not None
    assert flows.used_here(request, flow.id + "x") is None
    assert flows.used_here(request, flow.hash) is None  # the hash is no id
    assert flows.used_here(request, "") is None


def test_used_here_without_any_used_flow(clock: Clock) -> None:
    request = make_request(ALICE)
    assert flows.used_here(request, "some-id") is None
    assert flows.used_here(request, "") is None
    assert USED_SESSION_KEY not in request.session


# What an older version kept (bare hashes), or anything else that is not a used-flow entry.
def garbage_entries(flow: Flow) -> list[Any]:
    good = used(flow, "key")
    return [
        flow.hash,
        [flow.hash],
        5,
        None,
        True,
        {},
        {flow.hash: "key"},
        {"hash": flow.hash},
        {key: value for key, value in good.items() if key != "signed_in"},
        {**good, "extra": 1},
        {**good, "hash": 5},
        {**good, "hash": None},
        {**good, "client_key": None},
        {**good, "client_key": ["key"]},
    ]


@pytest.mark.parametrize("stored", ["{hash}", ("{hash}",), {"{hash}": 1}, 5, None, True])
def test_a_used_list_of_another_shape_is_ignored(clock: Clock, stored: Any) -> None:
    """A string holding the hash (``in`` would find it), a tuple or a dict keyed by it:
    not a list, so nothing in it counts."""
    request = make_request(ALICE)
    flow = flows.start(request, None)
    if isinstance(stored, str):
        stored = stored.format(hash=flow.hash)
    elif isinstance(stored, tuple):
        stored = (used(flow, "key"),)
    elif isinstance(stored, dict):
        stored = {flow.hash: used(flow, "key")}
    request.session[USED_SESSION_KEY] = stored

    assert flows.used_here(request, flow.id) is None


def test_garbage_used_entries_are_ignored(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, None)
    request.session[USED_SESSION_KEY] = garbage_entries(flow)

    assert flows.used_here(request, flow.id) is None


def test_a_good_used_entry_among_garbage_is_found(clock: Clock) -> None:
    request = make_request(ALICE)
    flow = flows.start(request, "/ok")
    request.session[USED_SESSION_KEY] = [*garbage_entries(flow), used(flow, "key")]

    assert flows.used_here(request, flow.id) == UsedFlow(flow.hash, "key", "/ok", True)


@pytest.mark.parametrize(
    "change",
    [{"next": 5}, {"next": ["/x/"]}, {"next": None}, {"signed_in": "yes"}, {"signed_in": None}],
)
def test_a_used_entry_whose_next_or_signed_in_has_another_type_is_dropped(
    clock: Clock, change: dict[str, Any]
) -> None:
    """An entry whose ``next`` is not text or whose ``signed_in`` is not a bool is dropped,
    like any other of another shape (a flow's every field is checked too)."""
    request = make_request(ALICE)
    flow = flows.start(request, "/ok")
    request.session[USED_SESSION_KEY] = [{**used(flow, "key"), **change}]

    assert flows.used_here(request, flow.id) is None


@pytest.mark.parametrize("stored", ["junk", 5, None, {"h": 1}, True, "garbage-entries"])
def test_finish_drops_garbage_from_the_used_list(clock: Clock, stored: Any) -> None:
    request = make_request(ALICE)
    kept = flows.start(request, "/kept")
    flows.finish(request, kept, confirmed="kept-key")
    flow = flows.start(request, None)
    if stored == "garbage-entries":
        stored = [*garbage_entries(flow), *request.session[USED_SESSION_KEY]]
    request.session[USED_SESSION_KEY] = stored

    flows.finish(request, flow, confirmed="key")

    good_before = [used(kept, "kept-key")] if isinstance(stored, list) else []
    assert request.session[USED_SESSION_KEY] == [*good_before, used(flow, "key")]
    assert flows.used_here(request, flow.id) == UsedFlow(flow.hash, "key", "", True)


def test_flow_hash_is_the_sha256_of_the_id() -> None:
    flow = Flow("abc", None, "", 0.0)
    assert flow.hash == flows.flow_hash("abc")
    assert flow.hash == hashlib.sha256(b"abc").hexdigest()
    assert len(flow.hash) == 64


# --- is_recent --------------------------------------------------------------------------


def test_is_recent_counts_from_the_start(clock: Clock) -> None:
    flow = flows.start(make_request(ALICE), None)
    clock.now += 120
    assert flow.is_recent(120)
    clock.now += 0.5
    assert not flow.is_recent(120)
    assert flow.is_recent(121)


# --- garbage in the session -------------------------------------------------------------


@pytest.mark.parametrize("stored", ["junk", 5, None, {"id": "x"}, [], True, 3.5])
def test_garbage_session_value_is_ignored(clock: Clock, stored: Any) -> None:
    request = make_request(ALICE)
    request.session[SESSION_KEY] = stored
    assert flows.live(request, "x") is None
    flow = flows.start(request, "/ok")
    assert request.session[SESSION_KEY] == [asdict(flow)]


def test_garbage_items_are_ignored(clock: Clock) -> None:
    request = make_request(ALICE)
    good: dict[str, Any] = {"id": "good", "user_id": "7", "next": "/ok", "started_at": clock.now}
    garbage: list[Any] = [
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
    ]
    request.session[SESSION_KEY] = [*garbage, good]
    for item in garbage:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            assert flows.live(request, item["id"]) is None
    assert flows.live(request, "good") == Flow("good", "7", "/ok", clock.now)
    flows.start(request, None)
    assert stored_ids(request)[:1] == ["good"]
    assert len(request.session[SESSION_KEY]) == 2


@override_settings(BITBUCKET_INSTALL_FLOW_MAX_AGE=10**10)
def test_an_integer_start_time_is_a_start_time(clock: Clock) -> None:
    request = make_request(ALICE)
    request.session[SESSION_KEY] = [{"id": "int", "user_id": "7", "next": "", "started_at": 1}]
    # clamped to 24 hours: 1 (1970) is long gone
    assert flows.live(request, "int") is None
    request.session[SESSION_KEY] = [
        {"id": "int", "user_id": "7", "next": "", "started_at": int(clock.now)}
    ]
    assert flows.live(request, "int") == Flow("int", "7", "", int(clock.now))
