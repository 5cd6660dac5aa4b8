"""The simulated Bitbucket knows which installations it made: with
``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET`` an install through the simulator is connected
(its API accepts the stored secret), and a made-up one, whose ``installed`` callback the
simulator never sent, is refused at binding (its API answers 401)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import genuine, task_framework
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.simulator.base import Workspace
from tests.callback_helpers import flow_ids, flow_return, login, start_flow
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle
from tests.simulator.helpers import APP_KEY, BASE_URL, Router, django_transport, grant

pytestmark = pytest.mark.django_db(transaction=True)

MADE_UP_SECRET = "a-secret-nobody-at-bitbucket-issued-0123456789"


@pytest.fixture(autouse=True)
def confirming(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True
    dummy = f"{task_framework.framework().__name__}.backends.dummy.DummyBackend"
    settings.TASKS = {"default": {"BACKEND": dummy}}
    # The app's calls to the simulated API, through Django's test client.
    monkeypatch.setattr(genuine, "transport", django_transport(Client()))


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def test_an_install_through_the_simulator_is_connected(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    user = login(client, "ada")
    authorize = start_flow(client)["Location"]

    back = grant(client, path_of(authorize), workspace="Acme Team")
    assert back.status_code == 302
    returned = client.get(path_of(back["Location"]))

    assert returned.status_code == 303
    client_key = f"ari:cloud:bitbucket::app/{Workspace.named('Acme Team').uuid}/{APP_KEY}"
    row = Installation.objects.get(client_key=client_key)
    assert row.user_id == user.pk
    assert row.verified_at is not None
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user


def test_an_installation_the_simulator_never_made_is_refused(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    client_key = f"ari:cloud:bitbucket::app/{Workspace.named('Victim').uuid}/{APP_KEY}"
    forged = lifecycle_body(
        client_key=client_key,
        shared_secret=MADE_UP_SECRET,
        baseUrl=BASE_URL + "/bitbucket/simulator",
        baseApiUrl=BASE_URL + "/bitbucket/simulator/api",
    )
    assert post_lifecycle(Client(), "installed", forged).status_code == 204
    before = installation_rows()
    login(client, "mallory")
    start_flow(client)
    path = f"/bitbucket/callback/{flow_ids(client)[-1]}/"

    response = flow_return(client, client_key, MADE_UP_SECRET, path)

    assert response.status_code == 400
    assert installation_rows() == before
    assert not sent_signals.of(installed)
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "installation_not_genuine"
    assert genuine.ask(Installation.objects.get(client_key=client_key)) is genuine.Verdict.MADE_UP
