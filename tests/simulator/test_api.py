"""The simulated Bitbucket API: every endpoint, every token check (good, wrong secret, bad
qsh, expired, unknown installation, ...: 401 in Bitbucket's shape, nothing changed), the JWT
grant and its Bearer tokens, the 429 switch, and 404 everywhere when the simulator is off.

Calls go through Django's test client, signed by the app's own ``OutgoingSigner``; a few go
through ``BitbucketClient`` itself, its httpx transport routed to the test client.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.client import BitbucketClient
from bitbucket_install.exceptions import RateLimited, TokenRefused
from bitbucket_install.models import Installation
from bitbucket_install.outgoing import OutgoingSigner
from bitbucket_install.simulator import state
from bitbucket_install.simulator.base import (
    RATE_LIMIT_MESSAGE,
    SIMULATED_USER,
    Workspace,
)
from bitbucket_install.tokens import encode_token
from tests.conftest import SignalRecorder
from tests.simulator.helpers import (
    APP_KEY,
    BASE_URL,
    Router,
    django_transport,
    grant,
    registered_link,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

API = "/bitbucket/simulator/api"
GRANT = "/bitbucket/simulator/site/oauth2/access_token"
SIMULATOR_BASE = "/bitbucket/simulator"
CLIENT_KEY = "connection:4242"
SECRET = "simulated-secret-0123456789abcdef"
SCOPES = ("account", "repository")
WORKSPACE = Workspace.named("Demo workspace")
REPOSITORY = WORKSPACE.repositories()[0]


@pytest.fixture(autouse=True)
def simulated_installation() -> None:
    state.remember_install(
        "install-key", CLIENT_KEY, SECRET, app_key=APP_KEY, workspace=WORKSPACE.name, scopes=SCOPES
    )


def token_for(
    method: str,
    target: str,
    *,
    base_path: str = API,
    secret: str = SECRET,
    client_key: str = CLIENT_KEY,
    app_key: str = APP_KEY,
    now: float | None = None,
) -> str:
    signer = OutgoingSigner(app_key, client_key, secret)
    return signer.token(method, target, base_path, now=time.time() if now is None else now)


def call(
    client: Client,
    method: str,
    path: str,
    *,
    token: str | None = None,
    authorization: str | None = None,
    body: object = None,
    raw: bytes | None = None,
) -> TestResponse:
    """``method`` on ``API + path``, signed over exactly that unless told otherwise."""
    target = API + path
    if authorization is None:
        authorization = "JWT " + (token or token_for(method, target))
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response: TestResponse = client.generic(
        method,
        target,
        data,
        content_type="application/json",
        secure=True,
        headers={"Authorization": authorization},
    )
    return response


def assert_unauthorized(response: TestResponse) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["type"] == "error"
    assert data["error"]["message"] == "Unauthorized"
    assert data["error"]["detail"]


def assert_error(response: TestResponse, status: int) -> None:
    assert response.status_code == status
    data = response.json()
    assert data["type"] == "error"
    assert data["error"]["message"]


def test_urls() -> None:
    assert reverse("bitbucket_install:simulator_api") == API + "/"
    assert reverse("bitbucket_install:simulator_grant") == GRANT
    assert reverse("bitbucket_install:simulator_console") == "/bitbucket/simulator/console/"


# --- the endpoints ------------------------------------------------------------------------


def test_user(client: Client) -> None:
    response = call(client, "GET", "/2.0/user")
    assert response.status_code == 200
    assert response.json() == SIMULATED_USER
    assert response["Cache-Control"] == "no-store"


def test_workspaces(client: Client) -> None:
    response = call(client, "GET", "/2.0/workspaces")
    assert response.status_code == 200
    data = response.json()
    assert data["size"] == 1
    assert data["values"] == [
        {
            "type": "workspace",
            "uuid": WORKSPACE.uuid,
            "name": "Demo workspace",
            "slug": "demo-workspace",
        }
    ]


@pytest.mark.parametrize("name", ["demo-workspace", quote(WORKSPACE.uuid)])
def test_one_workspace_by_slug_or_uuid(client: Client, name: str) -> None:
    response = call(client, "GET", f"/2.0/workspaces/{name}")
    assert response.status_code == 200
    assert response.json()["uuid"] == WORKSPACE.uuid


@pytest.mark.parametrize("name", ["demo-workspace", quote(WORKSPACE.uuid)])
def test_repositories_of_the_workspace(client: Client, name: str) -> None:
    response = call(client, "GET", f"/2.0/repositories/{name}?pagelen=50&q=name%20~%20%22a%22")
    assert response.status_code == 200
    data = response.json()
    assert [repo["slug"] for repo in data["values"]] == ["website", "api-service"]
    assert data["values"][0]["full_name"] == "demo-workspace/website"
    assert data["values"][0]["workspace"]["uuid"] == WORKSPACE.uuid


def test_trailing_slash_reads_the_same(client: Client) -> None:
    response = call(client, "GET", "/2.0/repositories/demo-workspace/")
    assert response.status_code == 200
    assert response.json()["size"] == 2


@pytest.mark.parametrize("name", ["website", quote(REPOSITORY["uuid"])])
def test_one_repository(client: Client, name: str) -> None:
    response = call(client, "GET", f"/2.0/repositories/demo-workspace/{name}")
    assert response.status_code == 200
    assert response.json()["uuid"] == REPOSITORY["uuid"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/2.0/repositories/other-workspace", 404),
        ("/2.0/workspaces/other-workspace", 404),
        ("/2.0/repositories/demo-workspace/no-such-repo", 404),
        ("/2.0/no-such-endpoint", 404),
        ("/", 404),
    ],
)
def test_what_is_not_there(client: Client, path: str, status: int) -> None:
    assert_error(call(client, "GET", path), status)


def test_another_method_is_405(client: Client) -> None:
    assert_error(call(client, "POST", "/2.0/user"), 405)


def test_linkers(client: Client) -> None:
    response = call(client, "GET", "/2.0/addon/linkers")
    assert response.status_code == 200
    assert response.json()["values"] == []


# --- token checks -------------------------------------------------------------------------


def _expired() -> str:
    return token_for("GET", API + "/2.0/user", now=time.time() - 3600)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(
            lambda: "JWT " + token_for("GET", API + "/2.0/user", secret="x" * 32),
            id="wrong secret",
        ),
        pytest.param(
            lambda: "JWT " + token_for("GET", API + "/2.0/workspaces"), id="qsh of another path"
        ),
        pytest.param(
            lambda: "JWT " + token_for("POST", API + "/2.0/user"), id="qsh of another method"
        ),
        pytest.param(
            lambda: "JWT " + token_for("GET", API + "/2.0/user", base_path=""),
            id="qsh not relative to the API base",
        ),
        pytest.param(lambda: "JWT " + _expired(), id="expired"),
        pytest.param(
            lambda: "JWT " + token_for("GET", API + "/2.0/user", client_key="connection:1"),
            id="unknown installation",
        ),
        pytest.param(
            lambda: "JWT " + token_for("GET", API + "/2.0/user", app_key="other-app"),
            id="iss not the app key",
        ),
        pytest.param(
            lambda: (
                "JWT "
                + encode_token(
                    {"iss": APP_KEY}, SECRET, method="GET", path=API + "/2.0/user", base_path=API
                )
            ),
            id="no sub",
        ),
        pytest.param(
            lambda: (
                "JWT "
                + encode_token({"iss": APP_KEY, "sub": CLIENT_KEY}, SECRET, path=API + "/2.0/user")
            ),
            id="no qsh",
        ),
        pytest.param(lambda: "JWT not-a-token", id="malformed"),
        pytest.param(lambda: "JWT ", id="empty"),
        pytest.param(
            lambda: "Bearer " + token_for("GET", API + "/2.0/user"), id="JWT sent as Bearer"
        ),
        pytest.param(lambda: "Basic dXNlcjpwYXNz", id="basic"),
        pytest.param(lambda: "", id="none"),
    ],
)
def test_refused_tokens_answer_401_in_bitbucket_shape(
    client: Client, sent_signals: SignalRecorder, authorization: Any
) -> None:
    response = call(client, "GET", "/2.0/user", authorization=authorization())
    assert_unauthorized(response)
    assert sent_signals.none_sent
    assert not Installation.objects.exists()


def test_query_is_signed(client: Client) -> None:
    token = token_for("GET", API + "/2.0/repositories/demo-workspace?pagelen=10")
    response = client.get(
        API + "/2.0/repositories/demo-workspace?pagelen=50",
        secure=True,
        headers={"Authorization": "JWT " + token},
    )
    assert_unauthorized(response)


def test_a_deleted_installation_is_refused(client: Client, sent_signals: SignalRecorder) -> None:
    assert call(client, "DELETE", "/2.0/addon").status_code == 204
    assert_unauthorized(call(client, "GET", "/2.0/user"))
    installation = state.installation(CLIENT_KEY)
    assert installation is not None
    assert installation.deleted
    assert sent_signals.none_sent


def test_a_garbled_state_entry_is_no_installation() -> None:
    cache.set(state._hashed("installation:", "connection:9"), {"client_key": 1}, None)
    assert state.installation("connection:9") is None
    good = state.installation(CLIENT_KEY)
    assert good is not None
    cache.set(state._hashed("installation:", "connection:8"), vars(good), None)
    assert state.installation("connection:8") is None  # stored under another key


# --- PUT and DELETE /2.0/addon -----------------------------------------------------------


def _scopes() -> tuple[str, ...]:
    installation = state.installation(CLIENT_KEY)
    assert installation is not None
    return installation.scopes


@pytest.mark.parametrize(
    ("body", "scopes"),
    [
        ({}, SCOPES),
        ({"descriptor_url": "https://app.example.com/bitbucket/atlassian-connect.json"}, SCOPES),
        ({"descriptor": {"key": APP_KEY, "scopes": ["account"]}}, ("account",)),
        (
            {"descriptor": {"key": APP_KEY, "scopes": ["repository", "account"]}},
            ("repository", "account"),
        ),
    ],
)
def test_put_addon(client: Client, body: object, scopes: tuple[str, ...]) -> None:
    response = call(client, "PUT", "/2.0/addon", body=body)
    assert response.status_code == 204
    assert _scopes() == scopes


def test_put_addon_with_an_empty_body(client: Client) -> None:
    assert call(client, "PUT", "/2.0/addon", raw=b"").status_code == 204
    assert _scopes() == SCOPES


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="not an object"),
        pytest.param(b"{", id="not JSON"),
        pytest.param(b"[" * 100_000, id="too deep"),
        pytest.param(b'{"descriptor": {"scopes": ["account", "webhook"]}}', id="scopes increased"),
        pytest.param(b'{"descriptor": {"scopes": []}}', id="scopes to none"),
        pytest.param(b'{"descriptor": {}}', id="no scopes"),
        pytest.param(b'{"descriptor": {"scopes": "account"}}', id="scopes not a list"),
        pytest.param(b'{"descriptor": []}', id="descriptor not an object"),
        pytest.param(b'{"descriptor_url": "not a url"}', id="bad descriptor_url"),
        pytest.param(b'{"descriptor_url": 1}', id="descriptor_url not text"),
        pytest.param(
            b'{"descriptor_url": "https://a.example/d.json", "descriptor": {}}', id="both"
        ),
        pytest.param(b'{"other": 1}', id="other key"),
    ],
)
def test_put_addon_refusals(client: Client, sent_signals: SignalRecorder, body: bytes) -> None:
    assert_error(call(client, "PUT", "/2.0/addon", raw=body), 400)
    assert _scopes() == SCOPES
    assert sent_signals.none_sent


def test_addon_takes_only_jwt(client: Client) -> None:
    access_token = _grant(client).json()["access_token"]
    for method in ("PUT", "DELETE"):
        response = call(client, method, "/2.0/addon", authorization="Bearer " + access_token)
        assert_unauthorized(response)
        assert "only supports JWT" in response.json()["error"]["detail"]
    installation = state.installation(CLIENT_KEY)
    assert installation is not None
    assert not installation.deleted


def test_addon_refuses_a_bad_token_and_changes_nothing(client: Client) -> None:
    bad = token_for("PUT", API + "/2.0/addon", secret="wrong-secret-0123456789")
    body = {"descriptor": {"scopes": ["account"]}}
    assert_unauthorized(call(client, "PUT", "/2.0/addon", token=bad, body=body))
    bad = token_for("DELETE", API + "/2.0/addon", secret="wrong-secret-0123456789")
    assert_unauthorized(call(client, "DELETE", "/2.0/addon", token=bad))
    installation = state.installation(CLIENT_KEY)
    assert installation is not None
    assert installation.scopes == SCOPES
    assert not installation.deleted


# --- application properties -------------------------------------------------------------

REPO_PROPERTY = f"/2.0/repositories/demo-workspace/website/properties/{APP_KEY}/settings"


@pytest.mark.parametrize(
    ("path", "same_as"),
    [
        (
            REPO_PROPERTY,
            f"/2.0/repositories/{quote(WORKSPACE.uuid)}/{quote(REPOSITORY['uuid'])}"
            f"/properties/{APP_KEY}/settings",
        ),
        (
            f"/2.0/repositories/demo-workspace/website/commit/abcdef1/properties/{APP_KEY}/p",
            f"/2.0/repositories/demo-workspace/website/commit/ABCDEF1/properties/{APP_KEY}/p",
        ),
        (f"/2.0/repositories/demo-workspace/website/pullrequests/7/properties/{APP_KEY}/p", None),
        (
            f"/2.0/users/simulated-user/properties/{APP_KEY}/p",
            f"/2.0/users/{quote(SIMULATED_USER['uuid'])}/properties/{APP_KEY}/p",
        ),
    ],
)
def test_property_put_get_delete(client: Client, path: str, same_as: str | None) -> None:
    value = {"colour": "blue", "_attributes": ["public"]}
    assert_error(call(client, "GET", path), 404)
    assert call(client, "PUT", path, body=value).status_code == 204
    response = call(client, "GET", same_as or path)
    assert response.status_code == 200
    assert response.json() == value
    assert call(client, "DELETE", same_as or path).status_code == 204
    assert_error(call(client, "GET", path), 404)
    assert_error(call(client, "DELETE", path), 404)


def test_property_read_with_an_access_token(client: Client) -> None:
    assert call(client, "PUT", REPO_PROPERTY, body={"a": 1}).status_code == 204
    access_token = _grant(client).json()["access_token"]
    response = call(client, "GET", REPO_PROPERTY, authorization="Bearer " + access_token)
    assert response.status_code == 200
    assert response.json() == {"a": 1}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/2.0/repositories/demo-workspace/website/properties/other-app/settings", 403),
        ("/2.0/repositories/demo-workspace/nothing/properties/example-app/settings", 404),
        ("/2.0/repositories/elsewhere/website/properties/example-app/settings", 404),
        ("/2.0/users/someone-else/properties/example-app/settings", 404),
        ("/2.0/repositories/demo-workspace/website/properties/example-app/bad%20name", 404),
        ("/2.0/repositories/demo-workspace/website/commit/not-hex/properties/example-app/p", 404),
        ("/2.0/repositories/demo-workspace/website/properties/example-app", 404),
    ],
)
def test_property_refusals(client: Client, path: str, status: int) -> None:
    assert_error(call(client, "PUT", path, body={"a": 1}), status)
    assert_error(call(client, "GET", path), status)


@pytest.mark.parametrize(
    "raw",
    [b"[1]", b"not json", b"[" * 100_000, json.dumps({"a": "x" * 40_000}).encode()],
    ids=["not an object", "not JSON", "too deep", "too large"],
)
def test_property_values_must_be_json_objects(client: Client, raw: bytes) -> None:
    assert_error(call(client, "PUT", REPO_PROPERTY, raw=raw), 400)
    assert_error(call(client, "GET", REPO_PROPERTY), 404)


def test_property_with_a_bad_token_is_not_stored(client: Client) -> None:
    bad = token_for("PUT", API + REPO_PROPERTY, secret="wrong-secret-0123456789")
    assert_unauthorized(call(client, "PUT", REPO_PROPERTY, token=bad, body={"a": 1}))
    assert_error(call(client, "GET", REPO_PROPERTY), 404)


# --- the JWT grant -----------------------------------------------------------------------


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every access token the grant issues during the test (its arguments)."""
    calls: list[tuple[Any, ...]] = []
    issue = state.issue_access_token

    def recording(*args: Any) -> str:
        calls.append(args)
        return issue(*args)

    monkeypatch.setattr(state, "issue_access_token", recording)
    return calls


