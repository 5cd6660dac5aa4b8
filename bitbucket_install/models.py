from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

Result = TypeVar("Result")


def atomic_retrying_lost_insert(work: Callable[[], Result]) -> Result:
    """``work()`` in a transaction; once more in a new one if it lost an insert race.

    ``work`` reads the row under its lock and inserts it when there is none. When a
    concurrent request inserted it first, the unique key raises ``IntegrityError``; the
    second transaction then finds that row. (On MariaDB/MySQL the losing insert keeps a
    shared lock on the row until its transaction ends, so asking for the row lock in that
    same transaction would deadlock with the others waiting for it: hence a new one.)
    """
    try:
        with transaction.atomic():
            return work()
    except IntegrityError:
        with transaction.atomic():
            return work()


class InstallationQuerySet(models.QuerySet["Installation"]):
    def locked(self, client_key: str) -> Installation | None:
        """The installation of ``client_key``, locked until the transaction ends."""
        # get() rather than first(): client_key is unique, so no ORDER BY is needed, and
        # building that ordering cost a fifth of this lookup's CPU time.
        try:
            installation: Installation = self.select_for_update().get(client_key=client_key)
        except Installation.DoesNotExist:
            return None
        return installation

    def installed(self) -> InstallationQuerySet:
        return self.by_status(installed=True)

    def uninstalled(self) -> InstallationQuerySet:
        return self.by_status(installed=False)

    def by_status(self, *, installed: bool) -> InstallationQuerySet:
        filtered: InstallationQuerySet = self.filter(uninstalled_at__isnull=installed)
        return filtered

    def confirmed(self) -> InstallationQuerySet:
        """The installations something other than their own callbacks vouched for: any of
        ``Installation.CONFIRMATION_FIELDS`` set (the same rule as ``is_confirmed``)."""
        vouched = functools.reduce(
            operator.or_,
            (models.Q(**{f"{name}__isnull": False}) for name in Installation.CONFIRMATION_FIELDS),
        )
        filtered: InstallationQuerySet = self.filter(vouched)
        return filtered


