"""The README's quickstart, followed as a newcomer follows it, in a brand-new project.

The steps are read from README.rst itself, between ``.. quickstart-begin`` and
``.. quickstart-end``: each code block there follows a comment that says what to do with
it (``.. quickstart: run``, ``append PATH``, ``write PATH`` or ``serve``), so the README
cannot drift from what is tested. The test runs the commands (``django-admin
startproject`` ... ``check``) in a temporary directory, writes the files, serves the
project with ``runserver`` on a free port and installs the app through the simulator over
real HTTP, as a browser would: sign in, the button, the simulator's consent page, Grant,
the return trip. Then the installation is in the project's database, connected to the
user, and the quickstart's receiver has run.

The only liberties taken with the README: the port (a free one instead of 8000),
``createsuperuser`` without prompts, and ``runserver --noreload``.
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
BEGIN = ".. quickstart-begin"
END = ".. quickstart-end"
STEP = re.compile(
    r"^\.\. quickstart: (?P<action>run|append|write|serve)(?: (?P<path>\S+))?\n\n"
    r"\.\. code-block:: \S+\n\n"
    r"(?P<block>(?:(?: {4}.*)?\n)+)",
    re.MULTILINE,
)
README_ORIGIN = "127.0.0.1:8000"  # where the README's simulator settings say the site is
USERNAME = "newcomer"
PASSWORD = "a-long-password-for-the-quickstart"
WORKSPACE = "Quickstart team"
COMMAND_TIMEOUT = 60
SERVER_START_TIMEOUT = 30


@dataclass(frozen=True)
class Step:
    action: str  # run, append, write or serve
    path: str | None  # of the file to append to or write
    text: str  # the code block, dedented


def quickstart_region(readme: str) -> str:
    start = readme.index(BEGIN + "\n") + len(BEGIN) + 1
    return readme[start : readme.index(END + "\n", start)]


def quickstart_steps(readme: str) -> list[Step]:
    region = quickstart_region(readme)
    steps = [
        Step(
            match["action"],
            match["path"],
            textwrap.dedent(match["block"]).strip("\n") + "\n",
        )
        for match in STEP.finditer(region)
    ]
    # A marker the pattern did not understand, or a code block without a marker, would be
    # a step that is shown but not tested.
    assert len(steps) == region.count(".. quickstart:"), "a quickstart marker was not parsed"
    assert len(steps) == region.count(".. code-block::"), "a quickstart block has no marker"
    return steps


def commands(step: Step) -> list[list[str]]:
    lines = step.text.splitlines()
    assert all(line.startswith("$ ") for line in lines), step.text
    return [shlex.split(line[2:]) for line in lines]


# --- the README's shape -------------------------------------------------------------------


def test_readme_quickstart_has_every_step() -> None:
    steps = quickstart_steps(README.read_text(encoding="utf-8"))
    written = {step.path for step in steps if step.action in {"append", "write"}}
    assert written == {
        "mysite/settings.py",
        "mysite/urls.py",
        "welcome/templates/home.html",
        "welcome/receivers.py",
        "welcome/apps.py",
    }
    run = [command for step in steps if step.action == "run" for command in commands(step)]
    assert ["django-admin", "startproject", "mysite"] in run
    assert ["python", "manage.py", "migrate"] in run
    assert ["python", "manage.py", "check"] in run
    [serve] = [step for step in steps if step.action == "serve"]
    assert commands(serve)[-1] == ["python", "manage.py", "runserver"]
    settings = "".join(step.text for step in steps if step.path == "mysite/settings.py")
    # Without django-environ or variables the README does not list.
    assert "environ" not in settings
    assert "BITBUCKET_INSTALL_SIMULATOR = True" in settings


def test_docs_quickstart_is_the_readmes() -> None:
    page = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    assert f".. include:: ../README.rst\n   :start-after: {BEGIN}\n   :end-before: {END}\n" in page


# --- following it ---------------------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    """This process's environment without what would make the new project anything but
    fresh: this suite's settings module, its database, pytest-cov's subprocess hooks."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
        and not name.startswith("COV_CORE_")
    }


