"""Every page of the app, its simulator and the example site, in Chromium, each reached the
way a user reaches it and checked for what it must say (the heading of its state, the
status, the next step) before it is looked at.

Then, at 1280 and at 375 px wide: a full-page screenshot, docs/images/<page>-<width>.png
(committed: the docs show them, and this run refreshes them); no horizontal overflow at
375 px; every <button> styled by the app's stylesheet, linked once; and no axe-core violation
of impact "serious" or "critical" (the others are listed at the end of the run, and the full
results are in artifacts/browser/<test>/axe-<width>.json).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Route, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from bitbucket_install.tokens import encode_token
from tests.browser.pages import (
    RESULT_PATH,
    SIMULATOR_PATH,
    START_PATH,
    deny,
    grant,
    log_in,
    press_install_button,
    start_install,
    url_of,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

    from tests.browser.conftest import Contexts, DemoServer, Steps

pytestmark = pytest.mark.browser

WIDTHS = (1280, 375)
HEIGHT = 800
BLOCKING_IMPACTS = {"serious", "critical"}
# Violations accepted on a page, by rule (none: the pages that reload themselves do it with
# a script and a stop button, not a meta refresh nobody could turn off).
ACCEPTED: dict[str, set[str]] = {}
STYLESHEET_PATH = "/static/bitbucket_install/bitbucket_install.css"
RETRY_AFTER = "5"
OTHER_USER = ("bea", "bea-browser-test-password")


@dataclass
class Arrival:
    """The tab on the page to look at, and the answer that brought it there."""

    page: Page
    response: Response | None = None


def heading(page: Page) -> Any:
    return page.get_by_role("heading", level=1)


def connection_note(page: Page, state: str) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-connection", state)


def expect_link_button(page: Page, selector: str, href: str) -> None:
    """A next step: a link to ``href`` that looks like a button."""
    expect(page.locator(selector)).to_have_attribute("href", href)
    expect(page.locator(selector)).to_have_class(re.compile(r"\bak-button\b"))


# --- how a user gets to each page -------------------------------------------------------------


def home_anonymous(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    response = page.goto("/")
    expect(page.get_by_role("button", name="Connect to Bitbucket")).to_be_visible()
    expect(page.locator("#login-note")).to_contain_text("Log in first")
    expect(page.locator("#login-link")).to_be_visible()
    return Arrival(page, response)


def home(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    log_in(page, server)
    response = page.goto("/")
    expect(page.get_by_role("button", name="Connect to Bitbucket")).to_be_visible()
    expect(page.locator("#login-note")).to_have_count(0)
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Home")
    return Arrival(page, response)


def start_in_french(contexts: Contexts, server: DemoServer) -> Arrival:
    """The longer French words: still no overflow, every label whole."""
    page = contexts.new(locale="fr-FR").new_page()
    response = page.goto(START_PATH)
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(heading(page)).to_have_text("Connecter à Bitbucket")
    expect(page.get_by_role("button", name="Connecter à Bitbucket")).to_be_visible()
    expect_link_button(page, "#cancel-link", "/")
    expect(page.locator("#cancel-link")).to_have_text("Annuler")
    return Arrival(page, response)


def failed_in_french(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new(locale="fr-FR").new_page()
    page.goto("/")
    page.get_by_role("button", name="Connecter à Bitbucket").click()
    expect(page.locator("#consent-title")).to_have_text("Installer Example app ?")
    page.locator("#deny").click()
    page.wait_for_url(url_of(server, RESULT_PATH))
    expect(heading(page)).to_have_text("L\u2019app n\u2019a pas été installée")
    expect(page.get_by_role("alert")).to_have_text(
        "Vous avez choisi de ne pas donner accès à l\u2019app : rien n\u2019a été installé."
    )
    expect(page.locator("#start-link")).to_have_text("Réessayer")
    return Arrival(page)


def login(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    response = page.goto("/accounts/login/")
    page.get_by_label("Username").fill(server.username)
    page.get_by_label("Password").fill("not the password")
    page.locator("#login").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    return Arrival(page, response)


def start(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    response = page.goto(START_PATH + "?next=/installations/")
    expect(heading(page)).to_have_text("Connect to Bitbucket")
    button = page.get_by_role("button", name="Connect to Bitbucket")
    expect(button.locator("svg.bbi-button__logo")).to_be_visible()
    expect(page.locator("main input[name=next]")).to_have_value("/installations/")
    expect_link_button(page, "#cancel-link", "/installations/")
    return Arrival(page, response)


def consent(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    start_install(page, server)
    expect(page.locator("#simulator-banner")).to_contain_text("Development simulator.")
    expect(page.locator("#scopes li")).to_have_count(2)
    # The list's heading is a step below the title, and looks it.
    title_size = page.locator("#consent-title").evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    scopes_size = page.locator("#scopes-title").evaluate(
        "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    assert scopes_size < title_size
    return Arrival(page)


def simulator_check(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    other = f"{server.url}/elsewhere/atlassian-connect.json"
    response = page.goto(SIMULATOR_PATH + "?" + urlencode({"descriptor_uri": other}))
    expect(page.locator("#check-title")).to_have_text("Fetch the app's descriptor?")
    expect(page.locator("#descriptor-uri")).to_have_text(other)
    expect(page.get_by_role("button", name="Fetch and check the descriptor")).to_be_visible()
    return Arrival(page, response)


def simulator_error(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    response = page.goto(SIMULATOR_PATH)  # a link with neither addon_key nor descriptor_uri
    assert response is not None
    assert response.status == 400
    expect(heading(page)).to_have_text("The app could not be installed")
    expect(page.get_by_role("alert")).to_have_text(
        "The link must give exactly one of addon_key and descriptor_uri."
    )
    expect(page.locator("#error")).to_have_text("invalid_request")
    expect_link_button(page, "#home-link", "/")
    return Arrival(page, response)


def simulator_installed(contexts: Contexts, server: DemoServer) -> Arrival:
    """A link without redirect_uri: Bitbucket keeps the user after the install."""
    page = contexts.new().new_page()
    descriptor = f"{server.url}/bitbucket/atlassian-connect.json"
    page.goto(SIMULATOR_PATH + "?" + urlencode({"descriptor_uri": descriptor}))
    page.locator("#workspace").fill("Simulator workspace")
    # The demo's descriptor has a postInstallRedirect: stay on the simulator instead.
    page.locator("#follow-redirect").uncheck()
    page.get_by_role("button", name="Grant access").click()
    expect(heading(page)).to_have_text("Example app is installed")
    expect(page.locator("#client-key")).to_have_text(re.compile(r"^connection:"))
    expect_link_button(page, "#home-link", "/")
    return Arrival(page)


def installed_connected(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    log_in(page, server)
    start_install(page, server)
    grant(page, server, "Pages workspace")
    expect(page.locator("main")).to_contain_text("It is installed on Pages workspace.")
    connection_note(page, "connected")
    expect(page.locator("#connection")).to_contain_text("Connected to your account")
    expect_link_button(page, "#installations-link", "/installations/")
    expect(page.locator("#messages")).to_have_text(
        "The app is installed on Pages workspace and connected to your account."
    )
    return Arrival(page)


def installed_signed_out(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    start_install(page, server)
    grant(page, server, "Signed-out workspace")
    connection_note(page, "signed_out")
    expect(page.locator("#connection")).to_contain_text("You were not signed in")
    expect_link_button(page, "#sign-in-link", "/accounts/login/?next=/bitbucket/install/")
    return Arrival(page)


def installed_unverified(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    log_in(page, server)
    start_install(page, server)
    grant(page, server, "Unsigned workspace", send_jwt=False)
    connection_note(page, "unverified")
    expect(page.locator("#connection")).to_contain_text("No installation was connected")
    # Nothing tells which installation an unsigned return named: the page names no workspace.
    expect(page.locator("main")).not_to_contain_text("Unsigned workspace")
    expect_link_button(page, "#home-link", "/")
    return Arrival(page)


def installed_not_started_here(contexts: Contexts, server: DemoServer) -> Arrival:
    """Bitbucket sends the browser to the plain callback, with no flow of this browser."""
    page = contexts.new().new_page()
    link = {
        "descriptor_uri": f"{server.url}/bitbucket/atlassian-connect.json",
        "redirect_uri": f"{server.url}/bitbucket/callback/",
    }
    page.goto(SIMULATOR_PATH + "?" + urlencode(link))
    page.locator("#workspace").fill("Elsewhere workspace")
    page.get_by_role("button", name="Grant access").click()
    expect(heading(page)).to_have_text("The app is installed")
    connection_note(page, "not_started_here")
    expect(page.locator("#connection")).to_contain_text("Not started from this browser")
    expect_link_button(page, "#start-link", START_PATH)
    return Arrival(page)


def failed(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    start_install(page, server)
    deny(page, server)
    expect(page.get_by_role("alert")).to_have_text(
        "You chose not to give the app access, so nothing was installed."
    )
    # The code is there for support, small, after the words.
    expect(page.locator("#error-reference")).to_have_text("Reference for support: access_denied")
    expect_link_button(page, "#start-link", START_PATH)
    expect_link_button(page, "#home-link", "/")
    return Arrival(page)


def failed_rejected(contexts: Contexts, server: DemoServer) -> Arrival:
    """A return that cannot be trusted: the same 400 page whatever the reason."""
    page = contexts.new().new_page()
    response = page.goto(
        "/bitbucket/callback/?" + urlencode({"clientKey": "connection:1", "error": "x"})
    )
    assert response is not None
    assert response.status == 400
    expect(heading(page)).to_have_text("Nothing was connected")
    expect(page.get_by_role("alert")).to_contain_text("Please start again from the install button")
    expect_link_button(page, "#start-link", START_PATH)
    return Arrival(page, response)


def failed_connected_to_another_user(contexts: Contexts, server: DemoServer) -> Arrival:
    """The workspace's installation is connected to the admin; Bea installs it again."""
    workspace = "Shared workspace"
    first = contexts.new().new_page()
    log_in(first, server)
    start_install(first, server)
    grant(first, server, workspace)
    server.create_user(*OTHER_USER)
    page = contexts.new().new_page()
    log_in(page, server, username=OTHER_USER[0], password=OTHER_USER[1])
    start_install(page, server)
    page.locator("#workspace").fill(workspace)
    page.get_by_role("button", name="Grant access").click()
    page.wait_for_url(url_of(server, RESULT_PATH))
    expect(heading(page)).to_have_text("Connected to another account")
    expect(page.get_by_role("alert")).to_contain_text("already connected to another account")
    expect(page.locator("#start-link")).to_have_count(0)  # trying again would not help
    expect_link_button(page, "#home-link", "/")
    return Arrival(page)


