"""The Forge Remote's lifecycle receiver, ``bitbucket_install:forge_lifecycle``:
``avi:forge:installed:app`` and ``avi:forge:upgraded:app``, flat or wrapped in ``payload``.

The Forge installation is the verified token's, never the body's; each event is recorded,
linked to the Connect installation of its workspace, and signalled once, retries
included. Every refusal asserts its status, that no row changed and that nothing was
signalled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.forge import lifecycle
from bitbucket_install.models import ForgeInstallation, Installation
from bitbucket_install.signals import forge_installed, forge_upgraded
from tests.conftest import SignalRecorder
from tests.forge.helpers import APP_ID, INSTALLATION_ID, claims, headers, mint

pytestmark = pytest.mark.django_db(transaction=True)

URL = reverse("bitbucket_install:forge_lifecycle")
WORKSPACE = "b7ea02c9-0871-4858-a2a6-a190d7de977c"  # the vector's
BODY_ID = INSTALLATION_ID.rsplit("/", 1)[-1]


def event(
    event_type: str = lifecycle.INSTALLED, version: str = "1.0.0", **fields: Any
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "id": BODY_ID,
        "app": {"id": APP_ID.rsplit("/", 1)[-1], "version": version},
        "environment": {"id": "aa911f10-c54b-4b93-9e27-dd2947840b9e"},
        **fields,
    }


def deliver(body: object, token: str | None = None, **extra: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Client().post(
        URL,
        data,
        content_type="application/json",
        headers=headers(mint() if token is None else token, **extra),
    )


def rows() -> list[dict[str, Any]]:
    return list(ForgeInstallation.objects.order_by("pk").values())


def test_an_installed_event_is_recorded_from_the_token(sent_signals: SignalRecorder) -> None:
    response = deliver(event())

    assert response.status_code == 204
    assert response["Cache-Control"].startswith("no-store")
    [row] = ForgeInstallation.objects.all()
    assert row.installation_id == INSTALLATION_ID
    assert row.app_id == APP_ID
    assert row.app_version == "1.0.0"
    assert row.workspace_id == WORKSPACE
    assert row.environment_type == "PRODUCTION"
    assert row.api_base_url == "https://api.bitbucket.org"
    assert row.installed_at is not None
    assert row.connect_installation is None
    [sent] = sent_signals.of(forge_installed)
    assert sent["forge_installation"].pk == row.pk
    assert sent["installation"] is None
    assert sent["created"] is True
    assert sent["request"] is not None


def test_it_is_linked_to_the_connect_installation_of_its_workspace(
    sent_signals: SignalRecorder,
) -> None:
    connect = Installation.objects.create(
        client_key="ari:cloud:bitbucket::app/{" + WORKSPACE + "}/example-app",
        principal_uuid="{" + WORKSPACE.upper() + "}",
        shared_secret="s" * 32,
        confirmed_at=timezone.now(),
    )

    assert deliver(event()).status_code == 204

    row = ForgeInstallation.objects.get()
    assert row.connect_installation == connect
    [sent] = sent_signals.of(forge_installed)
    assert sent["installation"] == connect


def test_a_retry_is_answered_again_and_signals_nothing(sent_signals: SignalRecorder) -> None:
    assert deliver(event()).status_code == 204
    before = rows()
    retry = {"payload": {**event(), "retryContext": {"retryCount": 1, "retryData": None}}}

    again = deliver(retry)

    assert again.status_code == 204
    assert [
        {key: value for key, value in row.items() if key != "updated_at"} for row in rows()
    ] == [{key: value for key, value in row.items() if key != "updated_at"} for row in before]
    assert len(sent_signals.of(forge_installed)) == 1


def test_upgrades_are_signalled_once_per_version(sent_signals: SignalRecorder) -> None:
    assert deliver(event()).status_code == 204
    assert deliver(event(lifecycle.UPGRADED, "2.0.0")).status_code == 204
    assert deliver(event(lifecycle.UPGRADED, "2.0.0")).status_code == 204  # a retry
    assert deliver({"payload": event(lifecycle.UPGRADED, "3.0.0")}).status_code == 204

    row = ForgeInstallation.objects.get()
    assert row.app_version == "3.0.0"
    assert row.upgraded_at is not None
    upgrades = sent_signals.of(forge_upgraded)
    assert [sent["forge_installation"].app_version for sent in upgrades] == ["2.0.0", "3.0.0"]
    assert [sent["created"] for sent in upgrades] == [False, False]
    assert len(sent_signals.of(forge_installed)) == 1


def test_an_upgrade_first_makes_the_row(sent_signals: SignalRecorder) -> None:
    assert deliver(event(lifecycle.UPGRADED, "2.0.0")).status_code == 204
    row = ForgeInstallation.objects.get()
    assert row.installed_at is None
    [sent] = sent_signals.of(forge_upgraded)
    assert sent["created"] is True


def test_the_bodys_id_is_never_the_installation(
    sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = deliver(event(id="11111111-2222-4333-8444-555555555555"))
    assert response.status_code == 204
    assert ForgeInstallation.objects.get().installation_id == INSTALLATION_ID
    assert "is not the token's installation" in caplog.text
    caplog.clear()
    # The body's id may be the full ARI too.
    assert deliver(event(id=INSTALLATION_ID)).status_code == 204
    assert "is not the token's installation" not in caplog.text


def test_a_version_that_is_not_text_is_left_out() -> None:
    assert deliver(event(app={"id": APP_ID, "version": 3})).status_code == 204
    assert deliver(event(app="not an object")).status_code == 204
    assert ForgeInstallation.objects.get().app_version == ""


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"installed"',
        json.dumps({"eventType": "avi:forge:uninstalled:app"}).encode(),
        json.dumps({"payload": {"eventType": "avi:jira:created:issue"}}).encode(),
        json.dumps({**event(), "padding": "x" * lifecycle.MAX_BODY_BYTES}).encode(),
        b"[" * 100_000,
    ],
    ids=["not-json", "list", "string", "uninstalled", "other-event", "too-large", "too-deep"],
)
def test_a_body_that_is_no_lifecycle_event_is_refused(
    body: bytes, sent_signals: SignalRecorder
) -> None:
    assert deliver(body).status_code == 400
    assert rows() == []
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "token",
    [
        mint(claims(aud="ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000")),
        mint(claims(iss="someone")),
        "",
    ],
    ids=["other-app", "other-issuer", "none"],
)
def test_a_refused_token_records_nothing(token: str, sent_signals: SignalRecorder) -> None:
    response = Client().post(
        URL,
        json.dumps(event()),
        content_type="application/json",
        headers=headers(token or None),
    )
    assert response.status_code == 401
    assert rows() == []
    assert sent_signals.none_sent


def test_only_post(sent_signals: SignalRecorder) -> None:
    response = Client().get(URL, headers=headers(mint()))
    assert response.status_code == 405
    assert rows() == []
    assert sent_signals.none_sent


def test_without_a_forge_app_there_is_no_receiver(
    settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = None
    assert deliver(event()).status_code == 404
    assert rows() == []
    assert sent_signals.none_sent


def test_a_database_error_is_a_503_and_signals_nothing(
    monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    def failing(*args: Any) -> Any:
        raise DatabaseError("down")

    monkeypatch.setattr(lifecycle, "record", failing)
    assert deliver(event()).status_code == 503
    assert rows() == []
    assert sent_signals.none_sent


def test_a_body_without_an_id_is_recorded_from_the_token() -> None:
    body = event()
    del body["id"]
    assert deliver(body).status_code == 204
    assert ForgeInstallation.objects.get().installation_id == INSTALLATION_ID
