"""The development simulator: a stand-in for Bitbucket's authorize page.

It exists only when ``DEBUG`` is on *and* ``BITBUCKET_INSTALL_SIMULATOR`` is true
(``app_settings.SIMULATOR``); otherwise its URL answers 404 whatever the setting says
(trust rule 6). Point ``BITBUCKET_INSTALL_AUTHORIZE_URL`` at it, e.g.
``http://127.0.0.1:8000/bitbucket/simulator/authorize/``.

What it does, as Bitbucket does (protocol.md sections 1, 2 and 4):

- checks the install link (exactly one of ``addon_key`` / ``descriptor_uri``, an HTTPS
  descriptor, an absolute ``redirect_uri`` under the descriptor's ``baseUrl``), fetches
  the descriptor over HTTP (``descriptor_uri``, or for ``addon_key`` this site's own
  descriptor, whose key must be that key) and checks it;
- shows a consent page (app, scopes, workspace, Grant / Deny, and a way to send back
  each documented error code and an unknown one);
- on Grant, POSTs the ``installed`` lifecycle callback to the app over real HTTP: the
  first install of a workspace unsigned, a re-install signed with the secret of the
  preceding install, each with a fresh shared secret; then redirects (302) to the
  ``redirect_uri`` with ``clientKey`` and a ``jwt`` signed with the new secret.

Errors go back to the ``redirect_uri`` as ``error`` and ``error_description``. When there
is no usable ``redirect_uri`` (missing, malformed, or not under the ``baseUrl``) the
simulator shows the error on its own page, as Bitbucket does. Before a descriptor is
known, an error goes back only to a ``redirect_uri`` under this site's own
``BITBUCKET_INSTALL_BASE_URL``, so the simulator never redirects anywhere else.

The one deliberate deviation: ``descriptor_uri`` and ``baseUrl`` may use plain HTTP on a
loopback host (127.0.0.1, ::1, localhost), because Django's development server does not
speak HTTPS. Bitbucket refuses them (``invalid_request`` / ``invalid_descriptor``).

The simulator remembers each (app key, workspace) it installed -- the clientKey and the
current shared secret, which signs the next install's callback -- in Django's default
cache. LocMemCache (Django's default) is enough for ``runserver`` but forgets on restart;
a persistent cache (the example project uses the database cache) keeps re-installs signed
across restarts, in step with the app's own database.

The HTTP transport is the single function :func:`transport`, so tests can route it
through Django's test client instead of a socket.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from django.core.cache import cache
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect, ensure_csrf_cookie

from bitbucket_install.authorize import ADDON_KEY_PATTERN, _split, is_loopback, is_under
from bitbucket_install.conf import app_settings
from bitbucket_install.tokens import encode_token

KNOWN_ERRORS = ("access_denied", "invalid_descriptor", "invalid_request", "server_error")
UNKNOWN_ERROR = "simulated_unknown_error"
TRIGGERABLE_ERRORS = (*KNOWN_ERRORS, UNKNOWN_ERROR)
LINK_PARAMETERS = ("addon_key", "descriptor_uri", "redirect_uri")
DEFAULT_WORKSPACE = "Demo workspace"
MAX_WORKSPACE_NAME = 100
BITBUCKET_BASE_URL = "https://bitbucket.org"
BITBUCKET_API_URL = "https://api.bitbucket.org"
TIMEOUT_SECONDS = 10
MAX_RESPONSE_BYTES = 1024 * 1024
CACHE_PREFIX = "bitbucket_install_simulator:"
CONNECTION_COUNTER = CACHE_PREFIX + "connection"
WORKSPACE_NAMESPACE = uuid.UUID("6f1c8a3e-2b57-4d1e-9a0c-5b7e3d2f1a49")
SIMULATED_USER = {
    "uuid": "{" + str(uuid.uuid5(WORKSPACE_NAMESPACE, "user:simulated-user")) + "}",
    "type": "user",
    "display_name": "Simulated user",
    "nickname": "simulated-user",
}
SCOPE_DESCRIPTIONS = {
    "account": _("Read your account information"),
    "account:write": _("Change your account settings"),
    "email": _("Read your email addresses"),
    "issue": _("Read your repositories' issues"),
    "issue:write": _("Read and change your repositories' issues"),
    "pipeline": _("Read your pipelines"),
    "pipeline:write": _("Run your pipelines"),
    "pipeline:variable": _("Read and change your pipeline variables"),
    "project": _("Read your projects"),
    "project:admin": _("Administer your projects"),
    "pullrequest": _("Read your pull requests"),
    "pullrequest:write": _("Read and change your pull requests"),
    "repository": _("Read your repositories"),
    "repository:admin": _("Administer your repositories"),
    "repository:write": _("Read and change your repositories"),
    "snippet": _("Read your snippets"),
    "snippet:write": _("Read and change your snippets"),
    "webhook": _("Read and change your webhooks"),
    "wiki": _("Read and change your wikis"),
}
# Errors a transport can raise besides an HTTP status (refused, timed out, garbled).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


# --- the one HTTP client ---------------------------------------------------------------


def transport(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """Send one HTTP request; return its status and (capped) body. Raises a
    ``TRANSPORT_ERRORS`` error when no HTTP answer arrives."""
    if urlsplit(url).scheme not in {"http", "https"}:
        raise OSError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
        url, data=body, headers=dict(headers or {}), method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(MAX_RESPONSE_BYTES)


# --- pure helpers ------------------------------------------------------------------------


class SimulatedError(Exception):
    """An answer of Bitbucket's error kind: ``code`` and ``description`` go back to the app.

    ``redirect_to`` is the vetted ``redirect_uri`` to send them to (None: show them on the
    simulator's own page, with ``status``).
    """

    def __init__(
        self,
        code: str,
        description: str,
        *,
        redirect_to: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.description = description
        self.redirect_to = redirect_to
        self.status = status


@dataclass(frozen=True)
class InstallLink:
    """The install link's parameters, each checked as Bitbucket checks them."""

    addon_key: str | None
    descriptor_uri: str | None
    redirect_uri: str | None


@dataclass(frozen=True)
class Descriptor:
    """What the simulator needs of a valid descriptor."""

    key: str
    name: str
    description: str
    vendor_name: str
    base_url: str
    installed_path: str
    scopes: tuple[str, ...]

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    @property
    def installed_url(self) -> str:
        return self.base_url.rstrip("/") + self.installed_path


@dataclass(frozen=True)
class Workspace:
    name: str
    slug: str
    uuid: str

    @classmethod
    def named(cls, name: str) -> Workspace:
        """The workspace called ``name`` (blank: the default); its UUID depends on it only."""
        name = " ".join(name.split())[:MAX_WORKSPACE_NAME] or DEFAULT_WORKSPACE
        slug = "-".join(part for part in _ascii_words(name) if part) or "workspace"
        workspace_uuid = uuid.uuid5(WORKSPACE_NAMESPACE, "workspace:" + name.casefold())
        return cls(name=name, slug=slug, uuid="{" + str(workspace_uuid) + "}")

    @property
    def account(self) -> dict[str, Any]:
        """The workspace as a lifecycle payload's ``principal``."""
        return {
            "uuid": self.uuid,
            "type": "workspace",
            "display_name": self.name,
            "username": self.slug,
            "slug": self.slug,
        }


def _ascii_words(text: str) -> list[str]:
    cleaned = "".join(char if char.isascii() and char.isalnum() else " " for char in text)
    return cleaned.lower().split()


def _one_value(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name, [])
    if len(values) > 1:
        raise SimulatedError("invalid_request", f"The {name} parameter is repeated.")
    return values[0] if values and values[0] else None


def _is_plain_url(url: str) -> bool:
    return _split(url) is not None and "{" not in url and "}" not in url


def _secure_enough(url: str) -> bool:
    """HTTPS, or (the simulator's one deviation) plain HTTP on a loopback host."""
    parts = _split(url)
    return parts is not None and (parts.scheme == "https" or is_loopback(parts))


def parse_link(query: Mapping[str, Sequence[str]]) -> InstallLink:
    """The install link in ``query`` (name -> values), or ``SimulatedError``."""
    addon_key, descriptor_uri, redirect_uri = (_one_value(query, name) for name in LINK_PARAMETERS)
    if redirect_uri is not None and not _is_plain_url(redirect_uri):
        raise SimulatedError("invalid_request", "The redirect_uri must be an absolute URL.")
    if (addon_key is None) == (descriptor_uri is None):
        raise SimulatedError(
            "invalid_request", "The link must give exactly one of addon_key and descriptor_uri."
        )
    if addon_key is not None and not ADDON_KEY_PATTERN.fullmatch(addon_key):
        raise SimulatedError("invalid_request", "The addon_key is not a valid app key.")
    if descriptor_uri is not None:
        if not _is_plain_url(descriptor_uri):
            raise SimulatedError("invalid_request", "The descriptor_uri must be an absolute URL.")
        if not _secure_enough(descriptor_uri):
            raise SimulatedError("invalid_request", "The descriptor_uri must use HTTPS.")
    return InstallLink(addon_key, descriptor_uri, redirect_uri)


def _invalid_descriptor(description: str) -> SimulatedError:
    return SimulatedError("invalid_descriptor", description)


def check_descriptor(data: object, addon_key: str | None) -> Descriptor:
    """``data`` (parsed JSON) as a ``Descriptor``, or ``SimulatedError``.

    For an ``addon_key`` install the descriptor must be that registered app's.
    """
    if not isinstance(data, dict):
        raise _invalid_descriptor("The descriptor is not a JSON object.")
    key = data.get("key")
    if not isinstance(key, str) or not ADDON_KEY_PATTERN.fullmatch(key):
        raise _invalid_descriptor("The descriptor has no valid key.")
    if addon_key is not None and key != addon_key:
        raise SimulatedError("invalid_request", f"No app is registered with the key {addon_key}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid_descriptor("The descriptor has no name.")
    base_url = data.get("baseUrl")
    if not isinstance(base_url, str) or not _is_plain_url(base_url):
        raise _invalid_descriptor("The descriptor's baseUrl is not an absolute URL.")
    base = urlsplit(base_url)
    if base.query or base.fragment or not _secure_enough(base_url):
        raise _invalid_descriptor("The descriptor's baseUrl must be a plain HTTPS URL.")
    lifecycle = data.get("lifecycle")
    installed = lifecycle.get("installed") if isinstance(lifecycle, dict) else None
    if not isinstance(installed, str) or not installed.startswith("/") or "//" in installed:
        raise _invalid_descriptor("The descriptor has no lifecycle.installed path.")
    vendor = data.get("vendor")
    vendor_name = vendor.get("name") if isinstance(vendor, dict) else None
    description = data.get("description")
    scopes = data.get("scopes")
    return Descriptor(
        key=key,
        name=name,
        description=description if isinstance(description, str) else "",
        vendor_name=vendor_name if isinstance(vendor_name, str) else "",
        base_url=base_url,
        installed_path=installed,
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
    )


def check_redirect(link: InstallLink, descriptor: Descriptor) -> None:
    """The ``redirect_uri`` must lie under the descriptor's ``baseUrl``."""
    if link.redirect_uri is None:
        return
    redirect, base = _split(link.redirect_uri), _split(descriptor.base_url)
    if redirect is None or base is None or not is_under(redirect, base):
        raise SimulatedError(
            "invalid_request", "The redirect_uri is not under the descriptor's baseUrl."
        )


def error_target(query: Mapping[str, Sequence[str]], base_url: str | None) -> str | None:
    """The ``redirect_uri`` of ``query`` if an error may go back to it: one absolute URL
    under ``base_url``; else None (the error is shown on the simulator's page)."""
    values = query.get("redirect_uri", [])
    if len(values) != 1 or not _is_plain_url(values[0]) or base_url is None:
        return None
    redirect, base = _split(values[0]), _split(base_url)
    if redirect is None or base is None or not is_under(redirect, base):
        return None
    return values[0]


def add_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query, percent-encoded (space as %20)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params, quote_via=quote)) if q)
    return urlunsplit(parts._replace(query=query))


