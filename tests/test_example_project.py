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
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.error import URLError
from urllib.parse import urlsplit
from urllib.request import urlopen

import environ
import httpx
import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install.client import BitbucketClient
from bitbucket_install.flow import flow_hash
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed, webhook_received
from bitbucket_install.simulator import state as simulator_state
from bitbucket_install.simulator import transport as simulator_transport
from example_project import local_secrets
from example_project.demo import receivers
from example_project.demo import views as demo_views
from example_project.demo.management.commands import demo as demo_command
from example_project.demo.models import ReceivedWebhook
from tests.callback_helpers import flow_ids, redirect_path
from tests.conftest import SignalRecorder
from tests.simulator.helpers import Router, django_transport

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

INSTALLED_UID = "example_project.demo.receivers.announce_installed"
FAILED_UID = "example_project.demo.receivers.announce_install_failed"
WEBHOOK_UID = "example_project.demo.receivers.record_webhook"
# Importing the receivers connected them; they are connected only inside ``example_site``,
# so the rest of the suite never runs the example's receivers.
installed.disconnect(dispatch_uid=INSTALLED_UID)
install_failed.disconnect(dispatch_uid=FAILED_UID)
webhook_received.disconnect(dispatch_uid=WEBHOOK_UID)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
SETTINGS_FILE = EXAMPLE / "settings.py"
ENV_EXAMPLE = EXAMPLE / ".env.example"


# --- settings -------------------------------------------------------------------------------

# What `check --deploy` needs from the environment when DEBUG is off (as the docstring of
# example_project/settings.py says).
PRODUCTION = {
    "SECRET_KEY": "a-production-secret-key-of-more-than-fifty-characters-0123456789",
    "BITBUCKET_INSTALL_BASE_URL": "https://app.example.com",
}
# A deployed Connect app names the Forge app it moves to (else check W012 reminds it).
FORGE = {
    "BITBUCKET_INSTALL_FORGE_APP_ID": (
        "ari:cloud:ecosystem::app/406d303d-7e2c-4c0b-9f4a-2a7f3c2d1e0b"
    ),
    "BITBUCKET_INSTALL_FORGE_APP_LINK": "https://developer.atlassian.com/console/install/406d303d",
}
# The follow-up check of new installations needs a backend that runs tasks later.
WORKER = {"TASKS_BACKEND": "django_tasks_db.DatabaseBackend"}


def load_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    dotenv: str | None = None,
    **variables: str,
) -> ModuleType:
    """example_project/settings.py run with only ``variables`` in the environment and
    ``dotenv`` as its .env file; nothing leaks into this process's environment, and what
    it generates goes to ``tmp_path / "dev"``."""
    environment = {
        "ENV_FILE": str(tmp_path / "missing.env"),
        "DEV_STATE_DIR": str(tmp_path / "dev"),
        **variables,
    }
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


def test_development_settings_are_a_local_unregistered_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(monkeypatch, tmp_path, DEBUG="on")
    assert loaded.DEBUG is True
    assert loaded.ALLOWED_HOSTS == ["127.0.0.1", "localhost", "[::1]"]
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
    # Development: plain HTTP cookies and no HTTPS redirect, so runserver works.
    assert loaded.SESSION_COOKIE_SECURE is False
    assert loaded.SECURE_SSL_REDIRECT is False
    assert loaded.SECURE_HSTS_SECONDS == 0
    assert not hasattr(loaded, "SECURE_PROXY_SSL_HEADER")


def test_development_secret_key_is_generated_per_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With DEBUG on and no SECRET_KEY: a random key, the same on every load of this
    checkout, another in another checkout, never the key of a file in the repository."""
    first = load_settings(monkeypatch, tmp_path, DEBUG="on").SECRET_KEY
    again = load_settings(monkeypatch, tmp_path, DEBUG="on").SECRET_KEY
    elsewhere = load_settings(
        monkeypatch, tmp_path, DEBUG="on", DEV_STATE_DIR=str(tmp_path / "other-checkout")
    ).SECRET_KEY
    assert first == again
    assert first != elsewhere
    assert len(first) >= 50
    assert len(set(first)) >= 5
    assert not first.startswith("django-insecure-")
    assert first not in SETTINGS_FILE.read_text()
    stored = tmp_path / "dev" / "secret_key"
    assert stored.read_text().strip() == first
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    # The directory keeps itself out of git.
    assert (tmp_path / "dev" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert sorted(path.name for path in (tmp_path / "dev").iterdir()) == [
        ".gitignore",
        "secret_key",
    ]


def test_local_secret_race_keeps_one_secret(tmp_path: Path) -> None:
    """Two processes generating the secret at once: the loser reads the winner's."""
    winner = local_secrets.local_secret(tmp_path, "secret_key")
    (tmp_path / "secret_key").unlink()
    original_link = os.link

    def link_after_another_process(source: Path, target: Path) -> None:
        (tmp_path / "secret_key").write_text("the-other-process-was-first\n")
        original_link(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", link_after_another_process)
        loser = local_secrets.local_secret(tmp_path, "secret_key")
    assert winner != loser == "the-other-process-was-first"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".gitignore", "secret_key"]


