"""The simulator's page (the package docstring says what it does and what it refuses).

GET shows the consent page of this site's own app, built from its settings without any
HTTP; for another descriptor, on a loopback host, it shows a page that asks before fetching
it. POST (CSRF-protected) fetches the descriptor and checks it, then shows the consent page
(``check``), installs (``grant``), or sends back a refusal (``deny``) or a chosen error
(``error``). Only a POST connects anywhere, so no other web page can make the simulator
connect to this machine.
"""

from __future__ import annotations

import abc
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.urls import get_script_prefix, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie

from bitbucket_install.conf import app_settings
from bitbucket_install.descriptor import build_descriptor
from bitbucket_install.grant import GRANT_PATH
from bitbucket_install.simulator import state, transport
from bitbucket_install.simulator.base import (
    DEFAULT_WORKSPACE,
    TRIGGERABLE_ERRORS,
    Descriptor,
    LinkParameters,
    SimulatedError,
    Workspace,
    add_query,
    check_descriptor,
    check_redirect,
    client_key_for,
    error_target,
    installed_payload,
    is_loopback_url,
    lifecycle_token,
    parse_link,
    post_install_url,
    success_url,
)
from bitbucket_install.simulator.transport import TRANSPORT_ERRORS
from bitbucket_install.templating import render

ACTIONS = ("check", "grant", "deny", "error")
INSTALLED_ANSWERS = (200, 204)
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
Query = Mapping[str, Sequence[str]]


