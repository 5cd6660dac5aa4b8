"""Fixtures of the browser tests: the example project served by ``manage.py demo`` (what
``make demo`` runs) in a subprocess, one Chromium for the session, a fresh context per test.

The server gets a fresh SQLite database in a temporary directory and an environment of its
own (no ``example_project/.env`` is read); the simulator POSTs the ``installed`` lifecycle
callback to it over real HTTP while the browser's request is still open, which works
because ``runserver`` is threaded.

Screenshots of every step go to ``artifacts/browser/<test>/`` (git-ignored); a failing
test also leaves there a screenshot and the HTML of each page it had open
(``failure-<n>.png``, ``.html``), and the server's log is ``artifacts/browser/server.log``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize

# The tox environments install only the `test` extra: without Playwright these modules
# cannot even be imported, so they are not collected there (they are deselected by
# `-m "not browser"` anyway). Run with `-m browser` in such an environment, pytest
# collects nothing and exits with status 5, which fails: nothing passes silently.
if not all(importlib.util.find_spec(name) for name in ("playwright", "axe_playwright_python")):
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY = ROOT / "example_project" / "manage.py"
ARTIFACTS = ROOT / "artifacts" / "browser"
README_IMAGES = ROOT / "docs" / "images"

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 900, "height": 500}
TIMEOUT_MS = 15_000
SERVER_START_SECONDS = 90

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "browser-test-password"
LOGIN_LINE = re.compile(r"^Log in as (?P<username>\S+) / (?P<password>\S+)", re.MULTILINE)


@dataclass(frozen=True)
class DemoServer:
    """The example project as ``manage.py demo`` serves it."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    username: str  # the superuser login the demo command printed
    password: str
    database: Path
    log: Path

    def installations(self) -> list[dict[str, Any]]:
        """Every Installation row, in primary-key order, read straight from the database."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        ) as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute(
                "SELECT * FROM bitbucket_install_installation ORDER BY id"
            ).fetchall()
        return [dict(row) for row in rows]

    def create_user(self, username: str, password: str) -> None:
        """A plain (not staff) user who can log in on the site, written straight into the
        database the server reads."""
        from django.contrib.auth.hashers import PBKDF2PasswordHasher

        # The demo keeps Django's default hashers; this suite's settings do not.
        hasher = PBKDF2PasswordHasher()
        encoded = hasher.encode(password, hasher.salt())
        with contextlib.closing(sqlite3.connect(self.database)) as connection, connection:
            connection.execute(
                "INSERT INTO auth_user (password, is_superuser, username, first_name,"
                " last_name, email, is_staff, is_active, date_joined)"
                " VALUES (?, 0, ?, '', '', '', 0, 1, datetime('now'))",
                (encoded, username),
            )

    def user_id(self, username: str) -> int:
        with contextlib.closing(
            sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        ) as connection:
            row = connection.execute(
                "SELECT id FROM auth_user WHERE username = ?", (username,)
            ).fetchone()
        assert row is not None, f"no user {username!r}"
        return int(row[0])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_environment(database: Path, env_file: Path) -> dict[str, str]:
    """Ours, with every variable the example reads set to a known value."""
    environment = dict(os.environ)
    environment.update(
        DJANGO_SETTINGS_MODULE="example_project.settings",  # not pytest-django's
        DEBUG="on",  # the example refuses to run without it, or a key and an HTTPS URL
        ENV_FILE=str(env_file),  # does not exist: no .env is read
        DATABASE_URL=f"sqlite:///{database}",
        CACHE_URL="dbcache://example_project_cache",
        SECRET_KEY="",
        LANGUAGE_CODE="en",
        TIME_ZONE="UTC",
        DEMO_INSTALL_MODE="descriptor",
        DEMO_APP_KEY="django-bitbucket-install-demo",
        DEMO_APP_NAME="Example app",
        DEMO_APP_DESCRIPTION="The example project of django-bitbucket-install.",
        DEMO_APP_SCOPES="account,repository",
        DEMO_ADMIN_USERNAME=ADMIN_USERNAME,
        DEMO_ADMIN_PASSWORD=ADMIN_PASSWORD,
        BITBUCKET_INSTALL_ADDON_KEY="",
        BITBUCKET_INSTALL_SHARED_SECRET="",
        BITBUCKET_INSTALL_SUCCESS_URL="",
        BITBUCKET_INSTALL_FAILURE_URL="",
        PYTHONUNBUFFERED="1",
    )
    return environment


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own http URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the demo command and its runserver child (one process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # The runserver child may outlive its parent for a moment; make sure the group is gone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """artifacts/browser/, emptied at the start of the session (of each xdist worker's
    own subdirectory under pytest-xdist)."""
    directory = ARTIFACTS / os.environ.get("PYTEST_XDIST_WORKER", "")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


@pytest.fixture(scope="session")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> Generator[DemoServer, None, None]:
    """``manage.py demo --port PORT --noreload`` on a fresh SQLite database."""
    directory = tmp_path_factory.mktemp("demo")
    database = directory / "demo.sqlite3"
    log = artifacts / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [sys.executable, str(MANAGE_PY), "demo", "--port", str(port), "--noreload"],
            cwd=ROOT,
            env=_server_environment(database, directory / "no.env"),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, runserver included
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _answers(url + "/"):
            if process.poll() is not None:
                pytest.fail(f"manage.py demo exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{url} did not answer within {SERVER_START_SECONDS} s:\n{log.read_text()}"
                )
            time.sleep(0.2)
        login = LOGIN_LINE.search(log.read_text())
        assert login is not None, f"the demo command printed no login:\n{log.read_text()}"
        yield DemoServer(
            url=url,
            username=login["username"],
            password=login["password"],
            database=database,
            log=log,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One Debian Chromium for the whole session (Playwright's own download is not used)."""
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember on the test item whether its call phase failed (for the failure evidence)."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@dataclass
class Steps:
    """Numbered screenshots of one test's steps, in artifacts/browser/<test>/."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    def shot(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.taken.append(path)
        return path


def _test_directory(artifacts: Path, node: pytest.Item) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.name).strip("-")
    directory = artifacts / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class Contexts:
    """Makes browser contexts (fresh profiles: no cookies) in English unless told otherwise,
    900x500, on the demo server; all of them are closed at the end of the test."""

    def __init__(self, browser: Browser, server: DemoServer) -> None:
        self.browser = browser
        self.server = server
        self.made: list[BrowserContext] = []

    def new(self, locale: str = "en-US") -> BrowserContext:
        fresh = self.browser.new_context(
            base_url=self.server.url,
            viewport=VIEWPORT,
            locale=locale,
            timezone_id="UTC",
        )
        fresh.set_default_timeout(TIMEOUT_MS)
        fresh.set_default_navigation_timeout(TIMEOUT_MS)
        self.made.append(fresh)
        return fresh

    def keep_evidence(self, directory: Path) -> None:
        """Every open page's screenshot and HTML, as failure-<n>.png / .html."""
        pages = [tab for made in self.made for tab in made.pages]
        for number, tab in enumerate(pages, start=1):
            # A page may be half-gone after the failure; keep what can be kept.
            with contextlib.suppress(Exception):
                tab.screenshot(path=str(directory / f"failure-{number}.png"), full_page=True)
                (directory / f"failure-{number}.html").write_text(tab.content())

    def close(self) -> None:
        for made in self.made:
            made.close()


