"""The simulator's Bitbucket API: the JWT grant and enough of ``/2.0`` to develop against.

The installations the simulator makes have their ``baseUrl`` at ``simulator/`` and their
``baseApiUrl`` at ``simulator/api`` on this site, so the app's client calls these views.
Every call is authenticated as Bitbucket does it: ``Authorization: JWT`` signed with the
shared secret the simulator gave the installation (``sub`` its clientKey, ``iss`` the app's
key, ``exp``, and a qsh over this very request relative to the API base URL; any ``aud``
ignored), or, except on ``/2.0/addon``, ``Authorization: Bearer`` with a token of the grant.
A Forge installation the simulator made calls with ``Authorization: Bearer`` and the app
system token its Forge page sent (RS256 with the simulator's Forge key, ``sub`` the
installation): on its own workspace's ``/2.0/workspaces/{w}`` and ``/2.0/repositories/{w}``,
and on ``/2.0/addon/{addon_key}/client-key``, which only a Forge caller may call.
A refusal is a 401 in Bitbucket's error shape (the grant's in OAuth's). Token checks are
``bitbucket_install.tokens``', the same code that verifies Bitbucket's tokens to the app.

The 429 switch (the console's) makes the next N authenticated API calls answer 429 as
Bitbucket does: ``text/plain``, no ``Retry-After``. The grant is not counted.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jwt
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.encoding import escape_uri_path
from django.views import View

from bitbucket_install.conf import app_settings
from bitbucket_install.grant import GRANT_PATH, GRANT_TYPE
from bitbucket_install.simulator import forge, state
from bitbucket_install.simulator.base import (
    RATE_LIMIT_MESSAGE,
    SIMULATED_USER,
    PropertyAddress,
    Workspace,
    addon_update_scopes,
    api_error,
    grant_scopes,
    is_simulated_user,
    is_subject,
    page_of,
    property_address,
)
from bitbucket_install.tokens import (
    TokenError,
    query_string_hash,
    read_unverified,
    verify_token,
)
from bitbucket_install.verification import printable

logger = logging.getLogger("bitbucket_install")

# Bitbucket documents neither: the leeway is the app's own default, and the longest
# lifetime generous (clients sign for 3 to 30 minutes), since Bitbucket states no maximum.
TOKEN_LEEWAY = 30
TOKEN_MAX_AGE = 60 * 60
# "The Token Expires in an Hour" (api.md: reports disagree between one and two hours).
ACCESS_TOKEN_LIFETIME = 60 * 60
MAX_PROPERTY_BYTES = 32 * 1024


class Refused(Exception):
    """An API answer other than success: ``status`` and Bitbucket's error message."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def simulator_base_path() -> str:
    """The path of the simulated ``baseUrl`` (the grant's qsh is relative to it)."""
    return reverse("bitbucket_install:simulator_grant").removesuffix(GRANT_PATH)


def api_base_path() -> str:
    """The path of the simulated ``baseApiUrl`` (API qsh are relative to it)."""
    return reverse("bitbucket_install:simulator_api").rstrip("/")


def this_request_qsh(request: HttpRequest, base_path: str, query: str | None = None) -> str:
    """The qsh of this very request (as it came on the wire) relative to ``base_path``."""
    return query_string_hash(
        request.method or "GET",
        escape_uri_path(request.path),
        request.META.get("QUERY_STRING", "") if query is None else query,
        base_path,
    )


def verified_installation(token: str, qsh: str) -> state.SimulatedInstallation:
    """The installation whose secret signs ``token`` for the request of ``qsh``, with
    ``sub`` its clientKey and ``iss`` its app's key; ``TokenError`` otherwise."""
    subject = read_unverified(token).claims.get("sub")
    if not is_subject(subject):
        raise TokenError("token_subject")
    installation = state.installation(str(subject))
    if installation is None or installation.deleted:
        raise TokenError("unknown_installation")
    verify_token(
        token,
        installation.shared_secret,
        qsh=qsh,
        issuer=installation.app_key,
        check_audience=False,
        leeway=TOKEN_LEEWAY,
        max_age=TOKEN_MAX_AGE,
    )
    return installation


