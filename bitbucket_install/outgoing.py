"""Connect JWTs on the app's own calls to Bitbucket: the claims, the qsh, the paths allowed.

Pure protocol code: no Django, no HTTP library. The client (``bitbucket_install.client``)
builds each request first and hands its method and request target (path and query as
they go on the wire) to ``OutgoingSigner.token``, so what is signed is exactly what is
sent. docs/client.rst describes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from bitbucket_install.exceptions import RequestNotSent
from bitbucket_install.tokens import query_string_hash, sign_claims

# atlassian-connect-express's default (jwt.validityInMinutes: 3). Bitbucket documents no
# maximum; a token that lives longer only gives a stolen one more time.
OUTGOING_TOKEN_LIFETIME = 180
# Control characters would be escaped on the wire (or split a request line); a backslash
# is a "/" to some servers; a raw "#" would cut the path short without anyone noticing.
MALFORMED_PATH = re.compile(r"[\x00-\x1f\x7f\\#]")


@dataclass(frozen=True)
class OutgoingSigner:
    """Who signs an installation's calls: the app (``iss``) for the clientKey (``sub``)."""

    app_key: str
    client_key: str
    shared_secret: str

    def claims(
        self,
        method: str,
        target: str,
        base_path: str = "",
        *,
        now: float,
        lifetime: int = OUTGOING_TOKEN_LIFETIME,
    ) -> dict[str, Any]:
        """The claims for ``method`` on ``target`` (``/path?query`` as sent), in the order
        atlassian-connect-express writes them; the qsh is relative to ``base_path``.

        Bitbucket's flavour: ``iss`` is the app key and ``sub`` the clientKey; no ``aud``
        (Jira and Confluence want that one instead of ``sub``).
        """
        path, _, query = target.partition("?")
        issued_at = int(now)
        return {
            "iss": self.app_key,
            "sub": self.client_key,
            "iat": issued_at,
            "exp": issued_at + lifetime,
            "qsh": query_string_hash(method, path, query, base_path),
        }

    def token(
        self,
        method: str,
        target: str,
        base_path: str = "",
        *,
        now: float,
        lifetime: int = OUTGOING_TOKEN_LIFETIME,
    ) -> str:
        claims = self.claims(method, target, base_path, now=now, lifetime=lifetime)
        return sign_claims(claims, self.shared_secret)


def check_api_path(path: object) -> str:
    """``path`` if it may follow the API base URL; ``RequestNotSent`` otherwise.

    It must start with one ``/`` (not a URL, not ``//host``), have no control character,
    backslash or ``#``, and no ``.`` or ``..`` segment, escaped or not: HTTP libraries and
    servers resolve those, so the request would reach another endpoint than the one
    written (or one outside the base URL's path).
    """
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise RequestNotSent(
            "path_not_relative",
            "The path must start with a single '/' and is relative to the installation's "
            "API base URL (no scheme, no host).",
        )
    if MALFORMED_PATH.search(path):
        raise RequestNotSent(
            "path_malformed",
            "The path has a control character, a backslash or a '#' (escape it as %23).",
        )
    segments = path.partition("?")[0].split("/")
    if any(unquote(segment) in {".", ".."} for segment in segments):
        raise RequestNotSent("path_dot_segment", "The path has a '.' or '..' segment.")
    return path
