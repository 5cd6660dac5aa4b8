"""The callback's policy: parse the return trip, find its flow, verify, record, decide.

The view (``views.CallbackView``) only turns the ``Decision`` made here into a response.
Nothing is kept between calls: each function takes what it needs and returns what it
found.

A return is one of two kinds:

- a *flow return* comes to ``callback/<flow id>/``, the ``redirect_uri`` the ``start``
  view sent to Bitbucket. Only a flow return naming a live flow of this browser can use
  that flow up, send ``install_failed`` or connect the installation to the flow's user;
  naming any other flow, it is refused like any other rejection and touches nothing.
- a *plain return* comes to ``callback/`` (installs begun elsewhere, or a link built with
  ``{% bitbucket_install_url %}``). It can confirm an installation, and binds nobody.

A JWT that verifies for the clientKey proves the return is Bitbucket's; its qsh covers
the path, so a token issued for one flow cannot be replayed on another. A return without a
JWT (unregistered apps) proves nothing about whose install it was. By default it binds
nobody, touches no flow and gets one neutral answer whatever it names (known or unknown,
fresh or not), so it tells nobody which workspaces use the app; if it names a
just-installed installation that nobody confirmed yet, that is recorded as a
confirmation. It binds the flow's user only when the project opts in with
``BITBUCKET_INSTALL_TRUST_UNSIGNED_RETURNS``.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.db import IntegrityError
from django.http import HttpRequest, QueryDict
from django.utils import timezone

from bitbucket_install import flow as flows
from bitbucket_install import genuine
from bitbucket_install.conf import app_settings
from bitbucket_install.flow import Flow
from bitbucket_install.identifiers import clean_display_text, is_registered_client_key
from bitbucket_install.models import Installation, atomic_retrying_lost_insert
from bitbucket_install.signals import install_failed, installed, send_on_commit, send_robust
from bitbucket_install.tokens import TokenError, is_valid_client_key, read_unverified
from bitbucket_install.verification import verify_request_token

logger = logging.getLogger("bitbucket_install")
Result = TypeVar("Result")

SECURITY_PARAMETERS = ("clientKey", "client_key", "jwt", "error", "error_description")
ERROR_CODE_PATTERN = re.compile(r"[a-z0-9_.-]{1,64}")
MAX_DESCRIPTION_LENGTH = 300
# Reasons that mean "not verifiable yet" while the ``installed`` callback of this install
# may still be on its way (it can reach the site after the browser does): no installation,
# no secret, an uninstalled one, or a token signed with a secret the site does not hold
# yet (a re-install's new one). Answered alike whether or not the clientKey is known.
NOT_YET_REASONS = frozenset(
    {
        "client_key_unverified",
        "unknown_installation",
        "installation_uninstalled",
        "token_signature",
        "secret_unusable",
        "installed_before_flow",
    }
)
# Verification failures after which the next secret is tried.
WRONG_SECRET_REASONS = frozenset({"token_signature", "secret_unusable"})


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CheckNeeded(Exception):
    """This return would confirm ``installation``, which Bitbucket has not vouched for yet
    (``BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET``): the transaction is rolled back, the
    call to Bitbucket is made outside it, and the return is recorded afresh."""

    def __init__(self, installation: Installation) -> None:
        super().__init__(installation.client_key)
        self.installation = installation


def vouched(installation: Installation) -> None:
    """``genuine.vouch``, its refusal a ``Rejected`` (``BitbucketUnreachable`` passes)."""
    try:
        genuine.vouch(installation)
    except genuine.NotGenuine as refusal:
        raise Rejected(refusal.reason) from refusal


def with_check(record: Callable[[], Result]) -> Result:
    """``record()`` in a transaction (``atomic_retrying_lost_insert``); when it needs
    Bitbucket's word first, that is asked outside any transaction, then ``record()`` runs
    again. ``Rejected`` if Bitbucket does not vouch, or the row changed in between."""
    try:
        return atomic_retrying_lost_insert(record)
    except CheckNeeded as needed:
        vouched(needed.installation)
    try:
        return atomic_retrying_lost_insert(record)
    except CheckNeeded as needed:
        # Its secret changed since it was checked: a new install, unchecked.
        raise Rejected("installation_changed") from needed


class Outcome(enum.Enum):
    CONFIRMED = "confirmed"  # recorded (connected to the flow's user, or to nobody)
    UNVERIFIED = "unverified"  # no JWT: binds nobody, one answer whatever it named
    FAILED = "failed"  # Bitbucket reported an error
    CONFLICT = "conflict"  # genuine, but connected to another account of this site
    REJECTED = "rejected"  # refused (trust rule 4: one answer for every reason)
    NOT_YET = "not_yet"  # its lifecycle callback may still be on its way: reload


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
    return clean_display_text(description, MAX_DESCRIPTION_LENGTH)


@dataclass(frozen=True)
class Decision:
    """What the return trip came to; the view renders it."""

    outcome: Outcome
    # The flow this return named and used (None for a plain return, or one left alone).
    flow: Flow | None = None
    reason: str = ""
    installation: Installation | None = None
    # For a confirmation: "connected" (to this browser's user), "signed_out" (the flow was
    # started signed out), "other_account" (a reload, by another account than the flow's)
    # or "not_started_here" (a plain return). An unsigned return that
    # binds nobody is its own outcome, UNVERIFIED.
    connection: str = ""
    # An unsigned return's clientKey, which the result page may record once its
    # ``installed`` callback is in (the browser can be back first).
    pending_client_key: str = ""
    # Where to go once confirmed: the flow's ``next`` (or that of the flow reloaded).
    next: str = ""
    error: str = ""
    error_description: str = ""


def decide(request: HttpRequest, flow_id: str | None) -> Decision:
    """The policy of the return trip, from the request to its decision."""
    try:
        trip = ReturnTrip.from_query(
            request.GET, token_required=app_settings.ADDON_KEY is not None
        )
    except Rejected as rejection:
        return _rejected(request, rejection.reason, None, None)
    flow = None
    if flow_id is not None:
        flow = flows.live(request, flow_id)
        if flow is None:
            return _without_live_flow(request, trip, flow_id)
    if trip.client_key is None:
        return _failed(request, trip, flow)
    try:
        return _confirm(request, trip.client_key, trip.token, flow)
    except genuine.BitbucketUnreachable:
        # Nothing was written and the flow is still live: a reload asks again.
        logger.warning(
            "install return: Bitbucket could not be asked about client_key=%s", trip.client_key
        )
        return Decision(Outcome.NOT_YET, reason="bitbucket_unreachable")
    except Rejected as rejection:
        if (
            flow is not None
            and rejection.reason in NOT_YET_REASONS
            and flow.is_recent(app_settings.CONFIRM_WINDOW)
        ):
            logger.info(
                "install return not verifiable yet: reason=%s client_key=%s",
                rejection.reason,
                trip.client_key,
            )
            return Decision(Outcome.NOT_YET, reason=rejection.reason)
        return _rejected(request, rejection.reason, flow, trip.client_key)


def _without_live_flow(request: HttpRequest, trip: ReturnTrip, flow_id: str) -> Decision:
    """A return naming a flow that is not live in this browser: the reload of a return
    this browser finished with a confirmation (answered the same again), or anything else
    (refused)."""
    used = flows.used_here(request, flow_id)
    if trip.client_key is not None and used is not None and used.client_key == trip.client_key:
        installation = Installation.objects.filter(client_key=trip.client_key).first()
        if installation is not None and installation.confirmed_at is not None:
            logger.info("install return repeated: client_key=%s", trip.client_key)
            return Decision(
                Outcome.CONFIRMED,
                installation=installation,
                connection=_connection(request, installation, used.signed_in),
                next=used.next,
            )
    return _rejected(request, "flow_unknown", None, trip.client_key)


def _failed(request: HttpRequest, trip: ReturnTrip, flow: Flow | None) -> Decision:
    """Bitbucket reported an error (the user said no, or the install failed)."""
    logger.info("install return with error=%s (flow=%s)", trip.error, flow is not None)
    if flow is not None:
        _use_up_failed(request, flow, trip.error, trip.error_description)
    return Decision(
        Outcome.FAILED,
        flow=flow,
        error=trip.error,
        error_description=trip.error_description,
    )


def _rejected(
    request: HttpRequest, reason: str, flow: Flow | None, client_key: str | None
) -> Decision:
    """Trust rule 4: one answer for every reason; the reason goes to the log. Only the
    return of a live flow of this browser uses that flow up and sends ``install_failed``."""
    logger.warning(
        "install return rejected: reason=%s client_key=%s flow=%s",
        reason,
        client_key,
        flow is not None,
    )
    if flow is not None:
        _use_up_failed(request, flow, reason, "")
    outcome = Outcome.CONFLICT if reason == "connected_to_another_user" else Outcome.REJECTED
    return Decision(outcome, flow=flow, reason=reason)


def _use_up_failed(request: HttpRequest, flow: Flow, error: str, description: str) -> None:
    """The flow's return failed: use the flow up and tell ``install_failed``."""
    flows.finish(request, flow)
    send_robust(
        install_failed,
        request=request,
        user=_flow_user(request, flow),
        error=error,
        error_description=description,
    )


