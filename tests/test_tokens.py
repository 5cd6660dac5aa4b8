"""bitbucket_install.tokens: canonical request, qsh, and every way a Connect JWT is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import jwt
import pytest
from atlassian_jwt import url_utils
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils.encoding import escape_uri_path
from hypothesis import given, settings
from hypothesis import strategies as st

from bitbucket_install.identifiers import is_usable_hmac_secret
from bitbucket_install.tokens import (
    CONTEXT_QSH,
    MAX_TOKEN_LENGTH,
    TokenError,
    UnverifiedToken,
    canonical_path,
    canonical_query,
    canonical_request,
    encode_token,
    is_valid_client_key,
    query_string_hash,
    read_unverified,
    verify_token,
)

# Query string hash vectors computed with Atlassian's reference libraries, kept with the
# tests so that a clone runs them wherever it is.
VECTORS_PATH = Path(__file__).resolve().parent / "data" / "qsh-vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]

SECRET = "installation-secret"
ISSUER = "ari:cloud:bitbucket::app/{0d6f5a1e-1111-4c5e-9a6b-5f1e2d3c4b5a}/example-app"
QSH = query_string_hash("POST", "/installed", "")
NOW = 1_750_000_000


# --- helpers ---------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: object) -> str:
    return b64(json.dumps(value).encode())


def hand_signed(
    header: object,
    payload: object,
    secret: str = SECRET,
    digest: str = "sha256",
) -> str:
    """A token built byte by byte, HMAC-signed with ``digest`` (whatever the header says)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def token_text(token: str) -> str:
    """The payload segment of ``token`` as text."""
    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims at NOW for ISSUER over POST /installed; None values drop the claim."""
    base: dict[str, Any] = {"iss": ISSUER, "iat": NOW, "exp": NOW + 180, "qsh": QSH}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def verify(token: object, secret: str = SECRET, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("qsh", QSH)
    kwargs.setdefault("now", NOW)
    return verify_token(token, secret, **kwargs)  # type: ignore[arg-type]


def refused(token: object, secret: str = SECRET, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as caught:
        verify(token, secret, **kwargs)
    return caught.value.reason


HS256_HEADER = {"alg": "HS256", "typ": "JWT"}


# --- qsh vectors ---------------------------------------------------------------------------


def test_vectors_file_is_not_empty() -> None:
    assert len(VECTORS) >= 10


@pytest.mark.parametrize("vector", VECTORS, ids=[v["url"] for v in VECTORS])
def test_qsh_vector(vector: dict[str, Any]) -> None:
    path, _, query = vector["url"].partition("?")
    base_path = urlsplit(vector["base_url"]).path if vector["base_url"] else ""
    assert canonical_request(vector["method"], path, query, base_path) == vector["canonical"]
    assert query_string_hash(vector["method"], path, query, base_path) == vector["qsh"]
    assert hashlib.sha256(vector["canonical"].encode()).hexdigest() == vector["qsh"]


@pytest.mark.parametrize(
    ("path", "base_path", "expected"),
    [
        ("", "", "/"),
        ("/", "", "/"),
        ("/a/b/", "", "/a/b"),
        ("/myapp", "/myapp", "/"),
        ("/myapp/", "/myapp/", "/"),
        ("/myapp/x", "/myapp", "/x"),
        # Only a whole leading segment is the base path.
        ("/myapplication/x", "/myapp", "/myapplication/x"),
        ("/other/myapp/x", "/myapp", "/other/myapp/x"),
        ("/a&b", "", "/a%26b"),
    ],
)
def test_canonical_path(path: str, base_path: str, expected: str) -> None:
    assert canonical_path(path, base_path) == expected


def test_canonical_query_drops_every_jwt_and_keeps_blanks() -> None:
    assert canonical_query("jwt=a&b=&jwt=c&flag") == "b=&flag="
    assert canonical_query("") == ""


# --- agreement with atlassian-jwt --------------------------------------------------------

# Path text as a request carries it once decoded; ';' and ':' are left out because
# atlassian-jwt parses its argument as a URL (path parameters, a scheme), not as a path.
PATH_TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ019-._~!$'()*+,=@&% /?#é日€")), max_size=12
)
QUERY_TEXT = st.text(
    alphabet=st.sampled_from(list("abAB09-._~!$'()*+,=;:@/? &#%é日€\"<>[]^`{|}")), max_size=8
)
NAMES = st.one_of(st.sampled_from(["a", "A", "b", "jwt", "x y", "é", "a*", ""]), QUERY_TEXT)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """Queries with repeated names, blanks, flags, reserved and non-ASCII characters,
    encoded in the several ways clients do."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(NAMES)
        value = draw(QUERY_TEXT)
        style = draw(st.sampled_from(["quote", "plus", "loose", "flag"]))
        if style == "flag":
            parts.append(quote(name, safe=""))
        elif style == "quote":
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
        elif style == "plus":
            parts.append(f"{quote_plus(name, safe='')}={quote_plus(value, safe='')}")
        else:
            # Reserved characters left raw where they cannot end the pair.
            parts.append(f"{quote(name, safe='')}={quote(value, safe='*~!()/,:@=$')}")
    return "&".join(parts)


