"""The development simulator (bitbucket_install/simulator.py), end to end through the app.

The simulator's HTTP transport is routed through Django's test client (``Router``), so
the descriptor it fetches and the ``installed`` callback it POSTs reach the app's real
views; ``test_transport_*`` check the real urllib transport against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from pytest_django.fixtures import DjangoCaptureOnCommitCallbacks, Settings

from bitbucket_install import simulator
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from bitbucket_install.simulator import (
    Descriptor,
    InstallLink,
    SimulatedError,
    Workspace,
    add_query,
    check_descriptor,
    error_target,
    parse_link,
    success_url,
)
from bitbucket_install.tokens import TokenError, query_string_hash, verify_token
from tests.conftest import SignalRecorder

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

SIMULATOR_PATH = "/bitbucket/simulator/authorize/"
SIMULATOR_URL = "https://app.example.com" + SIMULATOR_PATH
BASE_URL = "https://app.example.com"
CALLBACK_URL = BASE_URL + "/bitbucket/callback/"
DESCRIPTOR_URL = BASE_URL + "/bitbucket/atlassian-connect.json"
INSTALLED_URL = BASE_URL + "/bitbucket/installed"
OTHER_DESCRIPTOR = "https://other.example.net/atlassian-connect.json"
APP_KEY = "example-app"

pytestmark = pytest.mark.django_db


@dataclass
class Call:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body or b"")
        return data


@dataclass
class Router:
    """The simulator's transport, answering through Django's test client (or ``answers``)."""

    calls: list[Call] = field(default_factory=list)
    answers: dict[str, tuple[int, bytes] | Exception] = field(default_factory=dict)

    def __call__(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        self.calls.append(Call(method, url, body, dict(headers or {})))
        answer = self.answers.get(url)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        secure = parts.scheme == "https"
        server = Client()
        response: TestResponse
        if method == "GET":
            response = server.get(path, secure=secure)
        else:
            response = server.post(
                path,
                data=body,
                content_type="application/json",
                secure=secure,
                headers={k: v for k, v in (headers or {}).items() if k == "Authorization"},
            )
        return response.status_code, response.content

    def posts(self) -> list[Call]:
        return [call for call in self.calls if call.method == "POST"]


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Router:
    routed = Router()
    monkeypatch.setattr(simulator, "transport", routed)
    return routed


@pytest.fixture(autouse=True)
def simulator_on(settings: Settings) -> Iterator[None]:
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = SIMULATOR_URL
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def unregistered(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = DESCRIPTOR_URL
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {
        "key": APP_KEY,
        "name": "Example app",
        "description": "An app used by the test suite.",
        "scopes": ["account", "repository", "made-up-scope"],
    }


def rows() -> list[dict[str, Any]]:
    return list(Installation.objects.order_by("pk").values())


def link(**params: str | list[str]) -> str:
    """The simulator's path with ``params`` as the install link's query."""
    return SIMULATOR_PATH + "?" + urlencode(params, doseq=True)


def registered_link(**extra: str) -> str:
    return link(addon_key=APP_KEY, redirect_uri=CALLBACK_URL, **extra)


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


def path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + ("?" + parts.query if parts.query else "")


def assert_error_redirect(response: TestResponse, code: str, target: str = CALLBACK_URL) -> None:
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(target + "?")
    query = query_of(location)
    assert query["error"] == [code]
    assert query["error_description"][0]
    assert "clientKey" not in query
    assert "jwt" not in query


def assert_error_page(response: TestResponse, code: str, status: int = 400) -> None:
    assert response.status_code == status
    assert "Location" not in response
    assert f'<code id="error">{code}</code>' in response.content.decode()


def grant(
    client: Client, path: str, workspace: str = "Demo workspace", send_jwt: bool = True
) -> TestResponse:
    data = {"action": "grant", "workspace": workspace}
    if send_jwt:
        data["send_jwt"] = "on"
    response: TestResponse = client.post(path, data)
    return response


def start(client: Client) -> str:
    """Press the app's install button; return the simulator path it sends the browser to."""
    response = client.post("/bitbucket/install/")
    assert response.status_code == 303
    location: str = response["Location"]
    assert location.startswith(SIMULATOR_URL + "?")
    return path_of(location)


