"""The landing: installs begun on Bitbucket's side arrive (with or without a JWT), are
offered on the clean ``landing/`` page, and a signed-in user connects one by a POST."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from bitbucket_install import landing
from bitbucket_install.landing import OFFER_SESSION_KEY, Offer, installer_name, workspace_uuid
from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from tests.callback_helpers import (
    APP_SECRET,
    INSTALL_SECRET,
    KEY_A,
    KEY_B,
    app_log,
    assert_protected,
    installed_via_lifecycle,
    login,
    records_mentioning,
    session_rows,
    sets_session_cookie,
)
from tests.conftest import SignalRecorder
from tests.landing_helpers import (
    LANDING_PATH,
    WORKSPACE_UUID,
    age_install,
    bitbucket_answers,
    landing_query,
    offer_of,
    signed_landing_url,
)
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_url_name() -> None:
    assert reverse("bitbucket_install:landing") == LANDING_PATH


def land(client: Client, query: str | None = None) -> Any:
    response = client.get(LANDING_PATH + "?" + (landing_query() if query is None else query))
    assert_protected(response)
    return response


def landed(client: Client, client_key: str = KEY_A) -> None:
    """A landing without a JWT that found ``client_key``'s installation."""
    response = land(client)
    assert response.status_code == 303
    assert offer_of(client)["client_key"] == client_key


def connect(client: Client, client_key: str = KEY_A) -> Any:
    response = client.post(LANDING_PATH, {"client_key": client_key})
    assert_protected(response)
    return response


# --- arriving -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_client_key", [True, False])
def test_a_valid_jwt_records_a_confirmation_to_nobody_and_offers_it(
    client: Client, sent_signals: SignalRecorder, with_client_key: bool
) -> None:
    row = installed_via_lifecycle()
    response = client.get(
        signed_landing_url(KEY_A, INSTALL_SECRET, with_client_key=with_client_key)
    )
    assert_protected(response)
    assert response.status_code == 303
    assert response["Location"] == LANDING_PATH  # no token stays in the address bar
    after = Installation.objects.get(pk=row.pk)
    assert after.confirmed_at is not None
    assert after.user_id is None
    [sent] = sent_signals.of(installed)
    assert sent["user"] is None
    assert sent["created"] is False
    offer = offer_of(client)
    assert offer["client_key"] == KEY_A
    assert offer["signed"] is True


def test_a_jwt_signed_with_the_app_level_secret_is_accepted(
    client: Client, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle()
    response = client.get(signed_landing_url(KEY_A, APP_SECRET))
    assert response.status_code == 303
    assert offer_of(client)["signed"] is True
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            lambda: signed_landing_url(KEY_A, "a-secret-nobody-has-0123456789"), id="secret"
        ),
        pytest.param(lambda: signed_landing_url(KEY_A, INSTALL_SECRET, iss=KEY_B), id="iss"),
        pytest.param(
            lambda: signed_landing_url(KEY_A, INSTALL_SECRET, path="/bitbucket/callback/").replace(
                "/bitbucket/callback/", LANDING_PATH, 1
            ),
            id="qsh",
        ),
        pytest.param(
            lambda: signed_landing_url(KEY_A, INSTALL_SECRET) + "&user_type=user", id="query"
        ),
        pytest.param(lambda: LANDING_PATH + "?jwt=not-a-token", id="malformed"),
        pytest.param(lambda: LANDING_PATH + "?clientKey=bad%20key&jwt=x", id="bad-client-key"),
        pytest.param(
            lambda: signed_landing_url(KEY_A, INSTALL_SECRET) + "&clientKey=" + KEY_A,
            id="repeated",
        ),
        pytest.param(
            lambda: signed_landing_url(KEY_A, INSTALL_SECRET) + "&client_key=" + KEY_B,
            id="two-spellings",
        ),
        pytest.param(
            lambda: signed_landing_url("bad key", INSTALL_SECRET, with_client_key=False),
            id="iss-not-a-client-key",
        ),
    ],
)
def test_a_jwt_that_fails_gets_the_one_rejection_and_changes_nothing(
    client: Client, sent_signals: SignalRecorder, url: Any
) -> None:
    installed_via_lifecycle()
    before = installation_rows()
    response = client.get(url())
    assert_protected(response)
    assert response.status_code == 400
    assert b"Nothing was connected" in response.content
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert offer_of(client) is None
    assert session_rows() == 0