@settings(max_examples=400, database=None, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "put", "Delete"]),
    segments=st.lists(PATH_TEXT, max_size=4),
    trailing_slash=st.booleans(),
    query=query_strings(),
    base=st.sampled_from(["", "/myapp", "/a/b"]),
)
def test_agrees_with_atlassian_jwt(
    method: str, segments: list[str], trailing_slash: bool, query: str, base: str
) -> None:
    relative = escape_uri_path("/" + "/".join(segments) + ("/" if trailing_slash else ""))
    url = relative + ("?" + query if query else "")
    expected = url_utils.canonicalize_request(method, url)
    assert canonical_request(method, base + relative, query, base) == expected
    assert query_string_hash(method, base + relative, query, base) == url_utils.hash_url(
        method, url
    )


def test_agrees_with_atlassian_jwt_on_a_known_hard_case() -> None:
    url = "/r%C3%A9po/a&b/?b=2&a=%E6%97%A5&a=&flag&x=a+b&x=a%20a&jwt=t&%2A=~&sp%20ace=1"
    path, _, query = url.partition("?")
    assert canonical_request("get", path, query) == url_utils.canonicalize_request("get", url)


# --- encoding and the happy path ------------------------------------------------------------


def test_round_trip() -> None:
    token = encode_token(
        {"iss": ISSUER, "sub": "someone"},
        SECRET,
        method="get",
        path="/myapp/x",
        query_string="b=1&a=2&jwt=ignored",
        base_path="/myapp",
    )
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    decoded = verify_token(token, SECRET, qsh=query_string_hash("GET", "/x", "a=2&b=1"))
    assert decoded["iss"] == ISSUER
    assert decoded["sub"] == "someone"
    assert decoded["exp"] - decoded["iat"] == 180
    assert abs(decoded["iat"] - time.time()) < 5


def test_encode_without_method_has_no_qsh() -> None:
    token = encode_token({"iss": ISSUER}, SECRET, now=NOW, lifetime=60)
    assert read_unverified(token).claims == {"iat": NOW, "exp": NOW + 60, "iss": ISSUER}


def test_explicit_claims_override_defaults() -> None:
    token = encode_token({"iss": ISSUER, "iat": 5, "exp": 6}, SECRET, now=NOW)
    assert read_unverified(token).claims == {"iss": ISSUER, "iat": 5, "exp": 6}


