"""The simulated API as a Forge installation sees it: the app system token the simulator's
Forge page sent, as ``Authorization: Bearer``, on its own workspace's
``/2.0/workspaces/{w}`` and ``/2.0/repositories/{w}`` and on
``/2.0/addon/{addon_key}/client-key`` (Forge only). Refusals are Bitbucket's 401 (or 404)
with nothing changed. The last test goes the whole way: a Forge installation recorded by the
app's receiver from the Forge page's event calls the simulator with the real
``BitbucketClient``, gets the Connect clientKey and links with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.client import BitbucketClient
from bitbucket_install.forge import jwks as forge_jwks
from bitbucket_install.forge.linking import link
from bitbucket_install.models import ForgeInstallation, Installation
from bitbucket_install.outgoing import OutgoingSigner
from bitbucket_install.simulator import api, forge, state
from bitbucket_install.simulator.base import Workspace
from tests.conftest import SignalRecorder
from tests.forge.helpers import APP_ID
from tests.forge.jwks_server import running
from tests.simulator.helpers import APP_KEY, Router, django_transport

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

API = "/bitbucket/simulator/api"
WORKSPACE = Workspace.named("Acme")
OTHER = Workspace.named("Elsewhere")
FORGE_ID = f"ari:cloud:ecosystem::installation/{uuid.UUID(int=7)}"
CLIENT_KEY = "connection:7001"
SECRET = "simulated-secret-fedcba9876543210"


@pytest.fixture(autouse=True)
def simulated(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = APP_ID
    cache.set(forge.INSTALLS, [{"id": FORGE_ID, "workspace": WORKSPACE.name, "app_id": APP_ID}])
    state.remember_install(
        "install-acme", CLIENT_KEY, SECRET, app_key=APP_KEY, workspace=WORKSPACE.name, scopes=()
    )


def system_token(sub: str = FORGE_ID, lifetime: int = 3600, **claims: Any) -> str:
    now = int(time.time())
    return forge.sign({"sub": sub, "iat": now, "exp": now + lifetime, **claims})


def get(client: Client, path: str, authorization: str | None = None) -> TestResponse:
    headers = {} if authorization is None else {"Authorization": authorization}
    response: TestResponse = client.get(API + path, secure=True, headers=headers)
    return response


def bearer(token: str | None = None) -> str:
    return "Bearer " + (system_token() if token is None else token)


def assert_refused(
    response: TestResponse, status: int, sent_signals: SignalRecorder, message: str | None = None
) -> None:
    assert response.status_code == status
    data = response.json()
    assert data["type"] == "error"
    assert data["error"]["message"] == (message or data["error"]["message"])
    assert sent_signals.none_sent
    assert not ForgeInstallation.objects.exists()
    assert not Installation.objects.exists()


def test_the_forge_caller_gets_the_connect_client_key(client: Client) -> None:
    response = get(client, f"/2.0/addon/{APP_KEY}/client-key", bearer())
    assert response.status_code == 200, response.content
    assert response.json() == {"clientKey": CLIENT_KEY}
    assert response["Cache-Control"] == "no-store"


def test_the_forge_caller_reads_its_own_workspace(client: Client) -> None:
    workspace = get(client, f"/2.0/workspaces/{WORKSPACE.slug}", bearer())
    assert workspace.status_code == 200
    assert workspace.json() == WORKSPACE.api
    repositories = get(client, f"/2.0/repositories/{WORKSPACE.slug}", bearer())
    assert repositories.status_code == 200
    assert repositories.json()["values"] == WORKSPACE.repositories()


def test_another_workspace_is_not_found(client: Client, sent_signals: SignalRecorder) -> None:
    for path in (f"/2.0/workspaces/{OTHER.slug}", f"/2.0/repositories/{OTHER.slug}"):
        assert_refused(get(client, path, bearer()), 404, sent_signals)


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda: None, id="no-connect-installation-of-that-key"),
        pytest.param(
            lambda: state.remember_install(
                "install-other",
                "connection:7002",
                SECRET,
                app_key="other-app",
                workspace=OTHER.name,
                scopes=(),
            ),
            id="installed-on-another-workspace",
        ),
    ],
)
def test_no_connect_installation_is_a_404(
    client: Client, sent_signals: SignalRecorder, setup: Any
) -> None:
    setup()
    response = get(client, "/2.0/addon/other-app/client-key", bearer())
    assert_refused(response, 404, sent_signals)
    assert "other-app" in response.json()["error"]["message"]


def test_a_deleted_connect_installation_is_a_404(
    client: Client, sent_signals: SignalRecorder
) -> None:
    installation = state.installation(CLIENT_KEY)
    assert installation is not None
    state.save_installation(state.SimulatedInstallation(**{**vars(installation), "deleted": True}))
    assert_refused(get(client, f"/2.0/addon/{APP_KEY}/client-key", bearer()), 404, sent_signals)


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def connect_jwt(path: str) -> str:
    signer = OutgoingSigner(APP_KEY, CLIENT_KEY, SECRET)
    return "JWT " + signer.token("GET", API + path, API, now=time.time())


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda: None, id="none"),
        pytest.param(lambda: "Bearer not-a-token", id="unknown-bearer"),
        pytest.param(lambda: bearer(system_token(lifetime=-120)), id="expired"),
        pytest.param(lambda: bearer(system_token(sub="ari:x/unknown")), id="unknown-sub"),
        pytest.param(
            lambda: bearer(
                jwt.encode(
                    {"sub": FORGE_ID, "exp": time.time() + 60}, other_key(), algorithm="RS256"
                )
            ),
            id="another-key",
        ),
        pytest.param(
            lambda: bearer(jwt.encode({"sub": FORGE_ID, "exp": time.time() + 60}, "s" * 32)),
            id="hs256",
        ),
        pytest.param(lambda: bearer(forge.sign({"sub": FORGE_ID})), id="no-exp"),
        pytest.param(lambda: connect_jwt(f"/2.0/addon/{APP_KEY}/client-key"), id="connect-jwt"),
    ],
)
def test_the_client_key_is_for_a_forge_caller_only(
    client: Client, sent_signals: SignalRecorder, authorization: Any
) -> None:
    response = get(client, f"/2.0/addon/{APP_KEY}/client-key", authorization())
    assert_refused(response, 401, sent_signals, "Unauthorized")
    assert response.json()["error"]["detail"]


def test_the_connect_jwt_is_told_what_the_endpoint_wants(client: Client) -> None:
    response = get(
        client, f"/2.0/addon/{APP_KEY}/client-key", connect_jwt(f"/2.0/addon/{APP_KEY}/client-key")
    )
    assert response.status_code == 401
    assert "Forge app only" in response.json()["error"]["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/2.0/user"),
        ("GET", f"/2.0/repositories/{WORKSPACE.slug}/x"),
        ("PUT", "/2.0/addon"),
    ],
)
def test_the_system_token_is_refused_elsewhere(
    client: Client, sent_signals: SignalRecorder, method: str, path: str
) -> None:
    response = client.generic(method, API + path, secure=True, headers={"Authorization": bearer()})
    assert_refused(response, 401, sent_signals, "Unauthorized")


def test_an_unknown_path_is_not_found_for_a_forge_caller(
    client: Client, sent_signals: SignalRecorder
) -> None:
    assert_refused(get(client, "/2.0/nothing-here", bearer()), 404, sent_signals)


def test_the_429_switch_counts_forge_calls(client: Client) -> None:
    state.set_rate_limited(1)
    assert get(client, f"/2.0/addon/{APP_KEY}/client-key", bearer()).status_code == 429
    assert get(client, f"/2.0/addon/{APP_KEY}/client-key", bearer()).status_code == 200


def test_a_grant_token_never_makes_a_forge_key() -> None:
    cache.delete(forge.KEY_ENTRY)
    assert api.forge_caller("not-a-jwt") is None
    assert api.forge_caller(jwt.encode({"sub": "ari:x/unknown"}, "s" * 32)) is None
    assert cache.get(forge.KEY_ENTRY) is None


@pytest.fixture
def simulated_jwks(settings: Settings) -> Iterator[None]:
    """The app fetches the simulator's JWKS from a server (the test site is not served)."""
    with running(forge.jwks()) as server:
        settings.BITBUCKET_INSTALL_FORGE_JWKS_URL = server.url
        forge_jwks.jwks_client.cache_clear()
        yield
    forge_jwks.jwks_client.cache_clear()


