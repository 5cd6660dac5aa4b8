"""The Forge Remote's lifecycle receiver: ``avi:forge:installed:app`` and
``avi:forge:upgraded:app``, posted by Forge's ``trigger`` module to the ``forge_lifecycle``
URL.

The token decides everything that matters (``forge_invocation_required``): which Forge
installation this is (``app.installationId``, never the body's ``id``), its workspace,
environment and API base URL. The body only says which event it is (flat, or wrapped in
``payload`` as Forge's retries send it) and the app's version. Each event is recorded in
one transaction (a ``ForgeInstallation`` per installation id), linked to the Connect
installation of the same workspace (``linking``), and signalled after the commit, once:
a retry of an event already recorded is answered 204 again and signals nothing. Forge
wants a 2xx within 5 seconds; nothing here calls out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_POST

from bitbucket_install.forge import linking
from bitbucket_install.forge.decorators import forge_invocation_required
from bitbucket_install.forge.invocation import Invocation
from bitbucket_install.models import ForgeInstallation, atomic_retrying_lost_insert, bare_uuid
from bitbucket_install.signals import forge_installed, forge_upgraded, send_on_commit
from bitbucket_install.verification import printable

logger = logging.getLogger("bitbucket_install")

INSTALLED = "avi:forge:installed:app"
UPGRADED = "avi:forge:upgraded:app"
EVENTS = {INSTALLED: forge_installed, UPGRADED: forge_upgraded}
# Lifecycle bodies are a few hundred bytes; anything far larger is not one.
MAX_BODY_BYTES = 64 * 1024
INSTALLATION_ARI_PREFIX = "ari:cloud:ecosystem::installation/"


class EventRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_event(body: bytes) -> dict[str, Any]:
    """The event of a lifecycle body: its ``payload`` if it has one (a retry), else the
    body itself; ``EventRefused`` when it is not a lifecycle event of this receiver."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRefused("body_too_large")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise EventRefused("body_not_json") from error
    if isinstance(data, dict) and isinstance(data.get("payload"), dict):
        data = data["payload"]
    if not isinstance(data, dict):
        raise EventRefused("body_not_an_object")
    if data.get("eventType") not in EVENTS:
        raise EventRefused("event_type_unknown")
    return data


def _app_version(event: dict[str, Any]) -> str:
    app = event.get("app")
    version = app.get("version") if isinstance(app, dict) else None
    return printable(version, 64) if isinstance(version, str) else ""


def _body_id_matches(event: dict[str, Any], installation_id: str) -> bool:
    """Does the body's ``id`` (when there is one) name the token's installation? Whether
    the two are always equal is not documented, so a mismatch is only logged."""
    body_id = event.get("id")
    if not isinstance(body_id, str):
        return True
    return installation_id in (body_id, INSTALLATION_ARI_PREFIX + body_id)


def record(
    invocation: Invocation, event_type: str, app_version: str
) -> tuple[ForgeInstallation, bool, bool]:
    """Record the event under the row's lock: ``(row, created, new)``; ``new`` is False
    for a retry of an event already recorded (an ``installed`` for an installation whose
    install is in, an ``upgraded`` to the version already stored)."""
    now = timezone.now()
    found = (
        ForgeInstallation.objects.select_for_update()
        .filter(installation_id=invocation.installation_id)
        .first()
    )
    created = found is None
    row = found or ForgeInstallation(installation_id=invocation.installation_id)
    if event_type == INSTALLED:
        new = row.installed_at is None
        if new:
            row.installed_at = now
    else:
        new = row.upgraded_at is None or row.app_version != app_version
        if new:
            row.upgraded_at = now
    row.app_id = invocation.app_id
    row.app_version = app_version or row.app_version
    row.environment_type = invocation.environment_type or ""
    row.environment_id = invocation.environment_id or ""
    row.workspace_id = bare_uuid(invocation.workspace_id or "")
    row.api_base_url = invocation.api_base_url or ""
    # IntegrityError for a concurrent first event of the installation: retried once.
    row.save()
    return row, created, new


@forge_invocation_required
@require_POST
def forge_lifecycle_view(request: HttpRequest) -> HttpResponse:
    invocation: Invocation = request.forge.invocation  # type: ignore[attr-defined]
    try:
        event = read_event(request.body)
    except EventRefused as refusal:
        logger.warning(
            "Forge lifecycle event refused: reason=%s forge_installation=%s",
            refusal.reason,
            printable(invocation.installation_id),
        )
        return HttpResponse(status=400)
    event_type: str = event["eventType"]
    if not _body_id_matches(event, invocation.installation_id):
        logger.warning(
            "Forge lifecycle event: the body's id %s is not the token's installation %s; "
            "the token's is recorded",
            printable(event.get("id")),
            printable(invocation.installation_id),
        )
    try:
        row, created, new = atomic_retrying_lost_insert(
            lambda: record(invocation, event_type, _app_version(event))
        )
        # A refused link leaves the one stored before, if any.
        installation = linking.link(row) or row.connect_installation
    except DatabaseError:
        logger.exception("Forge lifecycle event: database error")
        return HttpResponse(status=503)
    logger.info(
        "Forge lifecycle event accepted: event=%s forge_installation=%s created=%s new=%s "
        "linked=%s",
        event_type,
        printable(invocation.installation_id),
        created,
        new,
        installation.client_key if installation is not None else None,
    )
    if new:
        # Outside any transaction here: the receivers run now, after the commit.
        send_on_commit(
            EVENTS[event_type],
            forge_installation=row,
            installation=installation,
            created=created,
            request=request,
        )
    return HttpResponse(status=204)
