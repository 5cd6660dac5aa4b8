"""``forge_invocation_required`` over the Django test client, against a real key server:
a good FIT runs the view with ``request.forge``; every bad one gets 401 (503 without keys)
and runs nothing, records nothing and signals nothing."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.decorators import forge_invocation_required
from bitbucket_install.forge import jwks, system_tokens
from bitbucket_install.forge.decorators import ForgeRequest
from bitbucket_install.models import Installation
from tests.conftest import SignalRecorder
from tests.forge import views
from tests.forge.helpers import (
    APP_ID,
    CLAIMS,
    INSTALLATION_ID,
    KID,
    NOW,
    SYSTEM_TOKEN_LIFETIME,
    VECTOR,
    claims,
    headers,
    hs256_with_public_key,
    mint,
    new_ec_key,
    new_rsa_key,
    public_jwk,
    system_token,
    unsigned,
    vector_public_pem,
)
from tests.forge.jwks_server import JWKSServer

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.forge.views")]

TOKEN: str = VECTOR["token"]
APP = CLAIMS["app"]
OTHER_APP = "ari:cloud:ecosystem::app/00000000-1111-4222-8333-444444444444"


def post(client: Client, request_headers: dict[str, str], path: str = "/remote") -> Any:
    return client.post(path, headers=request_headers)


def ours(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The app's log lines (Django's own "Unauthorized: ..." left out)."""
    return [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]


def assert_refused(
    response: Any, sent_signals: SignalRecorder, status: int = 401, rows: int = 0
) -> None:
    assert response.status_code == status
    assert response.content == b""
    assert views.calls == []
    assert sent_signals.none_sent
    assert Installation.objects.count() == rows
    assert system_tokens.system_token(INSTALLATION_ID) is None
    assert response["Cache-Control"] in ("no-store, private", "private, no-store")
    assert "Authorization" in response["Vary"]


def test_the_vectors_token_is_accepted(
    client: Client, keys: JWKSServer, sent_signals: SignalRecorder
) -> None:
    system = system_token(NOW + SYSTEM_TOKEN_LIFETIME, sub="app")
    user = system_token(NOW + 600, sub="user")
    response = post(
        client,
        headers(TOKEN, **{"x-forge-oauth-system": system, "x-forge-oauth-user": user}),
    )
    assert response.status_code == 200
    assert response.json() == {"view": "remote", "installation": INSTALLATION_ID}
    assert "Authorization" in response["Vary"]
    assert "no-store" in response["Cache-Control"]
    ((name, forge),) = views.calls
    assert name == "remote"
    assert forge.system_token == system
    assert forge.user_token == user
    invocation = forge.invocation
    assert invocation.app_id == APP_ID
    assert invocation.installation_id == INSTALLATION_ID
    assert invocation.environment_type == "PRODUCTION"
    assert invocation.environment_id == APP["environment"]["id"]
    assert invocation.api_base_url == "https://api.bitbucket.org"
    assert invocation.workspace_id == "b7ea02c9-0871-4858-a2a6-a190d7de977c"
    assert (invocation.module_type, invocation.module_key) == ("core:endpoint", "remote-lifecycle")
    assert invocation.claims == CLAIMS
    assert keys.fetches == 1
    # Kept for later work, until the token's own exp.
    assert system_tokens.system_token(INSTALLATION_ID) == system
    assert sent_signals.none_sent


def test_without_oauth_tokens_request_forge_has_none(client: Client) -> None:
    assert post(client, headers(TOKEN)).status_code == 200
    ((_, forge),) = views.calls
    assert (forge.system_token, forge.user_token) == (None, None)
    assert system_tokens.system_token(INSTALLATION_ID) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_in_any_case(client: Client, scheme: str) -> None:
    assert post(client, headers(TOKEN, scheme=scheme)).status_code == 200


@pytest.mark.parametrize("path", ["/async-remote", "/class"])
def test_async_and_class_based_views(client: Client, path: str) -> None:
    response = post(client, headers(TOKEN), path)
    assert response.status_code == 200
    assert [name for name, _ in views.calls] == [response.json()["view"]]


@pytest.mark.parametrize("path", ["/async-remote", "/class"])
def test_async_and_class_based_views_refuse(
    client: Client, path: str, sent_signals: SignalRecorder
) -> None:
    assert_refused(post(client, headers(mint(claims(aud=OTHER_APP))), path), sent_signals)


