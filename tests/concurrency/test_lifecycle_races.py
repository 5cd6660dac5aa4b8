"""Concurrent first ``installed`` lifecycle callbacks of one clientKey.

Bitbucket retries callbacks, and two deliveries of the first install can arrive at the
same moment. Whatever the timing: one row per clientKey, never a 5xx, and a second secret
is never taken without a signature (docs/protocol.rst, "Lifecycle callbacks").
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from pytest_django.live_server_helper import LiveServer

from bitbucket_install.models import Installation
from tests.concurrency.conftest import SignalLog, http_request, send_together

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

# Each round races on a fresh clientKey: a few rounds make a real overlap (the insert that
# loses on the unique constraint) likely on every run, not just possible.
ROUNDS = 5


def client_key_of(name: str) -> str:
    """A clientKey of this registered app (example-app), unique to ``name``."""
    return f"ari:cloud:bitbucket::app/{{{name}}}/example-app"


def installed_request(
    live_server: LiveServer, client_key: str, secret: str
) -> urllib.request.Request:
    body = {
        "key": "example-app",
        "clientKey": client_key,
        "sharedSecret": secret,
        "publicKey": "",
        "baseUrl": "https://bitbucket.org",
        "baseApiUrl": "https://api.bitbucket.org",
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": {"uuid": "{workspace-uuid}", "type": "team", "display_name": "Team"},
        "user": {"uuid": "{user-uuid}", "type": "user", "display_name": "Installer"},
    }
    return http_request(
        f"{live_server.url}/bitbucket/installed",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


# Two deliveries at once, and a burst of retries: with three or more, MariaDB's shared
# locks from the losing inserts used to deadlock (503) when taken together.
@pytest.mark.parametrize("deliveries", [2, 5])
def test_identical_first_installs_make_one_row(
    live_server: LiveServer, signal_log: SignalLog, deliveries: int
) -> None:
    for round_number in range(ROUNDS):
        client_key = client_key_of(f"concurrent-same-{round_number}")
        requests = [
            installed_request(live_server, client_key, "the-one-secret") for _ in range(deliveries)
        ]

        responses = send_together(requests)
        statuses = [response.status for response in responses]

        assert set(statuses) in ({204}, {204, 401}), statuses
        assert {response.headers["Cache-Control"] for response in responses} == {"no-store"}
        rows = list(Installation.objects.filter(client_key=client_key).values())
        assert len(rows) == 1
        assert rows[0]["shared_secret"] == "the-one-secret"
        assert rows[0]["uninstalled_at"] is None
    assert Installation.objects.count() == ROUNDS
    # Lifecycle installs send nothing: only the browser's return trip sends `installed`.
    assert signal_log.calls == []


def test_first_installs_with_different_secrets_keep_the_winner(
    live_server: LiveServer, signal_log: SignalLog
) -> None:
    for round_number in range(ROUNDS):
        client_key = client_key_of(f"concurrent-rival-{round_number}")
        secrets = ["secret-of-request-a", "secret-of-request-b"]
        requests = [installed_request(live_server, client_key, secret) for secret in secrets]

        statuses = [response.status for response in send_together(requests)]

        assert sorted(statuses) == [204, 401], statuses
        winner = secrets[statuses.index(204)]
        rows = list(Installation.objects.filter(client_key=client_key).values())
        assert len(rows) == 1
        assert rows[0]["shared_secret"] == winner
    assert Installation.objects.count() == ROUNDS
    assert signal_log.calls == []