# --- on only with DEBUG and the setting ------------------------------------------------


@pytest.mark.parametrize(
    ("debug", "enabled"), [(False, True), (True, False), (False, False)], ids=str
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_simulator_is_a_404_unless_debug_and_setting(
    settings: Settings,
    router: Router,
    sent_signals: SignalRecorder,
    debug: bool,
    enabled: bool,
    method: str,
) -> None:
    settings.DEBUG = debug
    settings.BITBUCKET_INSTALL_SIMULATOR = enabled
    before = rows()
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(
        registered_link(), {"action": "grant"} if method == "post" else None
    )
    assert response.status_code == 404
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


# --- validation of the install link -----------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"redirect_uri": CALLBACK_URL}, id="neither"),
        pytest.param(
            {"addon_key": APP_KEY, "descriptor_uri": DESCRIPTOR_URL, "redirect_uri": CALLBACK_URL},
            id="both",
        ),
        pytest.param(
            {"addon_key": "", "descriptor_uri": "", "redirect_uri": CALLBACK_URL}, id="blank"
        ),
        pytest.param({"addon_key": [APP_KEY, APP_KEY], "redirect_uri": CALLBACK_URL}, id="twice"),
        pytest.param({"addon_key": "bad key!", "redirect_uri": CALLBACK_URL}, id="bad-key"),
        pytest.param(
            {"descriptor_uri": "/atlassian-connect.json", "redirect_uri": CALLBACK_URL},
            id="relative-descriptor",
        ),
        pytest.param(
            {"descriptor_uri": "http://app.example.com/d.json", "redirect_uri": CALLBACK_URL},
            id="http-descriptor",
        ),
        pytest.param(
            {"descriptor_uri": "https://app.example.com/{d}.json", "redirect_uri": CALLBACK_URL},
            id="templated-descriptor",
        ),
    ],
)
def test_malformed_link_goes_back_as_invalid_request(
    client: Client, router: Router, sent_signals: SignalRecorder, params: dict[str, Any]
) -> None:
    before = rows()
    response = client.get(link(**params))
    assert_error_redirect(response, "invalid_request")
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


def test_descriptor_uri_must_use_https_says_so(client: Client, router: Router) -> None:
    response = client.get(
        link(descriptor_uri="http://app.example.com/d.json", redirect_uri=CALLBACK_URL)
    )
    assert query_of(response["Location"])["error_description"] == [
        "The descriptor_uri must use HTTPS."
    ]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": "/bitbucket/callback/"}, id="relative"
        ),
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": BASE_URL + "/{callback}"}, id="templated"
        ),
        pytest.param(
            {"addon_key": APP_KEY, "redirect_uri": [CALLBACK_URL, CALLBACK_URL]}, id="twice"
        ),
        pytest.param({"redirect_uri": "https://evil.example.org/steal"}, id="elsewhere"),
        pytest.param({"addon_key": APP_KEY, "redirect_uri": "ftp://app.example.com/"}, id="ftp"),
        pytest.param({}, id="nothing"),
    ],
)
def test_error_without_usable_redirect_uri_is_shown_on_the_simulator(
    client: Client, router: Router, sent_signals: SignalRecorder, params: dict[str, Any]
) -> None:
    """No redirect_uri, a malformed one, or one this site does not own: never redirected to."""
    before = rows()
    response = client.get(link(**params))
    assert_error_page(response, "invalid_request")
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


def test_link_without_redirect_uri_is_valid(client: Client, router: Router) -> None:
    response = client.get(link(addon_key=APP_KEY))
    assert response.status_code == 200
    assert b'id="consent-title"' in response.content


def test_error_before_the_descriptor_goes_only_to_this_sites_base_url(
    client: Client, router: Router
) -> None:
    response = client.get(link(redirect_uri="https://evil.example.org/callback"))
    assert_error_page(response, "invalid_request")
    assert b"evil.example.org" not in response.content


