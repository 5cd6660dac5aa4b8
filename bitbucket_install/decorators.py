"""``connect_jwt_required``: verify a Connect JWT on a project's own view (webhooks, iframes).

docs/views.rst says what it covers and what it cannot (the replay window, the body).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install import replay
from bitbucket_install.exceptions import ReplayCacheUnavailable
from bitbucket_install.forge.decorators import (
    forge_invocation_required as forge_invocation_required,
)
from bitbucket_install.models import Installation
from bitbucket_install.tokens import TokenError, read_unverified
from bitbucket_install.verification import (
    missing_authorization_hint,
    printable,
    token_from_request,
    verify_request_token,
)

logger = logging.getLogger("bitbucket_install")
View = TypeVar("View", bound=Callable[..., Any])

# Seconds a client is asked to wait when the replay cache is down (503).
REPLAY_CACHE_RETRY_AFTER = 5


@dataclass(frozen=True)
class _Policy:
    single_use: bool
    confirmed: bool


@overload
def connect_jwt_required(view: View, /) -> View: ...


@overload
def connect_jwt_required(
    *, single_use: bool = False, confirmed: bool = False
) -> Callable[[View], View]: ...


def connect_jwt_required(
    view: View | None = None, /, *, single_use: bool = False, confirmed: bool = False
) -> View | Callable[[View], View]:
    """Let the request through only with a JWT of an installed installation over it.

    Bare (``@connect_jwt_required``) or called (``@connect_jwt_required(single_use=True)``);
    on function views, async views, and class-based views through ``method_decorator``.

    The token comes from ``Authorization: JWT ...`` or ``?jwt=``; it must be signed with
    the installation's stored secret and its qsh must match this request. The view finds
    the installation on ``request.bitbucket_installation`` and the claims on
    ``request.bitbucket_claims``. Anything else gets 401 and the reason goes to the log.

    ``single_use``: a token already accepted by a single-use view is refused for as long
    as it could verify (keyed by its ``jti``, else its hash, in the cache of
    ``BITBUCKET_INSTALL_REPLAY_CACHE``); if that cache fails, 503 and the view is not run.
    ``confirmed``: only an installation something vouched for (``Installation.is_confirmed``)
    gets through.

    Every answer says ``Vary: Authorization``; one to a request with ``?jwt=`` is also
    ``Cache-Control: no-store, private`` and ``Referrer-Policy: no-referrer`` (the URL holds
    a token); a single-use view's answers are at least ``private``.

    The view is CSRF-exempt and needs no login (``LoginRequiredMiddleware`` lets it through):
    Bitbucket's calls carry neither a CSRF token nor a session, the JWT protects them, and a
    login redirect would put a ``?jwt=`` into the login URL.
    """
    policy = _Policy(single_use=single_use, confirmed=confirmed)
    if view is None:

        def decorator(view: View) -> View:
            return _decorate(view, policy)

        return decorator
    if not callable(view):
        raise TypeError(
            "connect_jwt_required takes a view, or only keyword arguments: "
            "@connect_jwt_required(single_use=True)"
        )
    return _decorate(view, policy)


def _decorate(view: View, policy: _Policy) -> View:
    # asgiref's test, as Django's own decorators use: it also sees views marked with
    # markcoroutinefunction, which inspect's misses before Python 3.12.
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                token, issuer = _token_and_issuer(request)
                installation = (
                    await Installation.objects.installed().filter(client_key=issuer).afirst()
                )
                claims = _verified_claims(request, token, issuer, installation, policy)
                if policy.single_use:
                    await replay.afirst_use(token, claims)
            except TokenError as error:
                return _secured(request, _refused(request, error), policy)
            except ReplayCacheUnavailable as error:
                return _secured(request, _unavailable(request, error), policy)
            _attach(request, installation, claims)
            return _secured(request, await view(request, *args, **kwargs), policy)

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                token, issuer = _token_and_issuer(request)
                installation = Installation.objects.installed().filter(client_key=issuer).first()
                claims = _verified_claims(request, token, issuer, installation, policy)
                if policy.single_use:
                    replay.first_use(token, claims)
            except TokenError as error:
                return _secured(request, _refused(request, error), policy)
            except ReplayCacheUnavailable as error:
                return _secured(request, _unavailable(request, error), policy)
            _attach(request, installation, claims)
            return _secured(request, view(request, *args, **kwargs), policy)

        wrapper = sync_wrapper
    decorated = login_not_required(csrf_exempt(wrapper))
    if policy.single_use:
        setattr(decorated, replay.SINGLE_USE_ATTRIBUTE, True)
    return decorated  # type: ignore[return-value]


def _token_and_issuer(request: HttpRequest) -> tuple[str, str]:
    token = token_from_request(request)
    if token is None:
        raise TokenError("token_missing")
    return token, read_unverified(token).issuer


def _verified_claims(
    request: HttpRequest,
    token: str,
    issuer: str,
    installation: Installation | None,
    policy: _Policy,
) -> dict[str, Any]:
    """The claims of ``token`` once it verified for ``installation`` and the policy holds.

    Confirmation is asked only of a token that verified, so its refusal (logged as
    ``installation_unconfirmed``) is about a genuine token of that installation.
    """
    if installation is None or not installation.shared_secret:
        raise TokenError("unknown_installation")
    claims = verify_request_token(request, token, installation.shared_secret, issuer=issuer)
    if policy.confirmed and not installation.is_confirmed:
        raise TokenError("installation_unconfirmed")
    return claims


def _attach(
    request: HttpRequest, installation: Installation | None, claims: dict[str, Any]
) -> None:
    request.bitbucket_installation = installation  # type: ignore[attr-defined]
    request.bitbucket_claims = claims  # type: ignore[attr-defined]


def _refused(request: HttpRequest, error: TokenError) -> HttpResponse:
    logger.warning(
        "Connect JWT refused on %s: reason=%s%s",
        printable(request.path),
        error.reason,
        missing_authorization_hint(request) if error.reason == "token_missing" else "",
    )
    return HttpResponse(status=401)


def _unavailable(request: HttpRequest, error: ReplayCacheUnavailable) -> HttpResponse:
    cause = error.__cause__
    logger.error(
        "Connect JWT not accepted on %s: the replay cache %s is unavailable (%s: %s); "
        "answered 503",
        printable(request.path),
        printable(error.alias),
        type(cause).__name__,
        printable(cause),
    )
    response = HttpResponse(status=503)
    response["Retry-After"] = str(REPLAY_CACHE_RETRY_AFTER)
    return response


def _secured(request: HttpRequest, response: HttpResponseBase, policy: _Policy) -> Any:
    """``response`` with the headers its request calls for, whatever the view set.

    A token in the URL ends up wherever the page's URL goes: the browser's cache and
    history, and the ``Referer`` of what the page loads. A single-use answer must not be
    served again by a shared cache, which would replay it without asking the view.
    """
    patch_vary_headers(response, ("Authorization",))
    if "jwt" in request.GET:
        patch_cache_control(response, no_store=True, private=True)
        response["Referrer-Policy"] = "no-referrer"
    elif policy.single_use:
        patch_cache_control(response, private=True)
    return response
