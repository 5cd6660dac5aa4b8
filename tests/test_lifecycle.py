"""The ``installed`` / ``uninstalled`` lifecycle callbacks, through the real URLs.

Follows the signing rules of docs/protocol.rst ("Lifecycle callbacks"). Every refusal
asserts its status, that no Installation row changed, that no signal was sent, and the
reason the app logged.
The Installation model's own behaviour is tested at the end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test import Client, override_settings
from django.urls import get_script_prefix, set_script_prefix
from django.utils import timezone

from bitbucket_install import signals
from bitbucket_install.lifecycle import LifecycleView
from bitbucket_install.models import Installation, InstallationQuerySet
from bitbucket_install.payloads import (
    MAX_ACCOUNT_DEPTH,
    MAX_ACCOUNT_JSON_BYTES,
    MAX_BODY_BYTES,
    LifecyclePayload,
)
from bitbucket_install.tokens import (
    CONTEXT_QSH,
    MAX_TOKEN_LENGTH,
    encode_token,
    query_string_hash,
)
from bitbucket_install.verification import MISSING_AUTHORIZATION_HINT
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import (
    APP_KEY,
    CLIENT_KEY,
    SHARED_SECRET,
    body_with,
    installation_rows,
    lifecycle_body,
    lifecycle_token,
    post_lifecycle,
    raw_hmac_token,
)

pytestmark = pytest.mark.django_db(transaction=True)

NEW_SECRET = "rotated-shared-secret-9876543210"
OTHER_CLIENT_KEY = "ari:cloud:bitbucket::app/{99999999-9999-4999-8999-999999999999}/example-app"
OTHER_SECRET = "secret-of-the-other-installation"


def refusal_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``reason=`` of every lifecycle refusal the app logged."""
    return [
        record.getMessage().split("reason=")[1].split()[0]
        for record in caplog.records
        if record.name == "bitbucket_install" and "refused" in record.getMessage()
    ]


@pytest.fixture
def installed(client: Client) -> Installation:
    """A first install, accepted unsigned (trust on first use)."""
    assert post_lifecycle(client, "installed", lifecycle_body()).status_code == 204
    installation: Installation = Installation.objects.get(client_key=CLIENT_KEY)
    return installation


@pytest.fixture
def uninstalled(client: Client, installed: Installation) -> Installation:
    body = lifecycle_body("uninstalled")
    assert post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET).status_code == 204
    installed.refresh_from_db()
    return installed


def assert_refused(
    response: Any,
    status: int,
    before: list[dict[str, Any]],
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture | None = None,
    reason: str | None = None,
) -> None:
    assert response.status_code == status
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == before
    assert sent_signals.none_sent
    if caplog is not None:
        assert refusal_reasons(caplog) == [reason]


# --- installed: first install ---------------------------------------------------------


def test_first_install_unsigned_creates_the_row(
    client: Client, sent_signals: SignalRecorder
) -> None:
    before = timezone.now()
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert response.status_code == 204
    assert response.content == b""
    assert response["Cache-Control"] == "no-store"
    [row] = installation_rows()
    body = lifecycle_body()
    assert row["client_key"] == CLIENT_KEY
    assert row["addon_key"] == APP_KEY
    assert row["shared_secret"] == SHARED_SECRET
    assert row["public_key"] == body["publicKey"]
    assert row["base_url"] == "https://bitbucket.org"
    assert row["base_api_url"] == "https://api.bitbucket.org"
    assert row["product_type"] == "bitbucket"
    assert row["principal"] == body["principal"]
    assert row["principal_uuid"] == body["principal"]["uuid"]
    assert row["principal_name"] == "Acme Team"
    assert row["installed_by"] == body["user"]
    assert row["user_id"] is None
    assert row["uninstalled_at"] is None
    assert row["confirmed_at"] is None
    assert row["confirmed_flow"] is None
    assert before <= row["installed_at"] <= timezone.now()
    assert before <= row["created_at"] <= timezone.now()
    # The installed signal belongs to the browser's return trip, not to the callback.
    assert sent_signals.none_sent


def test_first_install_of_a_minimal_body(client: Client) -> None:
    """What a first install must claim, and no more."""
    body = {
        "key": APP_KEY,
        "clientKey": CLIENT_KEY,
        "sharedSecret": "s",
        "baseUrl": "https://bitbucket.org",
        "baseApiUrl": "https://api.bitbucket.org",
    }
    assert post_lifecycle(client, "installed", body).status_code == 204
    row = Installation.objects.get(client_key=CLIENT_KEY)
    assert row.shared_secret == "s"
    assert row.principal is None
    assert row.principal_name == ""
    assert str(row) == CLIENT_KEY