def _flow_user(request: HttpRequest, flow: Flow) -> Any:
    """The flow's local user (the request's, as the flow belongs to it), or None."""
    return request.user if flow.user_id is not None else None


def _confirm(
    request: HttpRequest, client_key: str, token: str | None, flow: Flow | None
) -> Decision:
    if token is None and not app_settings.TRUST_UNSIGNED_RETURNS:
        return _unverified(request, client_key, flow)
    try:
        installation, created, signalled = with_check(
            lambda: _verify_and_record(request, client_key, token, flow)
        )
    except IntegrityError as error:
        # Lost twice: not a concurrent insert of this row (the retry read it under its
        # lock), but this flow's hash on another installation: a concurrent return of the
        # same flow confirmed that one first. A flow confirms at most one installation.
        raise Rejected("flow_used") from error
    if flow is not None:
        flows.finish(request, flow, confirmed=client_key)
    logger.info(
        "install return accepted: client_key=%s created=%s signalled=%s user=%s",
        client_key,
        created,
        signalled,
        installation.user_id,
    )
    connection = (
        _connection(request, installation, flow.user_id is not None)
        if flow is not None
        else "not_started_here"
    )
    return Decision(
        Outcome.CONFIRMED,
        flow=flow,
        installation=installation,
        connection=connection,
        next=flow.next if flow is not None else "",
    )


