"""The Installation admin: list, search, filters, no secret anywhere (not even through a
lookup), read-only pages, no add and no delete, the actions."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.admin import AdminSite
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bitbucket_install import signals
from bitbucket_install.admin import InstallationAdmin
from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:bitbucket_install_installation_changelist")
USER_CHANGELIST = reverse("admin:auth_user_changelist")
SECRET_A = "zq-secret-of-acme-8c1f0e"
SECRET_B = "zq-secret-of-globex-77a2d"
SECRET_C = "zq-secret-of-initech-31b9"
FLOW_A = hashlib.sha256(b"the flow that confirmed acme").hexdigest()
SEARCH_HELP = (
    "Finds the exact clientKey, workspaces whose name starts with the term, "
    "or the exact workspace UUID, in any case."
)

CaptureCallbacks = Callable[..., Any]  # pytest-django's django_capture_on_commit_callbacks


@pytest.fixture
def rows(django_user_model: type[User]) -> dict[str, Installation]:
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    long_ago = timezone.now() - timedelta(days=30)
    return {
        "acme": Installation.objects.create(
            client_key="connection:1001",
            shared_secret=SECRET_A,
            confirmed_flow=FLOW_A,
            principal_name="Acme Team",
            principal_uuid="{aaaa}",
            principal={"display_name": "Acme Team", "uuid": "{aaaa}", "type": "workspace"},
            installed_by={"display_name": "Ada Admin", "uuid": "{user-a}", "type": "user"},
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


@pytest.fixture
def viewer(django_user_model: type[User]) -> Client:
    """A staff user who may only view installations and users: no change, no delete."""
    user = django_user_model.objects.create_user("viola", password="viewer-password")
    user.is_staff = True
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_installation", "view_user"])
    )
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client, query: str = "") -> set[str]:
    """The client keys the changelist shows for ``query``."""
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return {row.client_key for row in response.context["cl"].result_list}


def change_url(installation: Installation) -> str:
    return reverse("admin:bitbucket_install_installation_change", args=[installation.pk])


def readonly_value(content: str, field: str) -> str:
    """What the change page shows for the read-only ``field``."""
    found = re.search(rf'field-{field}\b.*?<div class="readonly">(.*?)</div>', content, re.DOTALL)
    assert found is not None, field
    return found[1]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def run_action(client: Client, action: str, selected: list[Installation]) -> Any:
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(row.pk) for row in selected]},
        follow=True,
    )


def test_changelist(admin_client: Client, rows: dict[str, Installation]) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    content = response.content.decode()
    for row in rows.values():
        assert row.client_key in content
    assert "Acme Team" in content
    assert '<td class="field-user nowrap">ada</td>' in content  # the connected user
    headers = [header["text"] for header in response.context["result_headers"]][1:]
    assert headers == [
        "client key",
        "workspace",
        "connected user",
        "created",
        "Forge",
        "status",
    ]
    # The status column: installed, or uninstalled and since when.
    assert '<td class="field-status">Installed</td>' in content
    assert '<td class="field-status">Uninstalled<br><time datetime="' in content
    for secret in (SECRET_A, SECRET_B, SECRET_C, FLOW_A):
        assert secret not in content


def test_search_help_text_says_what_the_search_matches(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.context["cl"].search_help_text == SEARCH_HELP
    assert SEARCH_HELP in response.content.decode()


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
    # The start of the name only, as the help text says.
    assert listed(admin_client, "?q=Team") == set()


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


def test_sorting_by_a_column(admin_client: Client, rows: dict[str, Installation]) -> None:
    # Column 4 is "Created", column 5 "Status" (by the day of the uninstall).
    response = admin_client.get(CHANGELIST + "?o=4")
    assert [row.client_key for row in response.context["cl"].result_list] == [
        "connection:1001",
        "connection:1002",
        "connection:2003",
    ]
    response = admin_client.get(CHANGELIST + "?o=-5.4")
    assert response.status_code == 200
    assert {row.client_key for row in response.context["cl"].result_list} == {
        "connection:1001",
        "connection:1002",
        "connection:2003",
    }


# --- No lookup reaches the secret or the confirming flow's hash --------------------------

# Each lookup with a value that matches acme's row and one that matches nothing: were the
# lookup applied, the two would list different rows.
SECRET_LOOKUPS = [
    ("shared_secret", SECRET_A, "wrong"),
    ("shared_secret__exact", SECRET_A, "wrong"),
    ("shared_secret__iexact", SECRET_A.upper(), "WRONG"),
    ("shared_secret__startswith", SECRET_A[:4], "zz"),
    ("shared_secret__istartswith", SECRET_A[:4].upper(), "ZZ"),
    ("shared_secret__endswith", SECRET_A[-4:], "zz"),
    ("shared_secret__iendswith", SECRET_A[-4:].upper(), "ZZ"),
    ("shared_secret__contains", SECRET_A[5:12], "zz"),
    ("shared_secret__icontains", SECRET_A[5:12].upper(), "ZZ"),
    ("shared_secret__regex", f"^{SECRET_A[:6]}", "^zz"),
    ("shared_secret__iregex", f"^{SECRET_A[:6].upper()}", "^ZZ"),
    ("shared_secret__gt", SECRET_B, SECRET_A),  # only initech's sorts after globex's
    ("shared_secret__gte", SECRET_C, "zz"),
    ("shared_secret__lt", SECRET_B, "a"),
    ("shared_secret__lte", SECRET_A, "a"),
    ("shared_secret__in", f"{SECRET_A},x", "x,y"),
    ("shared_secret__range", f"{SECRET_A},{SECRET_A}", "a,b"),
    ("shared_secret__isnull", "False", "True"),
    ("shared_secret__length__gt", "3", "300"),  # a transform (unknown here) and a lookup
    ("shared_secret__upper__startswith", SECRET_A[:4].upper(), "ZZ"),
    ("confirmed_flow", FLOW_A, "0" * 64),
    ("confirmed_flow__startswith", FLOW_A[:2], "xx"),
    ("confirmed_flow__istartswith", FLOW_A[:2].upper(), "XX"),
    ("confirmed_flow__regex", f"^{FLOW_A[:3]}", "^xx"),
    ("confirmed_flow__gt", FLOW_A, "f" * 64),
    ("confirmed_flow__in", f"{FLOW_A},x", "x"),
    ("confirmed_flow__isnull", "False", "True"),
    # Back to the installations from the connected user.
    ("user__bitbucket_installations__shared_secret__startswith", SECRET_A[:4], "zz"),
    ("user__bitbucket_installations__confirmed_flow", FLOW_A, "x"),
]


@pytest.mark.parametrize(("lookup", "right", "wrong"), SECRET_LOOKUPS)
def test_secret_lookups_are_refused(
    viewer: Client,
    rows: dict[str, Installation],
    sent_signals: SignalRecorder,
    lookup: str,
    right: str,
    wrong: str,
) -> None:
    before = installation_rows()
    for_right = viewer.get(CHANGELIST, {lookup: right})
    for_wrong = viewer.get(CHANGELIST, {lookup: wrong})
    assert for_right.status_code == 400
    assert for_wrong.status_code == 400
    assert for_right.content == for_wrong.content  # nothing tells them apart
    assert SECRET_A not in for_right.content.decode()
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_secret_cannot_be_recovered_by_counting(
    viewer: Client, rows: dict[str, Installation], sent_signals: SignalRecorder
) -> None:
    """The attack itself: guess the secret one character at a time and watch the count.
    Every guess, the right one too, gets the same 400: there is nothing to count."""
    before = installation_rows()
    known = SECRET_A[:3]  # as if the first three characters were already found
    answers = {
        (response.status_code, response.content)
        for response in (
            viewer.get(CHANGELIST, {"shared_secret__startswith": known + guess})
            for guess in string.ascii_letters + string.digits + "-_"
        )
    }
    assert len(answers) == 1
    [(status, _)] = answers
    assert status == 400
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "lookup",
    [
        "bitbucket_installations__shared_secret__startswith",
        "bitbucket_installations__shared_secret",
        "bitbucket_installations__confirmed_flow__startswith",
    ],
)
def test_secret_lookups_through_the_user_admin_are_refused(
    viewer: Client, rows: dict[str, Installation], lookup: str
) -> None:
    before = installation_rows()
    for_right = viewer.get(USER_CHANGELIST, {lookup: SECRET_A[:4]})
    for_wrong = viewer.get(USER_CHANGELIST, {lookup: "zz"})
    assert for_right.status_code == for_wrong.status_code == 400
    assert for_right.content == for_wrong.content
    assert installation_rows() == before


@pytest.mark.parametrize("order", ["shared_secret", "-shared_secret", "confirmed_flow", "99"])
def test_ordering_cannot_name_the_secret(
    viewer: Client, rows: dict[str, Installation], order: str
) -> None:
    # ?o= takes column numbers only: anything else leaves the default order (newest first).
    response = viewer.get(CHANGELIST, {"o": order})
    assert response.status_code == 200
    assert [row.client_key for row in response.context["cl"].result_list] == [
        "connection:2003",
        "connection:1002",
        "connection:1001",
    ]


def test_the_secret_is_no_popup_field(viewer: Client, rows: dict[str, Installation]) -> None:
    # A popup's ?_to_field= column is shown in the list: the secret cannot be one.
    response = viewer.get(CHANGELIST, {"_to_field": "shared_secret", "_popup": "1"})
    assert response.status_code == 400
    assert SECRET_A not in response.content.decode()


def test_a_viewer_can_list_search_and_filter(
    viewer: Client, rows: dict[str, Installation]
) -> None:
    assert listed(viewer) == {"connection:1001", "connection:1002", "connection:2003"}
    assert listed(viewer, "?q=acme") == {"connection:1001"}
    assert listed(viewer, "?status=uninstalled") == {"connection:2003"}
    assert listed(viewer, "?principal_uuid={bbbb}") == {"connection:1002"}
    assert listed(viewer, f"?user__id__exact={rows['acme'].user_id}") == {"connection:1001"}
    response = viewer.get(change_url(rows["acme"]))
    assert response.status_code == 200
    assert SECRET_A not in response.content.decode()


def test_a_viewer_gets_no_actions(
    viewer: Client, rows: dict[str, Installation], sent_signals: SignalRecorder
) -> None:
    response = viewer.get(CHANGELIST)
    assert response.context["action_form"] is None
    before = installation_rows()
    for action in ("mark_uninstalled", "disconnect_user"):
        response = run_action(viewer, action, [rows["acme"]])
        assert response.status_code == 200
    assert installation_rows() == before
    assert sent_signals.none_sent


# --- The change page ----------------------------------------------------------------------


def test_change_page_never_shows_the_secret(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    response = admin_client.get(change_url(rows["acme"]))
    assert response.status_code == 200
    content = response.content.decode()
    assert SECRET_A not in content
    assert FLOW_A not in content
    assert "shared_secret" not in content
    assert "confirmed_flow" not in content
    assert "connection:1001" in content
    assert "Acme Team" in content


def test_change_page_is_read_only(admin_client: Client, rows: dict[str, Installation]) -> None:
    response = admin_client.get(change_url(rows["acme"]))
    assert response.context["adminform"].form.fields == {}
    content = response.content.decode()
    assert "Save and continue editing" not in content
    assert 'name="_save"' not in content
    assert "Close" in content


def test_posting_the_change_page_changes_nothing(
    admin_client: Client, rows: dict[str, Installation], django_user_model: type[User]
) -> None:
    installation = rows["acme"]
    other = django_user_model.objects.create_user("bob")
    response = admin_client.post(
        change_url(installation),
        {
            "user": str(other.pk),
            "shared_secret": "hijacked",
            "confirmed_flow": "f" * 64,
            "client_key": "connection:hijacked",
            "uninstalled_at_0": "2020-01-01",
        },
    )
    assert response.status_code == 302
    installation.refresh_from_db()
    assert installation.user is not None
    assert installation.user.username == "ada"
    assert installation.shared_secret == SECRET_A
    assert installation.confirmed_flow == FLOW_A
    assert installation.client_key == "connection:1001"
    assert installation.uninstalled_at is None


def test_workspace_fields_have_distinct_labels(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    content = admin_client.get(change_url(rows["acme"])).content.decode()
    assert "Workspace:" in content
    assert "Workspace UUID:" in content
    assert "Workspace (as Bitbucket sent it):" in content
    assert "Principal" not in content


def test_accounts_are_shown_as_short_lists(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    content = admin_client.get(change_url(rows["acme"])).content.decode()
    assert (
        '<dl class="bitbucket-install-account"><dt>Name</dt><dd>Acme Team</dd>'
        "<dt>Type</dt><dd>workspace</dd><dt>UUID</dt><dd>{aaaa}</dd></dl>"
    ) in content
    assert (
        '<dl class="bitbucket-install-account"><dt>Name</dt><dd>Ada Admin</dd>'
        "<dt>Type</dt><dd>user</dd><dt>UUID</dt><dd>{user-a}</dd></dl>"
    ) in content
    assert "display_name" not in content  # not the raw JSON


def test_accounts_are_escaped(admin_client: Client, rows: dict[str, Installation]) -> None:
    installation = rows["globex"]
    installation.principal = {"display_name": "<script>alert(1)</script>", "uuid": 7}
    installation.save()
    content = admin_client.get(change_url(installation)).content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "<dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd><dt>UUID</dt><dd>7</dd>" in content


@pytest.mark.parametrize("account", [None, {}, {"links": {}}, ["a list"], "a string"])
def test_accounts_without_known_keys_show_as_empty(
    admin_client: Client, rows: dict[str, Installation], account: object
) -> None:
    installation = rows["globex"]
    installation.principal = installation.installed_by = account
    installation.save()
    response = admin_client.get(change_url(installation))
    assert response.status_code == 200
    content = response.content.decode()
    assert "bitbucket-install-account" not in content
    assert readonly_value(content, "workspace_details") == "-"
    assert readonly_value(content, "installer_details") == "-"


def test_connected_user_links_to_its_admin_page(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    installation = rows["acme"]
    user_url = reverse("admin:auth_user_change", args=[installation.user_id])
    content = admin_client.get(change_url(installation)).content.decode()
    assert readonly_value(content, "connected_user") == f'<a href="{user_url}">ada</a>'
    content = admin_client.get(change_url(rows["globex"])).content.decode()
    assert readonly_value(content, "connected_user") == "-"


def test_connected_user_is_plain_text_when_users_have_no_admin(
    rows: dict[str, Installation],
) -> None:
    model_admin = InstallationAdmin(Installation, AdminSite(name="no_users"))
    assert model_admin.connected_user(rows["acme"]) == "ada"
    assert model_admin.connected_user(rows["globex"]) == "-"


# --- No add, no delete ------------------------------------------------------------------


def test_add_permission_denied(admin_client: Client, rows: dict[str, Installation]) -> None:
    before = installation_rows()
    url = reverse("admin:bitbucket_install_installation_add")
    assert admin_client.get(url).status_code == 403
    response = admin_client.post(url, {"client_key": "connection:9", "shared_secret": "x"})
    assert response.status_code == 403
    assert installation_rows() == before
    assert url not in admin_client.get(CHANGELIST).content.decode()


def test_delete_view_refused(
    admin_client: Client, rows: dict[str, Installation], sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    installation = rows["acme"]
    url = reverse("admin:bitbucket_install_installation_delete", args=[installation.pk])
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert installation_rows() == before
    assert url not in admin_client.get(change_url(installation)).content.decode()
    assert sent_signals.none_sent


def test_delete_selected_action_unavailable(
    admin_client: Client, rows: dict[str, Installation], sent_signals: SignalRecorder
) -> None:
    response = admin_client.get(CHANGELIST)
    offered = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert offered == ["", "mark_uninstalled", "disconnect_user"]
    before = installation_rows()
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "_selected_action": [str(row.pk) for row in rows.values()],
            "post": "yes",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert messages_of(response) == ["No action selected."]
    assert installation_rows() == before
    assert sent_signals.none_sent


# --- Mark as uninstalled ----------------------------------------------------------------


def test_mark_uninstalled_action(
    admin_client: Client,
    rows: dict[str, Installation],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: CaptureCallbacks,
) -> None:
    initech_before = Installation.objects.filter(pk=rows["initech"].pk).values().get()
    globex_before = Installation.objects.filter(pk=rows["globex"].pk).values().get()
    with django_capture_on_commit_callbacks() as callbacks:
        response = run_action(admin_client, "mark_uninstalled", [rows["acme"], rows["initech"]])
        assert sent_signals.none_sent  # not before the commit
    assert response.status_code == 200
    assert messages_of(response) == ["1 installation was marked as uninstalled."]
    acme = Installation.objects.get(pk=rows["acme"].pk)
    assert acme.uninstalled_at is not None
    assert acme.shared_secret == SECRET_A  # soft delete keeps the secret
    assert acme.confirmed_flow == FLOW_A
    # Not selected, or already uninstalled: untouched.
    assert Installation.objects.filter(pk=rows["globex"].pk).values().get() == globex_before
    assert Installation.objects.filter(pk=rows["initech"].pk).values().get() == initech_before

    for callback in callbacks:
        callback()
    # What the verified `uninstalled` callback sends, once, for the row it changed only.
    [sent] = sent_signals.of(signals.uninstalled)
    assert len(sent_signals.calls) == 1
    assert sent["sender"] is Installation
    assert sent["installation"].pk == acme.pk
    assert sent["installation"].uninstalled_at == acme.uninstalled_at
    assert sent["request"].path == CHANGELIST
    assert sent["request"].user.is_superuser


def test_mark_uninstalled_action_plural(
    admin_client: Client,
    rows: dict[str, Installation],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: CaptureCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "mark_uninstalled", list(rows.values()))
    assert messages_of(response) == ["2 installations were marked as uninstalled."]
    assert Installation.objects.installed().count() == 0
    signalled = sorted(sent["installation"].pk for sent in sent_signals.of(signals.uninstalled))
    assert signalled == sorted([rows["acme"].pk, rows["globex"].pk])
    assert len(sent_signals.calls) == 2


def test_mark_uninstalled_twice_signals_once(
    admin_client: Client,
    rows: dict[str, Installation],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: CaptureCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin_client, "mark_uninstalled", [rows["globex"]])
    after_first = installation_rows()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_action(admin_client, "mark_uninstalled", [rows["globex"]])
    assert messages_of(response) == ["0 installations were marked as uninstalled."]
    assert callbacks == []
    assert installation_rows() == after_first
    assert [sent["installation"].pk for sent in sent_signals.of(signals.uninstalled)] == [
        rows["globex"].pk
    ]


# --- Disconnect from the local user -------------------------------------------------------


def test_disconnect_user_action(
    admin_client: Client,
    rows: dict[str, Installation],
    django_user_model: type[User],
    sent_signals: SignalRecorder,
) -> None:
    globex_before = Installation.objects.filter(pk=rows["globex"].pk).values().get()
    response = run_action(admin_client, "disconnect_user", [rows["acme"], rows["globex"]])
    assert response.status_code == 200
    assert messages_of(response) == ["1 installation was disconnected from its local user."]
    acme = Installation.objects.get(pk=rows["acme"].pk)
    assert acme.user is None
    assert acme.shared_secret == SECRET_A
    assert acme.uninstalled_at is None
    assert django_user_model.objects.filter(username="ada").exists()  # the user stays
    assert Installation.objects.filter(pk=rows["globex"].pk).values().get() == globex_before
    assert sent_signals.none_sent


def test_disconnect_user_action_plural(
    admin_client: Client, rows: dict[str, Installation], django_user_model: type[User]
) -> None:
    rows["initech"].user = django_user_model.objects.create_user("bob")
    rows["initech"].save()
    response = run_action(admin_client, "disconnect_user", list(rows.values()))
    assert messages_of(response) == ["2 installations were disconnected from their local users."]
    assert not Installation.objects.filter(user__isnull=False).exists()


def test_admin_needs_staff(client: Client, rows: dict[str, Installation]) -> None:
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_change_page_shows_when_bitbucket_vouched_for_the_installation(
    admin_client: Client, rows: dict[str, Installation]
) -> None:
    installation = rows["acme"]
    content = admin_client.get(change_url(installation)).content.decode()
    assert "Verified with Bitbucket" in content
    assert readonly_value(content, "verified_at") == "-"

    Installation.objects.filter(pk=installation.pk).update(
        verified_at=datetime(2026, 11, 30, 9, 15, tzinfo=dt_timezone.utc)
    )
    content = admin_client.get(change_url(installation)).content.decode()
    assert "2026" in readonly_value(content, "verified_at")
