"""Lifecycle callbacks: Bitbucket's server-to-server ``installed`` and ``uninstalled`` POSTs.

The first install of a clientKey is trusted on first use; every later callback for it
must be signed with the secret stored for it. Every ``installed`` callback must also be
for this app, from Bitbucket's origins, with a secret that can verify tokens
(``payloads.check_claim``). A refusal answers 400 (the body) or 401 (the signature), writes
nothing, sends nothing, and logs its reason.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install import genuine
from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import PayloadError
from bitbucket_install.models import Installation, atomic_retrying_lost_insert
from bitbucket_install.payloads import (
    ExpectedApp,
    LifecyclePayload,
    check_claim,
    parse_lifecycle,
)
from bitbucket_install.signals import send_on_commit, uninstalled
from bitbucket_install.tokens import TokenError
from bitbucket_install.verification import (
    missing_authorization_hint,
    printable,
    token_from_header,
    verify_request_token,
)

logger = logging.getLogger("bitbucket_install")


def expected_app() -> ExpectedApp:
    """What the settings say this app is, for ``check_claim``."""
    key = app_settings.DESCRIPTOR.get("key")
    return ExpectedApp(
        key=key if isinstance(key, str) and key else None,
        registered_key=app_settings.ADDON_KEY,
        bitbucket_origins=app_settings.BITBUCKET_ORIGINS,
    )


# Bitbucket's server calls carry no CSRF token and no login: the JWT and the checks here
# protect them. Each records in a transaction of its own, retried once on a lost insert
# (which under ATOMIC_REQUESTS would be a mere savepoint that keeps MariaDB's locks).
@method_decorator(
    [csrf_exempt, login_not_required, transaction.non_atomic_requests], name="dispatch"
)
class LifecycleView(View):
    """Parse and check the body, then ``record`` it in one transaction; answer 204."""

    http_method_names = ["post"]
    event_type = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response: HttpResponseBase = super().dispatch(request, *args, **kwargs)
        # Whatever the answer (405 included), no cache on the way may keep it.
        response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        client_key = None
        try:
            payload = parse_lifecycle(self.body(request), self.event_type)
            client_key = payload.client_key
            check_claim(payload, expected_app())
            token = token_from_header(request)
            self.record_checked(request, payload, token)
        except PayloadError as error:
            return self.refuse(400, error.reason, client_key)
        except TokenError as error:
            return self.refuse(401, error.reason, client_key)
        except genuine.BitbucketUnreachable:
            logger.warning(
                "lifecycle %s: Bitbucket could not be asked about client_key=%s; nothing changed",
                self.event_type,
                client_key,
            )
            return HttpResponse(status=503)
        except DatabaseError:
            logger.exception("lifecycle %s: database error", self.event_type)
            return HttpResponse(status=503)
        logger.info("lifecycle %s accepted: client_key=%s", self.event_type, client_key)
        return HttpResponse(status=204)

    @staticmethod
    def body(request: HttpRequest) -> bytes:
        try:
            return request.body
        except RequestDataTooBig as error:
            # Over the project's DATA_UPLOAD_MAX_MEMORY_SIZE: refused here like any body
            # too large, so the answer is this view's (no-store, logged), not Django's.
            raise PayloadError("payload_too_large") from error

    def refuse(self, status: int, reason: str, client_key: str | None) -> HttpResponse:
        logger.warning(
            "lifecycle %s refused: reason=%s client_key=%s%s",
            self.event_type,
            reason,
            printable(client_key),
            missing_authorization_hint(self.request) if status == 401 else "",
        )
        return HttpResponse(status=status)

    def record_checked(
        self, request: HttpRequest, payload: LifecyclePayload, token: str | None
    ) -> None:
        atomic_retrying_lost_insert(lambda: self.record(request, payload, token))

    def record(self, request: HttpRequest, payload: LifecyclePayload, token: str | None) -> None:
        raise NotImplementedError


# How many rows one unsigned ``installed`` may find made up, one after another, while other
# callbacks race for the same clientKey (see ``InstalledView.record_checked``).
MAX_REPLACEMENT_ROUNDS = 5


class _MaybeMadeUp(Exception):
    """An unsigned ``installed`` with a new secret for a row nothing vouched for: Bitbucket
    is asked about the stored secret, outside the transaction (which this rolls back)."""

    def __init__(self, installation: Installation) -> None:
        super().__init__(installation.client_key)
        self.installation = installation


def _fields(payload: LifecyclePayload) -> dict[str, object]:
    return {
        "addon_key": payload.key,
        "shared_secret": payload.shared_secret,
        "public_key": payload.public_key,
        "base_url": payload.base_url,
        "base_api_url": payload.base_api_url,
        "product_type": payload.product_type,
        "principal": payload.principal,
        "principal_uuid": payload.principal_uuid,
        "principal_name": payload.principal_name,
        "installed_by": payload.user,
        "installed_at": timezone.now(),
        "uninstalled_at": None,
        # Each install is confirmed by its own return trip.
        "confirmed_at": None,
    }


def _check_soon(installation: Installation) -> None:
    """After the commit, the follow-up check of a new installation by a task. A failure to
    enqueue loses only that check (binding still asks Bitbucket first): it is logged, and
    the callback's answer stands."""

    def enqueue() -> None:
        try:
            from bitbucket_install.tasks import check_soon

            check_soon(installation)
        except Exception:
            logger.exception(
                "lifecycle installed: the follow-up check of client_key=%s was not enqueued",
                installation.client_key,
            )

    transaction.on_commit(enqueue)