@pytest.mark.parametrize("secret", ["s", "ab", "x" * 128])
def test_short_and_long_secrets_accepted_without_warnings(secret: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = encode_token(claims(), secret)
        assert verify(token, secret)["iss"] == ISSUER
    assert caught == []


def test_float_times_accepted() -> None:
    assert verify(hand_signed(HS256_HEADER, claims(iat=NOW + 0.5, exp=NOW + 60.5)))


def test_qsh_none_skips_the_request_binding() -> None:
    token = hand_signed(HS256_HEADER, claims(qsh="anything"))
    assert verify(token, qsh=None)["qsh"] == "anything"


def test_issuer_argument_matches() -> None:
    assert verify(hand_signed(HS256_HEADER, claims()), issuer=ISSUER)["iss"] == ISSUER


# --- algorithms ------------------------------------------------------------------------------


def test_alg_none_refused() -> None:
    token = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims())}."
    assert refused(token) == "token_algorithm"


def test_missing_alg_refused() -> None:
    assert refused(hand_signed({"typ": "JWT"}, claims())) == "token_algorithm"


@pytest.mark.parametrize(("alg", "digest"), [("HS384", "sha384"), ("HS512", "sha512")])
def test_other_hmac_algorithms_refused_even_when_correctly_signed(alg: str, digest: str) -> None:
    secret = "k" * 64  # long enough that PyJWT checks it without a warning
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims(), secret=secret, digest=digest)
    # The signature is right for that algorithm: PyJWT would accept it if allowed.
    assert json.loads(jwt.PyJWS().decode(token, secret, algorithms=[alg]))["iss"] == ISSUER
    assert refused(token, secret=secret) == "token_algorithm"


def test_hs384_header_over_hs256_signature_refused() -> None:
    token = hand_signed({"alg": "HS384", "typ": "JWT"}, claims())
    assert refused(token) == "token_algorithm"


@pytest.mark.parametrize("kid", [None, "bitbucket-2026/key-1"])
def test_rs256_refused_without_a_verified_key(kid: str | None) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {"kid": kid} if kid else None
    token = jwt.encode(claims(aud="https://app.example.com"), private_key, "RS256", headers)
    assert refused(token) == "token_algorithm"
    # Nor is it accepted by treating the public key or the secret as an HMAC key.
    with pytest.raises(TokenError) as caught:
        read_unverified(token)
    assert caught.value.reason == "token_algorithm"


def test_rs256_header_over_hmac_signature_refused() -> None:
    token = hand_signed({"alg": "RS256", "kid": "k", "typ": "JWT"}, claims())
    assert refused(token) == "token_algorithm"


# --- signature ---------------------------------------------------------------------------


def test_tampered_payload_refused() -> None:
    token = hand_signed(HS256_HEADER, claims())
    header, _, signature = token.split(".")
    tampered = f"{header}.{segment(claims(iss='connection:999'))}.{signature}"
    assert refused(tampered) == "token_signature"


def test_tampered_signature_refused() -> None:
    token = hand_signed(HS256_HEADER, claims())
    header, payload, _ = token.split(".")
    other = hand_signed(HS256_HEADER, claims(), secret="other").split(".")[2]
    assert refused(f"{header}.{payload}.{other}") == "token_signature"


def test_secret_of_another_installation_refused() -> None:
    token = encode_token(claims(), "secret-of-another-installation")
    assert refused(token, secret=SECRET) == "token_signature"


def test_empty_signature_refused() -> None:
    header, payload, _ = hand_signed(HS256_HEADER, claims()).split(".")
    assert refused(f"{header}.{payload}.") == "token_signature"


