"""What the example site does when an install succeeds or fails: it tells the user; and
when a webhook arrives: it records it (the ``/webhooks/`` page lists them).

A real project would do its own work here too (create a project, schedule a sync, ...).
Receivers run after the installation is committed; one that raises is logged by the app and
harms nothing else.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.dispatch import receiver
from django.utils.translation import gettext

from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed, webhook_received
from bitbucket_install.views import ERROR_MESSAGES, UNKNOWN_ERROR_MESSAGE
from example_project.demo.models import ReceivedWebhook


@receiver(installed, dispatch_uid="example_project.demo.receivers.announce_installed")
def announce_installed(sender: type[Installation], **kwargs: Any) -> None:
    installation: Installation = kwargs["installation"]
    if kwargs["user"] is None:
        # Connected to nobody: the request may be anybody's (an unsigned return can name any
        # clientKey), so it is told nothing about the installation.
        return
    workspace = installation.principal_name or installation.client_key
    text = gettext("The app is installed on %(workspace)s and connected to your account.") % {
        "workspace": workspace
    }
    # fail_silently: a request without the messages middleware must not break the install.
    messages.success(kwargs["request"], text, fail_silently=True)


@receiver(install_failed, dispatch_uid="example_project.demo.receivers.announce_install_failed")
def announce_install_failed(sender: type[Installation], **kwargs: Any) -> None:
    # The app's own words for the error, never the bare code.
    text = str(ERROR_MESSAGES.get(kwargs["error"], UNKNOWN_ERROR_MESSAGE))
    messages.error(kwargs["request"], text, fail_silently=True)


@receiver(webhook_received, dispatch_uid="example_project.demo.receivers.record_webhook")
def record_webhook(sender: type[Installation], **kwargs: Any) -> None:
    # Sent once per delivery (a redelivery is not signalled again), after the app's commit.
    installation: Installation = kwargs["installation"]
    ReceivedWebhook.objects.create(
        client_key=installation.client_key,
        workspace=installation.principal_name,
        event=kwargs["event"],
        payload=kwargs["payload"],
    )
