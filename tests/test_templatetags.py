"""``{% bitbucket_install_button %}``, ``{% bitbucket_install_stylesheet %}`` and
``{% bitbucket_install_url %}``."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.template import Context, Template, TemplateSyntaxError, engines
from django.test import RequestFactory, override_settings
from django.utils import translation

from bitbucket_install.exceptions import InstallLinkError
from bitbucket_install.templatetags.bitbucket_install import (
    bitbucket_install_button,
    bitbucket_install_stylesheet,
)

URL = (
    "https://bitbucket.org/site/addons/authorize?addon_key=example-app"
    "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
)
URL_IN_HTML = URL.replace("&", "&amp;")
STYLESHEET = "/static/bitbucket_install/bitbucket_install.css"
HOSTILE = '<script>alert(1)</script>"'
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass(frozen=True)
class Element:
    tag: str
    attrs: dict[str, str]
    ancestors: tuple[str, ...]


class Elements(HTMLParser):
    """Every element of a page with its attributes and the tags it sits in."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[Element] = []
        self.open: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.found.append(Element(tag, values, tuple(self.open)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open
        assert self.open[-1] == tag, f"</{tag}> closes <{self.open[-1]}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[Element]:
        return [element for element in self.found if element.tag == tag]

    def one(self, tag: str, **attrs: str) -> Element:
        matches = [
            element
            for element in self.all(tag)
            if all(element.attrs.get(name) == value for name, value in attrs.items())
        ]
        assert len(matches) == 1, matches
        return matches[0]


def assert_valid_button(page: Elements, *, action: str = "/bitbucket/install/") -> Element:
    """The button's markup: a POST form with a CSRF token, an Atlaskit-styled submit button,
    no <button> inside <a> and no link that starts an install, the app's own stylesheet and
    nothing from another host."""
    assert page.open == []
    form = page.one("form")
    assert form.attrs["method"] == "post"
    assert form.attrs["action"] == action
    token = page.one("input", name="csrfmiddlewaretoken")
    assert token.attrs["type"] == "hidden"
    assert len(token.attrs["value"]) >= 32
    assert "form" in token.ancestors
    button = page.one("button")
    assert button.attrs["type"] == "submit"
    assert {"ak-button", "ak-button__appearance-primary"} <= set(button.attrs["class"].split())
    assert "form" in button.ancestors
    assert "a" not in button.ancestors
    # No link starts an install (a GET would skip the CSRF check): only the form does.
    assert not [a for a in page.all("a") if a.attrs.get("href") == action]
    assert not [a for a in page.all("a") if "authorize" in a.attrs.get("href", "")]
    stylesheets = [e for e in page.all("link") if e.attrs.get("rel") == "stylesheet"]
    assert stylesheets
    assert {e.attrs["href"] for e in stylesheets} == {STYLESHEET}
    for element in page.found:
        for name in ("href", "src", "action"):
            value = element.attrs.get(name, "")
            assert not value.startswith(("http:", "https:", "//")), element
    assert page.all("script") == []
    return button


def render_with_request(source: str, context: dict[str, Any] | None = None) -> str:
    request = RequestFactory().get("/")
    return engines["django"].from_string(source).render(context or {}, request)


BUTTON = "{% load bitbucket_install %}{% bitbucket_install_button %}"


# --- the button -----------------------------------------------------------------------


def test_button_renders_a_csrf_protected_post_form() -> None:
    html = render_with_request(BUTTON)
    page = Elements(html)
    button = assert_valid_button(page)
    assert "".join(page.text).strip() == "Connect to Bitbucket"
    assert button.attrs["title"] == "Install Example app in your Bitbucket workspace"
    assert page.all("input") == [page.one("input", name="csrfmiddlewaretoken")]


def test_button_label_and_next() -> None:
    html = render_with_request(
        "{% load bitbucket_install %}{% bitbucket_install_button label='Add to Bitbucket' "
        "next='/dashboard/?tab=1' %}"
    )
    page = Elements(html)
    assert_valid_button(page)
    assert "".join(page.text).strip() == "Add to Bitbucket"
    next_input = page.one("input", name="next")
    assert next_input.attrs == {"type": "hidden", "name": "next", "value": "/dashboard/?tab=1"}
    assert "form" in next_input.ancestors


def test_button_label_and_next_positional() -> None:
    html = render_with_request(
        "{% load bitbucket_install %}{% bitbucket_install_button 'Go' '/x/' %}"
    )
    page = Elements(html)
    assert "".join(page.text).strip() == "Go"
    assert page.one("input", name="next").attrs["value"] == "/x/"


def test_button_empty_label_and_next_fall_back() -> None:
    html = render_with_request(
        "{% load bitbucket_install %}{% bitbucket_install_button label=label next=next %}",
        {"label": "", "next": None},
    )
    page = Elements(html)
    assert "".join(page.text).strip() == "Connect to Bitbucket"
    assert [e.attrs["name"] for e in page.all("input")] == ["csrfmiddlewaretoken"]


def test_button_escapes_a_hostile_descriptor_name() -> None:
    with override_settings(
        BITBUCKET_INSTALL_DESCRIPTOR={"name": HOSTILE, "description": "d"},
    ):
        html = render_with_request(BUTTON)
    assert "<script>" not in html
    assert HOSTILE not in html
    assert f'title="Install {HOSTILE_ESCAPED} in your Bitbucket workspace"' in html
    page = Elements(html)
    assert_valid_button(page)
    assert page.one("button").attrs["title"] == f"Install {HOSTILE} in your Bitbucket workspace"


def test_button_escapes_a_hostile_label_and_next() -> None:
    hostile_next = '/x?a=1&b="><script>alert(1)</script>'
    html = render_with_request(
        "{% load bitbucket_install %}{% bitbucket_install_button label=label next=next %}",
        {"label": HOSTILE, "next": hostile_next},
    )
    assert "<script>" not in html
    assert HOSTILE not in html
    assert hostile_next not in html
    assert f">{HOSTILE_ESCAPED}</button>" in html
    assert 'value="/x?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    page = Elements(html)
    assert_valid_button(page)
    assert "".join(page.text).strip() == HOSTILE
    assert page.one("input", name="next").attrs["value"] == hostile_next


def test_button_without_app_name_has_no_title() -> None:
    with override_settings(
        BITBUCKET_INSTALL_ADDON_KEY=None,
        BITBUCKET_INSTALL_DESCRIPTOR={"description": "d"},
    ):
        html = render_with_request(BUTTON)
    assert "title" not in Elements(html).one("button").attrs


def test_button_template_is_overridable() -> None:
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [
                    (
                        "django.template.loaders.locmem.Loader",
                        {
                            "bitbucket_install/button.html": (
                                '<form method="post" action="{{ action }}">{% csrf_token %}'
                                '<button class="mine">{{ label }}</button></form>'
                            )
                        },
                    ),
                    "django.template.loaders.app_directories.Loader",
                ]
            },
        }
    ]
    with override_settings(TEMPLATES=templates):
        html = render_with_request(BUTTON)
    page = Elements(html)
    assert page.one("button").attrs == {"class": "mine"}
    assert page.one("form").attrs["action"] == "/bitbucket/install/"


