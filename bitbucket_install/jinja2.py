"""The install button and the install URL in Jinja2 templates.

A project whose templates are Jinja2 gives its backend this module's environment::

    TEMPLATES = [
        {
            "BACKEND": "django.template.backends.jinja2.Jinja2",
            "APP_DIRS": True,
            "OPTIONS": {"environment": "bitbucket_install.jinja2.environment"},
        },
    ]

or, with an environment function of its own, calls ``add_globals(env)`` in it. Templates
then have ``{{ bitbucket_install_button() }}`` (also ``label=`` and ``next=``, as the tag)
and ``{{ bitbucket_install_url() }}``. The button is the app's own
``bitbucket_install/button.html`` (a Django template, overridable as usual) with the
context of ``{% bitbucket_install_button %}``, so both give the same markup.

Only a project that uses Jinja2 imports this module; the app does not depend on Jinja2.
"""

from __future__ import annotations

from typing import Any

import jinja2
from django import template
from markupsafe import Markup

from bitbucket_install.templatetags import bitbucket_install as tags
from bitbucket_install.templating import render_to_string

BUTTON_TEMPLATE = "bitbucket_install/button.html"


def environment(**options: Any) -> jinja2.Environment:
    """A Jinja2 environment with the app's globals: the backend's ``"environment"``."""
    return add_globals(jinja2.Environment(**options))  # noqa: S701 (Django passes autoescape)


def add_globals(env: jinja2.Environment) -> jinja2.Environment:
    """Add ``bitbucket_install_button`` and ``bitbucket_install_url`` to ``env``."""
    env.globals["bitbucket_install_button"] = bitbucket_install_button
    env.globals["bitbucket_install_url"] = tags.bitbucket_install_url
    return env


@jinja2.pass_context
def bitbucket_install_button(
    context: jinja2.runtime.Context, label: str | None = None, next: str | None = None
) -> Markup:
    """``{% bitbucket_install_button %}``: the CSRF token comes from the template's context,
    where Django's Jinja2 backend puts it for a template rendered with a request."""
    tag_context = template.Context({"csrf_token": context.get("csrf_token")})
    button = tags.bitbucket_install_button(tag_context, label=label, next=next)
    # Django's template escaped every value; the result is safe markup.
    return Markup(render_to_string(BUTTON_TEMPLATE, button))  # noqa: S704
