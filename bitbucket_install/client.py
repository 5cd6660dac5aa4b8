"""Calling Bitbucket's REST API as an installation (the ``[client]`` extra, on httpx).

``BitbucketClient(installation)`` (``AsyncBitbucketClient`` in async code) sends requests
to the installation's API base URL, each signed with a Connect JWT over that very request:
the request is built first, then signed from its final URL (``outgoing``). Given a
``ForgeInstallation`` instead, it sends the app system token Forge last sent for it
(``forge.system_tokens``) as ``Authorization: Bearer`` to the Forge installation's API base
URL; only the authorization differs, the rest is the same code.
``access_token()`` swaps a Connect JWT for an OAuth access token (``grant``) and keeps it
in Django's cache. A 429 is retried within bounds (``ratelimit``); other errors raise
(``api_errors`` reads what Bitbucket said). Nothing is signed for an uninstalled
installation, and no token goes to an origin outside ``BITBUCKET_INSTALL_BITBUCKET_ORIGINS``.
docs/client.rst describes it all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

try:
    import httpx
except ImportError as error:
    raise ImportError(
        "bitbucket_install.client needs httpx, which the extra installs: "
        "pip install 'django-bitbucket-install[client]'"
    ) from error

from django.core.cache import cache
from django.utils.crypto import salted_hmac

from bitbucket_install import __version__
from bitbucket_install.api_errors import error_text
from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import (
    BitbucketAPIError,
    OriginNotAllowed,
    RateLimited,
    RequestNotSent,
    TokenRefused,
)
from bitbucket_install.forge.system_tokens import system_token
from bitbucket_install.grant import (
    GRANT_PATH,
    GrantRequest,
    cache_lifetime,
    grant_request,
    read_grant_answer,
)
from bitbucket_install.identifiers import origin
from bitbucket_install.models import ForgeInstallation, Installation
from bitbucket_install.outgoing import OutgoingSigner, check_api_path
from bitbucket_install.ratelimit import next_wait, retry_after
from bitbucket_install.verification import printable

__all__ = ["AsyncBitbucketClient", "BitbucketClient"]

logger = logging.getLogger("bitbucket_install")

# Where iat and exp, the wait a Retry-After date asks for, and the cached tokens' expiry
# read the time: one name, so that tests can move it.
clock: Callable[[], float] = time.time
USER_AGENT = f"django-bitbucket-install/{__version__}"
CACHE_KEY_SALT = "bitbucket_install.client.access_token"
CACHE_KEY_PREFIX = "bitbucket_install:access_token:"
_jitter = secrets.SystemRandom()


class _Authorizer(Protocol):
    def authorize(self, request: httpx.Request) -> None: ...


@dataclass(frozen=True)
class _ConnectJWT:
    """A Connect installation's authorization: a JWT over the very request."""

    signer: OutgoingSigner
    base_path: str

    def authorize(self, request: httpx.Request) -> None:
        # raw_path is the request target exactly as httpx writes it on the wire: the path
        # with its escapes (a "{uuid}" as %7B...%7D) and the query as encoded.
        target = request.url.raw_path.decode("ascii")
        token = self.signer.token(request.method, target, self.base_path, now=clock())
        request.headers["Authorization"] = f"JWT {token}"


@dataclass(frozen=True)
class _SystemToken:
    """A Forge installation's authorization: the app system token Forge sent."""

    token: str = field(repr=False)  # a credential: kept out of reprs, hence of tracebacks

    def authorize(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self.token}"


@dataclass(frozen=True)
class _Prepared:
    """A request built to its last byte, and what authorizes it (again before each retry)."""

    request: httpx.Request
    authorizer: _Authorizer

    def sign(self) -> None:
        self.authorizer.authorize(self.request)

    @property
    def described(self) -> str:
        """Method and path for messages and logs (never the query: it may hold data)."""
        return f"{self.request.method} {printable(self.request.url.path)}"


