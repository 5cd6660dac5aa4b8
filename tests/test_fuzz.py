"""A fuzz pass over the three entry points, and the replay of what it found.

Structured fuzzing (hypothesis drawing from grammars of near-valid inputs, so the cases
get past the first checks and reach the deep ones):

- callback query strings: the clientKey spellings, repeated and conflicting parameters,
  error returns, and JWTs built from a grammar of headers, claims, secrets, qsh (also one
  over another path) and mutations (truncation, flipped characters, nesting, padding),
  sent to the browser's own flow, to ``callback/`` or to a flow id nobody was given;
- lifecycle bodies and headers: a real body with one to three mutations (fields dropped,
  wrong types, huge or control or surrogate text, NaN and Infinity, deep nesting, other
  keys, claims of other hosts, apps and key-shaped secrets, hidden characters in names),
  unsigned or signed with the stored secret, a wrong one, or garbage;
- descriptor-related settings: any ``BITBUCKET_INSTALL_*`` value (wrong types, huge
  strings, Unicode, malformed URLs) through the system checks, ``build_descriptor`` and
  the descriptor view.

Every request is counted (the test fails if the fuzz made too few) and must not answer
500 or raise. Every rejected request (anything but the documented success) must leave the
Installation table exactly as it was and send no ``installed``/``uninstalled`` signal, and
nothing forged is ever accepted: only a request the grammar built to be genuine may change
a row. Only a return of the browser's own flow may connect a user (its own) or send
``install_failed``; the others never touch a flow.

``tests/fuzz_corpus/*.json`` holds the cases that found bugs (each names the bug and the
fix); ``test_corpus_case`` replays every one of them in CI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.checks import CheckMessage, run_checks
from django.test import Client, override_settings
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from bitbucket_install.conf import DURATIONS, app_settings, is_duration, is_strong_app_secret
from bitbucket_install.descriptor import build_descriptor
from bitbucket_install.identifiers import HIDDEN_CATEGORIES, origin
from bitbucket_install.models import Installation
from bitbucket_install.returns import SECURITY_PARAMETERS
from bitbucket_install.signals import install_failed, installed, uninstalled
from bitbucket_install.tokens import CONTEXT_QSH, is_valid_client_key, query_string_hash
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    KEY_B,
    RESULT_PATH,
    flow_ids,
    flow_path,
    installed_via_lifecycle,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body
from tests.test_properties import BOUNDED, examples, unregistered_once

CORPUS_DIR = Path(__file__).resolve().parent / "fuzz_corpus"
NOW_SLACK = 5  # seconds: "sound" times stay sound for the length of one example
KEY_NEW = "connection:fuzz-new-installation-7"


# --- bookkeeping -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Requests the fuzz made, by entry point and status."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)

    def record(self, entry: str, status: int) -> None:
        assert status != 500, f"{entry} answered 500"
        self.statuses[(entry, status)] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        return ", ".join(f"{e} {s}: {n}" for (e, s), n in sorted(self.statuses.items()))


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """Counts the fuzz test's requests; at the end it must have made enough of them."""
    counts = Tally()
    yield counts
    minimum = max(10, BOUNDED.max_examples // 4)
    print(f"\n{request.node.name}: {counts.requests} requests ({counts.summary()})")
    assert counts.requests >= minimum, f"only {counts.requests} requests: {counts.summary()}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(header: str, payload: str, secret: str) -> str:
    signing_input = f"{b64(header.encode())}.{b64(payload.encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class Raw:
    """A piece of JSON text put in as is: NaN, 1e999, "\\ud800", [[[...]]]."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r})"


def to_json(value: Any) -> str:
    """``json.dumps`` that lets ``Raw`` pieces through unchanged."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, inner: str = "1") -> Raw:
    return Raw("[" * depth + inner + "]" * depth)


# Values that have found bugs in apps like this one, as JSON.
ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        0,
        -1,
        10**30,
        True,
        [],
        {},
        "",
        " ",
        "x" * 70_000,
        "\x00",
        "a\nb",
        "<script>alert(1)</script>",
        "é日€😀",
        "\u202e",
        Raw("NaN"),
        Raw("Infinity"),
        Raw("1e999"),
        Raw('"\\ud800"'),
        Raw('"x\\udc00y"'),
        Raw('"\\u0000"'),
        nested(20),
        nested(1435),
        nested(5000),
    ]
)


