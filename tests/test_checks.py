"""System checks: every id fires on the configuration it is about, none on a good one."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import ERROR, WARNING, CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from bitbucket_install import checks

UNSET = object()  # a setting removed for the test
GOOD_DESCRIPTOR = {
    "name": "Example app",
    "description": "An app used by the test suite.",
    "vendor": {"name": "Example Inc.", "url": "https://example.com"},
}
UNREGISTERED = {
    "BITBUCKET_INSTALL_ADDON_KEY": None,
    "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://app.example.com/bitbucket/atlassian-connect.json",
    "BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "key": "example-app"},
}


def messages(**overrides: Any) -> list[CheckMessage]:
    """The app's check messages under ``overrides`` (``UNSET`` removes a setting)."""
    from django.conf import settings

    with override_settings(**{k: v for k, v in overrides.items() if v is not UNSET}):
        removed = [name for name, value in overrides.items() if value is UNSET]
        with override_settings():
            for name in removed:
                if hasattr(settings, name):
                    delattr(settings, name)
            return run_checks(tags=["bitbucket_install"])


def ids(**overrides: Any) -> set[str]:
    return {str(message.id) for message in messages(**overrides)}


def test_all_three_checks_are_registered_with_the_app_tag() -> None:
    from django.core.checks import registry

    registered = registry.registry.get_checks()
    for check in (checks.check_install_link, checks.check_settings, checks.check_descriptor):
        assert check in registered
        assert "bitbucket_install" in check.tags
    assert "security" in checks.check_install_link.tags


def test_silent_on_the_test_settings() -> None:
    assert messages() == []
    assert checks.check_install_link() == []
    assert checks.check_settings() == []
    assert checks.check_descriptor() == []


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(UNREGISTERED, id="unregistered-app"),
        pytest.param(
            {
                "BITBUCKET_INSTALL_BASE_URL": "https://app.example.com/",
                "BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/x/callback?a=1",
            },
            id="explicit-redirect",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_AUTHORIZE_URL": "https://bitbucket.org/site/addons/authorize",
                "BITBUCKET_INSTALL_JWT_LEEWAY": 0,
                "BITBUCKET_INSTALL_JWT_MAX_AGE": 60,
                "BITBUCKET_INSTALL_FLOW_MAX_AGE": 300,
                "BITBUCKET_INSTALL_CONFIRM_WINDOW": 10,
                "BITBUCKET_INSTALL_SIMULATOR": False,
            },
            id="every-setting-explicit",
        ),
        pytest.param(
            {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": ("account",)}},
            id="contexts-tuple",
        ),
    ],
)
def test_silent_on_other_good_configurations(overrides: dict[str, Any]) -> None:
    assert messages(**overrides) == []


