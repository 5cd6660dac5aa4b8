"""Forge installations in the admin: listed, searchable, read-only, never added by hand."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from bitbucket_install.admin import ForgeInstallationAdmin as ForgeAdmin
from bitbucket_install.models import ForgeInstallation, Installation

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:bitbucket_install_forgeinstallation_changelist")


@pytest.fixture
def rows() -> list[ForgeInstallation]:
    connect = Installation.objects.create(client_key="connection:1", principal_name="Acme")
    return [
        ForgeInstallation.objects.create(
            installation_id=f"ari:cloud:ecosystem::installation/{number}",
            app_id="ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c",
            workspace_id=f"7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9{number}",
            environment_type="PRODUCTION",
            connect_installation=connect if number == 1 else None,
        )
        for number in (1, 2)
    ]


def listed(client: Client, query: str = "") -> set[str]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {row.installation_id for row in response.context["cl"].result_list}


def test_listed_and_searchable(admin_client: Client, rows: list[ForgeInstallation]) -> None:
    assert listed(admin_client) == {row.installation_id for row in rows}
    assert listed(admin_client, "?q=ari:cloud:ecosystem::installation/2") == {
        "ari:cloud:ecosystem::installation/2"
    }
    assert listed(admin_client, "?q=7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a91") == {
        "ari:cloud:ecosystem::installation/1"
    }
    assert listed(admin_client, "?q=connection:1") == {"ari:cloud:ecosystem::installation/1"}
    assert listed(admin_client, "?q=nothing") == set()


def test_read_only_and_never_added(admin_client: Client, rows: list[ForgeInstallation]) -> None:
    url = reverse("admin:bitbucket_install_forgeinstallation_change", args=[rows[0].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}
    assert 'name="_save"' not in response.content.decode()
    fields = [name for name in ForgeAdmin.readonly_fields if name != "updated_at"]
    before = list(ForgeInstallation.objects.values(*fields))
    posted = admin_client.post(url, {"workspace_id": "changed", "connect_installation": ""})
    assert posted.status_code == 302
    assert list(ForgeInstallation.objects.values(*fields)) == before
    add = admin_client.get(reverse("admin:bitbucket_install_forgeinstallation_add"))
    assert add.status_code == 403