def test_loopback_http_descriptor_is_the_one_deviation(
    settings: Settings, client: Client, router: Router
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = "http://127.0.0.1:8000"
    descriptor = {
        "key": "loop-app",
        "name": "Loop app",
        "baseUrl": "http://127.0.0.1:8000",
        "lifecycle": {"installed": "/bitbucket/installed"},
    }
    router.answers["http://127.0.0.1:8000/d.json"] = (200, json.dumps(descriptor).encode())
    response = client.get(
        link(
            descriptor_uri="http://127.0.0.1:8000/d.json",
            redirect_uri="http://127.0.0.1:8000/bitbucket/callback/",
        )
    )
    assert response.status_code == 200
    assert b"Install Loop app?" in response.content
    assert [call.url for call in router.calls] == ["http://127.0.0.1:8000/d.json"]


GOOD_DESCRIPTOR: dict[str, Any] = {
    "key": "other-app",
    "name": "Other app",
    "description": "Another app.",
    "baseUrl": "https://app.example.com",
    "lifecycle": {"installed": "/bitbucket/installed"},
}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(OSError("connection refused"), id="unreachable"),
        pytest.param((404, b"not found"), id="404"),
        pytest.param((200, b"{not json"), id="not-json"),
        pytest.param((200, b"\xff\xfe"), id="not-utf8"),
        pytest.param((200, b"[]"), id="not-object"),
        pytest.param((200, json.dumps({**GOOD_DESCRIPTOR, "key": None}).encode()), id="no-key"),
        pytest.param((200, json.dumps({**GOOD_DESCRIPTOR, "key": "a b"}).encode()), id="bad-key"),
        pytest.param((200, json.dumps({**GOOD_DESCRIPTOR, "name": " "}).encode()), id="no-name"),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "baseUrl": "/app"}).encode()), id="relative-base"
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "baseUrl": 42}).encode()), id="base-not-text"
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "baseUrl": "http://app.example.com"}).encode()),
            id="http-base",
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "baseUrl": BASE_URL + "?a=1"}).encode()),
            id="base-with-query",
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "baseUrl": BASE_URL + "#top"}).encode()),
            id="base-with-fragment",
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "lifecycle": None}).encode()), id="no-lifecycle"
        ),
        pytest.param(
            (200, json.dumps({**GOOD_DESCRIPTOR, "lifecycle": {}}).encode()), id="no-installed"
        ),
        pytest.param(
            (
                200,
                json.dumps({**GOOD_DESCRIPTOR, "lifecycle": {"installed": "installed"}}).encode(),
            ),
            id="installed-relative",
        ),
        pytest.param(
            (
                200,
                json.dumps(
                    {**GOOD_DESCRIPTOR, "lifecycle": {"installed": "//evil.example.org/x"}}
                ).encode(),
            ),
            id="installed-elsewhere",
        ),
    ],
)
def test_bad_descriptor_goes_back_as_invalid_descriptor(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    answer: tuple[int, bytes] | Exception,
) -> None:
    router.answers[OTHER_DESCRIPTOR] = answer
    before = rows()
    response = client.get(link(descriptor_uri=OTHER_DESCRIPTOR, redirect_uri=CALLBACK_URL))
    assert_error_redirect(response, "invalid_descriptor")
    assert [(call.method, call.url) for call in router.calls] == [("GET", OTHER_DESCRIPTOR)]
    assert rows() == before
    assert sent_signals.none_sent


