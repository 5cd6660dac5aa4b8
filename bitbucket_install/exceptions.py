"""The app's errors: one base class, mixed with Django's meaning where one applies."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class BitbucketInstallError(Exception):
    """Base class of every error this app raises."""


class ConfigurationError(BitbucketInstallError, ImproperlyConfigured):
    """The project's settings break a rule of the install protocol."""


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


class PayloadError(BadRequest):
    """A lifecycle callback's body was refused."""
