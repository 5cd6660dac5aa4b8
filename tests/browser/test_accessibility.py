"""axe-core (bundled by axe-playwright-python) on the pages a user sees during an install:
the landing page with the button, the app's own start page, the simulator's consent page,
the installed page and the failure page. No violation of impact "serious" or "critical" is
allowed; the others are listed at the end of the run, and the full results are saved in
artifacts/browser/<test>/axe.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.browser.pages import START_PATH, deny, grant, log_in, start_install

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DemoServer, Steps

pytestmark = pytest.mark.browser

BLOCKING_IMPACTS = {"serious", "critical"}


def landing(page: Page, server: DemoServer) -> None:
    log_in(page, server)
    page.goto("/")
    expect(page.get_by_role("button", name="Connect to Bitbucket")).to_be_visible()


def landing_anonymous(page: Page, server: DemoServer) -> None:
    page.goto("/")
    expect(page.get_by_role("button", name="Connect to Bitbucket")).to_be_visible()
    expect(page.locator("#login-link")).to_be_visible()


def start_page(page: Page, server: DemoServer) -> None:
    page.goto(START_PATH)
    expect(page.get_by_role("button", name="Connect to Bitbucket")).to_be_visible()


def consent(page: Page, server: DemoServer) -> None:
    start_install(page, server)


def installed(page: Page, server: DemoServer) -> None:
    log_in(page, server)
    start_install(page, server)
    grant(page, server, "Accessibility workspace")
    expect(page.locator("#installations-link")).to_be_visible()


def failed(page: Page, server: DemoServer) -> None:
    start_install(page, server)
    deny(page, server)
    expect(page.locator("#home-link")).to_be_visible()


PAGES: dict[str, Callable[[Page, DemoServer], None]] = {
    "landing": landing,
    "landing-anonymous": landing_anonymous,
    "start": start_page,
    "consent": consent,
    "installed": installed,
    "failed": failed,
}


def describe(violation: dict[str, Any]) -> str:
    targets = "; ".join(
        " ".join(str(part) for part in node["target"]) for node in violation["nodes"]
    )
    return f"{violation['impact']}: {violation['id']} ({violation['help']}) at {targets}"


@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_accessibility_violations(
    page: Page, demo_server: DemoServer, steps: Steps, accessibility_notes: list[str], name: str
) -> None:
    PAGES[name](page, demo_server)
    steps.shot(page, name)
    results = Axe().run(page).response
    (steps.directory / "axe.json").write_text(json.dumps(results, indent=2))
    assert results["testEngine"]["name"] == "axe-core"
    assert results["url"] == page.url
    assert results["passes"]  # axe really checked this page
    violations: list[dict[str, Any]] = results["violations"]
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    accessibility_notes.extend(
        f"{name} page: {describe(v)}" for v in violations if v not in blocking
    )
    assert not blocking, "\n".join(describe(v) for v in blocking)