def client_key_for(link: InstallLink, descriptor: Descriptor, workspace: Workspace, n: int) -> str:
    """Bitbucket's clientKey shapes: ``ari:...`` for registered apps, ``connection:<n>``."""
    if link.addon_key is not None:
        return f"ari:cloud:bitbucket::app/{workspace.uuid}/{descriptor.key}"
    return f"connection:{n}"


def installed_payload(
    descriptor: Descriptor, client_key: str, shared_secret: str, workspace: Workspace
) -> dict[str, Any]:
    """The body of the ``installed`` lifecycle callback (protocol.md section 4)."""
    return {
        "key": descriptor.key,
        "clientKey": client_key,
        "publicKey": "simulated-public-key-" + secrets.token_hex(16),
        "sharedSecret": shared_secret,
        "baseUrl": BITBUCKET_BASE_URL,
        "baseApiUrl": BITBUCKET_API_URL,
        "productType": "bitbucket",
        "eventType": "installed",
        "principal": workspace.account,
        "user": dict(SIMULATED_USER),
    }


def lifecycle_token(descriptor: Descriptor, client_key: str, previous_secret: str) -> str:
    """``Authorization: JWT`` of a re-install: the previous secret over POST + the path."""
    url = urlsplit(descriptor.installed_url)
    return encode_token(
        {"iss": client_key},
        previous_secret,
        method="POST",
        path=url.path,
        query_string=url.query,
        base_path=descriptor.base_path,
    )


