"""Linking a Forge installation to the Connect installation of the same workspace.

Two pieces of evidence name the Connect installation: the workspace (the Forge token's
workspace id against the Connect installation's principal UUID, braces and case
normalised), and, where the project has it from the Forge side, the clientKey (a Forge
``asApp`` call to ``GET /2.0/addon/{key}/client-key`` returns it). Each must point at one
installation Bitbucket or a browser vouched for (``Installation.is_confirmed``), and when
both are given they must agree: a conflict is refused and logged, never guessed. A Forge
installation, once linked, is never moved to another Connect installation.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.functions import Upper
from django.utils import timezone

from bitbucket_install.models import ForgeInstallation, Installation, bare_uuid
from bitbucket_install.verification import printable

logger = logging.getLogger("bitbucket_install")


class LinkRefused(Exception):
    """No link was made; ``reason`` is a stable code, safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _by_workspace(workspace_id: str) -> Installation | None:
    """The one Connect installation of the workspace (an installed one before an
    uninstalled one); None if there is none; ``LinkRefused`` if it is not one."""
    if not workspace_id:
        return None
    # Compared upper-cased, not with iexact: that is case-sensitive under MariaDB's binary
    # collations.
    spellings = [workspace_id.upper(), "{" + workspace_id.upper() + "}"]
    candidates = list(
        Installation.objects.annotate(principal_uuid_upper=Upper("principal_uuid"))
        .filter(principal_uuid_upper__in=spellings)
        .order_by("pk")[:3]
    )
    installed = [row for row in candidates if row.is_installed]
    chosen = installed or candidates
    if len(chosen) > 1:
        raise LinkRefused("several_connect_installations")
    return chosen[0] if chosen else None


def _by_client_key(client_key: str, workspace_id: str) -> Installation:
    installation: Installation | None = Installation.objects.filter(client_key=client_key).first()
    if installation is None:
        raise LinkRefused("client_key_unknown")
    if workspace_id and bare_uuid(installation.principal_uuid) != workspace_id:
        raise LinkRefused("client_key_of_another_workspace")
    return installation


def connect_installation_for(
    forge_installation: ForgeInstallation, client_key: str | None = None
) -> Installation | None:
    """The Connect installation ``forge_installation`` belongs to, by its workspace and by
    ``client_key`` if given; None if nothing names one; ``LinkRefused`` on a conflict or
    for an installation nothing vouched for."""
    workspace_id = bare_uuid(forge_installation.workspace_id)
    by_workspace = _by_workspace(workspace_id)
    found = by_workspace
    if client_key is not None:
        by_client_key = _by_client_key(client_key, workspace_id)
        if by_workspace is not None and by_workspace.pk != by_client_key.pk:
            raise LinkRefused("workspace_and_client_key_disagree")
        found = by_client_key
    if found is not None and not found.is_confirmed:
        # A first callback is unsigned: a row nothing vouched for may be anybody's.
        raise LinkRefused("connect_installation_not_confirmed")
    return found


def link(
    forge_installation: ForgeInstallation, client_key: str | None = None
) -> Installation | None:
    """Link ``forge_installation`` (saved) to its Connect installation and return that;
    None when there is none to link to yet, or the link was refused (logged)."""
    try:
        with transaction.atomic():
            locked = ForgeInstallation.objects.select_for_update().get(pk=forge_installation.pk)
            found = connect_installation_for(locked, client_key)
            if found is None:
                return None
            if locked.connect_installation_id not in (None, found.pk):
                raise LinkRefused("linked_to_another_connect_installation")
            if locked.connect_installation_id is None:
                locked.connect_installation = found
                locked.linked_at = timezone.now()
                locked.save(update_fields=["connect_installation", "linked_at", "updated_at"])
    except LinkRefused as refusal:
        logger.warning(
            "Forge installation not linked: reason=%s forge_installation=%s client_key=%s",
            refusal.reason,
            printable(forge_installation.installation_id),
            printable(client_key),
        )
        return None
    forge_installation.connect_installation = found
    forge_installation.linked_at = locked.linked_at
    return found
