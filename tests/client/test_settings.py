"""The client's settings: defaults, bounds (clamped at run time), and check E023."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from pytest_django.fixtures import Settings

from bitbucket_install.conf import CLIENT_LIMITS, app_settings

DEFAULTS = {"API_TIMEOUT": 10, "API_RETRIES": 3, "API_MAX_RETRY_WAIT": 60}


def e023(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [
            m.msg
            for m in run_checks(tags=["bitbucket_install"])
            if m.id == "bitbucket_install.E023"
        ]


def test_the_bounds() -> None:
    assert CLIENT_LIMITS == {
        "API_TIMEOUT": (1, 300, 10),
        "API_RETRIES": (0, 10, 3),
        "API_MAX_RETRY_WAIT": (0, 3600, 60),
    }


@pytest.mark.parametrize(("name", "default"), DEFAULTS.items())
def test_default(settings: Settings, name: str, default: int) -> None:
    full = f"BITBUCKET_INSTALL_{name}"
    if hasattr(settings, full):
        delattr(settings, full)
    assert getattr(app_settings, name) == default == CLIENT_LIMITS[name][2]


@pytest.mark.parametrize("name", CLIENT_LIMITS)
def test_values_within_the_bounds_are_used_and_others_clamped(name: str) -> None:
    smallest, largest, default = CLIENT_LIMITS[name]
    setting = f"BITBUCKET_INSTALL_{name}"
    for value, read in (
        (smallest, smallest),
        (largest, largest),
        (largest + 1, largest),
        (10**400, largest),
        (smallest - 1, smallest),
        (-(10**400), smallest),
        ("5", default),
        (5.0, default),
        (True, default),
        (None, default),
    ):
        with override_settings(**{setting: value}):
            assert getattr(app_settings, name) == read, value


@pytest.mark.parametrize("name", CLIENT_LIMITS)
def test_e023_reports_what_is_clamped_or_replaced(name: str) -> None:
    smallest, largest, default = CLIENT_LIMITS[name]
    setting = f"BITBUCKET_INSTALL_{name}"
    assert e023(**{setting: smallest}) == []
    assert e023(**{setting: largest}) == []
    assert e023(**{setting: largest + 1}) == [
        f"{setting} must be a whole number from {smallest} to {largest}, not {largest + 1}; "
        f"it is read as {largest}."
    ]
    assert e023(**{setting: "soon"}) == [
        f"{setting} must be a whole number from {smallest} to {largest}, not 'soon'; "
        f"the default, {default}, is used."
    ]


def test_e023_has_a_hint_and_reports_every_setting_at_once() -> None:
    with override_settings(**{f"BITBUCKET_INSTALL_{name}": -5 for name in CLIENT_LIMITS}):
        found = [
            m for m in run_checks(tags=["bitbucket_install"]) if m.id == "bitbucket_install.E023"
        ]
    assert [m.id for m in found] == ["bitbucket_install.E023"] * 3
    assert all(m.hint and "remove the setting" in m.hint for m in found)
