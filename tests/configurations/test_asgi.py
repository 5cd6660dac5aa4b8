"""Under ASGI: every request through Django's ASGI handler (``AsyncClient``), Bitbucket's
calls from the simulator included; then once under a real ASGI server, uvicorn serving
``tests/configurations/asgi.py`` on 127.0.0.1, with real HTTP for the whole flow (the
simulator fetches the descriptor and posts the ``installed`` callback over HTTP too).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import uvicorn
from django.contrib.auth.models import User
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed, uninstalled
from bitbucket_install.tokens import encode_token
from tests.callback_helpers import APP_SECRET, KEY_A, signed_query
from tests.configurations.site import (
    AgentFactory,
    AsyncClientAgent,
    FrontEnd,
    HttpAgent,
    Site,
    admin_lists_installations,
    install,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, lifecycle_token

pytestmark = pytest.mark.django_db(transaction=True)

SERVER_START_SECONDS = 20


@pytest.fixture
def agent() -> AgentFactory:
    return AsyncClientAgent


def test_install_through_the_asgi_handler(site: Site, sent_signals: SignalRecorder) -> None:
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)

    done = install(browser, site.url("/"))

    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    assert row["shared_secret"]
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user


def test_plain_return_through_the_asgi_handler(site: Site, sent_signals: SignalRecorder) -> None:
    answer = site.browser().get(
        site.url("/bitbucket/callback/?" + signed_query(KEY_A, APP_SECRET))
    )
    assert answer.status == 200
    assert "The app is installed" in answer.text
    assert answer.header("Cache-Control") == "no-store"
    assert [row["client_key"] for row in installation_rows()] == [KEY_A]
    assert len(sent_signals.of(installed)) == 1


def test_descriptor_and_signed_uninstall_through_the_asgi_handler(
    site: Site, sent_signals: SignalRecorder
) -> None:
    bitbucket = site.browser()
    descriptor = bitbucket.get(site.url(reverse("bitbucket_install:descriptor")))
    assert descriptor.status == 200
    assert json.loads(descriptor.content)["baseUrl"] == "https://app.example.com"
    Installation.objects.create(client_key=KEY_A, shared_secret="s1-0123456789abcdef")
    path = reverse("bitbucket_install:uninstalled")
    token = lifecycle_token("s1-0123456789abcdef", path, iss=KEY_A)

    answer = bitbucket.agent.request(
        "POST",
        site.url(path),
        json.dumps(lifecycle_body("uninstalled", client_key=KEY_A)).encode(),
        {"Content-Type": "application/json", "Authorization": f"JWT {token}"},
    )

    assert answer.status == 204
    [row] = installation_rows()
    assert row["uninstalled_at"] is not None
    assert len(sent_signals.of(uninstalled)) == 1


def test_connect_jwt_view_through_the_asgi_handler(site: Site) -> None:
    Installation.objects.create(client_key="connection:1", shared_secret="hook-secret-0123")
    token = encode_token(
        {"iss": "connection:1"}, "hook-secret-0123", method="GET", path="/hooks/r1/push"
    )
    answer = site.browser().get(site.url(f"/hooks/r1/push?jwt={token}"))
    assert answer.status == 200
    assert json.loads(answer.content) == {"client_key": "connection:1", "repo": "r1"}


def test_admin_through_the_asgi_handler(site: Site) -> None:
    Installation.objects.create(client_key=KEY_A, principal_name="Acme Team")
    admin_lists_installations(site, "Acme Team")


# --- uvicorn ------------------------------------------------------------------------------


@pytest.fixture
def uvicorn_url(site_settings: Settings, server_threads_connections: None) -> Iterator[str]:
    """uvicorn serving the test site's ASGI application on a free port of 127.0.0.1; the
    app's base URL is that server (plain HTTP on a loopback host, as for ``make demo``)."""
    from tests.configurations.asgi import application

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    site_settings.BITBUCKET_INSTALL_BASE_URL = url
    config = uvicorn.Config(
        application, lifespan="off", http="h11", ws="none", loop="asyncio", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_SECONDS
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(SERVER_START_SECONDS)
    listener.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def test_install_under_uvicorn_over_real_http(
    uvicorn_url: str, sent_signals: SignalRecorder
) -> None:
    User.objects.create_user("ada", password="correct horse battery staple")
    site = Site(FrontEnd(origin=uvicorn_url), HttpAgent)  # the real transport: no stand-in
    browser = site.browser()
    login_page = browser.get(site.url("/accounts/login/?next=/"))
    assert login_page.status == 200
    signed_in = browser.log_in(login_page, "ada", "correct horse battery staple")
    assert signed_in.status == 302

    done = install(browser, site.url("/"))

    assert urlsplit(done.to_bitbucket.location).netloc == urlsplit(uvicorn_url).netloc
    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == User.objects.get(username="ada").pk
    assert row["shared_secret"]  # the simulator's installed callback, over HTTP
    assert row["confirmed_at"] is not None
    [sent] = sent_signals.of(installed)
    assert sent["user"].username == "ada"
    assert sent["created"] is False
