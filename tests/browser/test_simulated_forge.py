"""In Chromium, against the demo: a Connect install through the simulator, then the
simulator's Forge page installs the Forge app on the same workspace, which posts a signed
lifecycle event to the site; the admin lists the Forge installation, linked to the Connect
one. The Forge page at 1280 and 375 px: styled, no horizontal overflow, no serious axe-core
violation; screenshots in artifacts/browser/ and docs/images/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.browser.pages import ADMIN_VIEWPORT, grant, log_in, start_install, url_of
from tests.browser.test_simulated_api import check_page

if TYPE_CHECKING:
    from tests.browser.conftest import Contexts, DemoServer, Steps

pytestmark = pytest.mark.browser

WORKSPACE = "Forge migration workspace"
FORGE_PATH = "/bitbucket/simulator/forge/"


def test_the_forge_app_is_installed_and_linked(
    contexts: Contexts, demo_server: DemoServer, steps: Steps, readme_images: Path
) -> None:
    page = contexts.new().new_page()
    log_in(page, demo_server)
    start_install(page, demo_server)
    grant(page, demo_server, WORKSPACE)
    assert [row["principal_name"] for row in demo_server.installations()].count(WORKSPACE) == 1

    page.goto(FORGE_PATH)
    expect(page.get_by_role("heading", level=1)).to_have_text("Forge app")
    expect(page.locator("#app-id")).to_contain_text("ari:cloud:ecosystem::app/")
    page.locator("#forge-workspace").fill(WORKSPACE)
    page.get_by_role("button", name="Install (avi:forge:installed:app)").click()
    page.wait_for_url(url_of(demo_server, FORGE_PATH))
    expect(page.locator("#event-result")).to_contain_text("The site answered HTTP 204.")
    expect(page.locator("#sent-event")).to_have_text("avi:forge:installed:app")
    installation_id = page.locator("#sent-installation").inner_text()
    expect(page.locator("#forge-installations")).to_contain_text(installation_id)
    check_page(page, steps, readme_images, "simulator-forge")

    # The admin: the Forge installation, linked to the Connect installation of its workspace.
    page.set_viewport_size(ADMIN_VIEWPORT)
    page.goto("/admin/bitbucket_install/forgeinstallation/?q=" + installation_id)
    result = page.locator("#result_list tbody tr")
    expect(result).to_have_count(1)
    expect(result).to_contain_text(installation_id)
    # Its Connect installation column names the workspace: the link was made.
    expect(result.locator(".field-connect_installation")).to_have_text(WORKSPACE)
    steps.shot(page, "admin-forge-installations")