# --- claims ---------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "qsh"])
def test_missing_claim_refused(missing: str) -> None:
    token = hand_signed(HS256_HEADER, claims(**{missing: None}))
    assert missing not in read_unverified(token).claims
    assert refused(token) == "token_claims"


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": str(NOW + 180)},
        {"exp": None, "iat": NOW},
        {"iat": str(NOW)},
        {"iat": True},
        {"exp": True},
        {"iat": None},
        {"iss": [ISSUER]},
        {"iss": 12345},
        {"iss": None},
        {"qsh": 12345},
        {"qsh": [QSH]},
        {"qsh": None},
    ],
    ids=repr,
)
def test_wrong_claim_types_refused(bad: dict[str, Any]) -> None:
    assert refused(hand_signed(HS256_HEADER, claims(**bad))) == "token_claims"


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "bad",
    [
        {"iat": NAN, "exp": NAN},
        {"exp": NAN},
        {"iat": NAN},
        {"iat": -INF, "exp": INF},
        {"exp": INF},
        {"iat": -INF},
    ],
    ids=repr,
)
def test_non_finite_times_refused(bad: dict[str, Any]) -> None:
    """JSON's NaN/Infinity: a NaN time would pass every comparison and never expire."""
    token = hand_signed(HS256_HEADER, claims(**bad))
    assert "NaN" in token_text(token) or "Infinity" in token_text(token)
    assert refused(token) == "token_claims"
    assert refused(token, now=NOW + 10**9) == "token_claims"


@pytest.mark.parametrize(
    "bad", [{"exp": 10**400}, {"iat": -(10**400)}, {"iat": NOW, "exp": 10**20}], ids=repr
)
def test_huge_integer_times_refused_without_overflow(bad: dict[str, Any]) -> None:
    assert refused(hand_signed(HS256_HEADER, claims(**bad))) == "token_too_old"


def test_expired_beyond_leeway_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(exp=NOW - 31))
    assert refused(token, leeway=30) == "token_expired"
    token = hand_signed(HS256_HEADER, claims(iat=NOW - 200, exp=NOW - 20))
    assert refused(token, leeway=0) == "token_expired"


@pytest.mark.parametrize("expired_by", [1, 29, 30])
def test_expired_within_leeway_accepted(expired_by: int) -> None:
    token = hand_signed(HS256_HEADER, claims(iat=NOW - 100, exp=NOW - expired_by))
    assert verify(token, leeway=30)["exp"] == NOW - expired_by


def test_default_leeway_is_30_seconds() -> None:
    assert verify(hand_signed(HS256_HEADER, claims(iat=NOW - 100, exp=NOW - 30)))
    assert refused(hand_signed(HS256_HEADER, claims(iat=NOW - 100, exp=NOW - 31))) == (
        "token_expired"
    )


def test_future_iat_beyond_leeway_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(iat=NOW + 31, exp=NOW + 200))
    assert refused(token, leeway=30) == "token_issued_in_future"


def test_future_iat_within_leeway_accepted() -> None:
    token = hand_signed(HS256_HEADER, claims(iat=NOW + 30, exp=NOW + 200))
    assert verify(token, leeway=30)["iat"] == NOW + 30


def test_lifetime_longer_than_max_age_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(iat=NOW, exp=NOW + 601))
    assert refused(token) == "token_too_old"
    assert refused(token, max_age=600) == "token_too_old"
    assert verify(token, max_age=601)["exp"] == NOW + 601


def test_token_older_than_max_age_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(iat=NOW - 100, exp=NOW + 100))
    assert refused(token, max_age=60) == "token_too_old"
    assert verify(token, max_age=200)["iat"] == NOW - 100


