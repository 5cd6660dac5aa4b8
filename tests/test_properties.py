"""Property-based tests (hypothesis) of the protocol code and of the two entry points.

What holds for *every* input, not only for the examples the other files pick:

- the canonical request and qsh agree with Atlassian's reference implementation
  (atlassian-jwt) on raw query strings of any query characters and percent escapes (also
  malformed ones and invalid UTF-8), on Unicode names and values with repeats, and on any
  Unicode path under any base path; test_tokens.py checks a fixed alphabet, this goes
  further; plus invariants the reference implies (pair order, ``jwt`` ignored, method case);
- ``encode_token`` -> ``verify_token`` round-trips for any claims, secret and request, and
  the same token fails for another secret or another request;
- any text or bytes given as a token ends in ``TokenError`` (never another exception),
  also hand-signed tokens with any header and payload and JSON nested arbitrarily deep;
- any bytes as a callback query value, or as the raw ``QUERY_STRING`` (to ``callback/``, to
  the browser's own flow, or to a flow id nobody was given), and any bytes as a lifecycle
  body or any ``Authorization`` header, get a 4xx (or the documented 200/303/503), never an
  exception or a 500, and change no row.

Bounded for CI by the hypothesis profile in ``BOUNDED`` (``HYPOTHESIS_PROFILE``: ``ci`` by
default, ``quick`` under tox, ``fuzz`` for long local runs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import string
import unicodedata
from datetime import timedelta
from typing import Any
from urllib.parse import quote, quote_from_bytes, quote_plus, urlsplit

import pytest
from atlassian_jwt import url_utils
from django.test import Client
from django.utils import timezone
from django.utils.encoding import escape_uri_path
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from bitbucket_install.identifiers import HIDDEN_CATEGORIES, clean_display_text
from bitbucket_install.models import Installation
from bitbucket_install.payloads import ExpectedApp, PayloadError, check_claim, parse_lifecycle
from bitbucket_install.signals import installed, uninstalled
from bitbucket_install.tokens import (
    CLIENT_KEY_PATTERN,
    TokenError,
    canonical_path,
    canonical_query,
    canonical_request,
    encode_token,
    query_string_hash,
    read_unverified,
    verify_token,
)
from tests.callback_helpers import (
    CALLBACK_PATH,
    INSTALL_SECRET,
    KEY_A,
    flow_path,
    installed_via_lifecycle,
    login,
    unregistered,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body

# --- hypothesis profiles -------------------------------------------------------------------

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,  # nothing written to .hypothesis/ in the checkout
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", max_examples=150, **_COMMON)
settings.register_profile("quick", max_examples=30, **_COMMON)
settings.register_profile("fuzz", max_examples=5000, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "quick" if "TOX_ENV_NAME" in os.environ else "ci"
)
BOUNDED = settings.get_profile(PROFILE)
"""The settings every property test here and in test_fuzz.py runs with."""


def examples(share: float) -> settings:
    """``BOUNDED`` with a ``share`` of its examples (cheap tests get more, costly fewer)."""
    return settings(BOUNDED, max_examples=max(10, int(BOUNDED.max_examples * share)))


# --- strategies ------------------------------------------------------------------------------

# Characters a query may carry unescaped (RFC 3986 pchar / "/" / "?"), and "%" alone too:
# a malformed escape must be handled the same way on both sides.
QUERY_CHARACTERS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%"
HEX = "0123456789abcdefABCDEF"


@st.composite
def raw_query_strings(draw: st.DrawFn) -> str:
    """A query string as a server receives it: raw characters, escapes of any byte
    (invalid UTF-8 included), malformed escapes, '+', empty pairs, flags."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.text(alphabet=QUERY_CHARACTERS, max_size=6),
                st.binary(min_size=1, max_size=4).map(lambda b: quote_from_bytes(b, safe="")),
                st.sampled_from(["&", "=", "&&", "==", "%", "%4", "%zz", "+", "jwt=x&", "&jwt"]),
                st.text(alphabet=HEX, min_size=2, max_size=2).map(lambda h: "%" + h),
            ),
            max_size=12,
        )
    )
    return "".join(pieces)


