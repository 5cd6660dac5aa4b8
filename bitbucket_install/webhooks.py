"""Connect webhooks: Bitbucket's signed POSTs of the events the descriptor subscribes to.

A delivery must carry ``Authorization: JWT <token>`` signed, as the lifecycle callbacks
are, with the stored secret of an installed installation (``iss`` its clientKey, ``qsh``
over this request relative to the base URL's path); any ``aud`` is ignored. Its body must
be a JSON object no larger than the limit, its ``X-Event-Key`` (or the body's ``event``)
an event key, its ``X-Request-UUID`` a UUID. An accepted delivery is recorded once per
installation and ``X-Request-UUID``, and ``webhook_received`` is sent after the commit (in
the request, or with ``BITBUCKET_INSTALL_WEBHOOK_TASKS`` by a task in a worker, enqueued
after the commit; a backend that refuses it gets the delivery withdrawn and a 503); a
redelivery is answered the same and sends nothing. A refusal answers 400 (the body or
headers), 401 (the signature or installation) or 413 (the size), records nothing, sends
nothing, and logs its reason. docs/webhooks.rst says what the signature does not cover.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from bitbucket_install.conf import app_settings
from bitbucket_install.exceptions import PayloadError
from bitbucket_install.models import Installation, WebhookDelivery, atomic_retrying_lost_insert
from bitbucket_install.payloads import parse_webhook_body, request_uuid, webhook_event
from bitbucket_install.signals import send_robust, webhook_received
from bitbucket_install.tokens import TokenError, read_unverified
from bitbucket_install.verification import (
    missing_authorization_hint,
    printable,
    token_from_header,
    verify_request_token,
)

logger = logging.getLogger("bitbucket_install")


def send_webhook_received(
    delivery: WebhookDelivery, payload: dict[str, Any], request: HttpRequest | None = None
) -> None:
    """Tell the project's receivers about ``delivery`` (a failing one is logged)."""
    send_robust(
        webhook_received,
        installation=delivery.installation,
        event=delivery.event,
        payload=payload,
        request=request,
    )


def hand_over(delivery: WebhookDelivery, payload: dict[str, Any]) -> bool:
    """Enqueue the task that signals the committed ``delivery``: True once it is queued.

    False when the backend refused it: the delivery is then withdrawn (its row deleted), so
    that Bitbucket's redelivery after the 503 is recorded and handed over anew instead of
    being answered as a copy of a delivery nobody will signal. The row stays if the task
    has claimed it meanwhile (a backend that ran it and raised after): it was signalled.
    """
    try:
        # Imported here: defining the task asks the tasks framework and the configured
        # backend, which a project with tasks off need not have.
        from bitbucket_install import tasks

        tasks.hand_off(delivery, payload)
    except Exception:
        # Whatever the project's backend raises (a broker down, a database error, an
        # unknown alias or queue): the task may or may not be queued; withdrawing the
        # delivery makes either harmless, as the task then finds no row to signal.
        logger.exception(
            "webhook: the task backend refused the delivery; withdrawn, answered 503: "
            "client_key=%s event=%s request_uuid=%s",
            delivery.installation.client_key,
            delivery.event,
            delivery.request_uuid,
        )
        withdrawn, _ = WebhookDelivery.objects.filter(
            pk=delivery.pk, signalled_at__isnull=True
        ).delete()
        return not withdrawn
    return True


def max_body_bytes() -> int:
    """The largest body accepted: the setting, or the project's
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` if that is smaller."""
    limit = app_settings.WEBHOOK_MAX_BYTES
    django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return limit if django_limit is None else min(limit, django_limit)


def read_body(request: HttpRequest, limit: int) -> bytes:
    """At most ``limit`` bytes of body, or ``PayloadError("payload_too_large")``.

    Read here rather than through ``request.body``: the declared length may be absent or
    understated (chunked bodies under ASGI), so no more than one byte past the limit is
    ever read, whatever it says.
    """
    body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadError("payload_too_large")
    return body


def declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # as Django reads it: the body is then read up to the limit, not trusted


def unlocked(client_key: str) -> Installation | None:
    try:
        installation: Installation = Installation.objects.get(client_key=client_key)
    except Installation.DoesNotExist:
        return None
    return installation


def checked_installation(installation: Installation | None) -> Installation:
    """``installation`` if a delivery may be for it: known, with a secret, installed."""
    if installation is None or not installation.shared_secret:
        raise TokenError("unknown_installation")
    if not installation.is_installed:
        raise TokenError("installation_uninstalled")
    return installation


def verify_delivery(
    request: HttpRequest, installation: Installation | None, token: str, client_key: str
) -> Installation:
    """The installation whose stored secret signs this very request, or ``TokenError``."""
    verified = checked_installation(installation)
    # Any aud is ignored: Bitbucket's is not documented (the clientKey, or the app's
    # base URL), and the signature with this installation's own secret binds the token
    # to it already.
    verify_request_token(
        request, token, verified.shared_secret, issuer=client_key, check_audience=False
    )
    return verified


