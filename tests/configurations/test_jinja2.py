"""Jinja2 templates: ``bitbucket_install.jinja2.environment`` gives a project's Jinja2
backend the globals ``bitbucket_install_button()`` and ``bitbucket_install_url()``, which
render what the Django tags render; and in a project whose only backend is Jinja2, the
app's own pages (Django templates) still render, with a Django engine of the app's own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.template import engines
from django.test import RequestFactory
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.jinja2 import add_globals
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.views import authorize_url
from tests.configurations.conftest import JINJA2_DIR
from tests.configurations.site import Site, install, press_button, without_csrf_token
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)

JINJA2_BACKEND: dict[str, Any] = {
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "NAME": "jinja2",
    "DIRS": [JINJA2_DIR],
    "APP_DIRS": False,
    "OPTIONS": {"environment": "bitbucket_install.jinja2.environment"},
}
DJANGO_BUTTON = (
    '{% load bitbucket_install %}{% bitbucket_install_button label="Go" next="/after/" %}'
)
JINJA2_BUTTON = '{{ bitbucket_install_button(label="Go", next="/after/") }}'
CSRF_VALUE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def jinja2_only(site_settings: Settings) -> None:
    site_settings.TEMPLATES = [JINJA2_BACKEND]


@pytest.fixture
def both_backends(site_settings: Settings) -> None:
    site_settings.TEMPLATES = [{**site_settings.TEMPLATES[0], "NAME": "django"}, JINJA2_BACKEND]


def page_request() -> HttpRequest:
    return RequestFactory().get("/", HTTP_HOST="app.example.com")


def rendered(engine: str, source: str, request: HttpRequest) -> str:
    html: str = engines[engine].from_string(source).render({}, request)
    return html


# --- a project with both backends -------------------------------------------------------------


@pytest.mark.usefixtures("both_backends")
def test_jinja2_button_is_the_django_tags_markup() -> None:
    request = page_request()
    from_django = rendered("django", DJANGO_BUTTON, request)
    from_jinja2 = rendered("jinja2", JINJA2_BUTTON, request)

    assert without_csrf_token(from_jinja2) == without_csrf_token(from_django)
    assert 'action="/bitbucket/install/"' in from_jinja2
    assert '<input type="hidden" name="next" value="/after/">' in from_jinja2
    assert ">Go</button>" in from_jinja2
    assert CSRF_VALUE.search(from_jinja2) is not None  # (the flow below POSTs it)


@pytest.mark.usefixtures("both_backends")
def test_jinja2_install_url_is_the_tags_url() -> None:
    request = page_request()
    from_django = rendered(
        "django", "{% load bitbucket_install %}{% bitbucket_install_url %}", request
    )
    from_jinja2 = rendered("jinja2", "{{ bitbucket_install_url() }}", request)
    assert from_jinja2 == from_django == authorize_url().replace("&", "&amp;")


def test_a_projects_button_html_is_used_by_the_jinja2_button_too(
    both_backends: None, site_settings: Settings, tmp_path: Path
) -> None:
    override = tmp_path / "bitbucket_install" / "button.html"
    override.parent.mkdir()
    override.write_text('<form class="project-button" action="{{ action }}"></form>')
    site_settings.TEMPLATES = [
        {**site_settings.TEMPLATES[0], "DIRS": [tmp_path]},
        *site_settings.TEMPLATES[1:],
    ]
    request = page_request()

    from_jinja2 = rendered("jinja2", JINJA2_BUTTON, request)

    assert from_jinja2 == '<form class="project-button" action="/bitbucket/install/"></form>'
    assert from_jinja2 == rendered("django", DJANGO_BUTTON, request)


def test_add_globals_to_a_projects_own_environment() -> None:
    env = jinja2.Environment(autoescape=True)
    assert add_globals(env) is env
    template = env.from_string(
        '{{ bitbucket_install_url() }}|{{ bitbucket_install_button(label="<Go>") }}'
    )

    url, button = template.render().split("|", 1)

    assert url == str(markupsafe.escape(authorize_url()))
    # No request, no CSRF token: as the Django tag rendered without one.
    assert "csrfmiddlewaretoken" not in button
    assert ">&lt;Go&gt;</button>" in button


# --- a project whose only backend is Jinja2 ---------------------------------------------------


@pytest.mark.usefixtures("jinja2_only")
def test_install_from_a_jinja2_page(site: Site, sent_signals: SignalRecorder) -> None:
    """The button on the project's Jinja2 page; the start view, the simulator's pages and
    the result page are the app's Django templates, rendered by the app's own engine."""
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/"))

    assert done.consent.status == 200
    assert "Install Example app?" in done.consent.text
    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user


@pytest.mark.usefixtures("jinja2_only")
def test_start_page_and_failure_page_without_a_django_backend(
    site: Site, sent_signals: SignalRecorder
) -> None:
    browser = site.browser()
    start = browser.get(site.url(reverse("bitbucket_install:start")))
    assert start.status == 200
    assert "Bitbucket will ask you to choose a workspace" in start.text
    _page, to_bitbucket = press_button(browser, site.url(reverse("bitbucket_install:start")))
    consent = browser.get(to_bitbucket.location)
    denied = browser.submit(consent, consent.form(id="consent-form"), button=("action", "deny"))
    assert denied.status == 302

    returned = browser.get(denied.location)
    result = browser.get(returned.location)

    assert returned.status == 303
    assert result.status == 200
    assert "You chose not to give the app access" in result.text
    assert installation_rows() == []
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "access_denied"


@pytest.mark.usefixtures("jinja2_only")
def test_jinja2_only_button_is_the_same_markup(site_settings: Settings) -> None:
    request = page_request()
    from_jinja2 = rendered("jinja2", JINJA2_BUTTON, request)
    site_settings.TEMPLATES = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
    ]
    from_django = rendered("django", DJANGO_BUTTON, request)
    assert without_csrf_token(from_jinja2) == without_csrf_token(from_django)
