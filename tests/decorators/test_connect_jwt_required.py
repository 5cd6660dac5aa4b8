"""``connect_jwt_required`` on a project's own view (here a webhook defined in this module)."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path
from django.utils import timezone

from bitbucket_install.decorators import connect_jwt_required
from bitbucket_install.models import Installation
from bitbucket_install.tokens import CONTEXT_QSH, query_string_hash
from bitbucket_install.verification import MISSING_AUTHORIZATION_HINT
from tests.conftest import SignalRecorder
from tests.decorators.conftest import CLIENT_KEY, OTHER_KEY, OTHER_SECRET, SECRET
from tests.decorators.conftest import token as signed_token
from tests.lifecycle_helpers import installation_rows, raw_hmac_token

calls: list[HttpRequest] = []


@connect_jwt_required
def webhook(request: HttpRequest, repo: str) -> HttpResponse:
    """A project's view: sees the installation and the claims the decorator verified."""
    calls.append(request)
    installation: Installation = request.bitbucket_installation  # type: ignore[attr-defined]
    claims: dict[str, Any] = request.bitbucket_claims  # type: ignore[attr-defined]
    return JsonResponse(
        {"client_key": installation.client_key, "iss": claims["iss"], "repo": repo}
    )


urlpatterns = [path("hooks/<str:repo>/push", webhook, name="webhook")]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


@pytest.fixture
def installations() -> None:
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret=SECRET)
    Installation.objects.create(client_key=OTHER_KEY, shared_secret=OTHER_SECRET)


def token(path: str = "/hooks/r1/push", **options: Any) -> str:
    """A token over a POST to the project's view, unless ``options`` say otherwise."""
    return signed_token(path, **options)


def test_header_token_accepted(client: Client, installations: None) -> None:
    response = client.post("/hooks/r1/push", HTTP_AUTHORIZATION=f"JWT {token()}")
    assert response.status_code == 200
    assert response.json() == {"client_key": CLIENT_KEY, "iss": CLIENT_KEY, "repo": "r1"}
    [request] = calls
    assert request.bitbucket_installation == Installation.objects.get(  # type: ignore[attr-defined]
        client_key=CLIENT_KEY
    )


def test_query_token_accepted(client: Client, installations: None) -> None:
    jwt = token(method="GET", query_string="a=1&b=x%20y")
    response = client.get(f"/hooks/r1/push?b=x%20y&jwt={jwt}&a=1")
    assert response.status_code == 200
    assert response.json()["client_key"] == CLIENT_KEY


def test_second_installation_uses_its_own_secret(client: Client, installations: None) -> None:
    jwt = token(secret=OTHER_SECRET, iss=OTHER_KEY)
    response = client.post("/hooks/r1/push", HTTP_AUTHORIZATION=f"JWT {jwt}")
    assert response.status_code == 200
    assert response.json()["client_key"] == OTHER_KEY


def test_view_is_csrf_exempt(installations: None) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/hooks/r1/push", HTTP_AUTHORIZATION=f"JWT {token()}")
    assert response.status_code == 200


def test_wraps_the_view() -> None:
    assert webhook.__name__ == "webhook"
    assert webhook.__doc__ is not None
    assert "installation" in webhook.__doc__
    assert getattr(webhook, "csrf_exempt", False) is True
    assert getattr(webhook, "login_required", True) is False  # LoginRequiredMiddleware


REFUSALS: list[Any] = [
    pytest.param("/hooks/r1/push", {}, "token_missing", id="missing"),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "Bearer " + "x.y.z"},
        "token_missing",
        id="other scheme",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(iss="connection:999", secret="guess")},
        "unknown_installation",
        id="unknown issuer",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(iss="connection:0000", secret=SECRET)},
        "unknown_installation",
        id="row without secret",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(iss="connection:7777", secret=SECRET)},
        "unknown_installation",
        id="uninstalled installation",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(secret=OTHER_SECRET)},
        "token_signature",
        id="wrong secret",
    ),
    pytest.param(
        "/hooks/r2/push",
        {"HTTP_AUTHORIZATION": "JWT " + token()},
        "token_qsh",
        id="wrong qsh (path)",
    ),
    pytest.param(
        "/hooks/r1/push?a=1",
        {"HTTP_AUTHORIZATION": "JWT " + token()},
        "token_qsh",
        id="wrong qsh (query)",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(qsh=CONTEXT_QSH, method=None)},
        "token_context_qsh",
        id="context-qsh",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT " + token(iss="bad issuer")},
        "token_issuer",
        id="issuer of a wrong shape",
    ),
    pytest.param(
        "/hooks/r1/push",
        {"HTTP_AUTHORIZATION": "JWT not.a.token"},
        "token_malformed",
        id="malformed",
    ),
    pytest.param(
        f"/hooks/r1/push?jwt={token()}&jwt={token()}",
        {},
        "token_repeated",
        id="repeated ?jwt=",
    ),
    pytest.param(
        f"/hooks/r1/push?jwt={token(now=0)}",
        {},
        "token_expired",
        id="expired",
    ),
]


@pytest.mark.parametrize(("url", "extra", "reason"), REFUSALS)
def test_refused(
    client: Client,
    installations: None,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    url: str,
    extra: dict[str, str],
    reason: str,
) -> None:
    Installation.objects.create(client_key="connection:0000", shared_secret="")
    Installation.objects.create(
        client_key="connection:7777", shared_secret=SECRET, uninstalled_at=timezone.now()
    )
    before = installation_rows()
    response = client.post(url, **extra)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.content == b""
    assert calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    messages = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    # With no token and no Authorization header at all, the line says why that may be.
    hint = MISSING_AUTHORIZATION_HINT if not extra and reason == "token_missing" else ""
    path = f"/hooks/{url.split('/')[2]}/push"
    assert messages == [f"Connect JWT refused on {path}: reason={reason}{hint}"]


@pytest.mark.parametrize(
    "secret",
    [
        "ecdsa-sha2-nistp256AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----\n",
        '{"kty":"oct","k":"c2VjcmV0"}',
    ],
    ids=["ecdsa-sha2-nistp256", "PEM", "JWK"],
)
def test_installation_with_an_unusable_secret_refused(
    client: Client, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture, secret: str
) -> None:
    """A row stored before such secrets were refused: every token for it is a 401, none
    reaches the view, and the log names the reason without the secret or the token."""
    Installation.objects.create(client_key=CLIENT_KEY, shared_secret=secret)
    before = installation_rows()
    now = int(timezone.now().timestamp())
    jwt = raw_hmac_token(
        {
            "iss": CLIENT_KEY,
            "iat": now,
            "exp": now + 180,
            "qsh": query_string_hash("POST", "/hooks/r1/push", ""),
        },
        secret,
    )
    response = client.post("/hooks/r1/push", HTTP_AUTHORIZATION=f"JWT {jwt}")
    assert response.status_code == 401
    assert response.content == b""
    assert calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    messages = [r.getMessage() for r in caplog.records if r.name == "bitbucket_install"]
    assert messages == ["Connect JWT refused on /hooks/r1/push: reason=secret_unusable"]
    assert secret not in caplog.text
    assert jwt not in caplog.text