def _grant(
    client: Client,
    form: dict[str, str] | None = None,
    *,
    token: str | None = None,
    authorization: str | None = None,
) -> TestResponse:
    if authorization is None:
        authorization = "JWT " + (token or token_for("POST", GRANT, base_path=SIMULATOR_BASE))
    response: TestResponse = client.post(
        GRANT,
        urlencode({"grant_type": "urn:bitbucket:oauth2:jwt", **(form or {})}),
        content_type="application/x-www-form-urlencoded",
        secure=True,
        headers={"Authorization": authorization},
    )
    return response


def test_grant_gives_an_access_token_used_as_bearer(
    client: Client, issued: list[tuple[Any, ...]]
) -> None:
    response = _grant(client)
    assert response.status_code == 200
    assert issued == [(CLIENT_KEY, SCOPES, None, 3600)]
    data = response.json()
    assert set(data) == {"access_token", "scopes", "expires_in", "token_type", "state"}
    assert data["scopes"] == "account repository"
    assert data["expires_in"] == 3600
    assert data["token_type"] == "bearer"
    assert response["Cache-Control"] == "no-store"
    user = call(client, "GET", "/2.0/user", authorization="Bearer " + data["access_token"])
    assert user.status_code == 200
    assert user.json()["uuid"] == SIMULATED_USER["uuid"]