def _unverified(request: HttpRequest, client_key: str, flow: Flow | None) -> Decision:
    """A return without a JWT, unsigned returns not trusted: record the confirmation of a
    fresh, unconfirmed installation if it names one; answer alike in every case."""
    recorded = record_unsigned(request, client_key)
    logger.info(
        "install return without a token: client_key=%s recorded=%s flow=%s",
        client_key,
        recorded,
        flow is not None,
    )
    return Decision(
        Outcome.UNVERIFIED,
        flow=flow,
        pending_client_key=client_key,
        next=flow.next if flow is not None else "",
    )


def record_unsigned(request: HttpRequest, client_key: str) -> bool:
    """Record that an unsigned return named ``client_key``, if that is a fresh installation
    nobody confirmed yet (sending ``installed`` with no user); True if it did. Idempotent,
    so the result page may try again when the browser was back before the ``installed``
    callback."""

    def record() -> bool:
        installation = Installation.objects.locked(client_key)
        if installation is None or installation.confirmed_at is not None:
            return False
        try:
            _fresh_unclaimed(installation, None)
        except Rejected:
            return False
        if app_settings.CONFIRM_WITH_BITBUCKET and installation.verified_at is None:
            raise CheckNeeded(installation)
        installation.confirmed_at = timezone.now()
        installation.save(update_fields=["confirmed_at", "updated_at"])
        send_on_commit(
            installed, installation=installation, request=request, user=None, created=False
        )
        return True

    try:
        return with_check(record)
    except (Rejected, genuine.BitbucketUnreachable) as refusal:
        # Answered alike whatever happened: the page tries again on its reload.
        logger.info(
            "unsigned return not recorded: client_key=%s (%s)",
            client_key,
            refusal.reason if isinstance(refusal, Rejected) else "bitbucket_unreachable",
        )
        return False


def _connection(request: HttpRequest, installation: Installation, signed_in: bool) -> str:
    """How a confirmed installation stands towards the user of this browser's flow:
    ``connected`` to the one signed in now, ``other_account`` (the flow was started signed
    in, and this is a reload by another account or signed out), or ``signed_out``."""
    if signed_in and installation.user_id is not None and installation.user_id == request.user.pk:
        return "connected"
    return "other_account" if signed_in else "signed_out"