def test_stylesheet_is_shipped_with_the_app() -> None:
    found = finders.find("bitbucket_install/bitbucket_install.css")
    assert isinstance(found, str)
    css = Path(found).read_text(encoding="utf-8")
    assert ".ak-button {" in css
    assert ".ak-button__appearance-primary {" in css
    # The design tokens, as custom properties a project overrides with a plain :root rule.
    tokens = css.split(":where(:root) {", 1)[1].split("}", 1)[0]
    for declaration in (
        "--bbi-color-text: #172b4d;",
        "--bbi-color-text-subtle: #44546f;",
        "--bbi-color-surface: #ffffff;",
        "--bbi-color-background: #f7f8f9;",
        "--bbi-color-brand: #0c66e4;",
        "--bbi-color-brand-hovered: #0055cc;",
        "--bbi-color-brand-pressed: #09326c;",
        "--bbi-color-success: #22a06b;",
        "--bbi-color-danger: #c9372c;",
        "--bbi-color-warning: #e2b203;",
        "--bbi-color-border: #dcdfe4;",
        "--bbi-radius: 3px;",
    ):
        assert declaration in tokens
    # The legacy look keeps Atlaskit's primary blue.
    legacy = css.split(".bbi-button--legacy {", 1)[1].split("}", 1)[0]
    assert "--bbi-color-brand: #0052cc;" in legacy
    assert "@import" not in css
    assert "@font-face" not in css
    assert "http" not in css
    assert "url(" not in css