def test_an_audience_list_with_the_app(client: Client) -> None:
    token = mint(claims(aud=[OTHER_APP, APP_ID]))
    assert post(client, headers(token)).status_code == 200


def test_csrf_exempt(keys: JWKSServer) -> None:
    response = Client(enforce_csrf_checks=True).post("/remote", headers=headers(TOKEN))
    assert response.status_code == 200


def test_login_not_required() -> None:
    assert views.remote.login_required is False  # type: ignore[attr-defined]


def test_decorating_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="takes a view"):
        forge_invocation_required("remote")  # type: ignore[type-var]


def _time_shifted(**changes: Any) -> str:
    return mint(claims(**changes))


REFUSED = [
    pytest.param(headers(mint(claims(aud=OTHER_APP))), "token_audience", id="wrong-aud"),
    pytest.param(headers(mint(claims(aud=[OTHER_APP]))), "token_audience", id="aud-list"),
    pytest.param(headers(mint(claims(aud=5))), "token_audience", id="aud-number"),
    pytest.param(headers(mint(claims(iss="forge/other"))), "token_issuer", id="wrong-iss"),
    pytest.param(headers(_time_shifted(exp=NOW - 5)), "token_expired", id="expired"),
    pytest.param(headers(_time_shifted(nbf=NOW + 6)), "token_not_yet_valid", id="nbf-ahead"),
    pytest.param(headers(_time_shifted(iat=NOW + 6)), "token_issued_in_future", id="iat-ahead"),
    pytest.param(headers(mint(claims(jti=None))), "token_claims", id="no-jti"),
    pytest.param(headers(mint(claims(jti=""))), "token_claims", id="empty-jti"),
    pytest.param(headers(mint(claims(exp=None))), "token_claims", id="no-exp"),
    pytest.param(headers(mint(claims(nbf=None))), "token_claims", id="no-nbf"),
    pytest.param(headers(mint(claims(iat=None))), "token_claims", id="no-iat"),
    pytest.param(headers(mint(claims(exp=True))), "token_claims", id="exp-bool"),
    pytest.param(headers(mint(claims(exp="soon"))), "token_claims", id="exp-string"),
    pytest.param(headers(unsigned()), "token_algorithm", id="alg-none"),
    pytest.param(
        headers(hs256_with_public_key(vector_public_pem())),
        "token_algorithm",
        id="hs256-signed-with-the-public-key",
    ),
    pytest.param(
        headers(mint(key=new_ec_key(), algorithm="ES256")), "token_algorithm", id="es256"
    ),
    pytest.param(headers(mint(kid=None)), "token_kid", id="no-kid"),
    pytest.param(headers(mint(key=new_rsa_key())), "token_signature", id="another-key"),
    pytest.param(headers(TOKEN[:-4] + "AAAA"), "token_signature", id="tampered"),
    pytest.param(headers("not.a.token"), "token_malformed", id="malformed"),
    pytest.param(headers("x" * (32 * 1024 + 1)), "token_malformed", id="too-long"),
    pytest.param(headers(mint(claims(icLabel="../x"))), "ic_label_malformed", id="bad-icLabel"),
    pytest.param(
        headers(mint(claims(icLabel="orange"))), "ic_label_not_allowed", id="icLabel-unset"
    ),
    pytest.param(headers(TOKEN, scheme="JWT"), "token_scheme", id="jwt-scheme"),
    pytest.param(headers(TOKEN, scheme="Basic"), "token_scheme", id="basic-scheme"),
    pytest.param(headers(None), "token_missing", id="no-authorization"),
    pytest.param({**headers(None), "Authorization": "Bearer  "}, "token_missing", id="empty"),
    pytest.param({"Authorization": f"Bearer {TOKEN}"}, "trace_headers_missing", id="no-trace"),
    pytest.param(
        {"Authorization": f"Bearer {TOKEN}", "x-b3-traceid": "a523b7549f0b88c9"},
        "trace_headers_missing",
        id="no-span-id",
    ),
    pytest.param(
        {"Authorization": f"Bearer {TOKEN}", "x-b3-spanid": "2a2436c64727923f"},
        "trace_headers_missing",
        id="no-trace-id",
    ),
    pytest.param(
        headers(mint(claims(app={**APP, "id": OTHER_APP}))), "app_mismatch", id="app-id-other"
    ),
    pytest.param(
        headers(mint(claims(app={**APP, "installationId": "ari:x/other"}))),
        "installation_mismatch",
        id="installation-ids-disagree",
    ),
    pytest.param(
        headers(mint(claims(app={"id": APP_ID}))), "installation_missing", id="no-installation"
    ),
]


