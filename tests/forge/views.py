"""A project's own remote endpoints behind ``forge_invocation_required``, one of each kind,
and their URLs. Each records its call, so a refused request can be shown to run nothing."""

from __future__ import annotations

import threading

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View

from bitbucket_install.decorators import forge_invocation_required
from bitbucket_install.forge.decorators import ForgeRequest

_lock = threading.Lock()
calls: list[tuple[str, ForgeRequest]] = []


def record(name: str, request: HttpRequest) -> JsonResponse:
    forge: ForgeRequest = request.forge  # type: ignore[attr-defined]
    with _lock:
        calls.append((name, forge))
    return JsonResponse({"view": name, "installation": forge.invocation.installation_id})


@forge_invocation_required
def remote(request: HttpRequest) -> HttpResponse:
    return record("remote", request)


@forge_invocation_required
async def async_remote(request: HttpRequest) -> HttpResponse:
    return record("async_remote", request)


class RemoteView(View):
    @method_decorator(forge_invocation_required)
    def post(self, request: HttpRequest) -> HttpResponse:
        return record("class", request)


urlpatterns = [
    path("remote", remote),
    path("async-remote", async_remote),
    path("class", RemoteView.as_view()),
    path("bitbucket/", include("bitbucket_install.urls")),
]
