"""The site of the configuration tests: the app under ``bitbucket/``, the admin, a login
page, a public page with the install button (``home``) and a project view behind
``connect_jwt_required`` (``webhook``)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import include, path

from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation

HOME_TEMPLATE = "configurations/home.html"


@login_not_required
def home(request: HttpRequest) -> HttpResponse:
    """A public page of the project with the install button (a Django or Jinja2 template,
    whichever backend the configuration has)."""
    return render(request, HOME_TEMPLATE)


@connect_jwt_required
def webhook(request: HttpRequest, repo: str) -> HttpResponse:
    installation: Installation = request.bitbucket_installation  # type: ignore[attr-defined]
    return JsonResponse({"client_key": installation.client_key, "repo": repo})


@login_not_required
def transaction_probe(request: HttpRequest) -> HttpResponse:
    """Is a view of the project run inside a transaction (ATOMIC_REQUESTS)?"""
    return JsonResponse({"in_atomic_block": transaction.get_connection().in_atomic_block})


urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(template_name="configurations/login.html")),
    path("bitbucket/", include("bitbucket_install.urls")),
    path("hooks/<str:repo>/push", webhook, name="webhook"),
    path("probe/transaction", transaction_probe),
]