# --- the callback: query strings ------------------------------------------------------------


@dataclass(frozen=True)
class Return:
    query: str
    genuine: bool  # built to pass verification (it may still be refused, never forged)
    description: str


TIMES: dict[str, dict[str, Any]] = {
    "sound": {"iat": 0, "exp": 180},
    "expired": {"iat": -900, "exp": -600},
    "future": {"iat": 900, "exp": 1000},
    "missing": {},
    "string": {"iat": "0", "exp": "180"},
    "nan": {"iat": Raw("NaN"), "exp": Raw("Infinity")},
    "huge": {"iat": 0, "exp": Raw("1" + "0" * 400)},
    "bool": {"iat": True, "exp": True},
    "too-long": {"iat": 0, "exp": 3600},
}
HEADERS = {
    "standard": '{"alg":"HS256","typ":"JWT"}',
    "alg-none": '{"alg":"none","typ":"JWT"}',
    "hs512": '{"alg":"HS512","typ":"JWT"}',
    "rs256-kid": '{"alg":"RS256","kid":"k1","typ":"JWT"}',
    "crit": '{"alg":"HS256","crit":["exp"]}',
    "no-alg": '{"typ":"JWT"}',
    "list": '["HS256"]',
    "nested": "[" * 2000 + "]" * 2000,
}
# Each dimension of a token: its sound choice first, then the ways to break it.
DIMENSIONS: dict[str, list[str]] = {
    "secret": ["real", "guessed", "other-installation"],
    "header": list(HEADERS),
    "iss": ["key", "other", "number", "missing", "bad-shape"],
    "times": list(TIMES),
    "qsh": ["correct", "wrong", "context", "missing", "number", "other-query", "other-path"],
    "aud": ["absent", "key", "list", "other", "number"],
    "mutation": ["none", "truncate", "flip", "extra-segment", "nest-payload", "pad", "drop-sig"],
}
SOUND_AUD = {"absent", "key", "list"}


MADE_UP_FLOW_PATH = CALLBACK_PATH + "a-flow-id-nobody-was-given/"


def other_path(path: str) -> str:
    """A path that is not ``path``, for a token signed over the wrong one: a flow's return
    signed for the plain callback, a plain one signed for some flow."""
    return MADE_UP_FLOW_PATH if path == CALLBACK_PATH else CALLBACK_PATH


def timed(kind: str, now: int) -> dict[str, Any]:
    return {
        name: now + value if isinstance(value, int) and not isinstance(value, bool) else value
        for name, value in TIMES[kind].items()
    }


