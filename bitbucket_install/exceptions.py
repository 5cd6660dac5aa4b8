"""The app's errors: one base class, mixed with Django's meaning where one applies."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class BitbucketInstallError(Exception):
    """Base class of every error this app raises."""


class ConfigurationError(BitbucketInstallError, ImproperlyConfigured):
    """The project's settings break a rule of the install protocol."""


class TaskFrameworkMissing(ConfigurationError):
    """The app was asked to run a task, and neither Django's ``django.tasks`` (Django 6.0+)
    nor the ``django-tasks`` backport (the ``tasks`` extra) can be imported."""


class InstallLinkError(ConfigurationError):
    """An install link would break a rule of the install link; ``rule`` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class BadRequest(BitbucketInstallError, SuspiciousOperation):
    """A request failed verification; ``reason`` is a stable code, safe to log.

    Left uncaught, Django answers it with 400 as for any ``SuspiciousOperation``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenError(BadRequest):
    """A Connect JWT failed verification."""


class InvocationRefused(BadRequest):
    """A Forge Invocation Token, or the request carrying it, was refused."""


class JWKSUnavailable(BitbucketInstallError):
    """Forge's keys (the JWKS) could not be fetched: no token can be verified for now."""


class PayloadError(BadRequest):
    """A lifecycle callback's body was refused."""


class RequestNotSent(BitbucketInstallError):
    """The API client refused to send a request: nothing left the process.

    ``reason`` is a stable code, safe to log: ``uninstalled``, ``no_shared_secret``,
    ``no_app_key``, ``path_not_relative``, ``path_malformed``, ``path_dot_segment``,
    ``scope_malformed``, ``repository_malformed``, ``origin_not_allowed``, and for a
    ``ForgeInstallation`` ``no_system_token`` (none cached) or ``forge_no_grant`` (no JWT
    grant for Forge).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class OriginNotAllowed(RequestNotSent):
    """A signed request would have gone to an origin outside
    ``BITBUCKET_INSTALL_BITBUCKET_ORIGINS`` (the installation's stored URL, or the grant's)."""

    def __init__(self, message: str) -> None:
        super().__init__("origin_not_allowed", message)


class BitbucketAPIError(BitbucketInstallError):
    """Bitbucket answered an API call with an error status (4xx or 5xx).

    ``status`` is the HTTP status; ``message`` and ``detail`` are what Bitbucket's body
    said (its JSON error, an OAuth error, or plain text), cleaned and length-limited:
    untrusted text, fit for logs. ``detail`` may be empty.
    """

    def __init__(self, status: int, message: str, detail: str = "", *, request: str = "") -> None:
        summary = f"Bitbucket answered {status}"
        if request:
            summary += f" to {request}"
        super().__init__(f"{summary}: {message}" if message else summary)
        self.status = status
        self.message = message
        self.detail = detail


class TokenRefused(BitbucketAPIError):
    """Bitbucket refused the token (401) or what it allows (403)."""


class RateLimited(BitbucketAPIError):
    """Bitbucket kept answering 429 after the retries, or asked for a longer wait than the
    client may spend; ``retry_after`` is the wait it asked for in seconds, or None."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str = "",
        *,
        request: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, detail, request=request)
        self.retry_after = retry_after


class ReplayCacheUnavailable(BitbucketInstallError):
    """The cache that remembers single-use tokens (``BITBUCKET_INSTALL_REPLAY_CACHE``)
    failed, so nobody can tell whether a token was used before: the request is refused
    (503) rather than let through. ``alias`` is the cache's alias."""

    def __init__(self, alias: str, message: str) -> None:
        super().__init__(message)
        self.alias = alias
