"""conf.py: every BITBUCKET_INSTALL_* setting, its default, and that overrides apply live."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.urls import get_script_prefix, set_script_prefix
from pytest_django import Settings

from bitbucket_install.conf import DEFAULT_AUTHORIZE_URL, DEFAULT_DESCRIPTOR, app_settings

TEXT_SETTINGS = [
    "ADDON_KEY",
    "DESCRIPTOR_URI",
    "BASE_URL",
    "SHARED_SECRET",
    "SUCCESS_URL",
    "FAILURE_URL",
]
DURATIONS = {"JWT_LEEWAY": 30, "JWT_MAX_AGE": 600, "FLOW_MAX_AGE": 900, "CONFIRM_WINDOW": 120}


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


def test_authorize_url_default_and_override(settings: Settings) -> None:
    _unset(settings, "AUTHORIZE_URL")
    assert app_settings.AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"
    assert DEFAULT_AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = "http://127.0.0.1:8000/simulator/authorize"
    assert app_settings.AUTHORIZE_URL == "http://127.0.0.1:8000/simulator/authorize"
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = ""
    assert app_settings.AUTHORIZE_URL == "https://bitbucket.org/site/addons/authorize"


@pytest.mark.parametrize(("name", "default"), DURATIONS.items())
def test_duration_default(settings: Settings, name: str, default: int) -> None:
    _unset(settings, name)
    assert getattr(app_settings, name) == default


@pytest.mark.parametrize("name", DURATIONS)
def test_duration_override(name: str) -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": 7}):
        assert getattr(app_settings, name) == 7
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": 0}):
        assert getattr(app_settings, name) == 0


@pytest.mark.parametrize(("name", "default"), DURATIONS.items())
@pytest.mark.parametrize("value", ["60", 1.5, True, False, None, [60]])
def test_duration_of_wrong_type_falls_back_to_default(name: str, default: int, value: Any) -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": value}):
        assert getattr(app_settings, name) == default


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


def test_redirect_uri_override_wins(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_REDIRECT_URI = "https://app.example.com/elsewhere/"
    assert app_settings.REDIRECT_URI == "https://app.example.com/elsewhere/"


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
        ("yes", True, True),
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