def test_grant_narrowed(client: Client) -> None:
    data = _grant(
        client, {"scope": "repository", "bitbucket_repository": REPOSITORY["uuid"]}
    ).json()
    assert data["scopes"] == "repository"
    bearer = "Bearer " + data["access_token"]
    listed = call(client, "GET", "/2.0/repositories/demo-workspace", authorization=bearer).json()
    assert [repo["uuid"] for repo in listed["values"]] == [REPOSITORY["uuid"]]
    other = call(
        client, "GET", "/2.0/repositories/demo-workspace/api-service", authorization=bearer
    )
    assert_error(other, 404)


def test_grant_scopes_may_be_comma_separated(client: Client) -> None:
    assert _grant(client, {"scope": "account,repository"}).json()["scopes"] == "account repository"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, 400, "invalid_grant"),
        ({"scope": "repository:admin"}, 400, "invalid_scope"),
        (
            {"bitbucket_repository": "{00000000-0000-0000-0000-000000000000}"},
            400,
            "invalid_request",
        ),
    ],
)
def test_grant_refusals(
    client: Client,
    issued: list[tuple[Any, ...]],
    sent_signals: SignalRecorder,
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = _grant(client, form)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert issued == []
    assert sent_signals.none_sent


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (
            lambda: "JWT " + token_for("POST", GRANT, base_path=SIMULATOR_BASE, secret="w" * 30),
            "invalid_grant",
        ),
        (
            lambda: "JWT " + token_for("POST", GRANT + "x", base_path=SIMULATOR_BASE),
            "invalid_grant",
        ),
        (
            lambda: (
                "JWT "
                + token_for("POST", GRANT, base_path=SIMULATOR_BASE, client_key="connection:5")
            ),
            "invalid_grant",
        ),
        (lambda: "Bearer x", "invalid_client"),
        (lambda: "", "invalid_client"),
    ],
)
def test_grant_refuses_bad_tokens(
    client: Client,
    issued: list[tuple[Any, ...]],
    sent_signals: SignalRecorder,
    authorization: Any,
    error: str,
) -> None:
    response = _grant(client, authorization=authorization())
    assert response.status_code == 401
    assert response.json()["error"] == error
    assert issued == []
    assert sent_signals.none_sent
    assert not Installation.objects.exists()