# Bitbucket's calls carry no CSRF token and no login: the JWT protects them. The delivery
# is recorded in a transaction of its own (as the lifecycle callbacks are), so that its
# signal goes out after that commit even under ATOMIC_REQUESTS.
@method_decorator(
    [csrf_exempt, login_not_required, transaction.non_atomic_requests], name="dispatch"
)
class WebhookView(View):
    """Verify the delivery, then ``record`` it and signal it once; answer 204."""

    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response: HttpResponseBase = super().dispatch(request, *args, **kwargs)
        # Whatever the answer (405 included), no cache on the way may keep it.
        response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest) -> HttpResponse:
        client_key: str | None = None
        event: str | None = None
        delivery_id: uuid.UUID | None = None
        try:
            limit = max_body_bytes()
            if declared_length(request) > limit:
                raise PayloadError("payload_too_large")  # refused before reading it
            token = self.token(request)
            client_key = issuer = read_unverified(token).issuer
            # Verified before the body is read, so that only Bitbucket gets it parsed.
            verify_delivery(request, unlocked(issuer), token, issuer)
            payload = parse_webhook_body(read_body(request, limit))
            event = event_key = webhook_event(request.headers.get("X-Event-Key"), payload)
            delivery_id = uuid_ = request_uuid(request.headers.get("X-Request-UUID"))
            in_task = app_settings.WEBHOOK_TASKS
            recorded = atomic_retrying_lost_insert(
                lambda: self.record(request, token, issuer, uuid_, event_key, payload, in_task)
            )
            # The view's transaction is its own (non_atomic_requests): the row is
            # committed here, before a worker can look for it.
            if recorded is not None and in_task and not hand_over(recorded, payload):
                return HttpResponse(status=503)  # Bitbucket redelivers on a 5xx
        except PayloadError as error:
            status = 413 if error.reason == "payload_too_large" else 400
            return self.refuse(status, error.reason, client_key, event, delivery_id)
        except TokenError as error:
            return self.refuse(401, error.reason, client_key, event, delivery_id)
        except DatabaseError:
            # Bitbucket redelivers on a 5xx; the delivery was not recorded.
            logger.exception("webhook: database error")
            return HttpResponse(status=503)
        if recorded is None:
            outcome = "redelivery answered without a signal"
        else:
            outcome = "accepted, handed over to a task" if in_task else "accepted"
        logger.info(
            "webhook %s: client_key=%s event=%s request_uuid=%s",
            outcome,
            client_key,
            event,
            delivery_id,
        )
        return HttpResponse(status=204)

    @staticmethod
    def token(request: HttpRequest) -> str:
        """The token of ``Authorization: JWT ...``: Bitbucket sends no other. A ``?jwt=``
        is never read (it would sit in access logs), and is named in the reason."""
        token = token_from_header(request)
        if token is None:
            raise TokenError("token_in_query" if "jwt" in request.GET else "token_missing")
        return token

    @staticmethod
    def record(
        request: HttpRequest,
        token: str,
        client_key: str,
        delivery_id: uuid.UUID,
        event: str,
        payload: dict[str, Any],
        in_task: bool,
    ) -> WebhookDelivery | None:
        """Record the delivery, and signal it after the commit unless ``in_task`` (the
        view then hands it over to a task); None for a redelivery.

        The installation's row is locked and the token verified again under the lock, as
        the lifecycle callbacks do: an uninstall or a new secret committed meanwhile
        refuses the delivery. Redeliveries of one installation wait for each other here,
        and the unique key settles any that do not (``IntegrityError``, retried once).
        """
        installation = verify_delivery(
            request, Installation.objects.locked(client_key), token, client_key
        )
        if WebhookDelivery.objects.filter(
            installation=installation, request_uuid=delivery_id
        ).exists():
            return None
        received = timezone.now()
        delivery: WebhookDelivery = WebhookDelivery.objects.create(
            installation=installation,
            request_uuid=delivery_id,
            event=event,
            received_at=received,
            # Unset until the task claims it; claimed at once when the request signals.
            signalled_at=None if in_task else received,
        )
        if not in_task:
            transaction.on_commit(lambda: send_webhook_received(delivery, payload, request))
        return delivery

    def refuse(
        self,
        status: int,
        reason: str,
        client_key: str | None,
        event: str | None,
        delivery_id: uuid.UUID | None,
    ) -> HttpResponse:
        logger.warning(
            "webhook refused: reason=%s client_key=%s event=%s request_uuid=%s%s",
            reason,
            printable(client_key),
            event,
            delivery_id,
            missing_authorization_hint(self.request) if reason == "token_missing" else "",
        )
        return HttpResponse(status=status)