def unavailable(contexts: Contexts, server: DemoServer) -> Arrival:
    """A flow's return names an installation whose ``installed`` callback has not arrived
    (yet): the 503 page, which reloads itself; it gets the same answer while the flow is
    young."""
    page = contexts.new().new_page()
    start_install(page, server)
    redirect_uri = parse_qs(urlsplit(page.url).query)["redirect_uri"][0]
    flow_path = urlsplit(redirect_uri).path
    flow_id = flow_path.rstrip("/").rsplit("/", 1)[1]
    client_key = "connection:not-yet-" + secrets.token_hex(4)
    query = urlencode({"clientKey": client_key})
    token = encode_token(
        {"iss": client_key},
        secrets.token_urlsafe(32),
        method="GET",
        path=flow_path,
        query_string=query,
    )
    url = f"{server.url}{flow_path}?{query}&{urlencode({'jwt': token})}"
    response = page.goto(url)
    assert response is not None
    assert response.status == 503
    assert response.headers["retry-after"] == RETRY_AFTER
    expect(heading(page)).to_have_text("The install is not finished yet")
    expect(page.get_by_role("status")).to_contain_text("This page reloads by itself in 5 seconds.")
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    expect(page.locator("[data-bbi-reload-after]")).to_have_attribute(
        "data-bbi-reload-after", RETRY_AFTER
    )
    expect(page.get_by_role("button", name="Stop reloading")).to_be_visible()
    expect(page.locator("#reload-link")).to_have_attribute("href", "")
    links = page.eval_on_selector_all(
        "[href], [src], [action]",
        "nodes => nodes.map(n => ['href', 'src', 'action']"
        ".map(name => n.getAttribute(name) ?? '').join(' '))",
    )
    assert links
    assert not [link for link in links if flow_id in link or "jwt" in link]
    # It reloads by itself, the same URL.
    with page.expect_response(lambda answer: answer.url == url, timeout=10_000) as again:
        pass
    assert again.value.status == 503
    page.wait_for_load_state()
    # The visitor can stop it (a timed change one can turn off), and it then holds still.
    page.get_by_role("button", name="Stop reloading").click()
    expect(page.get_by_role("button", name="Stop reloading")).to_be_hidden()
    with (
        pytest.raises(PlaywrightTimeoutError),
        page.expect_response(lambda answer: answer.url == url, timeout=7_000),
    ):
        pass
    # What a visitor first sees, for the screenshots and axe: the same answer, its countdown
    # on screen with its stop button, but the timer set an hour out so that no reload lands
    # in the middle of them (the words still say 5 seconds, as the server wrote them).
    context = page.context
    page.close()
    first_look = context.new_page()

    def held_countdown(route: Route) -> None:
        answer = route.fetch()
        held = answer.text().replace(
            f'data-bbi-reload-after="{RETRY_AFTER}"', 'data-bbi-reload-after="3600"'
        )
        route.fulfill(response=answer, body=held)

    first_look.route(url, held_countdown)
    shown = first_look.goto(url)
    assert shown is not None
    assert shown.status == 503
    expect(first_look.get_by_role("status")).to_contain_text("reloads by itself in 5 seconds")
    expect(first_look.get_by_role("button", name="Stop reloading")).to_be_visible()
    return Arrival(first_look, shown)


