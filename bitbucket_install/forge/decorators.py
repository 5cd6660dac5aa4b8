"""``forge_invocation_required``: verify a Forge Invocation Token on a project's own
remote endpoint (docs/forge.rst).

Importing this module needs nothing beyond the app's dependencies; decorating a view
imports ``bitbucket_install.forge.tokens``, which needs the ``forge`` extra, so a project
without it fails at startup with an ImportError naming the extra.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import InvocationRefused, JWKSUnavailable
from bitbucket_install.forge import system_tokens
from bitbucket_install.forge.invocation import Invocation
from bitbucket_install.models import ForgeInstallation
from bitbucket_install.verification import printable

logger = logging.getLogger("bitbucket_install")
View = TypeVar("View", bound=Callable[..., Any])

# Seconds Forge is asked to wait when its keys cannot be fetched (503).
JWKS_RETRY_AFTER = 5
SYSTEM_TOKEN_HEADER = "x-forge-oauth-system"  # noqa: S105  (a header name)
USER_TOKEN_HEADER = "x-forge-oauth-user"  # noqa: S105


@dataclass(frozen=True)
class ForgeRequest:
    """``request.forge``: the verified invocation and the OAuth tokens Forge sent with it
    (None when it sent none). The tokens are secrets: never in ``repr``, never logged."""

    invocation: Invocation
    system_token: str | None = field(default=None, repr=False)
    user_token: str | None = field(default=None, repr=False)

    @functools.cached_property
    def forge_installation(self) -> ForgeInstallation | None:
        """The ``ForgeInstallation`` of the token's installation, or None while none is
        recorded (its ``installed`` event not in yet). Read once, when first asked for."""
        found: ForgeInstallation | None = ForgeInstallation.objects.filter(
            installation_id=self.invocation.installation_id
        ).first()
        return found

    async def aforge_installation(self) -> ForgeInstallation | None:
        """``forge_installation`` for async views (the ORM's async query; not kept)."""
        found: ForgeInstallation | None = await ForgeInstallation.objects.filter(
            installation_id=self.invocation.installation_id
        ).afirst()
        return found


def forge_invocation_required(view: View, /) -> View:
    """Let the request through only with a Forge Invocation Token for this app.

    On function views, async views, and class-based views through ``method_decorator``.
    The token comes from ``Authorization: Bearer ...`` and must verify (RS256, a key of
    ``BITBUCKET_INSTALL_FORGE_JWKS_URL``, ``aud`` the app ARI
    ``BITBUCKET_INSTALL_FORGE_APP_ID``, ``iss``, times, ``jti``, Isolated Cloud labels of
    ``BITBUCKET_INSTALL_FORGE_IC_LABELS`` only), with Forge's ``x-b3-traceid`` and
    ``x-b3-spanid`` headers. The view finds ``request.forge`` (a ``ForgeRequest``); the
    system token is also kept for ``forge.system_tokens.system_token(installation_id)``.
    Anything else gets 401 without a body and the reason goes to the log; if the keys
    cannot be fetched, 503 and the view is not run.

    Every answer says ``Cache-Control: no-store, private`` and ``Vary: Authorization``.
    The view is CSRF-exempt and needs no login: Forge sends neither a CSRF token nor a
    session, the token protects the request.
    """
    if not callable(view):
        raise TypeError("forge_invocation_required takes a view: @forge_invocation_required")
    # Here, not at the top: without the forge extra, only projects that use the
    # decorator fail, when they decorate, with an ImportError naming the extra.
    from bitbucket_install.forge import tokens

    def accepted(request: HttpRequest) -> ForgeRequest:
        tokens.check_trace_headers(request.headers)
        invocation = tokens.verify_invocation(
            tokens.bearer_token(request.headers.get("Authorization")),
            app_id=app_settings.FORGE_APP_ID,
            jwks_url=app_settings.FORGE_JWKS_URL,
            ic_labels=app_settings.FORGE_IC_LABELS,
        )
        forge = ForgeRequest(
            invocation,
            system_token=request.headers.get(SYSTEM_TOKEN_HEADER) or None,
            user_token=request.headers.get(USER_TOKEN_HEADER) or None,
        )
        system_tokens.remember(invocation.installation_id, forge.system_token)
        return forge

    # asgiref's test, as Django's own decorators use (it sees markcoroutinefunction).
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                # In a thread: a cold JWKS is fetched with a blocking call.
                forge = await sync_to_async(accepted, thread_sensitive=False)(request)
            except InvocationRefused as error:
                return _secured(_refused(request, error))
            except JWKSUnavailable as error:
                return _secured(_unavailable(request, error))
            request.forge = forge  # type: ignore[attr-defined]
            return _secured(await view(request, *args, **kwargs))

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(view)
        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                forge = accepted(request)
            except InvocationRefused as error:
                return _secured(_refused(request, error))
            except JWKSUnavailable as error:
                return _secured(_unavailable(request, error))
            request.forge = forge  # type: ignore[attr-defined]
            return _secured(view(request, *args, **kwargs))

        wrapper = sync_wrapper
    return login_not_required(csrf_exempt(wrapper))  # type: ignore[return-value]


def _refused(request: HttpRequest, error: InvocationRefused) -> HttpResponse:
    logger.warning(
        "Forge invocation refused on %s: reason=%s", printable(request.path), error.reason
    )
    return HttpResponse(status=401)


def _unavailable(request: HttpRequest, error: JWKSUnavailable) -> HttpResponse:
    logger.error(
        "Forge invocation not verified on %s: the JWKS %s is unavailable (%s); answered 503",
        printable(request.path),
        printable(app_settings.FORGE_JWKS_URL),
        printable(error),
    )
    response = HttpResponse(status=503)
    response["Retry-After"] = str(JWKS_RETRY_AFTER)
    return response


def _secured(response: HttpResponseBase) -> HttpResponseBase:
    """An invocation's answer belongs to its token: no cache may keep or share it."""
    patch_vary_headers(response, ("Authorization",))
    patch_cache_control(response, no_store=True, private=True)
    return response
