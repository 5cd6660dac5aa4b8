"""The minimal hand-written return view: no JWT, no flow, no signal. Unsafe by design."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
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
