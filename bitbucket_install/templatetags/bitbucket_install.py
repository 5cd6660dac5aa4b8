"""``{% bitbucket_install_button %}``, ``{% bitbucket_install_stylesheet %}`` and
``{% bitbucket_install_url %}``.

The functions stay plain callables (``bitbucket_install_button``, ``bitbucket_install_url``,
``stylesheet_url``, ``start_url``) so that other template engines can reuse them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from weakref import WeakKeyDictionary

from django import template
from django.conf import settings
from django.core.files.storage import Storage, storages
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import get_language, gettext

from bitbucket_install.conf import app_settings
from bitbucket_install.views import authorize_url

register = template.Library()

STYLESHEET = "bitbucket_install/bitbucket_install.css"
# The button's classes by appearance: "default" is the design system's primary button of
# today, "legacy" the Atlaskit one of before the design tokens.
BUTTON_CLASSES = {
    "default": "ak-button ak-button__appearance-primary bbi-button",
    "legacy": "ak-button ak-button__appearance-primary bbi-button bbi-button--legacy",
}
# Marks, in the render context of a page, that its stylesheet <link> is out already.
STYLESHEET_OUT = "bitbucket_install.stylesheet_out"
# URL of the stylesheet by static files storage (Django makes a new one whenever STORAGES,
# STATIC_URL or STATIC_ROOT change) and by DEBUG (manifest storages answer by it).
_stylesheet_urls: WeakKeyDictionary[Storage, dict[bool, str]] = WeakKeyDictionary()


@register.inclusion_tag("bitbucket_install/button.html", takes_context=True)
def bitbucket_install_button(
    context: Any,
    label: str | None = None,
    next: str | None = None,
    *,
    appearance: str = "default",
    logo: bool = False,
) -> dict[str, Any]:
    """The install button: a form that POSTs to the ``start`` view (CSRF-protected).

    ``appearance`` is ``"default"`` or ``"legacy"``; ``logo`` puts the Bitbucket mark before
    the label. The stylesheet's <link> comes with the first button of a page unless
    ``{% bitbucket_install_stylesheet %}`` put it in the page's head already."""
    try:
        button_class = BUTTON_CLASSES[appearance]
    except KeyError:
        choices = ", ".join(f'"{name}"' for name in BUTTON_CLASSES)
        raise template.TemplateSyntaxError(
            f"bitbucket_install_button: appearance must be one of {choices}, not {appearance!r}."
        ) from None
    app_name = app_settings.app_name()
    language = get_language()
    default_label, title = _texts(language)
    return {
        "stylesheet": stylesheet_url(),
        "include_stylesheet": not _stylesheet_already_out(context),
        "action": _start_url(language),
        "csrf_token": context.get("csrf_token"),
        "label": label or default_label,
        "next": next or "",
        "app_name": app_name,
        "title": title % {"app": app_name} if app_name else "",
        "appearance": appearance,
        "button_class": button_class,
        "logo": bool(logo),
    }


@register.simple_tag(takes_context=True)
def bitbucket_install_stylesheet(context: Any) -> SafeString:
    """The stylesheet's <link>, for the page's <head>; nothing if the page has it already."""
    if _stylesheet_already_out(context):
        return SafeString("")
    return format_html('<link rel="stylesheet" href="{}">', stylesheet_url())


def _stylesheet_already_out(context: Any) -> bool:
    """Has this page's stylesheet <link> been written already? (It has, from now on.)

    The mark goes in the bottom layer of the render context: Django gives each template it
    renders ({% extends %} aside) a layer of its own on top, and shares the bottom one with
    every template of the page, included ones and inclusion tags' too. Without a Django
    template context (another engine calling these functions) every button has its link."""
    render_context = getattr(context, "render_context", None)
    if render_context is None:
        return False
    page = render_context.dicts[0]
    if page.get(STYLESHEET_OUT):
        return True
    page[STYLESHEET_OUT] = True
    return False


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
    return _start_url(get_language())


def _start_url(language: str | None) -> str:
    return _reverse(
        "bitbucket_install:start",
        get_urlconf() or settings.ROOT_URLCONF,
        get_script_prefix(),
        language,
    )


@lru_cache(maxsize=64)
def _reverse(viewname: str, urlconf: Any, script_prefix: str, language: str | None) -> str:
    # script_prefix and language are part of the cache key; reverse reads them itself.
    return reverse(viewname, urlconf=urlconf)


@lru_cache(maxsize=64)
def _texts(language: str | None) -> tuple[str, str]:
    """The button's default label and its title's format, translated into ``language``.

    Worked out once per language rather than on every render: {% blocktranslate %} in the
    template costs several times as much, and gettext itself a good part of a render. The
    catalogues do not change while a site runs; tests that change them clear this below."""
    # language is the cache key; gettext reads the active language itself.
    return gettext("Connect to Bitbucket"), gettext("Install %(app)s in your Bitbucket workspace")


@receiver(setting_changed)
def _forget_texts(*, setting: str, **kwargs: Any) -> None:
    if setting in {"INSTALLED_APPS", "LANGUAGE_CODE", "LANGUAGES", "LOCALE_PATHS", "USE_I18N"}:
        _texts.cache_clear()


@register.simple_tag
def bitbucket_install_url() -> str:
    """The plain Bitbucket authorize URL, for links outside this site (``as var`` works)."""
    return authorize_url()
