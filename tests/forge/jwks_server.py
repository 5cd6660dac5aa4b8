"""A stand-in for Forge's key server: a real HTTP server on 127.0.0.1 serving a JWKS that
the test can change, stop answering properly, or take down, and counting every fetch."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

JWKS_PATH = "/.well-known/jwks.json"


class JWKSServer:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        # None: the JWKS as JSON; else (status, body) answered instead.
        self.answer: tuple[int, bytes] | None = None
        self.fetches = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.keys = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{JWKS_PATH}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def served(self) -> tuple[int, bytes]:
        with self._lock:
            self.fetches += 1
            if self.answer is not None:
                return self.answer
            return 200, json.dumps(self.jwks).encode()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    keys: JWKSServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        status, body = self.server.keys.served()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests assert on fetches, not on stderr


@contextmanager
def running(jwks: dict[str, Any]) -> Iterator[JWKSServer]:
    server = JWKSServer(jwks)
    server.start()
    try:
        yield server
    finally:
        server.stop()
