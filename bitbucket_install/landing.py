"""The landing: where installs begun on Bitbucket's side arrive, and where a signed-in user
connects one by an explicit confirmation.

With ``BITBUCKET_INSTALL_POST_INSTALL_REDIRECT`` the descriptor's ``postInstallRedirect``
sends the browser here after an install made on Bitbucket (the marketplace, workspace
settings), with the workspace's ``user_uuid``, ``user_username`` and ``user_type``. No flow
of this site sent that browser, so the visit is treated like a return without a flow: it
verifies what it can and binds nobody.

- With a ``jwt``, the token is verified exactly as the callback verifies a plain return
  (``returns.confirm`` without a flow), which records a confirmation to nobody; a token
  that fails gets the same 400 page as any rejection.
- Without one, the installation is looked up by ``user_uuid``: installed, its ``installed``
  callback within ``FLOW_MAX_AGE``.

What was found becomes the *offer*, kept in the session, and the browser is sent (303) to
the clean ``landing/`` URL, so no token stays in the address bar. A visit that found
nothing creates no session: its page says so, and reloads itself once, as the
``installed`` callback can reach the site after the browser.

The clean page shows the offer; its form POSTs back here (CSRF-protected, signed in
only), and that POST connects the installation to the user under its row lock: only an
installation connected to nobody, still installed, within the window, and (with
``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``) one Bitbucket vouches for. ``installed`` is
sent once, after the commit, however many POSTs race.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.db.models.functions import Upper
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator

from bitbucket_install import genuine, returns
from bitbucket_install.conf import app_settings
from bitbucket_install.identifiers import clean_display_text, is_valid_client_key
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed, send_on_commit
from bitbucket_install.tokens import TokenError, read_unverified
from bitbucket_install.views import (
    ERROR_MESSAGES,
    RESULT_SESSION_KEY,
    RETRY_AFTER_SECONDS,
    CallbackView,
    ProtectedView,
    protect,
    render_page,
    unavailable,
)

logger = logging.getLogger("bitbucket_install")

OFFER_SESSION_KEY = "bitbucket_install_landing"
TEMPLATE = "bitbucket_install/landing.html"
# The query of a visit that found nothing and reloaded itself once.
RETRIED_PARAMETER = "retried"
# Parameters that may be given once at most: two values would make what was verified and
# what is looked up differ.
SINGLE_PARAMETERS = ("jwt", "clientKey", "client_key", "user_uuid", RETRIED_PARAMETER)
# What marks an arrival from Bitbucket (anything else on the URL is ignored).
ARRIVAL_PARAMETERS = ("jwt", "clientKey", "client_key", "user_uuid")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Offer:
    """What a landing found, kept in the session until it is used or replaced."""

    client_key: str
    landed_at: float
    # Did the landing carry a JWT that verified for this clientKey?
    signed: bool

    def as_session(self) -> dict[str, Any]:
        return {"client_key": self.client_key, "landed_at": self.landed_at, "signed": self.signed}

    @classmethod
    def of(cls, request: HttpRequest) -> Offer | None:
        """The offer in this browser's session, or None (nothing, or nothing well-formed)."""
        stored = request.session.get(OFFER_SESSION_KEY)
        if not isinstance(stored, dict):
            return None
        client_key, landed_at = stored.get("client_key"), stored.get("landed_at")
        if (
            not isinstance(client_key, str)
            or not is_valid_client_key(client_key)
            or not isinstance(landed_at, int | float)
            or isinstance(landed_at, bool)
        ):
            return None
        return cls(client_key, float(landed_at), stored.get("signed") is True)


def landing_path() -> str:
    return reverse("bitbucket_install:landing")


def installed_since(installation: Installation) -> datetime | None:
    """When the install this installation stands for happened: its ``installed``
    callback, or, for a row a verified JWT made before that callback, the row's creation."""
    return installation.installed_at or installation.created_at


def within_window(installation: Installation) -> bool:
    """Was it installed within ``FLOW_MAX_AGE``? Only such an install is offered."""
    since = installed_since(installation)
    return since is not None and timezone.now() - since <= timedelta(
        seconds=app_settings.FLOW_MAX_AGE
    )


def workspace_uuid(value: str) -> uuid.UUID | None:
    """``user_uuid`` as a UUID (with or without braces, any case), or None."""
    value = value.strip()
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    try:
        return uuid.UUID(value) if len(value) == 36 else None
    except ValueError:
        return None


