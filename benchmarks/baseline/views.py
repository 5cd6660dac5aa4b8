"""The hand-written alternatives the app's views are measured against (figures 1 and 6).

``callback``: twenty lines a project might write instead of using the app: read
``clientKey`` from the query and ``update_or_create`` the row, with no verification at all.

``bound_callback``: the same, plus the least a view must do to bind the installation to a
browser and its logged-in user as trust rule 2 asks: read ``request.user`` (this browser's
session, then its user) and write one note back to the session (what makes the app's flow
single-use). Still no JWT, no flow check, no signal: it measures what Django's sessions and
auth cost by themselves, so the app's own cost shows apart from theirs.

``connect_view`` and ``open_view`` (figure 6a): one small view of a project's own that
answers for the installation calling it, behind ``connect_jwt_required`` and without it.
Unprotected, it finds that installation as the decorator does (the same query) but by the
token's ``iss`` taken at its word: no signature, no qsh, no times. The difference is what
the protection costs. ``bare_view`` (figure 6d) reads no installation at all: against it,
the decorator's lookup and verification together.

``webhook`` (figure 6b): the app's ``webhook`` view without its protection: it takes the
installation named by the token's ``iss`` without verifying anything (no signature, no
qsh, no times, no second look under a lock), then does the rest as the app does: parse
the JSON body, read the event and the delivery's ``X-Request-UUID``, record the delivery
once, send ``webhook_received`` after the commit, answer 204.

All are served by the same gunicorn, settings and middleware as the app
(``benchmarks.baseline.settings``), on the same tables. Unsafe by design.
"""

from __future__ import annotations

import json
import uuid

import jwt
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation, WebhookDelivery
from bitbucket_install.signals import webhook_received


@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    client_key = request.GET.get("clientKey", "")
    if not client_key:
        return HttpResponseBadRequest()
    Installation.objects.update_or_create(
        client_key=client_key, defaults={"addon_key": "bench-app"}
    )
    return HttpResponseRedirect(reverse("home"), status=303)


@require_GET
def bound_callback(request: HttpRequest) -> HttpResponse:
    client_key = request.GET.get("clientKey", "")
    if not client_key or not request.user.is_authenticated:
        return HttpResponseBadRequest()
    Installation.objects.update_or_create(
        client_key=client_key,
        defaults={"addon_key": "bench-app", "user": request.user, "confirmed_at": timezone.now()},
    )
    request.session["bench_installed"] = client_key
    return HttpResponseRedirect(reverse("home"), status=303)


def unverified_issuer(request: HttpRequest) -> str | None:
    """The ``iss`` of the request's ``Authorization: JWT`` token, verified not at all."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "JWT":
        return None
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None
    return issuer if isinstance(issuer, str) else None


def repository_panel(request: HttpRequest, installation: Installation) -> HttpResponse:
    """What the project's view does for the installation calling it."""
    return JsonResponse(
        {
            "workspace": installation.principal_name or installation.client_key,
            "repository": request.GET.get("repository", ""),
        }
    )


@require_GET
@connect_jwt_required
def connect_view(request: HttpRequest) -> HttpResponse:
    installation: Installation = request.bitbucket_installation  # type: ignore[attr-defined]
    return repository_panel(request, installation)


@require_GET
@login_not_required
@csrf_exempt
def open_view(request: HttpRequest) -> HttpResponse:
    # The decorator's own query, for whatever clientKey the token claims.
    issuer = unverified_issuer(request) or ""
    installation = Installation.objects.installed().filter(client_key=issuer).first()
    if installation is None:
        return HttpResponse(status=401)
    return repository_panel(request, installation)


@require_GET
@login_not_required
@csrf_exempt
def bare_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"repository": request.GET.get("repository", "")})


@login_not_required
@csrf_exempt
@transaction.non_atomic_requests
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    # Unverified: any token naming an installation is taken at its word.
    client_key = unverified_issuer(request)
    if client_key is None:
        return HttpResponse(status=401)
    try:
        payload = json.loads(request.body)
        event = request.headers.get("X-Event-Key") or payload["event"]
        delivery_id = uuid.UUID(request.headers.get("X-Request-UUID", ""))
    except (KeyError, TypeError, ValueError):
        return HttpResponseBadRequest()
    if not isinstance(payload, dict):
        return HttpResponseBadRequest()
    with transaction.atomic():
        installation = Installation.objects.installed().filter(client_key=client_key).first()
        if installation is None:
            return HttpResponse(status=401)
        delivery, created = WebhookDelivery.objects.get_or_create(
            installation=installation,
            request_uuid=delivery_id,
            defaults={"event": event, "signalled_at": timezone.now()},
        )
        if created:
            transaction.on_commit(
                lambda: webhook_received.send_robust(
                    Installation,
                    installation=installation,
                    event=delivery.event,
                    payload=payload,
                    request=request,
                )
            )
    return HttpResponse(status=204)