@pytest.mark.parametrize(
    "spelling",
    [
        WORKSPACE_UUID,
        WORKSPACE_UUID.upper(),
        WORKSPACE_UUID.strip("{}"),
        " " + WORKSPACE_UUID.strip("{}").upper() + " ",
    ],
)
def test_without_jwt_the_fresh_installation_of_the_workspace_is_offered(
    client: Client, sent_signals: SignalRecorder, spelling: str
) -> None:
    installed_via_lifecycle()
    before = installation_rows()
    response = land(client, landing_query(spelling))
    assert response.status_code == 303
    assert response["Location"] == LANDING_PATH
    assert offer_of(client)["client_key"] == KEY_A
    assert offer_of(client)["signed"] is False
    assert installation_rows() == before  # an unsigned landing confirms nothing
    assert sent_signals.none_sent


def test_without_jwt_the_latest_install_on_the_workspace_is_offered(client: Client) -> None:
    installed_via_lifecycle(KEY_B)
    age_install(KEY_B, 60)
    installed_via_lifecycle(KEY_A)
    landed(client, KEY_A)


def nothing_found(client: Client, query: str, sent_signals: SignalRecorder) -> Any:
    before = installation_rows()
    response = land(client, query)
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert offer_of(client) is None
    assert not sets_session_cookie(response)
    assert session_rows() == 0
    return response


def test_nothing_found_reloads_once_without_creating_a_session(
    client: Client, sent_signals: SignalRecorder
) -> None:
    response = nothing_found(client, landing_query(), sent_signals)
    assert response.status_code == 200
    assert b"Nothing found yet" in response.content
    assert b"reload.js" in response.content
    [target] = re.findall(rb'data-bbi-reload-to="([^"]+)"', response.content)
    reload_url = target.decode().replace("&amp;", "&")
    assert urlsplit(reload_url).path == LANDING_PATH
    assert parse_qs(urlsplit(reload_url).query)["retried"] == ["1"]
    again = nothing_found(client, urlsplit(reload_url).query, sent_signals)
    assert again.status_code == 404
    assert b"No new installation found" in again.content
    assert b"reload.js" not in again.content


def test_the_reload_finds_an_installation_whose_callback_came_meanwhile(client: Client) -> None:
    assert land(client).status_code == 200
    installed_via_lifecycle()
    assert land(client, landing_query(retried="1")).status_code == 303
    assert offer_of(client)["client_key"] == KEY_A


def test_an_install_older_than_the_window_is_not_offered(
    client: Client, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_FLOW_MAX_AGE = 300
    installed_via_lifecycle()
    age_install(KEY_A, 301)
    assert nothing_found(client, landing_query(), sent_signals).status_code == 200


def test_an_uninstalled_installation_is_not_offered(
    client: Client, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle()
    Installation.objects.update(uninstalled_at=Installation.objects.get().installed_at)
    assert nothing_found(client, landing_query(), sent_signals).status_code == 200


def test_another_workspace_is_not_found(client: Client, sent_signals: SignalRecorder) -> None:
    installed_via_lifecycle()
    query = landing_query("{00000000-2222-4b8e-8a0c-3c5d6e7f8a9b}")
    assert nothing_found(client, query, sent_signals).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        landing_query("not-a-uuid"),
        landing_query("{" + "7b2f4f1022224b8e8a0c3c5d6e7f8a9b" + "}"),
        landing_query("{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9z}"),
        landing_query() + "&user_uuid=" + WORKSPACE_UUID,
        "user_uuid=",
    ],
)
def test_a_malformed_landing_is_rejected(
    client: Client, sent_signals: SignalRecorder, query: str
) -> None:
    installed_via_lifecycle()
    before = installation_rows()
    response = land(client, query)
    assert response.status_code == 400
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert session_rows() == 0


