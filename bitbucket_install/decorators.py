"""``connect_jwt_required``: verify a Connect JWT on a project's own view (webhooks, iframes)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install.models import Installation
from bitbucket_install.tokens import TokenError, read_unverified
from bitbucket_install.verification import (
    missing_authorization_hint,
    printable,
    token_from_request,
    verify_request_token,
)

logger = logging.getLogger("bitbucket_install")
View = TypeVar("View", bound=Callable[..., HttpResponse])


def connect_jwt_required(view: View) -> View:
    """Let the request through only with a JWT of an installed installation over it.

    The token comes from ``Authorization: JWT ...`` or ``?jwt=``; it must be signed with
    the installation's stored secret and its qsh must match this request. The view finds
    the installation on ``request.bitbucket_installation`` and the claims on
    ``request.bitbucket_claims``. Anything else gets 401 and the reason goes to the log.
    The view is CSRF-exempt and needs no login (``LoginRequiredMiddleware`` lets it through):
    Bitbucket's calls carry neither a CSRF token nor a session, the JWT protects them, and a
    login redirect would put a ``?jwt=`` into the login URL.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            token = token_from_request(request)
            if token is None:
                raise TokenError("token_missing")
            issuer = read_unverified(token).issuer
            installation = Installation.objects.installed().filter(client_key=issuer).first()
            if installation is None or not installation.shared_secret:
                raise TokenError("unknown_installation")
            claims = verify_request_token(
                request, token, installation.shared_secret, issuer=issuer
            )
        except TokenError as error:
            logger.warning(
                "Connect JWT refused on %s: reason=%s%s",
                printable(request.path),
                error.reason,
                missing_authorization_hint(request) if error.reason == "token_missing" else "",
            )
            return HttpResponse(status=401)
        request.bitbucket_installation = installation  # type: ignore[attr-defined]
        request.bitbucket_claims = claims  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return login_not_required(csrf_exempt(wrapper))  # type: ignore[return-value]