@st.composite
def callback_returns(draw: st.DrawFn, now: int, path: str) -> Return:
    """A return trip to ``path`` from a grammar. Each token is sound but for a few broken
    dimensions (none at all fairly often), so the fuzz reaches every check; ``genuine`` is
    True only when nothing was broken."""
    key = draw(
        st.sampled_from(
            [KEY_A, KEY_B, KEY_NEW, "connection:", "a" * 300, "key with space", "k\x00", "é"]
        )
    )
    params: list[tuple[str, str]] = []
    spelling = draw(st.sampled_from(["clientKey", "client_key", "both-same", "both-other"]))
    if spelling in {"clientKey", "client_key"}:
        params.append((spelling, key))
    else:
        other = key if spelling == "both-same" else KEY_A if key != KEY_A else KEY_B
        params += [("clientKey", key), ("client_key", other)]
    genuine = spelling != "both-other" and is_valid_client_key(key)
    extras = draw(
        st.lists(
            st.sampled_from(
                [
                    ("next", "/dashboard/"),
                    ("x", "1"),
                    ("JWT", "x"),
                    ("error", "access_denied"),
                    ("error", "<b>"),
                    ("error_description", "<script>x</script>"),
                    ("clientKey", KEY_B),
                    ("jwt", "a.b.c"),
                ]
            ),
            max_size=2,
        )
    )
    params += extras
    names = [name for name, _ in params]
    # Bitbucket's error, or a security parameter twice, makes any return a refusal.
    genuine = (
        genuine
        and "error" not in names
        and all(names.count(name) == 1 for name in SECURITY_PARAMETERS if name in names)
    )

    token_kind = draw(st.sampled_from(["none", "empty", "built", "built", "built"]))
    if token_kind == "none":
        return Return(urlencode(params), False, f"{spelling} {key!r} no jwt {extras}")
    if token_kind == "empty":
        return Return(urlencode([*params, ("jwt", "")]), False, "empty jwt")

    broken = draw(st.sets(st.sampled_from(sorted(DIMENSIONS)), max_size=2))
    choice = {
        name: draw(st.sampled_from(options[1:])) if name in broken else options[0]
        for name, options in DIMENSIONS.items()
    }
    query = urlencode(params)
    secret = {
        "real": draw(st.sampled_from([APP_SECRET, INSTALL_SECRET])),
        "guessed": "guessed-secret",
        "other-installation": "secret-of-another-installation",
    }[choice["secret"]]
    iss_claims: dict[str, dict[str, Any]] = {
        "key": {"iss": key},
        "other": {"iss": KEY_B if key != KEY_B else KEY_A},
        "number": {"iss": 7},
        "missing": {},
        "bad-shape": {"iss": "<" + key + ">"},
    }
    qsh_claims: dict[str, dict[str, Any]] = {
        "correct": {"qsh": query_string_hash("GET", path, query)},
        "wrong": {"qsh": "0" * 64},
        "context": {"qsh": CONTEXT_QSH},
        "missing": {},
        "number": {"qsh": 5},
        "other-query": {"qsh": query_string_hash("GET", path, query + "&x=2")},
        "other-path": {"qsh": query_string_hash("GET", other_path(path), query)},
    }
    aud_claims: dict[str, dict[str, Any]] = {
        "absent": {},
        "key": {"aud": key},
        "list": {"aud": [key, "x"]},
        "other": {"aud": "x"},
        "number": {"aud": 1},
    }
    claims = {
        **iss_claims[choice["iss"]],
        **timed(choice["times"], now),
        **qsh_claims[choice["qsh"]],
        **aud_claims[choice["aud"]],
    }
    header = HEADERS[choice["header"]]
    payload = to_json(claims)
    token = sign(header, payload, secret)
    mutation = choice["mutation"]
    if mutation == "truncate":
        token = token[: draw(st.integers(0, len(token) - 1))]
    elif mutation == "flip":
        at = draw(st.integers(0, len(token) - 1))
        token = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    elif mutation == "extra-segment":
        token += ".x"
    elif mutation == "nest-payload":
        token = sign(header, "[" * 2000 + payload + "]" * 2000, secret)
    elif mutation == "pad":
        token = sign(header, to_json({**claims, "pad": "x" * 9000}), secret)
    elif mutation == "drop-sig":
        token = token.rsplit(".", 1)[0] + "."
    # The app-level secret signs for any key; an installation's secret only for its own.
    secret_fits = secret == APP_SECRET or (secret == INSTALL_SECRET and key == KEY_A)
    really_broken = {name for name in broken if name != "aud" or choice["aud"] not in SOUND_AUD}
    genuine = genuine and secret_fits and not really_broken
    description = f"{spelling} {key!r} broken={sorted(broken)} {choice}"
    return Return(query + "&" + urlencode({"jwt": token}), genuine, description)


@pytest.fixture
def fuzz_state(transactional_db: None) -> tuple[User, dict[str, Any]]:
    """KEY_A installed ten minutes ago and confirmed by "owner"; a user for the browsers.
    Yields the user and KEY_A's row, to put the table back after an accepted return."""
    owner = User.objects.create_user("owner")
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(
        installed_at=timezone.now() - timedelta(minutes=10),
        confirmed_at=timezone.now(),
        user=owner,
    )
    user = User.objects.create_user("fuzzer")
    [row] = installation_rows()
    return user, row


def restore(row: dict[str, Any]) -> None:
    """Put the table back as ``fuzz_state`` made it (after an accepted request)."""
    Installation.objects.exclude(id=row["id"]).delete()
    fields = {name: value for name, value in row.items() if name != "id"}
    Installation.objects.filter(id=row["id"]).update(**fields)