def test_workspace_uuid() -> None:
    assert str(workspace_uuid("{7B2F4F10-2222-4B8E-8A0C-3C5D6E7F8A9B}")) == WORKSPACE_UUID.strip(
        "{}"
    )
    assert workspace_uuid("{}") is None
    assert workspace_uuid("{7b2f4f10-2222-4b8e-8a0c-3c5d6e7f8a9b") is None


def test_an_arrival_replaces_an_earlier_offer(client: Client) -> None:
    installed_via_lifecycle(KEY_B, principal={"uuid": "{11111111-2222-4b8e-8a0c-3c5d6e7f8a9b}"})
    installed_via_lifecycle(KEY_A)
    landed(client, KEY_A)
    assert land(client, landing_query("{11111111-2222-4b8e-8a0c-3c5d6e7f8a9b}")).status_code == 303
    assert offer_of(client)["client_key"] == KEY_B


# --- the clean page -------------------------------------------------------------------------


def page(client: Client) -> Any:
    """The clean landing page, which only reads: no row changes."""
    before = installation_rows()
    response = client.get(LANDING_PATH)
    assert_protected(response, referrer_policy="same-origin")
    assert installation_rows() == before
    return response


def state_of(response: Any) -> str:
    [state] = re.findall(r'id="landing" data-state="([a-z_]+)"', response.content.decode())
    return str(state)


def test_signed_in_the_offer_is_a_form_with_the_csrf_token(client: Client) -> None:
    installed_via_lifecycle()
    landed(client)
    login(client, "ada")
    response = page(client)
    assert response.status_code == 200
    assert state_of(response) == "offer"
    html = response.content.decode()
    assert "The app is installed on Acme Team" in html
    assert "Installed on Bitbucket by Ada Admin." in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert f'name="client_key" value="{KEY_A}"' in html
    assert f'action="{LANDING_PATH}"' in html
    assert "Connect Acme Team" in html


def test_signed_out_the_offer_leads_to_the_login_and_back(client: Client) -> None:
    installed_via_lifecycle()
    landed(client)
    response = page(client)
    assert state_of(response) == "signed_out"
    [href] = re.findall(r'href="([^"]+)" id="sign-in-link"', response.content.decode())
    login_url = urlsplit(href.replace("&amp;", "&"))
    assert login_url.path == "/accounts/login/"
    assert parse_qs(login_url.query)["next"] == [LANDING_PATH]
    assert b'id="connect-form"' not in response.content


def test_the_offer_survives_the_login(client: Client) -> None:
    installed_via_lifecycle()
    landed(client)
    User.objects.create_user("ada", password="correct horse battery staple")
    assert client.login(username="ada", password="correct horse battery staple")
    assert state_of(page(client)) == "offer"


def test_connected_to_you_already(client: Client) -> None:
    installed_via_lifecycle()
    landed(client)
    user = login(client, "ada")
    Installation.objects.update(user=user)
    response = page(client)
    assert state_of(response) == "connected"
    assert b'id="connect-form"' not in response.content


@pytest.mark.parametrize("signed_in", [True, False])
def test_connected_to_another_account_is_never_offered(
    client: Client, sent_signals: SignalRecorder, signed_in: bool
) -> None:
    installed_via_lifecycle()
    landed(client)
    Installation.objects.update(user=User.objects.create_user("grace"))
    if signed_in:
        login(client, "ada")
    response = page(client)
    assert state_of(response) == "other_account"
    assert b'id="connect-form"' not in response.content
    assert KEY_A.encode() not in response.content
    assert sent_signals.none_sent