UNICODE = st.text(st.characters(codec="utf-8"), max_size=8)
NAME_POOL = st.one_of(st.sampled_from(["a", "b", "A", "jwt", "x y", "é", "日", "a*", ""]), UNICODE)


@st.composite
def unicode_query_strings(draw: st.DrawFn) -> str:
    """Pairs of any Unicode names and values (names often repeated), encoded as clients
    do: percent-encoding, form encoding with '+', or bare flags."""
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        name, value = draw(NAME_POOL), draw(UNICODE)
        style = draw(st.sampled_from(["quote", "plus", "flag"]))
        if style == "flag":
            parts.append(quote(name, safe=""))
        elif style == "quote":
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
        else:
            parts.append(f"{quote_plus(name, safe='')}={quote_plus(value, safe='')}")
    return "&".join(parts)


# Any Unicode but ':' (atlassian-jwt would read "a:b" as a URL scheme) and surrogates
# (not text a request can carry).
PATH_SEGMENTS = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters=":"), max_size=8),
    max_size=4,
)
BASE_PATHS = st.lists(
    st.text(alphabet=string.ascii_lowercase + "-_.~", min_size=1, max_size=6), max_size=2
).map(lambda segments: "".join("/" + s for s in segments if s not in {".", ".."}))
METHODS = st.sampled_from(["GET", "get", "POST", "Post", "PUT", "DELETE", "patch"])
CLIENT_KEYS = st.from_regex(CLIENT_KEY_PATTERN, fullmatch=True)


def request_path(segments: list[str], trailing_slash: bool) -> str:
    """A path as Django hands it to ``request_qsh`` (escaped like ``escape_uri_path``)."""
    return escape_uri_path("/" + "/".join(segments) + ("/" if trailing_slash else ""))


# --- agreement with atlassian-jwt -----------------------------------------------------------


@BOUNDED
@given(
    method=METHODS,
    segments=PATH_SEGMENTS,
    trailing_slash=st.booleans(),
    query=st.one_of(raw_query_strings(), unicode_query_strings()),
    base=BASE_PATHS,
)
def test_canonical_request_agrees_with_atlassian_jwt(
    method: str, segments: list[str], trailing_slash: bool, query: str, base: str
) -> None:
    relative = request_path(segments, trailing_slash)
    url = relative + ("?" + query if query else "")
    # atlassian-jwt wants the URL relative to the base URL; the app strips the base path.
    expected = url_utils.canonicalize_request(method, url)
    assert canonical_request(method, base + relative, query, base) == expected
    assert query_string_hash(method, base + relative, query, base) == url_utils.hash_url(
        method, url
    )


CANONICAL_QUERY = re.compile(r"(?:[A-Za-z0-9._~%-]*=[A-Za-z0-9._~%,-]*(?:&|$))*")


@examples(0.5)
@given(query=st.one_of(raw_query_strings(), unicode_query_strings()), data=st.data())
def test_canonical_query_ignores_order_and_jwt_and_is_plain_ascii(
    query: str, data: st.DataObject
) -> None:
    pairs = [pair for pair in query.split("&") if pair]
    shuffled = data.draw(st.permutations(pairs))
    jwt_value = data.draw(raw_query_strings().map(lambda q: q.replace("&", "")))
    with_jwt = "&".join([*shuffled, "jwt=" + jwt_value])
    canonical = canonical_query(query)
    assert canonical_query("&".join(shuffled)) == canonical
    # 'jwt' is never part of the hash, whatever its value...
    assert canonical_query(with_jwt) == canonical
    # ...and what is hashed is unambiguous ASCII: only unreserved characters and escapes.
    assert CANONICAL_QUERY.fullmatch(canonical)


