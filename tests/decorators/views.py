"""A project's own views behind ``connect_jwt_required``, one of each kind, and their URLs.

Each view records its call and marks the installation's row (``principal_name``), so a
refused request can be shown to have run nothing and changed nothing. The app's URLs are
included too: system check W007 reads this URLconf as a project's.
"""

from __future__ import annotations

import threading
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View

from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation

_lock = threading.Lock()
calls: list[tuple[str, HttpRequest]] = []


def record(name: str, request: HttpRequest) -> dict[str, Any]:
    with _lock:
        calls.append((name, request))
    installation: Installation = request.bitbucket_installation  # type: ignore[attr-defined]
    claims: dict[str, Any] = request.bitbucket_claims  # type: ignore[attr-defined]
    return {"view": name, "client_key": installation.client_key, "iss": claims["iss"]}


def mark(request: HttpRequest, name: str) -> None:
    Installation.objects.filter(pk=request.bitbucket_installation.pk).update(  # type: ignore[attr-defined]
        principal_name=f"changed by {name}"
    )


async def amark(request: HttpRequest, name: str) -> None:
    await Installation.objects.filter(pk=request.bitbucket_installation.pk).aupdate(  # type: ignore[attr-defined]
        principal_name=f"changed by {name}"
    )


@connect_jwt_required
def bare(request: HttpRequest) -> HttpResponse:
    """A bare-decorated function view."""
    mark(request, "bare")
    return JsonResponse(record("bare", request))


@connect_jwt_required()
def called(request: HttpRequest) -> HttpResponse:
    mark(request, "called")
    return JsonResponse(record("called", request))


@connect_jwt_required(single_use=True)
def single(request: HttpRequest) -> HttpResponse:
    mark(request, "single")
    return JsonResponse(record("single", request))


@connect_jwt_required(confirmed=True)
def confirmed(request: HttpRequest) -> HttpResponse:
    mark(request, "confirmed")
    return JsonResponse(record("confirmed", request))


@connect_jwt_required(single_use=True, confirmed=True)
def single_confirmed(request: HttpRequest) -> HttpResponse:
    mark(request, "single_confirmed")
    return JsonResponse(record("single_confirmed", request))


@connect_jwt_required
def cached(request: HttpRequest) -> HttpResponse:
    """Sets caching headers of its own, as a project's page may."""
    response = JsonResponse(record("cached", request))
    response["Cache-Control"] = "public, max-age=600"
    response["Vary"] = "Cookie"
    response["Referrer-Policy"] = "origin"
    return response


@connect_jwt_required(single_use=True)
def single_cached(request: HttpRequest) -> HttpResponse:
    response = JsonResponse(record("single_cached", request))
    response["Cache-Control"] = "public, max-age=600"
    return response


@connect_jwt_required
async def async_bare(request: HttpRequest) -> HttpResponse:
    """An async view: the decorator's wrapper is async too."""
    await amark(request, "async_bare")
    return JsonResponse(record("async_bare", request))


@connect_jwt_required(single_use=True)
async def async_single(request: HttpRequest) -> HttpResponse:
    await amark(request, "async_single")
    return JsonResponse(record("async_single", request))


@connect_jwt_required(confirmed=True)
async def async_confirmed(request: HttpRequest) -> HttpResponse:
    await amark(request, "async_confirmed")
    return JsonResponse(record("async_confirmed", request))


@method_decorator(connect_jwt_required(single_use=True), name="dispatch")
class SingleUseClassView(View):
    """A class-based view, decorated on ``dispatch``."""

    def post(self, request: HttpRequest) -> HttpResponse:
        mark(request, "class")
        return JsonResponse(record("class", request))


@method_decorator(connect_jwt_required, name="dispatch")
class BareClassView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        mark(request, "class_bare")
        return JsonResponse(record("class_bare", request))


class AsyncClassView(View):
    """An async class-based view, decorated on its async handler."""

    @method_decorator(connect_jwt_required(single_use=True))
    async def post(self, request: HttpRequest) -> HttpResponse:
        await amark(request, "class_async")
        return JsonResponse(record("class_async", request))


urlpatterns = [
    path("bitbucket/", include("bitbucket_install.urls")),
    path("bare", bare),
    path("called", called),
    path("single", single),
    path("confirmed", confirmed),
    path("single-confirmed", single_confirmed),
    path("cached", cached),
    path("single-cached", single_cached),
    path("async", async_bare),
    path("async-single", async_single),
    path("async-confirmed", async_confirmed),
    path("class", SingleUseClassView.as_view()),
    path("class-bare", BareClassView.as_view()),
    path("class-async", AsyncClassView.as_view()),
]
