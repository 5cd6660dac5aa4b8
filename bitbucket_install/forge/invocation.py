"""A typed view of a verified Forge Invocation Token's claims (pure: no Django, no crypto).

Only what the claims say, normalised: the installation id (``app.installationId``, which
must agree with ``app.installation.id`` when both are there), the environment, the API
base URL to call with the tokens Forge sent, the Bitbucket workspace (without braces) and
the module invoked. ``claims`` keeps everything, for what this view does not name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from bitbucket_install.exceptions import InvocationRefused

APP_ARI_PREFIX = "ari:cloud:ecosystem::app/"
APP_ARI_PATTERN = re.compile(
    re.escape(APP_ARI_PREFIX) + r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
)
BITBUCKET_CONTEXT = "bitbucket"
# Isolated Cloud labels, as Atlassian allows them (a label ends up in a URL).
IC_LABEL_PATTERN = re.compile(r"[a-z0-9_-]{1,50}")


def is_app_ari(value: object) -> TypeGuard[str]:
    """Is ``value`` a Forge app ARI, ``ari:cloud:ecosystem::app/<uuid>``?"""
    return isinstance(value, str) and APP_ARI_PATTERN.fullmatch(value) is not None


def is_ic_label(value: object) -> TypeGuard[str]:
    """Is ``value`` an Isolated Cloud label as Atlassian allows them?"""
    return isinstance(value, str) and IC_LABEL_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class Invocation:
    """What a verified FIT says. Strings are as sent (the workspace without braces);
    ``None`` where the token does not say."""

    app_id: str
    installation_id: str
    environment_type: str | None
    environment_id: str | None
    api_base_url: str | None
    workspace_id: str | None
    module_type: str | None
    module_key: str | None
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], app_id: str) -> Invocation:
        """The view of ``claims``, verified for the app ``app_id``; ``InvocationRefused``
        when ``app.id`` names another app, or the installation is missing or its two ids
        disagree."""
        app = _mapping(claims.get("app"))
        if app.get("id", app_id) != app_id:
            raise InvocationRefused("app_mismatch")
        installation = _mapping(app.get("installation"))
        installation_id = _text(app.get("installationId"))
        nested_id = _text(installation.get("id"))
        if installation_id is None:
            installation_id = nested_id
        elif nested_id is not None and nested_id != installation_id:
            raise InvocationRefused("installation_mismatch")
        if installation_id is None:
            raise InvocationRefused("installation_missing")
        contexts = [_mapping(item) for item in _list(installation.get("contexts"))]
        bitbucket = next((c for c in contexts if c.get("name") == BITBUCKET_CONTEXT), {})
        environment = _mapping(app.get("environment"))
        module = _mapping(app.get("module"))
        workspace = _text(bitbucket.get("workspaceId")) or _text(
            _mapping(claims.get("context")).get("workspaceId")
        )
        return cls(
            app_id=app_id,
            installation_id=installation_id,
            environment_type=_text(environment.get("type")),
            environment_id=_text(environment.get("id")),
            api_base_url=_https(app.get("apiBaseUrl")) or _https(bitbucket.get("apiBaseUrl")),
            workspace_id=None if workspace is None else workspace.strip("{}") or None,
            module_type=_text(module.get("type")),
            module_key=_text(module.get("key")),
            claims=claims,
        )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _https(value: object) -> str | None:
    """``value`` if it is an https URL with a host: the tokens go nowhere else."""
    text = _text(value)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:  # "https://[not-an-address"
        return None
    return text if parts.scheme == "https" and parts.hostname else None
