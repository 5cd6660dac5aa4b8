"""With ``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``, the return trip confirms an installation,
or connects it to a user, only once Bitbucket has vouched for it; a made-up one is refused
like any other rejection, and Bitbucket without an answer gives the "try again" page."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from tests.callback_helpers import (
    APP_SECRET,
    CALLBACK_PATH,
    KEY_A,
    RESULT_PATH,
    flow_ids,
    flow_path,
    flow_return,
    installed_via_lifecycle,
    login,
    unregistered,
)
from tests.client.fake_bitbucket import Answer, FakeBitbucket
from tests.conftest import SignalRecorder
from tests.genuine.conftest import CHOSEN_SECRET, ISSUED_SECRET, checks, on
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_genuine_installation_is_connected_after_one_check(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    user = login(client, "ada")
    installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    path = flow_path(client)

    response = flow_return(client, KEY_A, ISSUED_SECRET, path)

    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    row = Installation.objects.get(client_key=KEY_A)
    assert row.user_id == user.pk
    assert row.verified_at is not None
    assert row.confirmed_at is not None
    assert checks(bitbucket) == ["/2.0/addon/linkers"]
    assert bitbucket.problems == []
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    assert sent["installation"].pk == row.pk

    # Bitbucket's word is kept: another flow of the same user asks nothing more.
    again = flow_return(client, KEY_A, ISSUED_SECRET, flow_path(client))
    assert again.status_code == 303
    assert checks(bitbucket) == ["/2.0/addon/linkers"]


def test_a_made_up_first_install_is_refused_at_binding(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    # Bitbucket never made this installation: its callback came from whoever chose the
    # secret, who signs the return with it too.
    login(client, "mallory")
    installed_via_lifecycle(KEY_A, CHOSEN_SECRET, **on(bitbucket))
    before = installation_rows()
    path = flow_path(client)

    response = flow_return(client, KEY_A, CHOSEN_SECRET, path)

    assert response.status_code == 400
    assert installation_rows() == before
    assert Installation.objects.get(client_key=KEY_A).user_id is None
    assert not sent_signals.of(installed)
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "installation_not_genuine"
    assert flow_ids(client) == []  # used up, as by any rejection
    assert checks(bitbucket) == ["/2.0/addon/linkers"]


def test_without_the_setting_the_same_forgery_is_recorded_and_then_bound(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder, settings: Settings
) -> None:
    """What the setting closes: trust on first use binds whoever forged the first install."""
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = False
    mallory = login(client, "mallory")
    recorded = installed_via_lifecycle(KEY_A, CHOSEN_SECRET, **on(bitbucket))
    assert recorded.user_id is None
    assert sent_signals.none_sent

    response = flow_return(client, KEY_A, CHOSEN_SECRET, flow_path(client))

    assert response.status_code == 303
    assert Installation.objects.get(client_key=KEY_A).user_id == mallory.pk
    assert bitbucket.received == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_bitbucket_without_an_answer_binds_nobody_and_asks_for_a_retry(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder, status: int
) -> None:
    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    user = login(client, "ada")
    installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    before = installation_rows()
    path = flow_path(client)
    bitbucket.script = [Answer.json(status, {})]

    response = flow_return(client, KEY_A, ISSUED_SECRET, path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert len(flow_ids(client)) == 1  # the flow is still live: the reload can work

    reloaded = flow_return(client, KEY_A, ISSUED_SECRET, path)
    assert reloaded.status_code == 303
    assert Installation.objects.get(client_key=KEY_A).user_id == user.pk
    assert len(sent_signals.of(installed)) == 1


def test_a_return_before_the_callback_waits_for_it(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    """Signed with the app-level secret, the return is Bitbucket's; but no row holds a
    secret to ask Bitbucket about yet, so nothing is recorded until the callback is in."""
    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    user = login(client, "ada")
    path = flow_path(client)

    early = flow_return(client, KEY_A, APP_SECRET, path)

    assert early.status_code == 503
    assert installation_rows() == []
    assert sent_signals.none_sent
    assert bitbucket.received == []

    installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    late = flow_return(client, KEY_A, APP_SECRET, path)
    assert late.status_code == 303
    row = Installation.objects.get(client_key=KEY_A)
    assert row.user_id == user.pk
    assert row.verified_at is not None


def test_a_plain_signed_return_confirms_only_a_genuine_installation(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    from tests.callback_helpers import signed_query

    installed_via_lifecycle(KEY_A, CHOSEN_SECRET, **on(bitbucket))
    before = installation_rows()

    refused = client.get(CALLBACK_PATH + "?" + signed_query(KEY_A, CHOSEN_SECRET))

    assert refused.status_code == 400
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_an_unsigned_return_records_only_a_genuine_installation(
    client: Client, bitbucket: FakeBitbucket, sent_signals: SignalRecorder, settings: Settings
) -> None:
    unregistered(settings)
    key_made_up = "connection:1"
    key_genuine = "connection:2"
    bitbucket.secrets[key_genuine] = ISSUED_SECRET
    for key, secret in [(key_made_up, CHOSEN_SECRET), (key_genuine, ISSUED_SECRET)]:
        installed_via_lifecycle(key, secret, **on(bitbucket, key="example-app"))
    before = installation_rows()

    made_up = client.get(CALLBACK_PATH + "?" + urlencode({"clientKey": key_made_up}))
    genuine = Client().get(CALLBACK_PATH + "?" + urlencode({"clientKey": key_genuine}))

    # One answer for both (it tells nobody which is which); only the genuine one recorded.
    assert made_up.status_code == genuine.status_code == 200
    assert installation_rows()[0] == before[0]
    recorded = Installation.objects.get(client_key=key_genuine)
    assert recorded.confirmed_at is not None
    assert recorded.verified_at is not None
    assert recorded.user_id is None
    [sent] = sent_signals.of(installed)
    assert sent["installation"].client_key == key_genuine
    assert sent["user"] is None


def test_a_secret_replaced_while_bitbucket_was_asked_is_not_trusted(
    client: Client,
    bitbucket: FakeBitbucket,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bitbucket vouched for the secret the row held when it was asked; a re-install
    replaced it meanwhile, so nothing vouched for the row as it is now."""
    from bitbucket_install import genuine

    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    login(client, "ada")
    installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    ask = genuine.ask

    def ask_then_reinstall(installation: Installation) -> genuine.Verdict:
        verdict = ask(installation)
        Installation.objects.filter(pk=installation.pk).update(shared_secret=CHOSEN_SECRET)
        return verdict

    monkeypatch.setattr(genuine, "ask", ask_then_reinstall)
    path = flow_path(client)

    # Signed with the app-level secret, the return verifies whatever the row holds.
    response = flow_return(client, KEY_A, APP_SECRET, path)

    assert response.status_code == 400
    row = Installation.objects.get(client_key=KEY_A)
    assert row.user_id is None
    assert row.verified_at is None
    assert not sent_signals.of(installed)
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "installation_changed"