def browser(kind: str, user: User) -> tuple[Client, str]:
    """A browser of ``kind`` and the path its return comes to: "anonymous" and
    "logged_in" to ``callback/``, "flow" to its own flow's, "made_up_flow" (it has a flow
    of its own too) to a flow id nobody was given."""
    client = Client()
    if kind != "anonymous":
        client.force_login(user)
    if kind not in {"flow", "made_up_flow"}:
        return client, CALLBACK_PATH
    path = flow_path(client)
    return client, MADE_UP_FLOW_PATH if kind == "made_up_flow" else path


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unregistered"])
@examples(0.5)
@given(data=st.data(), kind=st.sampled_from(["anonymous", "logged_in", "flow", "made_up_flow"]))
def test_fuzz_callback_query_strings(
    fuzz_state: tuple[User, dict[str, Any]],
    sent_signals: SignalRecorder,
    settings: Settings,
    tally: Tally,
    registered: bool,
    data: st.DataObject,
    kind: str,
) -> None:
    if not registered:
        unregistered_once(settings)
    user, row = fuzz_state
    now = int(timezone.now().timestamp())
    client, path = browser(kind, user)
    trip = data.draw(callback_returns(now, path), label="return")
    repeats = data.draw(st.integers(1, 2), label="requests")  # 2: a double click
    try:
        send_returns(client, path, kind, trip, repeats, sent_signals, tally, user)
    finally:
        restore(row)  # each example starts from the same table, also after a failure


def send_returns(
    client: Client,
    path: str,
    kind: str,
    trip: Return,
    repeats: int,
    sent_signals: SignalRecorder,
    tally: Tally,
    user: User,
) -> None:
    own_flow = kind == "flow"
    for _ in range(repeats):
        before = installation_rows()
        pending = flow_ids(client) if kind != "anonymous" else []
        sent_signals.calls.clear()
        response = client.get(path + "?" + trip.query)
        tally.record("callback", response.status_code)
        # 200: shown in place to a visitor without a session; 503: "not yet", own flow only.
        allowed = {303, 400} | ({200} if kind == "anonymous" else set())
        assert response.status_code in allowed | ({503} if own_flow else set())
        assert response["Cache-Control"] == "no-store"
        accepted = bool(sent_signals.of(installed)) or installation_rows() != before
        if accepted:
            assert trip.genuine, f"a forged return was accepted: {trip.description}"
            assert response.status_code in {200, 303}
            connected = (
                {r["user_id"] for r in installation_rows()}
                - {r["user_id"] for r in before}
                - {None}
            )
            # Only the browser's own flow connects anyone, and only its user.
            assert connected <= ({user.pk} if own_flow else set())
            for kwargs in sent_signals.of(installed):
                assert kwargs["user"] is None or (own_flow and kwargs["user"].pk == user.pk)
        else:
            assert installation_rows() == before
            assert not sent_signals.of(uninstalled)
            if response.status_code == 303:  # an error return, or a repeat of a success
                assert response["Location"] == RESULT_PATH
        if not own_flow:
            assert not sent_signals.of(install_failed)
            if kind != "anonymous":
                assert flow_ids(client) == pending


# --- lifecycle: bodies and headers ----------------------------------------------------------

FIELDS = [
    "key",
    "clientKey",
    "publicKey",
    "sharedSecret",
    "baseUrl",
    "baseApiUrl",
    "productType",
    "eventType",
    "principal",
    "user",
]


# A new installation of this (registered) app, which a first install may create.
KEY_NEW_OF_THIS_APP = "ari:cloud:bitbucket::app/{7c3d4e5f-cccc-4a71-8bcd-2e3f4a5b6c7d}/example-app"
# What a body may claim beyond its shape: other hosts (the metadata service, look-alikes,
# userinfo, plain HTTP), spellings of Bitbucket's own, other apps, secrets shaped like
# public keys, and names with hidden or reordering characters.
CLAIMS: st.SearchStrategy[Any] = st.sampled_from(
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://bitbucket.org.evil.com",
        "https://user@bitbucket.org",
        "http://bitbucket.org",
        "https://api.bitbucket.org:8443",
        "https://BitBucket.org:443/",
        "https://API.bitbucket.org/2.0/",
        "https://app.example.com",
        "other-app",
        "Example-App",
        "example-app",
        "connection:7",
        "ari:cloud:bitbucket::app/{7c3d4e5f-cccc-4a71-8bcd-2e3f4a5b6c7d}/other-app",
        "ecdsa-sha2-nistp256AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY",
        '{"kty":"oct","k":"c2VjcmV0"}',
        "gnp\u202eexe.png",
        "Ac\u200bme\ufeff\x1b[31m\r\n\u00a0",
    ]
)