@pytest.mark.parametrize(
    ("times", "options", "expected"),
    [
        # exp + leeway == now: the last second a token is good.
        ({"iat": NOW - 100, "exp": NOW - 30}, {"leeway": 30}, None),
        ({"iat": NOW - 100, "exp": NOW - 31}, {"leeway": 30}, "token_expired"),
        ({"iat": NOW - 100, "exp": NOW - 30}, {"leeway": 30, "now": NOW + 0.5}, "token_expired"),
        ({"iat": NOW - 100, "exp": NOW}, {"leeway": 0}, None),
        ({"iat": NOW - 100, "exp": NOW - 1}, {"leeway": 0}, "token_expired"),
        # iat - leeway == now: the earliest a token may say it was issued.
        ({"iat": NOW + 30, "exp": NOW + 200}, {"leeway": 30}, None),
        ({"iat": NOW + 31, "exp": NOW + 200}, {"leeway": 30}, "token_issued_in_future"),
        ({"iat": NOW + 30.5, "exp": NOW + 200}, {"leeway": 30}, "token_issued_in_future"),
        ({"iat": NOW, "exp": NOW + 200}, {"leeway": 0}, None),
        ({"iat": NOW + 1, "exp": NOW + 200}, {"leeway": 0}, "token_issued_in_future"),
        # exp - iat == max_age: the longest lifetime taken.
        ({"iat": NOW, "exp": NOW + 600}, {"max_age": 600}, None),
        ({"iat": NOW, "exp": NOW + 601}, {"max_age": 600}, "token_too_old"),
        ({"iat": NOW - 500, "exp": NOW + 100}, {"max_age": 600}, None),
        ({"iat": NOW - 501, "exp": NOW + 100}, {"max_age": 600}, "token_too_old"),
        ({"iat": NOW, "exp": NOW + 1}, {"max_age": 1}, None),
        ({"iat": NOW, "exp": NOW + 2}, {"max_age": 1}, "token_too_old"),
    ],
    ids=repr,
)
def test_time_checks_at_their_exact_edges(
    times: dict[str, float], options: dict[str, Any], expected: str | None
) -> None:
    token = hand_signed(HS256_HEADER, claims(**times))
    if expected is None:
        assert verify(token, **options)["exp"] == times["exp"]
    else:
        assert refused(token, **options) == expected


def test_wrong_qsh_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(qsh=query_string_hash("GET", "/installed", "")))
    assert refused(token) == "token_qsh"


def test_qsh_of_another_query_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(qsh=query_string_hash("POST", "/installed", "a=1")))
    assert refused(token) == "token_qsh"


def test_context_qsh_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(qsh=CONTEXT_QSH))
    assert refused(token) == "token_context_qsh"
    assert refused(token, qsh=None) == "token_context_qsh"
    assert refused(token, qsh=CONTEXT_QSH) == "token_context_qsh"


@pytest.mark.parametrize(
    "issuer",
    [
        "ck\x00",
        "ck\n",
        "ck\x7f",
        "a" * 256,
        "has space",
        " leading",
        "",
        "<script>",
        "connection:<b>7</b>",
        'ari:cloud:bitbucket::app/{x}/example-app"><img src=x>',
        "clé",
    ],
    ids=repr,
)
def test_issuer_of_wrong_shape_refused(issuer: str) -> None:
    assert refused(hand_signed(HS256_HEADER, claims(iss=issuer))) == "token_issuer"
    with pytest.raises(TokenError) as caught:
        _ = read_unverified(hand_signed(HS256_HEADER, claims(iss=issuer))).issuer
    assert caught.value.reason == "token_issuer"


def test_issuer_of_right_shape() -> None:
    assert is_valid_client_key("connection:123")
    assert is_valid_client_key("a" * 255)
    assert is_valid_client_key(ISSUER)
    assert not is_valid_client_key("a" * 256)


def test_unverified_issuer_of_wrong_type() -> None:
    unverified = UnverifiedToken(header=HS256_HEADER, claims={"iss": ["a"]})
    with pytest.raises(TokenError) as caught:
        _ = unverified.issuer
    assert caught.value.reason == "token_claims"


def test_issuer_argument_mismatch_refused() -> None:
    token = hand_signed(HS256_HEADER, claims())
    assert refused(token, issuer="connection:other") == "token_issuer"


def test_audience_equal_to_issuer_accepted() -> None:
    assert verify(hand_signed(HS256_HEADER, claims(aud=ISSUER)))["aud"] == ISSUER
    assert verify(hand_signed(HS256_HEADER, claims(aud=["x", ISSUER])))


def test_audience_equal_to_expected_accepted() -> None:
    token = hand_signed(HS256_HEADER, claims(aud="https://app.example.com"))
    assert verify(token, audience="https://app.example.com")
    assert refused(token) == "token_audience"


