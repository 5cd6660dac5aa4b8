"""``forgeAppId`` and ``forgeAppLink`` in the descriptor, from
``BITBUCKET_INSTALL_FORGE_APP_ID`` and ``_LINK`` (docs/migrating-to-forge.rst)."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client, override_settings

from bitbucket_install.descriptor import build_descriptor

URL = "/bitbucket/atlassian-connect.json"
FORGE_APP_ID = "ari:cloud:ecosystem::app/406d303d-7e2c-4c0b-9f4a-2a7f3c2d1e0b"
FORGE_APP_LINK = (
    "https://developer.atlassian.com/console/install/406d303d?signature=1234&product=bitbucket"
)
DESCRIPTOR = {
    "name": "Example app",
    "description": "An app used by the test suite.",
    "vendor": {"name": "Example Inc.", "url": "https://example.com"},
}


def served(client: Client) -> dict[str, Any]:
    response = client.get(URL)
    assert response.status_code == 200
    descriptor: dict[str, Any] = json.loads(response.content)
    return descriptor


def test_without_the_settings_the_descriptor_names_no_forge_app(client: Client) -> None:
    descriptor = served(client)
    assert "forgeAppId" not in descriptor
    assert "forgeAppLink" not in descriptor


@override_settings(
    BITBUCKET_INSTALL_FORGE_APP_ID=FORGE_APP_ID, BITBUCKET_INSTALL_FORGE_APP_LINK=FORGE_APP_LINK
)
def test_the_settings_become_the_forge_keys(client: Client) -> None:
    descriptor = served(client)
    assert descriptor["forgeAppId"] == FORGE_APP_ID
    assert descriptor["forgeAppLink"] == FORGE_APP_LINK
    # Nothing else of the descriptor moves.
    with override_settings(
        BITBUCKET_INSTALL_FORGE_APP_ID=None, BITBUCKET_INSTALL_FORGE_APP_LINK=None
    ):
        without = build_descriptor()
    assert {k: v for k, v in descriptor.items() if not k.startswith("forge")} == without


@override_settings(BITBUCKET_INSTALL_FORGE_APP_ID=FORGE_APP_ID)
def test_each_setting_alone(client: Client) -> None:
    descriptor = served(client)
    assert descriptor["forgeAppId"] == FORGE_APP_ID
    assert "forgeAppLink" not in descriptor
    with override_settings(
        BITBUCKET_INSTALL_FORGE_APP_ID=None, BITBUCKET_INSTALL_FORGE_APP_LINK=FORGE_APP_LINK
    ):
        descriptor = served(client)
    assert "forgeAppId" not in descriptor
    assert descriptor["forgeAppLink"] == FORGE_APP_LINK


@override_settings(BITBUCKET_INSTALL_FORGE_APP_ID="", BITBUCKET_INSTALL_FORGE_APP_LINK="")
def test_empty_settings_are_unset(client: Client) -> None:
    descriptor = served(client)
    assert "forgeAppId" not in descriptor
    assert "forgeAppLink" not in descriptor


@override_settings(
    BITBUCKET_INSTALL_FORGE_APP_ID=FORGE_APP_ID,
    BITBUCKET_INSTALL_FORGE_APP_LINK=FORGE_APP_LINK,
    BITBUCKET_INSTALL_DESCRIPTOR={
        **DESCRIPTOR,
        "forgeAppId": "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000",
    },
)
def test_the_projects_own_key_is_never_rewritten(client: Client) -> None:
    descriptor = served(client)
    assert descriptor["forgeAppId"] == (
        "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"
    )
    # The other key, which the project did not write, still comes from its setting.
    assert descriptor["forgeAppLink"] == FORGE_APP_LINK