def find_by_workspace(workspace: uuid.UUID) -> Installation | None:
    """The latest installation on ``workspace`` whose ``installed`` callback is within the
    window. ``principal_uuid`` is kept as Bitbucket sent it (braces, lower case), so the
    match ignores case, with or without braces."""
    window_start = timezone.now() - timedelta(seconds=app_settings.FLOW_MAX_AGE)
    spellings = [str(workspace).upper(), "{" + str(workspace).upper() + "}"]
    found: Installation | None = (
        Installation.objects.installed()
        .filter(installed_at__gte=window_start)
        .annotate(principal_uuid_upper=Upper("principal_uuid"))
        .filter(principal_uuid_upper__in=spellings)
        .order_by("-installed_at", "-pk")
        .first()
    )
    return found


def installer_name(installation: Installation) -> str:
    """Who installed it on Bitbucket, as their account names them (display text)."""
    account = installation.installed_by if isinstance(installation.installed_by, dict) else {}
    for field in ("display_name", "nickname", "username"):
        value = account.get(field)
        if isinstance(value, str) and value.strip():
            return clean_display_text(value.strip(), MAX_NAME_LENGTH)
    return ""


def _single(query: QueryDict) -> None:
    for name in SINGLE_PARAMETERS:
        if len(query.getlist(name)) > 1:
            raise returns.Rejected("parameter_repeated")


def signed_client_key(query: QueryDict, token: str) -> str:
    """The clientKey a landing's JWT is verified for: the ``clientKey`` parameter if there
    is one, else the token's ``iss``; either way the two must agree."""
    spellings = {str(query[name]) for name in ("clientKey", "client_key") if name in query}
    if len(spellings) > 1:
        raise returns.Rejected("client_key_conflict")
    if spellings:
        client_key = spellings.pop()
    else:
        try:
            client_key = read_unverified(token).issuer
        except TokenError as error:
            raise returns.Rejected(error.reason) from error
    if not isinstance(client_key, str) or not is_valid_client_key(client_key):
        raise returns.Rejected("client_key_invalid")
    returns.check_issuer(token, client_key)
    return client_key


class Bind:
    """What a connect POST came to (the view renders it)."""

    CONNECTED = "connected"  # connected to this user now
    ALREADY = "already"  # connected to this user before: nothing changed, no signal


def bind(request: HttpRequest, client_key: str) -> str:
    """Connect ``client_key``'s installation to the request's user, under its row lock.
    ``Rejected`` (nothing changed) unless it is installed, within the window and connected
    to nobody; ``CheckNeeded`` when Bitbucket must vouch for it first."""
    installation = Installation.objects.locked(client_key)
    if installation is None:
        raise returns.Rejected("unknown_installation")
    if installation.uninstalled_at is not None:
        raise returns.Rejected("installation_uninstalled")
    if installation.user_id is not None:
        if installation.user_id == request.user.pk:
            return Bind.ALREADY
        raise returns.Rejected("connected_to_another_user")
    if not within_window(installation):
        raise returns.Rejected("offer_expired")
    if app_settings.CONFIRM_WITH_BITBUCKET and installation.verified_at is None:
        raise returns.CheckNeeded(installation)
    installation.user_id = request.user.pk
    fields = ["user", "updated_at"]
    if installation.confirmed_at is None:
        installation.confirmed_at = timezone.now()
        fields.append("confirmed_at")
    installation.save(update_fields=fields)
    send_on_commit(
        installed, installation=installation, request=request, user=request.user, created=False
    )
    return Bind.CONNECTED


CONFLICT_STATUS = 409


