"""The Installation admin in Chromium at 1280 px wide, on rows as long as real ones.

- The changelist: every column, the last one included, is inside the window (nothing is
  clipped or scrolled off to the right), with the search help text under the search box.
- The change page: the workspace and the installing Bitbucket user as short lists (name,
  type, UUID), the connected user as a link to that user's admin page, nothing editable.
- The migration page, reached from the changelist: counts per state, the chart (inline SVG,
  as wide as the page) and its table, at 1280 and 375 px, without an axe-core violation
  that is serious or critical.

Screenshots of the pages go to ``artifacts/browser/<test>/``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from axe_playwright_python.sync_playwright import Axe
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
        "descriptor_push_error": "",
        "created_at": (now - timedelta(days=400)).isoformat(),
        "updated_at": (now - timedelta(days=3)).isoformat(),
    }
    return insert(server, "bitbucket_install_installation", row)


def insert(server: DemoServer, table: str, row: dict[str, object]) -> int:
    """``row`` written straight into ``table`` of the demo server's database; its key."""
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with contextlib.closing(sqlite3.connect(server.database, timeout=30)) as connection:
        with connection:
            cursor = connection.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 (our own names)
                list(row.values()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def add_migrating_installations(server: DemoServer) -> None:
    """Installations pushed over the last days, some failed, some linked to Forge."""
    now = datetime.now(timezone.utc)

    def stored(moment: datetime) -> str:
        # As Django writes a time into SQLite (UTC, a space, no offset): what it compares.
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    for number in range(12):
        pushed = now - timedelta(days=number * 2) if number % 4 else None
        row: dict[str, object] = {
            "client_key": f"ari:cloud:bitbucket::app/{{migrating-{number}}}/demo",
            "addon_key": "django-bitbucket-install-demo",
            "shared_secret": "s" * 40,
            "public_key": "",
            "base_url": "https://bitbucket.org",
            "base_api_url": "https://api.bitbucket.org",
            "product_type": "bitbucket",
            "principal": "{}",
            "principal_uuid": f"{{migrating-{number}}}",
            "principal_name": f"Migrating workspace {number}",
            "installed_by": "{}",
            "descriptor_pushed_at": stored(pushed) if pushed else None,
            "descriptor_push_error": "403 Improper authentication." if number == 8 else "",
            "created_at": stored(now - timedelta(days=100)),
            "updated_at": stored(now),
        }
        pk = insert(server, "bitbucket_install_installation", row)
        if pushed is not None and number % 3 == 0:
            linked = stored(min(pushed + timedelta(hours=6), now))
            insert(
                server,
                "bitbucket_install_forgeinstallation",
                {
                    "installation_id": f"ari:cloud:ecosystem::installation/migrating-{number}",
                    "app_id": "ari:cloud:ecosystem::app/0b0e3c2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c",
                    "app_version": "1.0.0",
                    "environment_type": "PRODUCTION",
                    "environment_id": "",
                    "workspace_id": f"migrating-{number}",
                    "api_base_url": "",
                    "connect_installation_id": pk,
                    "linked_at": linked,
                    "installed_at": linked,
                    "created_at": linked,
                    "updated_at": linked,
                },
            )


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


def test_migration_page_at_both_widths(
    page: Page, demo_server: DemoServer, installation: int, steps: Steps
) -> None:
    add_migrating_installations(demo_server)
    log_in(page, demo_server)
    page.set_viewport_size(ADMIN_VIEWPORT)
    page.goto(CHANGELIST_PATH)
    page.get_by_role("link", name="Migration to Forge").click()
    page.wait_for_url(f"{demo_server.url}{CHANGELIST_PATH}migration/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Migration to Forge")
    expect(page.locator("#bbi-migration-states tbody th")).to_have_text(
        ["Connect only", "Descriptor pushed", "Push failed", "Linked to Forge", "Total"]
    )
    chart = page.get_by_role("img", name="Progress of the migration to Forge")
    expect(chart).to_be_visible()
    # A day a row since the first push, 22 days ago (today's included).
    expect(page.locator("#bbi-migration-days tbody tr")).to_have_count(23)
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": 800})
        sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes[0] <= sizes[1], sizes
        box = chart.bounding_box()
        content = page.locator("#content-main").bounding_box()
        assert box is not None
        assert content is not None
        # As wide as the page's content (up to its largest), and never wider.
        assert box["width"] <= content["width"] + 1
        assert box["width"] >= min(content["width"], 640) - 1
        steps.shot(page, f"migration-{width}")
        results = Axe().run(page).response
        (steps.directory / f"axe-{width}.json").write_text(json.dumps(results, indent=2))
        assert results["passes"]
        blocking = [
            violation["id"]
            for violation in results["violations"]
            if violation["impact"] in {"serious", "critical"}
        ]
        assert not blocking, f"{width} px: {blocking}"
