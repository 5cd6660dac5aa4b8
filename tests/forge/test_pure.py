"""The Forge modules on their own: the claims' typed view, the JWKS URL rule, verification
of payloads only a signer could make, the system-token cache, and the imports."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from typing import Any

import jwt
import pytest
from django.core.cache import cache

from bitbucket_install.exceptions import InvocationRefused
from bitbucket_install.forge import jwks, system_tokens, tokens
from bitbucket_install.forge.invocation import Invocation
from tests.forge.helpers import APP_ID, CLAIMS, INSTALLATION_ID, NOW, PRIVATE_PEM, claims
from tests.forge.jwks_server import JWKSServer

APP = CLAIMS["app"]


def invocation(**app_changes: Any) -> Invocation:
    return Invocation.from_claims(claims(app={**APP, **app_changes}), APP_ID)


# --- the typed view ------------------------------------------------------------------


def test_api_base_url_prefers_the_apps_then_the_bitbucket_context() -> None:
    assert invocation(apiBaseUrl="https://api.example.test/ex").api_base_url == (
        "https://api.example.test/ex"
    )
    for fallback in (None, "http://api.bitbucket.org", "https://[nope", "https:///x", ""):
        app = {**APP, "apiBaseUrl": fallback}
        seen = Invocation.from_claims(claims(app=app), APP_ID)
        assert seen.api_base_url == "https://api.bitbucket.org"
    without = {**APP, "apiBaseUrl": None, "installation": {"id": INSTALLATION_ID}}
    assert Invocation.from_claims(claims(app=without), APP_ID).api_base_url is None


def test_workspace_from_the_context_claim_without_braces() -> None:
    app = {**APP, "installation": {"id": INSTALLATION_ID, "contexts": "not a list"}}
    seen = Invocation.from_claims(
        claims(app=app, context={"workspaceId": "{b7ea02c9-0871-4858-a2a6-a190d7de977c}"}),
        APP_ID,
    )
    assert seen.workspace_id == "b7ea02c9-0871-4858-a2a6-a190d7de977c"
    assert (
        Invocation.from_claims(claims(app=app, context={"workspaceId": "{}"}), APP_ID).workspace_id
        is None
    )
    assert Invocation.from_claims(claims(app=app), APP_ID).workspace_id is None


def test_installation_id_from_the_installation_alone() -> None:
    app = {k: v for k, v in APP.items() if k != "installationId"}
    assert Invocation.from_claims(claims(app=app), APP_ID).installation_id == INSTALLATION_ID
    bare = {"id": APP_ID, "installationId": INSTALLATION_ID}
    seen = Invocation.from_claims(claims(app=bare), APP_ID)
    assert (seen.installation_id, seen.environment_type, seen.module_key) == (
        INSTALLATION_ID,
        None,
        None,
    )


def test_the_claims_stay_out_of_repr() -> None:
    assert "jti" not in repr(invocation())


# --- the JWKS URL rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json", True),
        ("http://127.0.0.1:8000/jwks.json", True),
        ("http://[::1]:8000/jwks.json", True),
        ("http://localhost/jwks.json", True),
        ("http://keys.example/jwks.json", False),
        ("file:///etc/passwd", False),
        ("https://", False),
        ("https://keys.example/ jwks.json", False),
        (None, False),
        (5, False),
    ],
)
def test_jwks_url_rule(url: object, allowed: bool) -> None:
    assert jwks.is_allowed_jwks_url(url) is allowed


# --- payloads only a signer could make -------------------------------------------------


def signed_bytes(payload: bytes) -> str:
    return jwt.PyJWS().encode(
        payload, PRIVATE_PEM, algorithm="RS256", headers={"kid": "test-fit-key-1"}
    )


def verify(token: str, **options: Any) -> Invocation:
    from bitbucket_install.conf import app_settings

    return tokens.verify_invocation(
        token, app_id=APP_ID, jwks_url=app_settings.FORGE_JWKS_URL, **options
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(b"not json", "token_malformed", id="not-json"),
        pytest.param(b"[1, 2]", "token_malformed", id="a-list"),
        pytest.param(b"[" * 100_000, "token_malformed", id="deep"),
        pytest.param(
            json.dumps({**CLAIMS, "exp": float("nan")}).encode(), "token_claims", id="exp-nan"
        ),
        pytest.param(
            json.dumps({**CLAIMS, "nbf": float("-inf")}).encode(), "token_claims", id="nbf-inf"
        ),
    ],
)
def test_signed_payloads_that_are_no_claims(keys: JWKSServer, payload: bytes, reason: str) -> None:
    with pytest.raises(InvocationRefused) as refused:
        verify(signed_bytes(payload))
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"[" * 100_000, id="nested-too-deep"),
        pytest.param(b"[1]", id="a-list"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_a_header_that_is_no_object_is_malformed(keys: JWKSServer, header: bytes) -> None:
    import base64

    segment = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    with pytest.raises(InvocationRefused) as refused:
        verify(f"{segment}.e30.c2ln")
    assert refused.value.reason == "token_malformed"
    assert keys.fetches == 0


def test_a_header_read_leniently_is_still_verified_strictly(keys: JWKSServer) -> None:
    # Junk in the header segment that base64 decoding skips: the pre-check reads RS256
    # and a kid, PyJWT then refuses the segment.
    from tests.forge.helpers import VECTOR

    header, _, rest = VECTOR["token"].partition(".")
    with pytest.raises(InvocationRefused) as refused:
        verify(f"{header[:4]}!!!!{header[4:]}.{rest}")
    assert refused.value.reason == "token_signature"
    assert keys.fetches == 1


def test_verify_with_an_explicit_now(keys: JWKSServer) -> None:
    from tests.forge.helpers import VECTOR

    assert verify(VECTOR["token"], now=NOW).installation_id == INSTALLATION_ID
    with pytest.raises(InvocationRefused) as refused:
        verify(VECTOR["token"], now=CLAIMS["exp"] + tokens.LEEWAY)
    assert refused.value.reason == "token_expired"


# --- the system-token cache --------------------------------------------------------------


def test_a_system_token_is_kept_until_its_exp() -> None:
    token = jwt.encode({"exp": NOW + 100}, "k" * 32, algorithm="HS256")
    system_tokens.remember(INSTALLATION_ID, token)
    assert system_tokens.system_token(INSTALLATION_ID) == token
    assert system_tokens.system_token(INSTALLATION_ID, now=NOW + 99) == token
    assert system_tokens.system_token(INSTALLATION_ID, now=NOW + 100) is None
    assert system_tokens.system_token("ari:cloud:ecosystem::installation/other") is None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("opaque-not-a-jwt", id="opaque"),
        pytest.param(jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"), id="no-exp"),
        pytest.param(jwt.encode({"exp": "later"}, "k" * 32, algorithm="HS256"), id="exp-text"),
        pytest.param(jwt.encode({"exp": True}, "k" * 32, algorithm="HS256"), id="exp-bool"),
        pytest.param(jwt.encode({"exp": NOW}, "k" * 32, algorithm="HS256"), id="expired"),
        pytest.param(
            "eyJhbGciOiJIUzI1NiJ9."
            + __import__("base64").urlsafe_b64encode(b'{"exp": NaN}').rstrip(b"=").decode()
            + ".c2ln",
            id="exp-nan",
        ),
    ],
)
def test_a_system_token_without_a_usable_exp_is_not_kept(token: str | None) -> None:
    system_tokens.remember(INSTALLATION_ID, token)
    assert system_tokens.system_token(INSTALLATION_ID) is None


def test_a_huge_exp_is_kept_with_a_bounded_timeout() -> None:
    token = jwt.encode({"exp": 10**30}, "k" * 32, algorithm="HS256")
    system_tokens.remember(INSTALLATION_ID, token)
    assert system_tokens.system_token(INSTALLATION_ID) == token


def test_an_entry_of_another_shape_is_no_token() -> None:
    cache.set(system_tokens.cache_key(INSTALLATION_ID), "a bare string")
    assert system_tokens.system_token(INSTALLATION_ID) is None


def test_a_cache_that_fails_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def set(self, *args: Any, **kwargs: Any) -> None:
            raise ConnectionError("redis is down")

    monkeypatch.setattr(system_tokens, "cache", Broken())
    token = jwt.encode({"exp": NOW + 100}, "k" * 32, algorithm="HS256")
    with caplog.at_level(logging.WARNING, logger="bitbucket_install"):
        system_tokens.remember(INSTALLATION_ID, token)
    assert [r.getMessage() for r in caplog.records] == [
        "Forge system token not cached: the cache is unavailable (ConnectionError)"
    ]


# --- the imports ------------------------------------------------------------------------


def test_without_cryptography_the_import_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.delitem(sys.modules, "bitbucket_install.forge.tokens")
    with pytest.raises(ImportError, match=r"django-bitbucket-install\[forge\]") as raised:
        importlib.import_module("bitbucket_install.forge.tokens")
    assert isinstance(raised.value.__cause__, ImportError)


def test_an_old_pyjwt_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt, "__version__", "2.13.0")
    monkeypatch.delitem(sys.modules, "bitbucket_install.forge.tokens")
    with pytest.raises(ImportError, match=r"PyJWT 2\.15 or newer, not 2\.13\.0"):
        importlib.import_module("bitbucket_install.forge.tokens")


def test_without_cryptography_decorating_fails_and_the_rest_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bitbucket_install.forge

    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.delitem(sys.modules, "bitbucket_install.forge.tokens")
    monkeypatch.delattr(bitbucket_install.forge, "tokens")
    for name in ("invocation", "jwks", "system_tokens", "decorators"):
        # The fresh imports replace the package's attributes too: put them back after.
        monkeypatch.setattr(bitbucket_install.forge, name, getattr(bitbucket_install.forge, name))
        monkeypatch.delitem(sys.modules, f"bitbucket_install.forge.{name}")
        assert importlib.import_module(f"bitbucket_install.forge.{name}").__name__.endswith(name)
    decorators = sys.modules["bitbucket_install.forge.decorators"]

    with pytest.raises(ImportError, match=r"django-bitbucket-install\[forge\]"):
        decorators.forge_invocation_required(lambda request: None)


# --- the setting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (["orange", "../x", 7, "orange"], {"orange"}),
        (("blue", "eu-1"), {"blue", "eu-1"}),
        ("orange", set()),
        (None, set()),
    ],
)
def test_ic_labels_setting_keeps_well_formed_labels(
    settings: Any, value: object, read: set[str]
) -> None:
    from bitbucket_install.conf import app_settings

    settings.BITBUCKET_INSTALL_FORGE_IC_LABELS = value
    assert read == app_settings.FORGE_IC_LABELS
