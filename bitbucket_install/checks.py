"""System checks: ``manage.py check`` names every install-link rule the settings break."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch

from bitbucket_install.authorize import ADDON_KEY_PATTERN
from bitbucket_install.conf import app_settings
from bitbucket_install.descriptor import APP_OWNED_KEYS

# Stable ids; a retired id stays reserved and is never reused.
RULE_IDS = {
    "authorize_url_absolute": "E001",
    "one_app_identity": "E002",
    "addon_key_format": "E003",
    "descriptor_uri_absolute": "E004",
    "descriptor_uri_https": "E005",
    "redirect_uri_absolute": "E006",
    "base_url_absolute": "E007",
    "base_url_https": "E008",
    "plain_url": "E009",
    "redirect_uri_under_base_url": "E010",
    "descriptor_uri_https_loopback_http": "W001",
    "base_url_https_loopback_http": "W002",
    "authorize_url_bitbucket": "E018",
}
DURATION_SETTINGS = ("JWT_LEEWAY", "JWT_MAX_AGE", "FLOW_MAX_AGE", "CONFIRM_WINDOW")
# The longest duration accepted: one year. Far beyond any sane window, and far inside
# what ``timedelta(seconds=...)`` and ``now() - timedelta`` can hold (a huge value made
# the callback view overflow: a 500 instead of a check error).
MAX_DURATION = 365 * 24 * 60 * 60
REDIRECT_SETTINGS = ("SUCCESS_URL", "FAILURE_URL")
KNOWN_CONTEXTS = {"account"}


def _message(id_suffix: str, message: str, hint: str) -> CheckMessage:
    kind = Warning if id_suffix.startswith("W") else Error
    return kind(message, hint=hint, id=f"bitbucket_install.{id_suffix}")


@register(Tags.security, "bitbucket_install")
def check_install_link(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if app_settings.BASE_URL is None:
        return [
            _message(
                "E007",
                "BITBUCKET_INSTALL_BASE_URL is not set.",
                "Set it to the descriptor's baseUrl, e.g. https://app.example.com.",
            )
        ]
    link = app_settings.install_link()
    return [_message(RULE_IDS[p.rule], p.message, p.hint) for p in link.problems()]


@register("bitbucket_install")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    found = []
    for name in DURATION_SETTINGS:
        value = getattr(settings, f"BITBUCKET_INSTALL_{name}", 1)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DURATION:
            found.append(
                _message(
                    "E011",
                    f"BITBUCKET_INSTALL_{name} must be a whole number of seconds from 0 to "
                    f"{MAX_DURATION} (one year), not {value!r}.",
                    f"Give an int from 0 to {MAX_DURATION}, or remove the setting to use the "
                    "default.",
                )
            )
    if getattr(settings, "BITBUCKET_INSTALL_SIMULATOR", False):
        found.append(
            _message(
                "W003",
                "The development simulator is enabled"
                + ("." if settings.DEBUG else ", but it only runs with DEBUG on."),
                "Never enable BITBUCKET_INSTALL_SIMULATOR outside development.",
            )
        )
    return found


@register(Tags.urls, "bitbucket_install")
def check_redirect_targets(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The views send the browser to ``resolve_url(SUCCESS_URL / FAILURE_URL)``: a value
    that is no URL and no URL name would raise ``NoReverseMatch`` there, a 500."""
    found = []
    for name in REDIRECT_SETTINGS:
        value = getattr(app_settings, name)
        if value is None:
            continue
        try:
            resolve_url(value)
        except NoReverseMatch:
            found.append(
                _message(
                    "E016",
                    f"BITBUCKET_INSTALL_{name} {value!r} is neither a URL nor the name of a "
                    "URL pattern.",
                    "Give a URL or path (with '/' or '.'), or the name of a URL pattern "
                    "that takes no arguments (e.g. 'home' or 'accounts:profile').",
                )
            )
    return found


@register("bitbucket_install")
def check_descriptor(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    descriptor = app_settings.DESCRIPTOR
    found = []
    key = descriptor.get("key")
    if not isinstance(key, str) or ADDON_KEY_PATTERN.fullmatch(key) is None:
        found.append(
            _message(
                "E012",
                f"The descriptor has no valid key ({key!r}).",
                "Set BITBUCKET_INSTALL_ADDON_KEY, or BITBUCKET_INSTALL_DESCRIPTOR['key'] for "
                "an unregistered app: 1 to 64 letters, digits, '.', '_' or '-'.",
            )
        )
    for field in ("name", "description"):
        if not isinstance(descriptor.get(field), str) or not descriptor.get(field):
            found.append(
                _message(
                    "E013",
                    f"The descriptor has no {field}.",
                    f"Set BITBUCKET_INSTALL_DESCRIPTOR['{field}'].",
                )
            )
    contexts = descriptor.get("contexts")
    if (
        not isinstance(contexts, (list, tuple))
        or not contexts
        or not all(isinstance(context, str) and context in KNOWN_CONTEXTS for context in contexts)
    ):
        found.append(
            _message(
                "E014",
                f"The descriptor's contexts {descriptor.get('contexts')!r} are not valid.",
                'Use ["account"]; Bitbucket removed the "personal" context in 2023.',
            )
        )
    configured = getattr(settings, "BITBUCKET_INSTALL_DESCRIPTOR", {})
    if (
        not isinstance(configured, dict)
        or not isinstance(descriptor.get("modules"), dict)
        or not isinstance(descriptor.get("scopes"), list)
    ):
        found.append(
            _message(
                "E015",
                "BITBUCKET_INSTALL_DESCRIPTOR must be a dict, its modules a dict and its "
                "scopes a list.",
                "Check BITBUCKET_INSTALL_DESCRIPTOR, ['modules'] and ['scopes'].",
            )
        )
    app_owned = sorted(APP_OWNED_KEYS & set(descriptor))
    if app_owned:
        found.append(
            _message(
                "W004",
                f"BITBUCKET_INSTALL_DESCRIPTOR sets {', '.join(app_owned)}, which the app "
                "fills in itself; the setting's values are ignored.",
                "Remove them: baseUrl comes from BITBUCKET_INSTALL_BASE_URL, lifecycle "
                "points at the app's views, authentication is jwt.",
            )
        )
    return found
