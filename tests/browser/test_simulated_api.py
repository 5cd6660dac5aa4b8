"""End to end in Chromium, against the example project served by ``manage.py demo``: install
through the simulator, call its Bitbucket API through the client from the example's API
page, send a webhook from the simulator's console, and see it on the example's webhooks page
(recorded by its receiver). Each of the three pages at 1280 and 375 px: styled, no
horizontal overflow, no serious axe-core violation; screenshots in artifacts/browser/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.pages import grant, log_in, start_install, url_of
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

    from tests.browser.conftest import Contexts, DemoServer, Steps

pytestmark = pytest.mark.browser

WORKSPACE = "Simulated API workspace"
CONSOLE_PATH = "/bitbucket/simulator/console/"


def check_page(page: Page, steps: Steps, images: Path, name: str) -> None:
    """Styled, no overflow, screenshots (the docs' too) and no blocking axe violation at
    both widths."""
    assert_styled(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        assert_no_horizontal_overflow(page)
        steps.shot(page, f"{name}-{width}")
        page.screenshot(
            path=str(images / f"{name}-{width}.png"), full_page=True, animations="disabled"
        )
        results: dict[str, Any] = Axe().run(page).response
        (steps.directory / f"axe-{name}-{width}.json").write_text(json.dumps(results, indent=2))
        assert results["passes"]
        blocking = [v for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"{name} at {width} px:\n" + "\n".join(map(describe, blocking))
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})


def test_install_call_the_api_send_a_webhook_and_see_it(
    contexts: Contexts, demo_server: DemoServer, steps: Steps, readme_images: Path
) -> None:
    page = contexts.new().new_page()
    log_in(page, demo_server)
    start_install(page, demo_server)
    grant(page, demo_server, WORKSPACE)
    [row] = [row for row in demo_server.installations() if row["principal_name"] == WORKSPACE]
    client_key = row["client_key"]

    # The API page: the client's signed calls and the JWT grant, all answered.
    page.goto("/api/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Bitbucket's API, called as an installation"
    )
    expect(page.locator("#api-installation")).to_contain_text(WORKSPACE)
    expect(page.locator("#call-user pre")).to_contain_text('"display_name": "Simulated user"')
    expect(page.locator("#call-workspaces pre")).to_contain_text(WORKSPACE)
    expect(page.locator("#call-repositories pre")).to_contain_text(
        "simulated-api-workspace/website"
    )
    expect(page.locator("#call-access_token pre")).to_contain_text('"length"')
    expect(page.locator("#api-calls [role=alert]")).to_have_count(0)
    check_page(page, steps, readme_images, "example-api")

    # The console: a signed repo:push to the site's webhook view, and its answer.
    page.goto(CONSOLE_PATH)
    expect(page.get_by_role("heading", level=1)).to_have_text("Simulator console")
    expect(page.locator("#installations")).to_contain_text(client_key)
    page.locator("#client-key").select_option(client_key)
    page.locator("#event").select_option("repo:push")
    page.get_by_role("button", name="Send webhook").click()
    page.wait_for_url(url_of(demo_server, CONSOLE_PATH))
    expect(page.locator("#webhook-result")).to_contain_text("The site answered HTTP 204.")
    expect(page.locator("#sent-event")).to_have_text("repo:push")
    request_uuid = page.locator("#sent-request-uuid").inner_text()
    check_page(page, steps, readme_images, "simulator-console")

    # The 429 switch, set and shown (the API tests check what it does to calls).
    page.locator("#calls").fill("2")
    page.get_by_role("button", name="Set").click()
    expect(page.locator("#rate-limit-result")).to_have_text("The next 2 API calls answer 429.")
    page.locator("#calls").fill("0")
    page.get_by_role("button", name="Set").click()
    expect(page.locator("#rate-limited-calls")).to_have_text("API calls are answered normally.")

    # A redelivery of the same X-Request-UUID: answered, and not recorded again.
    page.locator("#client-key").select_option(client_key)
    page.locator("#request-uuid").fill(request_uuid)
    page.get_by_role("button", name="Send webhook").click()
    expect(page.locator("#webhook-result")).to_contain_text("The site answered HTTP 204.")

    # The webhooks page: the delivery, recorded once by the example's receiver.
    page.goto("/webhooks/")
    deliveries = page.locator("#deliveries > li", has_text=WORKSPACE)
    expect(deliveries).to_have_count(1)
    expect(deliveries.locator(".demo-event")).to_have_text("repo:push")
    expect(deliveries.locator("pre")).to_contain_text("simulated-api-workspace/website")
    expect(page.locator("#console-link")).to_have_attribute("href", CONSOLE_PATH)
    check_page(page, steps, readme_images, "example-webhooks")
