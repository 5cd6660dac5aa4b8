"""The browser's side of the install: ``start`` sends it to Bitbucket, ``callback`` takes
it back and renders what ``returns.decide`` made of it, ``result`` shows how it went
without the token in the URL.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.backends.base import UpdateError
from django.core.exceptions import TooManyFieldsSent
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import get_resolver, get_script_prefix, get_urlconf, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View

from bitbucket_install import flow as flows
from bitbucket_install.conf import app_settings, with_path_segment
from bitbucket_install.identifiers import is_valid_client_key
from bitbucket_install.returns import Decision, Outcome, decide, record_unsigned
from bitbucket_install.templating import render

logger = logging.getLogger("bitbucket_install")
Response = TypeVar("Response", bound=HttpResponseBase)

RESULT_SESSION_KEY = "bitbucket_install_result"
ERROR_MESSAGES = {
    "access_denied": _("You chose not to give the app access, so nothing was installed."),
    "invalid_descriptor": _(
        "Bitbucket could not read the app's description. Nothing was "
        "installed; please tell the app's team."
    ),
    "invalid_request": _(
        "Bitbucket could not follow the install link. Nothing was "
        "installed; please tell the app's team."
    ),
    "server_error": _(
        "Bitbucket ran into a problem. Nothing was installed; please try again later."
    ),
    "connected_to_another_user": _(
        "The app is installed on this workspace, but the installation is already connected "
        "to another account on this site, so it was not connected to yours. Sign in with "
        "that account to use it, or ask whoever connected it."
    ),
}
UNKNOWN_ERROR_MESSAGE = _("Bitbucket did not install the app. Please try again.")
REJECTED_MESSAGE = _(
    "This install could not be confirmed, so it was not connected. "
    "Please start again from the install button."
)
RETRY_AFTER_SECONDS = 5
# How many times the page of an unsigned return reloads itself.
UNVERIFIED_REFRESHES = 1


def authorize_url() -> str:
    """The Bitbucket authorize URL from settings (``InstallLinkError`` if misconfigured)."""
    return app_settings.install_link().url()


def protect(response: Response, referrer_policy: str = "no-referrer") -> Response:
    """Keep tokens and install details out of caches, Referer headers and other sites'
    frames (whether or not the project has ``XFrameOptionsMiddleware``)."""
    response["Cache-Control"] = "no-store"
    response.headers.setdefault("Referrer-Policy", referrer_policy)
    response["X-Frame-Options"] = "DENY"
    return response


class ProtectedView(View):
    """Every answer of the view protected, Django's own (a 405) included."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return protect(super().dispatch(request, *args, **kwargs))


def render_page(
    request: HttpRequest,
    template_name: str,
    context: dict[str, Any] | None = None,
    status: int | None = None,
) -> HttpResponse:
    """One of the app's pages, with what every page links to: the site's home."""
    return render(
        request, template_name, {"home_url": get_script_prefix(), **(context or {})}, status=status
    )


