"""The Installation admin in Chromium at 1280 px wide, on rows as long as real ones.

- The changelist: every column, the last one included, is inside the window (nothing is
  clipped or scrolled off to the right), with the search help text under the search box.
- The change page: the workspace and the installing Bitbucket user as short lists (name,
  type, UUID), the connected user as a link to that user's admin page, nothing editable.

Screenshots of both pages go to ``artifacts/browser/<test>/``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.browser.pages import ADMIN_VIEWPORT, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.conftest import DemoServer, Steps

pytestmark = pytest.mark.browser

CHANGELIST_PATH = "/admin/bitbucket_install/installation/"
# As long as Bitbucket's own: a clientKey names the app's UUID and its key.
CLIENT_KEY = (
    "ari:cloud:bitbucket::app/{0d6f5a1e-1111-4c5e-9a6b-5f1e2d3c4b5a}/django-bitbucket-install-demo"
)
WORKSPACE = "Northwind Platform and Infrastructure Guild"
WORKSPACE_UUID = "{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b}"
INSTALLER = "Ada Lovelace-Byron"
INSTALLER_UUID = "{a1b2c3d4-3333-4e5f-8a9b-0c1d2e3f4a5b}"


def add_uninstalled_installation(server: DemoServer, user_id: int) -> int:
    """An installation as long as a real one, uninstalled, connected to ``user_id``,
    written straight into the demo server's database; its primary key."""
    now = datetime.now(timezone.utc)
    row = {
        "client_key": CLIENT_KEY,
        "addon_key": "django-bitbucket-install-demo",
        "shared_secret": "a-secret-the-admin-never-shows-0123456789abcdef",
        "public_key": "",
        "base_url": "https://bitbucket.org",
        "base_api_url": "https://api.bitbucket.org",
        "product_type": "bitbucket",
        "principal": json.dumps(
            {"type": "workspace", "uuid": WORKSPACE_UUID, "display_name": WORKSPACE}
        ),
        "principal_uuid": WORKSPACE_UUID,
        "principal_name": WORKSPACE,
        "installed_by": json.dumps(
            {"type": "user", "uuid": INSTALLER_UUID, "display_name": INSTALLER}
        ),
        "user_id": user_id,
        "installed_at": (now - timedelta(days=40)).isoformat(),
        "confirmed_at": (now - timedelta(days=40)).isoformat(),
        "uninstalled_at": (now - timedelta(days=3)).isoformat(),
        "created_at": (now - timedelta(days=400)).isoformat(),
        "updated_at": (now - timedelta(days=3)).isoformat(),
    }
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with contextlib.closing(sqlite3.connect(server.database, timeout=30)) as connection:
        with connection:
            cursor = connection.execute(
                f"INSERT INTO bitbucket_install_installation ({columns}) VALUES ({marks})",  # noqa: S608 (our own column names)
                list(row.values()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


@pytest.fixture(scope="module")
def installation(demo_server: DemoServer) -> int:
    return add_uninstalled_installation(demo_server, demo_server.user_id(demo_server.username))


def test_changelist_fits_1280_px(
    page: Page, demo_server: DemoServer, installation: int, steps: Steps
) -> None:
    log_in(page, demo_server)
    page.set_viewport_size(ADMIN_VIEWPORT)
    page.goto(CHANGELIST_PATH)
    expect(page.get_by_role("heading", level=1)).to_have_text("Select installation to change")
    row = page.locator("#result_list tbody tr", has_text=CLIENT_KEY)
    expect(row).to_have_count(1)
    steps.shot(page, "changelist", full_page=False)

    # The table scrolls inside its own box (.results) when it is too wide: what does not
    # fit is clipped there, so the page itself never gets wider than the window.
    results = page.locator("#changelist .results")
    fits = results.evaluate("box => [box.scrollWidth, box.clientWidth]")
    assert fits[0] <= fits[1], fits
    box = results.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= ADMIN_VIEWPORT["width"]
    headers = page.locator("#result_list thead th")
    last_header = headers.nth(headers.count() - 1)
    expect(last_header).to_have_text("Status")
    for cell in (last_header, row.locator("td").last):
        cell_box = cell.bounding_box()
        assert cell_box is not None
        assert cell_box["x"] + cell_box["width"] <= box["x"] + box["width"], cell_box


def test_change_page_shows_accounts_readably(
    page: Page, demo_server: DemoServer, installation: int, steps: Steps
) -> None:
    log_in(page, demo_server)
    page.set_viewport_size(ADMIN_VIEWPORT)
    page.goto(f"{CHANGELIST_PATH}{installation}/change/")
    expect(page.get_by_role("heading", level=2)).to_have_text(WORKSPACE)
    steps.shot(page, "change-page")

    workspace = page.locator(".field-workspace_details .readonly")
    expect(workspace.locator("dt")).to_have_text(["Name", "Type", "UUID"])
    expect(workspace.locator("dd")).to_have_text([WORKSPACE, "workspace", WORKSPACE_UUID])
    installer = page.locator(".field-installer_details .readonly")
    expect(installer.locator("dd")).to_have_text([INSTALLER, "user", INSTALLER_UUID])
    user_link = page.locator(".field-connected_user .readonly a")
    expect(user_link).to_have_text(demo_server.username)
    # Nothing to type into: every field is read-only.
    expect(
        page.locator("#installation_form").locator("input[type=text], select, textarea")
    ).to_have_count(0)
    expect(page.get_by_text("a-secret-the-admin-never-shows")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)

    user_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Change user")
    expect(page.get_by_role("heading", level=2, name=demo_server.username)).to_be_visible()
