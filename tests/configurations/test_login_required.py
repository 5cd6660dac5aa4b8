"""Django's ``LoginRequiredMiddleware`` on: every page needs a login unless its view says not.

Bitbucket's calls (descriptor, lifecycle callbacks, webhooks, views behind
``connect_jwt_required``)
and the browser's way back (the return trip, the result page, the simulator standing in for
Bitbucket's authorize page) carry no login of this site: each must be answered, not sent
to the login page (where the return trip's ``jwt`` would ride in ``next``). The start view
follows the project's policy: an anonymous visitor signs in first, then comes back to the
button.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install import flow as flows
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed, uninstalled, webhook_received
from bitbucket_install.tokens import encode_token
from bitbucket_install.views import authorize_url
from tests.callback_helpers import APP_SECRET, KEY_A, signed_query
from tests.configurations.site import (
    Form,
    Site,
    connect_on_landing,
    install,
    install_from_bitbucket,
    press_button,
    token_only_sent_back_by_bitbucket,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows, lifecycle_body, lifecycle_token
from tests.webhook_helpers import (
    delivery_body,
    delivery_rows,
    http_headers,
    installation,
    webhook_path,
    webhook_token,
)

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN_PATH = "/accounts/login/"
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def login_required(site_settings: Settings) -> None:
    site_settings.MIDDLEWARE = [
        *site_settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]


def new_user(username: str, *, staff: bool = False) -> User:
    user: User = User.objects.create_user(username, password=PASSWORD, is_staff=staff)
    return user


def test_the_middleware_is_on(site: Site) -> None:
    """The project's own pages do need a login here (else the tests below prove nothing)."""
    answer = site.browser().get(site.url("/admin/password_change/"))
    assert answer.status == 302
    # The admin sends to its own login page; a view of the project to LOGIN_URL.
    assert urlsplit(answer.location).path == "/admin/login/"


def test_anonymous_visitor_signs_in_then_installs_from_the_start_page(
    site: Site, sent_signals: SignalRecorder
) -> None:
    user = new_user("ada")
    browser = site.browser()
    start_url = site.url(reverse("bitbucket_install:start"))

    to_login = browser.get(start_url)
    assert to_login.status == 302
    login_url = to_login.location
    assert urlsplit(login_url).path == LOGIN_PATH
    assert parse_qs(urlsplit(login_url).query)["next"] == ["/bitbucket/install/"]
    signed_in = browser.log_in(browser.get(login_url), "ada", PASSWORD)
    assert signed_in.status == 302
    assert signed_in.location == start_url  # back to the start page, with its button

    done = install(browser, start_url)

    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["client_key"] == done.client_key
    assert row["user_id"] == user.pk
    assert row["confirmed_at"] is not None
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    assert token_only_sent_back_by_bitbucket(browser, done.token)


def test_anonymous_press_of_a_public_button_is_sent_to_sign_in(
    site: Site, sent_signals: SignalRecorder
) -> None:
    """The button on a public page: the start view follows the project's policy."""
    browser = site.browser()
    _page, pressed = press_button(browser, site.url("/"))
    assert pressed.status == 302
    assert urlsplit(pressed.location).path == LOGIN_PATH
    assert parse_qs(urlsplit(pressed.location).query)["next"] == ["/bitbucket/install/"]
    # Nothing started: no flow, no row, no signal.
    session = browser.agent.client.session  # type: ignore[attr-defined]
    assert session.get(flows.SESSION_KEY) is None
    assert installation_rows() == []
    assert sent_signals.none_sent


def test_anonymous_return_trip_is_answered_not_sent_to_the_login_page(
    site: Site, sent_signals: SignalRecorder
) -> None:
    """The jwt of a return never lands in a login URL (nor in any other redirect)."""
    browser = site.browser()
    query = signed_query(KEY_A, APP_SECRET)
    token = parse_qs(query)["jwt"][0]

    answer = browser.get(site.url(reverse("bitbucket_install:callback") + "?" + query))

    assert answer.status == 200, answer.headers
    assert "The app is installed" in answer.text
    assert answer.header("Location") is None
    assert token_only_sent_back_by_bitbucket(browser, token)
    [row] = installation_rows()
    assert row["client_key"] == KEY_A
    assert row["user_id"] is None
    [sent] = sent_signals.of(installed)
    assert sent["user"] is None


