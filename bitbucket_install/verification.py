"""Connect JWTs on Django requests: where the token is, and what request it must sign."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest
from django.utils.encoding import escape_uri_path

from bitbucket_install.conf import app_settings
from bitbucket_install.tokens import TokenError, query_string_hash, verify_token

logger = logging.getLogger("bitbucket_install")


def request_qsh(request: HttpRequest) -> str:
    """The qsh of this very request, relative to the base URL's path."""
    return query_string_hash(
        request.method or "GET",
        escape_uri_path(request.path),
        request.META.get("QUERY_STRING", ""),
        app_settings.BASE_PATH,
    )


MISSING_AUTHORIZATION_HINT = (
    " (no Authorization header reached the app: behind Apache mod_wsgi,"
    " set WSGIPassAuthorization On)"
)


def missing_authorization_hint(request: HttpRequest) -> str:
    """The end of a refusal's log line when the request came without any Authorization
    header: Apache's mod_wsgi drops that header unless told otherwise, so every signed
    server call would look unsigned. ``""`` when a header came, whatever it held."""
    return "" if "HTTP_AUTHORIZATION" in request.META else MISSING_AUTHORIZATION_HINT


def token_from_header(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme != "JWT" or not token.strip():
        return None
    return token.strip()


def token_from_request(request: HttpRequest) -> str | None:
    """The token of a server call (header) or a browser request (``?jwt=``)."""
    header_token = token_from_header(request)
    if header_token is not None:
        return header_token
    query_tokens = request.GET.getlist("jwt")
    if len(query_tokens) != 1:
        if query_tokens:
            raise TokenError("token_repeated")
        return None
    return query_tokens[0]


def verify_request_token(
    request: HttpRequest, token: str, secret: str, *, issuer: str, check_audience: bool = True
) -> dict[str, Any]:
    """Claims of ``token`` if it signs this request for ``issuer`` with ``secret``
    (``check_audience``: see ``tokens.verify_token``)."""
    return verify_token(
        token,
        secret,
        qsh=request_qsh(request),
        issuer=issuer,
        check_audience=check_audience,
        leeway=app_settings.JWT_LEEWAY,
        max_age=app_settings.JWT_MAX_AGE,
    )


def printable(value: object, limit: int = 120) -> str:
    """``value`` made safe for one log line: control characters escaped, length capped."""
    text = str(value)[:limit]
    return text.encode("unicode_escape").decode("ascii")
