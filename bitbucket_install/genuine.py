"""Asking Bitbucket whether an installation is genuine (``CONFIRM_WITH_BITBUCKET``).

A first ``installed`` callback is unsigned, so anyone can send one: the row it makes holds
a secret of its sender's choosing. Bitbucket accepts a Connect JWT only when it is signed
with the secret it issued to that installation, so one read-only call signed with the
stored secret (``GET /2.0/addon/linkers``, an endpoint that takes JWTs only) tells a
genuine installation from a made-up one. ``verify`` makes that call and records a success
in ``verified_at``; ``vouch`` is what the views call before they confirm an installation
or connect it to a user.

A 401 is the only answer read as "made up". Any other refusal proves nothing either way
(the installation is then neither trusted nor removed), and no answer at all (a timeout,
a 5xx, a 429) means "ask again later": nothing is confirmed meanwhile. Bitbucket may not
accept calls for an installation until it has the answer to that installation's
``installed`` callback, so a 401 within ``SETTLING_SECONDS`` of the callback proves
nothing yet either (``is_settled``).
"""

from __future__ import annotations

import copy
import enum
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from bitbucket_install.models import Installation
from bitbucket_install.verification import printable

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("bitbucket_install")

CHECK_PATH = "/2.0/addon/linkers"
# How long after its ``installed`` callback a 401 for an installation may still mean that
# Bitbucket is waiting for the callback's answer rather than that it never made it.
SETTLING_SECONDS = 60
# The httpx transport of the check's client: None is the network. Tests (and the
# simulator's own tests) route it elsewhere.
transport: httpx.BaseTransport | None = None


class Verdict(enum.Enum):
    GENUINE = "genuine"  # Bitbucket accepted the call
    MADE_UP = "made_up"  # 401: Bitbucket refused the stored secret outright
    REFUSED = "refused"  # another refusal, or a call the client would not send
    UNREACHABLE = "unreachable"  # no answer: timeout, connection, 5xx, 429


class NotGenuine(Exception):
    """Bitbucket did not vouch for the installation; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BitbucketUnreachable(Exception):
    """Bitbucket gave no answer: nothing may be confirmed now, a retry can work."""


class _NoWaiting(Exception):
    """Raised instead of sleeping out a 429: a browser or a callback is waiting."""


def _no_waiting(seconds: float) -> None:
    raise _NoWaiting


def ask(installation: Installation) -> Verdict:
    """What Bitbucket says of ``installation``'s stored secret (nothing is recorded)."""
    # The client needs httpx, the [client] extra; check E027 says so when it is missing.
    import httpx

    from bitbucket_install.client import BitbucketClient
    from bitbucket_install.exceptions import (
        BitbucketAPIError,
        RateLimited,
        RequestNotSent,
        TokenRefused,
    )

    # The client signs nothing for an uninstalled installation, a guard against using one
    # by mistake; this read-only call asks about the secret itself, installed or not (a
    # made-up row can be "uninstalled" by a callback signed with its own secret).
    probe = copy.copy(installation)
    probe.uninstalled_at = None
    try:
        with BitbucketClient(probe, sleep=_no_waiting, transport=transport) as client:
            client.get(CHECK_PATH)
    except TokenRefused as error:
        return Verdict.MADE_UP if error.status == 401 else Verdict.REFUSED
    except (RateLimited, _NoWaiting, httpx.HTTPError):
        return Verdict.UNREACHABLE
    except BitbucketAPIError as error:
        return Verdict.UNREACHABLE if error.status >= 500 else Verdict.REFUSED
    except RequestNotSent:
        return Verdict.REFUSED
    return Verdict.GENUINE


def verify(installation: Installation) -> Verdict:
    """``ask``, and record a ``GENUINE`` answer in ``verified_at`` (on ``installation``
    too) if the row still holds the secret that was checked."""
    verdict = ask(installation)
    logger.info(
        "installation checked with Bitbucket: client_key=%s verdict=%s",
        printable(installation.client_key),
        verdict.value,
    )
    if verdict is Verdict.GENUINE:
        now = timezone.now()
        recorded = Installation.objects.filter(
            pk=installation.pk,
            shared_secret=installation.shared_secret,
            verified_at__isnull=True,
        ).update(verified_at=now)
        if recorded:
            installation.verified_at = now
    return verdict


def vouch(installation: Installation) -> None:
    """Return if Bitbucket vouches for ``installation`` (asked once: a recorded answer
    stands); ``NotGenuine`` or ``BitbucketUnreachable`` if not."""
    if installation.verified_at is not None:
        return
    if not installation.pk or not installation.shared_secret:
        # No callback yet (a return that came first): nothing to ask Bitbucket about.
        raise NotGenuine("unknown_installation")
    verdict = verify(installation)
    if verdict is Verdict.UNREACHABLE:
        raise BitbucketUnreachable
    if verdict is not Verdict.GENUINE:
        raise NotGenuine("installation_not_genuine")


def is_settled(installation: Installation) -> bool:
    """Has Bitbucket surely had the answer to this installation's ``installed`` callback,
    so that a 401 means what it says?"""
    since = installation.installed_at or installation.created_at
    return since is not None and timezone.now() - since >= timedelta(seconds=SETTLING_SECONDS)


def is_vouched_for_by_nobody(installation: Installation) -> bool:
    """Did nothing besides its own callbacks ever vouch for ``installation``: never
    verified, never confirmed, connected to nobody? Only such a row may be replaced or
    removed as made up."""
    return (
        not installation.is_confirmed
        and installation.user_id is None
        and installation.confirmed_flow is None
    )


def remove_made_up(installation: Installation) -> bool:
    """Delete ``installation`` after Bitbucket refused its secret, if, under its lock, it
    still holds that secret and nothing vouched for it since; True if deleted."""
    with transaction.atomic():
        locked = Installation.objects.locked(installation.client_key)
        if (
            locked is None
            or locked.pk != installation.pk
            or locked.shared_secret != installation.shared_secret
            or not is_vouched_for_by_nobody(locked)
        ):
            return False
        locked.delete()
    logger.warning(
        "installation removed: Bitbucket refused its secret, so its installed callback was "
        "not Bitbucket's: client_key=%s",
        printable(installation.client_key),
    )
    return True
