"""The browser's side of the install: ``start`` sends it to Bitbucket, ``callback`` takes
it back (protocol.md section 2), ``result`` shows how it went without the token in the URL.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.db import DatabaseError, IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views import View

from bitbucket_install import flow as flows
from bitbucket_install.conf import app_settings
from bitbucket_install.flow import Flow
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed, send_on_commit, send_robust
from bitbucket_install.tokens import TokenError, is_valid_client_key, read_unverified
from bitbucket_install.verification import printable, verify_request_token

logger = logging.getLogger("bitbucket_install")

RESULT_SESSION_KEY = "bitbucket_install_result"
SECURITY_PARAMETERS = ("clientKey", "client_key", "jwt", "error", "error_description")
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
}
UNKNOWN_ERROR_MESSAGE = _("Bitbucket did not install the app. Please try again.")
REJECTED_MESSAGE = _(
    "This install could not be confirmed, so it was not connected. "
    "Please start again from the install button."
)
ERROR_CODE_PATTERN = re.compile(r"[a-z0-9_.-]{1,64}")
# Reasons that mean "not verifiable yet" while the installed lifecycle callback of this
# install may still be on its way (it can reach the site after the browser does): no
# installation to check against, no secret to verify with, or an uninstalled one.
NOT_YET_REASONS = frozenset(
    {"client_key_unverified", "unknown_installation", "installation_uninstalled"}
)
RETRY_AFTER_SECONDS = 5
MAX_DESCRIPTION_LENGTH = 300


def authorize_url() -> str:
    """The Bitbucket authorize URL from settings (``InstallLinkError`` if misconfigured)."""
    return app_settings.install_link().url()


def _protect(response: HttpResponse, referrer_policy: str = "no-referrer") -> HttpResponse:
    """Keep tokens and install details out of caches and Referer headers."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = referrer_policy
    return response