@st.composite
def mutated_bodies(draw: st.DrawFn, event_type: str) -> Any:
    """A lifecycle body with zero to three mutations (a dict with ``Raw`` pieces), or
    some other JSON text altogether."""
    shape = draw(st.sampled_from(["object", "object", "object", "other"]))
    if shape == "other":
        return draw(st.sampled_from([Raw("[]"), Raw("null"), Raw('"x"'), nested(3000)]))
    # A new key of this app twice as often: its first install is the path that may
    # accept what a forged body claims, so the checks of what was stored run often.
    key = draw(st.sampled_from([KEY_A, KEY_NEW_OF_THIS_APP, KEY_NEW_OF_THIS_APP, KEY_NEW]))
    body: dict[str, Any] = lifecycle_body(
        event_type, client_key=key, shared_secret="rotated-secret-0123456789"
    )
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*FIELDS, "principal.display_name", "user.uuid", "extra"]))
        action = draw(st.sampled_from(["drop", "odd", "odd", "text", "claim"]))
        value = (
            draw(ODD_VALUES)
            if action == "odd"
            else draw(CLAIMS)
            if action == "claim"
            else draw(st.text(max_size=30))
        )
        if name.startswith(("principal.", "user.")):
            account, _, part = name.partition(".")
            if isinstance(body.get(account), dict):
                if action == "drop":
                    body[account].pop(part, None)
                else:
                    body[account][part] = value
            continue
        if action == "drop":
            body.pop(name, None)
        else:
            body[name] = value
    return body


@st.composite
def authorization_headers(draw: st.DrawFn, event_type: str, body: Any) -> tuple[str | None, bool]:
    """An Authorization header and whether it is a genuine JWT of the stored secret."""
    kind = draw(
        st.sampled_from(["none", "genuine", "wrong-secret", "garbage", "bearer", "deep", "blank"])
    )
    path = f"/bitbucket/{event_type}"
    now = int(timezone.now().timestamp())
    claims: dict[str, Any] = {
        "iss": body.get("clientKey") if isinstance(body, dict) else KEY_A,
        "iat": now,
        "exp": now + 180,
        "qsh": query_string_hash("POST", path, ""),
    }
    if kind == "none":
        return None, False
    if kind == "blank":
        return "JWT   ", False
    if kind == "bearer":
        return "Bearer " + sign(HEADERS["standard"], to_json(claims), INSTALL_SECRET), False
    if kind == "garbage":
        return "JWT " + draw(st.text(max_size=40)), False
    if kind == "deep":
        return "JWT " + sign(HEADERS["standard"], "[" * 2000 + "]" * 2000, INSTALL_SECRET), False
    secret = INSTALL_SECRET if kind == "genuine" else "guessed-secret"
    return "JWT " + sign(HEADERS["standard"], to_json(claims), secret), kind == "genuine"


@BOUNDED
@given(data=st.data(), event_type=st.sampled_from(["installed", "uninstalled"]))
def test_fuzz_lifecycle_bodies_and_headers(
    fuzz_state: tuple[User, dict[str, Any]],
    sent_signals: SignalRecorder,
    tally: Tally,
    data: st.DataObject,
    event_type: str,
) -> None:
    _, row = fuzz_state
    body = data.draw(mutated_bodies(event_type), label="body")
    header, genuine = data.draw(authorization_headers(event_type, body), label="header")
    try:
        send_lifecycle(event_type, body, header, genuine, sent_signals, tally)
    finally:
        restore(row)  # each example starts from the same table, also after a failure


def send_lifecycle(
    event_type: str,
    body: Any,
    header: str | None,
    genuine: bool,
    sent_signals: SignalRecorder,
    tally: Tally,
) -> None:
    before = installation_rows()
    sent_signals.calls.clear()
    headers = None if header is None else {"Authorization": header}

    response = Client().post(
        f"/bitbucket/{event_type}",
        data=to_json(body),
        content_type="application/json",
        headers=headers,
    )

    tally.record("lifecycle", response.status_code)
    assert response.status_code in {204, 400, 401}
    assert response["Cache-Control"] == "no-store"
    after = installation_rows()
    if response.status_code != 204:
        assert after == before
        assert sent_signals.none_sent
    else:
        known = [r for r in before if r["client_key"] == KEY_A]
        changed_known = [r for r in after if r["client_key"] == KEY_A] != known
        # The stored installation changes only under a JWT of its stored secret; anything
        # else that is accepted is a new clientKey's first install (trust on first use).
        assert genuine or not changed_known, f"hijack: {body!r} with {header!r}"
        assert genuine or not sent_signals.of(uninstalled)
        assert not sent_signals.of(installed)
        for stored in after:
            assert_clean(stored)
            assert_claimable(stored)