def _credentials(request: HttpRequest) -> tuple[str, str]:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return scheme, credential.strip()


@dataclass(frozen=True)
class Caller:
    """Who makes an API call: an installation, by its JWT or by an access token (which may
    be limited to one repository: ``repository``)."""

    installation: state.SimulatedInstallation
    repository: str | None = None

    @property
    def workspace(self) -> Workspace:
        return Workspace.named(self.installation.workspace)


@dataclass(frozen=True)
class ForgeCaller:
    """A Forge installation the simulator made, by an app system token its Forge page sent:
    it sees its workspace's repositories (an app token is not narrowed to one)."""

    installation_id: str
    workspace_name: str
    repository: None = None

    @property
    def workspace(self) -> Workspace:
        return Workspace.named(self.workspace_name)


def forge_caller(token: str) -> ForgeCaller | None:
    """The Forge installation whose system token ``token`` is; None if it is none."""
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except (jwt.InvalidTokenError, ValueError, RecursionError):
        return None
    # Looked up before the key is touched: a grant's token never makes the simulator mint
    # one, and only an installation the Forge page made has a token signed by it.
    found = next((item for item in forge.installations() if item.get("id") == subject), None)
    if found is None:
        return None
    try:
        jwt.decode(
            token,
            forge.signing_key().public_key(),
            algorithms=["RS256"],
            options={"require": ["exp", "sub"]},
            leeway=TOKEN_LEEWAY,
        )
    except jwt.InvalidTokenError as error:
        logger.warning("simulated API refused a Forge system token: %s", type(error).__name__)
        return None
    return ForgeCaller(found["id"], found.get("workspace", ""))


def authenticated(request: HttpRequest, *, jwt_only: bool) -> Caller | ForgeCaller:
    """The caller of this API request, or ``Refused(401)``."""
    scheme, credential = _credentials(request)
    if scheme == "JWT" and credential:
        try:
            qsh = this_request_qsh(request, api_base_path())
            return Caller(verified_installation(credential, qsh))
        except TokenError as error:
            logger.warning("simulated API refused a JWT: reason=%s", error.reason)
            raise Refused(401, "Unauthorized", f"The JWT was refused ({error.reason}).") from error
    if scheme == "Bearer" and credential and not jwt_only:
        forge_installation = forge_caller(credential)
        if forge_installation is not None:
            return forge_installation
        holder = state.access_token(credential)
        found = state.installation(holder[0]) if holder is not None else None
        if holder is None or found is None or found.deleted:
            raise Refused(401, "Unauthorized", "The access token is unknown or expired.")
        return Caller(found, repository=holder[1])
    if jwt_only:
        raise Refused(401, "Unauthorized", "This endpoint only supports JWT authentication.")
    raise Refused(401, "Unauthorized", "Send Authorization: JWT or Bearer.")


# --- the endpoints -------------------------------------------------------------------------

Handler = Callable[[HttpRequest, Caller, dict[str, str]], HttpResponse]
ForgeHandler = Callable[[HttpRequest, ForgeCaller, dict[str, str]], HttpResponse]


def _json(data: object, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False)


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


def _workspace_of(caller: Caller | ForgeCaller, name: str) -> Workspace:
    workspace = caller.workspace
    if not workspace.is_named(name):
        raise Refused(404, f"No workspace with identifier '{printable(name, 100)}'.")
    return workspace


def _visible_repositories(
    caller: Caller | ForgeCaller, workspace: Workspace
) -> list[dict[str, Any]]:
    """The workspace's repositories this caller may see: all, or the one its token names."""
    repositories = workspace.repositories()
    if caller.repository is None:
        return repositories
    wanted = caller.repository.strip("{}").lower()
    return [repo for repo in repositories if repo["uuid"].strip("{}") == wanted]


