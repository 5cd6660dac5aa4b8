"""Squatting: an unsigned first ``installed`` for a clientKey Bitbucket will install later
(they are predictable) must not lock the workspace out. With
``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``, Bitbucket's own first install takes such a row
back when Bitbucket refuses the row's secret outright, and the follow-up check removes
made-up rows; rows something vouched for are never replaced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import genuine, tasks
from bitbucket_install.models import Installation
from tests.callback_helpers import KEY_A, KEY_B, installed_via_lifecycle
from tests.client.fake_bitbucket import Answer, FakeBitbucket
from tests.conftest import SignalRecorder
from tests.genuine.conftest import CHOSEN_SECRET, ISSUED_SECRET, checks, on
from tests.lifecycle_helpers import installation_rows, lifecycle_body, post_lifecycle

pytestmark = pytest.mark.django_db(transaction=True)


def squat(fake: FakeBitbucket, **fields: Any) -> Installation:
    """The squatter's unsigned first install, before Bitbucket's; ``fields`` set on the row."""
    row = installed_via_lifecycle(KEY_A, CHOSEN_SECRET, **on(fake))
    Installation.objects.filter(pk=row.pk).update(**fields)
    squatted: Installation = Installation.objects.get(pk=row.pk)
    return squatted


def bitbucket_installs(fake: FakeBitbucket) -> Any:
    """Bitbucket's own first install of the workspace: unsigned, with the secret it issued
    (unless the test made Bitbucket know another one)."""
    fake.secrets.setdefault(KEY_A, ISSUED_SECRET)
    body = lifecycle_body(client_key=KEY_A, shared_secret=ISSUED_SECRET, **on(fake))
    return post_lifecycle(Client(), "installed", body)


def assert_bitbucket_refused_without_asking(
    fake: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    """Bitbucket's own first install is refused (401) as before, with the squatter's row
    left as it is, without a call to Bitbucket and without a signal."""
    before = installation_rows()
    assert bitbucket_installs(fake).status_code == 401
    assert installation_rows() == before
    assert fake.received == []
    assert sent_signals.none_sent


def test_bitbucket_takes_a_squatted_client_key_back(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    squatted = squat(bitbucket)

    response = bitbucket_installs(bitbucket)

    assert response.status_code == 204
    [row] = Installation.objects.all()
    assert row.pk != squatted.pk
    assert row.shared_secret == ISSUED_SECRET
    assert row.user_id is None
    assert row.confirmed_at is None
    # Asked about the squatter's secret, which Bitbucket refused.
    assert checks(bitbucket) == ["/2.0/addon/linkers"]
    [refusal] = bitbucket.problems
    assert refusal.startswith("InvalidSignatureError")
    assert sent_signals.none_sent


def test_without_the_setting_a_squatted_client_key_stays_locked(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder, settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = False
    squat(bitbucket)
    assert_bitbucket_refused_without_asking(bitbucket, sent_signals)


def test_a_genuine_row_is_not_replaced_by_an_unsigned_install(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    before = installation_rows()
    forged = lifecycle_body(client_key=KEY_A, shared_secret=CHOSEN_SECRET, **on(bitbucket))

    response = post_lifecycle(Client(), "installed", forged)

    assert response.status_code == 401
    [row] = Installation.objects.all()
    assert row.shared_secret == ISSUED_SECRET
    # Bitbucket vouched for the stored secret: that is recorded, nothing else changed.
    assert row.verified_at is not None
    assert [{**item, "verified_at": None, "updated_at": None} for item in installation_rows()] == [
        {**item, "verified_at": None, "updated_at": None} for item in before
    ]
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "vouched",
    [
        {"verified_at": timezone.now()},
        {"confirmed_at": timezone.now()},
        {"confirmed_flow": "a" * 64},
        "user",
    ],
    ids=["verified", "confirmed", "confirmed_by_a_flow", "connected"],
)
def test_a_row_something_vouched_for_is_never_replaced(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder, vouched: Any
) -> None:
    fields = {"user": User.objects.create_user("ada")} if vouched == "user" else vouched
    squat(bitbucket, **fields)
    assert_bitbucket_refused_without_asking(bitbucket, sent_signals)


def test_a_verified_uninstalled_row_is_never_replaced(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    """Its re-install is signed with the old secret: an unsigned one is not Bitbucket's."""
    squat(bitbucket, verified_at=timezone.now(), uninstalled_at=timezone.now())
    assert_bitbucket_refused_without_asking(bitbucket, sent_signals)


def test_an_uninstalled_squatter_is_replaced_too(bitbucket: FakeBitbucket) -> None:
    squat(bitbucket, uninstalled_at=timezone.now())

    assert bitbucket_installs(bitbucket).status_code == 204
    [row] = Installation.objects.all()
    assert row.shared_secret == ISSUED_SECRET
    assert row.uninstalled_at is None


