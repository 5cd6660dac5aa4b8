"""Shared by the landing's tests: an installation whose ``installed`` callback just came,
the query Bitbucket appends to the descriptor's ``postInstallRedirect``, and Bitbucket's
answer to the genuine check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from bitbucket_install import genuine
from bitbucket_install.landing import OFFER_SESSION_KEY
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token

LANDING_PATH = "/bitbucket/landing/"
WORKSPACE_UUID = "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}"  # lifecycle_body's principal


def landing_query(workspace_uuid: str = WORKSPACE_UUID, **extra: str) -> str:
    """The context parameters Bitbucket fills in, and anything else given."""
    return urlencode(
        {"user_uuid": workspace_uuid, "user_username": "acme", "user_type": "team", **extra}
    )


def signed_landing_url(
    client_key: str,
    secret: str,
    *,
    with_client_key: bool = True,
    iss: str | None = None,
    path: str = LANDING_PATH,
    base_path: str = "",
) -> str:
    """The landing's URL with a ``jwt`` over exactly that GET (and ``clientKey`` if asked)."""
    query = landing_query(**({"clientKey": client_key} if with_client_key else {}))
    token = encode_token(
        {"iss": client_key if iss is None else iss},
        secret,
        method="GET",
        path=path,
        query_string=query,
        base_path=base_path,
    )
    return f"{path}?{query}&{urlencode({'jwt': token})}"


def age_install(client_key: str, seconds: float) -> None:
    """Pretend the ``installed`` callback of ``client_key`` came ``seconds`` earlier."""
    Installation.objects.filter(client_key=client_key).update(
        installed_at=timezone.now() - timedelta(seconds=seconds)
    )


def offer_of(client: Client) -> Any:
    """The offer in ``client``'s session (without creating a session when it has none)."""
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    if cookie is None or not cookie.value:
        return None
    return client.session.get(OFFER_SESSION_KEY)


def bitbucket_answers(monkeypatch: pytest.MonkeyPatch, answer: int | Exception) -> list[str]:
    """Bitbucket's answer to the genuine check (a status, or an exception raised for each
    call); the list collects the paths it was asked."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"values": []} if answer == 200 else {})

    monkeypatch.setattr(genuine, "transport", httpx.MockTransport(handler))
    return asked