def test_identical_unsigned_retry_changes_nothing(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert response.status_code == 204
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_first_install_does_not_need_csrf_token(client: Client) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    assert post_lifecycle(csrf_client, "installed", lifecycle_body()).status_code == 204
    assert Installation.objects.filter(client_key=CLIENT_KEY).exists()


def test_install_completes_a_row_made_by_a_return_trip(
    client: Client, django_user_model: type[User], sent_signals: SignalRecorder
) -> None:
    """A row without secret (made by a verified return trip) takes the first callback."""
    user = django_user_model.objects.create_user("ada")
    confirmed = timezone.now()
    Installation.objects.create(client_key=CLIENT_KEY, user=user, confirmed_at=confirmed)
    assert post_lifecycle(client, "installed", lifecycle_body()).status_code == 204
    row = Installation.objects.get()
    assert row.shared_secret == SHARED_SECRET
    assert row.user == user
    assert row.principal_name == "Acme Team"
    assert sent_signals.none_sent


# --- installed: re-install and rotation -----------------------------------------------


def test_reinstall_signed_with_the_stored_secret_rotates(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    Installation.objects.update(confirmed_at=timezone.now(), confirmed_flow="f" * 64)
    body = lifecycle_body(
        shared_secret=NEW_SECRET, principal={"uuid": "{u}", "display_name": "Renamed"}
    )
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert response.status_code == 204
    row = Installation.objects.get()
    assert row.pk == installed.pk
    assert row.shared_secret == NEW_SECRET
    assert row.principal_name == "Renamed"
    assert row.principal_uuid == "{u}"
    assert row.installed_at is not None
    assert installed.installed_at is not None
    assert row.installed_at > installed.installed_at
    # Each install is confirmed by its own return trip.
    assert row.confirmed_at is None
    assert sent_signals.none_sent
    # From now on the new secret signs, and the old one no longer does.
    third = lifecycle_body(shared_secret="third-secret")
    assert post_lifecycle(client, "installed", third, secret=SHARED_SECRET).status_code == 401
    assert post_lifecycle(client, "installed", third, secret=NEW_SECRET).status_code == 204
    assert Installation.objects.get().shared_secret == "third-secret"


def test_reinstall_signed_with_the_same_secret_is_accepted(
    client: Client, installed: Installation
) -> None:
    body = lifecycle_body(productType="bitbucket", baseUrl="https://BitBucket.org:443/")
    assert post_lifecycle(client, "installed", body, secret=SHARED_SECRET).status_code == 204
    assert Installation.objects.get().base_url == "https://BitBucket.org:443/"


def test_unsigned_reinstall_refused_and_secret_unchanged(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=NEW_SECRET))
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")
    assert Installation.objects.get().shared_secret == SHARED_SECRET


def test_unsigned_reinstall_with_the_stored_secret_changes_nothing(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    """Same secret, other data: taken as a retry of the stored install, so nothing of the
    unsigned body is written (only a signed callback may change a known installation)."""
    before = installation_rows()
    body = lifecycle_body(
        principal={"display_name": "Attacker"}, baseUrl="https://bitbucket.org/attacker"
    )
    response = post_lifecycle(client, "installed", body)
    assert response.status_code == 204
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_reinstall_signed_with_the_new_secret_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, secret=NEW_SECRET)
    assert_refused(response, 401, before, sent_signals, caplog, "token_signature")


def test_reinstall_whose_token_names_another_client_key_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(
        client, "installed", body, secret=SHARED_SECRET, iss=OTHER_CLIENT_KEY
    )
    assert_refused(response, 401, before, sent_signals, caplog, "token_issuer")


def test_reinstall_signed_by_another_installation_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = lifecycle_body(client_key=OTHER_CLIENT_KEY, shared_secret=OTHER_SECRET)
    assert post_lifecycle(client, "installed", other).status_code == 204
    caplog.clear()
    before = installation_rows()
    # The other installation signs a takeover of this clientKey with its own secret.
    body = lifecycle_body(shared_secret=NEW_SECRET)
    for iss in (OTHER_CLIENT_KEY, CLIENT_KEY):
        response = post_lifecycle(client, "installed", body, secret=OTHER_SECRET, iss=iss)
        assert_refused(response, 401, before, sent_signals)
    assert refusal_reasons(caplog) == ["token_signature", "token_signature"]


def path_token(path: str, **claims: Any) -> str:
    return lifecycle_token(SHARED_SECRET, path, **claims)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(
            lambda: path_token("/bitbucket/uninstalled"), "token_qsh", id="qsh of another path"
        ),
        pytest.param(
            lambda: path_token("/bitbucket/installed", method="GET"), "token_qsh", id="qsh of GET"
        ),
        pytest.param(
            lambda: path_token("/bitbucket/installed", query_string="a=1"),
            "token_qsh",
            id="qsh of another query",
        ),
        pytest.param(
            lambda: path_token("/installed", base_path=""), "token_qsh", id="qsh without the mount"
        ),
        pytest.param(
            lambda: path_token("/", qsh=CONTEXT_QSH), "token_context_qsh", id="context-qsh"
        ),
        pytest.param(
            lambda: encode_token(
                {"iss": CLIENT_KEY},
                SHARED_SECRET,
                method="POST",
                path="/bitbucket/installed",
                now=timezone.now().timestamp() - 400,
                lifetime=60,
            ),
            "token_expired",
            id="expired",
        ),
        pytest.param(
            lambda: encode_token(
                {"iss": CLIENT_KEY},
                SHARED_SECRET,
                method="POST",
                path="/bitbucket/installed",
                now=timezone.now().timestamp() + 400,
            ),
            "token_issued_in_future",
            id="future iat",
        ),
        pytest.param(
            lambda: path_token("/bitbucket/installed", aud="https://evil.example"),
            "token_audience",
            id="aud",
        ),
        pytest.param(
            lambda: path_token("/bitbucket/installed", qsh=None), "token_claims", id="no qsh"
        ),
        pytest.param(
            lambda: jwt.encode(
                {"iss": CLIENT_KEY, "qsh": query_string_hash("POST", "/bitbucket/installed", "")},
                SHARED_SECRET * 3,
                "HS512",
            ),
            "token_algorithm",
            id="HS512",
        ),
        pytest.param(
            lambda: jwt.encode(
                {"iss": CLIENT_KEY},
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "RS256",
                {"kid": "key-1"},
            ),
            "token_algorithm",
            id="RS256 with kid",
        ),
        pytest.param(lambda: "not-a-token", "token_malformed", id="malformed"),
        pytest.param(lambda: "x" * 9000, "token_malformed", id="oversize"),
    ],
)
def test_reinstall_with_a_bad_token_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    token: Callable[[], str],
    reason: str,
) -> None:
    """Each token is made when its test runs, not when the tests are collected: one made
    minutes earlier on a busy machine would be refused as expired, not for its own flaw."""
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, token=token())
    assert_refused(response, 401, before, sent_signals, caplog, reason)


@pytest.mark.parametrize("header", ["Bearer abc", "JWT", "Basic dXNlcjpwYXNz"])
def test_reinstall_with_another_authorization_scheme_is_unsigned(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    header: str,
) -> None:
    before = installation_rows()
    response = client.post(
        "/bitbucket/installed",
        data=json.dumps(lifecycle_body(shared_secret=NEW_SECRET)),
        content_type="application/json",
        HTTP_AUTHORIZATION=header,
    )
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")


def test_refusal_logs_carry_neither_token_nor_secret(
    client: Client, installed: Installation, caplog: pytest.LogCaptureFixture
) -> None:
    token = path_token("/bitbucket/uninstalled")
    body = lifecycle_body(shared_secret=NEW_SECRET)
    assert post_lifecycle(client, "installed", body, token=token).status_code == 401
    assert refusal_reasons(caplog) == ["token_qsh"]
    assert token not in caplog.text
    assert NEW_SECRET not in caplog.text
    assert SHARED_SECRET not in caplog.text


# --- uninstalled --------------------------------------------------------------------------