def test_grant_with_the_form_folded_into_the_qsh_is_refused_and_said(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    folded = token_for(
        "POST", GRANT + "?grant_type=urn%3Abitbucket%3Aoauth2%3Ajwt", base_path=SIMULATOR_BASE
    )
    with caplog.at_level(logging.WARNING, "bitbucket_install"):
        response = _grant(client, token=folded)
    assert response.status_code == 401
    assert "the qsh covers the form body" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "bitbucket_install"):
        _grant(client, token=token_for("POST", GRANT + "?x=1", base_path=SIMULATOR_BASE))
    assert "reason=token_qsh" in caplog.text
    assert "form body" not in caplog.text


def test_an_expired_access_token_is_refused(client: Client) -> None:
    access_token = _grant(client).json()["access_token"]
    cache.delete(state._hashed("token:", access_token))
    assert_unauthorized(call(client, "GET", "/2.0/user", authorization="Bearer " + access_token))


def test_access_tokens_of_a_deleted_installation_are_refused(client: Client) -> None:
    access_token = _grant(client).json()["access_token"]
    assert call(client, "DELETE", "/2.0/addon").status_code == 204
    assert_unauthorized(call(client, "GET", "/2.0/user", authorization="Bearer " + access_token))
    assert _grant(client).status_code == 401