class StartView(View):
    """POST (the button's form) starts a flow and goes to Bitbucket; GET shows the button."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        context = {"next": flows.safe_next(request, request.GET.get("next"))}
        response = render(request, "bitbucket_install/start.html", context)
        # Under no-referrer, browsers send "Origin: null" with the form's POST, which
        # Django's CSRF check refuses; this page holds no token, so same-origin is safe.
        return _protect(response, referrer_policy="same-origin")

    def post(self, request: HttpRequest) -> HttpResponse:
        target = authorize_url()
        flow = flows.start(request, request.POST.get("next"))
        logger.info("install flow started: user=%s", flow.user_id)
        return _protect(HttpResponseRedirect(target, status=303))


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ReturnTrip:
    """The parameters Bitbucket appended, each present at most once, checked for shape.

    Everything here is decided without a query, so a malformed return costs no database
    work and touches no flow: it cannot be told apart from a forged one.
    """

    client_key: str | None
    token: str | None
    error: str
    error_description: str

    @classmethod
    def from_query(cls, query: QueryDict, *, token_required: bool) -> ReturnTrip:
        for name in SECURITY_PARAMETERS:
            if len(query.getlist(name)) > 1:
                raise Rejected("parameter_repeated")
        spellings = {str(query[name]) for name in ("clientKey", "client_key") if name in query}
        if len(spellings) > 1:
            raise Rejected("client_key_conflict")
        client_key = spellings.pop() if spellings else None
        error = query.get("error")
        if (client_key is None) == (error is None):
            raise Rejected("client_key_or_error_required")
        token = query.get("jwt") or None
        if client_key is not None:
            if not is_valid_client_key(client_key):
                raise Rejected("client_key_invalid")
            if token is None and token_required:
                raise Rejected("token_missing")
            if token is not None:
                _check_issuer(token, client_key)
        return cls(
            client_key=client_key,
            token=token,
            error="" if error is None else clean_error(error),
            error_description=clean_description(query.get("error_description", "")),
        )


def _check_issuer(token: str, client_key: str) -> None:
    """The token must be well-formed and name ``client_key`` before any lookup."""
    try:
        issuer = read_unverified(token).issuer
    except TokenError as error:
        raise Rejected(error.reason) from error
    if issuer != client_key:
        raise Rejected("token_issuer")


def clean_error(error: str) -> str:
    error = error.strip().lower()
    return error if ERROR_CODE_PATTERN.fullmatch(error) else "unknown_error"


def clean_description(description: str) -> str:
    printable_text = "".join(char for char in description if char.isprintable())
    return printable_text[:MAX_DESCRIPTION_LENGTH]


def _flow_hash(flow: Flow) -> str:
    return hashlib.sha256(flow.id.encode()).hexdigest()


def _flow_started_by(pending: list[Flow], moment: float) -> Flow | None:
    """The newest of ``pending`` that began before ``moment`` (give or take leeway)."""
    for candidate in pending:
        if candidate.started_at - app_settings.JWT_LEEWAY <= moment:
            return candidate
    return None


def _verify_with_first_matching_secret(
    request: HttpRequest, token: str, secrets: list[str], client_key: str
) -> dict[str, Any]:
    """Claims of ``token`` under the first secret that signed it (trying in order)."""
    for secret in secrets[:-1]:
        try:
            return verify_request_token(request, token, secret, issuer=client_key)
        except TokenError as error:
            if error.reason != "token_signature":
                raise
    return verify_request_token(request, token, secrets[-1], issuer=client_key)


def _newest(pending: list[Flow]) -> Flow | None:
    return pending[0] if pending else None


def _is_recent(flow: Flow | None) -> bool:
    """Did ``flow`` begin so recently that its lifecycle callback may be on its way?"""
    return flow is not None and time.time() - flow.started_at <= app_settings.CONFIRM_WINDOW


class CallbackView(View):
    """The ``redirect_uri``: verify the return trip, record it, signal, then redirect."""

    http_method_names = ["get"]
    flow: Flow | None = None
    repeat_only = False

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.handle(request)
            # Written here rather than only by SessionMiddleware after the view, so that a
            # database failure on this last write gets the 503 page too, not a 500. (The
            # installation is committed by then; the flow, still in the stored session,
            # makes the retry answer the same without a second signal.)
            if request.session.modified:
                request.session.save()
                # Saved: the middleware need not write it again, unless it has to send
                # the cookie of a session created just now.
                cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
                if cookie is not None and cookie == request.session.session_key:
                    request.session.modified = False
            return _protect(response)
        except (DatabaseError, UpdateError):  # UpdateError: the session's DatabaseError
            # Nothing was written and the flow is still in the session: a retry can work.
            logger.exception("install return: database unavailable")
            return _protect(render(request, "bitbucket_install/unavailable.html", status=503))

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            trip = ReturnTrip.from_query(
                request.GET, token_required=app_settings.ADDON_KEY is not None
            )
        except Rejected as rejection:
            return self.reject(request, rejection.reason, None, None)
        if trip.client_key is None:
            return self.failed(request, trip)
        try:
            return self.confirm(request, trip.client_key, trip.token)
        except Rejected as rejection:
            flow = self.flow or _newest(flows.pending(request))
            if rejection.reason in NOT_YET_REASONS and _is_recent(flow):
                return self.not_yet(request, rejection.reason, trip.client_key)
            return self.reject(request, rejection.reason, flow, trip.client_key)

    def confirm(self, request: HttpRequest, client_key: str, token: str | None) -> HttpResponse:
        # This browser's flows, read now (session and user) rather than under the row lock.
        pending = flows.pending(request)
        try:
            installation, created, should_signal = self.save_confirmation(
                request, client_key, token, pending
            )
        except IntegrityError:
            # A concurrent identical return inserted the row first: start again in a new
            # transaction, which finds that row. (On MariaDB/MySQL the losing insert keeps
            # a shared lock on the row until its transaction ends; asking for the row lock
            # in that same transaction deadlocks with the other returns waiting for it.)
            installation, created, should_signal = self.save_confirmation(
                request, client_key, token, pending
            )
        if self.flow is not None:
            flows.finish(request, self.flow)
        flows.remember_confirmed(request, client_key)
        logger.info(
            "install return accepted: client_key=%s created=%s signalled=%s user=%s",
            client_key,
            created,
            should_signal,
            installation.user_id,
        )
        self.store_result(request, ok=True, installation=installation)
        target = (self.flow.next if self.flow else "") or app_settings.SUCCESS_URL
        return self.redirect(target)

    def verify_token(
        self,
        request: HttpRequest,
        client_key: str,
        token: str,
        stored: Installation | None,
        pending: list[Flow],
    ) -> Flow | None:
        """Trust rule 1: the JWT must verify for ``client_key`` over this very request."""
        try:
            secrets = [stored.shared_secret] if stored and stored.shared_secret else []
            if app_settings.SHARED_SECRET:
                secrets.append(app_settings.SHARED_SECRET)
            if not secrets:
                raise TokenError("unknown_installation")
            claims = _verify_with_first_matching_secret(request, token, secrets, client_key)
        except TokenError as error:
            raise Rejected(error.reason) from error
        return _flow_started_by(pending, claims["iat"])

    def verify_fresh_install(
        self,
        request: HttpRequest,
        client_key: str,
        installation: Installation | None,
        pending: list[Flow],
    ) -> Flow | None:
        """Trust rule 1 without a JWT: an unregistered app's just-installed, unclaimed row,
        and (stricter than the rule) a flow of this browser that began before it.
        ``record`` checks "unclaimed" under the row lock (a repeat of this very flow is
        idempotent there); a repeat after the flow was used up is only answered again."""
        flow = None
        if (
            installation is not None
            and installation.uninstalled_at is None
            and installation.installed_at is not None
            and installation.installed_at
            >= timezone.now() - timedelta(seconds=app_settings.CONFIRM_WINDOW)
        ):
            flow = _flow_started_by(pending, installation.installed_at.timestamp())
        if flow is None:
            if not flows.has_confirmed(request, client_key):
                raise Rejected("client_key_unverified")
            self.repeat_only = True  # this browser's own confirmed return, repeated
        return flow

    def save_confirmation(
        self, request: HttpRequest, client_key: str, token: str | None, pending: list[Flow]
    ) -> tuple[Installation, bool, bool]:
        """Verify and record the return in one transaction, reading the installation once,
        under its row lock. ``Rejected`` rolls it back whole, and so does IntegrityError
        if a concurrent return inserted the row first."""
        with transaction.atomic():
            installation = Installation.objects.locked(client_key)
            if token is not None:
                self.flow = self.verify_token(request, client_key, token, installation, pending)
            else:
                self.flow = self.verify_fresh_install(request, client_key, installation, pending)
            created = installation is None
            if installation is None:
                # Saved by ``record`` once confirmed: one INSERT, no UPDATE after it.
                installation = Installation(
                    client_key=client_key, addon_key=app_settings.ADDON_KEY or ""
                )
            should_signal = self.record(request, installation)
            user = request.user if self.flow is not None and self.flow.user_id else None
            if should_signal:
                send_on_commit(
                    installed,
                    installation=installation,
                    request=request,
                    user=user,
                    created=created,
                )
        return installation, created, should_signal

    def record(self, request: HttpRequest, installation: Installation) -> bool:
        """Confirm ``installation`` under its row lock; True when this return did it."""
        if installation.uninstalled_at is not None:
            raise Rejected("installation_uninstalled")
        if installation.confirmed_at is not None:
            same_flow = self.flow is not None and installation.confirmed_flow == _flow_hash(
                self.flow
            )
            if same_flow or flows.has_confirmed(request, installation.client_key):
                return False  # this browser's own return, repeated: same answer, no signal
            raise Rejected("already_confirmed")
        if self.repeat_only:
            raise Rejected("client_key_unverified")  # reinstalled since: needs a new flow
        if self.flow is not None and self.flow.user_id is not None:
            if installation.user_id is not None and str(installation.user_id) != self.flow.user_id:
                raise Rejected("connected_to_another_user")
            installation.user_id = request.user.pk
        installation.confirmed_at = timezone.now()
        installation.confirmed_flow = _flow_hash(self.flow) if self.flow else ""
        installation.save()
        return True

    def failed(self, request: HttpRequest, trip: ReturnTrip) -> HttpResponse:
        """Bitbucket reported an error (the user said no, or the install failed)."""
        flow = _newest(flows.pending(request))
        logger.info("install return with error=%s (flow=%s)", trip.error, flow is not None)
        if flow is not None:
            flows.finish(request, flow)
            send_robust(
                install_failed,
                request=request,
                user=request.user if flow.user_id else None,
                error=trip.error,
                error_description=trip.error_description,
            )
        self.store_result(
            request, ok=False, error=trip.error, error_description=trip.error_description
        )
        return self.redirect(app_settings.FAILURE_URL)

    @staticmethod
    def not_yet(request: HttpRequest, reason: str, client_key: str) -> HttpResponse:
        """The return came before its lifecycle callback: ask for a reload, change nothing.

        This browser's flow began less than ``CONFIRM_WINDOW`` seconds ago, so the
        ``installed`` callback may still arrive. Nothing is written, no signal is sent and
        the flow is kept, so a reload once the callback is in finishes the install. Once
        the flow is older, the same return is refused (400) like any unverified one.
        """
        logger.info(
            "install return not verifiable yet: reason=%s client_key=%s",
            reason,
            printable(client_key),
        )
        response = render(request, "bitbucket_install/unavailable.html", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def reject(
        self, request: HttpRequest, reason: str, flow: Flow | None, client_key: str | None
    ) -> HttpResponse:
        """Trust rule 4: the same 400 page for every reason; the reason goes to the log."""
        logger.warning(
            "install return rejected: reason=%s client_key=%s flow=%s",
            reason,
            printable(client_key),
            flow is not None,
        )
        if flow is not None:
            flows.finish(request, flow)
            send_robust(
                install_failed,
                request=request,
                user=request.user if flow.user_id else None,
                error=reason,
                error_description="",
            )
        context = {"message": REJECTED_MESSAGE, "error": "rejected"}
        return render(request, "bitbucket_install/install_failed.html", context, status=400)

    @staticmethod
    def store_result(request: HttpRequest, *, ok: bool, **details: Any) -> None:
        result: dict[str, Any] = {"ok": ok}
        installation = details.pop("installation", None)
        if installation is not None:
            result.update(
                client_key=installation.client_key,
                principal_name=installation.principal_name,
                # Connected to whoever is looking, not merely to somebody.
                connected=installation.user_id is not None
                and installation.user_id == getattr(getattr(request, "user", None), "pk", None),
            )
        result.update(details)
        request.session[RESULT_SESSION_KEY] = result

    @staticmethod
    def redirect(target: str | None) -> HttpResponse:
        url = resolve_url(target) if target else reverse("bitbucket_install:result")
        return HttpResponseRedirect(url, status=303)


class ResultView(View):
    """How the last return trip of this browser went, on a URL without any token."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponse:
        result = request.session.get(RESULT_SESSION_KEY)
        if not isinstance(result, dict):
            raise Http404("No install to show.")
        if result.get("ok"):
            response = render(request, "bitbucket_install/installed.html", {"result": result})
        else:
            error = result.get("error", "")
            message = ERROR_MESSAGES.get(error, UNKNOWN_ERROR_MESSAGE)
            context = {
                "message": message,
                "error": error,
                "error_description": result.get("error_description", ""),
            }
            response = render(request, "bitbucket_install/install_failed.html", context)
        return _protect(response)
