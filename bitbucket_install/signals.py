"""The app's signals. The sender is always ``Installation``; receivers take ``**kwargs``.

installed(installation, request, user, created)
    A return trip confirmed an installation (or connected it to a user) and it is
    committed. ``user`` is the local user whose flow connected it, or None (no flow of
    this browser, a flow started signed out, or an unsigned return that binds nobody);
    ``created`` is True when this return made the row. With ``user`` None, ``request``
    may be anybody's: tell it nothing about the installation.

install_failed(request, user, error, error_description)
    Bitbucket reported an error, or the return trip failed verification; sent only for a
    return naming a live flow of this browser. ``user`` is the flow's user or None.
    ``error`` is a known code, one of the app's verification reasons, or an unknown code
    as received, cleaned; ``error_description`` is untrusted text, already cleaned and
    length-limited.

uninstalled(installation, request)
    The ``uninstalled`` lifecycle callback was verified and recorded, or a staff user
    marked the installation uninstalled in the admin (``request`` is the admin's).

webhook_received(installation, event, payload, request)
    A webhook delivery was verified (signed with the installation's secret, over this
    request) and recorded: sent once per ``X-Request-UUID``, after the commit. ``event``
    is the event key (``"repo:push"``); ``payload`` is the body's JSON object as Bitbucket
    sent it, which the signature does not cover; ``request`` is the delivery's request.

forge_installed(forge_installation, installation, created, request)
forge_upgraded(forge_installation, installation, created, request)
    A verified Forge lifecycle event (``avi:forge:installed:app``,
    ``avi:forge:upgraded:app``) was recorded in ``forge_installation``, after the commit.
    ``installation`` is the Connect installation it is linked to, or None; ``created`` is
    True when this event made the row.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("bitbucket_install")

installed = Signal()
install_failed = Signal()
uninstalled = Signal()
webhook_received = Signal()
forge_installed = Signal()
forge_upgraded = Signal()


def send_robust(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` so that a failing receiver is logged and harms nothing else."""
    from bitbucket_install.models import Installation

    for receiver, result in signal.send_robust(sender=Installation, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "receiver %r of a bitbucket_install signal raised", receiver, exc_info=result
            )


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send ``signal`` once the current transaction has committed (trust rule 5)."""
    transaction.on_commit(lambda: send_robust(signal, **kwargs))
