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


def test_all_four_checks_are_registered_with_the_app_tag() -> None:
    from django.core.checks import registry

    registered = registry.registry.get_checks()
    for check in (
        checks.check_install_link,
        checks.check_settings,
        checks.check_redirect_targets,
        checks.check_descriptor,
    ):
        assert check in registered
        assert "bitbucket_install" in check.tags
    assert "security" in checks.check_install_link.tags
    # It reverses URL names, so it runs with Django's URL checks too.
    assert "urls" in checks.check_redirect_targets.tags


def test_silent_on_the_test_settings() -> None:
    assert messages() == []
    assert checks.check_install_link() == []
    assert checks.check_settings() == []
    assert checks.check_redirect_targets() == []
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
        pytest.param(
            {f"BITBUCKET_INSTALL_{n}": checks.MAX_DURATION for n in checks.DURATION_SETTINGS},
            id="durations-at-the-cap",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_SUCCESS_URL": "/welcome/",
                "BITBUCKET_INSTALL_FAILURE_URL": "https://www.example.com/sorry",
            },
            id="redirect-targets-paths-and-urls",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_SUCCESS_URL": "bitbucket_install:result",
                "BITBUCKET_INSTALL_FAILURE_URL": "admin:index",
            },
            id="redirect-targets-url-names",
        ),
        pytest.param(
            # What resolve_url passes through unreversed: anything with a "." or "/".
            {
                "BITBUCKET_INSTALL_SUCCESS_URL": "welcome.html",
                "BITBUCKET_INSTALL_FAILURE_URL": "",
            },
            id="redirect-targets-dotted-and-empty",
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
    pytest.param(
        {"BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/bitbucket/call\x1bback/"},
        {"E006"},
        id="E006-control-character",
    ),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://app.example.com/a\x7f.json"},
        {"E004"},
        id="E004-control-character",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "https://bitbucket.org/site/\x9baddons/authorize"},
        {"E001"},
        id="E001-control-character",
    ),
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
    pytest.param(
        {
            "BITBUCKET_INSTALL_BASE_URL": "https://exa\x00mple.com",
            "BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/bitbucket/callback/",
        },
        {"E007"},
        id="E007-nul-in-host",
    ),
    pytest.param(
        # The default redirect URI is built on the base URL, so it carries the NUL too.
        {"BITBUCKET_INSTALL_BASE_URL": "https://exa\x00mple.com"},
        {"E007", "E006"},
        id="E007-nul-in-host-with-default-redirect",
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
        {"BITBUCKET_INSTALL_CONFIRM_WINDOW": 10**18}, {"E011"}, id="E011-CONFIRM-too-large"
    ),
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
    pytest.param({"BITBUCKET_INSTALL_SUCCESS_URL": "welcome"}, {"E016"}, id="E016-success"),
    pytest.param(
        {"BITBUCKET_INSTALL_FAILURE_URL": "bitbucket_install:nowhere"},
        {"E016"},
        id="E016-failure-unknown-name",
    ),
    pytest.param(
        # A URL name that exists but needs arguments cannot be reversed bare either.
        {"BITBUCKET_INSTALL_FAILURE_URL": "admin:app_list"},
        {"E016"},
        id="E016-failure-name-needs-arguments",
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
    expected = {f"E{n:03}" for n in range(1, 17)} | {"W001", "W002", "W003", "W004"}
    assert covered == expected
    assert set(checks.RULE_IDS.values()) <= expected


def test_each_duration_setting_is_checked() -> None:
    for name in checks.DURATION_SETTINGS:
        found = messages(**{f"BITBUCKET_INSTALL_{name}": "soon"})
        assert [str(m.id) for m in found] == ["bitbucket_install.E011"]
        assert f"BITBUCKET_INSTALL_{name}" in found[0].msg
        assert "'soon'" in found[0].msg


def test_each_duration_setting_is_bounded() -> None:
    # One year: a value past it once passed the checks, then overflowed
    # timedelta(seconds=...) in the callback view (a 500).
    assert checks.MAX_DURATION == 31_536_000
    for name in checks.DURATION_SETTINGS:
        setting = f"BITBUCKET_INSTALL_{name}"
        assert messages(**{setting: 0}) == []
        assert messages(**{setting: checks.MAX_DURATION}) == []
        for value in (checks.MAX_DURATION + 1, 10**18, 10**400):
            found = messages(**{setting: value})
            assert [str(m.id) for m in found] == ["bitbucket_install.E011"]
            assert setting in found[0].msg
            assert repr(value) in found[0].msg
            assert found[0].hint == (
                "Give an int from 0 to 31536000, or remove the setting to use the default."
            )


def test_redirect_target_messages_name_the_setting() -> None:
    for name in checks.REDIRECT_SETTINGS:
        setting = f"BITBUCKET_INSTALL_{name}"
        (message,) = messages(**{setting: "no-such-page"})
        assert str(message.id) == "bitbucket_install.E016"
        assert message.msg.startswith(f"{setting} 'no-such-page' ")
        assert "URL pattern" in str(message.hint)
        assert messages(**{setting: "/no-such-page/"}) == []


@pytest.mark.parametrize(
    "control", ["\x00", "\t", "\x1f", "\x7f", "\x85", "\x9f", "\u2028"], ids=ascii
)
def test_base_url_with_control_characters_is_refused(control: str) -> None:
    found = messages(
        BITBUCKET_INSTALL_BASE_URL=f"https://exa{control}mple.com",
        BITBUCKET_INSTALL_REDIRECT_URI="https://example.com/bitbucket/callback/",
    )
    assert [str(m.id) for m in found] == ["bitbucket_install.E007"]
    assert "control characters" in str(found[0].hint)
    # The escaped value is shown, never the raw character.
    assert control not in found[0].msg
    assert repr(f"https://exa{control}mple.com") in found[0].msg
    assert (
        messages(
            BITBUCKET_INSTALL_BASE_URL="https://example.com",
            BITBUCKET_INSTALL_REDIRECT_URI="https://example.com/bitbucket/callback/",
        )
        == []
    )


def test_every_url_setting_hint_mentions_control_characters() -> None:
    for overrides in (
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "https://x\x00/"},
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://x\x00/a.json"},
        {"BITBUCKET_INSTALL_REDIRECT_URI": "https://app.example.com/\x00/"},
        {"BITBUCKET_INSTALL_BASE_URL": "https://x\x00", "BITBUCKET_INSTALL_REDIRECT_URI": UNSET},
    ):
        found = messages(**overrides)
        assert found
        for message in found:
            assert "control characters" in str(message.hint), message


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
def test_call_command_check_reports_an_unreversible_redirect_target() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_FAILURE_URL="oops"),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "bitbucket_install.E016" in str(caught.value)
    assert "BITBUCKET_INSTALL_FAILURE_URL" in str(caught.value)


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_shows_warnings_without_failing() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(BITBUCKET_INSTALL_SIMULATOR=True, DEBUG=True):
        call_command("check", stdout=out, stderr=err)
    assert "bitbucket_install.W003" in out.getvalue() + err.getvalue()