def test_uninstall_signed_soft_deletes_and_signals_after_commit(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    seen_in_receiver: list[tuple[bool, bool]] = []

    def receiver(installation: Installation, **kwargs: Any) -> None:
        # Sent after the commit: outside any transaction, with the change visible.
        seen_in_receiver.append(
            (
                connection.in_atomic_block,
                Installation.objects.get(pk=installation.pk).uninstalled_at is not None,
            )
        )

    signals.uninstalled.connect(receiver, weak=False)
    try:
        body = lifecycle_body("uninstalled")
        response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    finally:
        signals.uninstalled.disconnect(receiver)
    assert response.status_code == 204
    row = Installation.objects.get()
    assert row.uninstalled_at is not None
    assert not row.is_installed
    assert row.shared_secret == SHARED_SECRET
    assert seen_in_receiver == [(False, True)]
    assert len(sent_signals.calls) == 1
    [kwargs] = sent_signals.of(signals.uninstalled)
    assert kwargs["installation"].pk == row.pk
    assert kwargs["installation"].uninstalled_at == row.uninstalled_at
    assert kwargs["request"].path == "/bitbucket/uninstalled"
    assert kwargs["sender"] is Installation


def test_uninstall_signal_waits_for_the_commit(
    installed: Installation, sent_signals: SignalRecorder
) -> None:
    client = Client()
    body = lifecycle_body("uninstalled")
    with transaction.atomic():
        response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
        assert response.status_code == 204
        assert sent_signals.none_sent
    assert len(sent_signals.of(signals.uninstalled)) == 1


def test_uninstall_without_secret_in_body(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    body = lifecycle_body("uninstalled")
    del body["sharedSecret"]
    assert post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET).status_code == 204
    row = Installation.objects.get()
    assert row.uninstalled_at is not None
    assert row.shared_secret == SHARED_SECRET
    assert len(sent_signals.of(signals.uninstalled)) == 1


def test_repeated_uninstall_answers_204_without_a_second_signal(
    client: Client, uninstalled: Installation, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert response.status_code == 204
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_uninstall_unsigned_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "uninstalled", lifecycle_body("uninstalled"))
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")


def test_uninstall_of_an_unknown_client_key_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled", client_key=OTHER_CLIENT_KEY)
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert_refused(response, 401, before, sent_signals, caplog, "unknown_installation")


def test_uninstall_of_a_row_without_secret_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    Installation.objects.create(client_key=CLIENT_KEY)
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert_refused(response, 401, before, sent_signals, caplog, "unknown_installation")


def test_uninstall_signed_with_a_wrong_secret_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(client, "uninstalled", body, secret=OTHER_SECRET)
    assert_refused(response, 401, before, sent_signals, caplog, "token_signature")


def test_uninstall_whose_token_names_another_client_key_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(
        client, "uninstalled", body, secret=SHARED_SECRET, iss=OTHER_CLIENT_KEY
    )
    assert_refused(response, 401, before, sent_signals, caplog, "token_issuer")


def test_uninstall_with_the_token_of_the_installed_callback_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    token = path_token("/bitbucket/installed")
    response = post_lifecycle(client, "uninstalled", lifecycle_body("uninstalled"), token=token)
    assert_refused(response, 401, before, sent_signals, caplog, "token_qsh")


def test_reinstall_after_uninstall_signed_with_the_kept_secret(
    client: Client, uninstalled: Installation, sent_signals: SignalRecorder
) -> None:
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert response.status_code == 204
    row = Installation.objects.get()
    assert row.pk == uninstalled.pk
    assert row.uninstalled_at is None
    assert row.is_installed
    assert row.shared_secret == NEW_SECRET
    assert sent_signals.none_sent


def test_unsigned_reinstall_after_uninstall_refused(
    client: Client,
    uninstalled: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=NEW_SECRET))
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")
    assert Installation.objects.get().uninstalled_at is not None


# --- bad bodies ------------------------------------------------------------------------------

NUL = "\x00"


def body_without(event_type: str, field: str) -> dict[str, Any]:
    body = lifecycle_body(event_type)
    del body[field]
    return body


BAD_BODIES: list[Any] = [
    pytest.param("installed", b"{not json", "payload_not_json", id="not JSON"),
    pytest.param("installed", b"", "payload_not_json", id="empty"),
    pytest.param("installed", [lifecycle_body()], "payload_not_object", id="JSON list"),
    pytest.param("installed", b'"installed"', "payload_not_object", id="JSON string"),
    pytest.param(
        "installed", lifecycle_body("uninstalled"), "payload_event_type", id="wrong eventType"
    ),
    pytest.param(
        "uninstalled", lifecycle_body("installed"), "payload_event_type", id="wrong eventType 2"
    ),
    pytest.param(
        "installed", body_without("installed", "clientKey"), "payload_client_key", id="no key"
    ),
    pytest.param(
        "uninstalled",
        body_without("uninstalled", "clientKey"),
        "payload_client_key",
        id="uninstall without clientKey",
    ),
    pytest.param(
        "installed", lifecycle_body(clientKey=CLIENT_KEY + NUL), "payload_client_key", id="NUL"
    ),
    pytest.param(
        "installed", lifecycle_body(clientKey="c" * 300), "payload_client_key", id="300 chars"
    ),
    pytest.param(
        "installed",
        lifecycle_body(clientKey="connection:é"),
        "payload_client_key",
        id="non-ASCII clientKey",
    ),
    pytest.param(
        "installed",
        lifecycle_body(clientKey="connection: 1"),
        "payload_client_key",
        id="space in clientKey",
    ),
    pytest.param(
        "installed", lifecycle_body(clientKey=["x"]), "payload_client_key", id="list clientKey"
    ),
    pytest.param(
        "installed",
        lifecycle_body(clientKey="connection:<script>alert(1)</script>"),
        "payload_client_key",
        id="markup in clientKey",
    ),
    pytest.param(
        "installed",
        lifecycle_body(clientKey=CLIENT_KEY + '"><img src=x onerror=alert(1)>'),
        "payload_client_key",
        id="markup after a registered clientKey",
    ),
    pytest.param(
        "uninstalled",
        lifecycle_body("uninstalled", clientKey="connection:<b>7</b>"),
        "payload_client_key",
        id="markup in clientKey (uninstall)",
    ),
    pytest.param(
        "installed",
        body_without("installed", "sharedSecret"),
        "payload_shared_secret",
        id="no sharedSecret",
    ),
    pytest.param(
        "installed", lifecycle_body(sharedSecret=""), "payload_shared_secret", id="blank secret"
    ),
    pytest.param(
        "installed",
        lifecycle_body(sharedSecret="sec ret"),
        "payload_shared_secret",
        id="secret with space",
    ),
    pytest.param(
        "installed",
        lifecycle_body(sharedSecret="s" * 256),
        "payload_shared_secret",
        id="secret too long",
    ),
    pytest.param(
        "installed",
        lifecycle_body(sharedSecret=123),
        "payload_shared_secret",
        id="secret a number",
    ),
    pytest.param(
        "installed",
        lifecycle_body(key="other-app"),
        "payload_key_other_app",
        id="another app key",
    ),
    pytest.param(
        "uninstalled",
        lifecycle_body("uninstalled", key="other-app"),
        "payload_key_other_app",
        id="another app key (uninstall)",
    ),
    pytest.param("installed", lifecycle_body(key="bad key!"), "payload_key", id="bad app key"),
    pytest.param(
        "installed",
        lifecycle_body(productType="bit\x1bbucket"),
        "payload_productType",
        id="control character",
    ),
    pytest.param(
        "installed",
        lifecycle_body(publicKey="MII" + NUL),
        "payload_publicKey",
        id="NUL in publicKey",
    ),
    pytest.param(
        "installed",
        lifecycle_body(baseUrl="https://bitbucket.org/\n"),
        "payload_baseUrl",
        id="newline in baseUrl",
    ),
    pytest.param(
        "installed",
        lifecycle_body(baseUrl="https://" + "b" * 300),
        "payload_baseUrl",
        id="long baseUrl",
    ),
    pytest.param(
        "installed",
        lifecycle_body(baseApiUrl="javascript:alert(1)"),
        "payload_baseApiUrl",
        id="script baseApiUrl",
    ),
    pytest.param(
        "installed",
        lifecycle_body(productType="p" * 40),
        "payload_productType",
        id="long productType",
    ),
    pytest.param(
        "installed",
        lifecycle_body(publicKey="k" * 5000),
        "payload_publicKey",
        id="long publicKey",
    ),
    pytest.param(
        "installed", lifecycle_body(principal="acme"), "payload_principal", id="principal text"
    ),
    pytest.param(
        "installed", lifecycle_body(principal=[1]), "payload_principal", id="principal list"
    ),
    pytest.param(
        "installed",
        lifecycle_body(principal={"display_name": "Ac" + NUL + "me"}),
        "payload_principal",
        id="principal with NUL",
    ),
    pytest.param(
        "installed",
        lifecycle_body(principal={"display_name": "x" * 9000}),
        "payload_principal",
        id="principal too big",
    ),
    pytest.param(
        "installed", lifecycle_body(user={"uuid": NUL}), "payload_user", id="user with NUL"
    ),
    pytest.param(
        "installed",
        lifecycle_body(padding="p" * (64 * 1024)),
        "payload_too_large",
        id="over 64 KiB",
    ),
]


