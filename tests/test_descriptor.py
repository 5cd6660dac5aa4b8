"""The descriptor view: ``atlassian-connect.json`` built from settings (docs/protocol.rst,
"The descriptor")."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings
from django.urls import get_script_prefix, reverse, set_script_prefix

from bitbucket_install.descriptor import build_descriptor

URL = "/bitbucket/atlassian-connect.json"


def get_descriptor(client: Client, **extra: Any) -> dict[str, Any]:
    response = client.get(URL, **extra)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    descriptor: dict[str, Any] = json.loads(response.content)
    return descriptor


@pytest.fixture
def restore_script_prefix() -> Iterator[None]:
    prefix = get_script_prefix()
    yield
    set_script_prefix(prefix)


def test_url_name() -> None:
    assert reverse("bitbucket_install:descriptor") == URL


def test_descriptor_from_the_test_settings(client: Client) -> None:
    assert get_descriptor(client) == {
        "key": "example-app",
        "name": "Example app",
        "description": "An app used by the test suite.",
        "vendor": {"name": "Example Inc.", "url": "https://example.com"},
        "baseUrl": "https://app.example.com",
        "authentication": {"type": "jwt"},
        "lifecycle": {
            "installed": "/bitbucket/installed",
            "uninstalled": "/bitbucket/uninstalled",
        },
        "scopes": ["account"],
        "contexts": ["account"],
        "modules": {},
    }


def test_descriptor_is_indented_json(client: Client) -> None:
    assert client.get(URL).content.startswith(b'{\n  "key": "example-app"')


@override_settings(
    BITBUCKET_INSTALL_DESCRIPTOR={
        "key": "other-key",
        "name": "Other",
        "description": "Does things.",
        "vendor": {"name": "V", "url": "https://v.example"},
        "scopes": ["account", "repository", "pullrequest:write", "webhook"],
        "contexts": ["account"],
        "modules": {
            "webhooks": [{"event": "repo:push", "url": "/hooks/push"}],
            "postInstallRedirect": {"key": "after", "url": "/welcome"},
        },
        "apiMigrations": {"gdpr": True},
        "links": {"homepage": "https://v.example"},
    }
)
def test_configured_descriptor_and_passthrough(client: Client) -> None:
    descriptor = get_descriptor(client)
    assert descriptor["key"] == "other-key"
    assert descriptor["name"] == "Other"
    assert descriptor["description"] == "Does things."
    assert descriptor["vendor"] == {"name": "V", "url": "https://v.example"}
    assert descriptor["scopes"] == ["account", "repository", "pullrequest:write", "webhook"]
    assert descriptor["contexts"] == ["account"]
    assert descriptor["modules"] == {
        "webhooks": [{"event": "repo:push", "url": "/hooks/push"}],
        "postInstallRedirect": {"key": "after", "url": "/welcome"},
    }
    # Keys the app does not build are passed through as configured.
    assert descriptor["apiMigrations"] == {"gdpr": True}
    assert descriptor["links"] == {"homepage": "https://v.example"}
    # What the app builds itself cannot be replaced by the setting.
    assert descriptor["authentication"] == {"type": "jwt"}
    assert descriptor["baseUrl"] == "https://app.example.com"


@override_settings(BITBUCKET_INSTALL_DESCRIPTOR={})
def test_defaults_without_a_descriptor_setting(client: Client) -> None:
    descriptor = get_descriptor(client)
    assert descriptor["key"] == "example-app"
    assert descriptor["name"] == "example-app"
    assert descriptor["description"] == ""
    assert "vendor" not in descriptor
    assert descriptor["scopes"] == ["account"]
    assert descriptor["contexts"] == ["account"]
    assert descriptor["modules"] == {}


@override_settings(BITBUCKET_INSTALL_DESCRIPTOR={"vendor": {}})
def test_empty_vendor_is_left_out(client: Client) -> None:
    assert "vendor" not in get_descriptor(client)


def test_built_lists_are_copies() -> None:
    first = build_descriptor()
    first["scopes"].append("repository")
    first["modules"]["x"] = 1
    second = build_descriptor()
    assert second["scopes"] == ["account"]
    assert second["modules"] == {}


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket")
def test_lifecycle_urls_are_relative_to_the_base_url_path(client: Client) -> None:
    descriptor = get_descriptor(client)
    assert descriptor["baseUrl"] == "https://app.example.com/bitbucket"
    assert descriptor["lifecycle"] == {"installed": "/installed", "uninstalled": "/uninstalled"}


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket/")
def test_base_url_with_trailing_slash(client: Client) -> None:
    assert get_descriptor(client)["lifecycle"]["installed"] == "/installed"


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/elsewhere")
def test_lifecycle_urls_outside_the_base_path_stay_absolute_paths(client: Client) -> None:
    assert get_descriptor(client)["lifecycle"]["installed"] == "/bitbucket/installed"


def wsgi_get(path: str, script_name: str) -> tuple[str, dict[str, str], bytes]:
    """GET through Django's real WSGI handler, mounted under ``script_name`` as a WSGI
    server does it (the test client does not set the script prefix)."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
    }
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.extend([status, dict(headers)])

    # As the test client does: keep the test's database connection out of the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = WSGIHandler()(environ, start_response)
        body = b"".join(response)
        response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return started[0], started[1], body


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix")
def test_lifecycle_urls_under_a_script_prefix(restore_script_prefix: None) -> None:
    status, headers, body = wsgi_get("/bitbucket/atlassian-connect.json", "/prefix")
    assert status == "200 OK"
    assert headers["Access-Control-Allow-Origin"] == "*"
    descriptor = json.loads(body)
    assert descriptor["baseUrl"] == "https://app.example.com/prefix"
    assert descriptor["lifecycle"] == {
        "installed": "/bitbucket/installed",
        "uninstalled": "/bitbucket/uninstalled",
    }


