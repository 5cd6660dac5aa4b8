"""The browser flow: what the ``start`` view stashes in the session for the return trip.

A flow is single-use and short-lived, and belongs to the session and user that started
it (trust rule 2). Protocol has no ``state`` parameter, so this is the app's own binding.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from bitbucket_install.conf import app_settings

SESSION_KEY = "bitbucket_install_flows"
CONFIRMED_SESSION_KEY = "bitbucket_install_confirmed"
MAX_FLOWS_PER_SESSION = 5


@dataclass(frozen=True)
class Flow:
    id: str
    user_id: str | None
    next: str
    started_at: float

    def belongs_to(self, request: HttpRequest) -> bool:
        return self.user_id == _user_id(request)


def _user_id(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


def safe_next(request: HttpRequest, candidate: str | None) -> str:
    """``candidate`` if it is a path on this site, else ``""``."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return ""
    if any(ord(char) < 32 or char == "\\" for char in candidate):
        return ""
    if not url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return ""
    return candidate


def _load(request: HttpRequest) -> list[Flow]:
    stored = request.session.get(SESSION_KEY)
    if not isinstance(stored, list):
        return []
    oldest_allowed = time.time() - app_settings.FLOW_MAX_AGE
    flows = []
    for item in stored:
        try:
            flow = Flow(**item)
        except TypeError:
            continue
        if _well_typed(flow) and flow.started_at >= oldest_allowed:
            flows.append(flow)
    return flows


def _well_typed(flow: Flow) -> bool:
    """Session data of another shape (garbage, an older version) is ignored, not trusted."""
    return (
        isinstance(flow.id, str)
        and isinstance(flow.next, str)
        and (flow.user_id is None or isinstance(flow.user_id, str))
        and isinstance(flow.started_at, (int, float))
        and not isinstance(flow.started_at, bool)
    )


def _save(request: HttpRequest, flows: list[Flow]) -> None:
    request.session[SESSION_KEY] = [asdict(flow) for flow in flows[-MAX_FLOWS_PER_SESSION:]]


def start(request: HttpRequest, next_url: str | None) -> Flow:
    flow = Flow(
        id=secrets.token_urlsafe(24),
        user_id=_user_id(request),
        next=safe_next(request, next_url),
        started_at=time.time(),
    )
    _save(request, [*_load(request), flow])
    return flow


def pending(request: HttpRequest) -> list[Flow]:
    """This browser's live flows of the current user, newest first."""
    return [flow for flow in reversed(_load(request)) if flow.belongs_to(request)]


def finish(request: HttpRequest, flow: Flow) -> None:
    """Use ``flow`` up: it never serves another return trip."""
    _save(request, [kept for kept in _load(request) if kept.id != flow.id])


def remember_confirmed(request: HttpRequest, client_key: str) -> None:
    """Note that this browser confirmed ``client_key``, so a repeated return is idempotent."""
    stored = request.session.get(CONFIRMED_SESSION_KEY)
    confirmed = [key for key in stored if key != client_key] if isinstance(stored, list) else []
    request.session[CONFIRMED_SESSION_KEY] = [*confirmed, client_key][-MAX_FLOWS_PER_SESSION:]


def has_confirmed(request: HttpRequest, client_key: str) -> bool:
    confirmed: Any = request.session.get(CONFIRMED_SESSION_KEY, [])
    return isinstance(confirmed, list) and client_key in confirmed