@pytest.mark.parametrize(("event_type", "body", "reason"), BAD_BODIES)
def test_bad_body_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    event_type: str,
    body: Any,
    reason: str,
) -> None:
    """A bad body is refused with 400 before any token check, signed or not."""
    before = installation_rows()
    response = post_lifecycle(client, event_type, body)
    assert_refused(response, 400, before, sent_signals, caplog, reason)
    caplog.clear()
    response = post_lifecycle(client, event_type, body, secret=SHARED_SECRET, iss=CLIENT_KEY)
    assert_refused(response, 400, before, sent_signals, caplog, reason)


def test_bad_first_install_creates_nothing(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = post_lifecycle(client, "installed", lifecycle_body(sharedSecret="a b"))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_shared_secret")


@override_settings(BITBUCKET_INSTALL_ADDON_KEY=None, BITBUCKET_INSTALL_DESCRIPTOR={})
def test_no_install_accepted_while_no_app_key_is_configured(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a descriptor key (system check E012 reports it) nothing can be this app's."""
    response = post_lifecycle(client, "installed", lifecycle_body(key="some-other-app"))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_key_other_app")


@pytest.mark.parametrize("event_type", ["installed", "uninstalled"])
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "head", "options"])
def test_other_methods_not_allowed(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    event_type: str,
    method: str,
) -> None:
    before = installation_rows()
    response = getattr(client, method)(f"/bitbucket/{event_type}")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_record_is_abstract() -> None:
    payload = LifecyclePayload("x", "k", "", "", "", "", "", "", None, None)
    with pytest.raises(NotImplementedError):
        LifecycleView().record(None, payload, None)  # type: ignore[arg-type]


# --- what an installed callback may claim ------------------------------------------------

# A clientKey of another registered app, for a workspace this app may well be on too.
OTHER_APP_CLIENT_KEY = "ari:cloud:bitbucket::app/{0d6f5a1e-1111-4c5e-9a6b-5f1e2d3c4b5a}/other-app"
MISSING = object()


def claim(event_type: str = "installed", **changes: Any) -> dict[str, Any]:
    """``lifecycle_body`` with ``changes``; a ``MISSING`` value leaves the field out."""
    body = lifecycle_body(event_type)
    for name, value in changes.items():
        if value is MISSING:
            del body[name]
        else:
            body[name] = value
    return body


