"""The app's signals. The sender is always ``Installation``; receivers take ``**kwargs``.

installed(installation, request, user, created)
    An installation was confirmed by the browser's return trip and is committed.
    ``user`` is the local user who started the flow here, or None when the return trip
    carried no flow of this browser; ``created`` is True when this return made the row.

install_failed(request, user, error, error_description)
    Bitbucket reported an error, or the return trip failed verification. ``error`` is a
    known code, one of the app's verification reasons, or an unknown code as received,
    cleaned; ``error_description`` is untrusted text, already length-limited.

uninstalled(installation, request)
    The ``uninstalled`` lifecycle callback was verified and recorded.
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