def no_result(contexts: Contexts, server: DemoServer) -> Arrival:
    page = contexts.new().new_page()
    response = page.goto(RESULT_PATH)
    assert response is not None
    assert response.status == 404
    expect(heading(page)).to_have_text("No install to show")
    expect_link_button(page, "#home-link", "/")
    expect_link_button(page, "#start-link", START_PATH)
    return Arrival(page, response)


def installations(contexts: Contexts, server: DemoServer) -> Arrival:
    workspace = "Acme Engineering: Platform and Infrastructure"
    page = contexts.new().new_page()
    log_in(page, server)
    page.goto("/")
    press_install_button(page, server)
    grant(page, server, workspace)
    page.locator("#installations-link").click()
    page.wait_for_url(url_of(server, "/installations/"))
    row = page.locator("#installations tbody tr", has_text=workspace)
    expect(row).to_have_count(1)
    expect(row.locator(".demo-lozenge")).to_have_text("installed")
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Your installations")
    return Arrival(page)


PAGES: dict[str, Callable[[Contexts, DemoServer], Arrival]] = {
    "home-anonymous": home_anonymous,
    "home": home,
    "login": login,
    "start": start,
    "start-fr": start_in_french,
    "consent": consent,
    "simulator-check": simulator_check,
    "simulator-error": simulator_error,
    "simulator-installed": simulator_installed,
    "installed-connected": installed_connected,
    "installed-signed-out": installed_signed_out,
    "installed-unverified": installed_unverified,
    "installed-not-started-here": installed_not_started_here,
    "failed": failed,
    "failed-fr": failed_in_french,
    "failed-rejected": failed_rejected,
    "failed-connected-to-another-user": failed_connected_to_another_user,
    "unavailable": unavailable,
    "no-result": no_result,
    "installations": installations,
}