@pytest.mark.parametrize(
    "aud", ["someone-else", ["someone-else"], [], 42, {"aud": ISSUER}, None], ids=repr
)
def test_audience_mismatch_refused(aud: object) -> None:
    token = hand_signed(HS256_HEADER, {**claims(), "aud": aud})
    assert refused(token) == "token_audience"


def test_list_audience_mismatch_with_explicit_audience_refused() -> None:
    token = hand_signed(HS256_HEADER, claims(aud=[ISSUER]))
    assert refused(token, audience="https://app.example.com") == "token_audience"


@pytest.mark.parametrize(
    "aud",
    [ISSUER, "https://app.example.com", "someone-else", ["someone-else"], [], 42, None],
    ids=repr,
)
def test_audience_ignored_when_not_checked(aud: object) -> None:
    token = hand_signed(HS256_HEADER, {**claims(), "aud": aud})
    assert verify(token, check_audience=False)["aud"] == aud


def test_unchecked_audience_still_needs_the_signature_and_the_rest() -> None:
    aud = {"aud": "anything"}
    assert refused(hand_signed(HS256_HEADER, claims(**aud), "other"), check_audience=False) == (
        "token_signature"
    )
    token = hand_signed(HS256_HEADER, claims(**aud, qsh="0" * 64))
    assert refused(token, check_audience=False) == "token_qsh"
    token = hand_signed(HS256_HEADER, claims(**aud, exp=NOW - 3600, iat=NOW - 3700))
    assert refused(token, check_audience=False) == "token_expired"
    assert (
        refused(
            hand_signed(HS256_HEADER, claims(**aud)), issuer="connection:x", check_audience=False
        )
        == "token_issuer"
    )


# --- secrets PyJWT refuses as HMAC keys ------------------------------------------------------

# Shaped like public keys, certificates or JWKs: PyJWT will not key HMAC with them (its
# defence against algorithm confusion), so a token can never verify against them.
UNUSABLE_SECRETS = [
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
    "ecdsa-sha2-nistp256AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY",
    "ssh-ed25519AAAAC3NzaC1lZDI1NTE5AAAAIG",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    '{"kty":"oct","k":"c2VjcmV0"}',
    '{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}',
    '[{"kty":"EC"}]',
]


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS, ids=repr)
def test_unusable_secret_is_a_token_error(secret: str) -> None:
    token = hand_signed(HS256_HEADER, claims(), secret=secret)
    assert refused(token, secret) == "secret_unusable"
    assert refused(token, secret) == "secret_unusable"  # every time, not only the first
    assert not is_usable_hmac_secret(secret)


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS[:3], ids=repr)
def test_unusable_secret_does_not_hide_a_malformed_token(secret: str) -> None:
    """A token that is wrong on its own is refused for that, whatever the secret."""
    bad_payload = f"{segment(HS256_HEADER)}.{b64(b'not json')}.sig"
    assert refused(bad_payload, secret) == "token_malformed"
    assert refused("a.b.c", secret) == "token_malformed"
    other_algorithm = hand_signed({"alg": "HS512", "typ": "JWT"}, claims(), secret, "sha512")
    assert refused(other_algorithm, secret) == "token_algorithm"


@pytest.mark.parametrize(
    "secret", ['{"a":1}', "{", "[1,2]", "ssh", "ecdsa", "-----BEGIN", "x509"], ids=repr
)
def test_secrets_only_resembling_keys_are_usable(secret: str) -> None:
    assert is_usable_hmac_secret(secret)
    assert verify(hand_signed(HS256_HEADER, claims(), secret=secret), secret)["iss"] == ISSUER


# --- malformed tokens ------------------------------------------------------------------------


NOT_UTF8_HEADER = b64(b"\xff\xfe")
NOT_UTF8_PAYLOAD = b64(b"\xff")