def test_button_follows_the_active_language() -> None:
    with translation.override("fr"):
        french = Elements(render_with_request(BUTTON))
    english = Elements(render_with_request(BUTTON))
    assert "".join(french.text).strip() == "Connecter à Bitbucket"
    assert french.one("button").attrs["title"] == (
        "Installer Example app dans votre espace de travail Bitbucket"
    )
    assert "".join(english.text).strip() == "Connect to Bitbucket"


# --- appearance, logo ---------------------------------------------------------------------


def test_button_default_appearance_has_no_logo() -> None:
    page = Elements(render_with_request(BUTTON))
    classes = page.one("button").attrs["class"].split()
    assert "bbi-button" in classes
    assert "bbi-button--legacy" not in classes
    assert page.all("svg") == []


def test_button_legacy_appearance() -> None:
    html = render_with_request(
        "{% load bitbucket_install %}{% bitbucket_install_button appearance='legacy' %}"
    )
    page = Elements(html)
    button = assert_valid_button(page)
    assert "bbi-button--legacy" in button.attrs["class"].split()
    assert "".join(page.text).strip() == "Connect to Bitbucket"


def test_button_unknown_appearance_is_refused() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        render_with_request(
            "{% load bitbucket_install %}{% bitbucket_install_button appearance='pink' %}"
        )
    assert str(caught.value) == (
        'bitbucket_install_button: appearance must be one of "default", "legacy", not \'pink\'.'
    )


@pytest.mark.parametrize("appearance", ["default", "legacy"])
def test_button_logo_is_an_inline_decoration(appearance: str) -> None:
    html = render_with_request(
        "{% load bitbucket_install %}"
        f"{{% bitbucket_install_button appearance='{appearance}' logo=True label='Go' %}}"
    )
    page = Elements(html)
    assert_valid_button(page)
    svg = page.one("svg")
    assert "button" in svg.ancestors
    assert svg.attrs["aria-hidden"] == "true"
    assert svg.attrs["focusable"] == "false"
    # Drawn here: one path, no <use> or <image> of a file.
    assert [e.tag for e in page.found if "svg" in e.ancestors] == ["path"]
    assert "".join(page.text).strip() == "Go"
    assert html.index("</svg>") < html.index("Go</button>")


# --- the stylesheet, once a page -------------------------------------------------------------


def stylesheets(html: str) -> list[str]:
    return [e.attrs["href"] for e in Elements(html).all("link") if e.attrs["rel"] == "stylesheet"]


def test_stylesheet_tag() -> None:
    html = render_with_request("{% load bitbucket_install %}{% bitbucket_install_stylesheet %}")
    assert html == f'<link rel="stylesheet" href="{STYLESHEET}">'


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "{% bitbucket_install_stylesheet %}{% bitbucket_install_button %}", id="head"
        ),
        pytest.param(
            "{% bitbucket_install_button %}{% bitbucket_install_stylesheet %}", id="after"
        ),
        pytest.param(
            "{% bitbucket_install_button %}{% bitbucket_install_button %}", id="2-buttons"
        ),
        pytest.param(
            "{% bitbucket_install_stylesheet %}{% bitbucket_install_stylesheet %}", id="2-tags"
        ),
    ],
)
def test_a_page_links_the_stylesheet_once(source: str) -> None:
    html = render_with_request("{% load bitbucket_install %}" + source)
    assert stylesheets(html) == [STYLESHEET]


def test_button_without_the_tag_links_the_stylesheet_itself() -> None:
    html = render_with_request(BUTTON)
    assert stylesheets(html) == [STYLESHEET]
    assert html.startswith(f'<link rel="stylesheet" href="{STYLESHEET}">')


PAGE_TEMPLATES = {
    "base.html": (
        "{% load bitbucket_install %}<head>{% bitbucket_install_stylesheet %}</head>"
        "<body>{% block content %}{% endblock %}</body>"
    ),
    "page.html": (
        '{% extends "base.html" %}{% load bitbucket_install %}{% block content %}'
        '{% bitbucket_install_button %}{% include "partial.html" %}{% endblock %}'
    ),
    "partial.html": "{% load bitbucket_install %}<aside>{% bitbucket_install_button %}</aside>",
}


