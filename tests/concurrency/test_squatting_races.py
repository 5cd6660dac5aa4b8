"""A squatted clientKey taken back while made-up unsigned ``installed`` callbacks race with
Bitbucket's own for it (``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``). Whatever the timing:
Bitbucket's callback is accepted, the clientKey ends with one row, holding the secret
Bitbucket issued, never a 5xx. (A made-up callback may replace the squatter's row before
Bitbucket's does; Bitbucket's then replaces that one, and after it nothing can.)"""

from __future__ import annotations

import json
import urllib.request

import pytest
from pytest_django.live_server_helper import LiveServer

from bitbucket_install.models import Installation
from tests.client.fake_bitbucket import FakeBitbucket
from tests.concurrency.conftest import SignalLog, http_request, send_together
from tests.genuine.conftest import CHOSEN_SECRET
from tests.genuine.conftest import bitbucket as bitbucket  # the fixture, shared

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

ROUNDS = 4
CONTENDERS = 4


def installed_request(
    live_server: LiveServer, fake: FakeBitbucket, client_key: str, secret: str
) -> urllib.request.Request:
    body = {
        "key": "example-app",
        "clientKey": client_key,
        "sharedSecret": secret,
        "baseUrl": fake.url,
        "baseApiUrl": fake.url,
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": {"uuid": "{workspace-uuid}", "type": "workspace", "display_name": "W"},
    }
    return http_request(
        f"{live_server.url}/bitbucket/installed",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


def test_one_callback_takes_a_squatted_client_key_back(
    live_server: LiveServer, bitbucket: FakeBitbucket, signal_log: SignalLog
) -> None:
    for round_number in range(ROUNDS):
        client_key = f"ari:cloud:bitbucket::app/{{squatted-{round_number}}}/example-app"
        squatter = send_together(
            [installed_request(live_server, bitbucket, client_key, CHOSEN_SECRET)]
        )
        assert [response.status for response in squatter] == [204]
        issued = f"issued-{round_number}-secret-0123456789abcdef"
        bitbucket.secrets[client_key] = issued
        secrets = [issued] + [
            f"racer-{round_number}-{n}-secret-0123456789abcdef" for n in range(CONTENDERS - 1)
        ]

        responses = send_together(
            [installed_request(live_server, bitbucket, client_key, secret) for secret in secrets]
        )

        statuses = [response.status for response in responses]
        assert statuses[0] == 204, statuses
        assert set(statuses[1:]) <= {204, 401}, statuses
        [row] = Installation.objects.filter(client_key=client_key)
        assert row.shared_secret == issued
        assert row.user_id is None
    assert Installation.objects.count() == ROUNDS
    assert signal_log.calls == []
