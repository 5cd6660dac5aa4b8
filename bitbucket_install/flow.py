"""The browser flow: what the ``start`` view stashes in the session for the return trip.

A flow is single-use and short-lived, and belongs to the session and user that started
it (trust rule 2). The protocol has no ``state`` parameter, so the app carries the flow's
unguessable id in the ``redirect_uri`` itself, as its last path segment: Bitbucket sends
the browser back to exactly that URL, and only a return that names a live flow of this
browser can use that flow up or bind its user. The session keeps the flows; the database
keeps which flow confirmed which installation (``Installation.confirmed_flow``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from bitbucket_install.conf import app_settings

SESSION_KEY = "bitbucket_install_flows"
# The flows this browser used up (their hashes, and what they confirmed), so that reloading
# a finished return answers the same again (and only in this browser).
USED_SESSION_KEY = "bitbucket_install_used_flows"
MAX_FLOWS_PER_SESSION = 5
FLOW_ID_BYTES = 24
# What a flow id may look like in a URL; anything else is no flow of ours.
MAX_FLOW_ID_LENGTH = 64


@dataclass(frozen=True)
class Flow:
    id: str
    user_id: str | None
    next: str
    started_at: float

    @property
    def hash(self) -> str:
        return flow_hash(self.id)

    def belongs_to(self, request: HttpRequest) -> bool:
        return self.user_id == _user_id(request)

    def is_recent(self, window: int) -> bool:
        """Did this flow begin within the last ``window`` seconds?"""
        return time.time() - self.started_at <= window


def flow_hash(flow_id: str) -> str:
    """What the database keeps of a flow: never the id itself, which binds a user."""
    return hashlib.sha256(flow_id.encode()).hexdigest()


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
        and isinstance(flow.started_at, int | float)
        and not isinstance(flow.started_at, bool)
    )


def _save(request: HttpRequest, flows: list[Flow]) -> None:
    request.session[SESSION_KEY] = [asdict(flow) for flow in flows[-MAX_FLOWS_PER_SESSION:]]


def start(request: HttpRequest, next_url: str | None) -> Flow:
    flow = Flow(
        id=secrets.token_urlsafe(FLOW_ID_BYTES),
        user_id=_user_id(request),
        next=safe_next(request, next_url),
        started_at=time.time(),
    )
    _save(request, [*_load(request), flow])
    return flow


def live(request: HttpRequest, flow_id: str) -> Flow | None:
    """The live flow ``flow_id`` of this browser and its current user, or None."""
    if not 0 < len(flow_id) <= MAX_FLOW_ID_LENGTH:
        return None
    for flow in _load(request):
        if hmac.compare_digest(flow.id.encode(), flow_id.encode()):
            return flow if flow.belongs_to(request) else None
    return None


@dataclass(frozen=True)
class UsedFlow:
    """What this browser keeps of a flow it used up."""

    hash: str
    # The clientKey its return confirmed ("" when it failed or was refused).
    client_key: str
    next: str
    signed_in: bool


def _used(request: HttpRequest) -> list[UsedFlow]:
    stored = request.session.get(USED_SESSION_KEY)
    used = []
    for item in stored if isinstance(stored, list) else []:
        try:
            entry = UsedFlow(**item)
        except TypeError:
            continue
        if (
            isinstance(entry.hash, str)
            and isinstance(entry.client_key, str)
            and isinstance(entry.next, str)
            and isinstance(entry.signed_in, bool)
        ):
            used.append(entry)
    return used


def finish(request: HttpRequest, flow: Flow, confirmed: str = "") -> None:
    """Use ``flow`` up: it never serves another return trip. ``confirmed``: the clientKey
    its return confirmed, which a reload of that return may show again."""
    _save(request, [kept for kept in _load(request) if kept.id != flow.id])
    entry = UsedFlow(flow.hash, confirmed, flow.next, flow.user_id is not None)
    used = [asdict(item) for item in _used(request)]
    request.session[USED_SESSION_KEY] = [*used, asdict(entry)][-MAX_FLOWS_PER_SESSION:]


def used_here(request: HttpRequest, flow_id: str) -> UsedFlow | None:
    """What this browser kept of the flow ``flow_id`` it used up, if it did."""
    wanted = flow_hash(flow_id)
    return next((entry for entry in _used(request) if entry.hash == wanted), None)
