from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Upper
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bitbucket_install.models import Installation

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Installation]
    InstallationPaginatorBase = Paginator[Installation]
else:
    ModelAdmin = admin.ModelAdmin
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


@admin.register(Installation)
class InstallationAdmin(ModelAdmin):
    list_display = [
        "client_key",
        "principal_name",
        "user",
        "status",
        "created_at",
        "uninstalled_at",
    ]
    # No "product_type" filter: every row says "bitbucket", and listing its values is a
    # scan of the whole table on every page load.
    list_filter = [StatusFilter]
    list_select_related = ["user"]
    # What get_search_results does; the search box shows when this is not empty.
    search_fields = ["=client_key", "^principal_name", "=principal_uuid"]
    raw_id_fields = ["user"]
    show_full_result_count = False
    paginator = InstallationPaginator
    date_hierarchy = None
    exclude = ["shared_secret", "confirmed_flow"]
    readonly_fields = [
        "client_key",
        "addon_key",
        "public_key",
        "base_url",
        "base_api_url",
        "product_type",
        "principal",
        "principal_uuid",
        "principal_name",
        "installed_by",
        "installed_at",
        "confirmed_at",
        "uninstalled_at",
        "created_at",
        "updated_at",
    ]
    actions = ["mark_uninstalled"]

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

    @admin.display(description=_("status"), boolean=True)
    def status(self, installation: Installation) -> bool:
        return installation.is_installed

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Installations come from Bitbucket's callbacks; a hand-made row has no secret.
        return False

    @admin.action(description=_("Mark selected installations as uninstalled"))
    def mark_uninstalled(self, request: HttpRequest, queryset: QuerySet[Installation]) -> None:
        count = queryset.filter(uninstalled_at__isnull=True).update(
            uninstalled_at=timezone.now(), updated_at=timezone.now()
        )
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