def test_anonymous_install_from_a_plain_link(site: Site, sent_signals: SignalRecorder) -> None:
    """An install link used outside the site ({% bitbucket_install_url %}): the simulator's
    page, Bitbucket's calls and the return all work without a login."""
    browser = site.browser()
    consent = browser.get(authorize_url())
    assert consent.status == 200
    back = browser.submit(
        consent, consent.form(id="consent-form"), {"workspace": "Acme"}, ("action", "grant")
    )
    assert back.status == 302
    assert urlsplit(back.location).path == "/bitbucket/callback/"

    returned = browser.get(back.location)

    assert returned.status == 200
    assert "The app is installed" in returned.text
    token = parse_qs(urlsplit(back.location).query)["jwt"][0]
    assert token_only_sent_back_by_bitbucket(browser, token)
    [row] = installation_rows()
    assert row["principal_name"] == "Acme"
    assert row["shared_secret"]  # the installed callback got through
    assert row["confirmed_at"] is not None
    assert row["user_id"] is None
    [sent] = sent_signals.of(installed)
    assert sent["user"] is None


def test_anonymous_browser_with_a_session_reads_the_result_page(
    site: Site, sent_signals: SignalRecorder
) -> None:
    browser = site.browser()
    session = browser.agent.client.session  # type: ignore[attr-defined]
    session["visited"] = True
    session.save()
    browser.agent.client.cookies["sessionid"] = session.session_key  # type: ignore[attr-defined]

    returned = browser.get(
        site.url(reverse("bitbucket_install:callback") + "?" + signed_query(KEY_A, APP_SECRET))
    )
    assert returned.status == 303
    assert urlsplit(returned.location).path == reverse("bitbucket_install:result")
    result = browser.get(returned.location)

    assert result.status == 200
    assert "The app is installed" in result.text
    assert len(sent_signals.of(installed)) == 1


def test_descriptor_needs_no_login(site: Site) -> None:
    answer = site.browser().get(site.url(reverse("bitbucket_install:descriptor")))
    assert answer.status == 200
    descriptor = json.loads(answer.content)
    assert descriptor["lifecycle"]["installed"] == "/bitbucket/installed"


def test_signed_lifecycle_callbacks_need_no_login(
    site: Site, sent_signals: SignalRecorder
) -> None:
    bitbucket = site.browser()
    installed_path = reverse("bitbucket_install:installed")
    uninstalled_path = reverse("bitbucket_install:uninstalled")
    body = json.dumps(lifecycle_body(client_key=KEY_A, shared_secret="s1-0123456789abcdef"))
    headers = {"Content-Type": "application/json"}

    first = bitbucket.agent.request("POST", site.url(installed_path), body.encode(), headers)
    assert first.status == 204
    token = lifecycle_token("s1-0123456789abcdef", uninstalled_path, iss=KEY_A)
    uninstall_body = json.dumps(lifecycle_body("uninstalled", client_key=KEY_A)).encode()
    gone = bitbucket.agent.request(
        "POST",
        site.url(uninstalled_path),
        uninstall_body,
        {**headers, "Authorization": f"JWT {token}"},
    )

    assert gone.status == 204
    [row] = installation_rows()
    assert row["uninstalled_at"] is not None
    [sent] = sent_signals.of(uninstalled)
    assert sent["installation"].client_key == KEY_A


def test_signed_webhook_needs_no_login(site: Site, sent_signals: SignalRecorder) -> None:
    hooked = installation(KEY_A, "hook-secret-0123456789")
    token = webhook_token("hook-secret-0123456789", iss=KEY_A)
    answer = site.browser().agent.request(
        "POST", site.url(webhook_path()), json.dumps(delivery_body()).encode(), http_headers(token)
    )
    assert answer.status == 204
    assert answer.header("Location") is None
    assert len(delivery_rows()) == 1
    [sent] = sent_signals.of(webhook_received)
    assert sent["installation"] == hooked


