"""Concurrent redeliveries of one webhook delivery (the same ``X-Request-UUID``).

Bitbucket redelivers after a timeout or a 5xx, so copies of a delivery can arrive at the
same moment. Whatever the timing: every copy is answered 204, one WebhookDelivery row is
recorded, and ``webhook_received`` is sent once.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from bitbucket_install.models import Installation, WebhookDelivery
from tests.concurrency.conftest import SignalLog, http_request, send_together
from tests.webhook_helpers import delivery_body, http_headers, installation, webhook_token

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

CLIENT_KEY = "ari:cloud:bitbucket::app/{webhook-race}/example-app"
SECRET = "secret-of-the-webhook-race-0123456789"
# Each round races on a fresh delivery id: a few rounds make a real overlap likely on
# every run, not just possible.
ROUNDS = 5


def delivery_request(
    live_server: LiveServer, request_uuid: str, attempt: int
) -> urllib.request.Request:
    """One copy of the delivery, with a token of its own (as each redelivery has)."""
    token = webhook_token(SECRET, iss=CLIENT_KEY, iat=int(time.time()) - attempt)
    headers = {**http_headers(token, request_uuid=request_uuid), "X-Attempt-Number": str(attempt)}
    return http_request(
        f"{live_server.url}{reverse('bitbucket_install:webhook')}",
        data=json.dumps(delivery_body()).encode(),
        headers=headers,
        method="POST",
    )


@pytest.mark.parametrize("copies", [2, 5])
def test_concurrent_redeliveries_are_signalled_once(
    live_server: LiveServer, signal_log: SignalLog, copies: int
) -> None:
    hooked = installation(CLIENT_KEY, SECRET)
    for round_number in range(ROUNDS):
        request_uuid = f"00000000-0000-4000-8000-{round_number:012d}"
        requests = [
            delivery_request(live_server, request_uuid, attempt) for attempt in range(copies)
        ]

        responses = send_together(requests)

        assert [response.status for response in responses] == [204] * copies
        assert {response.headers["Cache-Control"] for response in responses} == {"no-store"}
        rows = WebhookDelivery.objects.filter(request_uuid=request_uuid)
        assert rows.count() == 1
        assert rows.get().installation_id == hooked.pk
        sent = [
            kwargs
            for kwargs in signal_log.of("webhook_received")
            if kwargs["event"] == "repo:push"
        ]
        assert len(sent) == round_number + 1
    assert WebhookDelivery.objects.count() == ROUNDS
    assert [kwargs["installation"].pk for kwargs in signal_log.of("webhook_received")] == [
        hooked.pk
    ] * ROUNDS
    assert signal_log.names() == ["webhook_received"] * ROUNDS
    # The deliveries changed nothing of the installation.
    assert Installation.objects.get().shared_secret == SECRET