@dataclass
class Project:
    """The directory the newcomer works in, and what they ran there."""

    cwd: Path
    port: int
    environment: dict[str, str] = field(default_factory=clean_environment)
    outputs: dict[str, str] = field(default_factory=dict)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(  # noqa: S603
            argv,
            cwd=self.cwd,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert completed.returncode == 0, f"{argv} failed:\n{completed.stdout}{completed.stderr}"
        return completed

    def command(self, words: list[str]) -> None:
        """One command of the README, as the newcomer types it."""
        match words:
            case ["python", "-m", "pip", "install", "django-bitbucket-install"]:
                assert version("django-bitbucket-install")  # this checkout, installed
            case ["django-admin", *arguments]:
                self.run([sys.executable, "-m", "django", *arguments])
            case ["cd", directory]:
                self.cwd = self.cwd / directory
            case ["python", "manage.py", "createsuperuser"]:
                self.environment.update(
                    DJANGO_SUPERUSER_USERNAME=USERNAME,
                    DJANGO_SUPERUSER_PASSWORD=PASSWORD,
                    DJANGO_SUPERUSER_EMAIL="newcomer@example.com",
                )
                self.run([sys.executable, "manage.py", "createsuperuser", "--noinput"])
            case ["python", "manage.py", subcommand, *arguments]:
                completed = self.run([sys.executable, "manage.py", subcommand, *arguments])
                self.outputs[subcommand] = completed.stdout + completed.stderr
            case _:
                pytest.fail(f"the quickstart has a command this test does not know: {words}")

    def write(self, step: Step) -> None:
        assert step.path is not None
        path = self.cwd / step.path
        text = step.text.replace(README_ORIGIN, f"127.0.0.1:{self.port}")
        if step.action == "append":
            assert path.is_file(), f"{step.path} should exist before the quickstart adds to it"
            text = path.read_text(encoding="utf-8") + "\n\n" + text
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    @contextmanager
    def serving(self, log: IO[str]) -> Iterator[str]:
        """``manage.py runserver`` on the free port; its URL."""
        argv = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        server = subprocess.Popen(  # noqa: S603
            argv, cwd=self.cwd, env=self.environment, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, server)
            yield f"http://127.0.0.1:{self.port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        assert server.poll() is None, "runserver stopped"
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"runserver did not listen on port {port} within {SERVER_START_TIMEOUT} s")