def good_token() -> str:
    return hand_signed(HS256_HEADER, claims())


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(".".join(good_token().split(".")[:2]), id="two segments"),
        pytest.param(good_token().split(".")[0], id="one segment"),
        pytest.param(good_token() + ".extra", id="four segments"),
        pytest.param(good_token() + ".a.b", id="five segments"),
        pytest.param("a.b.c", id="garbage"),
        pytest.param("...", id="empty segments"),
        pytest.param(good_token().replace(".", ".!!!", 1), id="bad base64 payload"),
        pytest.param("%%%." + good_token().split(".", 1)[1], id="bad base64 header"),
        pytest.param(f"{b64(b'not json')}.{segment(claims())}.sig", id="header not JSON"),
        pytest.param(f"{segment(['HS256'])}.{segment(claims())}.sig", id="header a list"),
        pytest.param(f"{segment('HS256')}.{segment(claims())}.sig", id="header a string"),
        pytest.param(f"{NOT_UTF8_HEADER}.{segment(claims())}.sig", id="header not UTF-8"),
        pytest.param(hand_signed(HS256_HEADER, [claims()]), id="payload a list"),
        pytest.param(hand_signed(HS256_HEADER, "claims"), id="payload a string"),
        pytest.param(hand_signed(HS256_HEADER, 7), id="payload a number"),
        pytest.param(hand_signed(HS256_HEADER, None), id="payload null"),
        pytest.param(f"{segment(HS256_HEADER)}.{b64(b'not json')}.sig", id="payload not JSON"),
        pytest.param(f"{segment(HS256_HEADER)}.{NOT_UTF8_PAYLOAD}.sig", id="payload not UTF-8"),
        pytest.param(
            hand_signed({**HS256_HEADER, "crit": ["exp"], "exp": 1}, claims()),
            id="unknown crit",
        ),
        pytest.param(hand_signed({**HS256_HEADER, "crit": []}, claims()), id="empty crit"),
        pytest.param(hand_signed({**HS256_HEADER, "crit": "b64"}, claims()), id="crit a string"),
        pytest.param(
            hand_signed({**HS256_HEADER, "crit": ["b64"], "b64": False}, claims()),
            id="b64 false",
        ),
        pytest.param("", id="empty"),
        pytest.param(good_token() + "A" * MAX_TOKEN_LENGTH, id="oversize"),
        pytest.param(
            hand_signed(HS256_HEADER, claims(pad="x" * MAX_TOKEN_LENGTH)), id="oversize signed"
        ),
    ],
)
def test_malformed_token_refused(token: str) -> None:
    assert refused(token) == "token_malformed"


@pytest.mark.parametrize("token", [None, 123, b"a.b.c", ["a.b.c"]], ids=repr)
def test_non_str_token_refused(token: object) -> None:
    assert refused(token) == "token_malformed"


def token_of_length(length: int) -> str:
    """A valid token of exactly ``length`` characters, padded with a claim."""
    unpadded = len(hand_signed(HS256_HEADER, claims(pad="")))
    # Base64 makes 4 characters of 3 bytes: start a little short of the length and grow.
    padding = max(0, (length - unpadded) * 3 // 4 - 4)
    token = ""
    while len(token) < length:
        token = hand_signed(HS256_HEADER, claims(pad="x" * padding))
        padding += 1
    assert len(token) == length
    return token


def test_token_of_exactly_the_length_limit_is_read_and_verified() -> None:
    token = token_of_length(MAX_TOKEN_LENGTH)
    assert read_unverified(token).issuer == ISSUER
    assert verify(token)["iss"] == ISSUER


def test_token_one_character_over_the_length_limit_refused() -> None:
    token = token_of_length(MAX_TOKEN_LENGTH + 1)
    assert refused(token) == "token_malformed"
    with pytest.raises(TokenError) as caught:
        read_unverified(token)
    assert caught.value.reason == "token_malformed"


def test_read_unverified_does_not_check_the_signature() -> None:
    token = hand_signed(HS256_HEADER, claims(), secret="unknown")
    unverified = read_unverified(token)
    assert unverified.header == HS256_HEADER
    assert unverified.issuer == ISSUER
    assert refused(token) == "token_signature"