def test_grant_takes_only_post(client: Client) -> None:
    assert client.get(GRANT, secure=True).status_code == 405


# --- the 429 switch -------------------------------------------------------------------------


def test_rate_limit_switch(client: Client) -> None:
    state.set_rate_limited(2)
    assert_unauthorized(call(client, "GET", "/2.0/user", authorization=""))  # not counted
    assert _grant(client).status_code == 200  # not counted
    for _ in range(2):
        response = call(client, "GET", "/2.0/user")
        assert response.status_code == 429
        assert response.content.decode() == RATE_LIMIT_MESSAGE
        assert response["Content-Type"].startswith("text/plain")
        assert "Retry-After" not in response
    assert state.rate_limited_calls() == 0
    assert call(client, "GET", "/2.0/user").status_code == 200
    assert state.rate_limited_calls() == 0


def test_rate_limit_switch_never_set() -> None:
    assert state.rate_limited_calls() == 0
    assert not state.take_rate_limited()


# --- through the app's own client ----------------------------------------------------------


@pytest.fixture
def api_installation() -> Installation:
    """The app's row of the simulated installation, as the simulator's callback makes it."""
    installation: Installation = Installation.objects.create(
        client_key=CLIENT_KEY,
        addon_key=APP_KEY,
        shared_secret=SECRET,
        base_url=BASE_URL + SIMULATOR_BASE,
        base_api_url=BASE_URL + API,
    )
    return installation


