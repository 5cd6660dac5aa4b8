"""The simulator's record of ``PUT /2.0/addon`` (how many each installation sent) and its
switch that makes chosen installations refuse it (403 or 404), which the descriptor push's
tests use."""

from __future__ import annotations

import pytest
from django.test import Client

from bitbucket_install.simulator import state
from tests.conftest import SignalRecorder
from tests.simulator.test_api import (
    CLIENT_KEY,
    SCOPES,
    _scopes,
    assert_error,
    call,
    simulated_installation,  # noqa: F401  (the autouse fixture of those tests)
)


def test_each_put_is_counted(client: Client) -> None:
    assert state.addon_updates(CLIENT_KEY) == 0
    assert call(client, "PUT", "/2.0/addon", body={}).status_code == 204
    assert call(client, "PUT", "/2.0/addon", body={}).status_code == 204
    assert state.addon_updates(CLIENT_KEY) == 2
    assert state.addon_updates("connection:other") == 0


@pytest.mark.parametrize(
    ("status", "message"), [(403, "Improper authentication."), (404, "Resource not found")]
)
def test_a_chosen_installation_refuses_it(
    client: Client, sent_signals: SignalRecorder, status: int, message: str
) -> None:
    state.refuse_addon_update(CLIENT_KEY, status)
    assert state.addon_update_refusal(CLIENT_KEY) == status

    response = call(client, "PUT", "/2.0/addon", body={})

    assert_error(response, status)
    assert response.json()["error"]["message"] == message
    assert state.addon_updates(CLIENT_KEY) == 1  # counted, refused or not
    assert _scopes() == SCOPES
    assert sent_signals.none_sent

    state.refuse_addon_update(CLIENT_KEY, None)
    assert state.addon_update_refusal(CLIENT_KEY) is None
    assert call(client, "PUT", "/2.0/addon", body={}).status_code == 204
    assert state.addon_updates(CLIENT_KEY) == 2


def test_only_those_refusals(client: Client) -> None:
    with pytest.raises(ValueError, match=r"\[403, 404\]"):
        state.refuse_addon_update(CLIENT_KEY, 500)
    assert state.addon_update_refusal(CLIENT_KEY) is None
    assert call(client, "PUT", "/2.0/addon", body={}).status_code == 204