CASES: list[Any] = [
    pytest.param(
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "bitbucket.org/authorize"}, {"E001"}, id="E001"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "https://x/a#b"}, {"E001"}, id="E001-fragment"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://app.example.com/atlassian-connect.json"},
        {"E002"},
        id="E002-both",
    ),
    pytest.param({"BITBUCKET_INSTALL_ADDON_KEY": UNSET}, {"E002", "E012"}, id="E002-neither"),
    pytest.param({"BITBUCKET_INSTALL_ADDON_KEY": "my app!"}, {"E003", "E012"}, id="E003"),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "atlassian-connect.json"},
        {"E004"},
        id="E004",
    ),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "http://app.example.com/a.json"},
        {"E005"},
        id="E005",
    ),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "http://localhost:8000/a.json"},
        {"W001"},
        id="W001",
    ),
    pytest.param({"BITBUCKET_INSTALL_REDIRECT_URI": "/bitbucket/callback/"}, {"E006"}, id="E006"),
    pytest.param({"BITBUCKET_INSTALL_BASE_URL": UNSET}, {"E007"}, id="E007-unset"),
    pytest.param({"BITBUCKET_INSTALL_BASE_URL": ""}, {"E007"}, id="E007-empty"),
    pytest.param(
        {
            "BITBUCKET_INSTALL_BASE_URL": "app.example.com",
            "BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/bitbucket/callback/",
        },
        {"E007"},
        id="E007-relative",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BASE_URL": "app.example.com"},
        {"E007", "E006"},
        id="E007-relative-with-default-redirect",
    ),
    pytest.param({"BITBUCKET_INSTALL_BASE_URL": "http://app.example.com"}, {"E008"}, id="E008"),
    pytest.param({"BITBUCKET_INSTALL_BASE_URL": "http://localhost:8000"}, {"W002"}, id="W002"),
    pytest.param(
        {"BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/cb/{user}"},
        {"E009"},
        id="E009",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com.evil.test/cb/"},
        {"E010"},
        id="E010",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BASE_URL": "https://app.example.com/app"},
        {"E010"},
        id="E010-default-redirect-outside-base-path",
    ),
    pytest.param({"BITBUCKET_INSTALL_JWT_LEEWAY": "30"}, {"E011"}, id="E011-JWT_LEEWAY-str"),
    pytest.param({"BITBUCKET_INSTALL_JWT_MAX_AGE": -1}, {"E011"}, id="E011-JWT_MAX_AGE-negative"),
    pytest.param({"BITBUCKET_INSTALL_FLOW_MAX_AGE": True}, {"E011"}, id="E011-FLOW_MAX_AGE-bool"),
    pytest.param({"BITBUCKET_INSTALL_CONFIRM_WINDOW": 1.5}, {"E011"}, id="E011-CONFIRM-float"),
    pytest.param({"BITBUCKET_INSTALL_CONFIRM_WINDOW": None}, {"E011"}, id="E011-CONFIRM-None"),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR": GOOD_DESCRIPTOR}, {"E012"}, id="E012"
    ),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "key": "a b"}},
        {"E012"},
        id="E012-bad-key",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "key": 5}}, {"E012"}, id="E012-int"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {"name": "App"}}, {"E013"}, id="E013-no-description"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "name": ""}}, {"E013"}, id="E013-name"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "description": 5}},
        {"E013"},
        id="E013-description-int",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": ["personal"]}},
        {"E014"},
        id="E014-personal",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": ["account", "x"]}},
        {"E014"},
        id="E014-unknown",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": []}},
        {"E014"},
        id="E014-empty",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": "account"}},
        {"E014"},
        id="E014-string",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": 5}},
        {"E014"},
        id="E014-int",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": [["account"]]}},
        {"E014"},
        id="E014-unhashable",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "modules": []}},
        {"E015"},
        id="E015-modules",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "scopes": "account"}},
        {"E015"},
        id="E015-scopes",
    ),
    pytest.param(
        # Not a dict: read as empty (so the description is missing too), never a crash.
        {"BITBUCKET_INSTALL_DESCRIPTOR": ["name", "description"]},
        {"E013", "E015"},
        id="E015-not-a-dict",
    ),
    pytest.param({"BITBUCKET_INSTALL_SIMULATOR": True, "DEBUG": True}, {"W003"}, id="W003-debug"),
    pytest.param(
        {"BITBUCKET_INSTALL_SIMULATOR": True, "DEBUG": False}, {"W003"}, id="W003-no-debug"
    ),
    pytest.param(
        {
            "BITBUCKET_INSTALL_DESCRIPTOR": {
                **GOOD_DESCRIPTOR,
                "baseUrl": "https://elsewhere.example",
                "lifecycle": {"installed": "/x"},
            }
        },
        {"W004"},
        id="W004-app-owned-keys",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CASES)
def test_check_fires(overrides: dict[str, Any], expected: set[str]) -> None:
    found = messages(**overrides)
    assert {str(m.id) for m in found} == {f"bitbucket_install.{i}" for i in expected}
    for message in found:
        assert message.msg.strip()
        assert message.hint
        assert message.hint.strip()
        assert message.level == (WARNING if str(message.id).split(".")[1][0] == "W" else ERROR)


def test_every_id_has_a_case() -> None:
    covered: set[str] = set()
    for case in CASES:
        covered |= case.values[1]
    expected = {f"E{n:03}" for n in range(1, 16)} | {"W001", "W002", "W003", "W004"}
    assert covered == expected
    assert set(checks.RULE_IDS.values()) <= expected


def test_each_duration_setting_is_checked() -> None:
    for name in checks.DURATION_SETTINGS:
        found = messages(**{f"BITBUCKET_INSTALL_{name}": "soon"})
        assert [str(m.id) for m in found] == ["bitbucket_install.E011"]
        assert f"BITBUCKET_INSTALL_{name}" in found[0].msg
        assert "'soon'" in found[0].msg


def test_simulator_warning_says_whether_it_runs() -> None:
    (with_debug,) = messages(BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=True)
    assert with_debug.msg == "The development simulator is enabled."
    (without_debug,) = messages(BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=False)
    assert without_debug.msg == (
        "The development simulator is enabled, but it only runs with DEBUG on."
    )


def test_messages_name_the_offending_value() -> None:
    (message,) = messages(BITBUCKET_INSTALL_REDIRECT_URI="https://evil.test/cb/")
    assert "'https://evil.test/cb/'" in message.msg
    assert "'https://app.example.com'" in message.msg
    (message,) = messages(BITBUCKET_INSTALL_BASE_URL=UNSET)
    assert message.msg == "BITBUCKET_INSTALL_BASE_URL is not set."


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_passes_on_good_settings() -> None:
    out = StringIO()
    call_command("check", stdout=out)
    assert "System check identified no issues" in out.getvalue()


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_fails_naming_the_id() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_REDIRECT_URI="https://app.example.com.evil.test/cb/"),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(caught.value)
    assert "bitbucket_install.E010" in text
    assert "HINT:" in text


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_shows_warnings_without_failing() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=True):
        call_command("check", stdout=out, stderr=err)
    assert "bitbucket_install.W003" in out.getvalue() + err.getvalue()