def test_the_stylesheet_mark_spans_extends_and_includes() -> None:
    """The head's link counts for the buttons of the page's blocks and of its includes;
    another render is another page."""
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                "loaders": [
                    ("django.template.loaders.locmem.Loader", PAGE_TEMPLATES),
                    "django.template.loaders.app_directories.Loader",
                ],
            },
        }
    ]
    with override_settings(TEMPLATES=templates):
        engine = engines["django"]
        request = RequestFactory().get("/")
        page = engine.get_template("page.html")
        first = page.render({}, request)
        second = page.render({}, request)
    assert len(Elements(first).all("button")) == 2
    assert stylesheets(first) == [STYLESHEET]
    assert first.index(STYLESHEET) < first.index("<body>")
    assert stylesheets(second) == [STYLESHEET]


def test_button_function_works_outside_django_templates() -> None:
    """Another engine calls the function with a plain mapping: the link is always in."""
    context = bitbucket_install_button(
        {"csrf_token": "token"}, "Go", "/next/", appearance="legacy", logo=True
    )
    assert context == {
        "stylesheet": STYLESHEET,
        "include_stylesheet": True,
        "action": "/bitbucket/install/",
        "csrf_token": "token",
        "label": "Go",
        "next": "/next/",
        "app_name": "Example app",
        "title": "Install Example app in your Bitbucket workspace",
        "appearance": "legacy",
        "button_class": "ak-button ak-button__appearance-primary bbi-button bbi-button--legacy",
        "logo": True,
    }
    assert str(bitbucket_install_stylesheet({})) == f'<link rel="stylesheet" href="{STYLESHEET}">'


# --- the plain URL ----------------------------------------------------------------------


def test_url_tag_gives_the_exact_url_escaped_in_html() -> None:
    html = Template("{% load bitbucket_install %}{% bitbucket_install_url %}").render(Context())
    assert html == URL_IN_HTML


def test_url_tag_as_variable() -> None:
    html = Template(
        "{% load bitbucket_install %}{% bitbucket_install_url as install %}"
        '<a href="{{ install }}">Install</a>'
    ).render(Context())
    assert html == f'<a href="{URL_IN_HTML}">Install</a>'
    assert Elements(html).one("a").attrs["href"] == URL


def test_url_tag_as_variable_is_the_raw_url_in_the_context() -> None:
    context = Context()
    Template("{% load bitbucket_install %}{% bitbucket_install_url as install %}").render(context)
    assert context["install"] == URL


def test_url_tag_without_autoescape_is_raw() -> None:
    html = Template(
        "{% load bitbucket_install %}{% autoescape off %}{% bitbucket_install_url %}"
        "{% endautoescape %}"
    ).render(Context())
    assert html == URL


@override_settings(
    BITBUCKET_INSTALL_ADDON_KEY=None,
    BITBUCKET_INSTALL_DESCRIPTOR_URI="https://app.example.com/bitbucket/atlassian-connect.json",
)
def test_url_tag_for_an_unregistered_app() -> None:
    html = Template("{% load bitbucket_install %}{% bitbucket_install_url %}").render(Context())
    assert html == (
        "https://bitbucket.org/site/addons/authorize"
        "?descriptor_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fatlassian-connect.json"
        "&amp;redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
    )


@override_settings(
    BITBUCKET_INSTALL_AUTHORIZE_URL="https://bitbucket.example.test/a?x=1&y=2",
    BITBUCKET_INSTALL_BITBUCKET_ORIGINS=["https://bitbucket.example.test"],
)
def test_url_tag_follows_settings() -> None:
    html = Template("{% load bitbucket_install %}{% bitbucket_install_url %}").render(Context())
    assert html == (
        "https://bitbucket.example.test/a?x=1&amp;y=2&amp;addon_key=example-app"
        "&amp;redirect_uri=https%3A%2F%2Fapp.example.com%2Fbitbucket%2Fcallback%2F"
    )


@override_settings(BITBUCKET_INSTALL_REDIRECT_URI="https://evil.test/cb/")
def test_url_tag_refuses_a_broken_configuration() -> None:
    template = Template("{% load bitbucket_install %}{% bitbucket_install_url %}")
    with pytest.raises(InstallLinkError) as caught:
        template.render(Context())
    assert caught.value.rule == "redirect_uri_under_base_url"