BAD_CLAIMS: list[Any] = [
    pytest.param(
        {"baseApiUrl": "http://169.254.169.254/latest/meta-data/"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl on the metadata service",
    ),
    pytest.param(
        {"baseApiUrl": "https://api.bitbucket.org.evil.com"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl on a longer host",
    ),
    pytest.param(
        {"baseApiUrl": "https://user@api.bitbucket.org"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl with userinfo",
    ),
    pytest.param(
        {"baseApiUrl": "http://api.bitbucket.org"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl over plain HTTP",
    ),
    pytest.param(
        {"baseApiUrl": "https://api.bitbucket.org:8443/2.0"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl on another port",
    ),
    pytest.param(
        {"baseApiUrl": "https://evil.example/2.0"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl on another host",
    ),
    pytest.param(
        {"baseApiUrl": "https://app.example.com"},
        "payload_baseApiUrl_origin",
        id="baseApiUrl on this site (simulator off)",
    ),
    pytest.param(
        {"baseUrl": "https://bitbucket.org.evil.com"},
        "payload_baseUrl_origin",
        id="baseUrl on a longer host",
    ),
    pytest.param(
        {"baseUrl": "https://user@bitbucket.org"},
        "payload_baseUrl_origin",
        id="baseUrl with userinfo",
    ),
    pytest.param(
        {"baseUrl": "http://bitbucket.org"}, "payload_baseUrl_origin", id="baseUrl over HTTP"
    ),
    pytest.param(
        {"baseUrl": "https://127.0.0.1/"}, "payload_baseUrl_origin", id="baseUrl on loopback"
    ),
    pytest.param({"baseUrl": MISSING}, "payload_baseUrl_missing", id="no baseUrl"),
    pytest.param({"baseUrl": None}, "payload_baseUrl_missing", id="null baseUrl"),
    pytest.param({"baseUrl": ""}, "payload_baseUrl_missing", id="blank baseUrl"),
    pytest.param({"baseApiUrl": MISSING}, "payload_baseApiUrl_missing", id="no baseApiUrl"),
    pytest.param({"baseApiUrl": ""}, "payload_baseApiUrl_missing", id="blank baseApiUrl"),
    pytest.param({"key": MISSING}, "payload_key_missing", id="no key"),
    pytest.param({"key": None}, "payload_key_missing", id="null key"),
    pytest.param({"key": ""}, "payload_key_missing", id="blank key"),
    pytest.param({"key": "other-app"}, "payload_key_other_app", id="another app's key"),
    pytest.param({"key": "Example-App"}, "payload_key_other_app", id="key in another case"),
    pytest.param(
        {"clientKey": OTHER_APP_CLIENT_KEY},
        "payload_client_key_other_app",
        id="clientKey of another registered app",
    ),
    pytest.param(
        {"clientKey": "connection:7"},
        "payload_client_key_other_app",
        id="clientKey of an unregistered install",
    ),
    pytest.param(
        {"clientKey": CLIENT_KEY + "-evil"},
        "payload_client_key_other_app",
        id="clientKey with a suffix",
    ),
    pytest.param(
        {"clientKey": "x" + CLIENT_KEY},
        "payload_client_key_other_app",
        id="clientKey with a prefix",
    ),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_CLAIMS)
def test_first_install_claiming_too_much_refused(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, Any],
    reason: str,
) -> None:
    response = post_lifecycle(client, "installed", claim(**changes))
    assert_refused(response, 400, [], sent_signals, caplog, reason)


@pytest.mark.parametrize(("changes", "reason"), BAD_CLAIMS)
def test_signed_reinstall_claiming_too_much_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, Any],
    reason: str,
) -> None:
    """A signature with the stored secret does not let a callback claim more."""
    before = installation_rows()
    body = claim(**changes)
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert_refused(response, 400, before, sent_signals, caplog, reason)


@pytest.mark.parametrize(
    "changes",
    [
        {"baseUrl": "https://BitBucket.org:443/"},
        {"baseUrl": "HTTPS://bitbucket.org/workspace"},
        {"baseApiUrl": "https://API.bitbucket.org/2.0/"},
        {"baseApiUrl": "https://api.bitbucket.org:443"},
    ],
    ids=repr,
)
def test_other_spellings_of_bitbucket_origins_accepted(
    client: Client, sent_signals: SignalRecorder, changes: dict[str, str]
) -> None:
    response = post_lifecycle(client, "installed", claim(**changes))
    assert response.status_code == 204
    [row] = installation_rows()
    stored = {"baseUrl": row["base_url"], "baseApiUrl": row["base_api_url"]}
    for name, value in changes.items():
        assert stored[name] == value  # as sent
    assert sent_signals.none_sent


@override_settings(
    BITBUCKET_INSTALL_BITBUCKET_ORIGINS=[
        "https://bitbucket.example.net",
        "https://api.bitbucket.example.net",
    ]
)
def test_origins_come_from_the_setting(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert_refused(response, 400, [], sent_signals, caplog, "payload_baseUrl_origin")
    body = claim(
        baseUrl="https://bitbucket.example.net", baseApiUrl="https://api.bitbucket.example.net"
    )
    assert post_lifecycle(client, "installed", body).status_code == 204
    assert Installation.objects.get().base_api_url == "https://api.bitbucket.example.net"


@override_settings(DEBUG=True, BITBUCKET_INSTALL_SIMULATOR=True)
def test_the_simulators_origin_is_accepted_while_it_is_on(client: Client) -> None:
    body = claim(baseUrl="https://app.example.com", baseApiUrl="https://app.example.com/api")
    assert post_lifecycle(client, "installed", body).status_code == 204
    assert Installation.objects.get().base_api_url == "https://app.example.com/api"


@override_settings(BITBUCKET_INSTALL_ADDON_KEY=None, BITBUCKET_INSTALL_DESCRIPTOR={"key": APP_KEY})
def test_unregistered_app_takes_any_clientkey_but_only_its_own_key(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    for client_key in ("connection:7", OTHER_APP_CLIENT_KEY):
        body = claim(clientKey=client_key)
        assert post_lifecycle(client, "installed", body).status_code == 204
    before = installation_rows()
    assert [row["client_key"] for row in before] == ["connection:7", OTHER_APP_CLIENT_KEY]
    response = post_lifecycle(client, "installed", claim(clientKey="connection:8", key="other"))
    assert_refused(response, 400, before, sent_signals, caplog, "payload_key_other_app")


def test_uninstall_needs_no_urls_and_no_key(
    client: Client, installed: Installation, sent_signals: SignalRecorder
) -> None:
    """Only a key that is there must be this app's: an uninstall stores nothing else."""
    body = claim("uninstalled", key=MISSING, baseUrl=MISSING, baseApiUrl=MISSING)
    assert post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET).status_code == 204
    assert Installation.objects.get().uninstalled_at is not None
    assert len(sent_signals.of(signals.uninstalled)) == 1


def test_uninstall_for_another_app_refused_before_its_signature(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = claim("uninstalled", key="other-app")
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert_refused(response, 400, before, sent_signals, caplog, "payload_key_other_app")


# --- secrets PyJWT cannot use as HMAC keys ------------------------------------------------

ECDSA_SECRET = (
    "ecdsa-sha2-nistp256AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEez"
)
PEM_SECRET = (
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
)
# Shaped like public keys or JWKs yet printable ASCII without spaces, so they pass the
# secret's pattern: only PyJWT's own refusal tells them apart.
UNUSABLE_SECRETS = [
    pytest.param(ECDSA_SECRET, id="ecdsa-sha2-nistp256"),
    pytest.param("ssh-ed25519AAAAC3NzaC1lZDI1NTE5AAAAIG", id="ssh-ed25519"),
    pytest.param("ssh-rsaAAAAB3NzaC1yc2EAAAADAQABAAABAQ", id="ssh-rsa"),
    pytest.param('{"kty":"oct","k":"c2VjcmV0"}', id="JWK"),
    pytest.param('[{"kty":"RSA"}]', id="JWK set"),
]


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS)
def test_first_install_with_an_unusable_secret_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=secret))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_shared_secret_unusable")


def test_first_install_with_a_pem_block_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A PEM block has spaces and line breaks: the secret's pattern refuses it first."""
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=PEM_SECRET))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_shared_secret")


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS)
def test_rotation_to_an_unusable_secret_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    secret: str,
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=secret)
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert_refused(response, 400, before, sent_signals, caplog, "payload_shared_secret_unusable")