def test_the_client_calls_the_simulated_api(
    client: Client, api_installation: Installation
) -> None:
    slept: list[float] = []
    with BitbucketClient(
        api_installation, transport=django_transport(client), sleep=slept.append
    ) as bitbucket:
        assert bitbucket.get("/2.0/user").json()["uuid"] == SIMULATED_USER["uuid"]
        repositories = bitbucket.get(
            f"/2.0/repositories/{WORKSPACE.uuid}", params={"q": 'name ~ "web"', "pagelen": 10}
        ).json()
        assert repositories["size"] == 2
        assert bitbucket.put(REPO_PROPERTY, json={"on": True}).status_code == 204
        assert bitbucket.get(REPO_PROPERTY).json() == {"on": True}
        assert bitbucket.put("/2.0/addon", json={}).status_code == 204
        access_token = bitbucket.access_token()
        assert bitbucket.access_token() == access_token  # cached
        assert bitbucket.access_token(scopes=["account"]) != access_token
        state.set_rate_limited(1)
        assert bitbucket.get("/2.0/workspaces").status_code == 200
        assert len(slept) == 1  # one 429, waited out
        state.set_rate_limited(10)
        with pytest.raises(RateLimited) as limited:
            bitbucket.get("/2.0/workspaces")
        assert limited.value.retry_after is None
        state.set_rate_limited(0)
        assert bitbucket.delete("/2.0/addon").status_code == 204
        with pytest.raises(TokenRefused) as refused:
            bitbucket.get("/2.0/user")
        assert refused.value.status == 401