# --- what every page must be ------------------------------------------------------------------


def describe(violation: dict[str, Any]) -> str:
    targets = "; ".join(
        " ".join(str(part) for part in node["target"]) for node in violation["nodes"]
    )
    return f"{violation['impact']}: {violation['id']} ({violation['help']}) at {targets}"


def assert_styled(page: Page) -> None:
    """The app's stylesheet linked once, and no native (unstyled) button left."""
    stylesheets = page.eval_on_selector_all(
        "link[rel=stylesheet]", "links => links.map(link => new URL(link.href).pathname)"
    )
    assert stylesheets.count(STYLESHEET_PATH) == 1, stylesheets
    unstyled = page.eval_on_selector_all(
        "button",
        "buttons => buttons.filter(b => !b.classList.contains('ak-button')).map(b => b.outerHTML)",
    )
    assert unstyled == []
    native = page.eval_on_selector_all(
        "button",
        "buttons => buttons.filter(b => getComputedStyle(b).borderStyle !== 'none'"
        " && getComputedStyle(b).borderTopWidth !== '0px').map(b => b.outerHTML)",
    )
    assert native == []


def assert_no_horizontal_overflow(page: Page) -> None:
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"scrollWidth {sizes[0]} > innerWidth {sizes[1]}"


@pytest.mark.parametrize("name", list(PAGES))
def test_page_at_both_widths(
    contexts: Contexts,
    demo_server: DemoServer,
    steps: Steps,
    readme_images: Path,
    accessibility_notes: list[str],
    name: str,
) -> None:
    arrival = PAGES[name](contexts, demo_server)
    page = arrival.page
    assert_styled(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        assert_no_horizontal_overflow(page)
        page.screenshot(
            path=str(readme_images / f"{name}-{width}.png"), full_page=True, animations="disabled"
        )
        results = Axe().run(page).response
        (steps.directory / f"axe-{width}.json").write_text(json.dumps(results, indent=2))
        assert results["testEngine"]["name"] == "axe-core"
        assert results["passes"]  # axe really checked this page
        violations: list[dict[str, Any]] = results["violations"]
        accepted = ACCEPTED.get(name, set())
        blocking = [
            v for v in violations if v["impact"] in BLOCKING_IMPACTS and v["id"] not in accepted
        ]
        accessibility_notes.extend(
            f"{name} page at {width} px: {describe(v)}" for v in violations if v not in blocking
        )
        assert not blocking, f"{name} at {width} px:\n" + "\n".join(describe(v) for v in blocking)
