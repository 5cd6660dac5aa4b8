"""Helpers to deliver Connect webhooks to the ``webhook`` view in tests.

- ``installation(...)``: an installed Installation row with a shared secret.
- ``webhook_token(secret, ...)``: a Connect JWT over ``POST <webhook path>``, as Bitbucket
  signs a delivery (``iss`` the clientKey, qsh relative to the base URL's path).
- ``delivery_body(...)``: a body in Connect's envelope, ``{"event": ..., "data": ...}``.
- ``delivery_headers(...)``: the headers Bitbucket sends with it, as WSGI ``META`` keys.
- ``http_headers(token, ...)``: the same as plain HTTP header names (live servers, agents).
- ``post_webhook(client, ...)``: POSTs a delivery, signed with ``secret`` unless ``token``
  (or ``authorization``) says otherwise.
- ``delivery_rows()``: every WebhookDelivery row, to compare before/after.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.test import Client
from django.urls import reverse

from bitbucket_install.models import Installation, WebhookDelivery
from tests.lifecycle_helpers import CLIENT_KEY, SHARED_SECRET, lifecycle_token

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

REQUEST_UUID = "5d5f8a3e-6b1c-4f2a-9e3d-7c8b9a0f1e2d"
EVENT = "repo:push"


def installation(client_key: str = CLIENT_KEY, secret: str = SHARED_SECRET) -> Installation:
    row: Installation = Installation.objects.create(
        client_key=client_key, shared_secret=secret, principal_name="Acme Team"
    )
    return row


def webhook_path() -> str:
    return reverse("bitbucket_install:webhook")


def webhook_token(
    secret: str = SHARED_SECRET,
    path: str | None = None,
    *,
    iss: str = CLIENT_KEY,
    **claims: Any,
) -> str:
    """A delivery's token over ``POST path`` (default: the webhook view's)."""
    return lifecycle_token(secret, webhook_path() if path is None else path, iss=iss, **claims)


def delivery_body(event: str = EVENT, **data: Any) -> dict[str, Any]:
    return {
        "event": event,
        "data": {
            "repository": {"full_name": "acme/widgets", "type": "repository"},
            "actor": {"type": "user", "display_name": "Ada Admin"},
            **data,
        },
    }


def delivery_headers(
    token: str | None = None,
    *,
    event: str | None = EVENT,
    request_uuid: str | None = REQUEST_UUID,
    authorization: str | None = None,
) -> dict[str, str]:
    """``Authorization: JWT <token>``, ``X-Event-Key`` and ``X-Request-UUID`` as META keys;
    None leaves a header out, ``authorization`` replaces the whole first one."""
    headers = {"HTTP_X_ATTEMPT_NUMBER": "1", "HTTP_USER_AGENT": "Bitbucket-Webhooks/2.0"}
    if authorization is None and token is not None:
        authorization = f"JWT {token}"
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    if event is not None:
        headers["HTTP_X_EVENT_KEY"] = event
    if request_uuid is not None:
        headers["HTTP_X_REQUEST_UUID"] = request_uuid
    return headers


def http_headers(
    token: str, *, event: str = EVENT, request_uuid: str = REQUEST_UUID
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Authorization": f"JWT {token}",
        "X-Event-Key": event,
        "X-Request-UUID": request_uuid,
        "X-Attempt-Number": "1",
    }


def post_webhook(
    client: Client,
    body: dict[str, Any] | list[Any] | bytes | str | None = None,
    *,
    secret: str = SHARED_SECRET,
    token: str | None = None,
    query: str = "",
    event: str | None = EVENT,
    request_uuid: str | None = REQUEST_UUID,
    authorization: str | None = None,
    unsigned: bool = False,
    **extra: Any,
) -> TestResponse:
    """POST a delivery (``delivery_body()`` unless ``body``) to the webhook view.

    Signed with ``secret`` over this request (path and ``query``) unless ``token`` is
    given or ``unsigned``; ``extra`` adds META keys (``CONTENT_LENGTH=...``).
    """
    if body is None:
        body = delivery_body()
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    path = webhook_path()
    if token is None and not unsigned:
        token = webhook_token(secret, query_string=query)
    headers = delivery_headers(
        token, event=event, request_uuid=request_uuid, authorization=authorization
    )
    url = f"{path}?{query}" if query else path
    return client.post(url, data=data, content_type="application/json", **{**headers, **extra})


def delivery_rows() -> list[dict[str, Any]]:
    """Every WebhookDelivery row as a dict, in primary key order."""
    return list(WebhookDelivery.objects.order_by("pk").values())