def test_a_forged_installation_is_refused(client: Client, api_installation: Installation) -> None:
    """A row whose secret the simulated Bitbucket never gave out gets nothing from it."""
    api_installation.shared_secret = "a-secret-chosen-by-a-forger-0123"
    api_installation.save()
    with (
        BitbucketClient(api_installation, transport=django_transport(client)) as bitbucket,
        pytest.raises(TokenRefused),
    ):
        bitbucket.get("/2.0/user")


def test_installed_through_the_simulator_the_client_reaches_it(
    client: Client, router: Router, settings: Settings
) -> None:
    response = grant(client, registered_link())
    assert response.status_code == 302
    installation = Installation.objects.get()
    assert installation.base_url == BASE_URL + SIMULATOR_BASE
    assert installation.base_api_url == BASE_URL + API
    remembered = state.installation(installation.client_key)
    assert remembered is not None
    assert remembered.shared_secret == installation.shared_secret
    assert remembered.app_key == APP_KEY
    assert state.installations()[0] == remembered
    with BitbucketClient(installation, transport=django_transport(client)) as bitbucket:
        workspaces = bitbucket.get("/2.0/workspaces").json()
        assert workspaces["values"][0]["name"] == "Demo workspace"
        assert bitbucket.access_token()


def test_without_a_base_url_installations_point_at_bitbucket(
    client: Client, router: Router, settings: Settings
) -> None:
    from bitbucket_install.simulator.views import simulated_bitbucket_urls

    settings.BITBUCKET_INSTALL_BASE_URL = None
    assert simulated_bitbucket_urls() == {}


# --- off ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("debug", "simulator"), [(False, True), (True, False)], ids=["DEBUG off", "simulator off"]
)
def test_off_everything_is_404(
    client: Client, settings: Settings, debug: bool, simulator: bool
) -> None:
    settings.DEBUG = debug
    settings.BITBUCKET_INSTALL_SIMULATOR = simulator
    assert call(client, "GET", "/2.0/user").status_code == 404
    assert client.get(API + "/", secure=True).status_code == 404
    assert _grant(client).status_code == 404
    assert client.get("/bitbucket/simulator/console/").status_code == 404
    assert (
        client.post("/bitbucket/simulator/console/", {"action": "rate_limit"}).status_code == 404
    )


def test_views_check_the_switch_themselves(settings: Settings, rf: Any) -> None:
    """Behind the URL dispatchers' own check, each view checks the switch again."""
    from django.http import Http404

    from bitbucket_install.simulator.api import simulated_api_view, simulated_grant_view

    settings.BITBUCKET_INSTALL_SIMULATOR = False
    with pytest.raises(Http404):
        simulated_api_view(rf.get(API + "/2.0/user"), api_path="2.0/user")
    with pytest.raises(Http404):
        simulated_grant_view(rf.post(GRANT))


@pytest.fixture(autouse=True)
def _no_leftover_switch() -> Iterator[None]:
    yield
    state.set_rate_limited(0)