@pytest.fixture(params=[*UNUSABLE_SECRETS, pytest.param(PEM_SECRET, id="PEM")])
def stored_unusable_secret(request: pytest.FixtureRequest) -> str:
    """A row written before such secrets were refused, holding one."""
    secret: str = request.param
    Installation.objects.create(
        client_key=CLIENT_KEY,
        shared_secret=secret,
        addon_key=APP_KEY,
        installed_at=timezone.now(),
    )
    return secret


def signed_with(secret: str, path: str, iss: str = CLIENT_KEY) -> str:
    """A callback token over ``POST path`` signed with ``secret``, even one PyJWT refuses."""
    now = int(timezone.now().timestamp())
    claims = {
        "iss": iss,
        "iat": now,
        "exp": now + 180,
        "qsh": query_string_hash("POST", path, ""),
    }
    return raw_hmac_token(claims, secret)


def test_signed_reinstall_of_a_row_with_an_unusable_secret_refused(
    client: Client,
    stored_unusable_secret: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    token = signed_with(stored_unusable_secret, "/bitbucket/installed")
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, token=token)
    assert_refused(response, 401, before, sent_signals, caplog, "secret_unusable")


def test_unsigned_reinstall_of_a_row_with_an_unusable_secret_refused(
    client: Client,
    stored_unusable_secret: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=NEW_SECRET))
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")