def test_debug_is_off_unless_the_environment_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings(monkeypatch, tmp_path, **PRODUCTION).DEBUG is False
    assert load_settings(monkeypatch, tmp_path, DEBUG="off", **PRODUCTION).DEBUG is False
    assert load_settings(monkeypatch, tmp_path, DEBUG="on").DEBUG is True


@pytest.mark.parametrize("missing", sorted(PRODUCTION))
def test_debug_off_needs_a_secret_key_and_a_base_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    given = {name: value for name, value in PRODUCTION.items() if name != missing}
    with pytest.raises(ImproperlyConfigured, match=missing):
        load_settings(monkeypatch, tmp_path, **given)
    assert not (tmp_path / "dev").exists()  # nothing generated with DEBUG off


def test_debug_off_is_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = load_settings(monkeypatch, tmp_path, **PRODUCTION)
    assert PRODUCTION["SECRET_KEY"] == loaded.SECRET_KEY
    assert loaded.ALLOWED_HOSTS == ["app.example.com"]
    assert loaded.SESSION_COOKIE_SECURE is True
    assert loaded.CSRF_COOKIE_SECURE is True
    assert loaded.SECURE_SSL_REDIRECT is True
    assert loaded.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert loaded.SECURE_HSTS_SECONDS == 365 * 24 * 3600
    assert loaded.SECURE_HSTS_INCLUDE_SUBDOMAINS is True
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI == (
        "https://app.example.com/bitbucket/atlassian-connect.json"
    )
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["vendor"]["url"] == "https://app.example.com"