def unavailable(request: HttpRequest) -> HttpResponse:
    """The 503 page: nothing was written and a retry can work, so the page reloads itself
    (the same URL) after the seconds that Retry-After says."""
    context = {"retry_after": RETRY_AFTER_SECONDS}
    response = render_page(request, "bitbucket_install/unavailable.html", context, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class StartView(ProtectedView):
    """POST (the button's form) starts a flow and goes to Bitbucket; GET shows the button."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        context = {"next": flows.safe_next(request, request.GET.get("next"))}
        response = render_page(request, "bitbucket_install/start.html", context)
        # Under no-referrer, browsers send "Origin: null" with the form's POST, which
        # Django's CSRF check refuses; this page holds no token, so same-origin is safe.
        return protect(response, referrer_policy="same-origin")

    def post(self, request: HttpRequest) -> HttpResponse:
        link = app_settings.install_link()
        link.url()  # a misconfigured link fails here, before a flow is stored
        flow = flows.start(request, request.POST.get("next"))
        # The flow's id rides in the redirect_uri, which Bitbucket sends the browser back
        # to exactly: only that return can use this flow.
        redirect_uri = with_path_segment(str(link.redirect_uri), flow.id)
        target = app_settings.install_link(redirect_uri=redirect_uri).url()
        logger.info("install flow started: user=%s", flow.user_id)
        return protect(HttpResponseRedirect(target, status=303))


# Bitbucket sends the browser back whether or not it is signed in here; a login redirect
# would put the return's token into the login URL's ``next``. The policy commits each step
# in a transaction of its own (and signals after it), also under ATOMIC_REQUESTS.
@method_decorator([login_not_required, transaction.non_atomic_requests], name="dispatch")
class CallbackView(ProtectedView):
    """The ``redirect_uri``: the policy decides, this view answers."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest, flow_id: str | None = None) -> HttpResponse:
        try:
            try:
                response = self.respond(request, decide(request, flow_id))
            except TooManyFieldsSent:
                # Django's own 400 for this would carry no no-store, on a URL with a token.
                logger.warning("install return rejected: reason=query_too_large")
                response = self.rejected(request)
            self.save_session(request)
        except (DatabaseError, UpdateError):  # UpdateError: the session's DatabaseError
            # Nothing was written and the flow is still in the session: a retry can work.
            logger.exception("install return: database unavailable")
            response = unavailable(request)
        except Exception:
            if flow_id is None or settings.DEBUG:
                raise
            # Django's own log line of a 500 names the path, which holds the flow's id.
            logger.exception("install return failed")
            response = get_resolver(get_urlconf()).resolve_error_handler(500)(request)
        if flow_id is not None:
            # Django would log "Bad Request: <path>" for a 4xx or 5xx, and the path holds
            # the flow's id; this app has logged the reason already, without it.
            response._has_been_logged = True  # type: ignore[attr-defined]
        return protect(response)

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """Django's 405, without its log line: that names the path, which may hold a flow's
        id. The app's own line names the method only."""
        logger.warning("install return refused: method %s not allowed", request.method)
        response = HttpResponseNotAllowed(
            [name.upper() for name in self.http_method_names if hasattr(self, name)]
        )
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response

    @staticmethod
    def save_session(request: HttpRequest) -> None:
        """Write the session here rather than only in SessionMiddleware after the view, so
        that a database failure on this last write gets the 503 page too, not a 500. (The
        installation is committed by then; the flow, still in the stored session, makes the
        retry answer the same without a second signal.)"""
        if not request.session.modified:
            return
        request.session.save()
        # Saved: the middleware need not write it again, unless it has to send the cookie
        # of a session created (or, for signed cookies, changed) just now.
        cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if cookie is not None and cookie == request.session.session_key:
            request.session.modified = False

    def respond(self, request: HttpRequest, decision: Decision) -> HttpResponse:
        if decision.outcome is Outcome.REJECTED:
            return self.rejected(request)
        if decision.outcome is Outcome.NOT_YET:
            return unavailable(request)
        result = result_of(decision)
        if decision.flow is None and _has_no_session(request):
            # Nobody's flow, and no session to keep the result in: show it here rather
            # than create a session (and a row in the session table) for any visitor.
            # (Loading a bad signed cookie marks the session modified: nothing to save.)
            request.session.modified = False
            return render_result(request, {**result, "refreshes": 0})
        request.session[RESULT_SESSION_KEY] = result
        if decision.outcome in (Outcome.CONFIRMED, Outcome.UNVERIFIED):
            target = decision.next or app_settings.SUCCESS_URL
        else:
            target = app_settings.FAILURE_URL
        url = resolve_url(target) if target else ""
        if url and not app_settings.is_on_this_site(url):
            # Check E021 reports such a setting; users are not sent to another site.
            logger.warning("install return: success or failure URL not on this site ignored")
            url = ""
        return HttpResponseRedirect(url or reverse("bitbucket_install:result"), status=303)

    @staticmethod
    def rejected(request: HttpRequest) -> HttpResponse:
        """Trust rule 4: the same 400 page for every reason."""
        context = {"message": REJECTED_MESSAGE, "error": "rejected"}
        return render_page(request, "bitbucket_install/install_failed.html", context, status=400)


def _has_no_session(request: HttpRequest) -> bool:
    """Does this browser have no session worth keeping? Loaded, an unknown cookie (or, with
    signed cookies, one this site did not sign) is an empty session, like none at all."""
    return not list(request.session.keys())


def result_of(decision: Decision) -> dict[str, Any]:
    """What the result page shows of ``decision``: plain data, kept in the session."""
    installation = decision.installation
    if decision.outcome is Outcome.UNVERIFIED:
        # Shown the same for every unsigned return: nothing tells which installation it
        # named. The page reloads once (whatever was named), and each load in the confirm
        # window records the named installation if its callback is in by then.
        return {
            "ok": True,
            "client_key": "",
            "principal_name": "",
            "connection": "unverified",
            "connected": False,
            "pending": decision.pending_client_key,
            "returned_at": time.time(),
            "refreshes": UNVERIFIED_REFRESHES,
        }
    if decision.outcome is Outcome.CONFIRMED and installation is not None:
        return {
            "ok": True,
            "client_key": installation.client_key,
            "principal_name": installation.principal_name,
            "connection": decision.connection,
            "connected": decision.connection == "connected",
        }
    return {
        "ok": False,
        "error": decision.error or decision.reason,
        "error_description": decision.error_description,
    }


def render_result(request: HttpRequest, result: dict[str, Any]) -> HttpResponse:
    if result.get("ok"):
        refreshes = result.get("refreshes")
        reloads = isinstance(refreshes, int) and not isinstance(refreshes, bool) and refreshes > 0
        # Where a user who was signed out can sign in and come back to the button.
        login_url = redirect_to_login(reverse("bitbucket_install:start")).url
        success: dict[str, Any] = {
            "result": result,
            "login_url": login_url,
            "refresh_after": RETRY_AFTER_SECONDS if reloads else None,
        }
        return render_page(request, "bitbucket_install/installed.html", success)
    error = result.get("error", "")
    context: dict[str, Any] = {
        "message": ERROR_MESSAGES.get(error, UNKNOWN_ERROR_MESSAGE),
        "error": error,
        "error_description": result.get("error_description", ""),
    }
    return render_page(request, "bitbucket_install/install_failed.html", context)


@method_decorator(login_not_required, name="dispatch")
class ResultView(ProtectedView):
    """How the last return trip of this browser went, on a URL without any token."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        result = request.session.get(RESULT_SESSION_KEY)
        if not isinstance(result, dict):
            # Still a 404, as a page that says so and leads back.
            page = render_page(request, "bitbucket_install/no_result.html", status=404)
            return protect(page)
        response = render_result(request, result)
        if result.get("connection") == "unverified":
            retry_pending(request, result)
        return protect(response)


def retry_pending(request: HttpRequest, result: dict[str, Any]) -> None:
    """An unsigned return's result page, shown: try recording its clientKey again while in
    the confirm window, and count the reload down. The same whatever was named."""
    pending, returned_at = result.get("pending"), result.get("returned_at")
    if (
        isinstance(pending, str)
        and is_valid_client_key(pending)
        and isinstance(returned_at, int | float)
        and time.time() - returned_at <= app_settings.CONFIRM_WINDOW
    ):
        recorded = record_unsigned(request, pending)
        logger.info("install result: unsigned return recorded again=%s", recorded)
    refreshes = result.get("refreshes")
    if isinstance(refreshes, int) and refreshes > 0:
        request.session[RESULT_SESSION_KEY] = {**result, "refreshes": refreshes - 1}
