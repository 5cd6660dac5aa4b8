"""System checks: every id fires on the configuration it is about, none on a good one."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import ERROR, WARNING, CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from bitbucket_install import checks, task_framework
from bitbucket_install.conf import DURATIONS, WEBHOOK_MAX_BYTES_BOUNDS

UNSET = object()  # a setting removed for the test
GOOD_DESCRIPTOR = {
    "name": "Example app",
    "description": "An app used by the test suite.",
    "vendor": {"name": "Example Inc.", "url": "https://example.com"},
}
WITHOUT_APP_URLS = "tests.urls_without_app"
STRONG_SECRET = "s" * 32
TASKS_ON = {"BITBUCKET_INSTALL_WEBHOOK_TASKS": True}
CONFIRM_ON = {"BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET": True}
DUMMY_BACKEND = f"{task_framework.framework().__name__}.backends.dummy.DummyBackend"
IMMEDIATE_BACKEND = f"{task_framework.framework().__name__}.backends.immediate.ImmediateBackend"
FORGE_APP_ID = "ari:cloud:ecosystem::app/406d303d-7e2c-4c0b-9f4a-2a7f3c2d1e0b"
FORGE_APP_LINK = (
    "https://developer.atlassian.com/console/install/406d303d?signature=1234&product=bitbucket"
)
FORGE_SET = {
    "BITBUCKET_INSTALL_FORGE_APP_ID": FORGE_APP_ID,
    "BITBUCKET_INSTALL_FORGE_APP_LINK": FORGE_APP_LINK,
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


def test_all_six_checks_are_registered_with_the_app_tag() -> None:
    from django.core.checks import registry

    registered = registry.registry.get_checks()
    for check in (
        checks.check_app_urls,
        checks.check_install_link,
        checks.check_settings,
        checks.check_redirect_targets,
        checks.check_descriptor,
        checks.check_forge,
    ):
        assert check in registered
        assert "bitbucket_install" in check.tags
    assert "security" in checks.check_install_link.tags
    assert "security" in checks.check_forge.tags
    # They reverse URL names, so they run with Django's URL checks too.
    assert "urls" in checks.check_redirect_targets.tags
    assert "urls" in checks.check_app_urls.tags


def test_silent_on_the_test_settings() -> None:
    assert messages() == []
    assert checks.check_app_urls() == []
    assert checks.check_install_link() == []
    assert checks.check_settings() == []
    assert checks.check_redirect_targets() == []
    assert checks.check_descriptor() == []
    assert checks.check_forge() == []
    assert checks.check_forge_settings() == []


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
                "BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS": False,
                "BITBUCKET_INSTALL_SHARED_SECRET": STRONG_SECRET,
                "BITBUCKET_INSTALL_BITBUCKET_ORIGINS": [
                    "https://bitbucket.org",
                    "HTTPS://API.Bitbucket.org:443",
                ],
            },
            id="every-setting-explicit",
        ),
        pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": None}, id="shared-secret-none"),
        pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": UNSET}, id="shared-secret-unset"),
        pytest.param(
            {"BITBUCKET_INSTALL_SHARED_SECRET": " " + STRONG_SECRET + " "},
            id="shared-secret-32-with-blanks-around",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_BITBUCKET_ORIGINS": (
                    "https://bitbucket.org",
                    "http://[::1]:8000",
                )
            },
            id="origins-tuple",
        ),
        pytest.param(
            {"BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS": True, "DEBUG": True},
            id="trust-unsigned-returns-in-development",
        ),
        pytest.param(
            # With DEBUG on, test doubles and the simulator may serve the authorize page.
            {"BITBUCKET_INSTALL_AUTHORIZE_URL": "http://127.0.0.1:8000/authorize", "DEBUG": True},
            id="authorize-url-off-bitbucket-in-development",
        ),
        pytest.param(
            {
                **UNREGISTERED,
                "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://APP.example.com:8443/d.json",
            },
            id="descriptor-on-the-base-host-another-port",
        ),
        pytest.param(
            {"BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "contexts": ("account",)}},
            id="contexts-tuple",
        ),
        pytest.param(
            {f"BITBUCKET_INSTALL_{n}": largest for n, (_, largest, _) in DURATIONS.items()},
            id="durations-at-the-cap",
        ),
        pytest.param(
            {f"BITBUCKET_INSTALL_{n}": smallest for n, (smallest, _, _) in DURATIONS.items()},
            id="durations-at-the-floor",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_SUCCESS_URL": "/welcome/",
                "BITBUCKET_INSTALL_FAILURE_URL": "https://APP.example.com:8443/sorry",
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
            {
                "BITBUCKET_INSTALL_WEBHOOKS": ["repo:push", "pullrequest:comment_created"],
                "BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": 256 * 1024,
                "BITBUCKET_INSTALL_DESCRIPTOR": {
                    **GOOD_DESCRIPTOR,
                    "modules": {"webhooks": [{"event": "repo:fork", "url": "/hooks"}]},
                },
            },
            id="webhooks",
        ),
        pytest.param({"BITBUCKET_INSTALL_WEBHOOKS": ("*",)}, id="webhooks-every-event"),
        pytest.param(
            {
                "BITBUCKET_INSTALL_FORGE_JWKS_URL": "https://keys.example/jwks.json",
                "BITBUCKET_INSTALL_FORGE_IC_LABELS": ["orange", "eu_1-x"],
            },
            id="forge-https-jwks-and-labels",
        ),
        pytest.param(
            {
                "BITBUCKET_INSTALL_FORGE_JWKS_URL": "http://127.0.0.1:8000/jwks.json",
                "BITBUCKET_INSTALL_FORGE_IC_LABELS": (),
            },
            id="forge-loopback-jwks-no-labels",
        ),
        pytest.param({"BITBUCKET_INSTALL_FORGE_JWKS_URL": ""}, id="forge-jwks-empty-is-default"),
        pytest.param({"BITBUCKET_INSTALL_FORGE_JWKS_URL": None}, id="forge-jwks-none-is-default"),
        pytest.param(
            # No webhooks asked for: the project's own module is its business.
            {
                "BITBUCKET_INSTALL_WEBHOOKS": [],
                "BITBUCKET_INSTALL_DESCRIPTOR": {
                    **GOOD_DESCRIPTOR,
                    "modules": {"webhooks": {"event": "repo:push", "url": "/hooks"}},
                },
            },
            id="webhooks-none-asked-for",
        ),
        pytest.param(
            {"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": WEBHOOK_MAX_BYTES_BOUNDS[0]},
            id="webhook-max-bytes-smallest",
        ),
        pytest.param(
            {"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": WEBHOOK_MAX_BYTES_BOUNDS[1]},
            id="webhook-max-bytes-largest",
        ),
        pytest.param(
            # What resolve_url passes through unreversed: anything with a "." or "/".
            {
                "BITBUCKET_INSTALL_SUCCESS_URL": "welcome.html",
                "BITBUCKET_INSTALL_FAILURE_URL": "",
            },
            id="redirect-targets-dotted-and-empty",
        ),
        pytest.param(TASKS_ON, id="webhook-tasks-on-the-default-backend"),
        pytest.param(
            {
                **TASKS_ON,
                "TASKS": {"worker": {"BACKEND": DUMMY_BACKEND, "QUEUES": ["bitbucket"]}},
                "BITBUCKET_INSTALL_TASK_BACKEND": "worker",
                "BITBUCKET_INSTALL_TASK_QUEUE": "bitbucket",
            },
            id="webhook-tasks-on-a-named-backend-and-queue",
        ),
        pytest.param(
            {**TASKS_ON, "TASKS": {"default": {"BACKEND": DUMMY_BACKEND, "QUEUES": []}}},
            id="webhook-tasks-on-a-backend-taking-any-queue",
        ),
        pytest.param(
            {"TASKS": {}, "BITBUCKET_INSTALL_TASK_BACKEND": None},
            id="task-settings-unused-while-webhook-tasks-are-off",
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
        {
            **UNREGISTERED,
            "BITBUCKET_INSTALL_DESCRIPTOR_URI": "http://localhost:8000/a.json",
            "BITBUCKET_INSTALL_BASE_URL": "http://localhost:8000",
        },
        {"W001", "W002"},
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
    pytest.param(
        # Both reported in one run (E002 used to wait until the base URL was set).
        {"BITBUCKET_INSTALL_BASE_URL": UNSET, "BITBUCKET_INSTALL_ADDON_KEY": UNSET},
        {"E007", "E002", "E012"},
        id="E007-unset-and-E002-neither",
    ),
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
        # The default redirect URI (":///bitbucket/callback/") is not reported: only its cause.
        {"BITBUCKET_INSTALL_BASE_URL": "app.example.com"},
        {"E007"},
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
        # The default redirect URI is built on the base URL: only the base URL is named.
        {"BITBUCKET_INSTALL_BASE_URL": "https://exa\x00mple.com"},
        {"E007"},
        id="E007-nul-in-host-with-default-redirect",
    ),
    pytest.param({"BITBUCKET_INSTALL_BASE_URL": "http://app.example.com"}, {"E008"}, id="E008"),
    pytest.param(
        {"BITBUCKET_INSTALL_BASE_URL": "http://app.example.com", "ROOT_URLCONF": WITHOUT_APP_URLS},
        {"E008", "E022"},
        id="E008-without-a-redirect-uri",
    ),
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
    pytest.param({"BITBUCKET_INSTALL_JWT_LEEWAY": 301}, {"E011"}, id="E011-JWT_LEEWAY-301"),
    pytest.param({"BITBUCKET_INSTALL_JWT_LEEWAY": 31_536_000}, {"E011"}, id="E011-LEEWAY-year"),
    pytest.param({"BITBUCKET_INSTALL_JWT_MAX_AGE": 0}, {"E011"}, id="E011-JWT_MAX_AGE-0"),
    pytest.param({"BITBUCKET_INSTALL_JWT_MAX_AGE": 3601}, {"E011"}, id="E011-MAX_AGE-3601"),
    pytest.param({"BITBUCKET_INSTALL_CONFIRM_WINDOW": 0}, {"E011"}, id="E011-CONFIRM-0"),
    pytest.param({"BITBUCKET_INSTALL_FLOW_MAX_AGE": 86401}, {"E011"}, id="E011-FLOW-86401"),
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
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": "x"}, {"E017"}, id="E017-one-character"),
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": " "}, {"E017"}, id="E017-blank"),
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": ""}, {"E017"}, id="E017-empty"),
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": "s" * 31}, {"E017"}, id="E017-31"),
    pytest.param(
        {"BITBUCKET_INSTALL_SHARED_SECRET": "  " + "s" * 31 + "\t\n"},
        {"E017"},
        id="E017-31-with-blanks-around",
    ),
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": 10**40}, {"E017"}, id="E017-int"),
    pytest.param({"BITBUCKET_INSTALL_SHARED_SECRET": b"s" * 40}, {"E017"}, id="E017-bytes"),
    pytest.param(
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "https://bitbucket.example.test/authorize"},
        {"E018"},
        id="E018-another-host",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_AUTHORIZE_URL": "http://bitbucket.org/site/addons/authorize"},
        {"E018"},
        id="E018-plain-http",
    ),
    pytest.param(
        # Debug off: the simulator is off, so its page is no Bitbucket origin.
        {
            "BITBUCKET_INSTALL_AUTHORIZE_URL": "https://app.example.com/bitbucket/simulator/authorize/"
        },
        {"E018"},
        id="E018-simulator-page-in-production",
    ),
    pytest.param(
        # The default authorize URL is refused when the origins leave Bitbucket out.
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.example.test"]},
        {"E018"},
        id="E018-origins-without-bitbucket",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": "https://bitbucket.org"},
        {"E019", "E018"},
        id="E019-a-string",
    ),
    pytest.param({"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": []}, {"E019", "E018"}, id="E019-empty"),
    pytest.param({"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": None}, {"E019", "E018"}, id="E019-None"),
    pytest.param(
        {
            "BITBUCKET_INSTALL_BITBUCKET_ORIGINS": [
                "https://bitbucket.org",
                "https://api.bitbucket.org/",
            ]
        },
        {"E019"},
        id="E019-trailing-slash",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.org/site/addons"]},
        {"E019"},
        id="E019-path",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.org?x=1"]},
        {"E019"},
        id="E019-query",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.org", "bitbucket.org"]},
        {"E019"},
        id="E019-no-scheme",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.org", "ftp://bitbucket.org"]},
        {"E019"},
        id="E019-ftp",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_BITBUCKET_ORIGINS": ["https://bitbucket.org", 443]},
        {"E019"},
        id="E019-not-a-string",
    ),
    pytest.param(
        {**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://cdn.example.net/d.json"},
        {"E020"},
        id="E020-another-host",
    ),
    pytest.param(
        {
            **UNREGISTERED,
            "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://app.example.com.evil.test/d.json",
        },
        {"E020"},
        id="E020-host-with-the-base-host-as-prefix",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_SUCCESS_URL": "https://evil.test/welcome/"},
        {"E021"},
        id="E021-success-another-host",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FAILURE_URL": "//evil.test/sorry"}, {"E021"}, id="E021-scheme-relative"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FAILURE_URL": "/\\evil.test/sorry"},
        {"E021"},
        id="E021-backslash-read-as-slash",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_SUCCESS_URL": "javascript:alert(document.cookie)"},
        {"E021"},
        id="E021-javascript",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_SUCCESS_URL": "https://app.example.com.evil.test/"},
        {"E021"},
        id="E021-host-with-the-base-host-as-prefix",
    ),
    pytest.param({"ROOT_URLCONF": WITHOUT_APP_URLS}, {"E022"}, id="E022"),
    pytest.param(
        # The app's own URL names cannot be reversed either: E022 says why, not E016.
        {
            "ROOT_URLCONF": WITHOUT_APP_URLS,
            "BITBUCKET_INSTALL_SUCCESS_URL": "bitbucket_install:result",
            "BITBUCKET_INSTALL_FAILURE_URL": "admin:index",
        },
        {"E022"},
        id="E022-skips-the-app-url-names",
    ),
    pytest.param(
        {"ROOT_URLCONF": WITHOUT_APP_URLS, "BITBUCKET_INSTALL_FAILURE_URL": "nowhere"},
        {"E022", "E016"},
        id="E022-with-another-missing-name",
    ),
    pytest.param(
        {"ROOT_URLCONF": WITHOUT_APP_URLS, "BITBUCKET_INSTALL_SIMULATOR": True, "DEBUG": True},
        {"E022", "W003"},
        id="E022-with-the-simulator-on",
    ),
    pytest.param({"BITBUCKET_INSTALL_API_TIMEOUT": 0}, {"E023"}, id="E023-client-timeout"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOKS": "repo:push"}, {"E024"}, id="E024-a-string"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOKS": None}, {"E024"}, id="E024-None"),
    pytest.param(
        {"BITBUCKET_INSTALL_WEBHOOKS": ["repo:push", "Repo:Push"]}, {"E024"}, id="E024-shape"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_WEBHOOKS": ["repo:push", {"event": "repo:fork"}]},
        {"E024"},
        id="E024-not-a-string",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_WEBHOOKS": ["repo:push", "repo:push"]}, {"E024"}, id="E024-twice"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_WEBHOOKS": ["*", "repo:push"]}, {"E024"}, id="E024-star-and-more"
    ),
    pytest.param(
        {
            "BITBUCKET_INSTALL_WEBHOOKS": ["repo:push"],
            "BITBUCKET_INSTALL_DESCRIPTOR": {
                **GOOD_DESCRIPTOR,
                "modules": {"webhooks": {"event": "repo:push", "url": "/hooks"}},
            },
        },
        {"E024"},
        id="E024-the-descriptors-webhooks-not-a-list",
    ),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": 100}, {"E025"}, id="E025-too-small"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": 10**9}, {"E025"}, id="E025-too-large"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": "1MB"}, {"E025"}, id="E025-string"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES": True}, {"E025"}, id="E025-bool"),
    pytest.param({**TASKS_ON, "TASKS": {}}, {"E026"}, id="E026-no-backend"),
    pytest.param(
        {**TASKS_ON, "BITBUCKET_INSTALL_TASK_BACKEND": "worker"}, {"E026"}, id="E026-alias"
    ),
    pytest.param(
        {**TASKS_ON, "TASKS": {"default": {"BACKEND": "no.such.Backend"}}},
        {"E026"},
        id="E026-backend-not-importable",
    ),
    pytest.param(
        {**TASKS_ON, "TASKS": {"default": {"BACKEND": DUMMY_BACKEND, "QUEUES": ["other"]}}},
        {"E026"},
        id="E026-queue",
    ),
    pytest.param({**TASKS_ON, "BITBUCKET_INSTALL_TASK_QUEUE": 5}, {"E026"}, id="E026-int"),
    pytest.param({**TASKS_ON, "BITBUCKET_INSTALL_TASK_BACKEND": ""}, {"E026"}, id="E026-empty"),
    pytest.param(
        {**CONFIRM_ON, "TASKS": {"default": {"BACKEND": DUMMY_BACKEND}}},
        set(),
        id="confirm-with-a-deferring-backend",
    ),
    pytest.param(
        {**CONFIRM_ON, "TASKS": {"default": {"BACKEND": IMMEDIATE_BACKEND}}},
        {"W009"},
        id="W009-immediate-backend",
    ),
    pytest.param({**CONFIRM_ON, "TASKS": {}}, {"W009"}, id="W009-no-backend"),
    pytest.param(
        {**CONFIRM_ON, "TASKS": {"default": {"BACKEND": "no.such.Backend"}}},
        {"W009"},
        id="W009-backend-not-importable",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET": "yes"}, {"W006"}, id="W006-confirm-string"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_POST_INSTALL_REDIRECT": 1}, {"W006"}, id="W006-post-install-int"
    ),
    pytest.param({"BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS": True}, {"W005"}, id="W005"),
    pytest.param({"BITBUCKET_INSTALL_SIMULATOR": "False"}, {"W006"}, id="W006-string-False"),
    pytest.param(
        {"BITBUCKET_INSTALL_SIMULATOR": "True", "DEBUG": True}, {"W006"}, id="W006-string-True"
    ),
    pytest.param({"BITBUCKET_INSTALL_SIMULATOR": 1}, {"W006"}, id="W006-int"),
    pytest.param({"BITBUCKET_INSTALL_SIMULATOR": None}, {"W006"}, id="W006-None"),
    pytest.param({"BITBUCKET_INSTALL_WEBHOOK_TASKS": "on"}, {"W006"}, id="W006-webhook-tasks"),
    pytest.param(
        {"BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS": "yes"},
        {"W006"},
        id="W006-trust-unsigned-returns-string",
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
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_JWKS_URL": "http://keys.example/jwks.json"},
        {"E028"},
        id="E028-http",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_JWKS_URL": "file:///etc/jwks.json"}, {"E028"}, id="E028-file"
    ),
    pytest.param({"BITBUCKET_INSTALL_FORGE_JWKS_URL": 5}, {"E028"}, id="E028-not-a-string"),
    pytest.param({"BITBUCKET_INSTALL_FORGE_IC_LABELS": "orange"}, {"E029"}, id="E029-string"),
    pytest.param({"BITBUCKET_INSTALL_FORGE_IC_LABELS": None}, {"E029"}, id="E029-None"),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_IC_LABELS": ["orange", "../x", "Orange", "a" * 51, 7]},
        {"E029"},
        id="E029-entries",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_APP_ID": "406d303d-7e2c-4c0b-9f4a-2a7f3c2d1e0b"},
        {"E030"},
        id="E030-bare-uuid",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_APP_ID": FORGE_APP_ID.upper()}, {"E030"}, id="E030-upper"
    ),
    pytest.param({"BITBUCKET_INSTALL_FORGE_APP_ID": 406}, {"E030"}, id="E030-not-text"),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_APP_ID": FORGE_APP_ID + "/x"}, {"E030"}, id="E030-suffix"
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_APP_LINK": "http://developer.atlassian.com/console/install/x"},
        {"E031"},
        id="E031-http",
    ),
    pytest.param(
        {"BITBUCKET_INSTALL_FORGE_APP_LINK": "developer.atlassian.com/console/install/x"},
        {"E031"},
        id="E031-relative",
    ),
    pytest.param({"BITBUCKET_INSTALL_FORGE_APP_LINK": ["https://x"]}, {"E031"}, id="E031-list"),
    pytest.param(
        {
            **FORGE_SET,
            "BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "forgeAppId": FORGE_APP_ID},
        },
        {"W013"},
        id="W013-forge-app-id-in-descriptor",
    ),
    pytest.param(
        {
            **FORGE_SET,
            "BITBUCKET_INSTALL_DESCRIPTOR": {**GOOD_DESCRIPTOR, "forgeAppLink": FORGE_APP_LINK},
        },
        {"W013"},
        id="W013-forge-app-link-in-descriptor",
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
    for case in CASES + REPLAY_CACHE_CASES:
        covered |= case.values[1]
    # W008 is a deployment check: test_deploy_check_recommends_confirming_with_bitbucket.
    # E027 needs httpx gone: test_confirming_without_the_client_extra_is_an_error.
    # W012 is a deployment check: test_deploy_check_recommends_a_forge_app.
    covered |= {"W008", "E027", "W012"}
    # W010 and W011 were never given out.
    expected = (
        {f"E{n:03}" for n in range(1, 32)} | {f"W{n:03}" for n in range(1, 10)} | {"W012", "W013"}
    )
    assert covered == expected
    assert set(checks.RULE_IDS.values()) <= expected


def test_every_install_link_rule_has_an_id() -> None:
    # Each rule of authorize.py (its Problem(...) calls) maps to a stable id.
    import inspect
    import re

    from bitbucket_install import authorize

    source = inspect.getsource(authorize)
    rules = set(re.findall(r'Problem\(\s*"(\w+)"', source))
    for rule in re.findall(r'_check_https\(\w+, "(\w+)"', source):
        rules |= {rule, rule + "_loopback_http"}
    assert len(rules) == 14
    assert rules == set(checks.RULE_IDS)
    assert len(set(checks.RULE_IDS.values())) == len(checks.RULE_IDS)


def test_each_duration_setting_is_checked() -> None:
    for name, (_, _, default) in DURATIONS.items():
        found = messages(**{f"BITBUCKET_INSTALL_{name}": "soon"})
        assert [str(m.id) for m in found] == ["bitbucket_install.E011"]
        assert f"BITBUCKET_INSTALL_{name}" in found[0].msg
        assert "'soon'" in found[0].msg
        assert found[0].msg.endswith(f"; the default, {default}, is used.")


@pytest.mark.parametrize(("name", "bounds"), DURATIONS.items())
def test_each_duration_setting_is_bounded_to_what_the_protocol_needs(
    name: str, bounds: tuple[int, int, int]
) -> None:
    smallest, largest, default = bounds
    setting = f"BITBUCKET_INSTALL_{name}"
    assert messages(**{setting: smallest}) == []
    assert messages(**{setting: largest}) == []
    hint = (
        f"Give an int from {smallest} to {largest}, or remove the setting to use the default "
        f"({default}). More would only weaken verification: the protocol needs no longer."
    )
    for value, shown, read_as in (
        (largest + 1, repr(largest + 1), largest),
        (10**18, repr(10**18), largest),
        (10**400, "a number of more than 19 digits", largest),
        (smallest - 1, repr(smallest - 1), smallest),
        (-(10**5000), "a number of more than 19 digits", smallest),
    ):
        found = messages(**{setting: value})
        assert [str(m.id) for m in found] == ["bitbucket_install.E011"]
        assert found[0].msg == (
            f"{setting} must be a whole number of seconds from {smallest} to {largest}, "
            f"not {shown}; it is read as {read_as}."
        )
        assert found[0].hint == hint


def test_duration_bounds_in_the_messages() -> None:
    # The protocol's own limits: 5 minutes of clock skew, an hour for a token or a
    # confirmation, a day for a flow.
    (leeway,) = messages(BITBUCKET_INSTALL_JWT_LEEWAY=31_536_000)
    assert "from 0 to 300, not 31536000; it is read as 300." in leeway.msg
    (flow,) = messages(BITBUCKET_INSTALL_FLOW_MAX_AGE=0)
    assert "from 1 to 86400, not 0; it is read as 1." in flow.msg


def test_weak_shared_secret_message_never_shows_the_secret() -> None:
    secret = "hunter2-but-longer"
    (message,) = messages(BITBUCKET_INSTALL_SHARED_SECRET=secret)
    assert str(message.id) == "bitbucket_install.E017"
    assert message.msg.startswith(
        "BITBUCKET_INSTALL_SHARED_SECRET has 18 characters (without surrounding blanks), "
        "too weak to use; it is ignored."
    )
    assert "at least 32 characters" in str(message.hint)
    assert secret not in message.msg + str(message.hint)
    (message,) = messages(BITBUCKET_INSTALL_SHARED_SECRET=12345)
    assert message.msg.startswith("BITBUCKET_INSTALL_SHARED_SECRET is not a string (int), ")
    assert "12345" not in message.msg + str(message.hint)


def test_origins_message_names_the_bad_entries() -> None:
    (message, *_) = messages(
        BITBUCKET_INSTALL_BITBUCKET_ORIGINS=["https://bitbucket.org", "https://x.test/", 5]
    )
    assert message.msg == (
        "BITBUCKET_INSTALL_BITBUCKET_ORIGINS has entries that are not origins: "
        "['https://x.test/', 5]."
    )
    assert "scheme" not in message.msg
    assert "without a path (not even '/')" in str(message.hint)
    (message,) = [
        m
        for m in messages(BITBUCKET_INSTALL_BITBUCKET_ORIGINS="https://bitbucket.org")
        if str(m.id) == "bitbucket_install.E019"
    ]
    assert message.msg == (
        "BITBUCKET_INSTALL_BITBUCKET_ORIGINS is 'https://bitbucket.org', not a list or tuple."
    )
    (message,) = [
        m
        for m in messages(BITBUCKET_INSTALL_BITBUCKET_ORIGINS=())
        if str(m.id) == "bitbucket_install.E019"
    ]
    assert message.msg == "BITBUCKET_INSTALL_BITBUCKET_ORIGINS is empty."


def test_authorize_url_off_bitbucket_message_names_the_origins() -> None:
    (message,) = messages(BITBUCKET_INSTALL_AUTHORIZE_URL="https://evil.test/authorize")
    assert str(message.id) == "bitbucket_install.E018"
    assert "'https://evil.test/authorize'" in message.msg
    assert "(https://api.bitbucket.org, https://bitbucket.org)" in message.msg
    assert "DEBUG is off" in message.msg
    assert (
        messages(BITBUCKET_INSTALL_AUTHORIZE_URL="https://evil.test/authorize", DEBUG=True) == []
    )


def test_off_site_descriptor_message() -> None:
    (message,) = messages(
        **{**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://cdn.test/d.json"}
    )
    assert str(message.id) == "bitbucket_install.E020"
    assert "'https://cdn.test/d.json'" in message.msg
    assert "('app.example.com')" in message.msg
    assert message.msg.endswith(
        "Bitbucket would install the app that descriptor describes, and send its lifecycle "
        "callbacks and secrets to that site."
    )
    assert message.hint == (
        "Serve atlassian-connect.json from this site (the app's descriptor view) and point "
        "BITBUCKET_INSTALL_DESCRIPTOR_URI at it, on the host of BITBUCKET_INSTALL_BASE_URL."
    )
    # A bad base URL is reported alone: no host to compare with.
    found = messages(
        **{
            **UNREGISTERED,
            "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://cdn.test/d.json",
            "BITBUCKET_INSTALL_BASE_URL": "app.example.com",
        }
    )
    assert [str(m.id) for m in found] == ["bitbucket_install.E007"]


def test_off_site_redirect_target_messages() -> None:
    for name in checks.REDIRECT_SETTINGS:
        setting = f"BITBUCKET_INSTALL_{name}"
        (message,) = messages(**{setting: "https://evil.test/x"})
        assert str(message.id) == "bitbucket_install.E021"
        assert message.msg == (
            f"{setting} 'https://evil.test/x' is not on this site: its host is not the base "
            "URL's ('app.example.com')."
        )
        assert messages(**{setting: "https://app.example.com/x"}) == []
        assert messages(**{setting: "welcome.html"}) == []
    # Without a valid base URL there is no site to compare with; E007 names the cause.
    found = messages(
        BITBUCKET_INSTALL_BASE_URL="app.example.com",
        BITBUCKET_INSTALL_SUCCESS_URL="https://evil.test/",
    )
    assert [str(m.id) for m in found] == ["bitbucket_install.E007"]


def test_a_half_done_configuration_is_reported_in_one_run() -> None:
    found = messages(
        BITBUCKET_INSTALL_BASE_URL=UNSET,
        BITBUCKET_INSTALL_ADDON_KEY=UNSET,
        BITBUCKET_INSTALL_SHARED_SECRET="short",
        BITBUCKET_INSTALL_JWT_LEEWAY=3600,
        BITBUCKET_INSTALL_BITBUCKET_ORIGINS=["https://bitbucket.org/"],
        BITBUCKET_INSTALL_SIMULATOR="off",
        BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS=True,
        BITBUCKET_INSTALL_FAILURE_URL="https://evil.test/",
    )
    assert sorted(str(m.id).split(".")[1] for m in found) == [
        "E002",
        "E007",
        "E011",
        "E012",
        "E017",
        "E019",
        "W005",
        "W006",
    ]
    assert all(m.hint for m in found)


def test_a_base_url_without_a_scheme_is_reported_once() -> None:
    found = messages(BITBUCKET_INSTALL_BASE_URL="app.example.com")
    assert [str(m.id) for m in found] == ["bitbucket_install.E007"]
    assert found[0].msg == "The base URL 'app.example.com' is not an absolute URL."
    assert not any(":///" in m.msg for m in found)
    # A redirect URI the project set is still checked on its own.
    found = messages(
        BITBUCKET_INSTALL_BASE_URL="app.example.com", BITBUCKET_INSTALL_REDIRECT_URI="/callback/"
    )
    assert [str(m.id) for m in found] == ["bitbucket_install.E007", "bitbucket_install.E006"]


def test_default_redirect_outside_the_base_path_says_it_is_the_default() -> None:
    (message,) = messages(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/app")
    assert str(message.id) == "bitbucket_install.E010"
    assert message.msg.endswith(" It is the default redirect URI: the app's callback URL.")
    assert "Include the app's URLs under the base URL's path" in str(message.hint)
    (message,) = messages(BITBUCKET_INSTALL_REDIRECT_URI="https://evil.test/cb/")
    assert "default" not in message.msg
    assert str(message.hint).startswith("Bitbucket answers invalid_request")


def test_missing_app_urls_message_shows_the_include_line() -> None:
    (message,) = messages(ROOT_URLCONF=WITHOUT_APP_URLS)
    assert str(message.id) == "bitbucket_install.E022"
    assert message.msg == (
        "The URLconf 'tests.urls_without_app' does not include the app's URLs "
        "(bitbucket_install:start, bitbucket_install:callback, bitbucket_install:result, "
        "bitbucket_install:descriptor, bitbucket_install:installed, "
        "bitbucket_install:uninstalled, bitbucket_install:webhook, bitbucket_install:landing, "
        "bitbucket_install:forge_lifecycle cannot be reversed)."
    )
    assert 'path("bitbucket/", include("bitbucket_install.urls"))' in str(message.hint)


def test_app_url_names_are_the_app_urls() -> None:
    from bitbucket_install import urls

    names = {pattern.name for pattern in urls.urlpatterns}
    # The simulator's pages (authorize, console, its API and grant) are only needed with the
    # simulator on (AUTHORIZE_URL falls back); the flow's callback takes an argument and
    # comes with the plain one.
    simulator = {
        "simulator",
        "simulator_console",
        "simulator_api",
        "simulator_grant",
        "simulator_forge",
        "simulator_forge_jwks",
    }
    assert set(checks.APP_URL_NAMES) == names - simulator - {"callback_flow"}


def webhook_messages(value: object) -> list[str]:
    return [str(message.msg) for message in messages(BITBUCKET_INSTALL_WEBHOOKS=value)]


def test_webhooks_messages_name_each_problem() -> None:
    assert webhook_messages("repo:push") == [
        "BITBUCKET_INSTALL_WEBHOOKS is 'repo:push', not a list or tuple; it is ignored."
    ]
    assert webhook_messages(["*", "Repo:Push", 3, "repo:push", "repo:push", "*"]) == [
        "BITBUCKET_INSTALL_WEBHOOKS has entries that are not event keys: ['Repo:Push', 3]; "
        "they are left out.",
        "BITBUCKET_INSTALL_WEBHOOKS lists ['*', 'repo:push'] more than once; each is "
        "subscribed once.",
        'BITBUCKET_INSTALL_WEBHOOKS lists "*" with other keys, which "*" already covers '
        "(Bitbucket does not say whether it would deliver those events twice).",
    ]
    (message,) = messages(BITBUCKET_INSTALL_WEBHOOKS=["repo push"])
    assert str(message.id) == "bitbucket_install.E024"
    assert message.hint is not None
    assert '["repo:push", "pullrequest:created"]' in message.hint
    assert "at most 64 characters" in message.hint


def test_webhooks_of_the_descriptor_that_are_no_list_are_named() -> None:
    (message,) = messages(
        BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
        BITBUCKET_INSTALL_DESCRIPTOR={**GOOD_DESCRIPTOR, "modules": {"webhooks": "x"}},
    )
    assert str(message.id) == "bitbucket_install.E024"
    assert "['modules']['webhooks'] is not a list" in message.msg
    assert "not added to the descriptor" in message.msg


def test_webhook_max_bytes_messages_say_what_is_used() -> None:
    smallest, largest, default = WEBHOOK_MAX_BYTES_BOUNDS
    (small,) = messages(BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES=10)
    assert small.msg == (
        f"BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES must be a whole number of bytes from {smallest} "
        f"to {largest}, not 10; it is read as {smallest}."
    )
    (wrong,) = messages(BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES="1MB")
    assert wrong.msg.endswith(f"not '1MB'; the default, {default}, is used.")
    assert wrong.hint is not None
    assert "256 KB" in wrong.hint


def test_webhook_tasks_messages_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    (no_alias,) = messages(**TASKS_ON, BITBUCKET_INSTALL_TASK_BACKEND="worker")
    assert no_alias.msg == (
        "BITBUCKET_INSTALL_WEBHOOK_TASKS is on, but BITBUCKET_INSTALL_TASK_BACKEND 'worker' "
        "is not an alias of the TASKS setting (it has ['default']): every webhook delivery "
        "would be refused (503) until that is fixed."
    )
    (not_loaded,) = messages(**TASKS_ON, TASKS={"default": {"BACKEND": "no.such.Backend"}})
    assert "The TASKS backend 'default' cannot be loaded" in not_loaded.msg
    (queue,) = messages(
        **TASKS_ON, TASKS={"default": {"BACKEND": DUMMY_BACKEND, "QUEUES": ["a", "b"]}}
    )
    assert "BITBUCKET_INSTALL_TASK_QUEUE 'default' is not a queue" in queue.msg
    assert "(its QUEUES are ['a', 'b'])" in queue.msg
    (wrong,) = messages(**TASKS_ON, BITBUCKET_INSTALL_TASK_QUEUE=5)
    assert wrong.msg == (
        "BITBUCKET_INSTALL_TASK_QUEUE is 5, not a non-empty string; the default, 'default', "
        "is used."
    )

    monkeypatch.setattr(task_framework, "FRAMEWORKS", ("django.no_such_tasks",))
    (missing,) = messages(**TASKS_ON)
    assert str(missing.id) == "bitbucket_install.E026"
    assert missing.level == ERROR
    assert missing.msg.startswith(
        "BITBUCKET_INSTALL_WEBHOOK_TASKS is on, but no tasks framework can be imported"
    )
    assert "django-bitbucket-install[tasks]" in str(missing.hint)
    assert "BITBUCKET_INSTALL_WEBHOOK_TASKS = False" in str(missing.hint)
    assert messages() == []  # tasks off: no framework needed


@pytest.mark.django_db
def test_call_command_check_refuses_webhook_tasks_without_their_backend() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_WEBHOOK_TASKS=True, TASKS={}),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "bitbucket_install.E026" in str(caught.value)


def test_flag_warning_says_it_is_off() -> None:
    (message,) = messages(BITBUCKET_INSTALL_SIMULATOR="False", DEBUG=True)
    assert message.msg == (
        "BITBUCKET_INSTALL_SIMULATOR is 'False', neither True nor False; it is treated as "
        "False (off)."
    )
    assert "env.bool()" in str(message.hint)


def test_trust_unsigned_returns_warning_names_the_risk() -> None:
    (message,) = messages(BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS=True)
    assert str(message.id) == "bitbucket_install.W005"
    assert "without a JWT connects the installation" in message.msg
    assert "DEBUG is off" in message.msg
    assert messages(BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS="True") != []  # W006, not W005
    assert {str(m.id) for m in messages(BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS="True")} == {
        "bitbucket_install.W006"
    }


def test_long_values_are_cut_in_messages() -> None:
    (message,) = messages(BITBUCKET_INSTALL_SUCCESS_URL="nowhere" * 1000)
    assert str(message.id) == "bitbucket_install.E016"
    assert len(message.msg) < 200
    assert "..." in message.msg


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
    # With an explicit redirect URI, still "not set", never "None is not an absolute URL".
    found = messages(
        BITBUCKET_INSTALL_BASE_URL=UNSET,
        BITBUCKET_INSTALL_REDIRECT_URI="https://app.example.com/bitbucket/callback/",
    )
    assert [m.msg for m in found] == ["BITBUCKET_INSTALL_BASE_URL is not set."]


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


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_names_missing_app_urls_instead_of_crashing() -> None:
    with (
        override_settings(ROOT_URLCONF=WITHOUT_APP_URLS),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(caught.value)
    assert "bitbucket_install.E022" in text
    assert 'HINT: Add path("bitbucket/", include("bitbucket_install.urls"))' in text


@pytest.mark.django_db
def test_call_command_migrate_names_missing_app_urls_instead_of_crashing() -> None:
    # migrate runs the checks first; it used to end in a raw NoReverseMatch traceback.
    with (
        override_settings(ROOT_URLCONF=WITHOUT_APP_URLS),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("migrate", skip_checks=False, verbosity=0, stdout=StringIO())
    assert "bitbucket_install.E022" in str(caught.value)


@pytest.mark.django_db
def test_call_command_check_reports_a_half_done_configuration_at_once() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_BASE_URL=None, BITBUCKET_INSTALL_ADDON_KEY=None),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(caught.value)
    for check_id in ("E002", "E007", "E012"):
        assert f"bitbucket_install.{check_id}" in text


@pytest.mark.django_db
def test_call_command_check_refuses_a_weak_shared_secret_without_showing_it() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_SHARED_SECRET="tiny-secret"),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(caught.value)
    assert "bitbucket_install.E017" in text
    assert "tiny-secret" not in text


@pytest.mark.django_db
def test_call_command_check_refuses_off_site_urls_in_production() -> None:
    with (
        override_settings(
            BITBUCKET_INSTALL_AUTHORIZE_URL="https://evil.test/authorize",
            BITBUCKET_INSTALL_SUCCESS_URL="https://evil.test/welcome",
            BITBUCKET_INSTALL_BITBUCKET_ORIGINS=["https://bitbucket.org/"],
        ),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(caught.value)
    for check_id in ("E018", "E019", "E021"):
        assert f"bitbucket_install.{check_id}" in text


@pytest.mark.django_db
def test_call_command_check_refuses_an_off_site_descriptor() -> None:
    with (
        override_settings(
            **{**UNREGISTERED, "BITBUCKET_INSTALL_DESCRIPTOR_URI": "https://cdn.test/d.json"}
        ),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "bitbucket_install.E020" in str(caught.value)


@pytest.mark.django_db
def test_call_command_check_refuses_an_out_of_bounds_duration() -> None:
    with (
        override_settings(BITBUCKET_INSTALL_JWT_LEEWAY=31_536_000),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "bitbucket_install.E011" in str(caught.value)
    assert "from 0 to 300" in str(caught.value)


@pytest.mark.django_db
def test_call_command_check_refuses_bad_webhook_settings() -> None:
    with (
        override_settings(
            BITBUCKET_INSTALL_WEBHOOKS=["repo:push", "repo:push"],
            BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES=0,
        ),
        pytest.raises(SystemCheckError) as caught,
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "bitbucket_install.E024" in str(caught.value)
    assert "bitbucket_install.E025" in str(caught.value)


@pytest.mark.django_db
def test_call_command_check_warns_about_flags_without_failing() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(
        BITBUCKET_INSTALL_SIMULATOR="False", BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS=True
    ):
        call_command("check", stdout=out, stderr=err)
    text = out.getvalue() + err.getvalue()
    assert "bitbucket_install.W005" in text
    assert "bitbucket_install.W006" in text


# W007: the replay cache of single-use views (connect_jwt_required(single_use=True)).
SINGLE_USE_URLS = "tests.decorators.views"  # the app's URLs and single-use views
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x:1"}
SHARED_CACHES: dict[str, dict[str, str]] = {
    "redis": REDIS,
    "db": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"},
    "memcached": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "x",
    },
    # Django says so when the cache is used; the check has nothing to add.
    "not-importable": {"BACKEND": "no.such.Backend"},
}
REPLAY_CACHE_CASES: list[Any] = [
    pytest.param({"ROOT_URLCONF": SINGLE_USE_URLS}, {"W007"}, id="W007-default-locmem"),
    pytest.param(
        {"ROOT_URLCONF": SINGLE_USE_URLS, "CACHES": {"default": {"BACKEND": LOCMEM}}},
        {"W007"},
        id="W007-locmem",
    ),
    pytest.param(
        {
            "ROOT_URLCONF": SINGLE_USE_URLS,
            "CACHES": {"default": {"BACKEND": "tests.test_checks.ProjectLocMemCache"}},
        },
        {"W007"},
        id="W007-locmem-subclass",
    ),
    pytest.param(
        {
            "ROOT_URLCONF": SINGLE_USE_URLS,
            "CACHES": {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
        },
        {"W007"},
        id="W007-dummy",
    ),
    pytest.param(
        {
            "CACHES": {
                "default": REDIS,
                "replay": {
                    "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                    "LOCATION": "never-used",
                },
            },
            "BITBUCKET_INSTALL_REPLAY_CACHE": "replay",
        },
        {"W007"},
        id="W007-filebased-named-by-the-setting",
    ),
    pytest.param(
        {"CACHES": {"default": REDIS}, "BITBUCKET_INSTALL_REPLAY_CACHE": "replay"},
        {"W007"},
        id="W007-alias-missing",
    ),
    pytest.param(
        {
            "ROOT_URLCONF": SINGLE_USE_URLS,
            "CACHES": {"other": REDIS},
            "DEBUG": True,
        },
        {"W007"},
        id="W007-alias-missing-with-debug",
    ),
]


class ProjectLocMemCache(LocMemCache):
    """A project's own backend built on LocMemCache: still one process's memory."""


@pytest.mark.parametrize(("overrides", "expected"), REPLAY_CACHE_CASES)
def test_replay_cache_check_fires(overrides: dict[str, Any], expected: set[str]) -> None:
    test_check_fires(overrides, expected)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="no-single-use-view-and-no-setting"),
        pytest.param({"CACHES": {"other": REDIS}}, id="no-single-use-view-and-no-default-cache"),
        pytest.param({"ROOT_URLCONF": SINGLE_USE_URLS, "DEBUG": True}, id="locmem-with-debug"),
        *(
            pytest.param({"ROOT_URLCONF": SINGLE_USE_URLS, "CACHES": {"default": cache}}, id=name)
            for name, cache in SHARED_CACHES.items()
        ),
        pytest.param(
            {
                "CACHES": {"default": {"BACKEND": LOCMEM}, "replay": REDIS},
                "BITBUCKET_INSTALL_REPLAY_CACHE": "replay",
                "ROOT_URLCONF": SINGLE_USE_URLS,
            },
            id="named-shared-cache",
        ),
    ],
)
def test_replay_cache_check_silent(overrides: dict[str, Any]) -> None:
    assert messages(**overrides) == []


def test_replay_cache_check_is_registered() -> None:
    from django.core.checks import registry

    assert checks.check_replay_cache in registry.registry.get_checks()
    assert {"bitbucket_install", "caches", "urls"} <= set(checks.check_replay_cache.tags)


def test_replay_cache_messages() -> None:
    [missing] = messages(
        CACHES={"default": REDIS, "sessions": REDIS}, BITBUCKET_INSTALL_REPLAY_CACHE="replay"
    )
    assert missing.msg == (
        "The replay cache 'replay' (BITBUCKET_INSTALL_REPLAY_CACHE) is not an alias of the "
        "CACHES setting (it has ['default', 'sessions']): every request to a "
        "connect_jwt_required(single_use=True) view is refused (503)."
    )
    assert missing.hint == (
        "Add that cache to CACHES, one that every process of the site shares (e.g. "
        "django.core.cache.backends.redis.RedisCache), or set BITBUCKET_INSTALL_REPLAY_CACHE "
        "to one of its aliases."
    )
    expected = {
        LOCMEM: "is LocMemCache, which keeps its entries inside one process: a token that a "
        "connect_jwt_required(single_use=True) view accepted is accepted again by another "
        "process.",
        "django.core.cache.backends.dummy.DummyCache": "is DummyCache, which keeps nothing at "
        "all: a token that a connect_jwt_required(single_use=True) view accepted is accepted "
        "again by every request.",
        "django.core.cache.backends.filebased.FileBasedCache": "is FileBasedCache, which "
        "shares its entries only between the processes of one machine: a token that a "
        "connect_jwt_required(single_use=True) view accepted is accepted again by another "
        "machine.",
    }
    for backend, text in expected.items():
        [message] = messages(
            ROOT_URLCONF=SINGLE_USE_URLS,
            CACHES={"default": {"BACKEND": backend, "LOCATION": "never-used"}},
        )
        assert message.msg == f"The replay cache 'default' (BITBUCKET_INSTALL_REPLAY_CACHE) {text}"
        assert message.hint == (
            "Point BITBUCKET_INSTALL_REPLAY_CACHE at a cache that every process and machine "
            "of the site shares: RedisCache, PyMemcacheCache or DatabaseCache. (With DEBUG "
            "on, one process is fine: this is not reported.)"
        )


def test_replay_cache_check_finds_single_use_views_wherever_they_are() -> None:
    from django.urls import include, path

    from tests.decorators import views

    def found(patterns: list[Any]) -> bool:
        return checks._serves_single_use_views(patterns)

    assert found([path("a", views.single)])
    assert found([path("a", views.async_single)])
    assert found([path("a", views.SingleUseClassView.as_view())])  # on dispatch
    assert found([path("a", views.AsyncClassView.as_view())])  # on a handler
    assert found([path("x/", include([path("y/", include([path("a", views.single)]))]))])
    assert not found([path("a", views.bare), path("b", views.confirmed)])
    assert not found([path("a", views.BareClassView.as_view())])
    assert not found([path("x/", include([path("a", views.bare)]))])
    assert not found([])


# Django's own model checks ask the database whether it supports JSONField.
@pytest.mark.django_db
def test_call_command_check_shows_the_replay_cache_warning() -> None:
    out, err = StringIO(), StringIO()
    with override_settings(ROOT_URLCONF=SINGLE_USE_URLS):
        call_command("check", stdout=out, stderr=err)
    assert "bitbucket_install.W007" in out.getvalue() + err.getvalue()


def test_deploy_check_recommends_confirming_with_bitbucket() -> None:
    def deploy_messages(**overrides: Any) -> list[CheckMessage]:
        with override_settings(**overrides):
            found: list[CheckMessage] = run_checks(
                include_deployment_checks=True, tags=["bitbucket_install"]
            )
            return found

    (recommended,) = deploy_messages(**FORGE_SET)
    assert str(recommended.id) == "bitbucket_install.W008"
    assert recommended.level == WARNING
    assert "trusted on first use" in recommended.msg
    assert "BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True" in str(recommended.hint)
    assert (
        deploy_messages(**CONFIRM_ON, **FORGE_SET, TASKS={"default": {"BACKEND": DUMMY_BACKEND}})
        == []
    )
    # Not a check of development: a plain ``manage.py check`` does not say it.
    assert messages() == []


def test_deploy_check_recommends_a_forge_app() -> None:
    def deploy_ids(**overrides: Any) -> list[CheckMessage]:
        with override_settings(**CONFIRM_ON, **overrides):
            found: list[CheckMessage] = run_checks(
                include_deployment_checks=True, tags=["bitbucket_install"]
            )
            return found

    with override_settings(TASKS={"default": {"BACKEND": DUMMY_BACKEND}}):
        (reminder,) = deploy_ids()
        assert str(reminder.id) == "bitbucket_install.W012"
        assert reminder.level == WARNING
        assert "31 January 2027" in reminder.msg
        assert "BITBUCKET_INSTALL_FORGE_APP_ID" in reminder.msg
        assert "SILENCED_SYSTEM_CHECKS" in str(reminder.hint)
        assert '"bitbucket_install.W012"' in str(reminder.hint)
        assert "bitbucket_install_push_descriptor" in str(reminder.hint)
        assert deploy_ids(**FORGE_SET) == []
        # A descriptor that names the Forge app itself needs no setting.
        assert (
            deploy_ids(
                BITBUCKET_INSTALL_DESCRIPTOR={**GOOD_DESCRIPTOR, "forgeAppId": FORGE_APP_ID}
            )
            == []
        )
        # The documented way to silence it works.
        with override_settings(SILENCED_SYSTEM_CHECKS=["bitbucket_install.W012"]):
            out, err = StringIO(), StringIO()
            call_command("check", "--deploy", "--tag", "bitbucket_install", stdout=out, stderr=err)
            assert "W012" not in out.getvalue() + err.getvalue()
    # Not a check of development.
    assert messages() == []


def test_forge_settings_are_silent_when_good_or_empty() -> None:
    assert messages(**FORGE_SET) == []
    assert (
        messages(
            BITBUCKET_INSTALL_FORGE_APP_ID="",
            BITBUCKET_INSTALL_FORGE_APP_LINK="",
        )
        == []
    )
    assert (
        messages(BITBUCKET_INSTALL_FORGE_APP_ID=None, BITBUCKET_INSTALL_FORGE_APP_LINK=None) == []
    )
    # A descriptor with the keys and no settings: nothing is ignored, nothing to say.
    assert (
        messages(BITBUCKET_INSTALL_DESCRIPTOR={**GOOD_DESCRIPTOR, "forgeAppId": FORGE_APP_ID})
        == []
    )
    # Not a dict (E015 says so): nothing to compare.
    assert ids(**FORGE_SET, BITBUCKET_INSTALL_DESCRIPTOR=["x"]) == {
        str(m.id) for m in messages(BITBUCKET_INSTALL_DESCRIPTOR=["x"])
    }


def test_confirming_without_the_client_extra_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "httpx", None)
    (missing,) = messages(**CONFIRM_ON)
    assert str(missing.id) == "bitbucket_install.E027"
    assert missing.level == ERROR
    assert "httpx" in missing.msg
    assert missing.hint == "pip install 'django-bitbucket-install[client]'"


def test_follow_up_check_warnings_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    (immediate,) = messages(**CONFIRM_ON, TASKS={"default": {"BACKEND": IMMEDIATE_BACKEND}})
    assert "cannot run a task later" in immediate.msg
    assert "made-up installations are not removed" in immediate.msg
    assert "--never-confirmed-days" in str(immediate.hint)
    (unloadable,) = messages(**CONFIRM_ON, TASKS={"default": {"BACKEND": "no.such.Backend"}})
    assert "the TASKS backend 'default' cannot be used" in unloadable.msg
    monkeypatch.setattr(task_framework, "FRAMEWORKS", ("django.no_such_tasks",))
    (no_framework,) = messages(**CONFIRM_ON)
    assert "no tasks framework can be imported" in no_framework.msg


def test_forge_messages_name_the_problem() -> None:
    (url,) = messages(BITBUCKET_INSTALL_FORGE_JWKS_URL="http://keys.example/jwks.json")
    assert url.msg.startswith(
        "BITBUCKET_INSTALL_FORGE_JWKS_URL 'http://keys.example/jwks.json' is neither an https"
    )
    (entries,) = messages(BITBUCKET_INSTALL_FORGE_IC_LABELS=["orange", "../x"])
    assert entries.msg == (
        "BITBUCKET_INSTALL_FORGE_IC_LABELS has entries that are not labels: ['../x']; they "
        "are left out."
    )
    (shape,) = messages(BITBUCKET_INSTALL_FORGE_IC_LABELS="orange")
    assert shape.msg == (
        "BITBUCKET_INSTALL_FORGE_IC_LABELS is 'orange', not a list or tuple; no label is allowed."
    )
