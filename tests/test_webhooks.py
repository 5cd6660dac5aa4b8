"""The ``webhook`` view: Connect webhook deliveries, through the real URL.

Every refusal asserts its status, that no WebhookDelivery row was recorded, that no
Installation row changed, that no signal was sent, and the reason the app logged. The
pure parts (body, event key, request id) and the model are tested at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import QuerySet
from django.test import Client, RequestFactory, override_settings
from django.urls import get_script_prefix, reverse, set_script_prefix
from django.utils import timezone

from bitbucket_install import signals, webhooks
from bitbucket_install.conf import WEBHOOK_MAX_BYTES_BOUNDS, app_settings
from bitbucket_install.exceptions import PayloadError
from bitbucket_install.identifiers import is_valid_event_key, is_webhook_subscription
from bitbucket_install.models import Installation, WebhookDelivery
from bitbucket_install.payloads import (
    MAX_WEBHOOK_DEPTH,
    parse_webhook_body,
    request_uuid,
    webhook_event,
)
from bitbucket_install.tokens import CONTEXT_QSH, encode_token, query_string_hash
from bitbucket_install.verification import MISSING_AUTHORIZATION_HINT
from bitbucket_install.webhooks import WebhookView, max_body_bytes, send_webhook_received
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import (
    CLIENT_KEY,
    SHARED_SECRET,
    installation_rows,
    lifecycle_token,
    raw_hmac_token,
)
from tests.webhook_helpers import (
    EVENT,
    REQUEST_UUID,
    delivery_body,
    delivery_headers,
    delivery_rows,
    installation,
    post_webhook,
    webhook_path,
    webhook_token,
)

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_CLIENT_KEY = "ari:cloud:bitbucket::app/{99999999-9999-4999-8999-999999999999}/example-app"
OTHER_SECRET = "secret-of-the-other-installation"
OTHER_UUID = "0b7e2c1a-3d4f-4a5b-8c6d-9e0f1a2b3c4d"
DEFAULT_LIMIT = WEBHOOK_MAX_BYTES_BOUNDS[2]


@pytest.fixture
def installed() -> Installation:
    return installation()


def refusal_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``reason=`` of every webhook refusal the app logged."""
    return [
        record.getMessage().split("reason=")[1].split()[0]
        for record in caplog.records
        if record.name == "bitbucket_install" and "webhook refused" in record.getMessage()
    ]