def test_view_behind_connect_jwt_required_needs_no_login(site: Site) -> None:
    Installation.objects.create(client_key="connection:1", shared_secret="hook-secret-0123")
    token = encode_token(
        {"iss": "connection:1"}, "hook-secret-0123", method="POST", path="/hooks/r1/push"
    )
    answer = site.browser().agent.request(
        "POST", site.url("/hooks/r1/push"), b"{}", {"Authorization": f"JWT {token}"}
    )
    assert answer.status == 200
    assert json.loads(answer.content) == {"client_key": "connection:1", "repo": "r1"}


def test_browser_request_to_a_connect_jwt_view_never_goes_to_login(site: Site) -> None:
    """An iframe's ``?jwt=`` request refused: a 401, not a login URL carrying the jwt."""
    token = encode_token(
        {"iss": "connection:404"}, "unknown-secret", method="GET", path="/hooks/r1/push"
    )
    browser = site.browser()
    answer = browser.get(site.url(f"/hooks/r1/push?jwt={token}"))
    assert answer.status == 401
    assert token_only_sent_back_by_bitbucket(browser, token)


def test_admin_lists_the_installation_for_a_signed_in_staff_member(site: Site) -> None:
    new_user("root", staff=True).user_permissions.add(
        Permission.objects.get(codename="view_installation")
    )
    Installation.objects.create(client_key=KEY_A, principal_name="Acme Team")
    browser = site.browser()
    changelist = site.url(reverse("admin:bitbucket_install_installation_changelist"))

    to_login = browser.get(changelist)
    assert to_login.status == 302
    login_page = browser.get(to_login.location)
    signed_in = browser.submit(
        login_page,
        login_page.form(id="login-form"),
        {"username": "root", "password": PASSWORD},
    )
    assert signed_in.status == 302
    listed = browser.get(signed_in.location)

    assert listed.status == 200
    assert "Acme Team" in listed.text


def test_an_install_from_bitbucket_lands_signs_in_and_connects(
    site: Site, site_settings: Settings, sent_signals: SignalRecorder
) -> None:
    """The landing answers a signed-out visitor (no login redirect with its jwt in
    ``next``); its "Sign in to connect" comes back to it, and the POST connects."""
    site_settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True
    user = new_user("ada")
    browser = site.browser()
    landing = install_from_bitbucket(
        browser, site.url(reverse("bitbucket_install:simulator_console"))
    )
    assert landing.landed.location == site.url(reverse("bitbucket_install:landing"))
    assert landing.page.status == 200
    assert 'data-state="signed_out"' in landing.page.text
    [token] = parse_qs(urlsplit(landing.back.location).query)["jwt"]
    assert all(token not in (answer.header("Location") or "") for answer in browser.answers[-2:])

    [href] = re.findall(r'href="([^"]+)" id="sign-in-link"', landing.page.text)
    login_page = browser.get(site.url(html.unescape(href)))
    assert login_page.status == 200
    signed_in = browser.log_in(login_page, "ada", PASSWORD)
    assert signed_in.status == 302
    assert signed_in.location == site.url(reverse("bitbucket_install:landing"))
    offer = browser.get(signed_in.location)
    assert 'data-state="offer"' in offer.text

    connected = connect_on_landing(browser, offer)
    assert connected.status == 303
    assert Installation.objects.get().user_id == user.pk
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None, user]


def test_a_signed_out_connect_post_goes_to_the_login(
    site: Site, site_settings: Settings, sent_signals: SignalRecorder
) -> None:
    site_settings.BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = True
    browser = site.browser()
    landing = install_from_bitbucket(
        browser, site.url(reverse("bitbucket_install:simulator_console")), send_jwt=False
    )
    client_key = Installation.objects.get().client_key
    before = installation_rows()
    # The signed-out page has no form; this POST carries the CSRF token of another page.
    form = landing.consent.form(id="consent-form")
    [csrf_token] = [value for name, value in form.fields if name == "csrfmiddlewaretoken"]
    posted = browser.submit(
        landing.page,
        Form(method="post", action="", fields=[], id="", classes=[]),
        {"client_key": client_key, "csrfmiddlewaretoken": csrf_token},
    )
    assert posted.status == 302
    login_url = urlsplit(posted.location)
    assert login_url.path == LOGIN_PATH
    assert parse_qs(login_url.query)["next"] == [reverse("bitbucket_install:landing")]
    assert installation_rows() == before
    assert sent_signals.none_sent
