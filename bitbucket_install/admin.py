from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import django
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import Model, Q, QuerySet, Value
from django.db.models.constants import LOOKUP_SEP
from django.db.models.functions import Upper
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bitbucket_install import migration
from bitbucket_install.admin_chart import chart
from bitbucket_install.models import ForgeInstallation, Installation
from bitbucket_install.signals import send_on_commit, uninstalled

if TYPE_CHECKING:
    AnyModelAdmin = admin.ModelAdmin[Any]
    ModelAdmin = admin.ModelAdmin[Installation]
    InstallationPaginatorBase = Paginator[Installation]
else:
    AnyModelAdmin = ModelAdmin = admin.ModelAdmin
    InstallationPaginatorBase = Paginator


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [("installed", str(_("Installed"))), ("uninstalled", str(_("Uninstalled")))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in {"installed", "uninstalled"}:
            filtered: QuerySet[Any] = queryset.filter(
                uninstalled_at__isnull=self.value() == "installed"
            )
            return filtered
        return queryset


class DescriptorPushFilter(admin.SimpleListFilter):
    """Where each installation is in the move to Forge: what the last push of the
    descriptor (``bitbucket_install_push_descriptor``) left, or linked to a Forge
    installation. The states are the column's (``migration.state_expression``)."""

    title = _("Forge migration")
    parameter_name = "descriptor_push"

    def lookups(self, request: HttpRequest, model_admin: ModelAdmin) -> list[tuple[str, str]]:
        return [(state, str(label)) for state, label in migration.STATES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in migration.STATES:
            return queryset
        filtered: QuerySet[Any] = migration.with_state(queryset).filter(
            **{migration.STATE_ANNOTATION: self.value()}
        )
        return filtered


# Database estimates of a table's row count, by vendor, read by ``InstallationPaginator``.
ROW_ESTIMATE_SQL = {
    # reltuples: what the last VACUUM/ANALYZE counted (-1 before the first).
    "postgresql": "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
}


class InstallationPaginator(InstallationPaginatorBase):
    """Counts exactly, except the whole table when the database knows it is large.

    Counting every row of a large table is a scan of it on PostgreSQL, on every page load of
    the changelist. Unfiltered, the count is there the planner's estimate (as of the last
    ANALYZE, which autovacuum keeps recent) once that is ``estimate_from`` rows or more:
    the page then says about how many installations there are, and a last page may come
    out a little short or empty. A search or a filter is counted exactly (an index serves
    the search); on other databases the count is always exact.
    """

    estimate_from = 10_000

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet) and not object_list.query.where:
            estimate = estimated_rows(object_list)
            if estimate is not None and estimate >= self.estimate_from:
                return estimate
        counted: int = super().count
        return counted


def estimated_rows(queryset: QuerySet[Any]) -> int | None:
    """The database's estimate of the row count of ``queryset``'s table, if it has one."""
    connection = connections[queryset.db]
    sql = ROW_ESTIMATE_SQL.get(connection.vendor)
    if sql is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.quote_name(queryset.model._meta.db_table)])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


# Columns no admin lookup may name, through any relation, transform or lookup: counting
# the rows that match ?shared_secret__startswith=... recovers a secret one character at a
# time, and confirmed_flow is the SHA-256 of a flow, which must stay as unguessable.
SECRET_FIELDS = frozenset({"shared_secret", "confirmed_flow"})

# What the change page shows of the ``principal`` and ``installed_by`` JSON, in this order.
ACCOUNT_KEYS = [
    ("display_name", _("Name")),
    ("type", _("Type")),
    ("uuid", _("UUID")),
]


def account_details(account: object) -> SafeString | None:
    """A Bitbucket account as Bitbucket sent it (a workspace, a user), as a short
    definition list; None when it holds none of ``ACCOUNT_KEYS``."""
    if not isinstance(account, dict):
        return None
    shown = [(label, account[key]) for key, label in ACCOUNT_KEYS if key in account]
    if not shown:
        return None
    return format_html(
        '<dl class="bitbucket-install-account">{}</dl>',
        format_html_join("", "<dt>{}</dt><dd>{}</dd>", shown),
    )


def short_date(moment: datetime) -> SafeString:
    """The day of ``moment`` (local time, the short format), the full date and time in its
    tooltip: the changelist has room for a day, not for the time of day."""
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        formats.date_format(local, "DATETIME_FORMAT"),
        formats.date_format(local, "SHORT_DATE_FORMAT"),
    )


