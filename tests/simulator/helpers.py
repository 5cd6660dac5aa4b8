"""What the simulator's tests share: the routed transport, the URLs of the test site, and
the steps a browser takes on the simulator's pages.

``Router`` stands in for ``bitbucket_install.simulator.transport.send``: it records every
request the simulator makes and answers it through Django's test client (so the descriptor
and the ``installed`` callback reach the app's real views), or with a canned answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from django.test import Client

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

SIMULATOR_PATH = "/bitbucket/simulator/authorize/"
BASE_URL = "https://app.example.com"  # BITBUCKET_INSTALL_BASE_URL of tests/settings.py
SIMULATOR_URL = BASE_URL + SIMULATOR_PATH
CALLBACK_URL = BASE_URL + "/bitbucket/callback/"
# The app puts a per-flow value in the redirect_uri's path; the simulator keeps it as is.
FLOW_CALLBACK_URL = CALLBACK_URL + "flow-3f9a1c/"
DESCRIPTOR_URL = BASE_URL + "/bitbucket/atlassian-connect.json"
INSTALLED_URL = BASE_URL + "/bitbucket/installed"
LOOPBACK_DESCRIPTOR = "http://127.0.0.1:8000/atlassian-connect.json"
OTHER_DESCRIPTOR = "https://other.example.net/atlassian-connect.json"
APP_KEY = "example-app"
# A valid descriptor of another app, on this site's origin.
OTHER_APP: dict[str, Any] = {
    "key": "other-app",
    "name": "Other app",
    "description": "Another app.",
    "baseUrl": BASE_URL,
    "lifecycle": {"installed": "/bitbucket/installed"},
}


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
        headers: Mapping[str, str] | None = None,
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
                headers={k: v for k, v in (headers or {}).items() if k != "Content-Type"},
            )
        return response.status_code, response.content

    def answer_json(self, url: str, data: object) -> None:
        self.answers[url] = (200, json.dumps(data).encode())

    def requests(self) -> list[tuple[str, str]]:
        return [(call.method, call.url) for call in self.calls]

    def posts(self) -> list[Call]:
        return [call for call in self.calls if call.method == "POST"]


def link(**params: str | list[str]) -> str:
    """The simulator's path with ``params`` as the install link's query."""
    return SIMULATOR_PATH + "?" + urlencode(params, doseq=True)


def registered_link(redirect_uri: str = CALLBACK_URL) -> str:
    return link(addon_key=APP_KEY, redirect_uri=redirect_uri)


def loopback_link(redirect_uri: str = CALLBACK_URL) -> str:
    return link(descriptor_uri=LOOPBACK_DESCRIPTOR, redirect_uri=redirect_uri)


def query_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query, keep_blank_values=True)


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


def error_description(response: TestResponse) -> str:
    """The description of the error the simulator sent back or showed."""
    if response.status_code == 302:
        return query_of(response["Location"])["error_description"][0]
    html = response.content.decode()
    return html.split('<p id="error-description">', 1)[1].split("</p>", 1)[0]


def grant(
    client: Client, path: str, workspace: str = "Demo workspace", send_jwt: bool = True
) -> TestResponse:
    data = {"action": "grant", "workspace": workspace}
    if send_jwt:
        data["send_jwt"] = "on"
    response: TestResponse = client.post(path, data)
    return response


def check(client: Client, path: str) -> TestResponse:
    """Press "Fetch and check the descriptor" on the page of another app's link."""
    response: TestResponse = client.post(path, {"action": "check"})
    return response


def open_link(client: Client, method: str, path: str, action: str = "grant") -> TestResponse:
    """GET the link (the consent page), or POST ``action`` to it."""
    if method == "get":
        got: TestResponse = client.get(path)
        return got
    posted: TestResponse = client.post(path, {"action": action})
    return posted


def django_transport(client: Client) -> httpx.MockTransport:
    """An httpx transport that hands each request to Django's test client."""

    def handle(request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode("ascii")
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        response = client.generic(
            request.method,
            target,
            request.content,
            content_type=request.headers.get("Content-Type", ""),
            secure=request.url.scheme == "https",
            headers=headers,
        )
        return httpx.Response(
            response.status_code,
            headers=dict(response.items()),
            content=response.content,
        )

    return httpx.MockTransport(handle)
