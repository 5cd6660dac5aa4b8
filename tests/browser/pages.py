"""What a user does on the example site and the simulator, step by step, in a real browser.

Every step waits explicitly for the URL or element it leads to (no sleeps).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

    from tests.browser.conftest import DemoServer, Steps

SIMULATOR_PATH = "/bitbucket/simulator/authorize/"
RESULT_PATH = "/bitbucket/result/"
START_PATH = "/bitbucket/install/"
INSTALL_BUTTON = "Connect to Bitbucket"
ADMIN_VIEWPORT: ViewportSize = {"width": 1280, "height": 720}


def url_of(server: DemoServer, path: str) -> re.Pattern[str]:
    """The exact URL of ``path`` on ``server``, with no query string."""
    return re.compile(re.escape(server.url + path) + r"$")


def log_in(
    page: Page,
    server: DemoServer,
    steps: Steps | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Log in through the site's login page (as the demo superuser unless ``username`` and
    ``password`` are given); lands on the home page."""
    username = username or server.username
    page.goto("/accounts/login/?next=/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password or server.password)
    if steps is not None:
        steps.shot(page, "login")
    page.locator("#login").click()
    page.wait_for_url(url_of(server, "/"))
    expect(page.locator("#logout")).to_have_text(f"Log out {username}")


def press_install_button(page: Page, server: DemoServer) -> None:
    """Press the button on the current page: its form POSTs to the start view, which
    answers 303 to the simulator; the simulator's consent page appears."""
    start_url = server.url + START_PATH
    with page.expect_response(
        lambda response: response.request.method == "POST" and response.url == start_url
    ) as posted:
        page.get_by_role("button", name=INSTALL_BUTTON).click()
    status = posted.value.status
    assert status == 303, f"POST {START_PATH} answered {status}, not 303 to Bitbucket"
    page.wait_for_url(re.compile(re.escape(server.url + SIMULATOR_PATH) + r"\?"))
    expect(page.locator("#consent-title")).to_have_text("Install Example app?")
    expect(page.locator("#workspace")).to_be_editable()


def start_install(page: Page, server: DemoServer, steps: Steps | None = None) -> None:
    """From the landing page: press the button, arrive on the consent page."""
    page.goto("/")
    expect(page.get_by_role("heading", name="Example site")).to_be_visible()
    if steps is not None:
        steps.shot(page, "landing")
    press_install_button(page, server)
    if steps is not None:
        steps.shot(page, "consent")


def grant(
    page: Page,
    server: DemoServer,
    workspace: str,
    steps: Steps | None = None,
    *,
    send_jwt: bool = True,
) -> None:
    """On the consent page: install on ``workspace`` (with the signed jwt, unless told
    otherwise); lands on the result page."""
    page.locator("#workspace").fill(workspace)
    expect(page.locator("#send-jwt")).to_be_checked()
    if not send_jwt:
        page.locator("#send-jwt").uncheck()
    page.get_by_role("button", name="Grant access").click()
    page.wait_for_url(url_of(server, RESULT_PATH))
    # Without a JWT the page names nothing, not even that the app is installed.
    heading = "The app is installed" if send_jwt else "Back from Bitbucket"
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    if steps is not None:
        steps.shot(page, "installed")


def deny(page: Page, server: DemoServer, steps: Steps | None = None) -> None:
    """On the consent page: refuse; lands on the result page."""
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(url_of(server, RESULT_PATH))
    expect(page.get_by_role("heading", level=1)).to_have_text("The app was not installed")
    if steps is not None:
        steps.shot(page, "failed")


def send_error(page: Page, server: DemoServer, code: str, steps: Steps | None = None) -> None:
    """On the consent page: have the simulator send back ``code``; lands on the result page."""
    page.locator("#error-code").select_option(code)
    if steps is not None:
        steps.shot(page, "error-chosen")
    page.locator("#send-error").click()
    page.wait_for_url(url_of(server, RESULT_PATH))
    expect(page.get_by_role("heading", level=1)).to_have_text("The app was not installed")
    if steps is not None:
        steps.shot(page, "failed")


def admin_rows(page: Page, server: DemoServer, workspace: str) -> list[list[str]]:
    """The admin changelist of installations searched for ``workspace``: each row's cells."""
    page.set_viewport_size(ADMIN_VIEWPORT)  # the changelist's columns need the width
    page.goto("/admin/bitbucket_install/installation/?" + urlencode({"q": workspace}))
    expect(page.get_by_role("heading", level=1)).to_have_text("Select installation to change")
    rows = page.locator("#result_list tbody tr")
    return [
        [cell.strip() for cell in rows.nth(index).locator("th, td").all_inner_texts()]
        for index in range(rows.count())
    ]
