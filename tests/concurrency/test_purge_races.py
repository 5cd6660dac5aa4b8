"""``bitbucket_install_purge`` against a re-install of a row it is about to delete.

When any pre/post_delete receiver of Installation exists, Django's delete first selects
the rows, sends pre_delete, then deletes them by primary key. A re-install (the signed
``installed`` callback of that clientKey) committed in between used to be deleted with the
stale row: the workspace had the app installed, and the app had no row and no secret for
it. The purge now locks its batch first, so the re-install waits for the batch to commit
and then installs afresh; either way the re-installed row is there at the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models.signals import pre_delete
from django.urls import reverse
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from bitbucket_install.models import Installation
from tests.concurrency.conftest import REQUEST_TIMEOUT, Response, SignalLog, http_request, send
from tests.lifecycle_helpers import lifecycle_body, lifecycle_token

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

# Keys of this registered app (example-app), as Bitbucket makes them.
CLIENT_KEY = "ari:cloud:bitbucket::app/{purge-race}/example-app"
STALE_KEY = "ari:cloud:bitbucket::app/{purge-stale}/example-app"
KEPT_SECRET = "secret-kept-since-the-uninstall-0123"
NEW_SECRET = "secret-of-the-re-install-456789abc"
# How long the purge, between choosing its rows and deleting them, waits for the
# re-install to answer: far longer than the callback takes when nothing holds it up.
WAIT_SECONDS = 5.0


class Reinstall:
    """The signed ``installed`` callback of ``CLIENT_KEY``, sent from a thread of its own
    the first time the purge is about to delete that row (a pre_delete receiver)."""

    def __init__(self, live_server: LiveServer) -> None:
        path = reverse("bitbucket_install:installed")
        body = lifecycle_body("installed", client_key=CLIENT_KEY, shared_secret=NEW_SECRET)
        token = lifecycle_token(KEPT_SECRET, path, iss=CLIENT_KEY)
        self.request = http_request(
            f"{live_server.url}{path}",
            method="POST",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"JWT {token}"},
        )
        self.thread: threading.Thread | None = None
        self.responses: list[Response] = []
        self.answered_before_the_delete: bool | None = None

    def send(self) -> None:
        self.responses.append(send(self.request))

    def between_select_and_delete(self, instance: Installation, **kwargs: Any) -> None:
        if instance.client_key != CLIENT_KEY or self.thread is not None:
            return
        self.thread = threading.Thread(target=self.send)
        self.thread.start()
        self.thread.join(WAIT_SECONDS)
        self.answered_before_the_delete = not self.thread.is_alive()

    def response(self) -> Response:
        assert self.thread is not None, "the purge never came to delete the row"
        self.thread.join(REQUEST_TIMEOUT)
        [response] = self.responses
        return response


@pytest.fixture
def reinstall(live_server: LiveServer) -> Iterator[Reinstall]:
    racer = Reinstall(live_server)
    pre_delete.connect(racer.between_select_and_delete, sender=Installation, weak=False)
    yield racer
    pre_delete.disconnect(racer.between_select_and_delete, sender=Installation)


def test_a_reinstall_during_the_purge_survives(
    reinstall: Reinstall, signal_log: SignalLog
) -> None:
    long_ago = timezone.now() - timedelta(days=100)
    for client_key in (CLIENT_KEY, STALE_KEY):
        Installation.objects.create(
            client_key=client_key,
            shared_secret=KEPT_SECRET,
            principal_name="Acme Team",
            uninstalled_at=long_ago,
        )

    out = StringIO()
    call_command("bitbucket_install_purge", stdout=out)

    assert reinstall.response().status == 204
    rows = list(Installation.objects.filter(client_key=CLIENT_KEY).values())
    assert len(rows) == 1, "the purge deleted the re-installed row"
    [row] = rows
    assert row["uninstalled_at"] is None
    assert row["shared_secret"] == NEW_SECRET
    assert row["principal_name"] == "Acme Team"
    assert not Installation.objects.filter(client_key=STALE_KEY).exists()
    assert Installation.objects.count() == 1
    # The purge held the row's lock: the re-install waited for the purge to commit (and
    # then installed afresh, trusted on first use).
    assert reinstall.answered_before_the_delete is False
    assert out.getvalue().startswith("2 installation(s) deleted.\n")
    # Lifecycle callbacks and the purge send none of the app's signals.
    assert signal_log.calls == []