def test_the_offer_expires_with_the_window(
    client: Client, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_FLOW_MAX_AGE = 300
    installed_via_lifecycle()
    landed(client)
    login(client, "ada")
    age_install(KEY_A, 301)
    response = page(client)
    assert state_of(response) == "expired"
    assert b'id="connect-form"' not in response.content
    assert b'href="/bitbucket/install/"' in response.content
    assert sent_signals.none_sent


def test_a_row_a_jwt_made_before_its_callback_counts_from_its_creation(
    client: Client, sent_signals: SignalRecorder
) -> None:
    # The app-level secret verifies a return for a clientKey the site has no row of yet.
    response = client.get(signed_landing_url(KEY_A, APP_SECRET))
    assert response.status_code == 303
    assert Installation.objects.get().installed_at is None
    login(client, "ada")
    response = page(client)
    assert state_of(response) == "offer"
    assert b"The app is installed on your workspace" in response.content
    assert b"Connect the workspace" in response.content
    assert b"installed-by" not in response.content


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "text",
        {"client_key": "bad key", "landed_at": 1.0},
        {"client_key": KEY_A, "landed_at": True},
        {"client_key": KEY_A},
    ],
)
def test_without_a_well_formed_offer_nothing_is_shown(client: Client, stored: object) -> None:
    installed_via_lifecycle()
    if stored is not None:
        session = client.session
        session[OFFER_SESSION_KEY] = stored
        session.save()
    response = client.get(LANDING_PATH)
    assert_protected(response)
    assert response.status_code == 404
    assert state_of(response) == "nothing"
    assert b"reload.js" not in response.content


@pytest.mark.parametrize("change", ["delete", "uninstall"])
def test_an_offer_whose_installation_is_gone_shows_nothing(client: Client, change: str) -> None:
    installed_via_lifecycle()
    landed(client)
    if change == "delete":
        Installation.objects.all().delete()
    else:
        Installation.objects.update(uninstalled_at=Installation.objects.get().installed_at)
    response = client.get(LANDING_PATH)
    assert_protected(response)
    assert response.status_code == 404


def test_installer_name() -> None:
    def named(account: object) -> str:
        return installer_name(Installation(installed_by=account))

    assert named({"display_name": " Ada\u202e Admin ", "nickname": "ada"}) == "Ada Admin"
    assert named({"display_name": " ", "nickname": "ada"}) == "ada"
    assert named({"username": "ada-l"}) == "ada-l"
    assert named({"display_name": 3}) == ""
    assert named(None) == ""
    assert named(["Ada"]) == ""


# --- connecting -----------------------------------------------------------------------------


def offered_and_signed_in(client: Client, username: str = "ada") -> User:
    installed_via_lifecycle()
    landed(client)
    return login(client, username)


def assert_refused(
    client: Client, response: Any, status: int, before: list[Any], sent_signals: SignalRecorder
) -> None:
    assert response.status_code == status
    assert installation_rows() == before
    assert sent_signals.none_sent