def success_url(
    redirect_uri: str, client_key: str, shared_secret: str, base_path: str, *, send_jwt: bool
) -> str:
    """``redirect_uri`` with ``clientKey`` and a ``jwt`` over exactly that GET request."""
    with_key = add_query(redirect_uri, [("clientKey", client_key)])
    if not send_jwt:
        return with_key
    parts = urlsplit(with_key)
    token = encode_token(
        {"iss": client_key},
        shared_secret,
        method="GET",
        path=parts.path,
        query_string=parts.query,
        base_path=base_path,
    )
    return add_query(with_key, [("jwt", token)])


def scope_list(scopes: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": scope, "description": SCOPE_DESCRIPTIONS.get(scope, "")} for scope in scopes]


# --- Django side: fetching, state, views -----------------------------------------------


def _descriptor_url(link: InstallLink) -> str:
    if link.descriptor_uri is not None:
        return link.descriptor_uri
    # A registered app: Bitbucket knows its descriptor; here it is this site's own.
    if app_settings.BASE_URL is None:
        raise SimulatedError(
            "invalid_request", f"No app is registered with the key {link.addon_key}."
        )
    return app_settings.absolute_url(reverse("bitbucket_install:descriptor"))


def fetch_descriptor(link: InstallLink) -> Descriptor:
    try:
        status, body = transport(
            "GET", _descriptor_url(link), headers={"Accept": "application/json"}
        )
    except TRANSPORT_ERRORS as error:
        raise _invalid_descriptor("The descriptor could not be fetched.") from error
    if status != 200:
        raise _invalid_descriptor(f"The descriptor URL answered HTTP {status}.")
    try:
        data = json.loads(body)
    except ValueError as error:
        raise _invalid_descriptor("The descriptor is not valid JSON.") from error
    return check_descriptor(data, link.addon_key)


def validate(query: Mapping[str, Sequence[str]]) -> tuple[InstallLink, Descriptor]:
    """Check the link and its descriptor as Bitbucket does; errors carry their target."""
    base_for_errors = app_settings.BASE_URL
    try:
        link = parse_link(query)
        descriptor = fetch_descriptor(link)
        base_for_errors = descriptor.base_url
        check_redirect(link, descriptor)
    except SimulatedError as error:
        error.redirect_to = error_target(query, base_for_errors)
        raise
    return link, descriptor


def _state_key(link: InstallLink, descriptor: Descriptor, workspace: Workspace) -> str:
    mode = "registered" if link.addon_key is not None else "descriptor"
    identity = f"{mode}\n{descriptor.key}\n{workspace.uuid}".encode()
    return CACHE_PREFIX + hashlib.sha256(identity).hexdigest()


def _previous_install(state_key: str) -> dict[str, str] | None:
    stored = cache.get(state_key)
    if (
        isinstance(stored, dict)
        and isinstance(stored.get("client_key"), str)
        and isinstance(stored.get("shared_secret"), str)
    ):
        return stored
    return None


def _next_connection_number() -> int:
    # A random start keeps numbers apart from installs a forgotten cache once made.
    cache.add(CONNECTION_COUNTER, secrets.randbelow(900_000) + 100_000, timeout=None)
    return int(cache.incr(CONNECTION_COUNTER))


def grant(
    request: HttpRequest,
    link: InstallLink,
    descriptor: Descriptor,
    workspace: Workspace,
    *,
    send_jwt: bool,
) -> HttpResponse:
    """Install: the ``installed`` callback over HTTP, then the browser back to the app."""
    state_key = _state_key(link, descriptor, workspace)
    previous = _previous_install(state_key)
    if previous is not None:
        client_key = previous["client_key"]
    else:
        client_key = client_key_for(link, descriptor, workspace, _next_connection_number())
    shared_secret = secrets.token_urlsafe(32)
    body = json.dumps(installed_payload(descriptor, client_key, shared_secret, workspace))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if previous is not None:
        token = lifecycle_token(descriptor, client_key, previous["shared_secret"])
        headers["Authorization"] = "JWT " + token
    try:
        status, _body = transport("POST", descriptor.installed_url, body.encode(), headers)
    except TRANSPORT_ERRORS as error:
        raise SimulatedError(
            "server_error",
            "The app's installed callback could not be reached.",
            redirect_to=link.redirect_uri,
            status=502,
        ) from error
    if status not in (200, 204):
        raise SimulatedError(
            "server_error",
            f"The app answered HTTP {status} to the installed callback.",
            redirect_to=link.redirect_uri,
            status=502,
        )
    cache.set(state_key, {"client_key": client_key, "shared_secret": shared_secret}, None)
    if link.redirect_uri is None:
        context = {"descriptor": descriptor, "workspace": workspace, "client_key": client_key}
        return render(request, "bitbucket_install/simulator/installed.html", context)
    target = success_url(
        link.redirect_uri, client_key, shared_secret, descriptor.base_path, send_jwt=send_jwt
    )
    return HttpResponseRedirect(target)


def answer_error(request: HttpRequest, error: SimulatedError) -> HttpResponse:
    if error.redirect_to is not None:
        params = [("error", error.code), ("error_description", error.description)]
        return HttpResponseRedirect(add_query(error.redirect_to, params))
    context = {"error": error}
    return render(request, "bitbucket_install/simulator/error.html", context, status=error.status)


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "no-store"
    # Not "no-referrer": under it browsers send "Origin: null" with the consent form's
    # POST, and Django's CSRF check refuses that. Nothing secret is in these pages' URLs.
    response["Referrer-Policy"] = "same-origin"
    return response


@method_decorator(csrf_exempt, name="dispatch")  # so a disabled simulator is a 404; see post
class SimulatorView(View):
    """Bitbucket's authorize page, simulated: GET checks the link and asks for consent,
    POST (CSRF-protected) grants, denies or sends back a chosen error."""

    http_method_names = ["get", "post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not app_settings.SIMULATOR:
            raise Http404("The Bitbucket simulator is off.")
        return _no_store(super().dispatch(request, *args, **kwargs))

    @method_decorator(ensure_csrf_cookie)
    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            link, descriptor = validate(dict(request.GET.lists()))
        except SimulatedError as error:
            return answer_error(request, error)
        context = {
            "link": link,
            "descriptor": descriptor,
            "scopes": scope_list(descriptor.scopes),
            "default_workspace": DEFAULT_WORKSPACE,
            "errors": TRIGGERABLE_ERRORS,
            "action": request.get_full_path(),
        }
        return render(request, "bitbucket_install/simulator/consent.html", context)

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> HttpResponse:
        action = request.POST.get("action")
        error_code = request.POST.get("error_code", "")
        if action not in {"grant", "deny", "error"} or (
            action == "error" and error_code not in TRIGGERABLE_ERRORS
        ):
            return HttpResponseBadRequest("Unknown action.")
        try:
            link, descriptor = validate(dict(request.GET.lists()))
            if action == "grant":
                workspace = Workspace.named(request.POST.get("workspace", ""))
                send_jwt = request.POST.get("send_jwt") == "on"
                return grant(request, link, descriptor, workspace, send_jwt=send_jwt)
            if action == "deny":
                code, description = "access_denied", "The user denied access to the app."
            else:
                code, description = error_code, f"Simulated {error_code} from the simulator."
            raise SimulatedError(code, description, redirect_to=link.redirect_uri, status=200)
        except SimulatedError as error:
            return answer_error(request, error)
