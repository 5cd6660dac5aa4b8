"""Figures 2, 3, 7, 8 and 9, timed in this process (Django set up with the served site's
settings).

Each side is timed ``REPEATS`` times over ``number`` calls, the two sides alternating, in
CPU time of this process (time.process_time: what other processes do on a shared machine
does not count), and the fastest repeat of each is kept.

Figures 7 and 8 drive ``BitbucketClient`` with an ``httpx.MockTransport`` in place of the
network: it answers the JWT grant and counts every request that reaches it, so a figure
knows how many HTTP requests its timed calls made (none, for both).
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    import httpx

    from bitbucket_install.models import Installation

REPEATS = 21
CLIENT_KEY = "ari:cloud:bitbucket::app/{5a1b2c3d-aaaa-4e5f-8a9b-0c1d2e3f4a5b}/bench-app"


def best_of(
    ours: Callable[[], object], baseline: Callable[[], object], number: int
) -> tuple[float, float]:
    """Seconds per call of ``ours`` and of ``baseline``: best of ``REPEATS`` alternated runs."""
    ours_times, baseline_times = [], []
    ours(), baseline()  # warm up: imports, caches, compiled templates
    ours_timer = timeit.Timer(ours, timer=time.process_time)
    baseline_timer = timeit.Timer(baseline, timer=time.process_time)
    for _ in range(REPEATS):
        ours_times.append(ours_timer.timeit(number) / number)
        baseline_times.append(baseline_timer.timeit(number) / number)
    return min(ours_times), min(baseline_times)


def jwt_verification(shared_secret: str) -> tuple[float, float]:
    """``verify_token`` with the qsh of the request computed per call, against a bare
    ``jwt.decode`` (signature, ``exp``, ``iat``) of the same token."""
    import jwt

    from bitbucket_install.tokens import encode_token, query_string_hash, verify_token

    client_key = CLIENT_KEY
    path = "/bitbucket/callback/"
    query = urlencode({"clientKey": client_key})
    token = encode_token(
        {"iss": client_key},
        shared_secret,
        method="GET",
        path=path,
        query_string=query,
        lifetime=300,
    )

    def ours() -> dict[str, Any]:
        qsh = query_string_hash("GET", path, f"{query}&{urlencode({'jwt': token})}")
        return verify_token(token, shared_secret, qsh=qsh, issuer=client_key)

    def bare() -> dict[str, Any]:
        return jwt.decode(token, shared_secret, algorithms=["HS256"])

    if ours()["iss"] != bare()["iss"]:
        raise RuntimeError("the two decodes disagree")
    return best_of(ours, bare, number=1000)


def button_render() -> tuple[float, float]:
    """``{% bitbucket_install_button %}`` against a template holding the markup it renders,
    written out by hand (with ``{% csrf_token %}``, which a hand-written form needs too)."""
    import re

    from django.middleware.csrf import get_token
    from django.template import engines
    from django.test import RequestFactory

    engine = engines["django"]
    request = RequestFactory().get("/", HTTP_HOST="127.0.0.1")
    get_token(request)
    ours = engine.from_string("{% load bitbucket_install %}{% bitbucket_install_button %}")
    rendered = ours.render({}, request)
    csrf_input = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">')
    if len(csrf_input.findall(rendered)) != 1:
        raise RuntimeError(f"unexpected button markup: {rendered}")
    static = engine.from_string(csrf_input.sub("{% csrf_token %}", rendered))
    same = csrf_input.sub("", static.render({}, request)) == csrf_input.sub("", rendered)
    if not same:
        raise RuntimeError("the hand-written template renders other markup")
    return best_of(lambda: ours.render({}, request), lambda: static.render({}, request), 500)


class CountingBitbucket:
    """An ``httpx.MockTransport`` handler standing in for Bitbucket: it answers the JWT
    grant with an access token and counts every request that reaches it."""

    ACCESS_TOKEN = "bench-access-token-" + "x" * 200

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import httpx

        self.requests += 1
        if request.method == "POST" and request.url.path == "/site/oauth2/access_token":
            answer = {"access_token": self.ACCESS_TOKEN, "expires_in": 7200}
            return httpx.Response(200, json=answer)
        return httpx.Response(404, text="not served here")


def installation(shared_secret: str) -> Installation:
    """An installed installation on Bitbucket Cloud (not saved: the client reads only its
    fields)."""
    from bitbucket_install.models import Installation

    return Installation(
        client_key=CLIENT_KEY,
        addon_key="bench-app",
        shared_secret=shared_secret,
        base_url="https://bitbucket.org",
        base_api_url="https://api.bitbucket.org",
    )


@dataclass(frozen=True)
class Signing:
    """Figure 7's times, seconds per call, and the HTTP requests the timed calls made."""

    sign: float
    bare_encode: float
    prepare_and_sign: float
    build_and_encode: float
    http_requests: int


