"""The hand-written alternatives the callback view is measured against (figure 1).

``callback``: twenty lines a project might write instead of using the app: read
``clientKey`` from the query and ``update_or_create`` the row, with no verification at all.

``bound_callback``: the same, plus the least a view must do to bind the installation to a
browser and its logged-in user as trust rule 2 asks: read ``request.user`` (this browser's
session, then its user) and write one note back to the session (what makes the app's flow
single-use). Still no JWT, no flow check, no signal: it measures what Django's sessions and
auth cost by themselves, so the app's own cost shows apart from theirs.

Both are served by the same gunicorn, settings and middleware as the app
(``benchmarks.baseline.settings``), on the same ``Installation`` table. Unsafe by design.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from bitbucket_install.models import Installation


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
