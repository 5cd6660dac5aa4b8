"""The simulator's Forge side: its JWKS, the app's default JWKS URL while it is on, and its
Forge page, which posts signed lifecycle events to this site's receiver."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from django.core.cache import cache
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.conf import DEFAULT_FORGE_JWKS_URL, app_settings
from bitbucket_install.models import ForgeInstallation
from bitbucket_install.signals import forge_installed, forge_upgraded
from bitbucket_install.simulator import forge, transport
from tests.conftest import SignalRecorder
from tests.forge.helpers import APP_ID
from tests.forge.jwks_server import JWKSServer
from tests.simulator.helpers import Router

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/bitbucket/simulator/forge/"


@pytest.fixture(autouse=True)
def simulator(settings: Settings, keys: JWKSServer, monkeypatch: pytest.MonkeyPatch) -> Router:
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    cache.clear()
    # The app fetches the simulator's JWKS from this server (the test site is not served).
    keys.jwks = forge.jwks()
    router = Router()
    monkeypatch.setattr(transport, "send", router)
    return router


def post(action: str, **data: str) -> Any:
    return Client().post(PAGE, {"action": action, **data})


def test_jwks_of_the_simulators_key(client: Client) -> None:
    served = client.get("/bitbucket/simulator/forge/jwks.json").json()
    [key] = served["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["kid"] == forge.key_id(forge.signing_key())
    # One key for every process: it is kept in the cache.
    assert forge.jwks() == served


def test_the_jwks_url_is_the_simulators_while_it_is_on(settings: Settings) -> None:
    del settings.BITBUCKET_INSTALL_FORGE_JWKS_URL
    assert app_settings.FORGE_JWKS_URL == (
        "https://app.example.com/bitbucket/simulator/forge/jwks.json"
    )
    settings.BITBUCKET_INSTALL_SIMULATOR = False
    assert app_settings.FORGE_JWKS_URL == DEFAULT_FORGE_JWKS_URL


def test_the_page_installs_and_upgrades_the_forge_app(
    simulator: Router, sent_signals: SignalRecorder
) -> None:
    page = Client().get(PAGE)
    assert page.status_code == 200
    assert APP_ID in page.content.decode()

    installed = post("install", workspace="Acme")

    assert installed.status_code == 200
    assert "The site answered HTTP 204." in installed.content.decode()
    [call] = simulator.posts()
    assert call.url == "https://app.example.com/bitbucket/forge/lifecycle"
    assert call.headers["Authorization"].startswith("Bearer ")
    token = call.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == APP_ID
    assert claims["exp"] - claims["iat"] == forge.TOKEN_LIFETIME
    row = ForgeInstallation.objects.get()
    assert row.installation_id == claims["app"]["installationId"]
    assert row.workspace_id == claims["app"]["installation"]["contexts"][0]["workspaceId"]
    assert "{" not in row.workspace_id
    assert row.api_base_url == "https://app.example.com/bitbucket/simulator/api"
    assert len(sent_signals.of(forge_installed)) == 1

    upgraded = post("upgrade", workspace="Acme")
    assert upgraded.status_code == 200
    assert ForgeInstallation.objects.get().app_version == "2.0.0"
    assert len(sent_signals.of(forge_upgraded)) == 1
    assert "The site answered HTTP 204." in upgraded.content.decode()
    assert row.installation_id in Client().get(PAGE).content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "reinstall", "workspace": "Acme"}, "Unknown action."),
        ({"action": "install", "workspace": " "}, "Name the workspace"),
    ],
)
def test_refusals(data: dict[str, str], message: str, simulator: Router) -> None:
    response = Client().post(PAGE, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert simulator.posts() == []
    assert ForgeInstallation.objects.count() == 0


def test_without_a_forge_app_the_page_says_what_to_set(
    settings: Settings, simulator: Router
) -> None:
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = None
    assert 'id="no-app-id"' in Client().get(PAGE).content.decode()
    refused = post("install", workspace="Acme")
    assert refused.status_code == 400
    assert "Set BITBUCKET_INSTALL_FORGE_APP_ID" in refused.content.decode()
    assert simulator.posts() == []


def test_events_go_only_under_the_base_url(settings: Settings, simulator: Router) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = "https://app.example.com/elsewhere"
    refused = post("install", workspace="Acme")
    assert refused.status_code == 400
    assert "sends events nowhere else" in refused.content.decode()
    assert simulator.posts() == []


def test_a_site_that_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*args: Any) -> Any:
        raise OSError("refused")

    monkeypatch.setattr(transport, "send", unreachable)
    response = post("install", workspace="Acme")
    assert response.status_code == 200
    assert "Not delivered" in response.content.decode()


def test_off_without_the_simulator(settings: Settings, client: Client) -> None:
    settings.BITBUCKET_INSTALL_SIMULATOR = False
    assert client.get(PAGE).status_code == 404
    assert client.get("/bitbucket/simulator/forge/jwks.json").status_code == 404


def test_each_workspace_gets_its_own_forge_installation(simulator: Router) -> None:
    assert post("install", workspace="Acme").status_code == 200
    assert post("install", workspace="Globex").status_code == 200
    assert post("upgrade", workspace="Acme").status_code == 200
    assert ForgeInstallation.objects.count() == 2
    assert len({item["id"] for item in forge.installations()}) == 2


def test_a_key_entry_that_is_not_rsa_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cache.set(forge.KEY_ENTRY, other.decode("ascii"), None)
    with pytest.raises(TypeError, match="not an RSA key"):
        forge.signing_key()