def test_connect_binds_the_user_and_signals_once(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user = offered_and_signed_in(client)
    response = connect(client)
    assert response.status_code == 303
    assert response["Location"] == reverse("bitbucket_install:result")
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.confirmed_at is not None
    [sent] = sent_signals.of(installed)
    assert sent["installation"].pk == row.pk
    assert sent["user"] == user
    assert sent["created"] is False
    assert sent["request"] is not None
    assert offer_of(client) is None  # consumed
    result = client.get(response["Location"])
    assert b'data-connection="connected"' in result.content
    assert b"Acme Team" in result.content


def test_connect_keeps_an_earlier_confirmation_time(
    client: Client, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle()
    assert client.get(signed_landing_url(KEY_A, INSTALL_SECRET)).status_code == 303
    confirmed_at = Installation.objects.get().confirmed_at
    assert confirmed_at is not None
    user = login(client, "ada")
    assert connect(client).status_code == 303
    row = Installation.objects.get()
    assert (row.user_id, row.confirmed_at) == (user.pk, confirmed_at)
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [None, user]


def test_connect_without_the_csrf_token_is_forbidden(sent_signals: SignalRecorder) -> None:
    client = Client(enforce_csrf_checks=True)
    offered_and_signed_in(client)
    before = installation_rows()
    response = client.post(LANDING_PATH, {"client_key": KEY_A})
    assert_refused(client, response, 403, before, sent_signals)
    assert offer_of(client)["client_key"] == KEY_A


def test_connect_with_the_csrf_token_of_the_page(sent_signals: SignalRecorder) -> None:
    client = Client(enforce_csrf_checks=True)
    user = offered_and_signed_in(client)
    html = page(client).content.decode()
    [token] = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    response = client.post(LANDING_PATH, {"client_key": KEY_A, "csrfmiddlewaretoken": token})
    assert response.status_code == 303
    assert Installation.objects.get().user_id == user.pk
    assert len(sent_signals.of(installed)) == 1


def test_a_second_user_is_refused_when_already_connected(
    client: Client, sent_signals: SignalRecorder
) -> None:
    offered_and_signed_in(client)
    Installation.objects.update(user=User.objects.create_user("grace"))
    before = installation_rows()
    response = connect(client)
    assert_refused(client, response, 409, before, sent_signals)
    assert b"Connected to another account" in response.content
    assert offer_of(client) is None


def test_connect_after_the_window_is_refused(
    client: Client, settings: Settings, sent_signals: SignalRecorder
) -> None:
    settings.BITBUCKET_INSTALL_FLOW_MAX_AGE = 300
    offered_and_signed_in(client)
    age_install(KEY_A, 301)
    before = installation_rows()
    assert_refused(client, connect(client), 400, before, sent_signals)


@pytest.mark.parametrize("change", ["delete", "uninstall"])
def test_connect_to_an_installation_gone_is_refused(
    client: Client, sent_signals: SignalRecorder, change: str
) -> None:
    offered_and_signed_in(client)
    if change == "delete":
        Installation.objects.all().delete()
    else:
        Installation.objects.update(uninstalled_at=Installation.objects.get().installed_at)
    before = installation_rows()
    assert_refused(client, connect(client), 400, before, sent_signals)


def test_connect_for_another_client_key_than_the_offers_is_refused(
    client: Client, sent_signals: SignalRecorder
) -> None:
    offered_and_signed_in(client)
    installed_via_lifecycle(KEY_B, secret="another-installation-secret")
    before = installation_rows()
    response = connect(client, KEY_B)
    assert_refused(client, response, 400, before, sent_signals)
    assert offer_of(client)["client_key"] == KEY_A  # the offer itself is left alone


def test_connect_without_an_offer_is_refused(client: Client, sent_signals: SignalRecorder) -> None:
    installed_via_lifecycle()
    login(client, "ada")
    before = installation_rows()
    assert_refused(client, connect(client), 400, before, sent_signals)


def test_an_anonymous_connect_goes_to_the_login(
    client: Client, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle()
    landed(client)
    before = installation_rows()
    response = connect(client)
    assert_refused(client, response, 302, before, sent_signals)
    login_url = urlsplit(response["Location"])
    assert login_url.path == "/accounts/login/"
    assert parse_qs(login_url.query)["next"] == [LANDING_PATH]
    assert offer_of(client)["client_key"] == KEY_A


def test_connect_twice_in_a_row_signals_once(client: Client, sent_signals: SignalRecorder) -> None:
    user = offered_and_signed_in(client)
    assert connect(client).status_code == 303
    after_first = installation_rows()
    # The offer is used up; the owner is told it is connected, and nothing happens again.
    response = connect(client)
    assert response.status_code == 303
    assert response["Location"] == reverse("bitbucket_install:result")
    assert installation_rows() == after_first
    assert [kwargs["user"] for kwargs in sent_signals.of(installed)] == [user]


def test_connect_when_already_connected_to_you_sends_no_signal(
    client: Client, sent_signals: SignalRecorder
) -> None:
    user = offered_and_signed_in(client)
    Installation.objects.update(user=user)
    before = installation_rows()
    response = connect(client)
    assert response.status_code == 303
    assert installation_rows() == before
    assert sent_signals.none_sent
    assert offer_of(client) is None


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed(client: Client, method: str) -> None:
    response = getattr(client, method)(LANDING_PATH)
    assert response.status_code == 405
    assert_protected(response)


# --- with Bitbucket's word ------------------------------------------------------------------


@pytest.fixture
def confirm_with_bitbucket(settings: Settings) -> None:
    settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True


@pytest.mark.usefixtures("confirm_with_bitbucket")
def test_connect_when_bitbucket_vouches(
    client: Client, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    asked = bitbucket_answers(monkeypatch, 200)
    user = offered_and_signed_in(client)
    assert connect(client).status_code == 303
    row = Installation.objects.get()
    assert row.user_id == user.pk
    assert row.verified_at is not None
    assert asked == ["/2.0/addon/linkers"]
    assert len(sent_signals.of(installed)) == 1


@pytest.mark.usefixtures("confirm_with_bitbucket")
def test_connect_when_bitbucket_refuses_the_secret(
    client: Client, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    asked = bitbucket_answers(monkeypatch, 401)
    offered_and_signed_in(client)
    before = installation_rows()
    assert_refused(client, connect(client), 400, before, sent_signals)
    assert asked
    assert set(asked) == {"/2.0/addon/linkers"}


@pytest.mark.usefixtures("confirm_with_bitbucket")
@pytest.mark.parametrize("answer", [503, httpx.ConnectError("down")])
def test_connect_when_bitbucket_is_unreachable(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    sent_signals: SignalRecorder,
    answer: int | Exception,
) -> None:
    bitbucket_answers(monkeypatch, answer)
    offered_and_signed_in(client)
    before = installation_rows()
    response = connect(client)
    assert_refused(client, response, 503, before, sent_signals)
    assert response["Retry-After"] == "5"
    assert offer_of(client)["client_key"] == KEY_A  # kept: a retry can work


@pytest.mark.usefixtures("confirm_with_bitbucket")
def test_a_signed_landing_when_bitbucket_is_unreachable(
    client: Client, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    bitbucket_answers(monkeypatch, 503)
    installed_via_lifecycle()
    before = installation_rows()
    response = client.get(signed_landing_url(KEY_A, INSTALL_SECRET))
    assert_protected(response)
    assert_refused(client, response, 503, before, sent_signals)
    assert offer_of(client) is None


@pytest.mark.usefixtures("confirm_with_bitbucket")
def test_an_installation_bitbucket_vouched_for_is_not_asked_again(
    client: Client, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    asked = bitbucket_answers(monkeypatch, 200)
    installed_via_lifecycle()
    assert client.get(signed_landing_url(KEY_A, INSTALL_SECRET)).status_code == 303
    assert asked == ["/2.0/addon/linkers"]
    login(client, "ada")
    assert connect(client).status_code == 303
    assert asked == ["/2.0/addon/linkers"]
    assert len(sent_signals.of(installed)) == 2


def test_offer_round_trip() -> None:
    offer = Offer(KEY_A, 12.5, signed=True)
    assert offer.as_session() == {"client_key": KEY_A, "landed_at": 12.5, "signed": True}
    assert landing.Bind.CONNECTED == "connected"


@pytest.mark.usefixtures("confirm_with_bitbucket")
def test_a_signed_landing_bitbucket_does_not_vouch_for_is_refused(
    client: Client, monkeypatch: pytest.MonkeyPatch, sent_signals: SignalRecorder
) -> None:
    bitbucket_answers(monkeypatch, 401)
    installed_via_lifecycle()
    before = installation_rows()
    response = client.get(signed_landing_url(KEY_A, INSTALL_SECRET))
    assert_protected(response)
    assert_refused(client, response, 400, before, sent_signals)
    assert offer_of(client) is None


def test_a_refused_landing_logs_its_reason_and_never_the_token(
    client: Client, caplog: pytest.LogCaptureFixture, sent_signals: SignalRecorder
) -> None:
    installed_via_lifecycle()
    url = signed_landing_url(KEY_A, "a-secret-nobody-has-0123456789")
    token = parse_qs(urlsplit(url).query)["jwt"][0]
    with caplog.at_level("INFO"):
        assert client.get(url).status_code == 400
    assert ("WARNING", "landing rejected: reason=token_signature") in app_log(caplog)
    assert records_mentioning(caplog, token) == []
    assert sent_signals.none_sent