def test_unknown_addon_key_is_invalid_request(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    before = rows()
    response = client.get(link(addon_key="someone-else", redirect_uri=CALLBACK_URL))
    assert_error_redirect(response, "invalid_request")
    assert query_of(response["Location"])["error_description"] == [
        "No app is registered with the key someone-else."
    ]
    assert [call.url for call in router.calls] == [DESCRIPTOR_URL]
    assert rows() == before
    assert sent_signals.none_sent


def test_addon_key_without_a_base_url_is_unknown(
    settings: Settings, client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_BASE_URL = None
    before = rows()
    response = client.get(link(addon_key=APP_KEY, redirect_uri=CALLBACK_URL))
    assert_error_page(response, "invalid_request")
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://elsewhere.example.com/bitbucket/callback/",
        "http://app.example.com/bitbucket/callback/",
        "https://app.example.com:8443/bitbucket/callback/",
        "https://app.example.com/bitbucket/callback/#x",
    ],
)
def test_redirect_uri_outside_the_base_url_is_shown_not_followed(
    client: Client, router: Router, sent_signals: SignalRecorder, redirect_uri: str
) -> None:
    before = rows()
    response = client.get(link(addon_key=APP_KEY, redirect_uri=redirect_uri))
    assert_error_page(response, "invalid_request")
    assert "not under the descriptor" in response.content.decode()
    assert rows() == before
    assert sent_signals.none_sent


def test_redirect_uri_under_site_but_not_under_descriptor_base_url_is_shown(
    client: Client, router: Router
) -> None:
    """Once the descriptor is known, only its baseUrl decides where errors may go."""
    router.answers[OTHER_DESCRIPTOR] = (
        200,
        json.dumps({**GOOD_DESCRIPTOR, "baseUrl": BASE_URL + "/other"}).encode(),
    )
    response = client.get(link(descriptor_uri=OTHER_DESCRIPTOR, redirect_uri=CALLBACK_URL))
    assert_error_page(response, "invalid_request")


# --- the consent page ---------------------------------------------------------------------


def test_consent_page_of_a_registered_app(client: Client, router: Router) -> None:
    response = client.get(registered_link())
    assert response.status_code == 200
    html = response.content.decode()
    assert '<h1 id="consent-title">Install Example app?</h1>' in html
    assert "An app used by the test suite." in html
    assert "By Example Inc." in html
    assert "installed by its app key example-app" in html
    assert "<code>account</code>: Read your account information" in html
    assert 'id="workspace" name="workspace" type="text" value="Demo workspace"' in html
    assert 'id="grant"' in html
    assert ">Grant access</button>" in html
    assert 'id="deny"' in html
    assert ">Deny</button>" in html
    for code in simulator.TRIGGERABLE_ERRORS:
        assert f'<option value="{code}">{code}</option>' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "csrftoken" in response.cookies
    assert response["Cache-Control"] == "no-store"
    assert [(call.method, call.url) for call in router.calls] == [("GET", DESCRIPTOR_URL)]


def test_consent_page_lets_the_browser_send_its_origin(client: Client, router: Router) -> None:
    """Under a "no-referrer" policy browsers POST with "Origin: null", which Django's CSRF
    check refuses: the simulator's pages must not set one (header or meta tag)."""
    response = client.get(registered_link())
    assert response["Referrer-Policy"] == "same-origin"
    assert 'name="referrer"' not in response.content.decode()


def test_consent_page_of_an_unregistered_app(
    unregistered: None, client: Client, router: Router
) -> None:
    response = client.get(link(descriptor_uri=DESCRIPTOR_URL, redirect_uri=CALLBACK_URL))
    html = response.content.decode()
    assert response.status_code == 200
    assert "An unregistered app, installed from its descriptor" in html
    assert "<code>repository</code>: Read your repositories" in html
    assert "<li><code>made-up-scope</code></li>" in html
    assert "By " not in html


def test_consent_page_without_scopes(client: Client, router: Router) -> None:
    router.answers[OTHER_DESCRIPTOR] = (200, json.dumps(GOOD_DESCRIPTOR).encode())
    response = client.get(link(descriptor_uri=OTHER_DESCRIPTOR))
    assert response.status_code == 200
    assert "Nothing beyond the installation itself." in response.content.decode()
    assert 'id="app-vendor"' not in response.content.decode()


