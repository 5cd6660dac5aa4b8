"""``{% bitbucket_install_button %}`` and ``{% bitbucket_install_url %}``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from django import template
from django.conf import settings
from django.core.files.storage import Storage, storages
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.translation import get_language, gettext

from bitbucket_install.conf import app_settings
from bitbucket_install.views import authorize_url

register = template.Library()

STYLESHEET = "bitbucket_install/bitbucket_install.css"
# URL of the stylesheet by static files storage (Django makes a new one whenever STORAGES,
# STATIC_URL or STATIC_ROOT change) and by DEBUG (manifest storages answer by it).
_stylesheet_urls: WeakKeyDictionary[Storage, dict[bool, str]] = WeakKeyDictionary()


@register.inclusion_tag("bitbucket_install/button.html", takes_context=True)
def bitbucket_install_button(
    context: template.Context, label: str | None = None, next: str | None = None
) -> dict[str, Any]:
    """The install button: a form that POSTs to the ``start`` view (CSRF-protected)."""
    app_name = app_settings.app_name()
    return {
        "stylesheet": stylesheet_url(),
        "action": start_url(),
        "csrf_token": context.get("csrf_token"),
        "label": label or gettext("Connect to Bitbucket"),
        "next": next or "",
        "app_name": app_name,
        # Translated here rather than by {% blocktranslate %} in the template, which costs
        # several times as much on every render (same message id, same catalogs).
        "title": gettext("Install %(app)s in your Bitbucket workspace") % {"app": app_name}
        if app_name
        else "",
    }


def stylesheet_url() -> str:
    """``{% static "bitbucket_install/bitbucket_install.css" %}``, worked out once per
    static files storage instead of on every render of a page."""
    by_debug = _stylesheet_urls.setdefault(storages["staticfiles"], {})
    debug = bool(settings.DEBUG)
    if debug not in by_debug:
        by_debug[debug] = static(STYLESHEET)
    return by_debug[debug]


def start_url() -> str:
    """``reverse("bitbucket_install:start")``, worked out once per URLconf, script prefix and
    language (everything a reverse depends on) instead of on every render of a page."""
    return _reverse(
        "bitbucket_install:start",
        get_urlconf() or settings.ROOT_URLCONF,
        get_script_prefix(),
        get_language(),
    )


@lru_cache(maxsize=64)
def _reverse(viewname: str, urlconf: Any, script_prefix: str, language: str | None) -> str:
    # script_prefix and language are part of the cache key; reverse reads them itself.
    return reverse(viewname, urlconf=urlconf)


@register.simple_tag
def bitbucket_install_url() -> str:
    """The plain Bitbucket authorize URL, for links outside this site (``as var`` works)."""
    return authorize_url()
