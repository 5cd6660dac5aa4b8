"""An install begun on Bitbucket's side, in Chromium: the simulator console's "Install from
Bitbucket", Grant, the descriptor's postInstallRedirect to the landing, "Sign in to
connect", the login, back on the landing, "Connect <workspace>", the result page.

The landing's pages (signed out, the offer, nothing found yet) at 1280 and 375 px:
docs/images/landing-<state>-<width>.png, styled, no horizontal overflow, no axe-core
violation of impact "serious" or "critical".
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.pages import RESULT_PATH, url_of
from tests.browser.test_pages import (
    BLOCKING_IMPACTS,
    HEIGHT,
    WIDTHS,
    assert_no_horizontal_overflow,
    assert_styled,
    describe,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DemoServer, Steps

pytestmark = pytest.mark.browser

CONSOLE_PATH = "/bitbucket/simulator/console/"
LANDING_PATH = "/bitbucket/landing/"
WORKSPACE = "Landing workspace"
USER = ("lin", "lin-browser-test-password")


def look_at(page: Page, name: str, steps: Steps, readme_images: Path, notes: list[str]) -> None:
    """Both widths: a screenshot in docs/images, no overflow, axe without blocking issues."""
    assert_styled(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        assert_no_horizontal_overflow(page)
        page.screenshot(
            path=str(readme_images / f"{name}-{width}.png"), full_page=True, animations="disabled"
        )
        results = Axe().run(page).response
        (steps.directory / f"axe-{name}-{width}.json").write_text(json.dumps(results, indent=2))
        assert results["testEngine"]["name"] == "axe-core"
        assert results["passes"]
        violations: list[dict[str, Any]] = results["violations"]
        blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
        notes.extend(
            f"{name} at {width} px: {describe(v)}" for v in violations if v not in blocking
        )
        assert not blocking, f"{name} at {width} px:\n" + "\n".join(describe(v) for v in blocking)


def test_install_from_bitbucket_land_sign_in_and_connect(
    page: Page,
    demo_server: DemoServer,
    steps: Steps,
    readme_images: Path,
    accessibility_notes: list[str],
) -> None:
    demo_server.create_user(*USER)
    page.goto(CONSOLE_PATH)
    page.locator("#install-from-bitbucket").click()
    expect(page.locator("#consent-title")).to_have_text("Install Example app?")
    page.locator("#workspace").fill(WORKSPACE)
    expect(page.locator("#send-jwt")).to_be_checked()
    expect(page.locator("#follow-redirect")).to_be_checked()
    steps.shot(page, "consent")
    page.get_by_role("button", name="Grant access").click()

    # The landing's query (and its jwt) is gone from the address bar.
    page.wait_for_url(url_of(demo_server, LANDING_PATH))
    expect(page.locator("#landing")).to_have_attribute("data-state", "signed_out")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"The app is installed on {WORKSPACE}"
    )
    expect(page.locator("#installed-by")).to_have_text("Installed on Bitbucket by Simulated user.")
    look_at(page, "landing-signed-out", steps, readme_images, accessibility_notes)

    page.locator("#sign-in-link").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(USER[0])
    page.get_by_label("Password").fill(USER[1])
    page.locator("#login").click()
    page.wait_for_url(url_of(demo_server, LANDING_PATH))
    expect(page.locator("#landing")).to_have_attribute("data-state", "offer")
    button = page.get_by_role("button", name=f"Connect {WORKSPACE}")
    expect(button).to_be_visible()
    look_at(page, "landing-offer", steps, readme_images, accessibility_notes)

    button.click()
    page.wait_for_url(url_of(demo_server, RESULT_PATH))
    expect(page.locator("#connection")).to_have_attribute("data-connection", "connected")
    steps.shot(page, "connected")
    [row] = [r for r in demo_server.installations() if r["principal_name"] == WORKSPACE]
    assert row["user_id"] == demo_server.user_id(USER[0])
    assert row["confirmed_at"] is not None


def test_a_landing_that_finds_nothing_yet(
    page: Page,
    demo_server: DemoServer,
    steps: Steps,
    readme_images: Path,
    accessibility_notes: list[str],
) -> None:
    query = urlencode({"user_uuid": "{" + str(uuid.uuid4()) + "}", "user_type": "team"})
    response = page.goto(f"{LANDING_PATH}?{query}")
    assert response is not None
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Nothing found yet")
    expect(page.locator("[data-bbi-reload-note]")).to_be_visible()
    look_at(page, "landing-nothing", steps, readme_images, accessibility_notes)
    # It looks once more by itself, then says there is nothing.
    page.wait_for_url(lambda url: "retried=1" in url)
    expect(page.get_by_role("heading", level=1)).to_have_text("No new installation found")
    expect(page.locator("[data-bbi-reload-note]")).to_have_count(0)
    steps.shot(page, "nothing-after-reload")
