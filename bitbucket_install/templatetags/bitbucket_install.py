"""``{% bitbucket_install_button %}`` and ``{% bitbucket_install_url %}``."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.translation import gettext

from bitbucket_install.conf import app_settings
from bitbucket_install.views import authorize_url

register = template.Library()


@register.inclusion_tag("bitbucket_install/button.html", takes_context=True)
def bitbucket_install_button(
    context: template.Context, label: str | None = None, next: str | None = None
) -> dict[str, Any]:
    """The install button: a form that POSTs to the ``start`` view (CSRF-protected)."""
    return {
        "action": reverse("bitbucket_install:start"),
        "csrf_token": context.get("csrf_token"),
        "label": label or gettext("Connect to Bitbucket"),
        "next": next or "",
        "app_name": app_settings.DESCRIPTOR.get("name") or "",
    }


@register.simple_tag
def bitbucket_install_url() -> str:
    """The plain Bitbucket authorize URL, for links outside this site (``as var`` works)."""
    return authorize_url()