def test_script_prefix_outside_the_base_path(restore_script_prefix: None) -> None:
    # The base URL has no path: the lifecycle URLs keep the script prefix.
    status, _, body = wsgi_get("/bitbucket/atlassian-connect.json", "/prefix")
    assert status == "200 OK"
    assert json.loads(body)["lifecycle"] == {
        "installed": "/prefix/bitbucket/installed",
        "uninstalled": "/prefix/bitbucket/uninstalled",
    }


@override_settings(
    FORCE_SCRIPT_NAME="/forced", BITBUCKET_INSTALL_BASE_URL="https://app.example.com/forced"
)
def test_lifecycle_urls_under_force_script_name(restore_script_prefix: None) -> None:
    status, _, body = wsgi_get("/bitbucket/atlassian-connect.json", "")
    assert status == "200 OK"
    assert json.loads(body)["lifecycle"] == {
        "installed": "/bitbucket/installed",
        "uninstalled": "/bitbucket/uninstalled",
    }


def test_head_is_allowed(client: Client) -> None:
    response = client.head(URL)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_other_methods_not_allowed(client: Client, method: str) -> None:
    response = getattr(client, method)(URL)
    assert response.status_code == 405
    assert "GET" in response["Allow"]


@override_settings(
    BITBUCKET_INSTALL_DESCRIPTOR={
        "description": "x",
        "baseUrl": "https://elsewhere.example",
        "authentication": {"type": "none"},
        "lifecycle": {"installed": "/hijacked"},
    }
)
def test_app_owned_keys_of_the_setting_are_ignored(client: Client) -> None:
    """baseUrl, authentication and lifecycle come from the app (check W004 says so)."""
    descriptor = get_descriptor(client)
    assert descriptor["baseUrl"] == "https://app.example.com"
    assert descriptor["authentication"] == {"type": "jwt"}
    assert descriptor["lifecycle"] == {
        "installed": "/bitbucket/installed",
        "uninstalled": "/bitbucket/uninstalled",
    }


# --- modules.webhooks from BITBUCKET_INSTALL_WEBHOOKS --------------------------------------

WEBHOOK_URL = "/bitbucket/webhook"


@override_settings(BITBUCKET_INSTALL_WEBHOOKS=["repo:push", "pullrequest:created"])
def test_webhooks_become_modules_pointing_at_the_webhook_view(client: Client) -> None:
    descriptor = get_descriptor(client)
    assert descriptor["modules"] == {
        "webhooks": [
            {"event": "repo:push", "url": WEBHOOK_URL},
            {"event": "pullrequest:created", "url": WEBHOOK_URL},
        ]
    }
    assert reverse("bitbucket_install:webhook") == WEBHOOK_URL


@override_settings(BITBUCKET_INSTALL_WEBHOOKS=("*",))
def test_every_event(client: Client) -> None:
    assert get_descriptor(client)["modules"] == {"webhooks": [{"event": "*", "url": WEBHOOK_URL}]}


@pytest.mark.parametrize("value", [[], (), None, "repo:push", {"repo:push": True}, 7])
def test_no_webhooks_leave_the_modules_alone(client: Client, value: object) -> None:
    """Empty (the default) or of the wrong type (check E024 says so): no webhook module."""
    with override_settings(BITBUCKET_INSTALL_WEBHOOKS=value):
        assert get_descriptor(client)["modules"] == {}


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push", "Repo:Push", 3, "repo:push", "*", "issue:created"]
)
def test_only_well_shaped_keys_each_once(client: Client) -> None:
    """What check E024 reports is left out; the rest keeps the setting's order."""
    assert [entry["event"] for entry in get_descriptor(client)["modules"]["webhooks"]] == [
        "repo:push",
        "*",
        "issue:created",
    ]


