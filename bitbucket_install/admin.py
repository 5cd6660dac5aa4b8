from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bitbucket_install.models import Installation

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin[Installation]
else:
    ModelAdmin = admin.ModelAdmin


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
    list_filter = [StatusFilter, "product_type"]
    list_select_related = ["user"]
    search_fields = ["=client_key", "principal_name", "=principal_uuid"]
    raw_id_fields = ["user"]
    show_full_result_count = False
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