def test_unsigned_reinstall_of_a_row_with_a_non_ascii_secret_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored secret the pattern would refuse now (written some other way) is compared
    as bytes: hmac.compare_digest raises TypeError on non-ASCII text."""
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret="clé-secrète")
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")


def test_uninstall_of_a_row_with_an_unusable_secret_refused(
    client: Client,
    stored_unusable_secret: str,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    token = signed_with(stored_unusable_secret, "/bitbucket/uninstalled")
    response = post_lifecycle(client, "uninstalled", lifecycle_body("uninstalled"), token=token)
    assert_refused(response, 401, before, sent_signals, caplog, "secret_unusable")


# --- display text ---------------------------------------------------------------------------

# "gnp.exe" behind a right-to-left override renders as "exe.png".
RLO = "\u202e"


def test_first_install_stores_display_text_without_hidden_characters(
    client: Client, sent_signals: SignalRecorder
) -> None:
    principal = {
        "type": "workspace",
        "uuid": "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}\u200b",
        "display_name": f"Acme {RLO}gnp.exe",
        "username": "ac\u200bme\ufeff",
        "links": {"avatar": {"name": "a\x1b[31mb"}, "lines": ["one\r\ntwo", 3, None]},
    }
    user = {"display_name": "Ada\u00a0Admin\u202d", "nickname": "\u200e\u2066x\u2069", "n": 1}
    body = lifecycle_body(principal=principal, user=user)
    assert post_lifecycle(client, "installed", body).status_code == 204
    [row] = installation_rows()
    assert row["principal_name"] == "Acme gnp.exe"
    assert row["principal_uuid"] == "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}"
    assert row["principal"] == {
        "type": "workspace",
        "uuid": "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}",
        "display_name": "Acme gnp.exe",
        "username": "acme",
        "links": {"avatar": {"name": "a[31mb"}, "lines": ["onetwo", 3, None]},
    }
    assert row["installed_by"] == {"display_name": "Ada Admin", "nickname": "x", "n": 1}
    assert str(Installation.objects.get()) == "Acme gnp.exe"
    assert sent_signals.none_sent


def test_a_name_of_hidden_characters_only_gives_way_to_the_username(client: Client) -> None:
    principal = {"display_name": f"{RLO}\u200b\ufeff", "username": f"acme{RLO}"}
    assert post_lifecycle(
        client, "installed", lifecycle_body(principal=principal)
    ).status_code == (204)
    row = Installation.objects.get()
    assert row.principal_name == "acme"
    assert row.principal == {"display_name": "", "username": "acme"}


def test_a_rename_by_a_signed_reinstall_is_cleaned_too(
    client: Client, installed: Installation
) -> None:
    body = lifecycle_body(
        shared_secret=NEW_SECRET,
        principal={"display_name": f"Renamed{RLO}\r\n"},
        user={"display_name": "\x1bEve"},
    )
    assert post_lifecycle(client, "installed", body, secret=SHARED_SECRET).status_code == 204
    row = Installation.objects.get()
    assert row.principal_name == "Renamed"
    assert row.principal == {"display_name": "Renamed"}
    assert row.installed_by == {"display_name": "Eve"}


# --- limits at their edges -----------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """The default body, padded with an extra field to exactly ``size`` bytes."""
    body = lifecycle_body(padding="")
    body["padding"] = "p" * (size - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


def test_body_of_exactly_the_size_limit_accepted(client: Client) -> None:
    assert post_lifecycle(client, "installed", body_of_size(MAX_BODY_BYTES)).status_code == 204
    assert Installation.objects.get().client_key == CLIENT_KEY


def test_body_one_byte_over_the_size_limit_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = post_lifecycle(client, "installed", body_of_size(MAX_BODY_BYTES + 1))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_too_large")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_body_over_the_projects_upload_limit_refused_by_the_view(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    response = post_lifecycle(client, "installed", body_of_size(1001))
    assert_refused(response, 400, [], sent_signals, caplog, "payload_too_large")


def account_of_size(size: int) -> dict[str, Any]:
    """A principal whose JSON (as the app measures it) is exactly ``size`` bytes."""
    account = {"display_name": "Acme", "pad": ""}
    account["pad"] = "x" * (size - len(json.dumps(account)))
    assert len(json.dumps(account)) == size
    return account


def account_of_depth(depth: int) -> dict[str, Any]:
    """A principal nested ``depth`` containers deep (the account itself is the first)."""
    inner: list[Any] = []
    for _ in range(depth - 2):
        inner = [inner]
    return {"display_name": "Acme", "nested": inner}


@pytest.mark.parametrize("field", ["principal", "user"])
def test_accounts_at_their_limits_accepted(client: Client, field: str) -> None:
    body = body_with(field, account_of_size(MAX_ACCOUNT_JSON_BYTES))
    assert post_lifecycle(client, "installed", body).status_code == 204
    Installation.objects.all().delete()
    body = body_with(field, account_of_depth(MAX_ACCOUNT_DEPTH))
    assert post_lifecycle(client, "installed", body).status_code == 204
    assert Installation.objects.values_list(
        "principal" if field == "principal" else "installed_by", flat=True
    ).get() == account_of_depth(MAX_ACCOUNT_DEPTH)


@pytest.mark.parametrize("field", ["principal", "user"])
@pytest.mark.parametrize("over", ["size", "depth"])
def test_accounts_one_past_their_limits_refused(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    field: str,
    over: str,
) -> None:
    account = (
        account_of_size(MAX_ACCOUNT_JSON_BYTES + 1)
        if over == "size"
        else account_of_depth(MAX_ACCOUNT_DEPTH + 1)
    )
    response = post_lifecycle(client, "installed", body_with(field, account))
    assert_refused(response, 400, [], sent_signals, caplog, f"payload_{field}")


def reinstall_token_of_length(length: int) -> str:
    """A genuine re-install token of exactly ``length`` characters (padded with a claim)."""
    unpadded = len(lifecycle_token(SHARED_SECRET, "/bitbucket/installed", pad=""))
    # Base64 makes 4 characters of 3 bytes: start a little short of the length and grow.
    padding = max(0, (length - unpadded) * 3 // 4 - 4)
    token = ""
    while len(token) < length:
        token = lifecycle_token(SHARED_SECRET, "/bitbucket/installed", pad="x" * padding)
        padding += 1
    assert len(token) == length
    return token


def test_token_of_exactly_the_length_limit_accepted(
    client: Client, installed: Installation
) -> None:
    token = reinstall_token_of_length(MAX_TOKEN_LENGTH)
    body = lifecycle_body(shared_secret=NEW_SECRET)
    assert post_lifecycle(client, "installed", body, token=token).status_code == 204
    assert Installation.objects.get().shared_secret == NEW_SECRET


def test_token_one_character_over_the_length_limit_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    token = reinstall_token_of_length(MAX_TOKEN_LENGTH + 1)
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, token=token)
    assert_refused(response, 401, before, sent_signals, caplog, "token_malformed")


# --- log lines ------------------------------------------------------------------------------


def lifecycle_log_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, str]]]:
    """(level, what happened, fields) of each line the app logged: "lifecycle installed
    refused: reason=x client_key=y" gives ("WARNING", "lifecycle installed refused",
    {"reason": "x", "client_key": "y"}); a note in parentheses after the fields comes as
    "note"."""
    lines = []
    for record in caplog.records:
        if record.name == "bitbucket_install":
            event, _, fields = record.getMessage().partition(": ")
            fields, _, note = fields.partition(" (")
            pairs = dict(field.split("=", 1) for field in fields.split(" "))
            if note:
                pairs["note"] = note.removesuffix(")")
            lines.append((record.levelname, event, pairs))
    return lines


def test_log_lines_name_the_event_the_reason_and_the_client_key(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_lifecycle(client, "installed", lifecycle_body())
    post_lifecycle(client, "installed", claim(clientKey=OTHER_APP_CLIENT_KEY))
    post_lifecycle(client, "installed", b"{not json")
    post_lifecycle(client, "installed", lifecycle_body(shared_secret=NEW_SECRET))
    post_lifecycle(client, "uninstalled", lifecycle_body("uninstalled"), secret=OTHER_SECRET)
    post_lifecycle(client, "uninstalled", lifecycle_body("uninstalled"), secret=SHARED_SECRET)
    assert lifecycle_log_lines(caplog) == [
        ("INFO", "lifecycle installed accepted", {"client_key": CLIENT_KEY}),
        (
            "WARNING",
            "lifecycle installed refused",
            {"reason": "payload_client_key_other_app", "client_key": OTHER_APP_CLIENT_KEY},
        ),
        (
            "WARNING",
            "lifecycle installed refused",
            {"reason": "payload_not_json", "client_key": "None"},
        ),
        (
            "WARNING",
            "lifecycle installed refused",
            {
                "reason": "token_missing",
                "client_key": CLIENT_KEY,
                # The test client sent no Authorization header at all.
                "note": MISSING_AUTHORIZATION_HINT.strip()[1:-1],
            },
        ),
        (
            "WARNING",
            "lifecycle uninstalled refused",
            {"reason": "token_signature", "client_key": CLIENT_KEY},
        ),
        ("INFO", "lifecycle uninstalled accepted", {"client_key": CLIENT_KEY}),
    ]


def test_no_log_record_carries_a_secret_or_a_token(
    client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every way through the lifecycle, with every logger listening: none writes a secret
    or a token (trust rule 4), not even in a traceback."""
    caplog.set_level(logging.DEBUG)
    installed_path, uninstalled_path = "/bitbucket/installed", "/bitbucket/uninstalled"
    tokens = [
        lifecycle_token(NEW_SECRET, installed_path),  # wrong secret
        lifecycle_token(SHARED_SECRET, uninstalled_path),  # wrong qsh
        lifecycle_token(SHARED_SECRET, installed_path),  # the rotation
        lifecycle_token(OTHER_SECRET, installed_path, iss=OTHER_CLIENT_KEY),  # database error
        signed_with(ECDSA_SECRET, installed_path, iss=OTHER_CLIENT_KEY),  # a stored unusable one
        lifecycle_token(NEW_SECRET, uninstalled_path),  # the uninstall
    ]
    rotation = lifecycle_body(shared_secret=NEW_SECRET)
    responses = [
        post_lifecycle(client, "installed", lifecycle_body()),
        post_lifecycle(client, "installed", lifecycle_body()),  # a plain retry
        post_lifecycle(client, "installed", rotation),  # unsigned rotation
        post_lifecycle(client, "installed", rotation, token=tokens[0]),
        post_lifecycle(client, "installed", rotation, token=tokens[1]),
        post_lifecycle(client, "installed", rotation, token=tokens[2]),
        post_lifecycle(client, "installed", lifecycle_body(shared_secret=ECDSA_SECRET)),
    ]
    Installation.objects.create(client_key=OTHER_CLIENT_KEY, shared_secret=OTHER_SECRET)
    other = lifecycle_body(client_key=OTHER_CLIENT_KEY, shared_secret="next-" + OTHER_SECRET)

    def failing_save(self: Installation, *args: Any, **kwargs: Any) -> None:
        raise OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(Installation, "save", failing_save)
        responses.append(post_lifecycle(client, "installed", other, token=tokens[3]))
    Installation.objects.filter(client_key=OTHER_CLIENT_KEY).update(shared_secret=ECDSA_SECRET)
    responses.append(
        post_lifecycle(
            client, "installed", lifecycle_body(client_key=OTHER_CLIENT_KEY), token=tokens[4]
        )
    )
    uninstall = lifecycle_body("uninstalled", shared_secret=NEW_SECRET)
    responses.append(post_lifecycle(client, "uninstalled", uninstall, token=tokens[5]))
    statuses = [response.status_code for response in responses]
    assert statuses == [204, 204, 401, 401, 401, 204, 400, 503, 401, 204]
    assert len(caplog.records) >= len(responses)
    logged = caplog.text + "".join(
        f"{record.getMessage()}{record.args!r}{record.__dict__!r}" for record in caplog.records
    )
    for secret in (SHARED_SECRET, NEW_SECRET, OTHER_SECRET, "next-" + OTHER_SECRET):
        assert secret not in logged
    assert ECDSA_SECRET not in logged
    for token in tokens:
        assert token not in logged
        assert token.split(".")[2] not in logged  # not even the signature alone