TEXT_FIELDS: dict[str, int] = {
    field.name: field.max_length
    for field in Installation._meta.concrete_fields
    if isinstance(field.max_length, int)
}


def assert_clean(stored: dict[str, Any]) -> None:
    """What an accepted callback stored is clean text every database takes as is."""
    for name, max_length in TEXT_FIELDS.items():
        value = stored[name]
        if value is None:  # a nullable column (confirmed_flow)
            continue
        assert len(value) <= max_length, name
        assert "\x00" not in value, name
        value.encode("utf-8", "strict")  # raises on a lone surrogate
    for name in ("principal", "installed_by"):
        json.dumps(stored[name], allow_nan=False).encode("utf-8", "strict")


def assert_claimable(stored: dict[str, Any]) -> None:
    """What an accepted callback stored is a claim a first install may make: this app's
    key and clientKeys, Bitbucket's origins, and names with nothing hidden in them."""
    assert stored["addon_key"] == "example-app"
    assert stored["client_key"].endswith("/example-app")
    for name in ("base_url", "base_api_url"):
        assert origin(stored[name]) in app_settings.BITBUCKET_ORIGINS, name
    texts = [stored["principal_name"], *strings_in(stored["principal"])]
    texts += strings_in(stored["installed_by"])
    for text in texts:
        assert not any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in text), text


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


# --- descriptor-related settings ------------------------------------------------------------

URL_TEXT = st.sampled_from(
    [
        "https://app.example.com",
        "https://app.example.com/app/",
        "http://127.0.0.1:8000",
        "http://[::1",
        "https://[x]/a",
        "https://a.com:99999999999",
        "https://a.com:-1",
        "https://exa\x00mple.com",
        "https://user:pw@app.example.com",
        "https://app.example.com/{x}",
        "https://app.example.com#frag",
        "javascript:alert(1)",
        "//app.example.com",
        "https://\u3002.com",
        "https://xn--e1afmkfd.xn--p1ai",
        "ftp://app.example.com",
        "https://app.example.com/" + "a" * 5000,
    ]
)
JSONABLE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | URL_TEXT
    | st.text(min_size=1, max_size=3).map(lambda s: s * 5000),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
ANY_SETTING = st.one_of(JSONABLE, st.binary(max_size=8), st.tuples(st.text(max_size=5)))
DESCRIPTOR_SETTING = st.one_of(
    JSONABLE,
    st.dictionaries(
        st.sampled_from(
            [
                "key",
                "name",
                "description",
                "vendor",
                "scopes",
                "contexts",
                "modules",
                "baseUrl",
                "authentication",
                "lifecycle",
                "links",
            ]
        ),
        JSONABLE,
        max_size=6,
    ),
)
SETTING_NAMES = [
    "ADDON_KEY",
    "DESCRIPTOR_URI",
    "BASE_URL",
    "REDIRECT_URI",
    "SHARED_SECRET",
    "AUTHORIZE_URL",
    "JWT_LEEWAY",
    "JWT_MAX_AGE",
    "FLOW_MAX_AGE",
    "CONFIRM_WINDOW",
    "SIMULATOR",
    "TRUST_UNSIGNED_RETURNS",
    "BITBUCKET_ORIGINS",
    "SUCCESS_URL",
    "FAILURE_URL",
]
MISSING = object()


