"""Linking a Forge installation to the Connect installation of its workspace: by the
workspace UUID (braces and case aside) and by a clientKey from the Forge side; a conflict,
or a Connect installation nothing vouched for, is refused and logged, never guessed."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from bitbucket_install.forge import linking
from bitbucket_install.models import ForgeInstallation, Installation, bare_uuid

pytestmark = pytest.mark.django_db

WORKSPACE = "7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b"
OTHER_WORKSPACE = "0c1d2e3f-4444-4a5b-8c6d-7e8f9a0b1c2d"


def connect(
    client_key: str, workspace: str = "{" + WORKSPACE + "}", **fields: Any
) -> Installation:
    values: dict[str, Any] = {
        "shared_secret": "s" * 32,
        "principal_uuid": workspace,
        "confirmed_at": timezone.now(),
        **fields,
    }
    installation: Installation = Installation.objects.create(client_key=client_key, **values)
    return installation


def forge(workspace_id: str = WORKSPACE, **fields: Any) -> ForgeInstallation:
    installation: ForgeInstallation = ForgeInstallation.objects.create(
        installation_id="ari:cloud:ecosystem::installation/"
        + str(ForgeInstallation.objects.count()),
        app_id="ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c",
        workspace_id=workspace_id,
        **fields,
    )
    return installation


def stored_link(forge_installation: ForgeInstallation) -> int | None:
    link: int | None = ForgeInstallation.objects.get(
        pk=forge_installation.pk
    ).connect_installation_id
    return link


def test_bare_uuid() -> None:
    assert bare_uuid("{7B2F4F10-2222-4B8E-8A0C-3C5D6E7F8A9B}") == WORKSPACE
    assert bare_uuid(" " + WORKSPACE + " ") == WORKSPACE
    assert bare_uuid(WORKSPACE) == WORKSPACE


@pytest.mark.parametrize(
    "spelling",
    ["{" + WORKSPACE + "}", WORKSPACE, "{" + WORKSPACE.upper() + "}", WORKSPACE.upper()],
    ids=["braces", "bare", "upper-braces", "upper"],
)
def test_linked_by_the_workspace_whatever_its_spelling(spelling: str) -> None:
    connected = connect("connection:1", spelling)
    forge_installation = forge()

    assert linking.link(forge_installation) == connected
    assert stored_link(forge_installation) == connected.pk
    assert forge_installation.connect_installation == connected
    assert forge_installation.linked_at is not None
    # Idempotent: the same link again changes nothing.
    linked_at = forge_installation.linked_at
    assert linking.link(forge_installation) == connected
    assert ForgeInstallation.objects.get(pk=forge_installation.pk).linked_at == linked_at


def test_linked_by_a_client_key_from_the_forge_side() -> None:
    connected = connect("connection:1")
    forge_installation = forge()
    assert linking.link(forge_installation, "connection:1") == connected
    assert stored_link(forge_installation) == connected.pk


def test_a_client_key_alone_links_when_the_workspace_is_unknown() -> None:
    connected = connect("connection:1")
    forge_installation = forge(workspace_id="")
    assert linking.link(forge_installation, "connection:1") == connected


def test_nothing_to_link_yet() -> None:
    connect("connection:1", "{" + OTHER_WORKSPACE + "}")
    forge_installation = forge()
    assert linking.link(forge_installation) is None
    assert stored_link(forge_installation) is None
    assert linking.link(forge(workspace_id="")) is None


def test_an_installed_one_before_an_uninstalled_one() -> None:
    connect("connection:old", uninstalled_at=timezone.now())
    current = connect("connection:new")
    assert linking.link(forge()) == current


def test_an_uninstalled_one_alone_is_linked() -> None:
    """Its data is still to move, with the secret that was kept."""
    old = connect("connection:old", uninstalled_at=timezone.now())
    assert linking.link(forge()) == old


def refused(
    caplog: pytest.LogCaptureFixture,
    forge_installation: ForgeInstallation,
    client_key: str | None,
    reason: str,
) -> None:
    before = list(ForgeInstallation.objects.values())
    assert linking.link(forge_installation, client_key) is None
    assert list(ForgeInstallation.objects.values()) == before
    assert f"Forge installation not linked: reason={reason} " in caplog.text


def test_a_client_key_of_another_installation_than_the_workspaces_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect("connection:1")
    connect("connection:2", "{" + OTHER_WORKSPACE + "}")
    refused(caplog, forge(), "connection:2", "client_key_of_another_workspace")


def test_workspace_and_client_key_that_disagree_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect("connection:1")
    # Same workspace in its spelling, a second row: the two pieces of evidence disagree.
    connect("connection:2", WORKSPACE, uninstalled_at=timezone.now())
    refused(caplog, forge(), "connection:2", "workspace_and_client_key_disagree")


def test_an_unknown_client_key_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    connect("connection:1")
    refused(caplog, forge(), "connection:404", "client_key_unknown")


def test_several_installed_connect_installations_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect("connection:1")
    connect("connection:2", WORKSPACE)
    refused(caplog, forge(), None, "several_connect_installations")


def test_a_connect_installation_nothing_vouched_for_is_not_linked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect("connection:1", confirmed_at=None)
    refused(caplog, forge(), None, "connect_installation_not_confirmed")
    # Bitbucket's word is enough.
    Installation.objects.update(verified_at=timezone.now())
    assert linking.link(forge()) is not None


def test_a_linked_forge_installation_is_never_moved(caplog: pytest.LogCaptureFixture) -> None:
    first = connect("connection:1", uninstalled_at=timezone.now())
    forge_installation = forge()
    assert linking.link(forge_installation) == first
    connect("connection:2")  # installed now: the workspace would name it
    refused(caplog, forge_installation, None, "linked_to_another_connect_installation")
    assert stored_link(forge_installation) == first.pk