# --- database errors and races --------------------------------------------------------


@pytest.fixture
def save_then_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installation.save writes, then the database fails: everything must roll back."""
    real_save = Installation.save

    def failing_save(self: Installation, *args: Any, **kwargs: Any) -> None:
        real_save(self, *args, **kwargs)
        raise OperationalError("database is locked")

    monkeypatch.setattr(Installation, "save", failing_save)


def test_database_error_on_first_install_gives_503(
    client: Client, sent_signals: SignalRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = Installation.save

    def failing_save(self: Installation, *args: Any, **kwargs: Any) -> None:
        real_save(self, *args, **kwargs)
        assert Installation.objects.filter(client_key=CLIENT_KEY).exists()  # written...
        raise OperationalError("database is locked")

    monkeypatch.setattr(Installation, "save", failing_save)
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == []  # ... and rolled back
    assert sent_signals.none_sent


def test_database_error_on_rotation_gives_503(
    client: Client, installed: Installation, sent_signals: SignalRecorder, save_then_fail: None
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_database_error_on_uninstall_gives_503(
    client: Client, installed: Installation, sent_signals: SignalRecorder, save_then_fail: None
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_database_error_on_lookup_gives_503(
    client: Client, sent_signals: SignalRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_lookup(queryset: InstallationQuerySet, client_key: str) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(InstallationQuerySet, "locked", failing_lookup)
    response = post_lifecycle(client, "installed", lifecycle_body())
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert installation_rows() == []
    assert sent_signals.none_sent


@pytest.fixture
def lost_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first lookup misses the row a concurrent first install has just committed."""
    real_locked = InstallationQuerySet.locked
    calls: list[str] = []

    def locked(queryset: InstallationQuerySet, client_key: str) -> Installation | None:
        calls.append(client_key)
        return None if len(calls) == 1 else real_locked(queryset, client_key)

    monkeypatch.setattr(InstallationQuerySet, "locked", locked)


def test_lost_race_with_the_same_install_answers_204(
    client: Client, installed: Installation, lost_race: None, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    assert post_lifecycle(client, "installed", lifecycle_body()).status_code == 204
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_lost_race_with_another_secret_refused(
    client: Client,
    installed: Installation,
    lost_race: None,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    response = post_lifecycle(client, "installed", lifecycle_body(shared_secret=NEW_SECRET))
    assert_refused(response, 401, before, sent_signals, caplog, "token_missing")


def test_lost_race_with_a_signed_rotation_accepted(
    client: Client, installed: Installation, lost_race: None
) -> None:
    body = lifecycle_body(shared_secret=NEW_SECRET)
    assert post_lifecycle(client, "installed", body, secret=SHARED_SECRET).status_code == 204
    assert Installation.objects.get().shared_secret == NEW_SECRET


# --- base path and script prefix ---------------------------------------------------------


@override_settings(BITBUCKET_INSTALL_BASE_URL="https://app.example.com/bitbucket")
def test_qsh_is_relative_to_the_base_url_path(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    full_path_token = lifecycle_token(SHARED_SECRET, "/bitbucket/installed", base_path="")
    response = post_lifecycle(client, "installed", body, token=full_path_token)
    assert_refused(response, 401, before, sent_signals, caplog, "token_qsh")

    relative_token = lifecycle_token(SHARED_SECRET, "/installed", base_path="")
    response = post_lifecycle(client, "installed", body, token=relative_token)
    assert response.status_code == 204
    assert Installation.objects.get().shared_secret == NEW_SECRET


@pytest.fixture
def restore_script_prefix() -> Iterator[None]:
    prefix = get_script_prefix()
    yield
    set_script_prefix(prefix)


@override_settings(
    FORCE_SCRIPT_NAME="/prefix", BITBUCKET_INSTALL_BASE_URL="https://app.example.com/prefix"
)
def test_qsh_under_a_script_prefix(
    client: Client, restore_script_prefix: None, sent_signals: SignalRecorder
) -> None:
    # Bitbucket calls https://app.example.com/prefix/bitbucket/installed; Django sees
    # PATH_INFO /bitbucket/installed under the script prefix /prefix.
    path = "/bitbucket/installed"
    assert client.post(path, lifecycle_body(), content_type="application/json").status_code == (
        204
    )
    body = json.dumps(lifecycle_body(shared_secret=NEW_SECRET))

    wrong = lifecycle_token(SHARED_SECRET, "/prefix/bitbucket/installed", base_path="")
    before = installation_rows()
    response = client.post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"JWT {wrong}"
    )
    assert response.status_code == 401
    assert installation_rows() == before

    right = lifecycle_token(SHARED_SECRET, "/prefix/bitbucket/installed", base_path="/prefix")
    response = client.post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"JWT {right}"
    )
    assert response.status_code == 204
    assert Installation.objects.get().shared_secret == NEW_SECRET
    assert sent_signals.none_sent


# --- the model ------------------------------------------------------------------------------


def test_client_key_is_unique() -> None:
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Installation.objects.create(client_key=CLIENT_KEY, shared_secret="b")
    assert Installation.objects.count() == 1


def test_str_and_is_installed() -> None:
    row = Installation(client_key=CLIENT_KEY)
    assert str(row) == CLIENT_KEY
    assert row.is_installed
    row.principal_name = "Acme Team"
    assert str(row) == "Acme Team"
    row.uninstalled_at = timezone.now()
    assert not row.is_installed


def test_queryset_by_status() -> None:
    now = timezone.now()
    on = Installation.objects.create(client_key="connection:1")
    off = Installation.objects.create(client_key="connection:2", uninstalled_at=now)
    assert list(Installation.objects.installed()) == [on]
    assert list(Installation.objects.uninstalled()) == [off]
    assert list(Installation.objects.by_status(installed=True)) == [on]
    assert list(Installation.objects.by_status(installed=False)) == [off]
    assert list(Installation.objects.filter(pk=on.pk).uninstalled()) == []


def test_default_ordering_is_newest_first() -> None:
    first = Installation.objects.create(client_key="connection:1")
    second = Installation.objects.create(client_key="connection:2")
    Installation.objects.filter(pk=first.pk).update(
        created_at=second.created_at - timedelta(days=1)
    )
    assert list(Installation.objects.all()) == [second, first]