def _verify_and_record(
    request: HttpRequest, client_key: str, token: str | None, flow: Flow | None
) -> tuple[Installation, bool, bool]:
    """Verify and record the return in one transaction, reading the installation once,
    under its row lock. ``Rejected`` rolls it back whole."""
    installation = Installation.objects.locked(client_key)
    if token is not None:
        issued_at = _verify_token(request, client_key, token, installation)
        if flow is not None and flow.started_at - app_settings.JWT_LEEWAY > issued_at:
            raise Rejected("token_before_flow")
        binds = flow is not None and flow.user_id is not None
    else:
        installation, installed_at = _fresh_unclaimed(installation, flow)
        if flow is not None and flow.started_at - app_settings.JWT_LEEWAY > installed_at:
            raise Rejected("installed_before_flow")
        binds = (
            flow is not None and flow.user_id is not None and app_settings.TRUST_UNSIGNED_RETURNS
        )
    created = installation is None
    if installation is None:
        # Saved by ``_record`` once confirmed: one INSERT, no UPDATE after it.
        installation = Installation(client_key=client_key, addon_key=app_settings.ADDON_KEY or "")
    user = request.user if binds else None
    signalled = _record(installation, flow, user)
    if signalled:
        send_on_commit(
            installed, installation=installation, request=request, user=user, created=created
        )
    return installation, created, signalled


def _verify_token(
    request: HttpRequest, client_key: str, token: str, installation: Installation | None
) -> float:
    """Trust rule 1: the JWT must verify for ``client_key`` over this very request, with
    the installation's secret or else the app-level one. Returns its ``iat``."""
    secrets = [installation.shared_secret] if installation and installation.shared_secret else []
    if app_settings.SHARED_SECRET:
        secrets.append(app_settings.SHARED_SECRET)
    if not secrets:
        raise Rejected("unknown_installation")
    addon_key = app_settings.ADDON_KEY
    if (
        installation is None
        and addon_key is not None
        and not is_registered_client_key(client_key, addon_key)
    ):
        raise Rejected("client_key_other_app")  # a row made from the return alone
    for secret in secrets[:-1]:
        try:
            return _issued_at(request, token, secret, client_key)
        except Rejected as rejection:
            if rejection.reason not in WRONG_SECRET_REASONS:
                raise
    return _issued_at(request, token, secrets[-1], client_key)


def _issued_at(request: HttpRequest, token: str, secret: str, client_key: str) -> float:
    """The ``iat`` of ``token`` once it verifies with ``secret`` (a number: checked)."""
    try:
        claims = verify_request_token(request, token, secret, issuer=client_key)
    except TokenError as error:
        raise Rejected(error.reason) from error
    return float(claims["iat"])


def _fresh_unclaimed(
    installation: Installation | None, flow: Flow | None
) -> tuple[Installation, float]:
    """Trust rule 1 without a JWT: an installation whose ``installed`` callback arrived
    within ``CONFIRM_WINDOW``, not confirmed by another flow (``_record`` decides the
    rest, a repeat of this very flow included). Returns it with the time of that
    callback."""
    window_start = timezone.now() - timedelta(seconds=app_settings.CONFIRM_WINDOW)
    if (
        installation is None
        or installation.uninstalled_at is not None
        or installation.installed_at is None
        or installation.installed_at < window_start
        or (
            installation.confirmed_at is not None
            and installation.confirmed_flow not in (None, flow.hash if flow else None)
        )
    ):
        raise Rejected("client_key_unverified")
    return installation, installation.installed_at.timestamp()


def _record(installation: Installation, flow: Flow | None, user: Any) -> bool:
    """Confirm ``installation`` under its row lock (connected to ``user`` if given);
    True when this return changed it. ``Rejected`` when it may not."""
    if installation.uninstalled_at is not None:
        raise Rejected("installation_uninstalled")
    flow_hash = flow.hash if flow is not None else None
    if user is not None and installation.user_id not in (None, user.pk):
        raise Rejected("connected_to_another_user")
    if installation.confirmed_at is not None:
        if flow_hash is not None and installation.confirmed_flow == flow_hash:
            return False  # this very return again (a retry after a lost race)
        if flow_hash is not None and installation.confirmed_flow is not None:
            if user is not None and installation.user_id == user.pk:
                return False  # connected to this user by another of their flows
            raise Rejected("already_confirmed")
        if flow_hash is None or user is None:
            return False  # confirmed already; this return adds nothing
        # Confirmed by a plain return, connected to nobody: this flow connects it.
    if app_settings.CONFIRM_WITH_BITBUCKET and installation.verified_at is None:
        raise CheckNeeded(installation)
    if user is not None:
        installation.user_id = user.pk
    installation.confirmed_at = timezone.now()
    installation.confirmed_flow = flow_hash
    installation.save()
    return True
