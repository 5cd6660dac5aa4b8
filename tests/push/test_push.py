"""``bitbucket_install.push`` against a stand-in Bitbucket over real HTTP: the request
(``PUT /2.0/addon`` with ``{}``, a verified JWT), the outcome recorded on the row, refusals
recorded and not retried, a 429 through the client's retry, nothing sent when the client
refuses, and the threads of ``push_all``. Each negative test asserts the recorded row and
that no signal was sent."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import push
from bitbucket_install.models import Installation
from tests.client.fake_bitbucket import Answer, FakeBitbucket
from tests.conftest import SignalRecorder
from tests.push.conftest import on_fake, outcome

pytestmark = pytest.mark.django_db(transaction=True)


def bitbucket_error(status: int, message: str) -> Answer:
    return Answer.json(status, {"type": "error", "error": {"message": message}})


def test_a_push_is_a_signed_put_of_an_empty_body_and_is_recorded(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    bitbucket.script = [Answer(204)]
    installation = on_fake(bitbucket, 1)
    before = timezone.now()

    assert push.push_descriptor(installation) is None

    (received,) = bitbucket.received
    assert bitbucket.problems == []
    assert (received.method, received.target) == ("PUT", "/2.0/addon")
    assert json.loads(received.body) == {}
    assert received.headers["content-type"] == "application/json"
    assert received.claims is not None
    assert received.claims["sub"] == "connection:1"
    installation.refresh_from_db()
    assert installation.descriptor_pushed_at is not None
    assert installation.descriptor_pushed_at >= before
    assert installation.descriptor_push_error == ""
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    ("status", "message", "recorded"),
    [
        (400, "Scopes have increased.", "400 Scopes have increased."),
        (401, "Unauthorized", "401 Unauthorized"),
        (403, "Improper authentication.", "403 Improper authentication."),
        (404, "Resource not found", "404 Resource not found"),
        (500, "Something broke", "500 Something broke"),
    ],
)
def test_a_refusal_is_recorded_and_not_retried(
    bitbucket: FakeBitbucket,
    sent_signals: SignalRecorder,
    slept: list[float],
    status: int,
    message: str,
    recorded: str,
) -> None:
    bitbucket.script = [bitbucket_error(status, message), Answer(204)]
    installation = on_fake(bitbucket, 1)

    assert push.push_descriptor(installation) == recorded

    assert len(bitbucket.received) == 1
    assert bitbucket.problems == []
    assert slept == []
    assert outcome(installation) == (False, recorded)
    assert sent_signals.none_sent


def test_a_failure_after_a_push_keeps_when_it_was_pushed(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    pushed_at = timezone.now() - timedelta(days=1)
    installation = on_fake(bitbucket, 1, descriptor_pushed_at=pushed_at)
    bitbucket.script = [bitbucket_error(403, "Improper authentication.")]

    assert push.push_descriptor(installation) == "403 Improper authentication."

    installation.refresh_from_db()
    assert installation.descriptor_pushed_at == pushed_at
    assert installation.descriptor_push_error == "403 Improper authentication."
    assert sent_signals.none_sent


def test_a_success_clears_the_last_error(bitbucket: FakeBitbucket) -> None:
    installation = on_fake(bitbucket, 1, descriptor_push_error="403 Improper authentication.")
    bitbucket.script = [Answer(204)]

    assert push.push_descriptor(installation) is None

    assert outcome(installation) == (True, "")


def test_a_429_goes_through_the_clients_retry(
    bitbucket: FakeBitbucket, slept: list[float], settings: Settings
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = 3
    bitbucket.script = [
        Answer.text(429, "Rate limit for this resource has been exceeded"),
        Answer.text(429, "Rate limit for this resource has been exceeded"),
        Answer(204),
    ]
    installation = on_fake(bitbucket, 1)

    assert push.push_descriptor(installation) is None

    assert [r.target for r in bitbucket.received] == ["/2.0/addon"] * 3
    assert bitbucket.problems == []
    assert len(slept) == 2
    assert outcome(installation) == (True, "")


def test_429s_beyond_the_retries_are_recorded(
    bitbucket: FakeBitbucket,
    slept: list[float],
    settings: Settings,
    sent_signals: SignalRecorder,
) -> None:
    settings.BITBUCKET_INSTALL_API_RETRIES = 1
    limited = Answer.text(429, "Rate limit for this resource has been exceeded")
    bitbucket.script = [limited, limited, Answer(204)]
    installation = on_fake(bitbucket, 1)

    recorded = "429 Rate limit for this resource has been exceeded"
    assert push.push_descriptor(installation) == recorded

    assert len(bitbucket.received) == 2
    assert len(slept) == 1
    assert outcome(installation) == (False, recorded)
    assert sent_signals.none_sent


def test_bitbuckets_words_are_cleaned_and_cut(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    bitbucket.script = [bitbucket_error(403, "line one\nline\x1b[31m two " + "x" * 1000)]
    installation = on_fake(bitbucket, 1)

    recorded = push.push_descriptor(installation)

    assert recorded is not None
    assert recorded.startswith("403 line one line")
    assert len(recorded) <= 255
    assert "\n" not in recorded
    assert "\x1b" not in recorded
    assert outcome(installation) == (False, recorded)
    assert sent_signals.none_sent


def test_an_error_without_words_is_its_status(bitbucket: FakeBitbucket) -> None:
    bitbucket.script = [Answer(403)]
    installation = on_fake(bitbucket, 1)

    assert push.push_descriptor(installation) == "403 Forbidden"
    assert outcome(installation) == (False, "403 Forbidden")


@pytest.mark.parametrize(
    ("fields", "recorded"),
    [
        ({"shared_secret": ""}, "not sent (no_shared_secret)"),
        ({"base_api_url": "https://elsewhere.example"}, "not sent (origin_not_allowed)"),
        ({"uninstalled_at": timezone.now()}, "not sent (uninstalled)"),
    ],
)
def test_nothing_sent_is_recorded(
    bitbucket: FakeBitbucket,
    sent_signals: SignalRecorder,
    fields: dict[str, object],
    recorded: str,
) -> None:
    installation = on_fake(bitbucket, 1, **fields)

    assert push.push_descriptor(installation) == recorded

    assert bitbucket.received == []
    assert outcome(installation) == (False, recorded)
    assert sent_signals.none_sent


def test_no_answer_is_recorded_without_the_networks_words(
    bitbucket: FakeBitbucket, settings: Settings, sent_signals: SignalRecorder
) -> None:
    # A port nothing listens on, on an allowed origin.
    settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = ["http://127.0.0.1:9"]
    installation = on_fake(bitbucket, 1, base_api_url="http://127.0.0.1:9")

    assert push.push_descriptor(installation) == "no answer (ConnectError)"

    assert outcome(installation) == (False, "no answer (ConnectError)")
    assert sent_signals.none_sent


def test_pending_and_recorded(bitbucket: FakeBitbucket) -> None:
    now = timezone.now()
    never = on_fake(bitbucket, 1)
    pushed = on_fake(bitbucket, 2, descriptor_pushed_at=now)
    failed = on_fake(bitbucket, 3, descriptor_push_error="403 Improper authentication.")
    refailed = on_fake(bitbucket, 4, descriptor_pushed_at=now, descriptor_push_error="404 x")
    on_fake(bitbucket, 5, uninstalled_at=now)

    assert set(push.pending(only_failed=False)) == {never, pushed, failed, refailed}
    assert set(push.pending(only_failed=True)) == {never, failed, refailed}
    assert push.recorded() == push.Recorded(pushed=1, failed=2, never=1)
    assert push.recorded().total == 4


def test_pages_read_every_row_once_in_key_order(bitbucket: FakeBitbucket) -> None:
    made = [on_fake(bitbucket, number) for number in range(7)]

    for size in (1, 3, 7, 10):
        read = list(push.pages(push.pending(only_failed=False), page_size=size))
        assert [row.pk for row in read] == sorted(row.pk for row in made)
    # Only what the client needs is read.
    (first, *_) = push.pages(push.pending(only_failed=False))
    assert first.get_deferred_fields() >= {"public_key", "principal", "installed_by"}


def test_push_all_pushes_each_once_on_its_threads(bitbucket: FakeBitbucket) -> None:
    made = [on_fake(bitbucket, number) for number in range(20)]
    seen: list[tuple[str, str | None]] = []

    push.push_all(
        push.pages(push.pending(only_failed=False), page_size=3),
        concurrency=4,
        on_outcome=lambda installation, error: seen.append((installation.client_key, error)),
    )

    assert sorted(seen) == sorted((row.client_key, None) for row in made)
    assert sorted(r.claims["sub"] for r in bitbucket.received if r.claims) == sorted(
        row.client_key for row in made
    )
    assert bitbucket.problems == []
    assert all(outcome(row) == (True, "") for row in made)


def test_an_interrupted_reading_stops_and_the_rest_stays_pending(
    bitbucket: FakeBitbucket, sent_signals: SignalRecorder
) -> None:
    made = [on_fake(bitbucket, number) for number in range(10)]

    def interrupted() -> Iterator[Installation]:
        yield from made[:4]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push.push_all(interrupted(), concurrency=2, on_outcome=lambda *_: None)

    pushed = {row.client_key for row in made if outcome(row)[0]}
    # What the threads had taken was pushed and recorded; nothing after the interruption.
    assert pushed <= {row.client_key for row in made[:4]}
    assert {r.claims["sub"] for r in bitbucket.received if r.claims} == pushed
    assert set(push.pending(only_failed=True)) == {
        row for row in made if row.client_key not in pushed
    }
    assert sent_signals.none_sent


def test_a_crash_in_a_thread_stops_the_run_and_is_raised(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [on_fake(bitbucket, number) for number in range(30)]
    calls: list[str] = []

    def broken(installation: Installation, **kwargs: object) -> str | None:
        calls.append(installation.client_key)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(push, "send", broken)

    with pytest.raises(RuntimeError, match="the database went away"):
        push.push_all(iter(made), concurrency=2, on_outcome=lambda *_: None)

    # The threads stop pushing after the first crash (the few already started finish).
    assert 1 <= len(calls) < len(made)
    assert bitbucket.received == []
    assert all(outcome(row) == (False, "") for row in made)


def test_a_full_queue_makes_the_reader_record_what_is_done_meanwhile(
    bitbucket: FakeBitbucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only thread is held up: the reader finds the bounded queue full, records what
    is done while it waits, and goes on once the thread moves again. Every row once."""
    import threading

    made = [on_fake(bitbucket, number) for number in range(8)]
    held = threading.Event()
    real_send = push.send
    sent: list[str] = []
    full: list[int] = []

    def send_when_released(installation: Installation, **kwargs: object) -> str | None:
        held.wait(10)
        sent.append(installation.client_key)
        return real_send(installation, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(push, "send", send_when_released)
    put = queue.Queue.put

    def put_or_say_full(
        self: object, item: object, block: bool = True, timeout: float | None = None
    ) -> None:
        try:
            put(self, item, block, timeout)  # type: ignore[arg-type]
        except queue.Full:
            full.append(1)
            held.set()  # seen full once: let the thread go on
            raise

    monkeypatch.setattr(queue.Queue, "put", put_or_say_full)
    seen: list[str] = []

    push.push_all(
        push.pages(push.pending(only_failed=False), page_size=3),
        concurrency=1,
        on_outcome=lambda installation, error: seen.append(installation.client_key),
    )

    assert full  # the queue of 2 was full while the thread was held
    assert sorted(seen) == sorted(sent) == sorted(row.client_key for row in made)
    assert all(outcome(row) == (True, "") for row in made)
