from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class InstallationQuerySet(models.QuerySet["Installation"]):
    def installed(self) -> InstallationQuerySet:
        return self.by_status(installed=True)

    def uninstalled(self) -> InstallationQuerySet:
        return self.by_status(installed=False)

    def by_status(self, *, installed: bool) -> InstallationQuerySet:
        filtered: InstallationQuerySet = self.filter(uninstalled_at__isnull=installed)
        return filtered


class Installation(models.Model):
    """One installation of the app, keyed by Bitbucket's clientKey.

    Rows are soft-deleted (``uninstalled_at``) so the shared secret that signs the next
    install's lifecycle callback is kept (protocol.md section 4).
    """

    client_key = models.CharField(_("client key"), max_length=255, unique=True)
    addon_key = models.CharField(_("app key"), max_length=255, blank=True)
    shared_secret = models.CharField(_("shared secret"), max_length=255, blank=True)
    public_key = models.TextField(_("public key"), blank=True)
    base_url = models.CharField(_("Bitbucket base URL"), max_length=255, blank=True)
    base_api_url = models.CharField(_("Bitbucket API URL"), max_length=255, blank=True)
    product_type = models.CharField(_("product type"), max_length=32, blank=True)
    principal = models.JSONField(_("principal"), null=True, blank=True)
    principal_uuid = models.CharField(_("principal UUID"), max_length=64, blank=True)
    principal_name = models.CharField(_("principal"), max_length=255, blank=True)
    installed_by = models.JSONField(_("installed by (Bitbucket user)"), null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("connected user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bitbucket_installations",
    )
    installed_at = models.DateTimeField(_("last install callback"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed by a browser"), null=True, blank=True)
    # SHA-256 of the flow that confirmed it, so repeats of that very return are idempotent.
    confirmed_flow = models.CharField(max_length=64, blank=True, editable=False)
    uninstalled_at = models.DateTimeField(_("uninstalled"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = InstallationQuerySet.as_manager()

    class Meta:
        verbose_name = _("installation")
        verbose_name_plural = _("installations")
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The admin's order (newest first): the first page of a million rows is read
            # from this index instead of sorting the table.
            models.Index(fields=["created_at", "id"], name="bbinstall_created"),
            models.Index(fields=["principal_name"], name="bbinstall_principal_name"),
            models.Index(fields=["principal_uuid"], name="bbinstall_principal_uuid"),
        ]

    def __str__(self) -> str:
        return self.principal_name or self.client_key

    @property
    def is_installed(self) -> bool:
        return self.uninstalled_at is None