@BOUNDED
@given(method=METHODS, segments=PATH_SEGMENTS, slash=st.booleans(), base=BASE_PATHS)
def test_canonical_path_is_relative_to_the_base_and_method_case_free(
    method: str, segments: list[str], slash: bool, base: str
) -> None:
    relative = request_path(segments, slash)
    assert canonical_path(base + relative, base) == canonical_path(relative)
    path = canonical_path(relative)
    assert path.startswith("/")
    assert path == "/" or not path.endswith("/")
    assert "&" not in path
    qsh = query_string_hash(method, relative, "")
    assert qsh == query_string_hash(method.upper(), relative, "")
    assert re.fullmatch(r"[0-9a-f]{64}", qsh)


# --- encode -> verify round trip --------------------------------------------------------------

RESERVED_CLAIMS = {"iss", "iat", "exp", "qsh", "aud"}
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
EXTRA_CLAIMS = st.dictionaries(
    st.text(st.characters(codec="utf-8"), max_size=8).filter(
        lambda name: name not in RESERVED_CLAIMS
    ),
    JSON_VALUES,
    max_size=4,
)
SECRETS = st.text(st.characters(codec="utf-8"), min_size=1, max_size=160)
NOW = 1_750_000_000


@examples(0.6)
@given(
    issuer=CLIENT_KEYS,
    extra=EXTRA_CLAIMS,
    secret=SECRETS,
    other_secret=SECRETS,
    method=METHODS,
    segments=PATH_SEGMENTS,
    query=st.one_of(raw_query_strings(), unicode_query_strings()),
    other_query=unicode_query_strings(),
    base=BASE_PATHS,
    lifetime=st.integers(1, 600),
    skew=st.floats(-30, 30),
    elapsed=st.floats(0, 1),
    audience=st.booleans(),
)
def test_encoded_tokens_verify_for_that_request_and_secret_only(
    issuer: str,
    extra: dict[str, Any],
    secret: str,
    other_secret: str,
    method: str,
    segments: list[str],
    query: str,
    other_query: str,
    base: str,
    lifetime: int,
    skew: float,
    elapsed: float,
    audience: bool,
) -> None:
    path = base + request_path(segments, False)
    claims = {"iss": issuer, **extra, **({"aud": issuer} if audience else {})}
    token = encode_token(
        claims,
        secret,
        method=method,
        path=path,
        query_string=query,
        base_path=base,
        now=NOW,
        lifetime=lifetime,
    )
    qsh = query_string_hash(method, path, query, base)
    # Any moment from (iat - leeway) to (exp + leeway), with the default 30 s leeway.
    now = NOW + skew + elapsed * lifetime
    verified = verify_token(token, secret, qsh=qsh, issuer=issuer, now=now)
    assert verified == {**claims, "iat": NOW, "exp": NOW + lifetime, "qsh": qsh}
    assert read_unverified(token).issuer == issuer

    if other_secret != secret:
        with pytest.raises(TokenError) as caught:
            verify_token(token, other_secret, qsh=qsh, issuer=issuer, now=now)
        assert caught.value.reason == "token_signature"
    other_qsh = query_string_hash(method, path, other_query, base)
    if other_qsh != qsh:
        with pytest.raises(TokenError) as caught:
            verify_token(token, secret, qsh=other_qsh, issuer=issuer, now=now)
        assert caught.value.reason == "token_qsh"


# --- anything as a token ends in TokenError -----------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def nested(depth: int, inner: str = "{}") -> str:
    """JSON nested ``depth`` arrays deep (deeper than json.loads' stack from ~1000)."""
    return "[" * depth + inner + "]" * depth


JSON_TEXT = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.integers(0, 3000).map(nested),
    st.integers(0, 3000).map(lambda depth: '{"iss": ' + nested(depth, "1") + "}"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", '{"iat": NaN}', "{", "", "\ufeff{}"]),
    st.text(max_size=20),
)
HEADERS = st.one_of(
    st.fixed_dictionaries({"alg": st.just("HS256")}, optional={"typ": JSON_VALUES}).map(
        json.dumps
    ),
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "b64", "x"]), JSON_VALUES).map(
        json.dumps
    ),
    JSON_TEXT,
)
TOKEN_SECRET = "installation-secret"


def hand_signed(header: str, payload: str, secret: str = TOKEN_SECRET) -> str:
    signing_input = f"{b64(header.encode())}.{b64(payload.encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


