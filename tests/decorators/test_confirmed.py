"""``connect_jwt_required(confirmed=True)`` and the notion behind it on the model:
``Installation.is_confirmed`` and ``Installation.objects.confirmed()``, both read from
``Installation.CONFIRMATION_FIELDS``."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.decorators.conftest import CLIENT_KEY, OTHER_KEY, async_request, called_views, token
from tests.lifecycle_helpers import installation_rows

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.decorators.views")]


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]


def confirm(installation: Installation) -> None:
    Installation.objects.filter(pk=installation.pk).update(confirmed_at=timezone.now())


@pytest.mark.parametrize("path", ["/confirmed", "/single-confirmed"])
def test_an_unconfirmed_installation_is_refused(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    before = installation_rows()
    response = client.post(path, HTTP_AUTHORIZATION=f"JWT {token(path)}")
    assert response.status_code == 401
    assert response.content == b""
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_lines(caplog) == [
        f"Connect JWT refused on {path}: reason=installation_unconfirmed"
    ]


def test_a_confirmed_installation_passes(client: Client, installation: Installation) -> None:
    confirm(installation)
    response = client.post("/confirmed", HTTP_AUTHORIZATION=f"JWT {token('/confirmed')}")
    assert response.status_code == 200
    assert response.json()["client_key"] == CLIENT_KEY
    assert Installation.objects.get(pk=installation.pk).principal_name == "changed by confirmed"


def test_a_bad_token_of_an_unconfirmed_installation_is_refused_for_the_token(
    client: Client,
    installation: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Confirmation is asked only of a token that verified."""
    before = installation_rows()
    response = client.post("/confirmed", HTTP_AUTHORIZATION=f"JWT {token('/elsewhere')}")
    assert response.status_code == 401
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_lines(caplog) == ["Connect JWT refused on /confirmed: reason=token_qsh"]


def test_views_without_confirmed_accept_an_unconfirmed_installation(
    client: Client, installation: Installation
) -> None:
    response = client.post("/bare", HTTP_AUTHORIZATION=f"JWT {token('/bare')}")
    assert response.status_code == 200


def test_async_confirmed_view(
    installation: Installation, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    before = installation_rows()
    jwt = token("/async-confirmed")
    refused = async_request("POST", "/async-confirmed", jwt)
    assert refused.status_code == 401
    assert called_views() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_lines(caplog) == [
        "Connect JWT refused on /async-confirmed: reason=installation_unconfirmed"
    ]

    confirm(installation)
    accepted = async_request("POST", "/async-confirmed", jwt)
    assert accepted.status_code == 200
    assert called_views() == ["async_confirmed"]


def test_is_confirmed_and_confirmed_follow_the_confirmation_fields(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Installation.objects.get(client_key=OTHER_KEY)
    assert Installation.CONFIRMATION_FIELDS == ("confirmed_at", "verified_at")
    assert not installation.is_confirmed
    assert list(Installation.objects.confirmed()) == []

    confirm(installation)
    installation.refresh_from_db()
    assert installation.is_confirmed
    assert list(Installation.objects.confirmed()) == [installation]
    assert list(Installation.objects.installed().confirmed()) == [installation]

    # Bitbucket's word confirms too, without any browser's.
    Installation.objects.filter(pk=other.pk).update(verified_at=timezone.now())
    other.refresh_from_db()
    assert other.confirmed_at is None
    assert other.is_confirmed
    assert set(Installation.objects.confirmed()) == {installation, other}

    # Both read the tuple itself: without verified_at in it, Bitbucket's word counts for nothing.
    monkeypatch.setattr(Installation, "CONFIRMATION_FIELDS", ("confirmed_at",))
    assert not other.is_confirmed
    assert installation.is_confirmed
    assert set(Installation.objects.confirmed()) == {installation}