@dataclass(frozen=True)
class _GrantCall:
    signer: OutgoingSigner
    root: str
    base_path: str
    grant: GrantRequest
    cache_key: str


class _ClientCore:
    """What the sync and async clients share: everything but sending and sleeping."""

    def __init__(self, installation: Installation | ForgeInstallation) -> None:
        self.installation = installation

    def _connect(self) -> Installation:
        """The Connect installation, for what only Connect has (the JWT grant)."""
        installation = self.installation
        if isinstance(installation, ForgeInstallation):
            raise RequestNotSent(
                "forge_no_grant",
                "A Forge installation has no JWT grant: its calls carry the app system token "
                "Forge sent, and access_token() is for Connect installations only.",
            )
        return installation

    def _label(self) -> str:
        installation = self.installation
        if isinstance(installation, ForgeInstallation):
            return "installation_id=" + printable(installation.installation_id)
        return "client_key=" + printable(installation.client_key)

    def _system_token(self, installation: ForgeInstallation) -> _SystemToken:
        token = system_token(installation.installation_id)
        if token is None:
            raise RequestNotSent(
                "no_system_token",
                "No unexpired app system token is cached for the Forge installation "
                f"{printable(installation.installation_id)}: Forge sends one with each "
                "invocation (x-forge-oauth-system), and none has come yet or the last expired.",
            )
        return _SystemToken(token)

    def _signer(self) -> OutgoingSigner:
        installation = self._connect()
        if not installation.is_installed:
            raise RequestNotSent(
                "uninstalled", "The installation is uninstalled: nothing is signed for it."
            )
        if not installation.shared_secret:
            raise RequestNotSent("no_shared_secret", "The installation has no shared secret.")
        # The key Bitbucket installed (the lifecycle payload's), else the descriptor's.
        app_key = installation.addon_key or app_settings.DESCRIPTOR.get("key")
        if not isinstance(app_key, str) or not app_key:
            raise RequestNotSent(
                "no_app_key",
                "Neither the installation nor the settings name the app key (the tokens' "
                "iss): set BITBUCKET_INSTALL_ADDON_KEY or BITBUCKET_INSTALL_DESCRIPTOR['key'].",
            )
        return OutgoingSigner(app_key, installation.client_key, installation.shared_secret)

    def _root(self, url: str, what: str) -> tuple[str, str]:
        """``(root, base path)`` of one of the installation's stored URLs: its origin and
        path without the trailing "/" (query and fragment dropped), if the origin is one
        of ``BITBUCKET_ORIGINS``; ``OriginNotAllowed`` if not."""
        found = origin(url)
        if found is None or found not in app_settings.BITBUCKET_ORIGINS:
            logger.warning(
                "API client refused to send: the %s of %s is not on "
                "BITBUCKET_INSTALL_BITBUCKET_ORIGINS: %s",
                what,
                self._label(),
                printable(url),
            )
            raise OriginNotAllowed(
                f"The installation's {what} ({printable(url)}) is not on one of "
                "BITBUCKET_INSTALL_BITBUCKET_ORIGINS: no token is sent there."
            )
        base_path = urlsplit(url).path.rstrip("/")
        return found + base_path, base_path

    def _prepare(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        kwargs: dict[str, Any],
    ) -> _Prepared:
        installation = self.installation
        authorizer: _Authorizer
        if isinstance(installation, ForgeInstallation):
            authorizer = self._system_token(installation)
            check_api_path(path)
            root, _ = self._root(installation.api_base_url, "API base URL")
        else:
            signer = self._signer()
            check_api_path(path)
            root, base_path = self._root(installation.base_api_url, "API base URL")
            authorizer = _ConnectJWT(signer, base_path)
        return _Prepared(_build(http, method, root + path, kwargs), authorizer)

    def _grant_call(
        self, scopes: str | Iterable[str] | None, repository: str | None
    ) -> _GrantCall:
        signer = self._signer()
        grant = grant_request(scopes, repository)
        root, base_path = self._root(self._connect().base_url, "base URL")
        # Keyed with the project's SECRET_KEY over all that makes the token: another
        # installation, secret, Bitbucket or narrowing gets a token of its own, and the
        # key tells nobody reading the cache anything about the shared secret.
        material = json.dumps(
            [signer.client_key, signer.shared_secret, root, grant.scope, grant.repository]
        )
        key = (
            CACHE_KEY_PREFIX
            + salted_hmac(CACHE_KEY_SALT, material, algorithm="sha256").hexdigest()
        )
        return _GrantCall(signer, root, base_path, grant, key)

    @staticmethod
    def _grant_prepared(http: httpx.Client | httpx.AsyncClient, call: _GrantCall) -> _Prepared:
        request = http.build_request("POST", call.root + GRANT_PATH, data=call.grant.form)
        return _Prepared(request, _ConnectJWT(call.signer, call.base_path))

    @staticmethod
    def _token_from(prepared: _Prepared, response: httpx.Response) -> tuple[str, int]:
        """The access token of a grant's answer and how long to keep it (0: not at all)."""
        answer = read_grant_answer(response.content)
        if answer is None:
            raise BitbucketAPIError(
                response.status_code,
                "the JWT grant's answer has no access_token",
                request=prepared.described,
            )
        return answer.access_token, cache_lifetime(answer.expires_in)

    @staticmethod
    def _verdict(
        prepared: _Prepared, response: httpx.Response, attempt: int, waited: float
    ) -> float | None:
        """None: ``response`` is the answer. A number: a 429 to retry after that many
        seconds. Any other error status raises."""
        status = response.status_code
        logger.debug("Bitbucket API: %s answered %d", prepared.described, status)
        if status < 400:
            return None
        message, detail = error_text(response.content, response.reason_phrase)
        if status == 429:
            asked = retry_after(response.headers.get("Retry-After"), clock())
            wait = next_wait(
                attempt=attempt,
                retries=app_settings.API_RETRIES,
                waited=waited,
                max_wait=app_settings.API_MAX_RETRY_WAIT,
                asked=asked,
                fraction=_jitter.random(),
            )
            if wait is None:
                logger.warning(
                    "Bitbucket API rate limit: %s given up after %d attempt(s), %.1f s of "
                    "waiting (Retry-After: %s)",
                    prepared.described,
                    attempt + 1,
                    waited,
                    "none" if asked is None else f"{asked:.0f} s",
                )
                raise RateLimited(
                    status, message, detail, request=prepared.described, retry_after=asked
                )
            logger.info("Bitbucket API rate limit: %s retried in %.1f s", prepared.described, wait)
            return wait
        if status in (401, 403):
            raise TokenRefused(status, message, detail, request=prepared.described)
        raise BitbucketAPIError(status, message, detail, request=prepared.described)


