"""The app's pages are Django templates; this renders them in any project.

With a ``DjangoTemplates`` backend among the project's ``TEMPLATES``, the project's engines
render them, as ``django.shortcuts.render`` would (a project's own copy of a template
overrides the app's). A project whose only backend is Jinja2 has no engine that reads
them: the app then renders them with a Django engine of its own, which finds templates in
the installed apps as ``APP_DIRS`` does, so a copy in a project app still overrides.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template import engines, loader
from django.template.backends.django import DjangoTemplates


def project_has_django_templates() -> bool:
    return any(isinstance(engine, DjangoTemplates) for engine in engines.all())


@lru_cache(maxsize=1)
def own_engine() -> DjangoTemplates:
    """The app's engine for a project without one: Django's defaults, with the installed
    apps' templates and tag libraries. Built once, as it caches the parsed templates."""
    return DjangoTemplates(
        {"NAME": "bitbucket_install", "DIRS": [], "APP_DIRS": True, "OPTIONS": {}}
    )


def render_to_string(
    template_name: str, context: dict[str, Any] | None = None, request: HttpRequest | None = None
) -> str:
    if project_has_django_templates():
        return loader.render_to_string(template_name, context, request)
    return own_engine().get_template(template_name).render(context, request)


def render(
    request: HttpRequest,
    template_name: str,
    context: dict[str, Any] | None = None,
    status: int | None = None,
) -> HttpResponse:
    """``django.shortcuts.render`` for the app's own templates."""
    return HttpResponse(render_to_string(template_name, context, request), status=status)
