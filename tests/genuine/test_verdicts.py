"""``genuine.ask`` / ``verify`` / ``vouch``: what Bitbucket's answer to one signed
``GET /2.0/addon/linkers`` makes of an installation, over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bitbucket_install import genuine
from bitbucket_install.genuine import Verdict
from bitbucket_install.models import Installation
from tests.callback_helpers import KEY_A, installed_via_lifecycle
from tests.client.fake_bitbucket import Answer, FakeBitbucket
from tests.genuine.conftest import ISSUED_SECRET, checks, on

pytestmark = pytest.mark.django_db(transaction=True)


def made_by_bitbucket(fake: FakeBitbucket, secret: str = ISSUED_SECRET) -> Installation:
    fake.secrets[KEY_A] = secret
    return installed_via_lifecycle(KEY_A, secret, **on(fake))


def test_an_installation_bitbucket_made_is_genuine_and_recorded_once(
    bitbucket: FakeBitbucket,
) -> None:
    installation = made_by_bitbucket(bitbucket)
    assert installation.verified_at is None

    assert genuine.verify(installation) is Verdict.GENUINE
    assert bitbucket.problems == []
    assert checks(bitbucket) == ["/2.0/addon/linkers"]
    stored = Installation.objects.get(pk=installation.pk)
    assert stored.verified_at is not None
    assert installation.verified_at == stored.verified_at

    # vouch asks no more once Bitbucket's word is recorded.
    genuine.vouch(stored)
    assert checks(bitbucket) == ["/2.0/addon/linkers"]


def test_a_secret_bitbucket_never_issued_is_made_up(bitbucket: FakeBitbucket) -> None:
    bitbucket.secrets[KEY_A] = "the-secret-bitbucket-really-issued"
    installation = installed_via_lifecycle(
        KEY_A, "a-secret-the-sender-chose-0123456789", **on(bitbucket)
    )

    assert genuine.verify(installation) is Verdict.MADE_UP
    assert Installation.objects.get(pk=installation.pk).verified_at is None
    with pytest.raises(genuine.NotGenuine) as refused:
        genuine.vouch(installation)
    assert refused.value.reason == "installation_not_genuine"


def test_an_installation_bitbucket_does_not_know_at_all_is_made_up(
    bitbucket: FakeBitbucket,
) -> None:
    installation = installed_via_lifecycle(KEY_A, ISSUED_SECRET, **on(bitbucket))
    assert genuine.ask(installation) is Verdict.MADE_UP


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_refusals_prove_nothing_either_way(bitbucket: FakeBitbucket, status: int) -> None:
    installation = made_by_bitbucket(bitbucket)
    bitbucket.script = [Answer.json(status, {"type": "error", "error": {"message": "No"}})]

    assert genuine.verify(installation) is Verdict.REFUSED
    assert Installation.objects.get(pk=installation.pk).verified_at is None
    bitbucket.script = [Answer.json(status, {})]
    with pytest.raises(genuine.NotGenuine):
        genuine.vouch(installation)


@pytest.mark.parametrize(
    "answer",
    [
        Answer.json(500, {}),
        Answer.json(503, {}),
        # A 429 is not waited out: a browser or Bitbucket's callback is waiting.
        Answer.text(429, "Rate limit for this resource has been exceeded", **{"Retry-After": "1"}),
    ],
)
def test_no_answer_means_ask_again_later(bitbucket: FakeBitbucket, answer: Answer) -> None:
    installation = made_by_bitbucket(bitbucket)
    bitbucket.script = [answer]

    assert genuine.verify(installation) is Verdict.UNREACHABLE
    assert Installation.objects.get(pk=installation.pk).verified_at is None
    bitbucket.script = [answer]
    with pytest.raises(genuine.BitbucketUnreachable):
        genuine.vouch(installation)
    assert len(bitbucket.received) == 2


def test_a_bitbucket_that_does_not_answer_is_unreachable(bitbucket: FakeBitbucket) -> None:
    installation = made_by_bitbucket(bitbucket)
    bitbucket.stop()
    assert genuine.ask(installation) is Verdict.UNREACHABLE


def test_a_call_the_client_will_not_send_is_a_refusal(
    bitbucket: FakeBitbucket, settings: object
) -> None:
    installation = made_by_bitbucket(bitbucket)
    installation.base_api_url = "https://elsewhere.example"
    assert genuine.ask(installation) is Verdict.REFUSED
    assert bitbucket.received == []


def test_an_uninstalled_installation_is_still_asked_about(bitbucket: FakeBitbucket) -> None:
    installation = made_by_bitbucket(bitbucket)
    installation.uninstalled_at = timezone.now()
    assert genuine.ask(installation) is Verdict.GENUINE
    assert installation.uninstalled_at is not None  # the probe was a copy


def test_a_row_without_a_secret_is_not_asked_about(bitbucket: FakeBitbucket) -> None:
    unsaved = Installation(client_key=KEY_A)
    with pytest.raises(genuine.NotGenuine) as refused:
        genuine.vouch(unsaved)
    assert refused.value.reason == "unknown_installation"
    saved = Installation.objects.create(client_key=KEY_A)
    with pytest.raises(genuine.NotGenuine):
        genuine.vouch(saved)
    assert bitbucket.received == []


def test_an_answer_for_a_secret_replaced_meanwhile_is_not_recorded(
    bitbucket: FakeBitbucket,
) -> None:
    installation = made_by_bitbucket(bitbucket)
    Installation.objects.filter(pk=installation.pk).update(shared_secret="replaced-since-0123456")

    assert genuine.verify(installation) is Verdict.GENUINE
    assert Installation.objects.get(pk=installation.pk).verified_at is None
    assert installation.verified_at is None


def test_settled_and_vouched_for_by_nobody() -> None:
    now = timezone.now()
    young = Installation(installed_at=now - timedelta(seconds=genuine.SETTLING_SECONDS - 1))
    old = Installation(installed_at=now - timedelta(seconds=genuine.SETTLING_SECONDS))
    assert not genuine.is_settled(young)
    assert genuine.is_settled(old)
    assert not genuine.is_settled(Installation())
    assert genuine.is_settled(Installation(created_at=now - timedelta(days=1)))

    assert genuine.is_vouched_for_by_nobody(Installation())
    assert not genuine.is_vouched_for_by_nobody(Installation(verified_at=now))
    assert not genuine.is_vouched_for_by_nobody(Installation(confirmed_at=now))
    assert not genuine.is_vouched_for_by_nobody(Installation(user_id=1))
    assert not genuine.is_vouched_for_by_nobody(Installation(confirmed_flow="f" * 64))