ANY_TOKEN = st.one_of(
    st.text(),
    st.binary().map(lambda raw: raw.decode("latin-1")),
    st.lists(st.binary(max_size=40).map(b64), max_size=5).map(".".join),
    st.tuples(HEADERS, JSON_TEXT, st.binary(max_size=40)).map(
        lambda parts: ".".join((b64(parts[0].encode()), b64(parts[1].encode()), b64(parts[2])))
    ),
    st.tuples(HEADERS, JSON_TEXT).map(lambda parts: hand_signed(*parts)),
)


@examples(2.0)
@given(token=ANY_TOKEN)
def test_any_token_ends_in_token_error(token: str) -> None:
    """read_unverified and verify_token raise TokenError, nothing else; the few inputs
    that do verify (hand-signed with the right secret and sound claims) return a dict."""
    with contextlib.suppress(TokenError):
        read_unverified(token)
    try:
        claims = verify_token(token, TOKEN_SECRET, qsh=None, now=NOW)
    except TokenError:
        return
    assert isinstance(claims, dict)


@examples(0.5)
@given(depth=st.integers(900, 3000), where=st.sampled_from(["payload", "claim", "header"]))
def test_deeply_nested_json_in_a_token_is_malformed(depth: int, where: str) -> None:
    """Found by the fuzz pass: json.loads raises RecursionError (not ValueError) on JSON
    nested ~1000+ deep, which escaped read_unverified as a 500 from the callback view."""
    payload = nested(depth) if where == "payload" else '{"aud": ' + nested(depth, "1") + "}"
    header = nested(depth) if where == "header" else '{"alg": "HS256"}'
    token = hand_signed(header, payload)
    assume(len(token) <= 8192)
    with pytest.raises(TokenError):
        verify_token(token, TOKEN_SECRET, qsh=None, now=NOW)


# --- the views: anything from outside gets a clean answer and changes nothing --------------------


@pytest.fixture
def known_installation(transactional_db: None) -> Installation:
    """KEY_A, installed ten minutes ago and confirmed: a real row for guessed keys to hit,
    which no return of this test can legitimately confirm (outside the confirm window)."""
    installed_via_lifecycle(KEY_A, INSTALL_SECRET)
    Installation.objects.update(
        installed_at=timezone.now() - timedelta(minutes=10), confirmed_at=timezone.now()
    )
    row: Installation = Installation.objects.get()
    return row


def snapshot() -> list[dict[str, Any]]:
    return installation_rows()


@pytest.fixture
def browsers(transactional_db: None) -> Browsers:
    return Browsers()


class Browsers:
    """A few kinds of browser and where their return goes: anonymous and logged in to
    ``callback/``, logged in with a fresh flow to that flow's path ("flow") or to a flow id
    nobody was given ("made_up_flow"). Made once per test; hypothesis reuses them across
    examples."""

    def __init__(self) -> None:
        self.with_flow = Client()
        login(self.with_flow, "flow-user")
        self.logged_in = Client()
        login(self.logged_in, "plain-user")

    def pick(self, kind: str) -> tuple[Client, str]:
        if kind == "anonymous":
            return Client(), CALLBACK_PATH
        if kind == "logged_in":
            return self.logged_in, CALLBACK_PATH
        path = flow_path(self.with_flow)  # a new flow each time (at most five are kept)
        if kind == "made_up_flow":
            path = CALLBACK_PATH + "a-flow-id-nobody-was-given/"
        return self.with_flow, path


CALLBACK_NAMES = st.sampled_from(
    ["clientKey", "client_key", "jwt", "error", "error_description", "next", "x"]
)
BROWSER_KINDS = st.sampled_from(["anonymous", "logged_in", "flow", "made_up_flow"])


def assert_clean_refusal(response: Any, before: list[dict[str, Any]], kind: str) -> None:
    """A 4xx, or the documented 303 (Bitbucket reported an error), 200 (the same, shown in
    place to a visitor without a session) or 503 (not yet, for the browser's own flow)."""
    allowed = {303, 400} | ({200} if kind == "anonymous" else set())
    allowed |= {503} if kind == "flow" else set()
    assert response.status_code in allowed, response.status_code
    assert response["Cache-Control"] == "no-store"
    if response.status_code == 303:
        assert response["Location"] == "/bitbucket/result/"
    assert snapshot() == before