def test_consent_page_posts_back_to_the_same_link(client: Client, router: Router) -> None:
    path = registered_link()
    response = client.get(path)
    assert f'action="{path.replace("&", "&amp;")}"' in response.content.decode()


# --- grant: the installed callback, signing, the return trip ------------------------------


def test_grant_registered_first_install_then_reinstall_rotates_the_secret(
    client: Client,
    router: Router,
    django_user_model: type[User],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    user = django_user_model.objects.create_user("ada", password="unused")
    client.force_login(user)

    # First install: the button, the consent page, Grant.
    path = start(client)
    assert client.get(path).status_code == 200
    response = grant(client, path, workspace="Acme Team")
    assert response.status_code == 302
    [first] = router.posts()
    assert first.url == INSTALLED_URL
    assert "Authorization" not in first.headers  # no previous secret: unsigned
    payload = first.payload
    workspace = Workspace.named("Acme Team")
    client_key = f"ari:cloud:bitbucket::app/{workspace.uuid}/{APP_KEY}"
    assert payload["clientKey"] == client_key
    assert payload["key"] == APP_KEY
    assert payload["eventType"] == "installed"
    assert payload["productType"] == "bitbucket"
    assert payload["baseUrl"] == "https://bitbucket.org"
    assert payload["baseApiUrl"] == "https://api.bitbucket.org"
    assert payload["publicKey"]
    assert payload["principal"] == {
        "uuid": workspace.uuid,
        "type": "workspace",
        "display_name": "Acme Team",
        "username": "acme-team",
        "slug": "acme-team",
    }
    assert payload["user"]["type"] == "user"
    first_secret = payload["sharedSecret"]
    assert len(first_secret) >= 32
    row = Installation.objects.get(client_key=client_key)
    assert row.shared_secret == first_secret
    assert row.principal_name == "Acme Team"

    # The browser goes back with clientKey and a jwt signed with the new secret.
    location = response["Location"]
    assert location.startswith(CALLBACK_URL + "?")
    query = query_of(location)
    assert query["clientKey"] == [client_key]
    [token] = query["jwt"]
    callback_query = urlsplit(location).query.rsplit("&jwt=", 1)[0]
    claims = verify_token(
        token,
        first_secret,
        qsh=query_string_hash("GET", "/bitbucket/callback/", callback_query),
        issuer=client_key,
    )
    assert claims["iss"] == client_key
    with django_capture_on_commit_callbacks(execute=True):
        back = client.get(path_of(location))
    assert back.status_code == 303
    assert client.get(back["Location"]).status_code == 200
    row.refresh_from_db()
    assert row.user == user
    assert row.confirmed_at is not None
    [sent] = sent_signals.of(installed)
    assert sent["created"] is False
    assert sent["user"] == user

    # Re-install of the same workspace: signed with the previous secret, new secret stored.
    path = start(client)
    response = grant(client, path, workspace="acme team")  # same workspace, other spelling
    assert response.status_code == 302
    second = router.posts()[1]
    assert second.payload["clientKey"] == client_key
    second_secret = second.payload["sharedSecret"]
    assert second_secret != first_secret
    scheme, _, lifecycle_jwt = second.headers["Authorization"].partition(" ")
    assert scheme == "JWT"
    verify_token(
        lifecycle_jwt,
        first_secret,
        qsh=query_string_hash("POST", "/bitbucket/installed", ""),
        issuer=client_key,
    )
    with pytest.raises(TokenError):
        verify_token(lifecycle_jwt, second_secret, qsh=None)
    row.refresh_from_db()
    assert row.shared_secret == second_secret
    assert Installation.objects.count() == 1
    [token] = query_of(response["Location"])["jwt"]
    verify_token(token, second_secret, qsh=None, issuer=client_key)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(path_of(response["Location"])).status_code == 303
    assert len(sent_signals.of(installed)) == 2


def test_grant_another_workspace_is_a_new_unsigned_install(client: Client, router: Router) -> None:
    grant(client, registered_link(), workspace="One")
    grant(client, registered_link(), workspace="Two")
    first, second = router.posts()
    assert first.payload["clientKey"] != second.payload["clientKey"]
    assert "Authorization" not in second.headers
    assert Installation.objects.count() == 2


def test_grant_unregistered_uses_connection_keys_and_a_jwt(
    unregistered: None,
    client: Client,
    router: Router,
    django_user_model: type[User],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client.force_login(django_user_model.objects.create_user("bob", password="unused"))
    path = start(client)
    assert "descriptor_uri=" in path
    response = grant(client, path, workspace="Bob's place")
    [call] = router.posts()
    client_key = call.payload["clientKey"]
    assert client_key.startswith("connection:")
    number = int(client_key.partition(":")[2])
    assert query_of(response["Location"])["clientKey"] == [client_key]
    assert "jwt" in query_of(response["Location"])
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(path_of(response["Location"])).status_code == 303
    assert Installation.objects.get(client_key=client_key).user is not None
    assert len(sent_signals.of(installed)) == 1

    grant(client, start(client), workspace="Another place")
    assert router.posts()[1].payload["clientKey"] == f"connection:{number + 1}"


def test_grant_unregistered_without_jwt_is_confirmed_as_a_fresh_install(
    unregistered: None,
    client: Client,
    router: Router,
    django_user_model: type[User],
    sent_signals: SignalRecorder,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    user = django_user_model.objects.create_user("cy", password="unused")
    client.force_login(user)
    response = grant(client, start(client), send_jwt=False)
    query = query_of(response["Location"])
    assert "jwt" not in query
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get(path_of(response["Location"])).status_code == 303
    assert Installation.objects.get(client_key=query["clientKey"][0]).user == user
    assert len(sent_signals.of(installed)) == 1


def test_grant_without_redirect_uri_stays_on_the_simulator(client: Client, router: Router) -> None:
    response = grant(client, link(addon_key=APP_KEY), workspace="")
    assert response.status_code == 200
    html = response.content.decode()
    [call] = router.posts()
    assert f'<code id="client-key">{call.payload["clientKey"]}</code>' in html
    assert "It is installed on Demo workspace." in html
    assert Installation.objects.get().principal_name == "Demo workspace"


def test_grant_with_a_base_path_signs_relative_paths(
    settings: Settings, client: Client, router: Router
) -> None:
    """baseUrl https://app.example.com/bitbucket: both qsh paths are relative to it."""
    settings.BITBUCKET_INSTALL_BASE_URL = BASE_URL + "/bitbucket"
    grant(client, registered_link(), workspace="W")
    response = grant(client, registered_link(), workspace="W")
    assert response.status_code == 302
    first, second = router.posts()
    _, _, token = second.headers["Authorization"].partition(" ")
    verify_token(
        token,
        first.payload["sharedSecret"],
        qsh=query_string_hash("POST", "/installed", ""),
        issuer=first.payload["clientKey"],
    )
    assert Installation.objects.get().shared_secret == second.payload["sharedSecret"]


def test_grant_ignores_a_garbled_remembered_install(client: Client, router: Router) -> None:
    grant(client, registered_link(), workspace="W")
    app_descriptor = json.loads(Client().get("/bitbucket/atlassian-connect.json").content)
    state_key = simulator._state_key(
        InstallLink(APP_KEY, None, CALLBACK_URL),
        check_descriptor(app_descriptor, APP_KEY),
        Workspace.named("W"),
    )
    assert cache.get(state_key)["client_key"] == router.posts()[0].payload["clientKey"]
    cache.set(state_key, {"client_key": 1, "shared_secret": "x"}, None)
    before = rows()
    response = grant(client, registered_link(), workspace="W")
    # Treated as a first install: unsigned, which the app refuses for a known clientKey.
    assert "Authorization" not in router.posts()[1].headers
    assert_error_redirect(response, "server_error")
    assert rows() == before


@pytest.mark.parametrize(
    "answer",
    [(500, b"boom"), (401, b""), (302, b""), OSError("refused")],
    ids=["500", "401", "302", "unreachable"],
)
def test_app_failing_the_installed_callback_is_a_server_error(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    answer: tuple[int, bytes] | Exception,
) -> None:
    router.answers[INSTALLED_URL] = answer
    before = rows()
    response = grant(client, registered_link())
    assert_error_redirect(response, "server_error")
    assert rows() == before
    assert sent_signals.none_sent
    # Nothing was remembered: the next attempt is a first install again, unsigned.
    del router.answers[INSTALLED_URL]
    assert grant(client, registered_link()).status_code == 302
    assert "Authorization" not in router.posts()[-1].headers


def test_app_failing_without_redirect_uri_shows_the_error(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    router.answers[INSTALLED_URL] = (500, b"")
    before = rows()
    response = grant(client, link(addon_key=APP_KEY))
    assert_error_page(response, "server_error", status=502)
    assert "answered HTTP 500" in response.content.decode()
    assert rows() == before
    assert sent_signals.none_sent


# --- deny, triggered errors, bad posts ----------------------------------------------------


def test_deny_goes_back_as_access_denied(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    before = rows()
    response = client.post(registered_link(), {"action": "deny", "workspace": "W"})
    assert_error_redirect(response, "access_denied")
    assert query_of(response["Location"])["error_description"] == [
        "The user denied access to the app."
    ]
    assert router.posts() == []
    assert rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize("code", simulator.TRIGGERABLE_ERRORS)
def test_each_error_code_can_be_triggered(
    client: Client, router: Router, sent_signals: SignalRecorder, code: str
) -> None:
    before = rows()
    response = client.post(registered_link(), {"action": "error", "error_code": code})
    assert_error_redirect(response, code)
    assert router.posts() == []
    assert rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize("action", ["deny", "error"])
def test_outcome_without_redirect_uri_is_shown_on_the_simulator(
    client: Client, router: Router, action: str
) -> None:
    response = client.post(
        link(addon_key=APP_KEY), {"action": action, "error_code": "server_error"}
    )
    assert_error_page(response, "access_denied" if action == "deny" else "server_error", 200)


@pytest.mark.parametrize(
    "data",
    [{}, {"action": "install"}, {"action": "error", "error_code": "made_up"}, {"action": "error"}],
    ids=["no-action", "unknown-action", "unknown-code", "no-code"],
)
def test_unknown_post_is_a_400(
    client: Client, router: Router, sent_signals: SignalRecorder, data: dict[str, str]
) -> None:
    before = rows()
    response = client.post(registered_link(), data)
    assert response.status_code == 400
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


def test_post_revalidates_the_link(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    before = rows()
    response = client.post(link(redirect_uri=CALLBACK_URL), {"action": "grant"})
    assert_error_redirect(response, "invalid_request")
    assert router.calls == []
    assert rows() == before
    assert sent_signals.none_sent


def test_consent_post_needs_the_csrf_token(router: Router, sent_signals: SignalRecorder) -> None:
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(registered_link())
    before = rows()
    refused = browser.post(registered_link(), {"action": "grant"})
    assert refused.status_code == 403
    assert router.posts() == []
    assert rows() == before
    assert sent_signals.none_sent
    token = page.context["csrf_token"]
    accepted = browser.post(registered_link(), {"action": "grant", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert len(router.posts()) == 1


# --- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_name", "expected_slug"),
    [
        ("", "Demo workspace", "demo-workspace"),
        ("  Acme   Team ", "Acme Team", "acme-team"),
        ("日本", "日本", "workspace"),
        ("x" * 150, "x" * 100, "x" * 100),
    ],
)
def test_workspace_names(name: str, expected_name: str, expected_slug: str) -> None:
    workspace = Workspace.named(name)
    assert workspace.name == expected_name
    assert workspace.slug == expected_slug
    assert workspace.uuid.startswith("{")
    assert workspace.uuid.endswith("}")
    assert Workspace.named(expected_name.upper()).uuid == workspace.uuid


def test_add_query_keeps_the_existing_query() -> None:
    assert add_query("https://a.example/cb?x=1", [("k", "a b/c")]) == (
        "https://a.example/cb?x=1&k=a%20b%2Fc"
    )
    assert add_query("https://a.example/cb", [("k", "v")]) == "https://a.example/cb?k=v"


def test_success_url_signs_the_query_it_sends() -> None:
    url = success_url(
        "https://a.example/app/cb?next=%2Fhome", "connection:7", "s3cret", "/app", send_jwt=True
    )
    query = urlsplit(url).query
    assert query.startswith("next=%2Fhome&clientKey=connection%3A7&jwt=")
    token = query.rsplit("&jwt=", 1)[1]
    verify_token(
        token,
        "s3cret",
        qsh=query_string_hash("GET", "/cb", "next=%2Fhome&clientKey=connection%3A7"),
        issuer="connection:7",
    )
    unsigned = success_url("https://a.example/cb", "connection:7", "s", "", send_jwt=False)
    assert unsigned == "https://a.example/cb?clientKey=connection%3A7"


def test_error_target_needs_one_url_under_the_base() -> None:
    assert error_target({"redirect_uri": [CALLBACK_URL]}, BASE_URL) == CALLBACK_URL
    assert error_target({"redirect_uri": [CALLBACK_URL]}, None) is None
    assert error_target({"redirect_uri": [CALLBACK_URL]}, "not a url") is None
    assert error_target({}, BASE_URL) is None
    assert error_target({"redirect_uri": ["https://evil.example.org/"]}, BASE_URL) is None


def test_parse_link_reads_each_parameter_once() -> None:
    assert parse_link({"addon_key": [APP_KEY], "redirect_uri": [CALLBACK_URL]}) == InstallLink(
        APP_KEY, None, CALLBACK_URL
    )
    with pytest.raises(SimulatedError) as raised:
        parse_link({"descriptor_uri": [DESCRIPTOR_URL, DESCRIPTOR_URL]})
    assert raised.value.code == "invalid_request"
    assert raised.value.description == "The descriptor_uri parameter is repeated."


def test_check_descriptor_tolerates_odd_optional_fields() -> None:
    descriptor = check_descriptor(
        {
            **GOOD_DESCRIPTOR,
            "description": 3,
            "vendor": "Acme",
            "scopes": "account",
        },
        None,
    )
    assert descriptor == Descriptor(
        key="other-app",
        name="Other app",
        description="",
        vendor_name="",
        base_url=BASE_URL,
        installed_path="/bitbucket/installed",
        scopes=(),
    )
    with_vendor = check_descriptor(
        {**GOOD_DESCRIPTOR, "vendor": {"name": 7}, "scopes": ["a", 1]}, None
    )
    assert with_vendor.vendor_name == ""
    assert with_vendor.scopes == ("a",)


# --- the real transport, against a local HTTP server -------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path == "/fail" else 200
        body = json.dumps({"path": self.path, "x": self.headers.get("X-Test")}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = self.rfile.read(length)
        self.send_response(204)
        self.send_header("X-Echo", received.decode())
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_transport_returns_status_and_body(local_server: str) -> None:
    status, body = simulator.transport("GET", local_server + "/d.json", headers={"X-Test": "1"})
    assert status == 200
    assert json.loads(body) == {"path": "/d.json", "x": "1"}
    assert simulator.transport("POST", local_server + "/installed", b"{}", {}) == (204, b"")


def test_transport_returns_error_statuses(local_server: str) -> None:
    status, body = simulator.transport("GET", local_server + "/fail")
    assert status == 500
    assert json.loads(body)["path"] == "/fail"


def test_transport_raises_when_nothing_answers() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(simulator.TRANSPORT_ERRORS):
        simulator.transport("GET", f"http://127.0.0.1:{port}/")


def test_transport_refuses_other_schemes(tmp_path: Any) -> None:
    secret_file = tmp_path / "secret.json"
    secret_file.write_text("{}")
    with pytest.raises(OSError, match="not an http"):
        simulator.transport("GET", secret_file.as_uri())
