"""Helpers to drive the browser's return trip in tests.

A flow started with the button comes back to ``/bitbucket/callback/<flow id>/`` (the
``redirect_uri`` the start view sent to Bitbucket); a plain return to
``/bitbucket/callback/``.

- ``signed_query(client_key, secret, ..., path=...)``: the query string Bitbucket appends
  for a registered app, ``jwt`` signed over ``GET <path>`` and exactly that query.
- ``start_flow(client, next_url)``: POSTs the install button's form, as a browser does.
- ``flow_path(client)``: start a flow and give the path Bitbucket will send it back to.
- ``age_flows(client, seconds)`` / ``flow_ids(client)``: look at and move the flows of a
  test client's session.
- ``unregistered(settings)``: switch the app to an unregistered one (``descriptor_uri``).
- ``installed_via_lifecycle(client, ...)``: the ``installed`` callback, as Bitbucket sends
  it before redirecting the browser.
- ``assert_protected(response)``: the headers every answer of start, callback and result
  carries.
- ``used_flows(client)`` / ``used_flow_hashes(client)`` / ``used_entry(path, ...)``: what a
  browser keeps of the flows it used up, their hashes, the entry a flow leaves;
  ``flow_id_of(path)``: the id in a flow's return path.
- ``session_rows()`` / ``sets_session_cookie(response)``: whether a return made a session.
- ``app_log(caplog)`` / ``records_mentioning(caplog, text)``: the app's log lines, and every
  record (of any logger) that mentions ``text``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.http.response import HttpResponseBase
from django.test import Client
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install.models import Installation
from bitbucket_install.tokens import encode_token
from tests.lifecycle_helpers import lifecycle_body, post_lifecycle

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

CALLBACK_PATH = "/bitbucket/callback/"
START_PATH = "/bitbucket/install/"
RESULT_PATH = "/bitbucket/result/"
# BITBUCKET_INSTALL_SHARED_SECRET of tests/settings.py
APP_SECRET = "app-level-shared-secret-for-the-test-suite"
INSTALL_SECRET = "installation-shared-secret-42"
DESCRIPTOR_URI = "https://app.example.com/bitbucket/atlassian-connect.json"
KEY_A = "ari:cloud:bitbucket::app/{5a1b2c3d-aaaa-4e5f-8a9b-0c1d2e3f4a5b}/example-app"
KEY_B = "ari:cloud:bitbucket::app/{6b2c3d4e-bbbb-4f60-9bac-1d2e3f4a5b6c}/example-app"


def signed_query(
    client_key: str,
    secret: str,
    *,
    spelling: str = "clientKey",
    iss: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    signed_for: str | None = None,
    now: float | None = None,
    lifetime: int = 180,
    path: str = CALLBACK_PATH,
    base_path: str = "",
) -> str:
    """``<spelling>=<client_key>[&extra]&jwt=<token>`` with the token over that query.

    ``signed_for`` signs another query instead (a wrong qsh); ``iss`` defaults to the key;
    ``base_path`` is the base URL's path the qsh is relative to.
    """
    query = urlencode([(spelling, client_key), *extra])
    token = encode_token(
        {"iss": client_key if iss is None else iss},
        secret,
        method="GET",
        path=path,
        query_string=query if signed_for is None else signed_for,
        base_path=base_path,
        now=now,
        lifetime=lifetime,
    )
    return query + "&" + urlencode({"jwt": token})


def token_of(query: str) -> str:
    """The ``jwt`` value of a query built by ``signed_query``."""
    return query.rsplit("&jwt=", 1)[1]


def return_url(query: str, path: str = CALLBACK_PATH) -> str:
    return path + "?" + query


def start_flow(client: Client, next_url: str | None = None) -> HttpResponseBase:
    """Start an install flow in ``client``'s session, as the button's form does."""
    data = {} if next_url is None else {"next": next_url}
    response: HttpResponseBase = client.post(START_PATH, data)
    assert response.status_code == 303
    return response


def redirect_path(response: HttpResponseBase) -> str:
    """The path of the ``redirect_uri`` in the start view's redirect to Bitbucket."""
    [redirect_uri] = parse_qs(urlsplit(response["Location"]).query)["redirect_uri"]
    return urlsplit(redirect_uri).path


def flow_path(client: Client, next_url: str | None = None) -> str:
    """Start a flow in ``client``'s session; the path its return comes back to."""
    path = redirect_path(start_flow(client, next_url))
    assert path == CALLBACK_PATH + flow_ids(client)[-1] + "/"
    return path