REGISTERED = pytest.mark.parametrize(
    "registered", [True, False], ids=["registered", "unregistered"]
)


def unregistered_once(settings: Settings) -> None:
    """``unregistered(settings)`` in a hypothesis test: each assignment through the
    ``settings`` fixture stacks another override for the whole test function, so doing it
    for every example would nest thousands deep (RecursionError in Django's settings)."""
    if settings.BITBUCKET_INSTALL_ADDON_KEY is not None:
        unregistered(settings)


@REGISTERED
@examples(0.5)
@given(
    params=st.lists(
        st.tuples(CALLBACK_NAMES, st.one_of(st.binary(max_size=64), st.just(KEY_A.encode()))),
        min_size=1,
        max_size=5,
    ),
    kind=BROWSER_KINDS,
)
def test_any_query_values_to_the_callback_are_refused_cleanly(
    known_installation: Installation,
    browsers: Browsers,
    sent_signals: SignalRecorder,
    settings: Settings,
    registered: bool,
    params: list[tuple[str, bytes]],
    kind: str,
) -> None:
    if not registered:
        unregistered_once(settings)
    before = snapshot()
    sent_signals.calls.clear()
    query = "&".join(f"{name}={quote_from_bytes(value, safe='')}" for name, value in params)
    client, path = browsers.pick(kind)

    response = client.get(path, QUERY_STRING=query)

    assert_clean_refusal(response, before, kind)
    assert not sent_signals.of(installed)
    assert not sent_signals.of(uninstalled)
    if kind != "flow":  # only a return of the browser's own flow may send install_failed
        assert sent_signals.none_sent


@REGISTERED
@examples(0.5)
@given(raw=st.binary(max_size=300), kind=BROWSER_KINDS)
def test_any_raw_query_string_to_the_callback_is_refused_cleanly(
    known_installation: Installation,
    browsers: Browsers,
    sent_signals: SignalRecorder,
    settings: Settings,
    registered: bool,
    raw: bytes,
    kind: str,
) -> None:
    if not registered:
        unregistered_once(settings)
    before = snapshot()
    sent_signals.calls.clear()
    client, path = browsers.pick(kind)

    # WSGI hands the query over as bytes decoded as latin-1.
    response = client.get(path, QUERY_STRING=raw.decode("latin-1"))

    assert_clean_refusal(response, before, kind)
    assert not sent_signals.of(installed)
    if kind != "flow":
        assert sent_signals.none_sent


LATIN1_TEXT = st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))


@examples(1.0)
@given(
    body=st.binary(max_size=400),
    header=st.one_of(st.none(), LATIN1_TEXT, ANY_TOKEN.map(lambda token: "JWT " + token)),
    event_type=st.sampled_from(["installed", "uninstalled"]),
)
def test_any_lifecycle_body_is_refused_cleanly(
    known_installation: Installation,
    sent_signals: SignalRecorder,
    body: bytes,
    header: str | None,
    event_type: str,
) -> None:
    before = snapshot()
    sent_signals.calls.clear()
    headers = None if header is None else {"Authorization": header}

    response = Client().post(
        f"/bitbucket/{event_type}", data=body, content_type="application/json", headers=headers
    )

    assert response.status_code in {400, 401}
    assert snapshot() == before
    assert sent_signals.none_sent


