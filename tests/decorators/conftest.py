"""Fixtures of the decorator's tests: two installations, a fresh replay cache per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.http.response import HttpResponseBase
from django.test import AsyncClient
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token
from tests.decorators import views

CLIENT_KEY = "connection:4242"
SECRET = "decorated-view-secret"
OTHER_KEY = "connection:5353"
OTHER_SECRET = "other-decorated-view-secret"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


def locmem() -> dict[str, Any]:
    """A LocMemCache of its own (LocMemCaches with the same LOCATION share entries)."""
    return {"BACKEND": LOCMEM, "LOCATION": f"decorators-{uuid.uuid4().hex}"}


@pytest.fixture(autouse=True)
def _fresh_state(settings: Settings) -> Iterator[None]:
    settings.CACHES = {"default": locmem()}
    views.calls.clear()
    yield
    views.calls.clear()


@pytest.fixture
def installation(db: None) -> Installation:
    """The installation the tokens are for (not confirmed), beside another one."""
    Installation.objects.create(client_key=OTHER_KEY, shared_secret=OTHER_SECRET)
    created: Installation = Installation.objects.create(
        client_key=CLIENT_KEY, shared_secret=SECRET
    )
    return created


def token(
    path: str,
    method: str | None = "POST",
    query_string: str = "",
    *,
    secret: str = SECRET,
    iss: str = CLIENT_KEY,
    now: float | None = None,
    **claims: Any,
) -> str:
    return encode_token(
        {"iss": iss, **claims},
        secret,
        method=method,
        path=path,
        query_string=query_string,
        now=now,
    )


def called_views() -> list[str]:
    return [name for name, _ in views.calls]


def async_request(method: str, path: str, jwt: str | None = None) -> HttpResponseBase:
    """A request through Django's ASGI handler, from this (sync) test: the async ORM's
    thread-sensitive calls come back to this thread, and so see the test's rows. With
    ``jwt``, the token goes in the Authorization header; ``path`` may have a query."""
    headers = {} if jwt is None else {"Authorization": f"JWT {jwt}"}

    async def send() -> HttpResponseBase:
        response: HttpResponseBase = await AsyncClient().generic(method, path, headers=headers)
        return response

    return async_to_sync(send)()