# Bitbucket sends the browser here whether or not it is signed in on this site: a login
# redirect would carry the landing's token in ``next``. Each step commits in a
# transaction of its own (and signals after it), also under ATOMIC_REQUESTS, so that
# Bitbucket is asked outside any transaction.
@method_decorator([login_not_required, transaction.non_atomic_requests], name="dispatch")
class LandingView(ProtectedView):
    """GET with Bitbucket's query: find the offer; GET: show it; POST: connect it."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        if any(name in request.GET for name in ARRIVAL_PARAMETERS):
            return self.arrive(request)
        return self.show(request)

    # --- arriving from Bitbucket -------------------------------------------------------

    def arrive(self, request: HttpRequest) -> HttpResponse:
        query = request.GET
        try:
            _single(query)
            token = query.get("jwt") or None
            if token is not None:
                installation = self.verified(request, signed_client_key(query, token), token)
            else:
                workspace = workspace_uuid(query.get("user_uuid", ""))
                if workspace is None:
                    raise returns.Rejected("user_uuid_invalid")
                installation = find_by_workspace(workspace)
        except returns.Rejected as rejection:
            logger.warning("landing rejected: reason=%s", rejection.reason)
            return CallbackView.rejected(request)
        except genuine.BitbucketUnreachable:
            logger.warning("landing: Bitbucket could not be asked")
            return unavailable(request)
        if installation is None:
            logger.info("landing: no fresh installation on that workspace")
            return self.nothing_found(request, retried=RETRIED_PARAMETER in query)
        offer = Offer(installation.client_key, time.time(), signed=token is not None)
        request.session[OFFER_SESSION_KEY] = offer.as_session()
        logger.info(
            "landing offer: client_key=%s signed=%s", installation.client_key, offer.signed
        )
        return HttpResponseRedirect(landing_path(), status=303)

    @staticmethod
    def verified(request: HttpRequest, client_key: str, token: str) -> Installation | None:
        """Trust rule 1 over this very request, as for a plain return (``Rejected`` if the
        token does not verify); the confirmation it records binds nobody."""
        decision = returns.confirm(request, client_key, token, None)
        return decision.installation

    @staticmethod
    def nothing_found(request: HttpRequest, *, retried: bool) -> HttpResponse:
        """Nothing to offer (yet): no session is created for it. The first answer reloads
        itself once, under a URL marked as retried, since the ``installed`` callback may
        still be on its way."""
        reload_url = ""
        if not retried:
            query = request.GET.copy()
            query[RETRIED_PARAMETER] = "1"
            reload_url = request.path + "?" + query.urlencode()
        context = {
            "state": "nothing",
            "refresh_after": RETRY_AFTER_SECONDS if reload_url else None,
            "reload_url": reload_url,
        }
        return render_page(request, TEMPLATE, context, status=200 if reload_url else 404)

    # --- the clean page ----------------------------------------------------------------

    def show(self, request: HttpRequest) -> HttpResponse:
        offer = Offer.of(request)
        installation = None
        if offer is not None:
            installation = Installation.objects.filter(client_key=offer.client_key).first()
        if offer is None or installation is None or installation.uninstalled_at is not None:
            return self.nothing_found(request, retried=True)
        state = self.state(request, installation)
        context = {
            "state": state,
            "workspace": installation.principal_name,
            "installed_by": installer_name(installation),
            "client_key": installation.client_key,
            "signed": offer.signed,
            "action": landing_path(),
            "login_url": redirect_to_login(landing_path()).url,
        }
        response = render_page(request, TEMPLATE, context)
        # Under no-referrer, browsers send "Origin: null" with the form's POST, which
        # Django's CSRF check refuses; this URL holds no token, so same-origin is safe.
        return protect(response, referrer_policy="same-origin")

    @staticmethod
    def state(request: HttpRequest, installation: Installation) -> str:
        if installation.user_id is not None:
            signed_in = request.user.is_authenticated
            return (
                "connected"
                if signed_in and installation.user_id == request.user.pk
                else "other_account"
            )
        if not within_window(installation):
            return "expired"
        return "offer" if request.user.is_authenticated else "signed_out"

    # --- connecting --------------------------------------------------------------------

    def post(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(landing_path())
        offer = Offer.of(request)
        posted = request.POST.get("client_key", "")
        if offer is None or posted != offer.client_key:
            if Installation.objects.filter(client_key=posted, user_id=request.user.pk).exists():
                # A second click after the first connected it: tell its owner, again.
                return self.connected(request, posted)
            logger.warning("landing connect refused: reason=%s", "offer_unknown")
            return CallbackView.rejected(request)
        try:
            outcome = returns.with_check(lambda: bind(request, offer.client_key))
        except genuine.BitbucketUnreachable:
            # Nothing was written and the offer is kept: the page's reload shows it again.
            logger.warning(
                "landing connect: Bitbucket could not be asked about client_key=%s",
                offer.client_key,
            )
            return unavailable(request)
        except returns.Rejected as rejection:
            logger.warning(
                "landing connect refused: reason=%s client_key=%s",
                rejection.reason,
                offer.client_key,
            )
            del request.session[OFFER_SESSION_KEY]
            if rejection.reason == "connected_to_another_user":
                context = {"message": ERROR_MESSAGES[rejection.reason], "error": rejection.reason}
                return render_page(
                    request,
                    "bitbucket_install/install_failed.html",
                    context,
                    status=CONFLICT_STATUS,
                )
            return CallbackView.rejected(request)
        logger.info(
            "landing connect: client_key=%s user=%s outcome=%s",
            offer.client_key,
            request.user.pk,
            outcome,
        )
        del request.session[OFFER_SESSION_KEY]
        return self.connected(request, offer.client_key)

    @staticmethod
    def connected(request: HttpRequest, client_key: str) -> HttpResponse:
        """To the result page, which shows the installation connected to this user."""
        installation = Installation.objects.get(client_key=client_key)
        request.session[RESULT_SESSION_KEY] = {
            "ok": True,
            "client_key": installation.client_key,
            "principal_name": installation.principal_name,
            "connection": "connected",
            "connected": True,
        }
        return HttpResponseRedirect(reverse("bitbucket_install:result"), status=303)


landing_view = LandingView.as_view()