def assert_refused(
    response: Any,
    status: int,
    before: list[dict[str, Any]],
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> None:
    """Refused with ``status`` for ``reason``: nothing recorded, changed or sent."""
    assert response.status_code == status
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_reasons(caplog) == [reason]


def body_of_size(size: int) -> bytes:
    """A delivery body of exactly ``size`` bytes."""
    empty = json.dumps(delivery_body(padding="")).encode()
    padded = json.dumps(delivery_body(padding="x" * (size - len(empty)))).encode()
    assert len(padded) == size
    return padded


# --- accepted deliveries ------------------------------------------------------------------


def test_url_name() -> None:
    assert reverse("bitbucket_install:webhook") == "/bitbucket/webhook"


def test_signed_delivery_is_recorded_and_signalled_once(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    started = timezone.now()
    response = post_webhook(client)
    assert response.status_code == 204
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    [row] = delivery_rows()
    assert row["installation_id"] == installed.pk
    assert row["request_uuid"] == uuid.UUID(REQUEST_UUID)
    assert row["event"] == EVENT
    assert started <= row["received_at"] <= row["signalled_at"] <= timezone.now()
    assert set(row) == {
        "id",
        "installation_id",
        "request_uuid",
        "event",
        "received_at",
        "signalled_at",
    }
    [sent] = sent_signals.of(signals.webhook_received)
    assert sent["sender"] is Installation
    assert sent["installation"] == installed
    assert sent["event"] == EVENT
    assert sent["payload"] == delivery_body()
    assert sent["request"].path == webhook_path()
    assert len(sent_signals.calls) == 1
    assert installation_rows() == before


def test_redelivery_is_answered_without_a_second_signal(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    assert post_webhook(client).status_code == 204
    first = delivery_rows()
    # Bitbucket's retry: the same X-Request-UUID, a token of its own.
    retry = webhook_token(iat=int(timezone.now().timestamp()) + 1)
    response = post_webhook(client, token=retry, HTTP_X_ATTEMPT_NUMBER="2")
    assert response.status_code == 204
    assert response["Cache-Control"] == "no-store"
    assert delivery_rows() == first
    assert len(sent_signals.of(signals.webhook_received)) == 1


@pytest.mark.parametrize(
    "spelling", [REQUEST_UUID.upper(), "{" + REQUEST_UUID + "}"], ids=["upper", "braces"]
)
def test_redelivery_in_another_spelling_of_the_uuid_is_the_same_delivery(
    client: Client, installed: Installation, sent_signals: SignalRecorder, spelling: str
) -> None:
    assert post_webhook(client).status_code == 204
    assert post_webhook(client, request_uuid=spelling).status_code == 204
    assert len(delivery_rows()) == 1
    assert len(sent_signals.of(signals.webhook_received)) == 1


def test_each_delivery_is_signalled(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    assert post_webhook(client).status_code == 204
    body = delivery_body("pullrequest:created", pullrequest={"id": 7})
    response = post_webhook(client, body, event="pullrequest:created", request_uuid=OTHER_UUID)
    assert response.status_code == 204
    assert [row["event"] for row in delivery_rows()] == [EVENT, "pullrequest:created"]
    sent = sent_signals.of(signals.webhook_received)
    assert [kwargs["event"] for kwargs in sent] == [EVENT, "pullrequest:created"]
    assert sent[1]["payload"]["data"]["pullrequest"] == {"id": 7}


def test_the_same_uuid_for_another_installation_is_its_own_delivery(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    """A delivery id is unique per installation: one installation's token can neither
    swallow another's delivery by sending its id first, nor be swallowed."""
    other = installation(OTHER_CLIENT_KEY, OTHER_SECRET)
    token = webhook_token(OTHER_SECRET, iss=OTHER_CLIENT_KEY)
    assert post_webhook(client, token=token).status_code == 204
    assert post_webhook(client).status_code == 204
    assert [row["installation_id"] for row in delivery_rows()] == [other.pk, installed.pk]
    sent = sent_signals.of(signals.webhook_received)
    assert [kwargs["installation"] for kwargs in sent] == [other, installed]


def test_delivery_does_not_need_a_csrf_token(installed: Installation) -> None:
    assert post_webhook(Client(enforce_csrf_checks=True)).status_code == 204
    assert len(delivery_rows()) == 1


@pytest.mark.parametrize(
    "aud",
    [CLIENT_KEY, "https://app.example.com", [CLIENT_KEY], "someone-else", ["x"], 42],
    ids=["client-key", "base-url", "list", "another", "list-of-another", "number"],
)
def test_any_audience_is_ignored(
    client: Client, installed: Installation, sent_signals: SignalRecorder, aud: object
) -> None:
    """Bitbucket's ``aud`` on deliveries is not documented (the clientKey, or the app's
    base URL): the signature with the installation's secret is what binds the token."""
    response = post_webhook(client, token=webhook_token(aud=aud))
    assert response.status_code == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


def test_a_sub_claim_is_ignored(client: Client, installed: Installation) -> None:
    assert post_webhook(client, token=webhook_token(sub="{user-uuid}")).status_code == 204


def test_event_from_the_body_when_the_header_is_missing(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    body = delivery_body("pullrequest:fulfilled")
    assert post_webhook(client, body, event=None).status_code == 204
    [sent] = sent_signals.of(signals.webhook_received)
    assert sent["event"] == "pullrequest:fulfilled"
    assert delivery_rows()[0]["event"] == "pullrequest:fulfilled"


def test_the_header_names_the_event_whatever_the_body_says(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    body = delivery_body("pullrequest:created")
    assert post_webhook(client, body, event="repo:push").status_code == 204
    [sent] = sent_signals.of(signals.webhook_received)
    assert sent["event"] == "repo:push"
    assert sent["payload"] == body  # passed as Bitbucket sent it


def test_a_bare_payload_is_passed_as_it_came(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    """Without Connect's envelope (the body of a plain Bitbucket webhook)."""
    body = {"push": {"changes": []}, "repository": {"full_name": "acme/widgets"}}
    assert post_webhook(client, body).status_code == 204
    [sent] = sent_signals.of(signals.webhook_received)
    assert sent["payload"] == body
    assert sent["event"] == EVENT


def test_a_jwt_in_the_query_is_never_read(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    """The header's token is the delivery's; a ``?jwt=`` beside it (left out of the qsh,
    as always) changes nothing."""
    response = post_webhook(client, query="jwt=forged.token.value")
    assert response.status_code == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


def test_a_query_covered_by_the_qsh_is_accepted(client: Client, installed: Installation) -> None:
    assert post_webhook(client, query="attempt=1&b=%20x").status_code == 204


def test_body_of_exactly_the_size_limit_accepted(client: Client, installed: Installation) -> None:
    assert post_webhook(client, body_of_size(DEFAULT_LIMIT)).status_code == 204


@override_settings(BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES=2048)
def test_the_size_limit_comes_from_the_setting(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert post_webhook(client, body_of_size(2048)).status_code == 204
    before = installation_rows()
    WebhookDelivery.objects.all().delete()
    sent_signals.calls.clear()
    response = post_webhook(client, body_of_size(2049), request_uuid=OTHER_UUID)
    assert_refused(response, 413, before, sent_signals, caplog, "payload_too_large")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_the_size_limit_is_clamped_and_defaults() -> None:
    smallest, largest, default = WEBHOOK_MAX_BYTES_BOUNDS
    for value, expected in [
        (10, smallest),
        (10**12, largest),
        ("big", default),
        (True, default),
        (None, default),
        (4096, 4096),
    ]:
        with override_settings(BITBUCKET_INSTALL_WEBHOOK_MAX_BYTES=value):
            assert expected == app_settings.WEBHOOK_MAX_BYTES
            assert max_body_bytes() == expected


def test_the_default_limit_is_under_djangos_default_upload_size() -> None:
    assert max_body_bytes() == DEFAULT_LIMIT == 1024 * 1024


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=None)
def test_an_unlimited_django_upload_size_leaves_the_setting() -> None:
    assert max_body_bytes() == DEFAULT_LIMIT


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_a_smaller_django_upload_size_is_the_limit(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert max_body_bytes() == 4096
    before = installation_rows()
    response = post_webhook(client, body_of_size(4097))
    assert_refused(response, 413, before, sent_signals, caplog, "payload_too_large")


# --- the signal ---------------------------------------------------------------------------


def test_the_signal_runs_after_the_commit(client: Client, installed: Installation) -> None:
    seen: list[tuple[bool, bool]] = []

    def receiver(installation: Installation, **kwargs: Any) -> None:
        seen.append(
            (
                transaction.get_connection().in_atomic_block,
                WebhookDelivery.objects.filter(installation=installation).exists(),
            )
        )

    signals.webhook_received.connect(receiver, weak=False)
    try:
        assert post_webhook(client).status_code == 204
    finally:
        signals.webhook_received.disconnect(receiver)
    assert seen == [(False, True)]


def test_a_failing_receiver_is_logged_and_the_delivery_stands(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As for every signal of the app (trust rule 5): the delivery is committed before the
    receivers run, one that raises is logged, the others still run, the answer is 204.
    Bitbucket's redelivery of it then sends nothing: the failure was the receiver's."""

    def failing(**kwargs: Any) -> None:
        raise RuntimeError("the project's receiver failed")

    signals.webhook_received.connect(failing, weak=False)
    try:
        assert post_webhook(client).status_code == 204
        assert post_webhook(client).status_code == 204
    finally:
        signals.webhook_received.disconnect(failing)
    assert len(delivery_rows()) == 1
    assert len(sent_signals.of(signals.webhook_received)) == 1
    [logged] = [
        record
        for record in caplog.records
        if record.name == "bitbucket_install" and record.levelname == "ERROR"
    ]
    assert "receiver" in logged.getMessage()
    assert logged.exc_info is not None


def test_send_webhook_received_needs_no_request(
    installed: Installation, sent_signals: SignalRecorder
) -> None:
    """What a task can call later with a recorded delivery and its payload."""
    delivery = WebhookDelivery.objects.create(
        installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    send_webhook_received(delivery, {"data": {}})
    [sent] = sent_signals.of(signals.webhook_received)
    assert sent == {
        "sender": Installation,
        "installation": installed,
        "event": EVENT,
        "payload": {"data": {}},
        "request": None,
    }


# --- refused: the token -------------------------------------------------------------------


def test_delivery_without_authorization_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_webhook(client, unsigned=True)
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")
    # The log says why a signed delivery may arrive unsigned.
    assert MISSING_AUTHORIZATION_HINT.strip() in caplog.text


@pytest.mark.parametrize(
    "authorization",
    ["Bearer {token}", "jwt {token}", "JWT", "JWT   ", "Basic dXNlcjpwYXNz"],
    ids=["bearer", "lower-case-scheme", "scheme-only", "blank-token", "basic"],
)
def test_other_authorization_schemes_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    authorization: str,
) -> None:
    before = installation_rows()
    header = authorization.format(token=webhook_token())
    response = post_webhook(client, authorization=header)
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")
    assert MISSING_AUTHORIZATION_HINT.strip() not in caplog.text  # a header did come


def test_token_in_the_query_only_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bitbucket signs deliveries in the header; a ``?jwt=`` is never read."""
    before = installation_rows()
    token = webhook_token()
    response = post_webhook(client, unsigned=True, query=f"jwt={token}")
    assert_refused(response, 401, before, sent_signals, caplog, "token_in_query")


def forged_signature(token: str) -> str:
    header, claims, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{claims}.{flipped}"


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: forged_signature(webhook_token()), "token_signature"),
        (lambda: webhook_token("a-secret-bitbucket-never-issued"), "token_signature"),
        # Signed by the other installation, claiming to be this one.
        (lambda: webhook_token(OTHER_SECRET), "token_signature"),
        # This installation's secret, claiming to be the other one.
        (lambda: webhook_token(iss=OTHER_CLIENT_KEY), "token_signature"),
        (lambda: webhook_token(path="/bitbucket/installed"), "token_qsh"),
        (lambda: webhook_token(query_string="x=1"), "token_qsh"),
        (lambda: webhook_token(method="GET"), "token_qsh"),
        (lambda: webhook_token(qsh=CONTEXT_QSH), "token_context_qsh"),
        (lambda: webhook_token(qsh=None), "token_claims"),
        (
            lambda: webhook_token(iat=int(timezone.now().timestamp()) - 3600, exp=1),
            "token_expired",
        ),
        (
            lambda: encode_token(
                {"qsh": query_string_hash("POST", webhook_path(), "")}, SHARED_SECRET
            ),
            "token_claims",
        ),
        (lambda: webhook_token(iss="not a key"), "token_issuer"),
        (lambda: "not-a-token", "token_malformed"),
        (lambda: "e30.e30.", "token_algorithm"),
    ],
    ids=[
        "forged-signature",
        "wrong-secret",
        "another-installations-secret",
        "token-for-another-installation",
        "qsh-of-another-path",
        "qsh-with-another-query",
        "qsh-of-another-method",
        "context-qsh",
        "no-qsh",
        "expired",
        "no-issuer",
        "bad-issuer",
        "not-a-jwt",
        "empty-header",
    ],
)
def test_bad_token_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    make_token: Any,
    reason: str,
) -> None:
    installation(OTHER_CLIENT_KEY, OTHER_SECRET)
    before = installation_rows()
    response = post_webhook(client, token=make_token())
    assert_refused(response, 401, before, sent_signals, caplog, reason)


def test_request_with_another_query_than_signed_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_webhook(client, token=webhook_token(), query="x=1")
    assert_refused(response, 401, before, sent_signals, caplog, "token_qsh")


def test_token_without_signature_algorithm_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(timezone.now().timestamp())
    claims = {"iss": CLIENT_KEY, "iat": now, "exp": now + 60, "qsh": "x"}
    before = installation_rows()
    response = post_webhook(client, token=f"{part({'alg': 'none'})}.{part(claims)}.")
    assert_refused(response, 401, before, sent_signals, caplog, "token_algorithm")


def test_unknown_client_key_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = post_webhook(client)
    assert_refused(response, 401, [], sent_signals, caplog, "unknown_installation")


def test_installation_without_a_secret_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A row made by a return trip, before any lifecycle callback: nothing to verify with."""
    Installation.objects.create(client_key=CLIENT_KEY)
    before = installation_rows()
    response = post_webhook(client, token=raw_hmac_token({"iss": CLIENT_KEY}, ""))
    assert_refused(response, 401, before, sent_signals, caplog, "unknown_installation")


def test_uninstalled_installation_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Installation.objects.update(uninstalled_at=timezone.now())
    before = installation_rows()
    response = post_webhook(client)
    assert_refused(response, 401, before, sent_signals, caplog, "installation_uninstalled")


def test_uninstalled_while_the_delivery_was_read_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verified once before the body is read, and again under the row's lock: an uninstall
    committed in between refuses the delivery."""
    parse = parse_webhook_body

    def uninstall_then_parse(body: bytes) -> dict[str, Any]:
        Installation.objects.update(uninstalled_at=timezone.now())
        return parse(body)

    monkeypatch.setattr(webhooks, "parse_webhook_body", uninstall_then_parse)
    response = post_webhook(client)
    before = installation_rows()
    assert_refused(response, 401, before, sent_signals, caplog, "installation_uninstalled")


def test_secret_rotated_while_the_delivery_was_read_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse = parse_webhook_body

    def rotate_then_parse(body: bytes) -> dict[str, Any]:
        Installation.objects.update(shared_secret="rotated-secret-0123456789")
        return parse(body)

    monkeypatch.setattr(webhooks, "parse_webhook_body", rotate_then_parse)
    response = post_webhook(client)
    before = installation_rows()
    assert_refused(response, 401, before, sent_signals, caplog, "token_signature")


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket")
def test_qsh_is_relative_to_the_base_url_path(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    full_path = lifecycle_token(SHARED_SECRET, "/bitbucket/webhook", base_path="")
    response = post_webhook(client, token=full_path)
    assert_refused(response, 401, before, sent_signals, caplog, "token_qsh")

    relative = lifecycle_token(SHARED_SECRET, "/webhook", base_path="")
    assert post_webhook(client, token=relative).status_code == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


@pytest.fixture
def restore_script_prefix() -> Iterator[None]:
    prefix = get_script_prefix()
    yield
    set_script_prefix(prefix)


@override_settings(
    FORCE_SCRIPT_NAME="/prefix", BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix"
)
def test_qsh_under_a_script_prefix(
    client: Client,
    installed: Installation,
    restore_script_prefix: None,
    sent_signals: SignalRecorder,
) -> None:
    # Bitbucket calls https://app.example.com/prefix/bitbucket/webhook; Django sees
    # PATH_INFO /bitbucket/webhook under the script prefix /prefix.
    wrong = lifecycle_token(SHARED_SECRET, "/prefix/bitbucket/webhook", base_path="")
    assert post_webhook(client, token=wrong).status_code == 401
    assert delivery_rows() == []
    right = lifecycle_token(SHARED_SECRET, "/prefix/bitbucket/webhook", base_path="/prefix")
    assert post_webhook(client, token=right).status_code == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


# --- refused: the body and the headers ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "payload_not_json"),
        (b"", "payload_not_json"),
        (b"[1, 2]", "payload_not_object"),
        (b'"repo:push"', "payload_not_object"),
        (b"null", "payload_not_object"),
        (b'{"event": "repo:push", "data": {"x": "\xff"}}', "payload_not_utf8"),
        ('{"event": "repo:push"}'.encode("utf-16"), "payload_not_utf8"),
        (b'\xef\xbb\xbf{"event": "repo:push"}', "payload_not_json"),  # a BOM
        (b'{"data": NaN}', "payload_not_json"),
        (b'{"data": -Infinity}', "payload_not_json"),
        (b'{"data": 1e999}', "payload_not_json"),
        (b"[" * 100_000 + b"]" * 100_000, "payload_not_json"),
        (
            b'{"d": ' + b'{"d": ' * MAX_WEBHOOK_DEPTH + b"1" + b"}" * (MAX_WEBHOOK_DEPTH + 1),
            "payload_too_deep",
        ),
    ],
    ids=[
        "not-json",
        "empty",
        "array",
        "string",
        "null",
        "invalid-utf-8",
        "utf-16",
        "byte-order-mark",
        "nan",
        "infinity",
        "overflowing-number",
        "nested-past-the-stack",
        "too-deep",
    ],
)
def test_malformed_body_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    reason: str,
) -> None:
    before = installation_rows()
    response = post_webhook(client, body)
    assert_refused(response, 400, before, sent_signals, caplog, reason)


def test_body_as_deep_as_allowed_accepted(client: Client, installed: Installation) -> None:
    body = b'{"d": ' * MAX_WEBHOOK_DEPTH + b"1" + b"}" * MAX_WEBHOOK_DEPTH
    assert post_webhook(client, body).status_code == 204


def test_body_one_byte_over_the_limit_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_webhook(client, body_of_size(DEFAULT_LIMIT + 1))
    assert_refused(response, 413, before, sent_signals, caplog, "payload_too_large")


def test_oversized_content_length_refused_before_the_token(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The declared length is checked first: nothing is read, not even for a known
    installation (there is none here)."""
    response = post_webhook(client, CONTENT_LENGTH=str(DEFAULT_LIMIT + 1))
    assert_refused(response, 413, [], sent_signals, caplog, "payload_too_large")


def test_a_malformed_content_length_reads_the_body_up_to_the_limit(
    installed: Installation, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Django reads a malformed Content-Length as 0; the body is then read here up to the
    limit, whatever the header claims."""
    body = body_of_size(DEFAULT_LIMIT + 1)
    headers: dict[str, Any] = delivery_headers(webhook_token())
    request = RequestFactory().post(
        webhook_path(), data=body, content_type="application/json", **headers
    )
    request.META["CONTENT_LENGTH"] = "many"
    before = installation_rows()
    response = WebhookView.as_view()(request)
    assert_refused(response, 413, before, sent_signals, caplog, "payload_too_large")


def test_an_understated_length_is_no_way_past_the_limit(
    installed: Installation, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream longer than its declared length (a chunked body under ASGI declares none):
    never more than one byte past the limit is read."""
    body = body_of_size(DEFAULT_LIMIT + 1)
    headers: dict[str, Any] = delivery_headers(webhook_token())
    request = RequestFactory().post(
        webhook_path(), data=body, content_type="application/json", **headers
    )
    request.META["CONTENT_LENGTH"] = "10"
    before = installation_rows()
    response = WebhookView.as_view()(request)
    assert_refused(response, 413, before, sent_signals, caplog, "payload_too_large")


def asgi_post(body_chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """POST to the webhook view through Django's ASGI handler with no Content-Length (a
    chunked body), ``body_chunks`` as separate messages; the status and headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": webhook_path(),
        "raw_path": webhook_path().encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        + [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    incoming = [
        {"type": "http.request", "body": chunk, "more_body": index < len(body_chunks) - 1}
        for index, chunk in enumerate(body_chunks)
    ]
    sent: list[Mapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(60)  # the client stays connected until the answer is in
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=30))
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    answer = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], answer


def test_a_chunked_body_over_the_limit_under_asgi_refused(
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    server_threads_connections: None,
) -> None:
    body = body_of_size(DEFAULT_LIMIT + 1)
    headers = {
        "Authorization": f"JWT {webhook_token()}",
        "X-Event-Key": EVENT,
        "X-Request-UUID": REQUEST_UUID,
    }
    before = installation_rows()
    status, answer = asgi_post([body[:1000], body[1000:]], headers)
    assert status == 413
    assert answer["cache-control"] == "no-store"
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert refusal_reasons(caplog) == ["payload_too_large"]
    # The same, within the limit, is delivered.
    at_the_limit = body_of_size(DEFAULT_LIMIT)
    status, _ = asgi_post([at_the_limit[:1000], at_the_limit[1000:]], headers)
    assert status == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


@pytest.mark.parametrize(
    ("request_uuid", "reason"),
    [
        (None, "request_uuid_missing"),
        ("", "request_uuid_malformed"),
        ("not-a-uuid", "request_uuid_malformed"),
        (REQUEST_UUID.replace("-", ""), "request_uuid_malformed"),
        ("urn:uuid:" + REQUEST_UUID, "request_uuid_malformed"),
        ("{" + REQUEST_UUID, "request_uuid_malformed"),
        (REQUEST_UUID + "}", "request_uuid_malformed"),
        (REQUEST_UUID + " ", "request_uuid_malformed"),
        (REQUEST_UUID[:-1] + "g", "request_uuid_malformed"),
        (REQUEST_UUID + "," + OTHER_UUID, "request_uuid_malformed"),
    ],
    ids=[
        "missing",
        "empty",
        "word",
        "without-hyphens",
        "urn",
        "unclosed-brace",
        "unopened-brace",
        "trailing-space",
        "not-hex",
        "two",
    ],
)
def test_bad_request_uuid_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    request_uuid: str | None,
    reason: str,
) -> None:
    """Required: a redelivery is recognised by it, so a delivery without it could not be
    signalled once."""
    before = installation_rows()
    response = post_webhook(client, request_uuid=request_uuid)
    assert_refused(response, 400, before, sent_signals, caplog, reason)


@pytest.mark.parametrize(
    ("event", "body", "reason"),
    [
        ("*", delivery_body(), "event_malformed"),
        ("Repo:Push", delivery_body(), "event_malformed"),
        ("repo push", delivery_body(), "event_malformed"),
        ("repo:push\n", delivery_body(), "event_malformed"),
        ("repo:", delivery_body(), "event_malformed"),
        (":push", delivery_body(), "event_malformed"),
        ("repo:push:again", delivery_body(), "event_malformed"),
        ("repo:" + "p" * 60, delivery_body(), "event_malformed"),
        ("", delivery_body(), "event_malformed"),
        (None, {"data": {}}, "event_missing"),
        (None, {"event": None}, "event_missing"),
        (None, {"event": ["repo:push"]}, "event_malformed"),
        (None, {"event": "<script>"}, "event_malformed"),
    ],
    ids=[
        "star",
        "upper-case",
        "space",
        "newline",
        "no-action",
        "no-resource",
        "two-colons",
        "too-long",
        "empty",
        "nowhere",
        "body-null",
        "body-list",
        "body-markup",
    ],
)
def test_bad_event_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    event: str | None,
    body: dict[str, Any],
    reason: str,
) -> None:
    before = installation_rows()
    response = post_webhook(client, body, event=event)
    assert_refused(response, 400, before, sent_signals, caplog, reason)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "head", "options"])
def test_other_methods_not_allowed(
    client: Client, installed: Installation, sent_signals: SignalRecorder, method: str
) -> None:
    before = installation_rows()
    response = getattr(client, method)(webhook_path(), **delivery_headers(webhook_token()))
    assert response.status_code == 405
    assert response["Cache-Control"] == "no-store"
    assert response["Allow"] == "POST"
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent


# --- database errors and races --------------------------------------------------------------


def test_database_error_gives_503_and_records_nothing(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bitbucket redelivers after a 5xx: nothing recorded, so the redelivery signals."""
    real_create = QuerySet.create

    def create_then_fail(self: QuerySet[Any], **kwargs: Any) -> Any:
        real_create(self, **kwargs)
        raise OperationalError("database is locked")

    before = installation_rows()
    with monkeypatch.context() as patch:
        patch.setattr(QuerySet, "create", create_then_fail)
        response = post_webhook(client)
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert delivery_rows() == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert "webhook: database error" in caplog.text

    assert post_webhook(client).status_code == 204
    assert len(sent_signals.of(signals.webhook_received)) == 1


def test_a_lost_insert_is_a_redelivery(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A concurrent delivery of the same id committed between the look-up and the insert:
    the unique key refuses the insert, and the retry finds that delivery (the real race,
    on PostgreSQL and MariaDB, is in tests/concurrency/test_webhook_races.py)."""
    WebhookDelivery.objects.create(
        installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    real_exists = QuerySet.exists
    looked: list[bool] = []

    def exists_missing_the_first(self: QuerySet[Any]) -> bool:
        found = real_exists(self)
        looked.append(found)
        return found and len(looked) > 1

    monkeypatch.setattr(QuerySet, "exists", exists_missing_the_first)
    response = post_webhook(client)
    assert response.status_code == 204
    assert looked == [True, True]
    assert len(delivery_rows()) == 1
    assert sent_signals.none_sent


# --- logs -----------------------------------------------------------------------------------


def webhook_log_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "bitbucket_install" and record.getMessage().startswith("webhook")
    ]


def test_log_lines_name_the_reason_the_installation_the_event_and_the_delivery(
    client: Client, installed: Installation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_webhook(client)
    post_webhook(client)
    post_webhook(client, event="Repo:Push", request_uuid=OTHER_UUID)
    post_webhook(client, request_uuid="nope")
    post_webhook(client, token=webhook_token(OTHER_SECRET))
    post_webhook(client, b"[]")
    assert webhook_log_lines(caplog) == [
        (
            "INFO",
            f"webhook accepted: client_key={CLIENT_KEY} event=repo:push "
            f"request_uuid={REQUEST_UUID}",
        ),
        (
            "INFO",
            "webhook redelivery answered without a signal: "
            f"client_key={CLIENT_KEY} event=repo:push request_uuid={REQUEST_UUID}",
        ),
        (
            "WARNING",
            "webhook refused: reason=event_malformed "
            f"client_key={CLIENT_KEY} event=None request_uuid=None",
        ),
        (
            "WARNING",
            "webhook refused: reason=request_uuid_malformed "
            f"client_key={CLIENT_KEY} event=repo:push request_uuid=None",
        ),
        (
            "WARNING",
            f"webhook refused: reason=token_signature client_key={CLIENT_KEY} "
            "event=None request_uuid=None",
        ),
        (
            "WARNING",
            f"webhook refused: reason=payload_not_object client_key={CLIENT_KEY} "
            "event=None request_uuid=None",
        ),
    ]


def test_no_log_record_carries_a_secret_or_a_token(
    client: Client,
    installed: Installation,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every way through the view, with every logger listening: none writes a secret or a
    token (trust rule 4), not even in a traceback."""
    caplog.set_level(logging.DEBUG)
    installation(OTHER_CLIENT_KEY, OTHER_SECRET)
    tokens = [
        webhook_token(),
        webhook_token(OTHER_SECRET),  # signed by the other installation
        webhook_token(path="/elsewhere"),  # wrong qsh
        webhook_token(OTHER_SECRET, iss=OTHER_CLIENT_KEY),  # database error
        webhook_token(iss=OTHER_CLIENT_KEY, aud=OTHER_SECRET),  # a secret as the aud
    ]
    statuses = [
        post_webhook(client, token=tokens[0]).status_code,
        post_webhook(client, token=tokens[0]).status_code,  # the redelivery
        post_webhook(client, token=tokens[1], request_uuid=OTHER_UUID).status_code,
        post_webhook(client, token=tokens[2], request_uuid=OTHER_UUID).status_code,
        post_webhook(client, b"{", token=tokens[0], request_uuid=OTHER_UUID).status_code,
        post_webhook(client, token=tokens[4], request_uuid=OTHER_UUID).status_code,
    ]

    def failing_create(self: QuerySet[Any], **kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(QuerySet, "create", failing_create)
        statuses.append(post_webhook(client, token=tokens[3]).status_code)
    assert statuses == [204, 204, 401, 401, 400, 401, 503]
    logged = caplog.text + "".join(
        f"{record.getMessage()}{record.args!r}{record.__dict__!r}" for record in caplog.records
    )
    for secret in (SHARED_SECRET, OTHER_SECRET):
        assert secret not in logged
    for token in tokens:
        assert token not in logged
        assert token.split(".")[2] not in logged  # not even the signature alone


# --- the pure parts -------------------------------------------------------------------------


def test_parse_webhook_body() -> None:
    assert parse_webhook_body(b'{"event": "repo:push", "data": {"n": 1.5}}') == {
        "event": "repo:push",
        "data": {"n": 1.5},
    }
    assert parse_webhook_body('{"name": "Zoë"}'.encode()) == {"name": "Zoë"}
    with pytest.raises(PayloadError, match="payload_not_object"):
        parse_webhook_body(b"[]")


def test_webhook_event() -> None:
    assert webhook_event("repo:push", {}) == "repo:push"
    assert webhook_event(None, {"event": "issue:comment_created"}) == "issue:comment_created"
    assert webhook_event("repo:push", {"event": "pullrequest:created"}) == "repo:push"
    with pytest.raises(PayloadError, match="event_missing"):
        webhook_event(None, {})


def test_request_uuid_is_read_in_its_usual_spellings() -> None:
    expected = uuid.UUID(REQUEST_UUID)
    for spelling in (REQUEST_UUID, REQUEST_UUID.upper(), "{" + REQUEST_UUID + "}"):
        assert request_uuid(spelling) == expected


def test_event_key_shapes() -> None:
    for good in (
        "repo:push",
        "repo:commit_status_created",
        "pullrequest:changes_request_created",
        "issue:comment_created",
        "project:updated",
        "a:b",
        "repo:" + "p" * 59,
    ):
        assert is_valid_event_key(good), good
        assert is_webhook_subscription(good), good
    assert len("repo:" + "p" * 59) == 64
    for bad in ("*", "repo:" + "p" * 60, "repo", "repo:_push", "1repo:push", "repo:push "):
        assert not is_valid_event_key(bad), bad
    assert is_webhook_subscription("*")
    assert not is_webhook_subscription("**")


# --- the model ------------------------------------------------------------------------------


def test_delivery_is_unique_per_installation(installed: Installation) -> None:
    WebhookDelivery.objects.create(
        installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    other = installation(OTHER_CLIENT_KEY, OTHER_SECRET)
    WebhookDelivery.objects.create(
        installation=other, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.create(
            installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event="repo:fork"
        )
    assert WebhookDelivery.objects.count() == 2


def test_deliveries_go_with_their_installation(installed: Installation) -> None:
    delivery = WebhookDelivery.objects.create(
        installation=installed, request_uuid=uuid.UUID(REQUEST_UUID), event=EVENT
    )
    assert str(delivery) == f"repo:push {REQUEST_UUID}"
    assert list(installed.webhook_deliveries.all()) == [delivery]
    assert timezone.now() - delivery.received_at < timedelta(minutes=1)
    installed.delete()
    assert WebhookDelivery.objects.count() == 0