def uninstall(queryset: QuerySet[Installation], request: HttpRequest) -> int:
    """What a verified ``uninstalled`` callback does, for each installation of
    ``queryset`` still installed: ``uninstalled_at`` set, the secret kept, the
    ``uninstalled`` signal sent after commit. How many it marked."""
    now = timezone.now()
    with transaction.atomic(using=queryset.db):
        # Locked, and re-read under the lock, so a lifecycle callback of the same row
        # either comes first (and is seen here) or waits for this transaction.
        marking = list(
            Installation.objects.using(queryset.db)
            .select_for_update()
            .filter(pk__in=queryset.values("pk"), uninstalled_at__isnull=True)
            .order_by("pk")
        )
        Installation.objects.using(queryset.db).filter(
            pk__in=[installation.pk for installation in marking]
        ).update(uninstalled_at=now, updated_at=now)
        for installation in marking:
            installation.uninstalled_at = installation.updated_at = now
            send_on_commit(uninstalled, installation=installation, request=request)
    return len(marking)


class RecordedRowsAdmin(AnyModelAdmin):
    """Rows that Bitbucket's or Forge's verified calls recorded: shown, never added by hand
    (an installation made here would have no secret), and no Save buttons on their pages,
    a Close link instead (as for a user who may only view)."""

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Installation)
class InstallationAdmin(RecordedRowsAdmin):
    list_display = [
        "client_key",
        "principal_name",
        "user",
        "created_on",
        "forge_migration",
        "status",
    ]
    # No "product_type" filter: every row says "bitbucket", and listing its values is a
    # scan of the whole table on every page load.
    list_filter = [StatusFilter, DescriptorPushFilter]
    list_select_related = ["user"]
    # What get_search_results does; the search box shows when this is not empty.
    search_fields = ["=client_key", "^principal_name", "=principal_uuid"]
    search_help_text = _(
        "Finds the exact clientKey, workspaces whose name starts with the term, "
        "or the exact workspace UUID, in any case."
    )
    show_full_result_count = False
    paginator = InstallationPaginator
    date_hierarchy = None
    # Everything is read-only: the rows are what Bitbucket's callbacks and the return trip
    # recorded (the connected user is changed by the action below, not by hand). The
    # secret and the flow's hash are not shown at all.
    readonly_fields = [
        "client_key",
        "principal_name",
        "principal_uuid",
        "workspace_details",
        "connected_user",
        "installer_details",
        "addon_key",
        "product_type",
        "base_url",
        "base_api_url",
        "public_key",
        "created_at",
        "installed_at",
        "confirmed_at",
        "verified_at",
        "uninstalled_at",
        "forge_migration_state",
        "descriptor_pushed_at",
        "descriptor_push_error",
        "updated_at",
    ]
    fields = tuple(readonly_fields)
    actions = ["mark_uninstalled", "disconnect_user"]
    change_list_template = "admin/bitbucket_install/installation/change_list.html"
    migration_template = "admin/bitbucket_install/installation/migration.html"

    class Media:
        css = {"all": ["bitbucket_install/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Installation]:
        # The state of each row in the same query as the row (an EXISTS subquery by
        # primary key): no query per row, and no WHERE, so the paginator's estimate of
        # an unfiltered table still applies.
        return migration.with_state(super().get_queryset(request))

    def get_urls(self) -> list[URLPattern]:
        options = self.opts
        # Before the model's own URLs: "<path:object_id>/" would take "migration/".
        return [
            path(
                "migration/",
                self.admin_site.admin_view(self.migration_view),
                name=f"{options.app_label}_{options.model_name}_migration",
            ),
            *super().get_urls(),
        ]

    def migration_view(self, request: HttpRequest) -> TemplateResponse:
        """Counts per state of the installed installations, and their progress by day."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = migration.progress()
        changelist = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        states = [
            (
                label,
                figures.counts[state],
                f"{changelist}?status=installed&descriptor_push={state}",
            )
            for state, label in migration.STATES.items()
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Migration to Forge"),
            "progress": figures,
            "states": states,
            "chart": chart(figures.days),
            "changelist_url": changelist,
            # Django 6 made the admin's breadcrumbs a list; 5.2 styles only its <div>.
            "list_breadcrumbs": django.VERSION >= (6, 0),
        }
        return TemplateResponse(request, self.migration_template, context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Installation], search_term: str
    ) -> tuple[QuerySet[Installation], bool]:
        """The whole term (not split at spaces, so "Acme Team" finds that workspace), in any
        case: the exact clientKey, the start of the principal's name, or the exact
        principal UUID. Both sides are upper-cased by the database, so this holds whatever
        the column's collation (MariaDB's utf8mb4_bin too); on PostgreSQL each comparison
        has an index (migration 0002)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        upper_term = Upper(Value(term))
        matches = queryset.alias(
            client_key_upper=Upper("client_key"),
            principal_name_upper=Upper("principal_name"),
            principal_uuid_upper=Upper("principal_uuid"),
        ).filter(
            Q(client_key_upper=upper_term)
            | Q(principal_name_upper__startswith=upper_term)
            | Q(principal_uuid_upper=upper_term)
        )
        return matches, False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # Refused, the admin answers 400 whatever the value: nothing to count.
        if not SECRET_FIELDS.isdisjoint(lookup.split(LOOKUP_SEP)):
            return False
        allowed: bool = super().lookup_allowed(lookup, value, request)
        return allowed

    @admin.display(description=_("created"), ordering="created_at")
    def created_on(self, installation: Installation) -> SafeString:
        return short_date(installation.created_at)

    # The day it was uninstalled is the status too: one column where two did not fit.
    @admin.display(description=_("status"), ordering="uninstalled_at")
    def status(self, installation: Installation) -> SafeString:
        if installation.uninstalled_at is None:
            return format_html("{}", _("Installed"))
        return format_html("{}<br>{}", _("Uninstalled"), short_date(installation.uninstalled_at))

    # "Forge", not "Forge migration": the changelist has room for the short header only
    # beside the sidebar and the filters at 1280 px.
    @admin.display(description=_("Forge"))
    def forge_migration(self, installation: Installation) -> str:
        return migration.state_label(getattr(installation, migration.STATE_ANNOTATION))

    @admin.display(description=_("Forge migration"))
    def forge_migration_state(self, installation: Installation) -> str:
        return self.forge_migration(installation)

    @admin.display(description=_("workspace (as Bitbucket sent it)"))
    def workspace_details(self, installation: Installation) -> str:
        return account_details(installation.principal) or self.get_empty_value_display()

    @admin.display(description=_("installed by (Bitbucket user)"))
    def installer_details(self, installation: Installation) -> str:
        return account_details(installation.installed_by) or self.get_empty_value_display()

    @admin.display(description=_("connected user"))
    def connected_user(self, installation: Installation) -> str:
        user: Model | None = installation.user
        if user is None:
            return self.get_empty_value_display()
        if not self.admin_site.is_registered(type(user)):
            return str(user)
        options = user._meta
        url = reverse(
            f"admin:{options.app_label}_{options.model_name}_change",
            args=[quote(user.pk)],
            current_app=self.admin_site.name,
        )
        return format_html('<a href="{}">{}</a>', url, user)

    def has_delete_permission(self, request: HttpRequest, obj: Installation | None = None) -> bool:
        # Deleting throws the kept secret away, and the next unsigned `installed` callback
        # of that clientKey would then set one of its own choosing. Rows are soft-deleted
        # (the action below); bitbucket_install_purge removes old ones on purpose.
        return False

    @admin.action(
        description=_("Mark selected installations as uninstalled"), permissions=["change"]
    )
    def mark_uninstalled(self, request: HttpRequest, queryset: QuerySet[Installation]) -> None:
        count = uninstall(queryset, request)
        self.message_user(
            request,
            ngettext(
                "%(count)d installation was marked as uninstalled.",
                "%(count)d installations were marked as uninstalled.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )

    @admin.action(description=_("Disconnect from the local user"), permissions=["change"])
    def disconnect_user(self, request: HttpRequest, queryset: QuerySet[Installation]) -> None:
        count = queryset.filter(user__isnull=False).update(user=None, updated_at=timezone.now())
        self.message_user(
            request,
            ngettext(
                "%(count)d installation was disconnected from its local user.",
                "%(count)d installations were disconnected from their local users.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(ForgeInstallation)
class ForgeInstallationAdmin(RecordedRowsAdmin):
    """Forge installations, read-only: they are what verified Forge events recorded."""

    list_display = ["installation_id", "workspace_id", "connect_installation", "environment_type"]
    list_select_related = ["connect_installation"]
    search_fields = ["=installation_id", "=workspace_id", "=connect_installation__client_key"]
    search_help_text = _(
        "Finds the exact Forge installation id, workspace UUID (without braces) or the "
        "clientKey of the linked Connect installation."
    )
    readonly_fields = [
        "installation_id",
        "app_id",
        "app_version",
        "environment_type",
        "environment_id",
        "workspace_id",
        "api_base_url",
        "connect_installation",
        "linked_at",
        "installed_at",
        "upgraded_at",
        "created_at",
        "updated_at",
    ]
    fields = tuple(readonly_fields)
