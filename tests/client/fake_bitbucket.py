"""A stand-in for Bitbucket: a real HTTP server on 127.0.0.1 that checks every request the
client sends with the reference library, atlassian-jwt, and answers as scripted.

Each request is checked the way Bitbucket is documented to: ``Authorization: JWT <token>``
(the scheme as written), HS256 signed with the installation's secret (found by ``sub``),
``iss`` the app key, ``sub`` the clientKey, no ``aud``, a lifetime of at most 180 seconds,
and a qsh that atlassian-jwt recomputes from the method, path and query received (relative
to the server's base path), never from the body. A request that fails gets Bitbucket's 401
and its problem is recorded, so tests assert ``problems == []`` as well as the answer.

A Forge installation's calls carry ``Authorization: Bearer <app system token>`` instead:
one of ``bearer_tokens`` (the tokens the test told it about) is accepted as it is, any
other Bearer token refused.

Answers: ``script`` holds answers to give, first in first out; with none left, an API path
gets 200 with what was received, the grant path an access token.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import atlassian_jwt
import jwt

APP_KEY = "example-app"  # BITBUCKET_INSTALL_ADDON_KEY of tests/settings.py
CLIENT_KEY = "ari:cloud:bitbucket::app/{0d6f5a1e-1111-4c5e-9a6b-5f1e2d3c4b5a}/example-app"
SHARED_SECRET = "installation-shared-secret-0123456789"
GRANT_PATH = "/site/oauth2/access_token"
MAX_LIFETIME = 180


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, **headers: str) -> Answer:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Answer:
        return cls(status, text.encode(), {"Content-Type": "text/plain", **headers})


@dataclass
class Received:
    """One request as it arrived, and what verifying it found."""

    method: str
    target: str  # the request target exactly as sent: path and query, escapes kept
    headers: dict[str, str]
    body: bytes
    client_port: int
    claims: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


class _Verifier(atlassian_jwt.Authenticator):  # type: ignore[misc]
    """atlassian-jwt's own check: qsh recomputed from the URL, then the HS256 signature,
    ``exp`` and ``iat`` (with its leeway of 90 s) against the secret of ``sub``."""

    def __init__(self, secrets: dict[str, str], claimed_sub: str, leeway: int) -> None:
        super().__init__(leeway=leeway)
        self.secrets = secrets
        self.claimed_sub = claimed_sub

    def get_shared_secret(self, client_key: str) -> str:
        # atlassian-jwt looks the secret up by iss, which Bitbucket's flavour makes the
        # app key; the installation is the token's sub.
        if client_key != APP_KEY:
            raise jwt.InvalidIssuerError(f"iss {client_key!r} is not the app key")
        return self.secrets[self.claimed_sub]


class FakeBitbucket:
    def __init__(self, base_path: str = "") -> None:
        self.base_path = base_path
        self.secrets = {CLIENT_KEY: SHARED_SECRET}
        self.bearer_tokens: set[str] = set()
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.grant_expires_in: int | None = 7200
        # atlassian-jwt's own leeway on iat and exp; a test that moves the client's clock
        # by hours widens it.
        self.leeway = 90
        self.tokens_issued = 0
        self.release = threading.Event()  # a "/slow" request waits for it
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.origin + self.base_path

    @property
    def problems(self) -> list[str]:
        return [r.problem for r in self.received if r.problem is not None]

    def grants(self) -> list[Received]:
        return [r for r in self.received if r.path == self.base_path + GRANT_PATH]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- on the server's threads ----------------------------------------------------------

    def handle(self, received: Received) -> Answer:
        received.problem, received.claims = self.verify(received)
        self.received.append(received)
        if received.problem is not None:
            return Answer.json(401, {"type": "error", "error": {"message": "Unauthorized"}})
        if received.path.endswith("/slow"):
            self.release.wait(10)
        if self.script:
            return self.script.pop(0)
        if received.path == self.base_path + GRANT_PATH:
            return self.grant_answer(received)
        return Answer.json(
            200,
            {"method": received.method, "path": received.path, "query": received.query},
        )

    def grant_answer(self, received: Received) -> Answer:
        form = received.form
        if form.get("grant_type") != ["urn:bitbucket:oauth2:jwt"]:
            return Answer.json(400, {"error": "unsupported_grant_type"})
        self.tokens_issued += 1
        answer: dict[str, Any] = {
            "access_token": f"access-token-{self.tokens_issued}",
            "scopes": form.get("scope", ["repository"])[0],
            "token_type": "bearer",
        }
        if self.grant_expires_in is not None:
            answer["expires_in"] = self.grant_expires_in
        return Answer.json(200, answer)

    def verify(self, received: Received) -> tuple[str | None, dict[str, Any] | None]:
        scheme, _, token = received.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer":
            return (None if token in self.bearer_tokens else "unknown Bearer token"), None
        if scheme != "JWT" or not token:
            return "no Authorization: JWT header", None
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
            if header != {"typ": "JWT", "alg": "HS256"}:
                return f"header {header}", None
            if unverified.get("sub") not in self.secrets:
                return f"unknown sub {unverified.get('sub')!r}", None
            relative = received.target[len(self.base_path) :]
            verifier = _Verifier(self.secrets, unverified["sub"], self.leeway)
            _, claims = verifier.authenticate(
                received.method, relative, {"Authorization": f"JWT {token}"}
            )
        except jwt.InvalidTokenError as error:  # DecodeError (qsh) is one of them
            return f"{type(error).__name__}: {error}", None
        if "aud" in claims:
            return "aud present", claims
        if not 0 < claims["exp"] - claims["iat"] <= MAX_LIFETIME:
            return f"lifetime {claims['exp'] - claims['iat']}", claims
        if set(claims) != {"iss", "sub", "iat", "exp", "qsh"}:
            return f"claims {sorted(claims)}", claims
        return None, claims


class _Server(http.server.ThreadingHTTPServer):
    fake: FakeBitbucket
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone: the answer has nobody to go to.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses the connection

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(
            method=self.command,
            target=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length),
            client_port=self.client_address[1],
        )
        answer = self.server.fake.handle(received)
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def running(base_path: str = "") -> Iterator[FakeBitbucket]:
    fake = FakeBitbucket(base_path)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
