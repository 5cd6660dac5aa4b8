"""The install button's looks in Chromium: the default (the design system's primary button
of today) and the legacy Atlaskit one, each with and without the Bitbucket logo, rendered by
the real tags in this process and shown on the demo server's origin (for its stylesheet).
Writes docs/images/button-appearances.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.middleware.csrf import get_token
from django.template import engines
from django.test import RequestFactory
from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DemoServer

pytestmark = pytest.mark.browser

STYLESHEET_PATH = "/static/bitbucket_install/bitbucket_install.css"
GALLERY = """{% load bitbucket_install %}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>The install button</title>
{{ before|safe }}{% bitbucket_install_stylesheet %}</head>
<body class="bbi-page"><main class="bbi-card">
<h1 class="bbi-title">The install button</h1>
<h2 class="bbi-subtitle">appearance="default" (the default)</h2>
<div class="bbi-actions" id="default">{% bitbucket_install_button %}
{% bitbucket_install_button logo=True %}</div>
<h2 class="bbi-subtitle">appearance="legacy"</h2>
<div class="bbi-actions" id="legacy">{% bitbucket_install_button appearance="legacy" %}
{% bitbucket_install_button appearance="legacy" logo=True %}</div>
</main></body></html>"""
# (Colours are polled: the button's background has a short transition.)
# A project's own rule, before the app's stylesheet: it wins all the same.
OVERRIDE = "<style>:root { --bbi-color-brand: #6554c0; --bbi-radius: 8px; }</style>"


def show(page: Page, server: DemoServer, before: str = "") -> None:
    request = RequestFactory().get("/")
    get_token(request)
    html = engines["django"].from_string(GALLERY).render({"before": before}, request)
    page.goto(server.url + "/")  # the origin the stylesheet comes from
    page.set_content(html)
    # Pressing a button here shows its pressed colour; it posts nowhere.
    page.evaluate(
        "() => document.querySelectorAll('form').forEach("
        "f => f.addEventListener('submit', e => e.preventDefault()))"
    )
    expect(page.locator("button")).to_have_count(4)


def test_default_and_legacy_looks(
    page: Page, demo_server: DemoServer, readme_images: Path
) -> None:
    show(page, demo_server)
    links = page.eval_on_selector_all("link[rel=stylesheet]", "ls => ls.map(l => l.href)")
    assert links == [demo_server.url + STYLESHEET_PATH]  # once, from the head, for 4 buttons

    plain, with_logo = page.locator("#default button").all()
    expect(plain).to_have_css("background-color", "rgb(12, 102, 228)")  # #0C66E4
    plain.hover()
    expect(plain).to_have_css("background-color", "rgb(0, 85, 204)")  # #0055CC
    page.mouse.down()
    expect(plain).to_have_css("background-color", "rgb(9, 50, 108)")  # #09326C
    page.mouse.up()
    expect(plain).to_have_css("border-radius", "3px")

    legacy, legacy_logo = page.locator("#legacy button").all()
    expect(legacy).to_have_css("background-color", "rgb(0, 82, 204)")  # #0052CC
    legacy.hover()
    expect(legacy).to_have_css("background-color", "rgb(0, 101, 255)")  # #0065FF

    for button in (with_logo, legacy_logo):
        logo = button.locator("svg.bbi-button__logo")
        expect(logo).to_be_visible()
        box = logo.bounding_box()
        assert box is not None
        assert (box["width"], box["height"]) == (16, 16)
        # The logo is decoration: the button's name is its label.
        expect(button).to_have_accessible_name("Connect to Bitbucket")
    for button in (plain, legacy):
        expect(button.locator("svg")).to_have_count(0)

    page.mouse.move(0, 0)
    page.set_viewport_size({"width": 640, "height": 400})
    box = page.locator("main").bounding_box()
    assert box is not None
    page.screenshot(
        path=str(readme_images / "button-appearances.png"),
        clip={"x": 0, "y": 0, "width": 640, "height": round(box["y"] + box["height"]) + 24},
    )


def test_custom_properties_override_the_look(page: Page, demo_server: DemoServer) -> None:
    show(page, demo_server, before=OVERRIDE)
    plain = page.locator("#default button").first
    expect(plain).to_have_css("background-color", "rgb(101, 84, 192)")
    expect(plain).to_have_css("border-radius", "8px")
    # The legacy look is a fixed one: it keeps its own blue.
    expect(page.locator("#legacy button").first).to_have_css("background-color", "rgb(0, 82, 204)")