def test_a_forge_installation_gets_its_client_key_and_links(
    client: Client, router: Router, simulated_jwks: None, sent_signals: SignalRecorder
) -> None:
    cache.set(forge.INSTALLS, [])  # the Forge page makes its own
    sent = forge.send_event({"action": "install", "workspace": WORKSPACE.name})
    assert sent["status"] == 204, sent
    forge_installation = ForgeInstallation.objects.get()
    assert forge_installation.connect_installation is None  # no Connect row here yet
    connect = Installation.objects.create(
        client_key=CLIENT_KEY,
        addon_key=APP_KEY,
        shared_secret=SECRET,
        base_url="https://app.example.com/bitbucket/simulator",
        base_api_url="https://app.example.com/bitbucket/simulator/api",
        principal_uuid=WORKSPACE.uuid,
        installed_at=timezone.now(),
        confirmed_at=timezone.now(),
    )

    with BitbucketClient(forge_installation, transport=django_transport(client)) as bb:
        client_key = bb.get(f"/2.0/addon/{APP_KEY}/client-key").json()["clientKey"]
        workspace = bb.get(f"/2.0/workspaces/{WORKSPACE.slug}").json()

    assert client_key == CLIENT_KEY
    assert workspace["uuid"] == WORKSPACE.uuid
    assert link(forge_installation, client_key) == connect
    forge_installation.refresh_from_db()
    assert forge_installation.connect_installation == connect
    assert forge_installation.linked_at is not None