@examples(0.6)
@given(
    header=st.one_of(
        LATIN1_TEXT,
        LATIN1_TEXT.map(lambda text: "JWT " + text),
        ANY_TOKEN.map(lambda token: "JWT " + token),
    ),
    event_type=st.sampled_from(["installed", "uninstalled"]),
    rotate=st.booleans(),
)
def test_any_authorization_header_on_a_known_installation_is_refused(
    known_installation: Installation,
    sent_signals: SignalRecorder,
    header: str,
    event_type: str,
    rotate: bool,
) -> None:
    """A well-formed body for the known clientKey: only a JWT signed with the stored
    secret over this request may change it, and no header drawn here is one."""
    body = lifecycle_body(
        event_type,
        client_key=KEY_A,
        shared_secret="rotated-secret-0123456789" if rotate else INSTALL_SECRET,
    )
    if event_type == "installed" and not rotate:
        body["baseUrl"] = "https://bitbucket.org/elsewhere"  # not a plain retry of the install
    before = snapshot()
    sent_signals.calls.clear()

    response = Client().post(
        f"/bitbucket/{event_type}",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=header,
    )

    if event_type == "installed" and not rotate:
        # Without a token (none drawn, or only blanks after "JWT ") and with the stored
        # secret, it is a retry of the stored install: 204 and nothing changes.
        assert response.status_code in {204, 401}
    else:
        assert response.status_code == 401
    assert snapshot() == before
    assert sent_signals.none_sent


# Text as accounts carry it, leaning on the characters that hide or reorder what is shown.
HIDDEN_PRONE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(["\u202e", "\u202d", "\u200b", "\ufeff", "\x1b", "\r", "\n", "\u00a0"]),
    ),
    max_size=20,
)
ACCOUNT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | HIDDEN_PRONE_TEXT,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "name", "links"]), children, max_size=3)
    ),
    max_leaves=8,
)


def shown_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in shown_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in shown_strings(item)]
    return []


@examples(1.0)
@given(
    display_name=HIDDEN_PRONE_TEXT,
    username=HIDDEN_PRONE_TEXT,
    extra=ACCOUNT_VALUES,
    user=st.dictionaries(st.sampled_from(["display_name", "nickname"]), ACCOUNT_VALUES),
)
def test_any_account_text_is_kept_without_hidden_characters(
    display_name: str, username: str, extra: Any, user: dict[str, Any]
) -> None:
    principal = {"display_name": display_name, "username": username, "extra": extra}
    body = json.dumps(lifecycle_body(principal=principal, user=user)).encode()
    if "\\u0000" in json.dumps([principal, user]):
        # NUL, which no database takes, is refused rather than cleaned.
        with pytest.raises(PayloadError):
            parse_lifecycle(body, "installed")
        return
    payload = parse_lifecycle(body, "installed")
    texts = [payload.principal_name, *shown_strings(payload.principal)]
    texts += shown_strings(payload.user)
    for text in texts:
        assert not any(unicodedata.category(char) in HIDDEN_CATEGORIES for char in text)
    # Only the hidden characters went (other spaces became plain ones), in the same order.
    expected_name = clean_display_text(display_name, 255) or clean_display_text(username, 255)
    assert payload.principal_name == expected_name


URL_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "HTTPS://",
        "bitbucket.org",
        "api.bitbucket.org",
        "BitBucket.org",
        ".evil.com",
        "user@",
        ":443",
        ":80",
        ":8443",
        "/",
        "/2.0",
        "?a=1",
        "#x",
        "169.254.169.254",
        "[::1]",
        "@",
        "%2e",
        "\\",
    ]
)


@examples(1.0)
@given(
    base_url=st.lists(URL_PIECES, max_size=5).map("".join),
    base_api_url=st.lists(URL_PIECES, max_size=5).map("".join),
)
def test_an_accepted_claim_has_its_urls_on_bitbucket_origins(
    base_url: str, base_api_url: str
) -> None:
    app = ExpectedApp(
        key="example-app",
        registered_key="example-app",
        bitbucket_origins=frozenset({"https://bitbucket.org", "https://api.bitbucket.org"}),
    )
    body = json.dumps(lifecycle_body(baseUrl=base_url, baseApiUrl=base_api_url)).encode()
    try:
        check_claim(parse_lifecycle(body, "installed"), app)
    except PayloadError:
        return
    for url in (base_url, base_api_url):
        parts = urlsplit(url)
        assert parts.scheme.lower() == "https"
        assert parts.hostname in {"bitbucket.org", "api.bitbucket.org"}
        assert parts.username is None
        assert parts.port in {None, 443}
