"""The example project: its settings, pages, signal receivers, the ``demo`` command, and the
French translations of the app and the example.

Settings are loaded from example_project/settings.py into a fresh module with a private
environment (``load_settings``); pages run in this test suite's database with the example's
URLs and app switched in (``example_site``).
"""

from __future__ import annotations

import contextlib
import gettext
import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import environ
import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, RequestFactory
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.flow import flow_hash
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.simulator import transport as simulator_transport
from example_project.demo import receivers
from example_project.demo.management.commands import demo as demo_command
from tests.callback_helpers import flow_ids, redirect_path
from tests.simulator.helpers import Router

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

INSTALLED_UID = "example_project.demo.receivers.announce_installed"
FAILED_UID = "example_project.demo.receivers.announce_install_failed"
# Importing the receivers connected them; they are connected only inside ``example_site``,
# so the rest of the suite never runs the example's receivers.
installed.disconnect(dispatch_uid=INSTALLED_UID)
install_failed.disconnect(dispatch_uid=FAILED_UID)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
SETTINGS_FILE = EXAMPLE / "settings.py"
ENV_EXAMPLE = EXAMPLE / ".env.example"


# --- settings -------------------------------------------------------------------------------


def load_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dotenv: str | None = None,
    **variables: str,
) -> ModuleType:
    """example_project/settings.py run with only ``variables`` in the environment and
    ``dotenv`` as its .env file; nothing leaks into this process's environment."""
    environment = {"ENV_FILE": str(tmp_path / "missing.env"), **variables}
    if dotenv is not None:
        (tmp_path / "test.env").write_text(dotenv)
        environment["ENV_FILE"] = str(tmp_path / "test.env")
    monkeypatch.setattr(environ.Env, "ENVIRON", environment)
    spec = importlib.util.spec_from_file_location("example_settings_under_test", SETTINGS_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_settings_are_a_local_unregistered_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(monkeypatch, tmp_path)
    assert loaded.DEBUG is True
    assert loaded.SECRET_KEY.startswith("django-insecure-")
    assert loaded.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded.DATABASES["default"]["NAME"] == str(EXAMPLE / "db.sqlite3")
    assert loaded.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:8000"
    assert loaded.BITBUCKET_INSTALL_ADDON_KEY is None
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI == (
        "http://127.0.0.1:8000/bitbucket/atlassian-connect.json"
    )
    assert loaded.BITBUCKET_INSTALL_SIMULATOR is False
    assert loaded.BITBUCKET_INSTALL_AUTHORIZE_URL is None  # the app's default: Bitbucket
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["key"] == "django-bitbucket-install-demo"
    assert loaded.INSTALLED_APPS[0] == "example_project.demo"
    assert "bitbucket_install" in loaded.INSTALLED_APPS


def test_port_and_simulator_move_every_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(monkeypatch, tmp_path, PORT="8765", BITBUCKET_INSTALL_SIMULATOR="on")
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:8765"
    assert loaded.BITBUCKET_INSTALL_AUTHORIZE_URL == (
        "http://127.0.0.1:8765/bitbucket/simulator/authorize/"
    )
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI == (
        "http://127.0.0.1:8765/bitbucket/atlassian-connect.json"
    )


def test_registered_mode_uses_the_app_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = load_settings(
        monkeypatch, tmp_path, DEMO_INSTALL_MODE="registered", DEMO_APP_KEY="my-app"
    )
    assert loaded.BITBUCKET_INSTALL_ADDON_KEY == "my-app"
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI is None
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["key"] == "my-app"


def test_database_url_selects_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = load_settings(
        monkeypatch, tmp_path, DATABASE_URL="postgres://bb:pw@db.example.com:5433/demo"
    )
    database = loaded.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "db.example.com",
        5433,
        "demo",
    )


def test_dotenv_fills_in_and_the_real_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dotenv = "DEMO_APP_NAME=From dotenv\nPORT=9000\nDEMO_APP_SCOPES=account,webhook\n"
    loaded = load_settings(monkeypatch, tmp_path, dotenv, PORT="9100")
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["name"] == "From dotenv"
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["scopes"] == ["account", "webhook"]
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:9100"