def flow_return(
    client: Client, client_key: str, secret: str | None, path: str, **query: Any
) -> TestResponse:
    """GET the return of the flow at ``path``: signed with ``secret`` (None: unsigned)."""
    if secret is None:
        url = return_url(urlencode({"clientKey": client_key}), path)
    else:
        url = return_url(signed_query(client_key, secret, path=path, **query), path)
    response: TestResponse = client.get(url)
    return response


def _stored_flows(client: Client) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = client.session.get(flows.SESSION_KEY, [])
    return stored


def flow_ids(client: Client) -> list[str]:
    """Ids of the flows stored in ``client``'s session, oldest first."""
    return [str(item["id"]) for item in _stored_flows(client)]


def age_flows(client: Client, seconds: float) -> None:
    """Pretend every flow of ``client``'s session started ``seconds`` earlier."""
    session = client.session
    session[flows.SESSION_KEY] = [
        {**item, "started_at": item["started_at"] - seconds} for item in _stored_flows(client)
    ]
    session.save()


def unregistered(settings: Settings) -> None:
    """An unregistered app: install links use ``descriptor_uri``, returns carry no JWT."""
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = DESCRIPTOR_URI
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {
        "key": "example-app",
        "name": "Example app",
        "description": "An app used by the test suite.",
        "vendor": {"name": "Example Inc.", "url": "https://example.com"},
    }


def installed_via_lifecycle(
    client_key: str = KEY_A, secret: str = INSTALL_SECRET, **overrides: Any
) -> Installation:
    """The first (unsigned) ``installed`` callback for ``client_key``; returns the row."""
    body = lifecycle_body(client_key=client_key, shared_secret=secret, **overrides)
    response = post_lifecycle(Client(), "installed", body)
    assert response.status_code == 204
    installation: Installation = Installation.objects.get(client_key=client_key)
    return installation


def login(client: Client, username: str) -> User:
    """A new user of this site, logged in on ``client``."""
    user: User = User.objects.create_user(username, password="unused-password")
    client.force_login(user)
    return user


def assert_protected(response: HttpResponseBase, referrer_policy: str = "no-referrer") -> None:
    """Out of caches, Referer headers and other sites' frames."""
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == referrer_policy
    assert response["X-Frame-Options"] == "DENY"


def flow_id_of(path: str) -> str:
    """The flow id, last segment of a flow's return path ``.../callback/<flow id>/``."""
    assert path.startswith(CALLBACK_PATH)
    assert path.endswith("/")
    flow_id = path[len(CALLBACK_PATH) : -1]
    assert flow_id
    assert "/" not in flow_id
    return flow_id


def used_flows(client: Client) -> list[dict[str, Any]]:
    """What ``client``'s session keeps of the flows it used up, oldest first."""
    used: list[dict[str, Any]] = client.session.get(flows.USED_SESSION_KEY, [])
    return used


def used_flow_hashes(client: Client) -> list[str]:
    """The hashes of the flows ``client`` used up, oldest first."""
    return [str(entry["hash"]) for entry in used_flows(client)]


def used_entry(
    path: str, *, confirmed: str = "", next_url: str = "", signed_in: bool
) -> dict[str, Any]:
    """The used-flow entry the flow of ``path`` leaves: ``confirmed`` is the clientKey its
    return confirmed ("" if none), ``next_url`` the flow's next."""
    return asdict(
        flows.UsedFlow(flows.flow_hash(flow_id_of(path)), confirmed, next_url, signed_in)
    )


def session_rows() -> int:
    """How many sessions the database holds."""
    return int(Session.objects.count())


def sets_session_cookie(response: HttpResponseBase) -> bool:
    """Does ``response`` give the browser a session cookie (not just delete one)?"""
    cookie = response.cookies.get(settings.SESSION_COOKIE_NAME)
    return cookie is not None and cookie.value != ""


def app_log(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, message) of each line the app logged."""
    return [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "bitbucket_install"
    ]


def records_mentioning(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """Every log record, of any logger (``django.request`` too), whose message, arguments
    or exception mention ``text``."""
    found = []
    for record in caplog.records:
        rendered = " ".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.exc_info)]
        )
        if text in rendered:
            found.append(f"{record.name}: {record.getMessage()}")
    return found
