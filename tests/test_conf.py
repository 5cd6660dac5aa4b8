"""conf.py: every BITBUCKET_INSTALL_* setting, its default, and that overrides apply live."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import RequestFactory, override_settings
from django.urls import get_script_prefix, set_script_prefix
from pytest_django import Settings

from bitbucket_install.conf import (
    DEFAULT_AUTHORIZE_URL,
    DEFAULT_BITBUCKET_ORIGINS,
    DEFAULT_DESCRIPTOR,
    DURATIONS,
    app_settings,
    with_path_segment,
)
from bitbucket_install.identifiers import MIN_APP_SECRET_LENGTH
from bitbucket_install.tokens import TokenError, encode_token
from bitbucket_install.verification import verify_request_token

TEXT_SETTINGS = [
    "ADDON_KEY",
    "DESCRIPTOR_URI",
    "BASE_URL",
    "SUCCESS_URL",
    "FAILURE_URL",
]
DEFAULTS = {"JWT_LEEWAY": 30, "JWT_MAX_AGE": 600, "FLOW_MAX_AGE": 900, "CONFIRM_WINDOW": 120}
STRONG_SECRET = "s" * MIN_APP_SECRET_LENGTH
WITHOUT_APP_URLS = "tests.urls_without_app"
SIMULATOR_PAGE = "https://app.example.com/bitbucket/simulator/authorize/"


UNSET = object()


def _unset(settings: Settings, *names: str) -> None:
    for name in names:
        full = f"BITBUCKET_INSTALL_{name}"
        if hasattr(settings, full):
            delattr(settings, full)


@pytest.fixture
def script_prefix() -> Iterator[None]:
    before = get_script_prefix()
    yield
    set_script_prefix(before)


def test_values_from_the_test_settings() -> None:
    assert app_settings.ADDON_KEY == "example-app"
    assert app_settings.BASE_URL == "https://app.example.com"
    assert app_settings.SHARED_SECRET == "app-level-shared-secret-for-the-test-suite"
    assert app_settings.DESCRIPTOR_URI is None


@pytest.mark.parametrize("name", TEXT_SETTINGS)
def test_text_setting_defaults_to_none(settings: Settings, name: str) -> None:
    _unset(settings, name)
    assert getattr(app_settings, name) is None


@pytest.mark.parametrize("name", TEXT_SETTINGS)
def test_text_setting_override_applies_without_reimport(name: str) -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": "https://first.example/x"}):
        assert getattr(app_settings, name) == "https://first.example/x"
        with override_settings(**{f"BITBUCKET_INSTALL_{name}": "second"}):
            assert getattr(app_settings, name) == "second"
        assert getattr(app_settings, name) == "https://first.example/x"


@pytest.mark.parametrize("name", TEXT_SETTINGS)
@pytest.mark.parametrize("value", ["", None, 5, ["x"], b"bytes"])
def test_text_setting_empty_or_wrong_type_is_none(name: str, value: Any) -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
        assert getattr(app_settings, name) is None


def test_authorize_url_default_is_the_simulator_page_with_the_simulator_on(
    settings: Settings,
) -> None:
    _unset(settings, "AUTHORIZE_URL")
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    assert app_settings.AUTHORIZE_URL == SIMULATOR_PAGE
    settings.BITBUCKET_INSTALL_BASE_URL = "http://127.0.0.1:8000/app/"
    assert app_settings.AUTHORIZE_URL == "http://127.0.0.1:8000/bitbucket/simulator/authorize/"
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = "https://bitbucket.example.test/authorize"
    assert app_settings.AUTHORIZE_URL == "https://bitbucket.example.test/authorize"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"DEBUG": False}, id="no-debug"),
        pytest.param({"BITBUCKET_INSTALL_SIMULATOR": "True"}, id="simulator-a-string"),
        pytest.param({"BITBUCKET_INSTALL_SIMULATOR": False}, id="simulator-off"),
        pytest.param({"BITBUCKET_INSTALL_BASE_URL": None}, id="no-base-url"),
        pytest.param({"ROOT_URLCONF": WITHOUT_APP_URLS}, id="app-urls-not-included"),
    ],
)
def test_authorize_url_is_bitbucket_unless_the_simulator_page_is_there(
    settings: Settings, overrides: dict[str, Any]
) -> None:
    _unset(settings, "AUTHORIZE_URL")
    with override_settings(**{"DEBUG": True, "BITBUCKET_INSTALL_SIMULATOR": True, **overrides}):
        assert app_settings.AUTHORIZE_URL == DEFAULT_AUTHORIZE_URL


def test_authorize_url_default_and_override(settings: Settings) -> None:
    _unset(settings, "AUTHORIZE_URL")
    assert app_settings.AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"
    assert DEFAULT_AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = "http://127.0.0.1:8000/simulator/authorize"
    assert app_settings.AUTHORIZE_URL == "http://127.0.0.1:8000/simulator/authorize"
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = ""
    assert app_settings.AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"


def test_duration_bounds_are_what_the_protocol_needs() -> None:
    assert DURATIONS == {
        "JWT_LEEWAY": (0, 300, 30),
        "JWT_MAX_AGE": (1, 3600, 600),
        "CONFIRM_WINDOW": (1, 3600, 120),
        "FLOW_MAX_AGE": (1, 86400, 900),
    }


@pytest.mark.parametrize(("name", "default"), DEFAULTS.items())
def test_duration_default(settings: Settings, name: str, default: int) -> None:
    _unset(settings, name)
    assert getattr(app_settings, name) == default
    assert DURATIONS[name][2] == default


@pytest.mark.parametrize("name", DURATIONS)
def test_duration_override_within_the_bounds(name: str) -> None:
    smallest, largest, _ = DURATIONS[name]
    for value in (smallest, 7, largest):
        with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
            assert getattr(app_settings, name) == value


@pytest.mark.parametrize("name", DURATIONS)
def test_duration_out_of_bounds_is_clamped(name: str) -> None:
    smallest, largest, _ = DURATIONS[name]
    for value in (largest + 1, 31_536_000, 10**18, 10**400):
        with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
            assert getattr(app_settings, name) == largest
    for value in (smallest - 1, -1, -(10**400)):
        with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
            assert getattr(app_settings, name) == smallest


@pytest.mark.parametrize(("name", "default"), DEFAULTS.items())
@pytest.mark.parametrize("value", ["60", 1.5, True, False, None, [60]])
def test_duration_of_wrong_type_falls_back_to_default(name: str, default: int, value: Any) -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
        assert getattr(app_settings, name) == default


@pytest.mark.parametrize(
    "value",
    [
        STRONG_SECRET,
        "x" * 200,
        "  " + STRONG_SECRET + "\n",
        "a b" * 11,  # 33 characters, blanks inside count
    ],
)
def test_strong_shared_secret_is_used_as_given(value: str) -> None:
    with override_settings(BITBUCKET_INSTALL_SHARED_SECRET=value):
        secret = app_settings.SHARED_SECRET
        assert secret == value


@pytest.mark.parametrize(
    "value",
    [
        "x",
        " ",
        "",
        "s" * (MIN_APP_SECRET_LENGTH - 1),
        " " * 40,
        "  " + "s" * (MIN_APP_SECRET_LENGTH - 1) + "  \t",
        None,
        12345678901234567890123456789012345,
        b"s" * 40,
        ["s" * 40],
    ],
    ids=repr,
)
def test_weak_shared_secret_is_never_used(value: Any) -> None:
    with override_settings(BITBUCKET_INSTALL_SHARED_SECRET=value):
        assert app_settings.SHARED_SECRET is None


def test_shared_secret_defaults_to_none(settings: Settings) -> None:
    _unset(settings, "SHARED_SECRET")
    assert app_settings.SHARED_SECRET is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", False), ("yes", False), (1, False), (None, False)],
)
def test_trust_unsigned_returns_only_when_true(value: Any, expected: bool) -> None:
    with override_settings(BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS=value):
        assert app_settings.TRUST_UNSIGNED_RETURNS is expected


def test_trust_unsigned_returns_default_off(settings: Settings) -> None:
    _unset(settings, "TRUST_UNSIGNED_RETURNS")
    assert app_settings.TRUST_UNSIGNED_RETURNS is False


def test_bitbucket_origins_default(settings: Settings) -> None:
    _unset(settings, "BITBUCKET_ORIGINS")
    origins = app_settings.BITBUCKET_ORIGINS
    assert origins == {"https://bitbucket.org", "https://api.bitbucket.org"}
    assert origins == set(DEFAULT_BITBUCKET_ORIGINS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["HTTPS://Bitbucket.ORG:443"], {"https://bitbucket.org"}),
        (
            ("https://bb.example:8443", "http://[::1]:80"),
            {"https://bb.example:8443", "http://[::1]"},
        ),
        # Read as origins: what a system check (E019) refuses is not silently widened.
        (["https://bitbucket.org/some/path"], {"https://bitbucket.org"}),
        (["bitbucket.org", "ftp://bitbucket.org", "https://u@bitbucket.org", 5, None], set()),
        ("https://bitbucket.org", set()),
        ({"https://bitbucket.org": 1}, set()),
        (None, set()),
        ([], set()),
    ],
)
def test_bitbucket_origins_are_normalised(value: Any, expected: set[str]) -> None:
    with override_settings(BITBUCKET_INSTALL_BITBUCKET_ORIGINS=value):
        origins = app_settings.BITBUCKET_ORIGINS
        assert origins == expected


def test_bitbucket_origins_include_the_site_with_the_simulator_on() -> None:
    with override_settings(
        BITBUCKET_INSTALL_SIMULATOR=True,
        DEBUG=True,
        BITBUCKET_INSTALL_BASE_URL="http://127.0.0.1:8000/app",
    ):
        origins = app_settings.BITBUCKET_ORIGINS
        assert origins == {
            "https://bitbucket.org",
            "https://api.bitbucket.org",
            "http://127.0.0.1:8000",
        }
    with override_settings(
        BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=True, BITBUCKET_INSTALL_BASE_URL=None
    ):
        origins = app_settings.BITBUCKET_ORIGINS
        assert origins == set(DEFAULT_BITBUCKET_ORIGINS)
    with override_settings(BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=False):
        origins = app_settings.BITBUCKET_ORIGINS
        assert origins == set(DEFAULT_BITBUCKET_ORIGINS)


def test_redirect_uri_default_is_the_callback_under_base_url(settings: Settings) -> None:
    _unset(settings, "REDIRECT_URI")
    assert app_settings.REDIRECT_URI == "https://app.example.com/bitbucket/callback/"
    settings.BITBUCKET_INSTALL_BASE_URL = "https://other.example.org:8443"
    assert app_settings.REDIRECT_URI == "https://other.example.org:8443/bitbucket/callback/"


def test_redirect_uri_default_follows_the_script_prefix(
    settings: Settings, script_prefix: None
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = "https://app.example.com/app/"
    set_script_prefix("/app/")
    assert app_settings.REDIRECT_URI == "https://app.example.com/app/bitbucket/callback/"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://app.example.com/bitbucket/callback/",
            "https://app.example.com/bitbucket/callback/f1/",
        ),
        (
            "https://app.example.com/bitbucket/callback",
            "https://app.example.com/bitbucket/callback/f1/",
        ),
        ("https://app.example.com", "https://app.example.com/f1/"),
        ("https://app.example.com/cb/?a=1", "https://app.example.com/cb/f1/?a=1"),
    ],
)
def test_with_path_segment(url: str, expected: str) -> None:
    assert with_path_segment(url, "f1") == expected


def test_redirect_uri_override_wins(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_REDIRECT_URI = "https://app.example.com/elsewhere/"
    assert app_settings.REDIRECT_URI == "https://app.example.com/elsewhere/"


def test_redirect_uri_is_none_without_the_app_urls(settings: Settings) -> None:
    # Reversing the callback raised NoReverseMatch out of `check` and `migrate`; E022
    # names the missing include instead.
    _unset(settings, "REDIRECT_URI")
    settings.ROOT_URLCONF = WITHOUT_APP_URLS
    assert app_settings.REDIRECT_URI is None
    settings.BITBUCKET_INSTALL_REDIRECT_URI = "https://app.example.com/cb/"
    assert app_settings.REDIRECT_URI == "https://app.example.com/cb/"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(UNSET, True), ("", True), (5, True), ("https://app.example.com/cb/", False)],
)
def test_redirect_uri_is_default(settings: Settings, value: Any, expected: bool) -> None:
    if value is UNSET:
        _unset(settings, "REDIRECT_URI")
    else:
        settings.BITBUCKET_INSTALL_REDIRECT_URI = value
    assert app_settings.redirect_uri_is_default() is expected


def test_install_link_from_settings(settings: Settings) -> None:
    link = app_settings.install_link()
    assert link.authorize_url == DEFAULT_AUTHORIZE_URL
    assert link.addon_key == "example-app"
    assert link.descriptor_uri is None
    assert link.redirect_uri == "https://app.example.com/bitbucket/callback/"
    assert link.base_url == "https://app.example.com"
    # Without DEBUG the authorize page must be on a Bitbucket origin.
    assert link.authorize_origins == frozenset(DEFAULT_BITBUCKET_ORIGINS)
    other = app_settings.install_link("https://app.example.com/bitbucket/callback/f1/")
    assert other.redirect_uri == "https://app.example.com/bitbucket/callback/f1/"
    settings.DEBUG = True
    assert app_settings.install_link().authorize_origins is None


def test_install_link_without_debug_refuses_an_authorize_url_off_bitbucket(
    settings: Settings,
) -> None:
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = "https://bitbucket.example.test/authorize"
    assert [p.rule for p in app_settings.install_link().problems()] == ["authorize_url_bitbucket"]
    settings.DEBUG = True
    assert app_settings.install_link().problems() == []


def test_redirect_uri_is_none_without_base_url(settings: Settings) -> None:
    _unset(settings, "REDIRECT_URI", "BASE_URL")
    assert app_settings.REDIRECT_URI is None
    settings.BITBUCKET_INSTALL_REDIRECT_URI = "https://app.example.com/cb/"
    assert app_settings.REDIRECT_URI == "https://app.example.com/cb/"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://app.example.com", ""),
        ("https://app.example.com/", ""),
        ("https://app.example.com/app", "/app"),
        ("https://app.example.com/app/", "/app"),
        ("https://app.example.com/a/b/?x=1", "/a/b"),
        (None, ""),
    ],
)
def test_base_path(settings: Settings, base_url: str | None, expected: str) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = base_url
    base_path = app_settings.BASE_PATH
    assert base_path == expected


@pytest.mark.parametrize(
    ("base_url", "path", "expected"),
    [
        ("https://app.example.com", "/bitbucket/installed", "/bitbucket/installed"),
        ("https://app.example.com/app", "/app/bitbucket/installed", "/bitbucket/installed"),
        ("https://app.example.com/app/", "/app/bitbucket/installed", "/bitbucket/installed"),
        ("https://app.example.com/app", "/app-other/installed", "/app-other/installed"),
        ("https://app.example.com/app", "/app", "/app"),
        ("https://app.example.com/app", "/other/installed", "/other/installed"),
    ],
)
def test_relative_to_base(settings: Settings, base_url: str, path: str, expected: str) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = base_url
    assert app_settings.relative_to_base(path) == expected


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://app.example.com", "https://app.example.com/bitbucket/x"),
        ("https://app.example.com/app/", "https://app.example.com/bitbucket/x"),
        ("http://localhost:8000", "http://localhost:8000/bitbucket/x"),
    ],
)
def test_absolute_url(settings: Settings, base_url: str, expected: str) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = base_url
    assert app_settings.absolute_url("/bitbucket/x") == expected


@pytest.mark.parametrize(
    ("simulator", "debug", "expected"),
    [
        (True, True, True),
        (True, False, False),
        (False, True, False),
        (None, True, False),
        # Only True: strings from an environment variable are truthy, "False" included.
        ("yes", True, False),
        ("True", True, False),
        ("False", True, False),
        (1, True, False),
        ("", True, False),
    ],
)
def test_simulator_only_with_debug(simulator: Any, debug: bool, expected: bool) -> None:
    with override_settings(BITBUCKET_INSTALL_SIMULATOR=simulator, DEBUG=debug):
        assert app_settings.SIMULATOR is expected


def test_simulator_default_off(settings: Settings) -> None:
    _unset(settings, "SIMULATOR")
    settings.DEBUG = True
    assert app_settings.SIMULATOR is False


def test_descriptor_from_settings() -> None:
    descriptor = app_settings.DESCRIPTOR
    assert descriptor == {
        "scopes": ["account"],
        "contexts": ["account"],
        "modules": {},
        "key": "example-app",
        "name": "Example app",
        "description": "An app used by the test suite.",
        "vendor": {"name": "Example Inc.", "url": "https://example.com"},
    }


def test_descriptor_defaults(settings: Settings) -> None:
    _unset(settings, "DESCRIPTOR")
    assert app_settings.DESCRIPTOR == {
        "scopes": ["account"],
        "contexts": ["account"],
        "modules": {},
        "key": "example-app",
        "name": "example-app",
    }
    _unset(settings, "ADDON_KEY")
    assert app_settings.DESCRIPTOR == {
        "scopes": ["account"],
        "contexts": ["account"],
        "modules": {},
        "key": None,
        "name": None,
    }


def test_descriptor_override_wins_over_defaults(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {
        "key": "my-key",
        "name": "Mine",
        "scopes": ["account", "repository"],
        "modules": {"webhooks": []},
    }
    assert app_settings.DESCRIPTOR == {
        "key": "my-key",
        "name": "Mine",
        "scopes": ["account", "repository"],
        "contexts": ["account"],
        "modules": {"webhooks": []},
    }


def test_descriptor_property_returns_a_fresh_dict(settings: Settings) -> None:
    _unset(settings, "DESCRIPTOR")
    first = app_settings.DESCRIPTOR
    first["name"] = "changed"
    first["extra"] = True
    assert app_settings.DESCRIPTOR["name"] == "example-app"
    assert "extra" not in app_settings.DESCRIPTOR
    assert DEFAULT_DESCRIPTOR == {"scopes": ["account"], "contexts": ["account"], "modules": {}}


# --- Clamped where it is used: a token's times through the request verifier -------------

ISSUER = "connection:42"
TOKEN_SECRET = "s" * 40
YEAR = 365 * 24 * 60 * 60
DAY = 24 * 60 * 60


def _token_expired_ago(seconds: int, lifetime: int = 180) -> str:
    return encode_token(
        {"iss": ISSUER},
        TOKEN_SECRET,
        method="GET",
        path="/hook/",
        lifetime=lifetime,
        now=time.time() - seconds - lifetime,
    )


def _reason(request: HttpRequest, token: str) -> str | None:
    try:
        verify_request_token(request, token, TOKEN_SECRET, issuer=ISSUER)
    except TokenError as error:
        return error.reason
    return None


@override_settings(BITBUCKET_INSTALL_JWT_LEEWAY=YEAR)
def test_a_year_of_leeway_does_not_accept_a_token_expired_364_days_ago(
    rf: RequestFactory,
) -> None:
    request = rf.get("/hook/")
    assert _reason(request, _token_expired_ago(364 * DAY)) == "token_expired"
    # The leeway is the largest the protocol needs, five minutes: no more.
    assert _reason(request, _token_expired_ago(301)) == "token_expired"
    assert _reason(request, _token_expired_ago(290)) is None


@override_settings(BITBUCKET_INSTALL_JWT_LEEWAY=-(10**400))
def test_a_negative_leeway_is_none(rf: RequestFactory) -> None:
    request = rf.get("/hook/")
    assert _reason(request, _token_expired_ago(2)) == "token_expired"
    assert _reason(request, _token_expired_ago(-60)) is None


@override_settings(BITBUCKET_INSTALL_JWT_MAX_AGE=10**9)
def test_a_huge_max_age_does_not_accept_a_token_that_lives_a_year(rf: RequestFactory) -> None:
    request = rf.get("/hook/")
    assert _reason(request, _token_expired_ago(-60, lifetime=YEAR)) == "token_too_old"
    assert _reason(request, _token_expired_ago(-60, lifetime=3601)) == "token_too_old"
    assert _reason(request, _token_expired_ago(-60, lifetime=3600)) is None


def test_forge_settings(settings: Settings) -> None:
    from bitbucket_install.conf import DEFAULT_FORGE_JWKS_URL, app_settings

    assert app_settings.FORGE_APP_ID is None
    assert app_settings.FORGE_APP_LINK is None
    assert app_settings.FORGE_JWKS_URL == DEFAULT_FORGE_JWKS_URL
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = (
        "ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c"
    )
    settings.BITBUCKET_INSTALL_FORGE_APP_LINK = "https://developer.atlassian.com/console/install/x"
    settings.BITBUCKET_INSTALL_FORGE_JWKS_URL = "http://127.0.0.1:9/jwks.json"
    assert (
        app_settings.FORGE_APP_ID
        == "ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c"
    )
    assert app_settings.FORGE_APP_LINK == "https://developer.atlassian.com/console/install/x"
    assert app_settings.FORGE_JWKS_URL == "http://127.0.0.1:9/jwks.json"