@BOUNDED
@given(
    values=st.dictionaries(
        st.sampled_from(SETTING_NAMES), st.one_of(ANY_SETTING, URL_TEXT), max_size=5
    ),
    descriptor=st.one_of(st.just(MISSING), DESCRIPTOR_SETTING),
)
def test_fuzz_descriptor_settings(
    transactional_db: None, tally: Tally, values: dict[str, Any], descriptor: Any
) -> None:
    overrides = {f"BITBUCKET_INSTALL_{name}": value for name, value in values.items()}
    if descriptor is not MISSING:
        overrides["BITBUCKET_INSTALL_DESCRIPTOR"] = descriptor
    with override_settings(**overrides):
        messages = run_checks(tags=["bitbucket_install"])
        assert all(isinstance(message, CheckMessage) for message in messages)
        assert all(str(message.id).startswith("bitbucket_install.") for message in messages)
        assert all(message.hint for message in messages)
        base_url = values.get("BASE_URL", "https://app.example.com")
        ids = {message.id for message in messages}
        if not (isinstance(base_url, str) and base_url):
            assert "bitbucket_install.E007" in ids
        # Whatever the settings say, what the app uses stays inside the protocol's bounds,
        # and a weak app secret is reported and never used.
        for name, (smallest, largest, _) in DURATIONS.items():
            assert smallest <= getattr(app_settings, name) <= largest
            if name in values and not (
                is_duration(values[name]) and smallest <= values[name] <= largest
            ):
                assert "bitbucket_install.E011" in ids
        secret = app_settings.SHARED_SECRET
        assert secret is None or is_strong_app_secret(secret)
        if values.get("SHARED_SECRET") is not None and not is_strong_app_secret(
            values["SHARED_SECRET"]
        ):
            assert "bitbucket_install.E017" in ids

        built = build_descriptor()
        assert isinstance(built["scopes"], list)
        assert isinstance(built["contexts"], list)
        assert isinstance(built["modules"], dict)
        assert built["authentication"] == {"type": "jwt"}

        response = Client().get("/bitbucket/atlassian-connect.json")
        tally.record("descriptor", response.status_code)
        assert response.status_code == 200
        served = json.loads(response.content)
        assert served["lifecycle"] == built["lifecycle"]
        assert served["scopes"] == json.loads(json.dumps(built["scopes"]))


# --- the corpus: cases that found bugs, replayed ----------------------------------------------


def expand(spec: Any) -> str:
    """A corpus value: a string, or a small recipe for one too long or odd to write out.

    ``{"$repeat": s, "times": n}``, ``{"$concat": [...]}``, and
    ``{"$jwt": {"header": ..., "payload": ..., "secret": ...}}`` (HMAC-SHA256 signed).
    """
    if isinstance(spec, str):
        return spec
    if "$repeat" in spec:
        return str(spec["$repeat"]) * int(spec["times"])
    if "$concat" in spec:
        return "".join(expand(part) for part in spec["$concat"])
    token = spec["$jwt"]
    return sign(expand(token["header"]), expand(token["payload"]), token["secret"])


def corpus() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.json"))


def test_the_corpus_is_there() -> None:
    cases = corpus()
    assert len(cases) >= 5
    entries = {json.loads(path.read_text(encoding="utf-8"))["entry"] for path in cases}
    assert entries == {"callback", "lifecycle", "settings"}


@pytest.mark.parametrize("path", corpus(), ids=[path.stem for path in corpus()])
def test_corpus_case(
    path: Path, transactional_db: None, sent_signals: SignalRecorder, settings: Settings
) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    assert case["found"]
    assert case["fixed"]
    setup = case.get("setup", {})
    if setup.get("known_installation"):
        installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    if setup.get("unregistered"):
        unregistered(settings)
    client = Client()
    return_path = CALLBACK_PATH
    if setup.get("flow"):  # the return comes to the browser's own flow
        client.force_login(User.objects.create_user("corpus"))
        return_path = flow_path(client)
    pending = flow_ids(client) if setup.get("flow") else []
    before = installation_rows()
    sent_signals.calls.clear()

    if case["entry"] == "callback":
        query = urlencode([(name, expand(value)) for name, value in case["query"]])
        response = client.get(return_path + "?" + query)
        if setup.get("flow") and not sent_signals.of(install_failed):
            assert flow_ids(client) == pending  # refused on the query alone: flow kept
    elif case["entry"] == "lifecycle":
        authorization = case.get("authorization")
        response = client.post(
            f"/bitbucket/{case['event_type']}",
            data=expand(case["body"]).encode("utf-8", "surrogatepass"),
            content_type="application/json",
            headers=None if authorization is None else {"Authorization": expand(authorization)},
        )
    else:
        for name, value in case["settings"].items():
            setattr(settings, name, value)
        messages = run_checks(tags=["bitbucket_install"])
        assert {message.id for message in messages} >= set(case["expect"]["check_ids"])
        built = build_descriptor()
        for name, value in case["expect"].get("descriptor", {}).items():
            assert built[name] == value
        response = client.get("/bitbucket/atlassian-connect.json")

    assert response.status_code == case["expect"]["status"]
    assert installation_rows() == before
    assert not sent_signals.of(installed)
    assert not sent_signals.of(uninstalled)
