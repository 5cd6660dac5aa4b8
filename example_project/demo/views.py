"""The example site's pages: the landing page with the button, the user's installations,
Bitbucket's API called as one of them, and the webhooks they received."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import ListView, TemplateView

from bitbucket_install.client import BitbucketClient
from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import (
    BitbucketAPIError,
    RateLimited,
    RequestNotSent,
    TokenRefused,
)
from bitbucket_install.models import Installation
from example_project.demo.models import ReceivedWebhook

if TYPE_CHECKING:
    InstallationList = ListView[Installation]
    ReceivedWebhookList = ListView[ReceivedWebhook]
else:
    InstallationList = ListView
    ReceivedWebhookList = ListView


class HomeView(TemplateView):
    template_name = "demo/home.html"


class InstallationListView(LoginRequiredMixin, InstallationList):
    """The signed-in user's installations, and only theirs."""

    template_name = "demo/installations.html"
    context_object_name = "installations"

    def get_queryset(self) -> QuerySet[Installation]:
        mine: QuerySet[Installation] = Installation.objects.filter(
            user=self.request.user
        ).order_by("-created_at", "-pk")
        return mine


# Where a Bitbucket Cloud installation's API answers; the simulator's is on this site.
API_CALLS = (
    ("user", _("The user (GET /2.0/user)")),
    ("workspaces", _("Workspaces (GET /2.0/workspaces)")),
    ("repositories", _("Repositories of the first workspace (GET /2.0/repositories/{workspace})")),
    ("access_token", _("An access token through the JWT grant (access_token())")),
)


def _outcome(call: str, label: str, work: Callable[[], Any]) -> dict[str, Any]:
    """What one call gave: the JSON it returned, or the error it raised, in words."""
    try:
        result = work()
    except BitbucketAPIError as error:
        if isinstance(error, TokenRefused):
            text = gettext("Bitbucket refused the token (HTTP %(status)s): %(message)s")
        elif isinstance(error, RateLimited):
            text = gettext("Rate limited (HTTP %(status)s), the retries given up: %(message)s")
        else:
            text = gettext("Bitbucket answered HTTP %(status)s: %(message)s")
        shown = text % {"status": error.status, "message": error.message}
    except RequestNotSent as error:
        shown = gettext("Not sent: %(why)s") % {"why": error}
    except httpx.HTTPError as error:
        shown = gettext("No answer: %(why)s") % {"why": type(error).__name__}
    else:
        return {
            "call": call,
            "label": label,
            "result": json.dumps(result, indent=2, ensure_ascii=False),
        }
    return {"call": call, "label": label, "error": shown}


def call_api(installation: Installation) -> list[dict[str, Any]]:
    """Call Bitbucket's API as ``installation``: each call's outcome, in order."""
    outcomes = []
    with BitbucketClient(installation) as bitbucket:
        found: dict[str, Any] = {}

        def workspaces() -> Any:
            found["workspaces"] = bitbucket.get("/2.0/workspaces").json()
            return found["workspaces"]

        def repositories() -> Any:
            listed = found.get("workspaces", {}).get("values") or [{}]
            slug = listed[0].get("slug") or installation.principal_uuid
            return bitbucket.get(f"/2.0/repositories/{quote(str(slug), safe='')}").json()

        def access_token() -> Any:
            token = bitbucket.access_token()
            # Shown only in part: a page is no place for a whole credential.
            return {"access_token": token[:6] + "…", "length": len(token)}

        works: dict[str, Callable[[], Any]] = {
            "user": lambda: bitbucket.get("/2.0/user").json(),
            "workspaces": workspaces,
            "repositories": repositories,
            "access_token": access_token,
        }
        for call, label in API_CALLS:
            outcomes.append(_outcome(call, str(label), works[call]))
    return outcomes


class APIView(LoginRequiredMixin, TemplateView):
    """Calls Bitbucket's API as one of the user's installations (``?installation=<id>``,
    else the most recent one still installed) and shows what came back."""

    template_name = "demo/api.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        mine = Installation.objects.filter(
            user=self.request.user, uninstalled_at__isnull=True
        ).order_by("-created_at", "-pk")
        chosen = self.request.GET.get("installation", "")
        installation = mine.filter(pk=int(chosen)).first() if chosen.isdigit() else mine.first()
        context.update(
            installations=mine,
            installation=installation,
            outcomes=call_api(installation) if installation is not None else [],
        )
        return context


class WebhookListView(LoginRequiredMixin, ReceivedWebhookList):
    """The webhook deliveries recorded for the user's installations, the newest first."""

    template_name = "demo/webhooks.html"
    context_object_name = "deliveries"
    paginate_by = 50

    def get_queryset(self) -> QuerySet[ReceivedWebhook]:
        keys = Installation.objects.filter(user=self.request.user).values("client_key")
        mine: QuerySet[ReceivedWebhook] = ReceivedWebhook.objects.filter(client_key__in=keys)
        return mine

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if app_settings.SIMULATOR:
            context["simulator_console"] = reverse("bitbucket_install:simulator_console")
        return context