@pytest.fixture
def contexts(
    browser: Browser, demo_server: DemoServer, request: pytest.FixtureRequest, artifacts: Path
) -> Iterator[Contexts]:
    factory = Contexts(browser, demo_server)
    yield factory
    if request.node.stash.get(CALL_FAILED, False):
        factory.keep_evidence(_test_directory(artifacts, request.node))
    factory.close()


@pytest.fixture
def context(contexts: Contexts) -> BrowserContext:
    """The test's browser profile."""
    return contexts.new()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """The test's tab."""
    return context.new_page()


@pytest.fixture
def steps(request: pytest.FixtureRequest, artifacts: Path) -> Steps:
    return Steps(_test_directory(artifacts, request.node))


ACCESSIBILITY_NOTES = pytest.StashKey[list[str]]()


@pytest.fixture
def accessibility_notes(request: pytest.FixtureRequest) -> list[str]:
    """Lines listed at the end of the run: axe-core violations that do not fail it."""
    return request.config.stash.setdefault(ACCESSIBILITY_NOTES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    notes = terminalreporter.config.stash.get(ACCESSIBILITY_NOTES, [])
    if notes:
        terminalreporter.section(
            "axe-core: violations that do not fail the run (below serious, or accepted)"
        )
        for line in notes:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def readme_images() -> Path:
    """docs/images/, where the screenshots of the README and the docs are written from the
    real pages."""
    README_IMAGES.mkdir(parents=True, exist_ok=True)
    return README_IMAGES