def manage(tmp_path: Path, *arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """example_project/manage.py in a new process with only ``variables`` set."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ENV_FILE": str(tmp_path / "none.env"),
        "DEV_STATE_DIR": str(tmp_path / "dev"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **variables,
    }
    return subprocess.run(  # noqa: S603
        [sys.executable, str(EXAMPLE / "manage.py"), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )


def test_deploy_check_is_clean_with_debug_off(tmp_path: Path) -> None:
    deployed = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, **WORKER, **FORGE
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "System check identified no issues" in deployed.stdout
    # Without a Forge app, the deploy check reminds of Connect's end of support.
    reminded = manage(tmp_path, "check", "--deploy", **PRODUCTION, **WORKER)
    assert "bitbucket_install.W012" in reminded.stdout + reminded.stderr
    # The same check with DEBUG on says what makes that configuration unfit to deploy.
    developing = manage(tmp_path, "check", "--deploy", DEBUG="on")
    for warning in ("security.W018", "security.W012", "security.W016", "security.W008"):
        assert warning in developing.stderr + developing.stdout


def test_debug_off_without_a_secret_key_does_not_start(tmp_path: Path) -> None:
    refused = manage(tmp_path, "check")
    assert refused.returncode != 0
    assert "needs SECRET_KEY when DEBUG is off" in refused.stderr
    assert "never deploy it" in refused.stderr


def test_port_and_simulator_move_every_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(
        monkeypatch, tmp_path, DEBUG="on", PORT="8765", BITBUCKET_INSTALL_SIMULATOR="on"
    )
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:8765"
    assert loaded.BITBUCKET_INSTALL_AUTHORIZE_URL == (
        "http://127.0.0.1:8765/bitbucket/simulator/authorize/"
    )
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI == (
        "http://127.0.0.1:8765/bitbucket/atlassian-connect.json"
    )


def test_registered_mode_uses_the_app_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = load_settings(
        monkeypatch, tmp_path, DEBUG="on", DEMO_INSTALL_MODE="registered", DEMO_APP_KEY="my-app"
    )
    assert loaded.BITBUCKET_INSTALL_ADDON_KEY == "my-app"
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR_URI is None
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["key"] == "my-app"


def test_database_url_selects_postgresql(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = load_settings(
        monkeypatch, tmp_path, DEBUG="on", DATABASE_URL="postgres://bb:pw@db.example.com:5433/demo"
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
    dotenv = "DEMO_APP_NAME=From dotenv\nPORT=9000\nDEMO_APP_SCOPES=account,webhook\nDEBUG=off\n"
    loaded = load_settings(monkeypatch, tmp_path, dotenv, PORT="9100", DEBUG="on")
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["name"] == "From dotenv"
    assert loaded.BITBUCKET_INSTALL_DESCRIPTOR["scopes"] == ["account", "webhook"]
    assert loaded.BITBUCKET_INSTALL_BASE_URL == "http://127.0.0.1:9100"
    assert loaded.DEBUG is True


def test_unknown_install_mode_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="DEMO_INSTALL_MODE"):
        load_settings(monkeypatch, tmp_path, DEBUG="on", DEMO_INSTALL_MODE="both")


def test_env_example_documents_every_variable_and_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', SETTINGS_FILE.read_text()))
    documented = set(re.findall(r"^#? ?([A-Z][A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert read - {"ENV_FILE"} <= documented
    assert "ENV_FILE" in ENV_EXAMPLE.read_text()
    # Copied as it is to .env, it gives the defaults: DEBUG off, so it needs what
    # production needs; with DEBUG on from the environment, the development defaults.
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load_settings(monkeypatch, tmp_path, ENV_EXAMPLE.read_text())
    loaded = load_settings(monkeypatch, tmp_path, ENV_EXAMPLE.read_text(), DEBUG="on")
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
    assert environment["DJANGO_RUNSERVER_HIDE_WARNING"] == "true"


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
    webhook_received.connect(receivers.record_webhook, dispatch_uid=WEBHOOK_UID)
    yield
    installed.disconnect(dispatch_uid=INSTALLED_UID)
    install_failed.disconnect(dispatch_uid=FAILED_UID)
    webhook_received.disconnect(dispatch_uid=WEBHOOK_UID)


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
        ("bitbucket_install:simulator_console", "/bitbucket/simulator/console/"),
        ("api", "/api/"),
        ("webhooks", "/webhooks/"),
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
def test_installed_receiver_adds_a_success_message(
    example_site: None, django_user_model: type[User]
) -> None:
    request = request_with_messages()
    installation = Installation.objects.create(client_key="connection:1", principal_name="Acme")
    installed.send(
        sender=Installation,
        installation=installation,
        request=request,
        user=django_user_model(username="ada"),
        created=True,
    )
    [message] = list(get_messages(request))
    assert message.message == "The app is installed on Acme and connected to your account."
    assert message.tags == "success"


@pytest.mark.django_db
def test_installed_receiver_tells_a_request_connected_to_nobody_nothing(
    example_site: None,
) -> None:
    """With no user, the request may be anybody's (an unsigned return names any clientKey):
    no message, so the page names no workspace."""
    request = request_with_messages()
    installation = Installation.objects.create(client_key="connection:1", principal_name="Acme")
    installed.send(
        sender=Installation, installation=installation, request=request, user=None, created=True
    )
    assert list(get_messages(request)) == []


@pytest.mark.django_db
def test_installed_receiver_falls_back_to_the_client_key(
    example_site: None, django_user_model: type[User]
) -> None:
    request = request_with_messages()
    installation = Installation.objects.create(client_key="connection:5")
    receivers.announce_installed(
        Installation,
        installation=installation,
        request=request,
        user=django_user_model(username="ada"),
        created=False,
    )
    assert [m.message for m in get_messages(request)] == [
        "The app is installed on connection:5 and connected to your account."
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("access_denied", "You chose not to give the app access, so nothing was installed."),
        ("made_up_code", "Bitbucket did not install the app. Please try again."),
    ],
)
def test_install_failed_receiver_adds_an_error_message(
    example_site: None, error: str, expected: str
) -> None:
    """The app's own words for the error, never the bare code."""
    request = request_with_messages()
    install_failed.send(
        sender=Installation,
        request=request,
        user=None,
        error=error,
        error_description="<b>no</b>",
    )
    [message] = list(get_messages(request))
    assert message.message == expected
    assert error not in message.message
    assert message.tags == "error"


def test_receivers_tolerate_a_request_without_messages(example_site: None) -> None:
    request = RequestFactory().get("/")
    receivers.announce_install_failed(
        Installation, request=request, user=None, error="x", error_description=""
    )
    assert not hasattr(request, "_messages")


def follow(client: Client, response: TestResponse) -> TestResponse:
    """The page a redirect leads to, fetched by ``client``."""
    parts = urlsplit(response["Location"])
    result: TestResponse = client.get(parts.path + ("?" + parts.query if parts.query else ""))
    return result


def grant_through_the_simulator(client: Client) -> TestResponse:
    """The button pressed and Grant chosen for workspace Acme: the simulator's redirect."""
    consent = follow(client, client.post("/bitbucket/install/"))
    assert consent.status_code == 200
    granted: TestResponse = client.post(
        consent.wsgi_request.get_full_path(),
        {"action": "grant", "workspace": "Acme", "send_jwt": "on"},
    )
    return granted


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

    granted = grant_through_the_simulator(client)
    # Bitbucket (the simulator) sends the browser back to the flow's own return path.
    [flow_id] = flow_ids(client)
    assert urlsplit(granted["Location"]).path == f"/bitbucket/callback/{flow_id}/"
    back = follow(client, granted)
    assert back.status_code == 303
    page = follow(client, back)
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
    assert "You chose not to give the app access, so nothing was installed." in html
    assert "(access_denied)" not in html
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

# What `manage.py check` says in the demo's server environment (descriptor mode).
DEMO_CHECK_REPORT = """System check identified some issues:

WARNINGS:
?: (bitbucket_install.W001) The descriptor URI uses plain HTTP; Bitbucket refuses it.
\tHINT: Only the development simulator accepts HTTP on a loopback host.
?: (bitbucket_install.W002) The base URL uses plain HTTP; Bitbucket refuses it.
\tHINT: Only the development simulator accepts HTTP on a loopback host.
?: (bitbucket_install.W003) The development simulator is enabled.
\tHINT: Never enable BITBUCKET_INSTALL_SIMULATOR outside development.

System check identified 3 issues (0 silenced).
"""
EXPECTED_SUMMARY = (
    "System checks: plain HTTP on 127.0.0.1 and the development simulator on "
    "(W001, W002, W003), as expected for the demo."
)


@pytest.fixture
def dev_state(settings: Settings, tmp_path: Path) -> Path:
    """The demo's settings: DEBUG on (as make demo runs it), and where it keeps its
    generated password during the test."""
    settings.DEBUG = True
    settings.DEV_STATE_DIR = tmp_path / "dev"
    return tmp_path / "dev"


ServeCalls = list[tuple[list[str], dict[str, str]]]


@pytest.fixture
def serve_calls(monkeypatch: pytest.MonkeyPatch, dev_state: Path) -> ServeCalls:
    """Record the check and runserver children instead of starting them (the check
    answers what it answers in the demo); migrations are not re-run."""
    calls: ServeCalls = []

    def run(
        command: list[str], env: dict[str, str], check: bool, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        calls.append((command, env))
        if command[2] == "check":
            return subprocess.CompletedProcess(command, 0, stdout="", stderr=DEMO_CHECK_REPORT)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(demo_command, "call_command", lambda *args, **kwargs: None)
    return calls


@pytest.mark.django_db
def test_demo_serves_on_the_port_with_the_simulator(
    example_site: None,
    serve_calls: ServeCalls,
    dev_state: Path,
    django_user_model: type[User],
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("demo", port=8765, noreload=True)
    out = capsys.readouterr().out
    assert "Open http://127.0.0.1:8765/" in out
    password = (dev_state / "admin_password").read_text().strip()
    assert len(password) >= 16
    assert f"Log in as admin / {password} (just created)" in out
    assert "development only: never deploy it" in out
    # The expected warnings in one line, none of them as the server would print them.
    assert EXPECTED_SUMMARY in out
    assert "WARNING" not in out
    [(check, check_env), (command, env)] = serve_calls
    assert check == [sys.executable, str(EXAMPLE / "manage.py"), "check"]
    assert check_env == env
    assert command == [
        sys.executable,
        str(EXAMPLE / "manage.py"),
        "runserver",
        "127.0.0.1:8765",
        "--skip-checks",
        "--noreload",
    ]
    assert env["PORT"] == "8765"
    assert env["DEBUG"] == "on"
    assert env["BITBUCKET_INSTALL_SIMULATOR"] == "on"
    assert env["BITBUCKET_INSTALL_BASE_URL"] == ""
    admin = django_user_model.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert not admin.check_password("bitbucket-demo")  # the old, public password


@pytest.mark.django_db
def test_demo_password_is_per_checkout_unless_given(
    example_site: None,
    serve_calls: ServeCalls,
    settings: Settings,
    django_user_model: type[User],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    call_command("demo", port=8000, no_serve=True)
    first = django_user_model.objects.get(username="admin")
    first.delete()
    settings.DEV_STATE_DIR = tmp_path / "another-checkout"
    call_command("demo", port=8000, no_serve=True)
    second = django_user_model.objects.get(username="admin")
    assert first.password != second.password
    second.delete()
    settings.DEMO_ADMIN_PASSWORD = "a-password-of-my-own"
    call_command("demo", port=8000, no_serve=True)
    assert "Log in as admin / a-password-of-my-own (just created)" in capsys.readouterr().out
    assert django_user_model.objects.get(username="admin").check_password("a-password-of-my-own")


@pytest.mark.django_db
def test_demo_never_changes_an_existing_superuser(
    example_site: None,
    serve_calls: ServeCalls,
    settings: Settings,
    django_user_model: type[User],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings.DEMO_ADMIN_PASSWORD = "the-demo-password"
    django_user_model.objects.create_superuser("admin", "", "the-demo-password")
    call_command("demo", port=8000, no_serve=True)
    assert "Log in as admin / the-demo-password\n" in capsys.readouterr().out
    admin = django_user_model.objects.get(username="admin")
    admin.set_password("changed-by-me")
    admin.save()
    call_command("demo", port=8000, no_serve=True)
    assert "exists with another password" in capsys.readouterr().out
    assert django_user_model.objects.get(username="admin").check_password("changed-by-me")
    assert serve_calls == []


@pytest.mark.django_db
def test_demo_refuses_to_run_with_debug_off(
    example_site: None,
    serve_calls: ServeCalls,
    settings: Settings,
    django_user_model: type[User],
) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="development only"):
        call_command("demo", port=8000)
    assert serve_calls == []
    assert not django_user_model.objects.exists()


@pytest.mark.django_db
def test_demo_shows_unexpected_findings_whole(
    example_site: None,
    serve_calls: ServeCalls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = DEMO_CHECK_REPORT.replace("bitbucket_install.W001", "bitbucket_install.W005")

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        serve_calls.append((command, kwargs["env"]))
        return subprocess.CompletedProcess(command, 0, stdout=report, stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    call_command("demo", port=8000)
    out = capsys.readouterr().out
    assert report in out
    assert "as expected for the demo" not in out
    assert len(serve_calls) == 2  # the server started all the same


@pytest.mark.django_db
def test_demo_does_not_serve_when_the_checks_find_errors(
    example_site: None,
    serve_calls: ServeCalls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = "SystemCheckError: ?: (bitbucket_install.E007) The base URL is missing.\n"

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        serve_calls.append((command, kwargs["env"]))
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=report)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(CommandError, match="system checks found errors"):
        call_command("demo", port=8000)
    assert report in capsys.readouterr().out
    assert [command[2] for command, _env in serve_calls] == ["check"]


@pytest.mark.parametrize(
    ("found", "summary"),
    [
        ([], "System checks: no issues."),
        (
            ["W002", "W003"],
            "plain HTTP on 127.0.0.1 and the development simulator on (W002, W003)",
        ),
        (["W003"], "System checks: the development simulator on (W003), as expected"),
        (["W001"], "System checks: plain HTTP on 127.0.0.1 (W001), as expected"),
    ],
)
def test_summary_of_the_expected_checks(found: list[str], summary: str) -> None:
    """Registered mode has no descriptor URI (no W001); a demo of one's own may differ."""
    report = "".join(f"?: (bitbucket_install.{check_id}) ...\n" for check_id in found)
    line = demo_command.summarize_checks(report + "System check identified ...\n")
    assert line is not None
    assert summary in line


@pytest.mark.django_db
def test_demo_reports_a_failing_server(
    example_site: None, monkeypatch: pytest.MonkeyPatch, serve_calls: ServeCalls
) -> None:
    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        failed = 1 if command[2] == "runserver" else 0
        return subprocess.CompletedProcess(command, failed, stdout="", stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(CommandError, match="exit status 1"):
        call_command("demo", port=8000)


@pytest.mark.django_db
def test_demo_stops_quietly_on_ctrl_c(
    example_site: None, monkeypatch: pytest.MonkeyPatch, serve_calls: ServeCalls
) -> None:
    def interrupted(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if command[2] == "runserver":
            raise KeyboardInterrupt
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(subprocess, "run", interrupted)
    call_command("demo", port=8000)


@pytest.mark.parametrize("port", [0, 70000])
def test_demo_refuses_a_bad_port(example_site: None, dev_state: Path, port: int) -> None:
    with pytest.raises(CommandError, match="--port"):
        call_command("demo", port=port, no_serve=True)


def test_demo_sets_up_a_fresh_database(tmp_path: Path) -> None:
    """``manage.py demo`` in a new process, as ``make demo`` runs it (without serving)."""
    first = manage(tmp_path, "demo", "--port", "8765", "--no-serve", DEBUG="on")
    assert first.returncode == 0, first.stderr
    assert "Open http://127.0.0.1:8765/" in first.stdout
    password = (tmp_path / "dev" / "admin_password").read_text().strip()
    assert f"Log in as admin / {password} (just created)" in first.stdout
    second = manage(tmp_path, "demo", "--port", "8765", "--no-serve", DEBUG="on")
    assert second.returncode == 0, second.stderr
    assert f"Log in as admin / {password}\n" in second.stdout
    # sqlite3's own context manager commits but does not close (a ResourceWarning).
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as connection:
        users = connection.execute("select username, is_superuser from auth_user").fetchall()
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert users == [("admin", 1)]
    assert {"example_project_cache", "bitbucket_install_installation"} <= tables


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_demo_starts_quietly_from_a_fresh_checkout(tmp_path: Path) -> None:
    """``make demo``'s command, really serving: no .env, nothing alarming on the way, and
    the landing page answers."""
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DEBUG": "on",  # as make demo sets it
        "PYTHONUNBUFFERED": "1",  # everything printed reaches the log before the stop
        "ENV_FILE": str(tmp_path / "none.env"),
        "DEV_STATE_DIR": str(tmp_path / "dev"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    command = [sys.executable, str(EXAMPLE / "manage.py"), "demo", "--port", str(port)]
    log = tmp_path / "demo.log"
    with log.open("w") as output:
        demo = subprocess.Popen(  # noqa: S603
            [*command, "--noreload"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,  # its runserver child is in its process group
        )
        try:
            status = page_status(f"http://127.0.0.1:{port}/", demo)
        finally:
            os.killpg(demo.pid, 15)
            demo.wait(timeout=10)
    printed = log.read_text()
    assert status == 200, printed
    assert EXPECTED_SUMMARY in printed
    assert "never deploy it" in printed
    for alarming in ("WARNING", "?: (", "Error", "Traceback", ".env "):
        assert alarming not in printed, printed


def page_status(url: str, server: subprocess.Popen[bytes]) -> int:
    """The status of ``url`` once the server answers (within 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the demo stopped"
        try:
            with urlopen(url, timeout=5) as response:  # noqa: S310 (a local http URL)
                status: int = response.status
                return status
        except URLError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within 30 s")


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


# --- the API and webhooks pages -------------------------------------------------------------

SIMULATED_API = "https://app.example.com/bitbucket/simulator/api"
SIMULATED_SECRET = "simulated-secret-of-the-example-0123456789"


@pytest.fixture(scope="module")
def demo_tables(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """The example's own table, made outside any test's transaction (the suite's settings
    do not install the example's app, so its migration never runs here)."""
    with django_db_blocker.unblock(), connection.schema_editor() as editor:
        editor.create_model(ReceivedWebhook)
    yield
    with django_db_blocker.unblock(), connection.schema_editor() as editor:
        editor.delete_model(ReceivedWebhook)


@pytest.fixture
def simulator_site(example_site: None, settings: Settings) -> Iterator[None]:
    settings.DEBUG = True
    settings.BITBUCKET_INSTALL_SIMULATOR = True
    cache.clear()
    yield
    cache.clear()


def simulated_installation(
    user: User, client_key: str = "connection:77", **fields: Any
) -> Installation:
    """An installation the simulator knows, connected to ``user``."""
    simulator_state.remember_install(
        "install:" + client_key,
        client_key,
        SIMULATED_SECRET,
        app_key="example-app",
        workspace="Acme",
        scopes=("account", "repository"),
    )
    values: dict[str, Any] = {
        "client_key": client_key,
        "addon_key": "example-app",
        "shared_secret": SIMULATED_SECRET,
        "base_url": "https://app.example.com/bitbucket/simulator",
        "base_api_url": SIMULATED_API,
        "principal_name": "Acme",
        "user": user,
        **fields,
    }
    installation: Installation = Installation.objects.create(**values)
    return installation


def route_client(monkeypatch: pytest.MonkeyPatch, transport: httpx.BaseTransport) -> None:
    """The API page's client sends through ``transport`` instead of the network."""

    def client(installation: Installation) -> BitbucketClient:
        return BitbucketClient(installation, transport=transport)

    monkeypatch.setattr(demo_views, "BitbucketClient", client)


@pytest.mark.parametrize("path", ["/api/", "/webhooks/"])
def test_api_and_webhooks_pages_require_login(
    example_site: None, client: Client, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
def test_api_page_without_an_installation(
    simulator_site: None, client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_user("ada", password="pw-ada-123"))
    response = client.get("/api/")
    assert response.status_code == 200
    assert 'id="no-installation"' in response.content.decode()


@pytest.mark.django_db
def test_api_page_calls_the_simulated_api(
    simulator_site: None,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    django_user_model: type[User],
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    installation = simulated_installation(ada)
    route_client(monkeypatch, django_transport(Client()))
    client.force_login(ada)
    response = client.get("/api/")
    html = response.content.decode()
    assert response.status_code == 200
    assert installation.client_key in html
    outcomes = {item["call"]: item for item in response.context["outcomes"]}
    assert list(outcomes) == ["user", "workspaces", "repositories", "access_token"]
    assert all("error" not in item for item in outcomes.values())
    assert json.loads(outcomes["user"]["result"])["display_name"] == "Simulated user"
    assert json.loads(outcomes["workspaces"]["result"])["values"][0]["slug"] == "acme"
    repositories = json.loads(outcomes["repositories"]["result"])
    assert [repo["full_name"] for repo in repositories["values"]] == [
        "acme/website",
        "acme/api-service",
    ]
    token = json.loads(outcomes["access_token"]["result"])
    assert token["access_token"].endswith("…")
    assert token["length"] > 20
    assert "Simulated user" in html
    assert "acme/website" in html


@pytest.mark.django_db
def test_api_page_shows_errors_nicely(
    simulator_site: None,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    django_user_model: type[User],
) -> None:
    """A refused token, a 429 that outlasts the retries, another error status, a refusal
    to send, no answer at all: each said in words, the other calls still made."""
    settings.BITBUCKET_INSTALL_API_RETRIES = 0
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    simulated_installation(ada)

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/2.0/user"):
            return httpx.Response(
                401, json={"type": "error", "error": {"message": "Unauthorized"}}
            )
        if path.endswith("/2.0/workspaces"):
            return httpx.Response(429, text="Rate limit for this resource has been exceeded")
        if "/2.0/repositories/" in path:
            return httpx.Response(500, text="<html>Oops</html>")
        raise httpx.ConnectError("refused", request=request)

    route_client(monkeypatch, httpx.MockTransport(answer))
    client.force_login(ada)
    response = client.get("/api/")
    errors = [item.get("error") for item in response.context["outcomes"]]
    assert errors == [
        "Bitbucket refused the token (HTTP 401): Unauthorized",
        "Rate limited (HTTP 429), the retries given up: "
        "Rate limit for this resource has been exceeded",
        "Bitbucket answered HTTP 500: <html>Oops</html>",
        "No answer: ConnectError",
    ]
    html = response.content.decode()
    assert "&lt;html&gt;Oops&lt;/html&gt;" in html
    assert "<html>Oops" not in html
    assert html.count('role="alert"') == 4


@pytest.mark.django_db
def test_api_page_refuses_to_send_off_the_origins(
    simulator_site: None, client: Client, django_user_model: type[User]
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    simulated_installation(
        ada, base_api_url="https://elsewhere.example.net", base_url="https://elsewhere.example.net"
    )
    client.force_login(ada)
    response = client.get("/api/")
    errors = [item["error"] for item in response.context["outcomes"]]
    assert len(errors) == 4
    assert all(error.startswith("Not sent: ") for error in errors)


@pytest.mark.django_db
def test_api_page_chooses_among_the_users_installations_only(
    simulator_site: None,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    django_user_model: type[User],
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    first = simulated_installation(ada, "connection:1", principal_name="First")
    second = simulated_installation(ada, "connection:2", principal_name="Second")
    bobs = simulated_installation(bob, "connection:3", principal_name="Bob's")
    simulated_installation(ada, "connection:4", uninstalled_at=timezone.now())
    route_client(monkeypatch, django_transport(Client()))
    client.force_login(ada)
    assert client.get("/api/").context["installation"] == second  # the most recent
    assert client.get(f"/api/?installation={first.pk}").context["installation"] == first
    # Another user's installation is never called: the page falls back to nothing.
    response = client.get(f"/api/?installation={bobs.pk}")
    assert response.context["installation"] is None
    assert 'id="no-installation"' in response.content.decode()
    assert client.get("/api/?installation=x").context["installation"] == second
    html = client.get("/api/").content.decode()
    assert 'id="choose-installation"' in html
    assert "Bob&#x27;s" not in html


@pytest.mark.django_db
def test_the_receiver_records_each_signalled_delivery(
    example_site: None, demo_tables: None, django_user_model: type[User]
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    installation = Installation.objects.create(
        client_key="connection:5", principal_name="Acme", user=ada
    )
    webhook_received.send(
        Installation,
        installation=installation,
        event="repo:push",
        payload={"a": [1]},
        request=None,
    )
    delivery = ReceivedWebhook.objects.get()
    assert (delivery.client_key, delivery.workspace, delivery.event) == (
        "connection:5",
        "Acme",
        "repo:push",
    )
    assert delivery.payload == {"a": [1]}
    assert str(delivery) == "repo:push (connection:5)"


@pytest.mark.django_db
def test_webhooks_page_lists_only_the_users_deliveries(
    simulator_site: None, demo_tables: None, client: Client, django_user_model: type[User]
) -> None:
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-123")
    Installation.objects.create(client_key="connection:1", user=ada)
    Installation.objects.create(client_key="connection:2", user=bob)
    ReceivedWebhook.objects.create(
        client_key="connection:1", workspace="Acme", event="repo:push", payload={"n": "<b>"}
    )
    ReceivedWebhook.objects.create(
        client_key="connection:2", event="pullrequest:created", payload={}
    )
    client.force_login(ada)
    response = client.get("/webhooks/")
    html = response.content.decode()
    assert response.status_code == 200
    assert [d.event for d in response.context["deliveries"]] == ["repo:push"]
    assert "repo:push" in html
    assert "pullrequest:created" not in html
    assert "&lt;b&gt;" in html
    assert 'href="/bitbucket/simulator/console/"' in html


@pytest.mark.django_db
def test_webhooks_page_without_deliveries_or_simulator(
    example_site: None, demo_tables: None, client: Client, django_user_model: type[User]
) -> None:
    client.force_login(django_user_model.objects.create_user("ada", password="pw-ada-123"))
    html = client.get("/webhooks/").content.decode()
    assert 'id="no-deliveries"' in html
    assert 'id="console-link"' not in html


def test_example_settings_subscribe_to_webhooks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    loaded = load_settings(monkeypatch, tmp_path, "", DEBUG="on")
    assert loaded.BITBUCKET_INSTALL_WEBHOOKS == ["repo:push", "pullrequest:created"]
    assert loaded.BITBUCKET_INSTALL_API_MAX_RETRY_WAIT == 5


def test_make_demo_installs_the_client_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-e '.[example,client,forge]'" in makefile


def unregistered_on(settings: Settings, base: str) -> None:
    """The site an unregistered app at ``base`` (a live server), with the scopes the
    simulated API's repository calls need."""
    settings.BITBUCKET_INSTALL_BASE_URL = base
    settings.BITBUCKET_INSTALL_ADDON_KEY = None
    settings.BITBUCKET_INSTALL_SHARED_SECRET = None
    settings.BITBUCKET_INSTALL_DESCRIPTOR_URI = base + "/bitbucket/atlassian-connect.json"
    settings.BITBUCKET_INSTALL_DESCRIPTOR = {
        "key": "example-app",
        "name": "Example app",
        "scopes": ["account", "repository"],
    }


@pytest.mark.django_db(transaction=True)
def test_end_to_end_over_http(
    simulator_site: None,
    demo_tables: None,
    live_server: Any,
    settings: Settings,
    client: Client,
    django_user_model: type[User],
    server_threads_connections: None,
) -> None:
    """Install through the simulator, call its API from the example's page through the
    client, send a webhook from its console, and see it recorded: every server-to-server
    call over real HTTP to a live server (the descriptor, the installed callback, the API
    calls and the grant, the webhook); the browser's side in-process."""
    base = live_server.url
    unregistered_on(settings, base)
    settings.BITBUCKET_INSTALL_WEBHOOKS = ["repo:push"]
    # As the example has it: the simulated Bitbucket is asked, over HTTP, whether the
    # installation is genuine before it is connected.
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    client.force_login(ada)

    granted = grant_through_the_simulator(client)
    assert granted.status_code == 302, granted.content.decode()
    assert follow(client, follow(client, granted)).status_code == 200
    installation = Installation.objects.get()
    assert installation.user == ada
    assert installation.verified_at is not None
    assert installation.base_api_url == base + "/bitbucket/simulator/api"

    api_page = client.get("/api/")
    outcomes = {item["call"]: item for item in api_page.context["outcomes"]}
    assert [item.get("error") for item in outcomes.values()] == [None] * 4
    assert json.loads(outcomes["user"]["result"])["nickname"] == "simulated-user"
    listed = json.loads(outcomes["repositories"]["result"])["values"]
    assert [repo["full_name"] for repo in listed] == ["acme/website", "acme/api-service"]
    assert json.loads(outcomes["access_token"]["result"])["length"] > 20

    console = client.post(
        "/bitbucket/simulator/console/",
        {"action": "webhook", "client_key": installation.client_key, "event": "repo:push"},
    )
    assert "The site answered HTTP 204." in console.content.decode()
    delivery = ReceivedWebhook.objects.get()
    assert (delivery.client_key, delivery.event) == (installation.client_key, "repo:push")
    assert delivery.payload["data"]["repository"]["full_name"] == "acme/website"
    page = client.get("/webhooks/")
    assert [item.event for item in page.context["deliveries"]] == ["repo:push"]
    assert "acme/website" in page.content.decode()
    ReceivedWebhook.objects.all().delete()


def test_example_settings_send_installs_from_bitbucket_to_the_landing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings(
        monkeypatch, tmp_path, "", DEBUG="on"
    ).BITBUCKET_INSTALL_POST_INSTALL_REDIRECT
    off = load_settings(
        monkeypatch, tmp_path, "BITBUCKET_INSTALL_POST_INSTALL_REDIRECT=off\n", DEBUG="on"
    )
    assert off.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT is False


@pytest.mark.django_db(transaction=True)
def test_the_whole_migration_to_forge_over_http(
    simulator_site: None,
    live_server: Any,
    settings: Settings,
    client: Client,
    django_user_model: type[User],
    server_threads_connections: None,
    sent_signals: SignalRecorder,
) -> None:
    """The migration, every server-to-server call over real HTTP to a live server: a
    Connect install through the simulator (asked about with Bitbucket), the descriptor
    pushed to it with the command, the Forge app installed from the simulator's Forge page
    (a signed lifecycle event, verified against the simulator's JWKS), the Forge
    installation linked to the Connect one, and a Connect JWT minted from the stored secret
    to read an application property."""
    from bitbucket_install.models import ForgeInstallation
    from bitbucket_install.signals import forge_installed
    from bitbucket_install.simulator import state

    base = live_server.url
    forge_app = "ari:cloud:ecosystem::app/5f0c2a8e-4b1d-4e6f-9a3c-7d8e9f0a1b2c"
    unregistered_on(settings, base)
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True
    settings.BITBUCKET_INSTALL_FORGE_APP_ID = forge_app
    settings.BITBUCKET_INSTALL_FORGE_APP_LINK = "https://developer.atlassian.com/console/install/x"
    ada = django_user_model.objects.create_user("ada", password="pw-ada-123")
    client.force_login(ada)

    # 1. The Connect install, connected to ada once the simulated Bitbucket vouched for it.
    granted = grant_through_the_simulator(client)
    assert follow(client, follow(client, granted)).status_code == 200
    connect = Installation.objects.get()
    assert (connect.user, connect.verified_at is not None) == (ada, True)
    descriptor = client.get("/bitbucket/atlassian-connect.json").json()
    assert (descriptor["forgeAppId"], descriptor["forgeAppLink"]) == (
        forge_app,
        "https://developer.atlassian.com/console/install/x",
    )

    # 2. The descriptor pushed: PUT /2.0/addon, signed, recorded on the installation.
    out = StringIO()
    call_command("bitbucket_install_push_descriptor", stdout=out)
    connect.refresh_from_db()
    assert connect.descriptor_pushed_at is not None
    assert connect.descriptor_push_error == ""
    assert state.addon_updates(connect.client_key) == 1

    # 3. The Forge app installed on the same workspace, from the simulator's Forge page.
    page = client.post("/bitbucket/simulator/forge/", {"action": "install", "workspace": "Acme"})
    assert "The site answered HTTP 204." in page.content.decode()
    forge = ForgeInstallation.objects.get()
    assert forge.connect_installation == connect
    [event] = sent_signals.of(forge_installed)
    assert (event["forge_installation"].pk, event["installation"]) == (forge.pk, connect)

    # 4. Its data moved with a Connect JWT minted from the stored secret.
    path = "/2.0/repositories/acme/website/properties/example-app/settings"
    with BitbucketClient(connect) as bitbucket:
        bitbucket.put(path, json={"theme": "dark"})
        assert bitbucket.get(path).json() == {"theme": "dark"}