@dataclass(frozen=True)
class Answer:
    status: int
    location: str
    body: str


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Each redirect is a step this test looks at before it follows it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Browser:
    """An HTTP client that keeps cookies, as a browser does, and follows nothing itself."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirects()
        )

    def request(self, url: str, form: dict[str, str] | None = None) -> Answer:
        absolute = urllib.parse.urljoin(self.origin + "/", url)
        assert absolute.startswith(self.origin + "/")  # the test talks to its server only
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(absolute, data=data, timeout=30) as response:
                return Answer(response.status, "", response.read().decode())
        except urllib.error.HTTPError as error:  # a redirect, or a 4xx/5xx
            with error:
                return Answer(error.code, error.headers.get("Location", ""), error.read().decode())


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def form_action(page: str, form_id: str) -> str:
    match = re.search(rf'<form method="post" action="([^"]+)" id="{form_id}">', page)
    assert match, page
    return html.unescape(match.group(1))


def install_through_the_simulator(browser: Browser) -> str:
    """Sign in, press the button, grant on the simulator's page, come back; the page the
    browser ends on."""
    login = browser.request("/admin/login/?next=/")
    assert login.status == 200
    signed_in = browser.request(
        "/admin/login/?next=/",
        {"username": USERNAME, "password": PASSWORD, "next": "/", **token_of(login)},
    )
    assert (signed_in.status, signed_in.location) == (302, "/"), signed_in.body

    home = browser.request("/")
    assert home.status == 200
    # The button: a form posting to the start view, with the CSRF token and next.
    assert '<form class="bbi-form" method="post" action="/bitbucket/install/">' in home.body
    assert '<input type="hidden" name="next" value="/">' in home.body
    assert ">Connect to Bitbucket</button>" in home.body

    started = browser.request("/bitbucket/install/", {"next": "/", **token_of(home)})
    assert started.status == 303
    authorize = urllib.parse.urlsplit(started.location)
    # The button went to the site's own simulator by itself.
    assert f"{authorize.scheme}://{authorize.netloc}" == browser.origin
    assert authorize.path == "/bitbucket/simulator/authorize/"
    link = urllib.parse.parse_qs(authorize.query)
    assert link["addon_key"] == ["my-app"]
    assert link["redirect_uri"][0].startswith(browser.origin + "/bitbucket/callback/")

    consent = browser.request(started.location)
    assert consent.status == 200
    assert "Install My app?" in consent.body
    granted = browser.request(
        form_action(consent.body, "consent-form"),
        {"action": "grant", "workspace": WORKSPACE, "send_jwt": "on", **token_of(consent)},
    )
    assert granted.status == 302, granted.body
    back = urllib.parse.urlsplit(granted.location)
    assert granted.location.startswith(link["redirect_uri"][0] + "?")
    assert {"clientKey", "jwt"} <= set(urllib.parse.parse_qs(back.query))

    returned = browser.request(granted.location)
    assert (returned.status, returned.location) == (303, "/"), returned.body
    landing = browser.request("/")
    assert landing.status == 200
    return landing.body


def token_of(answer: Answer) -> dict[str, str]:
    return {"csrfmiddlewaretoken": csrf_token(answer.body)}


def test_quickstart_in_a_new_project(tmp_path: Path) -> None:
    project = Project(cwd=tmp_path, port=free_port())
    for step in quickstart_steps(README.read_text(encoding="utf-8")):
        if step.action == "run":
            for words in commands(step):
                project.command(words)
        elif step.action == "serve":
            *setup, serve = commands(step)
            for words in setup:
                project.command(words)
            assert serve == ["python", "manage.py", "runserver"]
        else:
            project.write(step)

    # The README's check ran on its settings before the simulator's: nothing to report.
    assert "System check identified no issues" in project.outputs["check"]
    with_simulator = project.run([sys.executable, "manage.py", "check"])
    report = with_simulator.stdout + with_simulator.stderr
    assert "ERROR" not in report
    assert "bitbucket_install.W002" in report  # plain HTTP on 127.0.0.1: development
    assert "bitbucket_install.W003" in report  # the simulator is on

    with (tmp_path / "runserver.log").open("w") as log, project.serving(log) as origin:
        try:
            landing = install_through_the_simulator(Browser(origin))
        except AssertionError:
            log.flush()
            print((tmp_path / "runserver.log").read_text())  # the server's side of it
            raise

    # The quickstart's receiver ran, for the signed-in user.
    assert f'<p class="message">{WORKSPACE} is connected.</p>' in landing
    database = project.cwd / "db.sqlite3"
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT i.client_key, i.addon_key, i.principal_name, u.username, "
            "i.shared_secret != '', i.confirmed_at IS NOT NULL, i.uninstalled_at IS NULL "
            "FROM bitbucket_install_installation i JOIN auth_user u ON u.id = i.user_id"
        ).fetchall()
    [(client_key, addon_key, workspace, username, has_secret, confirmed, installed)] = rows
    assert re.fullmatch(r"ari:cloud:bitbucket::app/\{[0-9a-f-]{36}\}/my-app", client_key)
    assert (addon_key, workspace, username) == ("my-app", WORKSPACE, USERNAME)
    assert has_secret
    assert confirmed
    assert installed
