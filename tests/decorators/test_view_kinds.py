"""The decorator bare and called, on function views, async views and class-based views."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings

from bitbucket_install import replay
from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.decorators import views
from tests.decorators.conftest import CLIENT_KEY, async_request, called_views, token
from tests.lifecycle_helpers import installation_rows

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.decorators.views")]

SYNC_KINDS = [
    pytest.param("/bare", "POST", "bare", id="bare"),
    pytest.param("/called", "POST", "called", id="called-without-arguments"),
    pytest.param("/class", "POST", "class", id="class-based"),
    pytest.param("/class-bare", "GET", "class_bare", id="class-based-bare"),
]
ASYNC_KINDS = [
    pytest.param("/async", "POST", "async_bare", id="async"),
    pytest.param("/async-single", "POST", "async_single", id="async-single-use"),
    pytest.param("/class-async", "POST", "class_async", id="async-class-based"),
]


@pytest.mark.parametrize(("path", "method", "name"), SYNC_KINDS)
def test_sync_kinds_accept_a_good_token(
    client: Client, installation: Installation, path: str, method: str, name: str
) -> None:
    response = client.generic(method, path, HTTP_AUTHORIZATION=f"JWT {token(path, method)}")
    assert response.status_code == 200
    assert response.json() == {"view": name, "client_key": CLIENT_KEY, "iss": CLIENT_KEY}
    [(called, request)] = views.calls
    assert called == name
    assert request.bitbucket_installation == installation  # type: ignore[attr-defined]
    assert Installation.objects.get(pk=installation.pk).principal_name == f"changed by {name}"


@pytest.mark.parametrize(("path", "method", "name"), SYNC_KINDS + ASYNC_KINDS)
def test_every_kind_refuses_a_bad_token(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    path: str,
    method: str,
    name: str,
) -> None:
    before = installation_rows()
    bad = token(path, method, secret="not-the-secret")
    if path.startswith(("/async", "/class-async")):
        response = async_request(method, path, bad)
    else:
        response = client.generic(method, path, HTTP_AUTHORIZATION=f"JWT {bad}")
    assert response.status_code == 401
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"] == [
        f"Connect JWT refused on {path}: reason=token_signature"
    ]


@pytest.mark.parametrize(("path", "method", "name"), ASYNC_KINDS)
def test_async_kinds_accept_a_good_token(
    installation: Installation, path: str, method: str, name: str
) -> None:
    response = async_request(method, path, token(path, method))
    assert response.status_code == 200
    assert called_views() == [name]
    assert Installation.objects.get(pk=installation.pk).principal_name == f"changed by {name}"


@pytest.mark.parametrize("path", ["/async-single", "/class-async"])
def test_async_single_use_refuses_a_replay(
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    jwt = token(path)
    assert async_request("POST", path, jwt).status_code == 200
    before = installation_rows()
    caplog.clear()

    again = async_request("POST", path, jwt)

    assert again.status_code == 401
    assert len(called_views()) == 1
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"] == [
        f"Connect JWT refused on {path}: reason=token_replayed"
    ]


def test_async_single_use_fails_closed(
    installation: Installation, sent_signals: SignalRecorder, settings: Settings
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    before = installation_rows()
    response = async_request("POST", "/async-single", token("/async-single"))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_the_wrappers_are_the_views() -> None:
    for view in (views.bare, views.single, views.async_bare, views.async_single):
        assert getattr(view, "csrf_exempt", False) is True
        assert getattr(view, "login_required", True) is False  # LoginRequiredMiddleware
    assert views.bare.__name__ == "bare"
    assert views.bare.__doc__ == "A bare-decorated function view."
    assert views.async_bare.__name__ == "async_bare"
    assert inspect.iscoroutinefunction(views.async_bare)
    assert inspect.iscoroutinefunction(views.async_single)
    assert not inspect.iscoroutinefunction(views.bare)
    assert not inspect.iscoroutinefunction(views.single)


def test_single_use_views_are_marked_for_the_check() -> None:
    marked = [
        view
        for view in (views.bare, views.called, views.single, views.confirmed, views.async_single)
        if getattr(view, replay.SINGLE_USE_ATTRIBUTE, False)
    ]
    assert marked == [views.single, views.async_single]
    assert getattr(views.SingleUseClassView.dispatch, replay.SINGLE_USE_ATTRIBUTE) is True
    assert getattr(views.AsyncClassView.post, replay.SINGLE_USE_ATTRIBUTE) is True
    assert not hasattr(views.BareClassView.dispatch, replay.SINGLE_USE_ATTRIBUTE)


@pytest.mark.parametrize("argument", [True, "single_use"])
def test_a_positional_argument_that_is_no_view_is_refused(argument: Any) -> None:
    with pytest.raises(TypeError, match=r"connect_jwt_required\(single_use=True\)"):
        connect_jwt_required(argument)


def test_a_view_marked_as_a_coroutine_function_gets_the_async_wrapper(
    installation: Installation,
) -> None:
    """Such as one another async-capable decorator returned (asgiref's marker, which
    ``inspect`` does not see before Python 3.12): its coroutine is awaited, and the
    installation looked up through the async ORM."""

    async def handler(request: Any) -> HttpResponse:
        return HttpResponse(request.bitbucket_installation.client_key)

    def marked(request: Any) -> Any:
        return handler(request)

    markcoroutinefunction(marked)
    decorated = connect_jwt_required(single_use=True)(marked)
    assert iscoroutinefunction(decorated)
    request = RequestFactory().get("/x", HTTP_AUTHORIZATION=f"JWT {token('/x', 'GET')}")
    response = async_to_sync(decorated)(request)
    assert response.status_code == 200
    assert response.content == CLIENT_KEY.encode()
    assert response["Cache-Control"] == "private"
