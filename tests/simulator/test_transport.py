"""The simulator's real HTTP transport, against a local HTTP server: what it sends and
returns, that it never follows a redirect, and that a GET of the simulator's page connects
nowhere while a POST reaches only what the checks allow."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from bitbucket_install.simulator import transport
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows
from tests.simulator.helpers import (
    OTHER_APP,
    assert_error_page,
    check,
    error_description,
    grant,
    link,
)

pytestmark = pytest.mark.django_db


class _Server(http.server.ThreadingHTTPServer):
    seen: list[tuple[str, str]]
    descriptor: dict[str, Any]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        if self.path.startswith("/redirect"):
            self._answer(302, Location="/secret")
        elif self.path == "/fail":
            self._answer(500, b'{"path": "/fail"}')
        elif self.path == "/big":
            self._answer(200, b"x" * 100)
        elif self.path == "/atlassian-connect.json":
            self._answer(200, json.dumps(self.server.descriptor).encode())
        else:
            body = json.dumps({"path": self.path, "x": self.headers.get("X-Test")})
            self._answer(200, body.encode())

    def do_POST(self) -> None:
        self.server.seen.append(("POST", self.path))
        received = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/redirect"):
            self._answer(307, Location="/secret")
        else:
            self._answer(204, X_Echo=received.decode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class LocalServer:
    url: str
    server: _Server

    @property
    def seen(self) -> list[tuple[str, str]]:
        return self.server.seen


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = []
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.descriptor = {**OTHER_APP, "baseUrl": url}
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield LocalServer(url, server)
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- send ---------------------------------------------------------------------------------


def test_send_returns_status_and_body(local_server: LocalServer) -> None:
    status, body = transport.send("GET", local_server.url + "/d.json", headers={"X-Test": "1"})
    assert status == 200
    assert json.loads(body) == {"path": "/d.json", "x": "1"}
    assert transport.send("POST", local_server.url + "/installed", b"{}", {}) == (204, b"")
    assert transport.send("GET", local_server.url)[0] == 200
    assert transport.send("GET", local_server.url + "/q?a=1&b=2")[0] == 200
    assert local_server.seen == [
        ("GET", "/d.json"),
        ("POST", "/installed"),
        ("GET", "/"),
        ("GET", "/q?a=1&b=2"),
    ]


def test_send_returns_error_statuses(local_server: LocalServer) -> None:
    status, body = transport.send("GET", local_server.url + "/fail")
    assert status == 500
    assert json.loads(body)["path"] == "/fail"


@pytest.mark.parametrize(("method", "status"), [("GET", 302), ("POST", 307)])
def test_send_never_follows_a_redirect(
    local_server: LocalServer, method: str, status: int
) -> None:
    assert transport.send(method, local_server.url + "/redirect", b"{}")[0] == status
    assert local_server.seen == [(method, "/redirect")]


def test_send_reads_no_more_than_the_cap(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "MAX_RESPONSE_BYTES", 10)
    assert transport.send("GET", local_server.url + "/big") == (200, b"x" * 10)


def test_send_raises_when_nothing_answers() -> None:
    with pytest.raises(transport.TRANSPORT_ERRORS):
        transport.send("GET", f"http://127.0.0.1:{_closed_port()}/")


def test_send_verifies_tls(local_server: LocalServer) -> None:
    """An https URL on a server without (valid) TLS is no answer."""
    with pytest.raises(transport.TRANSPORT_ERRORS):
        transport.send("GET", local_server.url.replace("http:", "https:") + "/d.json")
    assert local_server.seen == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1/", "http:///x", "http://127.0.0.1:x/"]
)
def test_send_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(OSError, match=r"not an http|malformed port"):
        transport.send("GET", url)


# --- the simulator on real HTTP -------------------------------------------------------------


def test_a_get_of_the_page_connects_nowhere(local_server: LocalServer, client: Client) -> None:
    """A web page can make a browser GET the simulator's page for any descriptor_uri: that
    must not turn into a request to a port of this machine."""
    for path in ("/atlassian-connect.json", "/admin/", "/redirect"):
        response = client.get(link(descriptor_uri=local_server.url + path))
        assert response.status_code == 200
        assert b'id="check-title"' in response.content
    assert local_server.seen == []


def test_a_redirecting_descriptor_is_not_followed(
    local_server: LocalServer, client: Client, sent_signals: SignalRecorder
) -> None:
    before = installation_rows()
    for action in ("check", "grant"):
        response = client.post(
            link(descriptor_uri=local_server.url + "/redirect"), {"action": action}
        )
        assert_error_page(response, "invalid_descriptor")
        assert "a redirect, which the simulator does not follow" in error_description(response)
    assert local_server.seen == [("GET", "/redirect"), ("GET", "/redirect")]
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_redirecting_installed_callback_is_not_followed(
    local_server: LocalServer, client: Client, sent_signals: SignalRecorder
) -> None:
    local_server.server.descriptor["lifecycle"] = {"installed": "/redirect-installed"}
    before = installation_rows()
    response = grant(client, link(descriptor_uri=local_server.url + "/atlassian-connect.json"))
    assert_error_page(response, "server_error", status=502)
    assert local_server.seen == [
        ("GET", "/atlassian-connect.json"),
        ("POST", "/redirect-installed"),
    ]
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_a_whole_install_over_real_http(local_server: LocalServer, client: Client) -> None:
    descriptor_uri = local_server.url + "/atlassian-connect.json"
    redirect_uri = local_server.url + "/back/flow-value/"
    path = link(descriptor_uri=descriptor_uri, redirect_uri=redirect_uri)
    assert check(client, path).status_code == 200
    response = grant(client, path, workspace="Real")
    assert response.status_code == 302
    assert response["Location"].startswith(redirect_uri + "?clientKey=connection%3A")
    assert local_server.seen == [
        ("GET", "/atlassian-connect.json"),
        ("GET", "/atlassian-connect.json"),
        ("POST", "/bitbucket/installed"),
    ]
