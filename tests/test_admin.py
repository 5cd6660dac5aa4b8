"""The Installation admin: list, search, filters, no secret anywhere, no add, the action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:bitbucket_install_installation_changelist")
SECRET_A = "zq-secret-of-acme-8c1f0e"
SECRET_B = "zq-secret-of-globex-77a2d"
SECRET_C = "zq-secret-of-initech-31b9"


@pytest.fixture
def rows(django_user_model: type[User]) -> dict[str, Installation]:
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    long_ago = timezone.now() - timedelta(days=30)
    return {
        "acme": Installation.objects.create(
            client_key="connection:1001",
            shared_secret=SECRET_A,
            principal_name="Acme Team",
            principal_uuid="{aaaa}",
            principal={"display_name": "Acme Team", "uuid": "{aaaa}"},
            product_type="bitbucket",
            user=user,
        ),
        "globex": Installation.objects.create(
            client_key="connection:1002",
            shared_secret=SECRET_B,
            principal_name="Globex",
            principal_uuid="{bbbb}",
            product_type="bitbucket",
        ),
        "initech": Installation.objects.create(
            client_key="connection:2003",
            shared_secret=SECRET_C,
            principal_name="Initech",
            uninstalled_at=long_ago,
        ),
    }


def listed(admin_client: Client, query: str = "") -> set[str]:
    """The client keys the changelist shows for ``query``."""
    response = admin_client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {row.client_key for row in response.context["cl"].result_list}


def test_changelist(admin_client: Client, rows: dict[str, Installation]) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    content = response.content.decode()
    for row in rows.values():
        assert row.client_key in content
    assert "Acme Team" in content
    assert '<td class="field-user nowrap">ada</td>' in content  # the connected user
    assert 'alt="True"' in content  # status icons
    assert 'alt="False"' in content
    for secret in (SECRET_A, SECRET_B, SECRET_C):
        assert secret not in content


def test_search_by_exact_client_key(admin_client: Client, rows: dict[str, Installation]) -> None:
    assert listed(admin_client, "?q=connection:1002") == {"connection:1002"}
    assert listed(admin_client, "?q=CONNECTION:1002") == {"connection:1002"}
    # Exact match only: a prefix of a clientKey finds nothing.
    assert listed(admin_client, "?q=connection:100") == set()
    assert listed(admin_client, "?q=1002") == set()


def test_search_by_principal_name(admin_client: Client, rows: dict[str, Installation]) -> None:
    assert listed(admin_client, "?q=acme") == {"connection:1001"}
    assert listed(admin_client, "?q=Init") == {"connection:2003"}
    assert listed(admin_client, "?q=nobody") == set()


def test_search_by_exact_principal_uuid(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    assert listed(admin_client, "?q={bbbb}") == {"connection:1002"}
    assert listed(admin_client, "?q={bbb") == set()


def test_status_filter(admin_client: Client, rows: dict[str, Installation]) -> None:
    assert listed(admin_client, "?status=installed") == {"connection:1001", "connection:1002"}
    assert listed(admin_client, "?status=uninstalled") == {"connection:2003"}
    assert listed(admin_client) == {"connection:1001", "connection:1002", "connection:2003"}
    response = admin_client.get(CHANGELIST)
    content = response.content.decode()
    assert "?status=installed" in content
    assert "?status=uninstalled" in content


def test_unknown_status_filter_value_shows_everything(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    # The admin answers an unknown filter value with the full list, not an error.
    response = admin_client.get(CHANGELIST + "?status=bogus")
    assert response.status_code == 200
    keys = {row.client_key for row in response.context["cl"].result_list}
    assert keys == {"connection:1001", "connection:1002", "connection:2003"}


def test_change_page_never_shows_the_secret(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    installation = rows["acme"]
    url = reverse("admin:bitbucket_install_installation_change", args=[installation.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    assert SECRET_A not in content
    assert "shared_secret" not in content
    assert "connection:1001" in content
    assert "Acme Team" in content
    form = response.context["adminform"].form
    assert "shared_secret" not in form.fields
    assert "confirmed_flow" not in form.fields
    assert "client_key" not in form.fields  # read-only


def test_saving_the_change_page_keeps_the_secret(
    admin_client: Client, rows: dict[str, Installation], django_user_model: type[User]
) -> None:
    installation = rows["globex"]
    other = django_user_model.objects.create_user("bob")
    url = reverse("admin:bitbucket_install_installation_change", args=[installation.pk])
    response = admin_client.post(url, {"user": str(other.pk), "shared_secret": "hijacked"})
    assert response.status_code == 302
    installation.refresh_from_db()
    assert installation.user == other
    assert installation.shared_secret == SECRET_B
    assert installation.client_key == "connection:1002"


def test_add_permission_denied(admin_client: Client, rows: dict[str, Installation]) -> None:
    before = installation_rows()
    url = reverse("admin:bitbucket_install_installation_add")
    assert admin_client.get(url).status_code == 403
    response = admin_client.post(url, {"client_key": "connection:9", "shared_secret": "x"})
    assert response.status_code == 403
    assert installation_rows() == before
    assert url not in admin_client.get(CHANGELIST).content.decode()


def test_mark_uninstalled_action(
    admin_client: Client, rows: dict[str, Installation], sent_signals: SignalRecorder
) -> None:
    initech_uninstalled_at = rows["initech"].uninstalled_at
    selected = [rows["acme"].pk, rows["initech"].pk]
    response = admin_client.post(
        CHANGELIST,
        {"action": "mark_uninstalled", "_selected_action": [str(pk) for pk in selected]},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert messages == ["1 installation was marked as uninstalled."]
    for row in rows.values():
        row.refresh_from_db()
    assert rows["acme"].uninstalled_at is not None
    assert rows["acme"].shared_secret == SECRET_A  # soft delete keeps the secret
    assert rows["globex"].uninstalled_at is None  # not selected
    assert rows["initech"].uninstalled_at == initech_uninstalled_at  # already uninstalled
    # The admin action is not the verified uninstall callback: no signal.
    assert sent_signals.none_sent


def test_mark_uninstalled_action_plural(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "mark_uninstalled",
            "_selected_action": [str(row.pk) for row in rows.values()],
        },
        follow=True,
    )
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert messages == ["2 installations were marked as uninstalled."]
    assert Installation.objects.installed().count() == 0


def test_admin_needs_staff(client: Client, rows: dict[str, Installation]) -> None:
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