def test_debug_off_needs_a_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load_settings(monkeypatch, tmp_path, DEBUG="off")
    loaded = load_settings(monkeypatch, tmp_path, DEBUG="off", SECRET_KEY="a-real-secret")
    assert loaded.DEBUG is False
    assert loaded.SECRET_KEY == "a-real-secret"


def test_unknown_install_mode_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="DEMO_INSTALL_MODE"):
        load_settings(monkeypatch, tmp_path, DEMO_INSTALL_MODE="both")


def test_env_example_documents_every_variable_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', SETTINGS_FILE.read_text()))
    documented = set(re.findall(r"^#? ?([A-Z][A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert read - {"ENV_FILE"} <= documented
    assert "ENV_FILE" in ENV_EXAMPLE.read_text()
    # Copied as it is to .env, it gives the defaults.
    loaded = load_settings(monkeypatch, tmp_path, ENV_EXAMPLE.read_text())
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:8000"
    assert loaded.DATABASES["default"]["NAME"] == str(EXAMPLE / "db.sqlite3")


def test_demo_environment_overrides_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What ``make demo PORT=8765`` gives the server, whatever .env says."""
    dotenv = (
        "DEBUG=off\nSECRET_KEY=x\nBITBUCKET_INSTALL_BASE_URL=https://elsewhere.example.com\n"
        "BITBUCKET_INSTALL_DESCRIPTOR_URI=https://elsewhere.example.com/d.json\n"
        "ALLOWED_HOSTS=elsewhere.example.com\n"
    )
    environment = demo_command.serve_environment(8765, base={})
    loaded = load_settings(monkeypatch, tmp_path, dotenv, **environment)
    assert loaded.DEBUG is True
    assert loaded.BITBUCKET_INSTALL_SIMULATOR is True
    assert loaded.ALLOWED_HOSTS == ["127.0.0.1", "localhost"]
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:8765"
    assert loaded.BITBUCKET_INSTALL_AUTHORIZE_URL == (
        "http://127.0.0.1:8765/bitbucket/simulator/authorize/"
    )
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI == (
        "http://127.0.0.1:8765/bitbucket/atlassian-connect.json"
    )


# --- the site ---------------------------------------------------------------------------------


@pytest.fixture
def example_site(settings: Settings) -> Iterator[None]:
    """This suite's settings with the example's URLs and app (templates, receivers)."""
    settings.ROOT_URLCONF = "example_project.urls"
    settings.INSTALLED_APPS = ["example_project.demo", *settings.INSTALLED_APPS]
    settings.LANGUAGES = [("en", "English"), ("fr", "Français")]
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "home"
    settings.LOGOUT_REDIRECT_URL = "home"
    installed.connect(receivers.announce_installed, dispatch_uid=INSTALLED_UID)
    install_failed.connect(receivers.announce_install_failed, dispatch_uid=FAILED_UID)
    yield
    installed.disconnect(dispatch_uid=INSTALLED_UID)
    install_failed.disconnect(dispatch_uid=FAILED_UID)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("home", "/"),
        ("installations", "/installations/"),
        ("login", "/accounts/login/"),
        ("logout", "/accounts/logout/"),
        ("set_language", "/i18n/setlang/"),
        ("admin:index", "/admin/"),
        ("bitbucket_install:start", "/bitbucket/install/"),
        ("bitbucket_install:callback", "/bitbucket/callback/"),
        ("bitbucket_install:descriptor", "/bitbucket/atlassian-connect.json"),
        ("bitbucket_install:simulator", "/bitbucket/simulator/authorize/"),
    ],
)
def test_example_urls_resolve(example_site: None, name: str, path: str) -> None:
    assert reverse(name) == path


@pytest.mark.django_db
def test_landing_page_shows_the_button(example_site: None, client: Client) -> None:
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<form class="bbi-form" method="post" action="/bitbucket/install/">' in html
    assert ">Connect to Bitbucket</button>" in html
    assert "Log in first" in html


@pytest.mark.django_db
def test_landing_page_in_french(example_site: None, client: Client) -> None:
    response = client.get("/", headers={"Accept-Language": "fr"})
    html = response.content.decode()
    assert '<html lang="fr">' in html
    assert ">Connecter à Bitbucket</button>" in html
    assert "Site d\u2019exemple" in html


@pytest.mark.django_db
def test_installations_page_requires_login(example_site: None, client: Client) -> None:
    response = client.get("/installations/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/installations/"


@pytest.mark.django_db
def test_installations_page_lists_only_the_users_rows(
    example_site: None, client: Client, django_user_model: type[User]
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    Installation.objects.create(client_key="connection:1", principal_name="Ada's team", user=ada)
    Installation.objects.create(client_key="connection:2", principal_name="Bob's team", user=bob)
    Installation.objects.create(client_key="connection:3", principal_name="Nobody's")
    client.force_login(ada)
    response = client.get("/installations/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "connection:1" in html
    assert "Ada&#x27;s team" in html
    assert "connection:2" not in html
    assert "connection:3" not in html
    assert [i.client_key for i in response.context["installations"]] == ["connection:1"]


@pytest.mark.django_db
def test_installations_page_without_rows(
    example_site: None, client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_user("cy", password="pw-cy-1234"))
    response = client.get("/installations/")
    assert 'id="no-installations"' in response.content.decode()


@pytest.mark.django_db
def test_login_page_logs_in(
    example_site: None, client: Client, django_user_model: type[User]
) -> None:
    django_user_model.objects.create_user("ada", password="pw-ada-123")
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'id="id_username"' in page.content.decode()
    wrong = client.post("/accounts/login/", {"username": "ada", "password": "nope"})
    assert wrong.status_code == 200
    assert 'role="alert"' in wrong.content.decode()
    response = client.post("/accounts/login/", {"username": "ada", "password": "pw-ada-123"})
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.django_db
def test_admin_lists_installations(
    example_site: None, client: Client, django_user_model: type[User]
) -> None:
    admin = django_user_model.objects.create_superuser("root", "", "pw-root-123")
    Installation.objects.create(client_key="connection:9", principal_name="Team nine")
    client.force_login(admin)
    response = client.get("/admin/bitbucket_install/installation/")
    assert response.status_code == 200
    assert "connection:9" in response.content.decode()


# --- the receivers ------------------------------------------------------------------------------


def request_with_messages() -> Any:
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    return request


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (True, "The app is installed on Acme and connected to your account."),
        (False, "The app is installed on Acme."),
    ],
)
def test_installed_receiver_adds_a_success_message(
    example_site: None, django_user_model: type[User], user: bool, expected: str
) -> None:
    request = request_with_messages()
    installation = Installation.objects.create(client_key="connection:1", principal_name="Acme")
    installed.send(
        sender=Installation,
        installation=installation,
        request=request,
        user=django_user_model(username="ada") if user else None,
        created=True,
    )
    [message] = list(get_messages(request))
    assert message.message == expected
    assert message.tags == "success"


@pytest.mark.django_db
def test_installed_receiver_falls_back_to_the_client_key(example_site: None) -> None:
    request = request_with_messages()
    installation = Installation.objects.create(client_key="connection:5")
    receivers.announce_installed(
        Installation, installation=installation, request=request, user=None, created=False
    )
    assert [m.message for m in get_messages(request)] == ["The app is installed on connection:5."]


def test_install_failed_receiver_adds_an_error_message(example_site: None) -> None:
    request = request_with_messages()
    install_failed.send(
        sender=Installation,
        request=request,
        user=None,
        error="access_denied",
        error_description="<b>no</b>",
    )
    [message] = list(get_messages(request))
    assert message.message == "The app was not installed (access_denied)."
    assert message.tags == "error"


def test_receivers_tolerate_a_request_without_messages(example_site: None) -> None:
    request = RequestFactory().get("/")
    receivers.announce_install_failed(
        Installation, request=request, user=None, error="x", error_description=""
    )
    assert not hasattr(request, "_messages")


@pytest.mark.django_db(transaction=True)
def test_whole_install_through_the_simulator_shows_the_message(
    example_site: None,
    settings: Settings,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    django_user_model: type[User],
) -> None:
    """Button, simulator consent, Grant, return trip, the example's installed page.

    A real transaction, so the ``installed`` receiver runs inside the callback request, as
    it does in production, and its message reaches the next page."""
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    settings.BITBUCKET_INSTALL_AUTHORIZE_URL = (
        "https://app.example.com/bitbucket/simulator/authorize/"
    )
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = (
        "https://app.example.com/bitbucket/atlassian-connect.json"
    )
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {"key": "example-app", "name": "Example app"}
    monkeypatch.setattr(simulator_transport, "send", Router())
    cache.clear()
    user = django_user_model.objects.create_user("ada", password="pw-ada-123")
    client.force_login(user)

    def follow(response: TestResponse) -> TestResponse:
        parts = urlsplit(response["Location"])
        result: TestResponse = client.get(
            parts.path + "?" + parts.query if parts.query else parts.path
        )
        return result

    consent = follow(client.post("/bitbucket/install/"))
    assert consent.status_code == 200
    granted = client.post(
        consent.wsgi_request.get_full_path(),
        {"action": "grant", "workspace": "Acme", "send_jwt": "on"},
    )
    # Bitbucket (the simulator) sends the browser back to the flow's own return path.
    [flow_id] = flow_ids(client)
    assert urlsplit(granted["Location"]).path == f"/bitbucket/callback/{flow_id}/"
    back = follow(granted)
    assert back.status_code == 303
    page = follow(back)
    html = page.content.decode()
    assert "The app is installed" in html
    assert "The app is installed on Acme and connected to your account." in html
    assert 'id="installations-link"' in html
    installation = Installation.objects.get()
    assert installation.user == user
    assert installation.confirmed_flow == flow_hash(flow_id)
    assert flow_ids(client) == []
    cache.clear()


@pytest.mark.django_db
def test_failed_install_page_shows_the_message(example_site: None, client: Client) -> None:
    """The example's install_failed receiver runs for the error return of its flow."""
    path = redirect_path(client.post("/bitbucket/install/"))
    back = client.get(path + "?error=access_denied&error_description=no")
    assert back.status_code == 303
    page = client.get(back["Location"])
    html = page.content.decode()
    assert "The app was not installed (access_denied)." in html
    assert 'id="home-link"' in html


@pytest.mark.django_db
def test_a_plain_error_return_adds_no_message(example_site: None, client: Client) -> None:
    """A return to callback/ names no flow: no install_failed, so no message, only the page."""
    client.post("/bitbucket/install/")
    back = client.get("/bitbucket/callback/?error=access_denied&error_description=no")
    assert back.status_code == 303
    html = client.get(back["Location"]).content.decode()
    assert "The app was not installed (access_denied)." not in html
    assert "You chose not to give the app access" in html
    assert len(flow_ids(client)) == 1


# --- the demo command ---------------------------------------------------------------------------


@pytest.fixture
def serve_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Record the runserver child instead of starting it; migrations are not re-run."""
    calls: list[tuple[list[str], dict[str, str]]] = []

    def run(
        command: list[str], env: dict[str, str], check: bool
    ) -> subprocess.CompletedProcess[str]:
        calls.append((command, env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(demo_command, "call_command", lambda *args, **kwargs: None)
    return calls


@pytest.mark.django_db
def test_demo_serves_on_the_port_with_the_simulator(
    example_site: None,
    serve_calls: list[tuple[list[str], dict[str, str]]],
    django_user_model: type[User],
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("demo", port=8765, noreload=True)
    out = capsys.readouterr().out
    assert "Open http://127.0.0.1:8765/" in out
    assert "Log in as admin / bitbucket-demo (just created)" in out
    [(command, env)] = serve_calls
    assert command == [
        sys.executable,
        str(EXAMPLE / "manage.py"),
        "runserver",
        "127.0.0.1:8765",
        "--noreload",
    ]
    assert env["PORT"] == "8765"
    assert env["DEBUG"] == "on"
    assert env["BITBUCKET_INSTALL_SIMULATOR"] == "on"
    assert env["BITBUCKET_INSTALL_BASE_URL"] == ""
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("bitbucket-demo")


@pytest.mark.django_db
def test_demo_never_changes_an_existing_superuser(
    example_site: None,
    serve_calls: list[tuple[list[str], dict[str, str]]],
    django_user_model: type[User],
    capsys: pytest.CaptureFixture[str],
) -> None:
    django_user_model.objects.create_superuser("admin", "", "bitbucket-demo")
    call_command("demo", port=8000, no_serve=True)
    assert "Log in as admin / bitbucket-demo\n" in capsys.readouterr().out
    admin = django_user_model.objects.get(username="admin")
    admin.set_password("changed-by-me")
    admin.save()
    call_command("demo", port=8000, no_serve=True)
    assert "exists with another password" in capsys.readouterr().out
    assert django_user_model.objects.get(username="admin").check_password("changed-by-me")
    assert serve_calls == []


@pytest.mark.django_db
def test_demo_reports_a_failing_server(
    example_site: None, monkeypatch: pytest.MonkeyPatch, serve_calls: list[Any]
) -> None:
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **kwargs: subprocess.CompletedProcess(command, 1),
    )
    with pytest.raises(CommandError, match="exit status 1"):
        call_command("demo", port=8000)


@pytest.mark.django_db
def test_demo_stops_quietly_on_ctrl_c(
    example_site: None, monkeypatch: pytest.MonkeyPatch, serve_calls: list[Any]
) -> None:
    def interrupted(command: list[str], **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)
    call_command("demo", port=8000)


@pytest.mark.parametrize("port", [0, 70000])
def test_demo_refuses_a_bad_port(example_site: None, port: int) -> None:
    with pytest.raises(CommandError, match="--port"):
        call_command("demo", port=port, no_serve=True)


def test_demo_sets_up_a_fresh_database(tmp_path: Path) -> None:
    """``manage.py demo`` in a new process, as ``make demo`` runs it (without serving)."""
    database = tmp_path / "db.sqlite3"
    environment = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{database}",
        "ENV_FILE": str(tmp_path / "none.env"),
    }
    command = [sys.executable, str(EXAMPLE / "manage.py"), "demo", "--port", "8765", "--no-serve"]
    first = subprocess.run(  # noqa: S603
        command, env=environment, capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert "Open http://127.0.0.1:8765/" in first.stdout
    assert "Log in as admin / bitbucket-demo (just created)" in first.stdout
    second = subprocess.run(  # noqa: S603
        command, env=environment, capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    assert "(just created)" not in second.stdout
    # sqlite3's own context manager commits but does not close (a ResourceWarning).
    with contextlib.closing(sqlite3.connect(database)) as connection:
        users = connection.execute("select username, is_superuser from auth_user").fetchall()
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert users == [("admin", 1)]
    assert {"example_project_cache", "bitbucket_install_installation"} <= tables


# --- translations -------------------------------------------------------------------------------


CATALOGUES = [
    ROOT / "bitbucket_install" / "locale" / "fr" / "LC_MESSAGES",
    EXAMPLE / "demo" / "locale" / "fr" / "LC_MESSAGES",
]


def read_po(path: Path) -> dict[str, list[str]]:
    """msgid (with ``\\x00`` + plural) -> msgstr values, of a .po file's entries."""
    entries: dict[str, list[str]] = {}
    fields: dict[str, str] = {}
    current = ""

    def flush() -> None:
        if fields.get("msgid"):
            key = fields["msgid"]
            if "msgid_plural" in fields:
                key += "\x00" + fields["msgid_plural"]
            entries[key] = [v for k, v in sorted(fields.items()) if k.startswith("msgstr")]
        fields.clear()

    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            flush()
            continue
        if line.startswith("#"):
            continue
        match = re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d\])?) (\".*\")$", line)
        if match:
            current = match.group(1)
            fields[current] = json.loads(match.group(2))
        else:
            fields[current] += json.loads(line)
    return entries


@pytest.mark.parametrize("directory", CATALOGUES, ids=["app", "example"])
def test_french_catalogue_is_complete_and_compiled(directory: Path) -> None:
    entries = read_po(directory / "django.po")
    assert len(entries) > 20
    with (directory / "django.mo").open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    for msgid, translations in entries.items():
        assert all(translations), f"untranslated: {msgid!r}"
        singular, _, plural = msgid.partition("\x00")
        if plural:
            assert catalogue.ngettext(singular, plural, 1) == translations[0]
            assert catalogue.ngettext(singular, plural, 2) == translations[1]
        else:
            assert catalogue.gettext(msgid) == translations[0], f"stale .mo for {msgid!r}"
    assert "#, fuzzy" not in (directory / "django.po").read_text()


def test_app_templates_strings_are_in_the_catalogue() -> None:
    """Every {% translate %} string of the app's templates is in the French catalogue."""
    entries = read_po(CATALOGUES[0] / "django.po")
    templates = ROOT / "bitbucket_install" / "templates"
    found = set()
    for template in templates.rglob("*.html"):
        found |= set(re.findall(r'{% translate "([^"]+)" %}', template.read_text()))
    assert found
    assert found <= set(entries)