@pytest.mark.parametrize(("request_headers", "reason"), REFUSED)
def test_refused(
    client: Client,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    request_headers: dict[str, str],
    reason: str,
) -> None:
    system = system_token(NOW + SYSTEM_TOKEN_LIFETIME)
    with caplog.at_level(logging.WARNING, logger="bitbucket_install"):
        response = post(client, {**request_headers, "x-forge-oauth-system": system})
    assert_refused(response, sent_signals)
    assert ours(caplog) == [f"Forge invocation refused on /remote: reason={reason}"]


def test_icLabel_configured_is_accepted(client: Client, settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_FORGE_IC_LABELS = ["orange", "Not A Label"]
    assert post(client, headers(mint(claims(icLabel="orange")))).status_code == 200


def test_icLabel_not_among_the_configured_ones(
    client: Client, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_FORGE_IC_LABELS = ["blue"]
    assert_refused(post(client, headers(mint(claims(icLabel="orange")))), sent_signals)


@pytest.mark.parametrize("seconds", [0, 4])
def test_leeway_after_exp_and_before_nbf(client: Client, seconds: int) -> None:
    assert post(client, headers(mint(claims(exp=NOW - seconds)))).status_code == 200
    assert post(client, headers(mint(claims(nbf=NOW + 1 + seconds)))).status_code == 200


def test_unknown_kid_refetches_once_then_refuses(
    client: Client, keys: JWKSServer, sent_signals: SignalRecorder, no_cooldown: None
) -> None:
    assert post(client, headers(TOKEN)).status_code == 200
    views.calls.clear()
    assert keys.fetches == 1
    assert_refused(post(client, headers(mint(kid="made-up-kid"))), sent_signals)
    assert keys.fetches == 2


def test_unknown_kid_right_after_a_fetch_is_refused_without_fetching(
    client: Client, keys: JWKSServer, sent_signals: SignalRecorder
) -> None:
    assert post(client, headers(TOKEN)).status_code == 200
    views.calls.clear()
    for _ in range(3):
        assert_refused(post(client, headers(mint(kid="made-up-kid"))), sent_signals)
    assert keys.fetches == 1


def test_key_rotation_one_refetch_then_accepted(
    client: Client, keys: JWKSServer, no_cooldown: None
) -> None:
    assert post(client, headers(TOKEN)).status_code == 200
    rotated = new_rsa_key()
    keys.jwks = {"keys": [*keys.jwks["keys"], public_jwk(rotated, "test-fit-key-2")]}
    token = mint(key=rotated, kid="test-fit-key-2")
    assert post(client, headers(token)).status_code == 200
    assert keys.fetches == 2
    assert post(client, headers(token)).status_code == 200
    assert post(client, headers(TOKEN)).status_code == 200
    assert keys.fetches == 2
    assert len(views.calls) == 4


def test_the_jwks_is_fetched_again_after_its_lifespan(
    client: Client, keys: JWKSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "JWKS_LIFESPAN", 0.001)
    assert post(client, headers(TOKEN)).status_code == 200
    time.sleep(0.01)  # monotonic: the frozen wall clock does not hold it
    assert post(client, headers(TOKEN)).status_code == 200
    assert keys.fetches == 2


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((500, b"oops"), id="500"),
        pytest.param((200, b"<html>"), id="not-json"),
        pytest.param((200, b"[]"), id="not-an-object"),
        pytest.param((200, b'{"keys": []}'), id="no-keys"),
        pytest.param((200, b'{"keys": [{"kty": "RSA", "kid": "x"}]}'), id="unusable-key"),
        pytest.param((200, b"\xff\xfe"), id="not-utf8"),
    ],
)
def test_jwks_unusable_is_503(
    client: Client,
    keys: JWKSServer,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    answer: tuple[int, bytes],
) -> None:
    keys.answer = answer
    with caplog.at_level(logging.ERROR, logger="bitbucket_install"):
        response = post(client, headers(TOKEN))
    assert_refused(response, sent_signals, status=503)
    assert response["Retry-After"] == "5"
    assert keys.fetches == 1
    (message,) = ours(caplog)
    assert message.startswith(
        f"Forge invocation not verified on /remote: the JWKS {keys.url} is unavailable ("
    )


