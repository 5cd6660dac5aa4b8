"""Apache's mod_wsgi passes no ``Authorization`` header to the application unless
``WSGIPassAuthorization On``: every signed call of Bitbucket then looks unsigned. The
401's log line of the lifecycle callbacks, the webhook view and ``connect_jwt_required`` says
so when the
header is missing entirely, and only then.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from bitbucket_install.simulator import transport
from bitbucket_install.tokens import encode_token
from bitbucket_install.verification import MISSING_AUTHORIZATION_HINT
from tests.callback_helpers import KEY_A
from tests.configurations.site import FrontEnd, Site, install
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body
from tests.webhook_helpers import REQUEST_UUID, delivery_body, delivery_rows, webhook_path

pytestmark = pytest.mark.django_db(transaction=True)

HINT = (
    "(no Authorization header reached the app: behind Apache mod_wsgi,"
    " set WSGIPassAuthorization On)"
)
SECRET = "s1-0123456789abcdef"


def app_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "bitbucket_install" and record.levelno == logging.WARNING
    ]


def post(site: Site, path: str, body: bytes, headers: dict[str, str]) -> int:
    return site.browser().agent.request("POST", site.url(path), body, headers).status


def test_the_hint_reads_as_documented() -> None:
    assert MISSING_AUTHORIZATION_HINT == " " + HINT


@pytest.mark.parametrize(
    ("authorization", "hinted"),
    [(None, True), ("Basic dXNlcjpwYXNz", False), ("JWT ", False)],
    ids=["no-header", "another-scheme", "empty-jwt"],
)
def test_uninstalled_refused_without_a_token(
    site: Site,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    authorization: str | None,
    hinted: bool,
) -> None:
    Installation.objects.create(client_key=KEY_A, shared_secret=SECRET)
    before = installation_rows()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = json.dumps(lifecycle_body("uninstalled", client_key=KEY_A)).encode()

    status = post(site, reverse("bitbucket_install:uninstalled"), body, headers)

    assert status == 401
    assert installation_rows() == before
    assert sent_signals.none_sent
    expected = f"lifecycle uninstalled refused: reason=token_missing client_key={KEY_A}"
    assert app_log(caplog) == [expected + (" " + HINT if hinted else "")]


@pytest.mark.parametrize(
    ("authorization", "hinted"),
    [(None, True), ("Basic dXNlcjpwYXNz", False), ("JWT ", False)],
    ids=["no-header", "another-scheme", "empty-jwt"],
)
def test_webhook_refused_without_a_token(
    site: Site,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
    authorization: str | None,
    hinted: bool,
) -> None:
    Installation.objects.create(client_key=KEY_A, shared_secret=SECRET)
    before = installation_rows()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:push",
        "X-Request-UUID": REQUEST_UUID,
    }
    if authorization is not None:
        headers["Authorization"] = authorization

    status = post(site, webhook_path(), json.dumps(delivery_body()).encode(), headers)

    assert status == 401
    assert installation_rows() == before
    assert delivery_rows() == []
    assert sent_signals.none_sent
    expected = "webhook refused: reason=token_missing client_key=None event=None request_uuid=None"
    assert app_log(caplog) == [expected + (" " + HINT if hinted else "")]


def test_lifecycle_400_has_no_hint(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """A refused body is no matter of headers: no hint, even without the header."""
    status = post(
        site, reverse("bitbucket_install:installed"), b"{}", {"Content-Type": "application/json"}
    )
    assert status == 400
    [line] = app_log(caplog)
    assert "reason=" in line
    assert HINT not in line


@pytest.mark.parametrize(
    ("url", "headers", "reason", "hinted"),
    [
        ("/hooks/r1/push", {}, "token_missing", True),
        ("/hooks/r1/push", {"Authorization": "Bearer x.y.z"}, "token_missing", False),
        ("/hooks/r1/push?jwt=not.a.token", {}, "token_malformed", False),
    ],
    ids=["no-header", "another-scheme", "query-token"],
)
def test_connect_jwt_refusal(
    site: Site,
    caplog: pytest.LogCaptureFixture,
    url: str,
    headers: dict[str, str],
    reason: str,
    hinted: bool,
) -> None:
    status = post(site, url, b"{}", headers)
    assert status == 401
    expected = f"Connect JWT refused on /hooks/r1/push: reason={reason}"
    assert app_log(caplog) == [expected + (" " + HINT if hinted else "")]


def test_connect_jwt_accepted_leaves_no_line(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    Installation.objects.create(client_key="connection:1", shared_secret="hook-secret-0123")
    token = encode_token(
        {"iss": "connection:1"}, "hook-secret-0123", method="POST", path="/hooks/r1/push"
    )
    assert post(site, "/hooks/r1/push", b"{}", {"Authorization": f"JWT {token}"}) == 200
    assert app_log(caplog) == []


def test_reinstall_behind_a_server_that_drops_the_header(
    site_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    sent_signals: SignalRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole flow twice behind such a server: the first install (unsigned) works; the
    re-install's signed ``installed`` callback arrives unsigned and is refused, the log
    says why, and the simulator sends the browser back with ``server_error``."""
    site = Site(FrontEnd(strips_authorization=True))
    monkeypatch.setattr(transport, "send", site.bitbucket_send)
    user = User.objects.create_user("ada")
    browser = site.browser()
    browser.force_login(user)
    first = install(browser, site.url("/"))
    assert first.returned.status == 303
    [row] = installation_rows()
    caplog.clear()
    sent_signals.calls.clear()

    again = install(browser, site.url("/"))

    assert "error=server_error" in again.return_url
    assert "You chose" not in again.result.text
    assert "Bitbucket ran into a problem" in again.result.text
    assert installation_rows() == [row]  # the first secret is kept
    assert sent_signals.of(installed) == []
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "server_error"
    refusals = [line for line in app_log(caplog) if line.startswith("lifecycle installed")]
    assert refusals == [
        f"lifecycle installed refused: reason=token_missing client_key={row['client_key']} {HINT}"
    ]