class InstalledView(LifecycleView):
    event_type = "installed"

    def record_checked(
        self, request: HttpRequest, payload: LifecyclePayload, token: str | None
    ) -> None:
        step: Callable[[], None] = functools.partial(self.record, request, payload, token)
        # Each round asks Bitbucket about the row this callback found; when others raced
        # for the same made-up clientKey and one replaced it meanwhile, that newer row is
        # asked about in the next round (a genuine row ends the race: Bitbucket vouches).
        for _ in range(MAX_REPLACEMENT_ROUNDS):
            try:
                atomic_retrying_lost_insert(step)
                return
            except _MaybeMadeUp as doubt:
                made_up = doubt.installation
                verdict = genuine.verify(made_up)
                if verdict is genuine.Verdict.UNREACHABLE:
                    raise genuine.BitbucketUnreachable from doubt
                if verdict is not genuine.Verdict.MADE_UP:
                    raise TokenError("token_missing") from doubt
                step = functools.partial(self.replace, request, payload, token, made_up)

        raise TokenError("token_missing")

    def replace(
        self,
        request: HttpRequest,
        payload: LifecyclePayload,
        token: str | None,
        made_up: Installation,
    ) -> None:
        """Bitbucket refused the stored secret outright: that row came from somebody else's
        unsigned callback, and this one takes its clientKey back, if under the lock the row
        is still that one and nothing vouched for it since (else this callback is recorded
        against the row as it is now)."""
        installation = Installation.objects.locked(payload.client_key)
        if (
            installation is None
            or installation.shared_secret != made_up.shared_secret
            or not genuine.is_vouched_for_by_nobody(installation)
        ):
            self.record(request, payload, token)
            return
        installation.delete()
        created = Installation.objects.create(client_key=payload.client_key, **_fields(payload))
        logger.warning(
            "lifecycle installed: replaced the installation of client_key=%s, whose secret "
            "Bitbucket refused (its first callback was not Bitbucket's)",
            payload.client_key,
        )
        _check_soon(created)

    def record(self, request: HttpRequest, payload: LifecyclePayload, token: str | None) -> None:
        installation = Installation.objects.locked(payload.client_key)
        if installation is None:
            # IntegrityError if a concurrent first install won the insert (see ``post``).
            created = Installation.objects.create(
                client_key=payload.client_key, **_fields(payload)
            )
            if app_settings.CONFIRM_WITH_BITBUCKET:
                _check_soon(created)
            return
        if installation.shared_secret:
            if token is None:
                if hmac.compare_digest(
                    installation.shared_secret.encode(), payload.shared_secret.encode()
                ):
                    return  # a retry of the install that is already stored: nothing to change
                if app_settings.CONFIRM_WITH_BITBUCKET and genuine.is_vouched_for_by_nobody(
                    installation
                ):
                    raise _MaybeMadeUp(installation)
                raise TokenError("token_missing")
            verify_request_token(
                request, token, installation.shared_secret, issuer=payload.client_key
            )
        fields = _fields(payload)
        if not installation.shared_secret:
            # The row came from a verified return trip before any callback, so this is
            # the first callback and, as the protocol has it, trusted on first use. It is
            # the callback of the install that return confirmed: keep the confirmation
            # (else a reload of the return would confirm and signal it a second time).
            del fields["confirmed_at"]
        for name, value in fields.items():
            setattr(installation, name, value)
        installation.save()
        if app_settings.CONFIRM_WITH_BITBUCKET and installation.verified_at is None:
            _check_soon(installation)


class UninstalledView(LifecycleView):
    event_type = "uninstalled"

    def record(self, request: HttpRequest, payload: LifecyclePayload, token: str | None) -> None:
        installation = Installation.objects.locked(payload.client_key)
        if installation is None or not installation.shared_secret:
            raise TokenError("unknown_installation")
        if token is None:
            raise TokenError("token_missing")
        verify_request_token(request, token, installation.shared_secret, issuer=payload.client_key)
        if installation.uninstalled_at is None:
            installation.uninstalled_at = timezone.now()
            installation.save(update_fields=["uninstalled_at", "updated_at"])
            send_on_commit(uninstalled, installation=installation, request=request)