class Installation(models.Model):
    """One installation of the app, keyed by Bitbucket's clientKey.

    Rows are soft-deleted (``uninstalled_at``) so the shared secret that signs the next
    install's lifecycle callback is kept.
    """

    client_key = models.CharField(_("client key"), max_length=255, unique=True)
    addon_key = models.CharField(_("app key"), max_length=255, blank=True)
    shared_secret = models.CharField(_("shared secret"), max_length=255, blank=True)
    public_key = models.TextField(_("public key"), blank=True)
    base_url = models.CharField(_("Bitbucket base URL"), max_length=255, blank=True)
    base_api_url = models.CharField(_("Bitbucket API URL"), max_length=255, blank=True)
    product_type = models.CharField(_("product type"), max_length=32, blank=True)
    principal = models.JSONField(_("workspace (as Bitbucket sent it)"), null=True, blank=True)
    principal_uuid = models.CharField(_("workspace UUID"), max_length=64, blank=True)
    principal_name = models.CharField(_("workspace"), max_length=255, blank=True)
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
    # SHA-256 of the flow that confirmed it: unique, so one flow confirms at most one
    # installation even when returns race, and a repeat of that very return is idempotent.
    # NULL (not "") when no flow did, since a unique column may hold many NULLs.
    confirmed_flow = models.CharField(
        max_length=64, null=True, blank=True, unique=True, editable=False
    )
    # When Bitbucket accepted a call signed with the stored secret
    # (BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET): only Bitbucket and the genuine
    # installation know that secret, so no sender of a forged callback can set this.
    verified_at = models.DateTimeField(_("verified with Bitbucket"), null=True, blank=True)
    uninstalled_at = models.DateTimeField(_("uninstalled"), null=True, blank=True)
    # The last push of the descriptor (PUT /2.0/addon, bitbucket_install_push_descriptor):
    # when Bitbucket last accepted one, and why the last one failed ("" once one succeeds).
    descriptor_pushed_at = models.DateTimeField(
        _("descriptor pushed"), null=True, blank=True, editable=False
    )
    descriptor_push_error = models.CharField(
        _("descriptor push error"), max_length=255, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = InstallationQuerySet.as_manager()

    # The fields of which any one, once set, confirms the installation: an unsigned first
    # ``installed`` callback creates a row whose every field its sender chose, and only
    # these record that someone else vouched for it: a browser's return trip, or
    # Bitbucket itself. ``is_confirmed`` and ``objects.confirmed()`` both read this tuple.
    CONFIRMATION_FIELDS: tuple[str, ...] = ("confirmed_at", "verified_at")

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

    @property
    def is_confirmed(self) -> bool:
        """Did anything besides its own callbacks vouch for this installation (see
        ``CONFIRMATION_FIELDS``)?"""
        return any(getattr(self, name) is not None for name in self.CONFIRMATION_FIELDS)


class WebhookDelivery(models.Model):
    """One webhook delivery accepted by the ``webhook`` view, kept so that a redelivery
    (the same ``X-Request-UUID``) is answered without signalling it again.

    Unique per installation rather than across them: a token signed by one installation
    can then neither swallow another's delivery by using its id first, nor be swallowed.
    The payload is not stored. ``bitbucket_install_purge`` deletes old rows.
    """

    installation = models.ForeignKey(
        Installation,
        verbose_name=_("installation"),
        on_delete=models.CASCADE,
        related_name="webhook_deliveries",
    )
    request_uuid = models.UUIDField(_("request UUID"))
    event = models.CharField(_("event"), max_length=64)
    received_at = models.DateTimeField(_("received"), default=timezone.now)
    # When webhook_received was claimed for this delivery: at once when the request sends
    # it, by the task when a worker does (BITBUCKET_INSTALL_WEBHOOK_TASKS). Null while the
    # delivery waits in the task queue; set once, under the row's lock, so a task that runs
    # twice signals once.
    signalled_at = models.DateTimeField(_("signalled"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "request_uuid"], name="bbinstall_delivery_once"
            ),
        ]
        indexes = [
            # The purge deletes by age.
            models.Index(fields=["received_at"], name="bbinstall_delivery_received"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.request_uuid}"


def bare_uuid(value: str) -> str:
    """A UUID as compared and stored here: without braces, lower case (Bitbucket writes
    workspace UUIDs with braces in some places and without in others)."""
    return value.strip().strip("{}").lower()


class ForgeInstallation(models.Model):
    """One installation of the project's Forge app, keyed by Forge's installation id.

    Recorded from verified Forge lifecycle events; ``connect_installation`` is the Connect
    installation of the same workspace it is linked to, once one is.
    """

    # ``ari:cloud:ecosystem::installation/<uuid>``: from the verified token, never the body.
    installation_id = models.CharField(_("Forge installation id"), max_length=255, unique=True)
    app_id = models.CharField(_("Forge app id"), max_length=255)
    app_version = models.CharField(_("app version"), max_length=64, blank=True)
    environment_type = models.CharField(_("environment"), max_length=32, blank=True)
    environment_id = models.CharField(_("environment id"), max_length=255, blank=True)
    # The workspace's UUID, without braces, lower case (``bare_uuid``).
    workspace_id = models.CharField(_("workspace UUID"), max_length=64, blank=True)
    api_base_url = models.CharField(_("API base URL"), max_length=255, blank=True)
    connect_installation = models.ForeignKey(
        Installation,
        verbose_name=_("Connect installation"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="forge_installations",
    )
    linked_at = models.DateTimeField(_("linked"), null=True, blank=True)
    installed_at = models.DateTimeField(_("last installed event"), null=True, blank=True)
    upgraded_at = models.DateTimeField(_("last upgraded event"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("Forge installation")
        verbose_name_plural = _("Forge installations")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["workspace_id"], name="bbinstall_forge_workspace"),
        ]

    def __str__(self) -> str:
        return self.installation_id
