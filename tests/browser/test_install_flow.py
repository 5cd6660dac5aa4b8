"""The whole install in Chromium, against the example project served by ``manage.py demo``
with the development simulator standing in for Bitbucket.

- Grant: log in, press the button on the landing page, the simulator's consent page, Grant:
  the simulator POSTs the ``installed`` callback to the site over HTTP, the browser comes
  back with a signed jwt, lands on the installed page; the row is in the database (connected
  to the user), on "Your installations" and in the admin. Writes the README's screenshots.
- The app's own start page (/bitbucket/install/): its button's POST is accepted (CSRF) and
  leads to the consent page and an install.
- Deny, and each error code the simulator can send back: the failure page with that code's
  own message (an unknown code: the generic one), on a URL without the parameters, and no
  Installation row changed.
- A second install of the same workspace (secret rotation): both succeed, one row, the same
  clientKey, a new shared secret.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from tests.browser.pages import (
    INSTALL_BUTTON,
    RESULT_PATH,
    START_PATH,
    admin_rows,
    deny,
    grant,
    log_in,
    press_install_button,
    send_error,
    start_install,
    url_of,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import Contexts, DemoServer, Steps

pytestmark = pytest.mark.browser

FAILURE_MESSAGES = {
    "access_denied": "You chose not to give the app access, so nothing was installed.",
    "invalid_descriptor": (
        "Bitbucket could not read the app's description. Nothing was installed; "
        "please tell the app's team."
    ),
    "invalid_request": (
        "Bitbucket could not follow the install link. Nothing was installed; "
        "please tell the app's team."
    ),
    "server_error": "Bitbucket ran into a problem. Nothing was installed; please try again later.",
}
GENERIC_FAILURE_MESSAGE = "Bitbucket did not install the app. Please try again."


def rows_for(server: DemoServer, workspace: str) -> list[dict[str, Any]]:
    return [row for row in server.installations() if row["principal_name"] == workspace]


def others(rows: list[dict[str, Any]], workspace: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["principal_name"] != workspace]


def expect_installed_page(page: Page, workspace: str) -> None:
    main = page.locator("main")
    expect(main).to_contain_text(f"It is installed on {workspace}.")
    expect(main).to_contain_text("The installation is connected to your account on this site.")
    expect(page.locator("#messages")).to_have_text(
        f"The app is installed on {workspace} and connected to your account."
    )


def expect_failure_page(page: Page, server: DemoServer, message: str, code: str) -> None:
    # Reached by a 303 to a URL that carries none of Bitbucket's parameters.
    expect(page).to_have_url(url_of(server, RESULT_PATH))
    expect(page.get_by_role("alert")).to_have_text(message)
    # The example's receiver says it in the app's words too, never with the bare code.
    expect(page.locator("#messages")).to_have_text(message)
    expect(page.locator("#messages")).not_to_contain_text(f"({code})")
    expect(page.locator("#home-link")).to_have_attribute("href", "/")


def readme_screenshot(page: Page, path: Path) -> None:
    """The README's image of this page: the 900 px wide viewport, cut 48 px (the page's
    padding) below the last card, at most 500 px high."""
    box = page.locator("main").bounding_box()
    assert box is not None
    viewport = page.viewport_size
    assert viewport is not None
    height = min(viewport["height"], round(box["y"] + box["height"]) + 48)
    page.screenshot(
        path=str(path), clip={"x": 0, "y": 0, "width": viewport["width"], "height": height}
    )


def test_grant_from_the_landing_page_button(
    page: Page, demo_server: DemoServer, steps: Steps, readme_images: Path
) -> None:
    workspace = "Acme Engineering"
    before = demo_server.installations()
    log_in(page, demo_server, steps)

    page.goto("/")
    expect(page.get_by_role("button", name=INSTALL_BUTTON)).to_be_visible()
    readme_screenshot(page, readme_images / "button.png")
    steps.shot(page, "landing")
    press_install_button(page, demo_server)
    expect(page.locator("#scopes")).to_contain_text("repository")
    steps.shot(page, "consent")

    grant(page, demo_server, workspace, steps)
    expect_installed_page(page, workspace)
    readme_screenshot(page, readme_images / "installed.png")

    after = demo_server.installations()
    assert others(after, workspace) == before  # nothing else changed
    [row] = rows_for(demo_server, workspace)
    assert row["client_key"].startswith("connection:")
    assert row["shared_secret"]
    assert row["user_id"] == demo_server.user_id(demo_server.username)
    assert row["confirmed_at"] is not None
    assert row["uninstalled_at"] is None

    page.locator("#installations-link").click()
    page.wait_for_url(url_of(demo_server, "/installations/"))
    table_row = page.locator("#installations tbody tr", has_text=workspace)
    expect(table_row).to_have_count(1)
    expect(table_row).to_contain_text(row["client_key"])
    expect(table_row).to_contain_text("installed")
    steps.shot(page, "your-installations")

    [cells] = admin_rows(page, demo_server, workspace)
    assert row["client_key"] in cells
    assert workspace in cells
    assert demo_server.username in cells  # the connected user
    steps.shot(page, "admin")


def test_the_start_page_button_posts_and_installs(
    page: Page, demo_server: DemoServer, steps: Steps
) -> None:
    """The app's own page with the button: its form's POST passes Django's CSRF check
    (the browser must send a real Origin with it, so the page cannot be no-referrer)."""
    workspace = "Start page workspace"
    log_in(page, demo_server)
    page.goto(START_PATH)
    expect(page.get_by_role("heading", level=1)).to_have_text("Connect to Bitbucket")
    steps.shot(page, "start-page")
    press_install_button(page, demo_server)
    steps.shot(page, "consent")
    grant(page, demo_server, workspace, steps)
    expect_installed_page(page, workspace)
    [row] = rows_for(demo_server, workspace)
    assert row["user_id"] == demo_server.user_id(demo_server.username)


def test_deny_lands_on_the_failure_page(page: Page, demo_server: DemoServer, steps: Steps) -> None:
    log_in(page, demo_server)
    start_install(page, demo_server, steps)
    before = demo_server.installations()
    deny(page, demo_server, steps)
    expect_failure_page(page, demo_server, FAILURE_MESSAGES["access_denied"], "access_denied")
    expect(page.locator("main q")).to_have_text("The user denied access to the app.")
    assert demo_server.installations() == before


@pytest.mark.parametrize(
    ("code", "message"),
    [
        *(pytest.param(code, message, id=code) for code, message in FAILURE_MESSAGES.items()),
        pytest.param("simulated_unknown_error", GENERIC_FAILURE_MESSAGE, id="unknown"),
    ],
)
def test_each_simulated_error_has_its_own_message(
    page: Page, demo_server: DemoServer, steps: Steps, code: str, message: str
) -> None:
    """Sent back by the simulator from its consent page, anonymously (the flow has no user;
    the site's receiver of install_failed still tells the user)."""
    start_install(page, demo_server, steps)
    before = demo_server.installations()
    send_error(page, demo_server, code, steps)
    expect_failure_page(page, demo_server, message, code)
    expect(page.locator("main q")).to_have_text(f"Simulated {code} from the simulator.")
    assert demo_server.installations() == before


def test_second_install_of_a_workspace_rotates_the_secret(
    page: Page, contexts: Contexts, demo_server: DemoServer, steps: Steps
) -> None:
    """The second install's ``installed`` callback is signed with the first install's
    secret (the app refuses an unsigned or wrongly signed one for a known clientKey), so the
    stored secret changes only through it; the second return trip's jwt is signed with the
    new secret. It runs in another browser session of the same user."""
    workspace = "Rotation workspace"
    log_in(page, demo_server)
    start_install(page, demo_server, steps)
    grant(page, demo_server, workspace, steps)
    expect_installed_page(page, workspace)
    [first] = rows_for(demo_server, workspace)
    before = demo_server.installations()

    again = contexts.new().new_page()
    log_in(again, demo_server)
    start_install(again, demo_server, steps)
    grant(again, demo_server, workspace, steps)
    expect_installed_page(again, workspace)

    after = demo_server.installations()
    assert others(after, workspace) == others(before, workspace)
    [second] = rows_for(demo_server, workspace)
    assert second["id"] == first["id"]
    assert second["client_key"] == first["client_key"]
    assert second["shared_secret"]
    assert second["shared_secret"] != first["shared_secret"]
    assert _when(second["installed_at"]) > _when(first["installed_at"])
    assert second["user_id"] == first["user_id"] == demo_server.user_id(demo_server.username)
    assert second["confirmed_at"] is not None

    [cells] = admin_rows(again, demo_server, workspace)
    assert workspace in cells
    assert first["client_key"] in cells
    steps.shot(again, "admin")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)