PROJECT_MODULES = {
    "webhooks": [
        {"event": "repo:push", "url": "/hooks/push"},
        {"event": "pullrequest:created", "url": WEBHOOK_URL},
    ],
    "postInstallRedirect": {"key": "after", "url": "/welcome"},
}


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push", "pullrequest:created"],
    BITBUCKET_INSTALL_DESCRIPTOR={"name": "App", "modules": PROJECT_MODULES},
)
def test_the_projects_modules_are_kept_and_come_first(client: Client) -> None:
    descriptor = get_descriptor(client)
    assert descriptor["modules"] == {
        "webhooks": [
            {"event": "repo:push", "url": "/hooks/push"},
            {"event": "pullrequest:created", "url": WEBHOOK_URL},  # already there: once
            {"event": "repo:push", "url": WEBHOOK_URL},
        ],
        "postInstallRedirect": {"key": "after", "url": "/welcome"},
    }
    # The setting itself is never changed.
    assert PROJECT_MODULES["webhooks"] == [
        {"event": "repo:push", "url": "/hooks/push"},
        {"event": "pullrequest:created", "url": WEBHOOK_URL},
    ]
    assert get_descriptor(client) == descriptor


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
    BITBUCKET_INSTALL_DESCRIPTOR={
        "name": "App",
        "modules": {"webhooks": ({"event": "issue:created", "url": "/hooks/issue"},)},
    },
)
def test_the_projects_webhooks_as_a_tuple(client: Client) -> None:
    assert get_descriptor(client)["modules"]["webhooks"] == [
        {"event": "issue:created", "url": "/hooks/issue"},
        {"event": "repo:push", "url": WEBHOOK_URL},
    ]


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
    BITBUCKET_INSTALL_DESCRIPTOR={"name": "App", "modules": {"webhooks": {"event": "x"}}},
)
def test_the_projects_webhooks_of_another_type_are_left_as_they_are(client: Client) -> None:
    """Not rewritten (check E024 reports that the setting's cannot be added)."""
    assert get_descriptor(client)["modules"] == {"webhooks": {"event": "x"}}


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
    BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket",
)
def test_webhook_url_is_relative_to_the_base_url_path(client: Client) -> None:
    assert get_descriptor(client)["modules"]["webhooks"] == [
        {"event": "repo:push", "url": "/webhook"}
    ]


@override_settings(
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
    BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix",
)
def test_webhook_url_under_a_script_prefix(restore_script_prefix: None) -> None:
    status, _, body = wsgi_get("/bitbucket/atlassian-connect.json", "/prefix")
    assert status == "200 OK"
    assert json.loads(body)["modules"]["webhooks"] == [
        {"event": "repo:push", "url": "/bitbucket/webhook"}
    ]


LANDING_QUERY = "?user_uuid={user_uuid}&user_username={user_username}&user_type={user_type}"


@override_settings(BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=True)
def test_post_install_redirect_points_at_the_landing(client: Client) -> None:
    assert get_descriptor(client)["modules"] == {
        "postInstallRedirect": {
            "key": "bitbucket-install-landing",
            "url": "/bitbucket/landing/" + LANDING_QUERY,
        }
    }


@pytest.mark.parametrize("value", [False, None, "true", 1])
def test_post_install_redirect_only_when_true(client: Client, value: object) -> None:
    with override_settings(BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=value):
        assert "postInstallRedirect" not in get_descriptor(client)["modules"]


@override_settings(
    BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=True,
    BITBUCKET_INSTALL_WEBHOOKS=["repo:push"],
    BITBUCKET_INSTALL_DESCRIPTOR={
        "name": "Example app",
        "modules": {
            "postInstallRedirect": {"key": "own", "url": "/welcome?team={user_username}"},
            "webPanels": [{"key": "panel"}],
        },
    },
)
def test_the_projects_post_install_redirect_is_never_overwritten(client: Client) -> None:
    assert get_descriptor(client)["modules"] == {
        "postInstallRedirect": {"key": "own", "url": "/welcome?team={user_username}"},
        "webPanels": [{"key": "panel"}],
        "webhooks": [{"event": "repo:push", "url": "/bitbucket/webhook"}],
    }


@override_settings(
    BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=True,
    BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket",
)
def test_post_install_redirect_is_relative_to_the_base_url_path(client: Client) -> None:
    url = get_descriptor(client)["modules"]["postInstallRedirect"]["url"]
    assert url == "/landing/" + LANDING_QUERY


@override_settings(
    BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=True,
    BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix",
)
def test_post_install_redirect_under_a_script_prefix(restore_script_prefix: None) -> None:
    status, _, body = wsgi_get("/bitbucket/atlassian-connect.json", "/prefix")
    assert status == "200 OK"
    redirect = json.loads(body)["modules"]["postInstallRedirect"]
    assert redirect["url"] == "/bitbucket/landing/" + LANDING_QUERY
