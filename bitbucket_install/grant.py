"""The JWT grant: an installation's Connect JWT swapped for an OAuth access token.

Pure protocol code: the form to send and the answer to read. The client signs the POST
like any other call (qsh ``POST&/site/oauth2/access_token&``: the form body never enters
the qsh) and caches the token. docs/client.rst describes what is known and what is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bitbucket_install.exceptions import RequestNotSent

GRANT_PATH = "/site/oauth2/access_token"
GRANT_TYPE = "urn:bitbucket:oauth2:jwt"
# Bitbucket's scopes read like "repository:write" or "pipeline:variable".
SCOPE_PATTERN = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
# A repository's UUID (with or without braces) or any other printable name of it.
REPOSITORY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
MAX_ANSWER_LENGTH = 64 * 1024
# An access token is a few hundred characters; anything longer is not one.
MAX_ACCESS_TOKEN_LENGTH = 8192


@dataclass(frozen=True)
class GrantRequest:
    """What to ask for: all the app's scopes (``scope`` None) or fewer, optionally
    limited to one repository."""

    scope: str | None = None
    repository: str | None = None

    @property
    def form(self) -> dict[str, str]:
        """The url-encoded form fields, in the order Atlassian's page lists them."""
        form = {"grant_type": GRANT_TYPE}
        if self.scope is not None:
            form["scope"] = self.scope
        if self.repository is not None:
            form["bitbucket_repository"] = self.repository
        return form


def grant_request(
    scopes: str | Iterable[str] | None = None, repository: str | None = None
) -> GrantRequest:
    """The grant for ``scopes`` (one string of space-separated scopes, or an iterable of
    them) and ``repository`` (passed as given); ``RequestNotSent`` if either is malformed.

    Scopes are sorted and deduplicated, so the same set is one request and one cached
    token, and joined with spaces as RFC 6749 writes them (Bitbucket's delimiter is not
    documented). An empty set is refused rather than read as "all scopes".
    """
    scope = None
    if scopes is not None:
        items = scopes.split() if isinstance(scopes, str) else list(scopes)
        if not items or not all(
            isinstance(item, str) and SCOPE_PATTERN.fullmatch(item) for item in items
        ):
            raise RequestNotSent(
                "scope_malformed",
                "scopes must be one or more Bitbucket scopes such as 'repository:write'.",
            )
        scope = " ".join(sorted(set(items)))
    if repository is not None and not (
        isinstance(repository, str) and REPOSITORY_PATTERN.fullmatch(repository)
    ):
        raise RequestNotSent(
            "repository_malformed",
            "repository must be a repository's UUID: printable ASCII without spaces.",
        )
    return GrantRequest(scope, repository)


@dataclass(frozen=True)
class GrantAnswer:
    access_token: str
    # Seconds the token lives, or None when the answer did not say (or said nonsense).
    expires_in: int | None


def read_grant_answer(body: bytes) -> GrantAnswer | None:
    """The token and its lifetime from a 200 answer; None if there is no usable token.

    Only ``access_token`` and ``expires_in`` are read. A ``refresh_token``, if any, is
    never kept: a new grant is one signed request away.
    """
    try:
        data = json.loads(body[:MAX_ANSWER_LENGTH])
    # RecursionError: JSON nested deeper than the interpreter's stack.
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    token = data.get("access_token")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_ACCESS_TOKEN_LENGTH:
        return None
    expires_in = data.get("expires_in")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    return GrantAnswer(token, expires_in)


def cache_lifetime(expires_in: int | None) -> int:
    """How many seconds a token of ``expires_in`` may be reused: until shortly before it
    expires (a tenth of its life, at most a minute), so none is sent as it runs out. 0:
    do not keep it."""
    if expires_in is None:
        return 0
    return expires_in - min(60, expires_in // 10 + 1)
