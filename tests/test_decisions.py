"""What ``returns.decide`` makes of a return: the decision the callback view renders,
read as it leaves the policy (the view's pages show only part of it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install import returns, views
from bitbucket_install.returns import Decision, Outcome
from tests.callback_helpers import (
    KEY_A,
    flow_id_of,
    flow_path,
    login,
    return_url,
    unregistered,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[Decision]:
    made: list[Decision] = []
    decide = returns.decide

    def recording(*args: Any) -> Decision:
        decision = decide(*args)
        made.append(decision)
        return decision

    monkeypatch.setattr(views, "decide", recording)
    return made


def test_a_failed_return_names_the_flow_it_used(decisions: list[Decision]) -> None:
    client = Client()
    login(client, "ada")
    path = flow_path(client, "/after/")
    query = urlencode({"error": "access_denied", "error_description": "No thanks"})

    assert client.get(return_url(query, path)).status_code == 303

    [decision] = decisions
    assert decision.outcome is Outcome.FAILED
    assert decision.flow is not None
    assert decision.flow.hash == flows.flow_hash(flow_id_of(path))
    assert (decision.error, decision.error_description) == ("access_denied", "No thanks")


def test_an_unsigned_return_names_its_flow_and_key(
    settings: Settings, decisions: list[Decision]
) -> None:
    unregistered(settings)
    client = Client()
    login(client, "ada")
    path = flow_path(client, "/after/")

    assert client.get(return_url(urlencode({"clientKey": KEY_A}), path)).status_code == 303

    [decision] = decisions
    assert decision.outcome is Outcome.UNVERIFIED
    assert decision.flow is not None
    assert decision.flow.hash == flows.flow_hash(flow_id_of(path))
    assert (decision.pending_client_key, decision.next) == (KEY_A, "/after/")
    assert (decision.connection, decision.installation) == ("", None)
