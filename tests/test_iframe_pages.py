"""A page Bitbucket shows in an iframe (a Connect web panel or page), as the docs' recipe
writes it: ``xframe_options_exempt`` over ``connect_jwt_required``, and a
``Content-Security-Policy`` whose ``frame-ancestors`` names Bitbucket alone. With Django's
``XFrameOptionsMiddleware`` on, such a view is otherwise answered ``X-Frame-Options: DENY``
and never renders inside Bitbucket."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.clickjacking import xframe_options_exempt
from pytest_django.fixtures import Settings

from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token

CLIENT_KEY = "connection:7171"
SECRET = "iframe-page-secret"
FRAME_ANCESTORS = "frame-ancestors https://bitbucket.org"


@xframe_options_exempt
@connect_jwt_required
def panel(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("<p>Inside Bitbucket</p>")
    response["Content-Security-Policy"] = FRAME_ANCESTORS
    return response


@connect_jwt_required
def unframeable_panel(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<p>Never inside Bitbucket</p>")


urlpatterns = [path("panel", panel), path("unframeable-panel", unframeable_panel)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture(autouse=True)
def _clickjacking_middleware(settings: Settings) -> None:
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret=SECRET)


def signed(url_path: str) -> str:
    query = "lic=none"
    token = encode_token(
        {"iss": CLIENT_KEY}, SECRET, method="GET", path=url_path, query_string=query
    )
    return f"{url_path}?{query}&jwt={token}"


def test_the_recipe_lets_bitbucket_and_only_bitbucket_frame_the_page(client: Client) -> None:
    response = client.get(signed("/panel"))

    assert response.status_code == 200
    assert "X-Frame-Options" not in response
    assert response["Content-Security-Policy"] == FRAME_ANCESTORS


def test_without_the_recipe_the_middleware_forbids_every_frame(client: Client) -> None:
    response = client.get(signed("/unframeable-panel"))

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"


def test_a_refused_token_is_not_framed_either_way(client: Client) -> None:
    response = client.get("/panel?lic=none&jwt=not-a-token")

    assert response.status_code == 401
    assert "Content-Security-Policy" not in response
    assert Installation.objects.get().user is None