@pytest.mark.parametrize(
    "answer", [Answer.json(403, {}), Answer.json(404, {})], ids=["403", "404"]
)
def test_a_refusal_other_than_401_replaces_nothing(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder, answer: Answer
) -> None:
    squat(bitbucket)
    bitbucket.secrets[KEY_A] = CHOSEN_SECRET  # so the call gets past the signature check
    bitbucket.script = [answer]
    before = installation_rows()

    response = bitbucket_installs(bitbucket)

    assert response.status_code == 401
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_bitbucket_without_an_answer_replaces_nothing_and_says_try_again(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    squat(bitbucket)
    bitbucket.secrets[KEY_A] = CHOSEN_SECRET
    bitbucket.script = [Answer.json(503, {})]
    before = installation_rows()

    response = bitbucket_installs(bitbucket)

    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_squatter_replaced_meanwhile_is_not_deleted_for_the_first_answer(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between Bitbucket's answer and the replacement, the row was confirmed: kept."""
    squat(bitbucket)
    verify = genuine.verify

    def verify_then_confirm(installation: Installation) -> genuine.Verdict:
        verdict = verify(installation)
        Installation.objects.filter(pk=installation.pk).update(confirmed_at=timezone.now())
        return verdict

    monkeypatch.setattr(genuine, "verify", verify_then_confirm)
    before = installation_rows()

    assert bitbucket_installs(bitbucket).status_code == 401
    [row] = Installation.objects.all()
    assert row.shared_secret == CHOSEN_SECRET
    assert row.pk == before[0]["id"]


# --- the follow-up check ------------------------------------------------------------------


def run_check(row: Installation) -> str:
    result: str = tasks.check_installation.call(row.pk)
    return result


def aged(row: Installation, seconds: int = genuine.SETTLING_SECONDS) -> Installation:
    Installation.objects.filter(pk=row.pk).update(
        installed_at=timezone.now() - timedelta(seconds=seconds)
    )
    older: Installation = Installation.objects.get(pk=row.pk)
    return older


def test_the_follow_up_check_removes_a_made_up_installation(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    made_up = aged(squat(bitbucket))

    assert run_check(made_up) == "removed"
    assert installation_rows() == []
    assert sent_signals.none_sent


def test_the_follow_up_check_records_a_genuine_installation(bitbucket: FakeBitbucket) -> None:
    bitbucket.secrets[KEY_A] = ISSUED_SECRET
    row = installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))

    assert run_check(row) == "verified"
    assert Installation.objects.get(pk=row.pk).verified_at is not None
    assert run_check(row) == "nothing"
    assert len(bitbucket.received) == 1


def test_a_401_right_after_the_callback_proves_nothing_yet(bitbucket: FakeBitbucket) -> None:
    """Bitbucket may not accept calls until it has the callback's answer."""
    row = aged(squat(bitbucket), genuine.SETTLING_SECONDS - 5)
    before = installation_rows()

    assert run_check(row) == "kept"
    assert installation_rows() == before


@pytest.mark.parametrize(
    "answer", [Answer.json(403, {}), Answer.json(500, {})], ids=["403", "500"]
)
def test_the_follow_up_check_keeps_what_it_cannot_decide(
    bitbucket: FakeBitbucket, answer: Answer
) -> None:
    row = aged(squat(bitbucket))
    bitbucket.secrets[KEY_A] = CHOSEN_SECRET
    bitbucket.script = [answer]
    before = installation_rows()

    assert run_check(row) == "kept"
    assert installation_rows() == before


def test_the_follow_up_check_leaves_vouched_and_vanished_rows_alone(
    bitbucket: FakeBitbucket,
) -> None:
    row = aged(squat(bitbucket, confirmed_at=timezone.now()))
    assert run_check(row) == "nothing"
    assert tasks.check_installation.call(row.pk + 1000) == "nothing"
    assert bitbucket.received == []
    assert Installation.objects.filter(pk=row.pk).exists()


def test_a_row_confirmed_while_it_was_checked_is_not_removed(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = aged(squat(bitbucket))
    ask = genuine.ask

    def ask_then_confirm(installation: Installation) -> genuine.Verdict:
        verdict = ask(installation)
        Installation.objects.filter(pk=installation.pk).update(confirmed_at=timezone.now())
        return verdict

    monkeypatch.setattr(genuine, "ask", ask_then_confirm)
    assert run_check(row) == "kept"
    assert Installation.objects.filter(pk=row.pk).exists()


def test_each_new_installation_gets_its_check_enqueued_for_later(
    bitbucket: FakeBitbucket,
) -> None:
    from bitbucket_install.task_framework import task_backends

    backend = task_backends()["default"]
    backend.clear()  # type: ignore[attr-defined]
    started = timezone.now()
    row = squat(bitbucket)
    bitbucket_installs(bitbucket)  # replaces it: the new row is checked too

    results = backend.results  # type: ignore[attr-defined]
    assert [result.task.func for result in results] == [tasks.check_installation.func] * 2
    new_row = Installation.objects.get()
    assert [result.args for result in results] == [[row.pk], [new_row.pk]]
    for result in results:
        assert result.task.run_after >= started + timedelta(seconds=genuine.SETTLING_SECONDS)


def test_with_an_immediate_backend_the_check_runs_at_once_and_only_records(
    bitbucket: FakeBitbucket, settings: Settings
) -> None:
    from tests.genuine.conftest import IMMEDIATE

    settings.TASKS = {"default": {"BACKEND": IMMEDIATE}}
    bitbucket.secrets[KEY_B] = ISSUED_SECRET
    genuine_row = installed_via_lifecycle(KEY_B, ISSUED_SECRET, **on(bitbucket))
    made_up = squat(bitbucket)

    # The genuine one is recorded at once; the made-up one is kept (too early to tell).
    assert Installation.objects.get(pk=genuine_row.pk).verified_at is not None
    assert Installation.objects.filter(pk=made_up.pk).exists()


def test_a_task_backend_that_fails_loses_only_the_check(
    bitbucket: FakeBitbucket, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.TASKS = {"default": {"BACKEND": "no.such.Backend"}}
    row = installed_via_lifecycle(KEY_A, CHOSEN_SECRET, **on(bitbucket))
    assert row.shared_secret == CHOSEN_SECRET
    assert "the follow-up check of client_key=" + KEY_A + " was not enqueued" in caplog.text


def test_a_signed_reinstall_of_an_unverified_row_is_checked_too(
    bitbucket: FakeBitbucket,
) -> None:
    """Rows from before the setting converge: each later callback of one enqueues its check."""
    from bitbucket_install.task_framework import task_backends
    from tests.lifecycle_helpers import lifecycle_body

    settings_off_row = installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    backend = task_backends()["default"]
    backend.clear()  # type: ignore[attr-defined]
    body = lifecycle_body(
        client_key=KEY_A, shared_secret="renewed-" + ISSUED_SECRET, **on(bitbucket)
    )

    assert post_lifecycle(Client(), "installed", body, secret=ISSUED_SECRET).status_code == 204
    [result] = backend.results  # type: ignore[attr-defined]
    assert result.args == [settings_off_row.pk]

    # A verified row needs no check: its next callback enqueues none.
    Installation.objects.filter(pk=settings_off_row.pk).update(verified_at=timezone.now())
    backend.clear()  # type: ignore[attr-defined]
    again = lifecycle_body(
        client_key=KEY_A, shared_secret="again-" + ISSUED_SECRET, **on(bitbucket)
    )
    signed = post_lifecycle(Client(), "installed", again, secret="renewed-" + ISSUED_SECRET)
    assert signed.status_code == 204
    assert backend.results == []  # type: ignore[attr-defined]


def test_a_made_up_row_that_replaced_the_first_meanwhile_is_asked_about_next(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    """Other unsigned callbacks race for the clientKey: the row this callback was about
    to replace was replaced first by another made-up one, which is asked about in turn."""
    squat(bitbucket)
    verify = genuine.verify
    asked: list[str] = []
    racers = iter(["racer-one-secret-0123456789abcdef", "racer-two-secret-0123456789abcdef"])

    def verify_while_others_race(installation: Installation) -> genuine.Verdict:
        asked.append(installation.shared_secret)
        verdict = verify(installation)
        racer = next(racers, None)
        if racer is not None:
            Installation.objects.filter(client_key=KEY_A).update(shared_secret=racer)
        return verdict

    monkeypatch.setattr(genuine, "verify", verify_while_others_race)

    assert bitbucket_installs(bitbucket).status_code == 204
    assert asked == [
        CHOSEN_SECRET,
        "racer-one-secret-0123456789abcdef",
        "racer-two-secret-0123456789abcdef",
    ]
    [row] = Installation.objects.all()
    assert row.shared_secret == ISSUED_SECRET
    assert sent_signals.none_sent


def test_a_race_that_never_settles_is_refused(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bitbucket_install import lifecycle

    squat(bitbucket)
    verify = genuine.verify
    rounds: list[int] = []

    def verify_while_others_keep_racing(installation: Installation) -> genuine.Verdict:
        verdict = verify(installation)
        rounds.append(1)
        Installation.objects.filter(client_key=KEY_A).update(
            shared_secret=f"racer-{len(rounds)}-secret-0123456789abcdef"
        )
        return verdict

    monkeypatch.setattr(genuine, "verify", verify_while_others_keep_racing)

    assert bitbucket_installs(bitbucket).status_code == 401
    assert len(rounds) == lifecycle.MAX_REPLACEMENT_ROUNDS
    [row] = Installation.objects.all()
    assert row.shared_secret == f"racer-{len(rounds)}-secret-0123456789abcdef"


def test_a_made_up_row_removed_meanwhile_leaves_the_client_key_to_this_callback(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up check removed the made-up row while this callback asked Bitbucket
    about it: this callback is then a first install."""
    squat(bitbucket)
    verify = genuine.verify

    def verify_then_removed(installation: Installation) -> genuine.Verdict:
        verdict = verify(installation)
        Installation.objects.filter(pk=installation.pk).delete()
        return verdict

    monkeypatch.setattr(genuine, "verify", verify_then_removed)

    assert bitbucket_installs(bitbucket).status_code == 204
    [row] = Installation.objects.all()
    assert row.shared_secret == ISSUED_SECRET