def request_signing(shared_secret: str) -> Signing:
    """Signing one outgoing request as the client does before each attempt
    (``_Prepared.sign``: the request target as it goes on the wire, the claims with their
    qsh, the token, the ``Authorization`` header) against a bare ``jwt.encode`` of the same
    claims; and the whole preparation (the installation, path and origin checks, the httpx
    request built, then signed) against httpx's ``build_request`` plus that ``jwt.encode``.

    The request has what real ones have: a repository UUID in braces in the path and a
    query with spaces, quotes and a repeated parameter.
    """
    import httpx
    import jwt

    from bitbucket_install.client import BitbucketClient
    from bitbucket_install.tokens import query_string_hash

    path = "/2.0/repositories/acme/{0b6c8e2a-1111-4c1e-9b2d-5f6e7a8b9c0d}/pullrequests"
    params = httpx.QueryParams(
        [("state", "OPEN"), ("state", "MERGED"), ("q", 'title ~ "fix"'), ("pagelen", "50")]
    )
    bitbucket = CountingBitbucket()
    with BitbucketClient(
        installation(shared_secret), transport=httpx.MockTransport(bitbucket)
    ) as client:
        http = client._http
        prepared = client._prepare(http, "GET", path, {"params": params})
        prepared.sign()
        token = prepared.request.headers["Authorization"].removeprefix("JWT ")
        claims = jwt.decode(token, shared_secret, algorithms=["HS256"])
        url = prepared.request.url
        # Over the path as it goes on the wire (the braces escaped) and the query.
        wire_path, _, wire_query = url.raw_path.decode("ascii").partition("?")
        expected_qsh = query_string_hash("GET", wire_path, wire_query)
        if claims["qsh"] != expected_qsh or claims["sub"] != CLIENT_KEY or "aud" in claims:
            raise RuntimeError(f"the client signed other claims than expected: {claims}")
        full_url = str(url).partition("?")[0]

        def bare_encode() -> str:
            return jwt.encode(claims, shared_secret, algorithm="HS256")

        def prepare_and_sign() -> None:
            client._prepare(http, "GET", path, {"params": params}).sign()

        def build_and_encode() -> None:
            request = http.build_request("GET", full_url, params=params)
            request.headers["Authorization"] = f"JWT {bare_encode()}"

        sign, bare = best_of(prepared.sign, bare_encode, number=2000)
        whole, built = best_of(prepare_and_sign, build_and_encode, number=1000)
    return Signing(sign, bare, whole, built, bitbucket.requests)


@dataclass(frozen=True)
class CachedToken:
    """Figure 8's times, seconds per call, and the HTTP requests the timed calls made."""

    access_token: float
    cache_get: float
    http_requests: int


def cached_access_token(shared_secret: str) -> CachedToken:
    """``BitbucketClient.access_token()`` once its token is in Django's cache (the served
    site's: local memory), against a bare ``cache.get`` of the same entry. The first call
    fetches the token (one request to the stand-in Bitbucket, untimed); the timed calls
    must make none."""
    import httpx
    from django.core.cache import cache

    from bitbucket_install.client import BitbucketClient

    bitbucket = CountingBitbucket()
    with BitbucketClient(
        installation(shared_secret), transport=httpx.MockTransport(bitbucket)
    ) as client:
        key = client._grant_call(None, None).cache_key
        cache.delete(key)
        if client.access_token() != bitbucket.ACCESS_TOKEN or bitbucket.requests != 1:
            raise RuntimeError("the first access_token() did not fetch the grant once")
        fetched = bitbucket.requests
        ours, bare = best_of(client.access_token, lambda: cache.get(key), number=2000)
        if client.access_token() != bitbucket.ACCESS_TOKEN:
            raise RuntimeError("the cached access_token() returned another token")
        made = bitbucket.requests - fetched
    cache.delete(key)
    return CachedToken(ours, bare, made)


@dataclass(frozen=True)
class ForgeVerification:
    """Figure 9's times, seconds per call, and the JWKS fetches the timed calls made."""

    verify: float
    bare_decode: float
    fetches: int


def forge_verification() -> ForgeVerification:
    """``verify_invocation`` of an RS256 Forge Invocation Token with the JWKS warm (one
    fetch before the timed calls, from a key server on 127.0.0.1 that counts them) against
    a bare ``jwt.decode`` of the same token with the key in hand (signature, ``exp``,
    ``nbf``, ``iat``, ``aud``, ``iss``). The token is made here, with a key of its own,
    valid for the whole run."""
    import http.server
    import json
    import threading

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from bitbucket_install.forge import jwks
    from bitbucket_install.forge.tokens import ISSUER, verify_invocation

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    body = json.dumps({"keys": [{**public_jwk, "kid": "bench-1", "use": "sig"}]}).encode()
    fetches = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            nonlocal fetches
            fetches += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        app_id = "ari:cloud:ecosystem::app/8db33809-1f32-48bb-8c52-5877dab48107"
        now = int(time.time())
        installation = "ari:cloud:ecosystem::installation/0a3a7799-53ae-4a5b-9e7e-03338980abb5"
        claims = {
            "app": {
                "id": app_id,
                "installationId": installation,
                "apiBaseUrl": "https://api.bitbucket.org",
                "installation": {
                    "id": installation,
                    "contexts": [
                        {
                            "name": "bitbucket",
                            "apiBaseUrl": "https://api.bitbucket.org",
                            "workspaceId": "b7ea02c9-0871-4858-a2a6-a190d7de977c",
                        }
                    ],
                },
                "environment": {"type": "PRODUCTION", "id": "ari:cloud:ecosystem::environment/x"},
                "module": {"type": "core:endpoint", "key": "remote-lifecycle"},
            },
            "aud": app_id,
            "iss": ISSUER,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": "d8a496253ec8c18a54631e4c82cbedd5d0ae8570",
        }
        token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "bench-1"})
        key = private.public_key()
        jwks.jwks_client.cache_clear()

        def ours() -> object:
            return verify_invocation(token, app_id=app_id, jwks_url=url)

        def bare() -> dict[str, Any]:
            return jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=app_id,
                issuer=ISSUER,
                options={"require": ["exp", "nbf", "iat", "jti"]},
            )

        ours()  # the one fetch: the JWKS is warm from here on
        if fetches != 1 or bare()["jti"] != claims["jti"]:
            raise RuntimeError("the JWKS was not fetched once, or the decodes disagree")
        verify, decode = best_of(ours, bare, number=300)
        made = fetches - 1
    finally:
        server.shutdown()
        server.server_close()
        jwks.jwks_client.cache_clear()
    return ForgeVerification(verify, decode, made)