def _build(
    http: httpx.Client | httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
) -> httpx.Request:
    kwargs = dict(kwargs)
    target = httpx.URL(url)
    params = kwargs.pop("params", None)
    if params is not None:
        # Merged into the path's own query, the same with every httpx (0.28 replaced it).
        target = target.copy_merge_params(params)
    if b"+" in target.query:
        # In a query httpx encoded, "+" is a space (a literal one is %2B). Sent as %20, the
        # query reads the same to a verifier that decodes it as a form or by RFC 3986.
        target = target.copy_with(query=target.query.replace(b"+", b"%20"))
    return http.build_request(method, target, **kwargs)


def _fresh(entry: object) -> str | None:
    """The cached token of ``entry`` if it has not reached its reuse limit."""
    if not isinstance(entry, dict):
        return None
    token, reuse_until = entry.get("access_token"), entry.get("reuse_until")
    if isinstance(token, str) and isinstance(reuse_until, int | float) and clock() < reuse_until:
        return token
    return None


def _entry(token: str, lifetime: int) -> dict[str, Any]:
    return {"access_token": token, "reuse_until": clock() + lifetime}


class BitbucketClient(_ClientCore):
    """Signed calls to Bitbucket's API as ``installation`` (a Connect ``Installation`` or a
    ``ForgeInstallation``), over one pooled httpx client.

    ``sleep`` waits out 429s (tests pass one that only records); ``transport`` is an
    httpx transport instead of the network (``httpx.MockTransport`` in a project's tests).
    Use it as a context manager, or ``close()`` it.
    """

    def __init__(
        self,
        installation: Installation | ForgeInstallation,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(installation)
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=app_settings.API_TIMEOUT,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> BitbucketClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method`` on ``path`` (``/2.0/...``, relative to the API base URL), signed;
        ``kwargs`` are those of ``httpx.Client.build_request``. Returns the response of a
        status below 400; raises ``TokenRefused``, ``RateLimited`` or ``BitbucketAPIError``
        for the others, ``RequestNotSent`` (nothing sent) when the client refuses."""
        return self._send(self._prepare(self._http, method.upper(), path, kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def access_token(
        self, scopes: str | Iterable[str] | None = None, repository: str | None = None
    ) -> str:
        """An OAuth access token for the installation, through the JWT grant; reused from
        Django's cache until shortly before it expires. ``scopes`` and ``repository``
        narrow it (each narrowing is its own token). Connect installations only: for a
        ``ForgeInstallation`` it raises ``RequestNotSent`` (``forge_no_grant``)."""
        call = self._grant_call(scopes, repository)
        cached = _fresh(cache.get(call.cache_key))
        if cached is not None:
            return cached
        prepared = self._grant_prepared(self._http, call)
        token, lifetime = self._token_from(prepared, self._send(prepared))
        if lifetime > 0:
            cache.set(call.cache_key, _entry(token, lifetime), timeout=lifetime)
        return token

    def _send(self, prepared: _Prepared) -> httpx.Response:
        attempt, waited = 0, 0.0
        while True:
            prepared.sign()  # fresh iat and exp for every attempt
            response = self._http.send(prepared.request)
            wait = self._verdict(prepared, response, attempt, waited)
            if wait is None:
                return response
            response.close()
            self._sleep(wait)
            attempt, waited = attempt + 1, waited + wait


class AsyncBitbucketClient(_ClientCore):
    """``BitbucketClient`` for async code, over ``httpx.AsyncClient``: the same methods,
    awaited. Use it as an async context manager, or ``await aclose()`` it."""

    def __init__(
        self,
        installation: Installation | ForgeInstallation,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(installation)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            timeout=app_settings.API_TIMEOUT,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncBitbucketClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """As ``BitbucketClient.request``."""
        return await self._send(self._prepare(self._http, method.upper(), path, kwargs))

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kwargs)

    async def access_token(
        self, scopes: str | Iterable[str] | None = None, repository: str | None = None
    ) -> str:
        """As ``BitbucketClient.access_token``."""
        call = self._grant_call(scopes, repository)
        cached = _fresh(await cache.aget(call.cache_key))
        if cached is not None:
            return cached
        prepared = self._grant_prepared(self._http, call)
        token, lifetime = self._token_from(prepared, await self._send(prepared))
        if lifetime > 0:
            await cache.aset(call.cache_key, _entry(token, lifetime), timeout=lifetime)
        return token

    async def _send(self, prepared: _Prepared) -> httpx.Response:
        attempt, waited = 0, 0.0
        while True:
            prepared.sign()
            response = await self._http.send(prepared.request)
            wait = self._verdict(prepared, response, attempt, waited)
            if wait is None:
                return response
            await response.aclose()
            await self._sleep(wait)
            attempt, waited = attempt + 1, waited + wait
