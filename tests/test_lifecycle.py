"""The ``installed`` / ``uninstalled`` lifecycle callbacks, through the real URLs.

Follows the signing table of protocol.md section 4. Every refusal asserts its status, that
no Installation row changed, that no signal was sent, and the reason the app logged.
The Installation model's own behaviour is tested at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
from bitbucket_install.payloads import LifecyclePayload
from bitbucket_install.tokens import CONTEXT_QSH, encode_token, query_string_hash
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import (
    APP_KEY,
    CLIENT_KEY,
    SHARED_SECRET,
    installation_rows,
    lifecycle_body,
    lifecycle_token,
    post_lifecycle,
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
    assert row["confirmed_flow"] == ""
    assert before <= row["installed_at"] <= timezone.now()
    assert before <= row["created_at"] <= timezone.now()
    # The installed signal belongs to the browser's return trip, not to the callback.
    assert sent_signals.none_sent


def test_first_install_of_a_minimal_body(client: Client) -> None:
    body = {"clientKey": "connection:7", "sharedSecret": "s", "eventType": "installed"}
    assert post_lifecycle(client, "installed", body).status_code == 204
    row = Installation.objects.get(client_key="connection:7")
    assert row.shared_secret == "s"
    assert row.principal is None
    assert row.principal_name == ""
    assert str(row) == "connection:7"


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
    assert row.confirmed_flow == ""
    assert sent_signals.none_sent
    # From now on the new secret signs, and the old one no longer does.
    third = lifecycle_body(shared_secret="third-secret")
    assert post_lifecycle(client, "installed", third, secret=SHARED_SECRET).status_code == 401
    assert post_lifecycle(client, "installed", third, secret=NEW_SECRET).status_code == 204
    assert Installation.objects.get().shared_secret == "third-secret"


def test_reinstall_signed_with_the_same_secret_is_accepted(
    client: Client, installed: Installation
) -> None:
    body = lifecycle_body(productType="bitbucket", baseUrl="https://bitbucket.example")
    assert post_lifecycle(client, "installed", body, secret=SHARED_SECRET).status_code == 204
    assert Installation.objects.get().base_url == "https://bitbucket.example"


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
    body = lifecycle_body(principal={"display_name": "Attacker"}, baseUrl="https://evil.example")
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
        pytest.param(path_token("/bitbucket/uninstalled"), "token_qsh", id="qsh of another path"),
        pytest.param(
            path_token("/bitbucket/installed", method="GET"), "token_qsh", id="qsh of GET"
        ),
        pytest.param(
            path_token("/bitbucket/installed", query_string="a=1"),
            "token_qsh",
            id="qsh of another query",
        ),
        pytest.param(
            path_token("/installed", base_path=""), "token_qsh", id="qsh without the mount"
        ),
        pytest.param(path_token("/", qsh=CONTEXT_QSH), "token_context_qsh", id="context-qsh"),
        pytest.param(
            encode_token(
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
            encode_token(
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
            path_token("/bitbucket/installed", aud="https://evil.example"),
            "token_audience",
            id="aud",
        ),
        pytest.param(path_token("/bitbucket/installed", qsh=None), "token_claims", id="no qsh"),
        pytest.param(
            jwt.encode(
                {"iss": CLIENT_KEY, "qsh": query_string_hash("POST", "/bitbucket/installed", "")},
                SHARED_SECRET * 3,
                "HS512",
            ),
            "token_algorithm",
            id="HS512",
        ),
        pytest.param(
            jwt.encode(
                {"iss": CLIENT_KEY},
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "RS256",
                {"kid": "key-1"},
            ),
            "token_algorithm",
            id="RS256 with kid",
        ),
        pytest.param("not-a-token", "token_malformed", id="malformed"),
        pytest.param("x" * 9000, "token_malformed", id="oversize"),
    ],
)
def test_reinstall_with_a_bad_token_refused(
    client: Client,
    installed: Installation,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    token: str,
    reason: str,
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, token=token)
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
        "installed", lifecycle_body(key="other-app"), "payload_key", id="another app key"
    ),
    pytest.param(
        "uninstalled",
        lifecycle_body("uninstalled", key="other-app"),
        "payload_key",
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
def test_any_app_key_accepted_when_none_is_configured(client: Client) -> None:
    response = post_lifecycle(client, "installed", lifecycle_body(key="some-other-app"))
    assert response.status_code == 204
    assert Installation.objects.get().addon_key == "some-other-app"


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
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_record_is_abstract() -> None:
    payload = LifecyclePayload("x", "k", "", "", "", "", "", "", None, None)
    with pytest.raises(NotImplementedError):
        LifecycleView().record(None, payload, None)  # type: ignore[arg-type]


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
    assert installation_rows() == []  # ... and rolled back
    assert sent_signals.none_sent


def test_database_error_on_rotation_gives_503(
    client: Client, installed: Installation, sent_signals: SignalRecorder, save_then_fail: None
) -> None:
    before = installation_rows()
    body = lifecycle_body(shared_secret=NEW_SECRET)
    response = post_lifecycle(client, "installed", body, secret=SHARED_SECRET)
    assert response.status_code == 503
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_database_error_on_uninstall_gives_503(
    client: Client, installed: Installation, sent_signals: SignalRecorder, save_then_fail: None
) -> None:
    before = installation_rows()
    body = lifecycle_body("uninstalled")
    response = post_lifecycle(client, "uninstalled", body, secret=SHARED_SECRET)
    assert response.status_code == 503
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