def _repository_of(caller: Caller, workspace: Workspace, name: str) -> dict[str, Any]:
    repository = workspace.repository(name)
    if repository is None or repository not in _visible_repositories(caller, workspace):
        raise Refused(404, "Repository not found")
    return repository


def get_user(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    return _json(dict(SIMULATED_USER))


def get_workspaces(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    return _json(page_of([caller.workspace.api]))


def get_workspace(
    request: HttpRequest, caller: Caller | ForgeCaller, params: dict[str, str]
) -> HttpResponse:
    return _json(_workspace_of(caller, params["workspace"]).api)


def get_repositories(
    request: HttpRequest, caller: Caller | ForgeCaller, params: dict[str, str]
) -> HttpResponse:
    workspace = _workspace_of(caller, params["workspace"])
    return _json(page_of(_visible_repositories(caller, workspace)))


def get_repository(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    workspace = _workspace_of(caller, params["workspace"])
    return _json(_repository_of(caller, workspace, params["repo"]))


def get_linkers(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    return _json(page_of([]))


def get_client_key(
    request: HttpRequest, caller: ForgeCaller, params: dict[str, str]
) -> HttpResponse:
    """The clientKey of the Connect installation of ``addon_key`` on the Forge caller's
    workspace. Bitbucket documents no body: the simulator answers ``{"clientKey": ...}``."""
    addon_key = params["addon_key"]
    workspace = caller.workspace
    for installation in state.installations():
        if (
            installation.app_key == addon_key
            and Workspace.named(installation.workspace).uuid == workspace.uuid
            and not installation.deleted
        ):
            return _json({"clientKey": installation.client_key})
    raise Refused(
        404, f"The Connect addon '{printable(addon_key, 100)}' is not installed on this workspace."
    )


def put_addon(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    """Update the installation's descriptor: its scopes may not grow, nor shrink to none.
    Counted per installation; one made to refuse it (``state.refuse_addon_update``)
    answers its status."""
    client_key = caller.installation.client_key
    state.count_addon_update(client_key)
    refusal = state.addon_update_refusal(client_key)
    if refusal is not None:
        raise Refused(refusal, state.ADDON_UPDATE_REFUSALS[refusal])
    try:
        body = json.loads(request.body or b"{}")
        scopes = addon_update_scopes(body, caller.installation.scopes)
    except (ValueError, RecursionError) as error:
        raise Refused(400, str(error) if isinstance(error, ValueError) else "Bad body.") from error
    if scopes is not None:
        state.save_installation(replace(caller.installation, scopes=scopes))
    return _no_content()


def delete_addon(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    """Delete the installation: its tokens are refused from now on. No ``uninstalled``
    callback is sent (whether Bitbucket sends one is not known)."""
    state.save_installation(replace(caller.installation, deleted=True))
    return _no_content()


def _property_key(caller: Caller, address: PropertyAddress) -> tuple[str, ...]:
    """The stored identity of the property at ``address``, once its target is checked:
    the app's own properties only, on a target of the caller's workspace (or user)."""
    if address.app_key != caller.installation.app_key:
        raise Refused(403, "An app may only use its own application properties.")
    if address.kind == "user":
        if not is_simulated_user(str(address.target)):
            raise Refused(404, "User not found")
        target = SIMULATED_USER["uuid"]
    else:
        workspace = _workspace_of(caller, str(address.workspace))
        repository = _repository_of(caller, workspace, str(address.repository))
        target = repository["uuid"] + "/" + (address.target or "").lower()
    return (address.app_key, address.kind, target, address.name)


def on_property(request: HttpRequest, caller: Caller, params: dict[str, str]) -> HttpResponse:
    """GET, PUT or DELETE an application property (a JSON object)."""
    address = property_address(params["path"])
    if address is None:
        raise Refused(404, "Resource not found")
    key = _property_key(caller, address)
    if request.method == "GET":
        value = state.property_value(key)
        if value is None:
            raise Refused(404, "Property not found")
        return _json(value)
    if request.method == "PUT":
        if len(request.body) > MAX_PROPERTY_BYTES:
            raise Refused(400, "The property is too large.")
        try:
            value = json.loads(request.body)
        except (ValueError, RecursionError) as error:
            raise Refused(400, "The property must be a JSON object.") from error
        if not isinstance(value, dict):
            raise Refused(400, "The property must be a JSON object.")
        state.set_property(key, value)
        return _no_content()
    if not state.delete_property(key):
        raise Refused(404, "Property not found")
    return _no_content()


@dataclass(frozen=True)
class Route:
    """An endpoint: ``handler`` answers Connect callers, ``forge_handler`` Forge ones (None:
    that kind of caller gets a 401)."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler | None
    # /2.0/addon "only supports JWT authentication".
    jwt_only: bool = False
    forge_handler: ForgeHandler | None = None

    def bound(
        self, request: HttpRequest, caller: Caller | ForgeCaller, params: dict[str, str]
    ) -> Callable[[], HttpResponse]:
        """The answer of this route to ``caller``, to call; ``Refused(401)`` for a caller of
        a kind it does not serve."""
        if isinstance(caller, ForgeCaller):
            if self.forge_handler is None:
                raise Refused(
                    401, "Unauthorized", "A Forge app system token is not accepted here."
                )
            return functools.partial(self.forge_handler, request, caller, params)
        if self.handler is None:
            raise Refused(
                401,
                "Unauthorized",
                "This endpoint is for a Forge app only (asApp): send its system token.",
            )
        return functools.partial(self.handler, request, caller, params)


_NAME = "[^/]+"
ROUTES = (
    Route(frozenset({"GET"}), re.compile("/2.0/user"), get_user),
    Route(frozenset({"GET"}), re.compile("/2.0/workspaces"), get_workspaces),
    Route(
        frozenset({"GET"}),
        re.compile(f"/2.0/workspaces/(?P<workspace>{_NAME})"),
        get_workspace,
        forge_handler=get_workspace,
    ),
    Route(
        frozenset({"GET"}),
        re.compile(f"/2.0/repositories/(?P<workspace>{_NAME})"),
        get_repositories,
        forge_handler=get_repositories,
    ),
    Route(
        frozenset({"GET"}),
        re.compile(f"/2.0/repositories/(?P<workspace>{_NAME})/(?P<repo>{_NAME})"),
        get_repository,
    ),
    Route(frozenset({"PUT"}), re.compile("/2.0/addon"), put_addon, jwt_only=True),
    Route(frozenset({"DELETE"}), re.compile("/2.0/addon"), delete_addon, jwt_only=True),
    Route(frozenset({"GET"}), re.compile("/2.0/addon/linkers"), get_linkers, jwt_only=True),
    Route(
        frozenset({"GET"}),
        re.compile(f"/2.0/addon/(?P<addon_key>{_NAME})/client-key"),
        None,
        forge_handler=get_client_key,
    ),
    Route(
        frozenset({"GET", "PUT", "DELETE"}),
        re.compile("(?P<path>/2.0/(?:repositories|users)/.+/properties/.+)"),
        on_property,
    ),
)


def route_of(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """``(route, its parameters, whether the path exists for another method)``."""
    other_method = False
    # Bitbucket's paths read the same with a trailing "/" (as the qsh does).
    path = path.rstrip("/") or "/"
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        if method in route.methods:
            return route, match.groupdict(), False
        other_method = True
    return None, {}, other_method


def error_response(refused: Refused) -> JsonResponse:
    return _json(api_error(refused.message, refused.detail), status=refused.status)


def rate_limited() -> HttpResponse:
    return HttpResponse(RATE_LIMIT_MESSAGE, status=429, content_type="text/plain")


class SimulatedAPIView(View):
    """``/2.0/...`` under the simulated ``baseApiUrl``: authenticate, count the 429 switch
    down, then answer. ``bitbucket_install.urls`` routes here only while the simulator is
    on (no CSRF: the token protects it, as on Bitbucket)."""

    def dispatch(
        self, request: HttpRequest, *args: Any, api_path: str = "", **kwargs: Any
    ) -> HttpResponseBase:
        if not app_settings.SIMULATOR:
            raise Http404("The Bitbucket simulator is off.")
        method = request.method or "GET"
        route, params, other_method = route_of(method, "/" + api_path)
        response: HttpResponse
        try:
            caller = authenticated(request, jwt_only=route is not None and route.jwt_only)
            answer = None if route is None else route.bound(request, caller, params)
            if state.take_rate_limited():
                response = rate_limited()
            elif answer is None:
                raise Refused(405 if other_method else 404, "Resource not found")
            else:
                response = answer()
        except Refused as refused:
            response = error_response(refused)
        response["Cache-Control"] = "no-store"
        return response


def oauth_error(status: int, error: str, description: str) -> JsonResponse:
    """The JWT grant's error shape (OAuth's)."""
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    response["Cache-Control"] = "no-store"
    return response


class SimulatedGrantView(View):
    """``POST {baseUrl}/site/oauth2/access_token``: a Connect JWT (qsh over this POST,
    the form body left out, relative to the simulated ``baseUrl``) swapped for an access
    token, narrowed by ``scope`` and ``bitbucket_repository`` if given."""

    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not app_settings.SIMULATOR:
            raise Http404("The Bitbucket simulator is off.")
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: HttpRequest) -> HttpResponse:
        scheme, token = _credentials(request)
        if scheme != "JWT" or not token:
            return oauth_error(
                401, "invalid_client", "Send the Connect JWT as Authorization: JWT."
            )
        base_path = simulator_base_path()
        try:
            installation = verified_installation(token, this_request_qsh(request, base_path))
        except TokenError as error:
            self.log_refusal(request, token, base_path, error)
            return oauth_error(401, "invalid_grant", f"The JWT was refused ({error.reason}).")
        grant_type = request.POST.get("grant_type")
        if grant_type != GRANT_TYPE:
            shown = printable(grant_type, 80)
            return oauth_error(400, "invalid_grant", f"Unsupported grant type: {shown}")
        scopes = grant_scopes(request.POST.get("scope"), installation.scopes)
        if scopes is None:
            return oauth_error(400, "invalid_scope", "The app does not have all those scopes.")
        repository = request.POST.get("bitbucket_repository") or None
        if repository is not None:
            found = Workspace.named(installation.workspace).repository(repository)
            if found is None:
                return oauth_error(400, "invalid_request", "No such repository in the workspace.")
            repository = found["uuid"]
        access_token = state.issue_access_token(
            installation.client_key, scopes, repository, ACCESS_TOKEN_LIFETIME
        )
        response = JsonResponse(
            {
                "access_token": access_token,
                "scopes": " ".join(scopes),
                "expires_in": ACCESS_TOKEN_LIFETIME,
                "token_type": "bearer",
                "state": "jwt",
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def log_refusal(request: HttpRequest, token: str, base_path: str, error: TokenError) -> None:
        """Log why; say so when the qsh is the variant some clients send, with the form
        body folded into the query (Bitbucket's own documents sign no body)."""
        folded = False
        if error.reason == "token_qsh":
            body = request.body.decode("utf-8", "replace")
            try:
                verified_installation(token, this_request_qsh(request, base_path, body))
                folded = True
            except TokenError:
                pass
        logger.warning(
            "simulated JWT grant refused: reason=%s%s",
            error.reason,
            " (the qsh covers the form body: sign POST&/site/oauth2/access_token& only)"
            if folded
            else "",
        )


simulated_api_view = SimulatedAPIView.as_view()
simulated_grant_view = SimulatedGrantView.as_view()
