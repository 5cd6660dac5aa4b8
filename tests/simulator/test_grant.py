"""Grant, Deny and the simulated errors: the ``installed`` callback over (routed) HTTP, the
first install unsigned and a re-install signed with the previous secret, and the browser
sent back to the ``redirect_uri`` with ``clientKey`` and a ``jwt`` over exactly that GET.

What the app then does with that return trip is tested with the callback view; here the
redirect itself is checked: its target, its query and its token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.simulator import state
from bitbucket_install.simulator.base import (
    TRIGGERABLE_ERRORS,
    LinkParameters,
    Workspace,
    check_descriptor,
)
from bitbucket_install.simulator.views import settings_descriptor
from bitbucket_install.tokens import TokenError, query_string_hash, verify_token
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.simulator.helpers import (
    APP_KEY,
    BASE_URL,
    CALLBACK_URL,
    DESCRIPTOR_URL,
    FLOW_CALLBACK_URL,
    INSTALLED_URL,
    LOOPBACK_DESCRIPTOR,
    OTHER_APP,
    Router,
    assert_error_page,
    assert_error_redirect,
    error_description,
    grant,
    link,
    loopback_link,
    query_of,
    registered_link,
)

pytestmark = pytest.mark.django_db


def _signed_query(location: str) -> str:
    """The query the jwt was signed over: everything before ``&jwt=``."""
    return urlsplit(location).query.rsplit("&jwt=", 1)[0]


def test_grant_registered_first_install_then_reinstall_rotates_the_secret(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    # First install: unsigned, with a fresh secret, then back with a jwt signed with it.
    response = grant(client, registered_link(FLOW_CALLBACK_URL), workspace="Acme Team")
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
    assert payload["baseUrl"] == BASE_URL + "/bitbucket/simulator"
    assert payload["baseApiUrl"] == BASE_URL + "/bitbucket/simulator/api"
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

    location = response["Location"]
    assert location.startswith(FLOW_CALLBACK_URL + "?clientKey=")
    query = query_of(location)
    assert query["clientKey"] == [client_key]
    [token] = query["jwt"]
    claims = verify_token(
        token,
        first_secret,
        qsh=query_string_hash("GET", "/bitbucket/callback/flow-3f9a1c/", _signed_query(location)),
        issuer=client_key,
    )
    assert claims["iss"] == client_key

    # Re-install of the same workspace: signed with the previous secret, new secret stored.
    response = grant(client, registered_link(), workspace="acme team")  # other spelling
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
    # The lifecycle callback alone announces nothing: the return trip does.
    assert sent_signals.none_sent


def test_grant_another_workspace_is_a_new_unsigned_install(client: Client, router: Router) -> None:
    grant(client, registered_link(), workspace="One")
    grant(client, registered_link(), workspace="Two")
    first, second = router.posts()
    assert first.payload["clientKey"] != second.payload["clientKey"]
    assert "Authorization" not in second.headers
    assert Installation.objects.count() == 2


def test_grant_unregistered_uses_connection_keys_and_a_jwt(
    unregistered: None, client: Client, router: Router
) -> None:
    path = link(descriptor_uri=DESCRIPTOR_URL, redirect_uri=FLOW_CALLBACK_URL)
    response = grant(client, path, workspace="Bob's place")
    [call] = router.posts()
    client_key = call.payload["clientKey"]
    assert client_key.startswith("connection:")
    number = int(client_key.partition(":")[2])
    location = response["Location"]
    assert query_of(location)["clientKey"] == [client_key]
    [token] = query_of(location)["jwt"]
    verify_token(
        token,
        call.payload["sharedSecret"],
        qsh=query_string_hash("GET", "/bitbucket/callback/flow-3f9a1c/", _signed_query(location)),
        issuer=client_key,
    )
    assert (
        Installation.objects.get(client_key=client_key).shared_secret
        == (call.payload["sharedSecret"])
    )

    grant(client, path, workspace="Another place")
    assert router.posts()[1].payload["clientKey"] == f"connection:{number + 1}"


def test_grant_without_jwt_sends_only_the_client_key(
    unregistered: None, client: Client, router: Router
) -> None:
    path = link(descriptor_uri=DESCRIPTOR_URL, redirect_uri=FLOW_CALLBACK_URL)
    response = grant(client, path, send_jwt=False)
    [call] = router.posts()
    assert response["Location"] == (
        FLOW_CALLBACK_URL + "?clientKey=" + call.payload["clientKey"].replace(":", "%3A")
    )


def test_grant_keeps_the_redirect_uris_own_query(client: Client, router: Router) -> None:
    response = grant(client, registered_link(FLOW_CALLBACK_URL + "?next=%2Fhome"))
    location = response["Location"]
    assert location.startswith(FLOW_CALLBACK_URL + "?next=%2Fhome&clientKey=")
    [token] = query_of(location)["jwt"]
    verify_token(
        token,
        router.posts()[0].payload["sharedSecret"],
        qsh=query_string_hash("GET", "/bitbucket/callback/flow-3f9a1c/", _signed_query(location)),
        issuer=router.posts()[0].payload["clientKey"],
    )


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
    grant(client, registered_link(FLOW_CALLBACK_URL), workspace="W")
    response = grant(client, registered_link(FLOW_CALLBACK_URL), workspace="W")
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
    location = response["Location"]
    [redirect_jwt] = query_of(location)["jwt"]
    verify_token(
        redirect_jwt,
        second.payload["sharedSecret"],
        qsh=query_string_hash("GET", "/callback/flow-3f9a1c/", _signed_query(location)),
        issuer=first.payload["clientKey"],
    )


def test_grant_from_a_loopback_descriptor(client: Client, router: Router) -> None:
    router.answer_json(
        LOOPBACK_DESCRIPTOR, {**OTHER_APP, "baseUrl": "http://127.0.0.1:8000/other"}
    )
    router.answers["http://127.0.0.1:8000/other/bitbucket/installed"] = (200, b"")
    redirect_uri = "http://127.0.0.1:8000/other/back/"
    response = grant(client, loopback_link(redirect_uri), workspace="W")
    assert response["Location"].startswith(redirect_uri + "?clientKey=connection%3A")
    assert router.requests() == [
        ("GET", LOOPBACK_DESCRIPTOR),
        ("POST", "http://127.0.0.1:8000/other/bitbucket/installed"),
    ]


def test_workspace_name_is_cleaned_before_it_is_sent(client: Client, router: Router) -> None:
    """What the user typed reaches the app's database and admin: no bidi overrides,
    zero-width or control characters (``gnp.exe`` with U+202E shows as ``exe.png``)."""
    grant(client, registered_link(), workspace="\u202egnp.exe\u200b Team\x1b[31m\u2028")
    [call] = router.posts()
    assert call.payload["principal"]["display_name"] == "gnp.exe Team[31m"
    assert Installation.objects.get().principal_name == "gnp.exe Team[31m"


def test_grant_ignores_a_garbled_remembered_install(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    grant(client, registered_link(), workspace="W")
    key = state.install_key(
        LinkParameters(APP_KEY, None, CALLBACK_URL),
        check_descriptor(settings_descriptor(), APP_KEY, BASE_URL),
        Workspace.named("W"),
    )
    assert cache.get(key)["client_key"] == router.posts()[0].payload["clientKey"]
    cache.set(key, {"client_key": 1, "shared_secret": "x"}, None)
    before = installation_rows()
    response = grant(client, registered_link(), workspace="W")
    # Treated as a first install: unsigned, which the app refuses for a known clientKey.
    assert "Authorization" not in router.posts()[1].headers
    assert_error_redirect(response, "server_error")
    assert installation_rows() == before
    assert sent_signals.none_sent
    cache.set(key, "garbled", None)
    assert state.previous_install(key) is None


@pytest.mark.parametrize(
    "answer",
    [(500, b"boom"), (401, b""), (302, b""), (307, b""), OSError("refused")],
    ids=["500", "401", "302", "307", "unreachable"],
)
def test_app_failing_the_installed_callback_is_a_server_error(
    client: Client,
    router: Router,
    sent_signals: SignalRecorder,
    answer: tuple[int, bytes] | Exception,
) -> None:
    router.answers[INSTALLED_URL] = answer
    before = installation_rows()
    response = grant(client, registered_link())
    assert_error_redirect(response, "server_error")
    assert installation_rows() == before
    assert sent_signals.none_sent
    # Nothing was remembered: the next attempt is a first install again, unsigned.
    del router.answers[INSTALLED_URL]
    assert grant(client, registered_link()).status_code == 302
    assert "Authorization" not in router.posts()[-1].headers


def test_a_redirecting_installed_callback_says_the_simulator_follows_none(
    client: Client, router: Router
) -> None:
    router.answers[INSTALLED_URL] = (302, b"")
    response = grant(client, registered_link())
    assert error_description(response) == (
        "The app answered HTTP 302 to the installed callback: a redirect, which the simulator "
        "does not follow."
    )


def test_app_failing_without_redirect_uri_shows_the_error(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    router.answers[INSTALLED_URL] = (500, b"")
    before = installation_rows()
    response = grant(client, link(addon_key=APP_KEY))
    assert_error_page(response, "server_error", status=502)
    assert "answered HTTP 500" in response.content.decode()
    assert installation_rows() == before
    assert sent_signals.none_sent


# --- deny, triggered errors, bad posts ----------------------------------------------------


def test_deny_goes_back_as_access_denied(
    client: Client, router: Router, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    response = client.post(registered_link(FLOW_CALLBACK_URL), {"action": "deny"})
    assert_error_redirect(response, "access_denied", target=FLOW_CALLBACK_URL)
    assert error_description(response) == "The user denied access to the app."
    assert router.posts() == []
    assert installation_rows() == before
    assert sent_signals.none_sent


@pytest.mark.parametrize("code", TRIGGERABLE_ERRORS)
def test_each_error_code_can_be_triggered(
    client: Client, router: Router, sent_signals: SignalRecorder, code: str
) -> None:
    before = installation_rows()
    response = client.post(registered_link(), {"action": "error", "error_code": code})
    assert_error_redirect(response, code)
    assert error_description(response) == f"Simulated {code} from the simulator."
    assert router.posts() == []
    assert installation_rows() == before
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
    before = installation_rows()
    response = client.post(registered_link(), data)
    assert response.status_code == 400
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_consent_post_needs_the_csrf_token(router: Router, sent_signals: SignalRecorder) -> None:
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(registered_link())
    before = installation_rows()
    refused = browser.post(registered_link(), {"action": "grant"})
    assert refused.status_code == 403
    assert router.calls == []
    assert installation_rows() == before
    assert sent_signals.none_sent
    token = page.context["csrf_token"]
    accepted = browser.post(registered_link(), {"action": "grant", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert len(router.posts()) == 1