def scope_list(scopes: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": scope, "description": SCOPE_DESCRIPTIONS.get(scope, "")} for scope in scopes]


@contextmanager
def errors_aimed(query: Query, base_url: str | None) -> Iterator[None]:
    """Send a ``SimulatedError`` raised inside back to the link's ``redirect_uri`` if it is
    under ``base_url`` (this site's before the descriptor is known, then its baseUrl)."""
    try:
        yield
    except SimulatedError as error:
        error.redirect_to = error_target(query, base_url)
        raise


# --- which descriptor, and reading it ------------------------------------------------------


def is_own_app(link: LinkParameters) -> bool:
    """Does the link name this site's own app, whose descriptor its settings describe?"""
    return link.addon_key is not None or link.descriptor_uri == app_settings.DESCRIPTOR_URI


def descriptor_url(link: LinkParameters) -> str:
    """Where the simulator may fetch the link's descriptor: this site's configured one, or
    one on a loopback host; anything else is refused before any connection."""
    if link.addon_key is not None:
        # A registered app: Bitbucket knows its descriptor; the simulator knows this site's.
        if app_settings.BASE_URL is None:
            raise SimulatedError(
                "invalid_request", f"No app is registered with the key {link.addon_key}."
            )
        return app_settings.absolute_url(reverse("bitbucket_install:descriptor"))
    url = str(link.descriptor_uri)
    if url == app_settings.DESCRIPTOR_URI or is_loopback_url(url):
        return url
    raise SimulatedError(
        "invalid_request",
        "The simulator fetches only this site's configured descriptor or one on a loopback host.",
    )


def checked_link(query: Query) -> LinkParameters:
    """The link's parameters; refused, before any connection, unless the simulator may
    fetch the descriptor they name."""
    with errors_aimed(query, app_settings.BASE_URL):
        link = parse_link(query)
        descriptor_url(link)
    return link


def checked_descriptor(query: Query, link: LinkParameters, data: object) -> Descriptor:
    """``data`` checked as the link's descriptor: its baseUrl, lifecycle URL and the
    link's ``redirect_uri`` all where the simulator may send anything."""
    with errors_aimed(query, app_settings.BASE_URL):
        descriptor = check_descriptor(data, link.addon_key, app_settings.BASE_URL)
    with errors_aimed(query, descriptor.base_url):
        check_redirect(link, descriptor)
    return descriptor


def settings_descriptor() -> object:
    """This site's descriptor as its descriptor view serves it, without any HTTP."""
    return json.loads(json.dumps(build_descriptor(), cls=DjangoJSONEncoder))


def fetch_descriptor(query: Query, link: LinkParameters) -> object:
    """The link's descriptor over HTTP, as parsed JSON. Called only for a CSRF-checked POST."""
    with errors_aimed(query, app_settings.BASE_URL):
        try:
            status, body = transport.send(
                "GET", descriptor_url(link), headers={"Accept": "application/json"}
            )
        except TRANSPORT_ERRORS as error:
            raise SimulatedError(
                "invalid_descriptor", "The descriptor could not be fetched."
            ) from error
        if status != 200:
            raise SimulatedError(
                "invalid_descriptor", f"The descriptor URL answered HTTP {status}{_why(status)}"
            )
        try:
            return json.loads(body)
        except ValueError as error:
            description = "The descriptor is not valid JSON."
            raise SimulatedError("invalid_descriptor", description) from error


def _why(status: int) -> str:
    """The end of a description of an answer with ``status``."""
    return ": a redirect, which the simulator does not follow." if 300 <= status < 400 else "."


# --- grant -------------------------------------------------------------------------------


def simulated_bitbucket_urls() -> dict[str, str]:
    """The ``baseUrl`` and ``baseApiUrl`` of the installations the simulator makes: its own
    JWT grant and API on this site (whose origin the client then allows), or Bitbucket's
    when the site has no base URL to put them on."""
    if app_settings.BASE_URL is None:
        return {}
    grant_path = reverse("bitbucket_install:simulator_grant")
    return {
        "base_url": app_settings.absolute_url(grant_path.removesuffix(GRANT_PATH)),
        "base_api_url": app_settings.absolute_url(
            reverse("bitbucket_install:simulator_api").rstrip("/")
        ),
    }


def _server_error(description: str, redirect_to: str | None) -> SimulatedError:
    return SimulatedError("server_error", description, redirect_to=redirect_to, status=502)


def post_installed(
    url: str, body: bytes, headers: Mapping[str, str], redirect_to: str | None
) -> None:
    """The ``installed`` lifecycle callback, over HTTP; ``SimulatedError`` unless the app
    answered 200 or 204."""
    try:
        status, _answer = transport.send("POST", url, body, headers)
    except TRANSPORT_ERRORS as error:
        raise _server_error(
            "The app's installed callback could not be reached.", redirect_to
        ) from error
    if status not in INSTALLED_ANSWERS:
        raise _server_error(
            f"The app answered HTTP {status} to the installed callback{_why(status)}",
            redirect_to,
        )


def grant(
    request: HttpRequest,
    link: LinkParameters,
    descriptor: Descriptor,
    workspace: Workspace,
    *,
    send_jwt: bool,
    follow_redirect: bool = True,
) -> HttpResponse:
    """Install: the ``installed`` callback over HTTP, then the browser back to the app (for
    a link without ``redirect_uri``, to the descriptor's ``postInstallRedirect`` if it has
    one and ``follow_redirect``)."""
    key = state.install_key(link, descriptor, workspace)
    previous = state.previous_install(key)
    if previous is not None:
        client_key = previous.client_key
    else:
        client_key = client_key_for(link, descriptor, workspace, state.next_connection_number())
    shared_secret = secrets.token_urlsafe(32)
    payload = installed_payload(
        descriptor, client_key, shared_secret, workspace, **simulated_bitbucket_urls()
    )
    body = json.dumps(payload)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if previous is not None:
        token = lifecycle_token(descriptor, client_key, previous.shared_secret)
        headers["Authorization"] = "JWT " + token
    post_installed(descriptor.installed_url, body.encode(), headers, link.redirect_uri)
    state.remember_install(
        key,
        client_key,
        shared_secret,
        app_key=descriptor.key,
        workspace=workspace.name,
        scopes=descriptor.scopes,
    )
    if link.redirect_uri is None and descriptor.post_install_redirect and follow_redirect:
        # Installed from Bitbucket's side: its postInstallRedirect takes the browser back.
        target = post_install_url(
            descriptor, client_key, shared_secret, workspace, send_jwt=send_jwt
        )
        return HttpResponseRedirect(target)
    if link.redirect_uri is None:
        context = {
            "descriptor": descriptor,
            "workspace": workspace,
            "client_key": client_key,
            "home_url": get_script_prefix(),
        }
        return render(request, "bitbucket_install/simulator/installed.html", context)
    target = success_url(
        link.redirect_uri, client_key, shared_secret, descriptor.base_path, send_jwt=send_jwt
    )
    return HttpResponseRedirect(target)


# --- the page ------------------------------------------------------------------------------


def answer_error(request: HttpRequest, error: SimulatedError) -> HttpResponse:
    if error.redirect_to is not None:
        params = [("error", error.code), ("error_description", error.description)]
        return HttpResponseRedirect(add_query(error.redirect_to, params))
    context = {"error": error, "home_url": get_script_prefix()}
    return render(request, "bitbucket_install/simulator/error.html", context, status=error.status)


def _page_headers(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "no-store"
    # No other site may frame the page and have a user click Grant unknowingly.
    response["X-Frame-Options"] = "DENY"
    # Not "no-referrer": under it browsers send "Origin: null" with the consent form's
    # POST, and Django's CSRF check refuses that. Nothing secret is in these pages' URLs.
    response["Referrer-Policy"] = "same-origin"
    return response


def consent(request: HttpRequest, link: LinkParameters, descriptor: Descriptor) -> HttpResponse:
    context = {
        "link": link,
        "descriptor": descriptor,
        "scopes": scope_list(descriptor.scopes),
        "default_workspace": DEFAULT_WORKSPACE,
        "errors": TRIGGERABLE_ERRORS,
        "action": request.get_full_path(),
    }
    return render(request, "bitbucket_install/simulator/consent.html", context)


class SimulatorPage(View):
    """A page of the simulator's own (the console, the Forge page): GET shows it, with the
    CSRF cookie its forms need; the subclass's CSRF-protected POST acts, then ``page``
    shows it again with the outcome."""

    http_method_names = ["get", "post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return _page_headers(super().dispatch(request, *args, **kwargs))

    @method_decorator(ensure_csrf_cookie)
    def get(self, request: HttpRequest) -> HttpResponse:
        return self.page(request)

    @abc.abstractmethod
    def page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        """The page with ``context`` (the outcome of a POST, or nothing), answered ``status``."""


class SimulatorView(View):
    """Bitbucket's authorize page, simulated. ``bitbucket_install.urls`` routes to it only
    while the simulator is on; it checks that again itself."""

    http_method_names = ["get", "post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not app_settings.SIMULATOR:
            raise Http404("The Bitbucket simulator is off.")
        return _page_headers(super().dispatch(request, *args, **kwargs))

    @method_decorator(ensure_csrf_cookie)
    def get(self, request: HttpRequest) -> HttpResponse:
        query = dict(request.GET.lists())
        try:
            link = checked_link(query)
            if not is_own_app(link):
                context = {"link": link, "action": request.get_full_path()}
                return render(request, "bitbucket_install/simulator/check.html", context)
            descriptor = checked_descriptor(query, link, settings_descriptor())
        except SimulatedError as error:
            return answer_error(request, error)
        return consent(request, link, descriptor)

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> HttpResponse:
        action = request.POST.get("action")
        error_code = request.POST.get("error_code", "")
        if action not in ACTIONS or (action == "error" and error_code not in TRIGGERABLE_ERRORS):
            return HttpResponseBadRequest("Unknown action.")
        query = dict(request.GET.lists())
        try:
            link = checked_link(query)
            descriptor = checked_descriptor(query, link, fetch_descriptor(query, link))
            if action == "check":
                return consent(request, link, descriptor)
            if action == "grant":
                workspace = Workspace.named(request.POST.get("workspace", ""))
                send_jwt = request.POST.get("send_jwt") == "on"
                follow = request.POST.get("follow_redirect") == "on"
                return grant(
                    request, link, descriptor, workspace, send_jwt=send_jwt, follow_redirect=follow
                )
            if action == "deny":
                code, description = "access_denied", "The user denied access to the app."
            else:
                code, description = error_code, f"Simulated {error_code} from the simulator."
            raise SimulatedError(code, description, redirect_to=link.redirect_uri, status=200)
        except SimulatedError as error:
            return answer_error(request, error)


simulator_view = SimulatorView.as_view()
