"""Figure 6: prepared calls from Bitbucket to a project's own view and to the webhook view.

Every call is signed as Bitbucket signs its calls to an app: ``Authorization: JWT <token>``,
HS256 with the installation's own shared secret, ``iss`` its clientKey and ``qsh`` over that
very request (method, path, query). The tokens are made here, before the timed part, one per
request; the views verify each in full. The installations (``create_installations``) are
written beforehand, each with a secret of its own, and the calls go to them in turn.

- ``prepare_view_calls``: ``GET <path>?repository=<uuid>``, a new repository each, to the
  view behind ``connect_jwt_required``, to its unprotected twin or to the view that reads no
  installation (the same requests, each with a token over its own path; only the first
  verifies it); the answer must be 200.
- ``prepare_deliveries``: ``POST`` of a ``repo:push`` body with ``X-Event-Key`` and a new
  ``X-Request-UUID`` each, to the app's ``webhook`` view or to its unprotected twin; the
  answer must be 204. ``delivered=True`` records the deliveries first (as if each had been
  received once already), so that the calls measure the redelivery path: answered 204, not
  recorded or signalled again.
"""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from urllib.parse import urlencode

from benchmarks.server import ADDON_KEY
from benchmarks.throughput import TOKEN_LIFETIME, Call, new_client_key

CONNECT_VIEW_PATH = "/baseline/connect-view/"
OPEN_VIEW_PATH = "/baseline/open-view/"
BARE_VIEW_PATH = "/baseline/bare-view/"
WEBHOOK_PATH = "/bitbucket/webhook"
BASELINE_WEBHOOK_PATH = "/baseline/webhook"
EVENT = "repo:push"


def create_installations(count: int) -> list[tuple[str, str]]:
    """``count`` installed installations, each with a secret of its own: (clientKey,
    secret) of each. Needs Django set up with the served site's settings and database."""
    from django.utils import timezone

    from bitbucket_install.models import Installation

    now = timezone.now()
    rows = [
        Installation(
            client_key=new_client_key(),
            addon_key=ADDON_KEY,
            shared_secret=secrets.token_urlsafe(32),
            base_url="https://bitbucket.org",
            base_api_url="https://api.bitbucket.org",
            product_type="bitbucket",
            installed_at=now,
        )
        for _ in range(count)
    ]
    Installation.objects.bulk_create(rows, batch_size=1000)
    return [(row.client_key, row.shared_secret) for row in rows]


def _authorization(
    installation: tuple[str, str], method: str, path: str, query: str = ""
) -> dict[str, str]:
    from bitbucket_install.tokens import encode_token

    client_key, secret = installation
    token = encode_token(
        {"iss": client_key},
        secret,
        method=method,
        path=path,
        query_string=query,
        lifetime=TOKEN_LIFETIME,
    )
    return {"Authorization": f"JWT {token}"}


def prepare_view_calls(path: str, count: int, installations: list[tuple[str, str]]) -> list[Call]:
    """``count`` signed GETs of ``path``, each for a new repository, round the
    installations."""
    calls = []
    for _, installation in zip(range(count), itertools.cycle(installations)):
        query = urlencode({"repository": f"{{{uuid.uuid4()}}}"})
        calls.append(
            Call(
                path=f"{path}?{query}",
                cookie="",
                status=200,
                location="",
                headers=_authorization(installation, "GET", path, query),
            )
        )
    return calls


def push_payload() -> str:
    """A ``repo:push`` delivery's body in Connect's envelope, the size of a real one."""
    repository = {
        "type": "repository",
        "uuid": f"{{{uuid.uuid4()}}}",
        "full_name": "acme/widgets",
        "name": "widgets",
        "is_private": True,
        "scm": "git",
        "links": {"html": {"href": "https://bitbucket.org/acme/widgets"}},
        "workspace": {"type": "workspace", "slug": "acme", "uuid": f"{{{uuid.uuid4()}}}"},
    }
    actor = {
        "type": "user",
        "display_name": "Ada Lovelace",
        "uuid": f"{{{uuid.uuid4()}}}",
        "account_id": "557058:" + uuid.uuid4().hex,
        "nickname": "ada",
    }
    commit = {
        "type": "commit",
        "hash": secrets.token_hex(20),
        "message": "Make the widgets spin faster\n",
        "author": {"type": "author", "raw": "Ada Lovelace <ada@example.com>", "user": actor},
        "date": "2026-12-02T10:00:00+00:00",
    }
    change = {
        "old": {
            "type": "branch",
            "name": "main",
            "target": dict(commit, hash=secrets.token_hex(20)),
        },
        "new": {"type": "branch", "name": "main", "target": commit},
        "created": False,
        "forced": False,
        "closed": False,
        "commits": [commit],
        "truncated": False,
    }
    data = {"actor": actor, "repository": repository, "push": {"changes": [change]}}
    return json.dumps({"event": EVENT, "data": data})


def prepare_deliveries(
    path: str, count: int, installations: list[tuple[str, str]], *, delivered: bool = False
) -> list[Call]:
    """``count`` signed webhook deliveries to ``path``, each with a new ``X-Request-UUID``,
    round the installations; with ``delivered``, each recorded beforehand (a redelivery)."""
    calls, earlier = [], []
    for _, installation in zip(range(count), itertools.cycle(installations)):
        delivery_id = uuid.uuid4()
        headers = _authorization(installation, "POST", path)
        headers.update(
            {
                "Content-Type": "application/json",
                "X-Event-Key": EVENT,
                "X-Request-UUID": str(delivery_id),
                "User-Agent": "Bitbucket-Webhooks/2.0",
            }
        )
        calls.append(
            Call(
                path=path,
                cookie="",
                status=204,
                location="",
                method="POST",
                headers=headers,
                body=push_payload(),
            )
        )
        earlier.append((installation[0], delivery_id))
    if delivered:
        _record(earlier)
    return calls


def _record(deliveries: list[tuple[str, uuid.UUID]]) -> None:
    """Record ``(clientKey, X-Request-UUID)`` deliveries as received and signalled."""
    from django.utils import timezone

    from bitbucket_install.models import Installation, WebhookDelivery

    by_key = Installation.objects.in_bulk(
        {client_key for client_key, _ in deliveries}, field_name="client_key"
    )
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                installation=by_key[client_key],
                request_uuid=delivery_id,
                event=EVENT,
                received_at=now,
                signalled_at=now,
            )
            for client_key, delivery_id in deliveries
        ],
        batch_size=1000,
    )