def test_jwks_server_down_is_503(
    client: Client, keys: JWKSServer, sent_signals: SignalRecorder
) -> None:
    keys.stop()
    assert_refused(post(client, headers(TOKEN)), sent_signals, status=503)
    assert_refused(post(client, headers(TOKEN), "/async-remote"), sent_signals, status=503)


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("BITBUCKET_INSTALL_FORGE_JWKS_URL", "http://keys.example/jwks.json", "jwks_url"),
        ("BITBUCKET_INSTALL_FORGE_APP_ID", None, "app_id_not_configured"),
        ("BITBUCKET_INSTALL_FORGE_APP_ID", APP_ID.rpartition("/")[2], "app_id_not_configured"),
    ],
)
def test_configuration_that_cannot_verify_refuses(
    client: Client,
    settings: Settings,
    keys: JWKSServer,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    setting: str,
    value: str | None,
    reason: str,
) -> None:
    setattr(settings, setting, value)
    with caplog.at_level(logging.WARNING, logger="bitbucket_install"):
        assert_refused(post(client, headers(TOKEN)), sent_signals)
    (message,) = ours(caplog)
    assert message.startswith("Forge invocation refused on /remote: reason=" + reason)
    assert keys.fetches == 0


def test_the_oauth_tokens_and_the_fit_are_never_logged(
    client: Client, keys: JWKSServer, caplog: pytest.LogCaptureFixture
) -> None:
    system = system_token(NOW + SYSTEM_TOKEN_LIFETIME, sub="system-secret-marker")
    user = system_token(NOW + 600, sub="user-secret-marker")
    oauth = {"x-forge-oauth-system": system, "x-forge-oauth-user": user}
    bad = mint(claims(aud=OTHER_APP))
    with caplog.at_level(logging.DEBUG):
        assert post(client, headers(TOKEN, **oauth)).status_code == 200
        assert post(client, headers(bad, **oauth)).status_code == 401
        assert post(client, headers(TOKEN, **oauth), "/async-remote").status_code == 200
        keys.answer = (500, b"down")
        jwks.jwks_client.cache_clear()
        assert post(client, headers(TOKEN, **oauth)).status_code == 503
    assert len(caplog.records) >= 2
    for record in caplog.records:
        logged = record.getMessage() + repr(record.args) + repr(record.__dict__)
        for secret in (system, user, TOKEN, bad):
            assert secret not in logged
    ((_, forge), _) = views.calls
    assert system not in repr(forge)
    assert user not in repr(forge)
    assert repr(forge).startswith("ForgeRequest(invocation=Invocation(app_id=")
    assert isinstance(forge, ForgeRequest)


def test_a_refused_kid_does_not_hide_the_known_one(
    client: Client, keys: JWKSServer, no_cooldown: None
) -> None:
    assert post(client, headers(mint(kid="made-up-kid"))).status_code == 401
    assert post(client, headers(TOKEN)).status_code == 200
    assert keys.fetches == 2
    assert KID in {key["kid"] for key in keys.jwks["keys"]}


def test_request_forge_finds_the_recorded_forge_installation(client: Client) -> None:
    from bitbucket_install.models import ForgeInstallation

    assert post(client, headers(TOKEN)).status_code == 200
    ((_, before),) = views.calls
    assert before.forge_installation is None  # no installed event recorded yet

    row = ForgeInstallation.objects.create(installation_id=INSTALLATION_ID, app_id=APP_ID)
    views.calls.clear()
    assert post(client, headers(TOKEN)).status_code == 200
    ((_, forge),) = views.calls
    assert forge.forge_installation == row
    assert forge.forge_installation is forge.forge_installation  # read once


@pytest.mark.django_db(transaction=True)
def test_async_views_ask_for_the_forge_installation_with_await(
    client: Client, server_threads_connections: None
) -> None:
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    from bitbucket_install.models import ForgeInstallation

    assert post(client, headers(TOKEN), "/async-remote").status_code == 200
    ((_, forge),) = views.calls
    try:
        assert asyncio.run(forge.aforge_installation()) is None
        row = ForgeInstallation.objects.create(installation_id=INSTALLATION_ID, app_id=APP_ID)
        assert asyncio.run(forge.aforge_installation()) == row
    finally:
        # The async queries ran on asgiref's thread: its connection is closed there, or
        # PostgreSQL could not drop the test database at the end.
        asyncio.run(sync_to_async(connections.close_all)())
