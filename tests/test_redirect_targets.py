"""Where the browser goes after a return: never to another site, whatever the settings say
(check E021 reports such a setting; the views refuse it too)."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from tests.callback_helpers import (
    INSTALL_SECRET,
    KEY_A,
    RESULT_PATH,
    flow_path,
    flow_return,
    installed_via_lifecycle,
    login,
)
from tests.conftest import SignalRecorder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "target", ["https://evil.test/welcome/", "//evil.test/welcome/", "/\\evil.test/"]
)
def test_an_off_site_success_url_is_not_followed(
    target: str, sent_signals: SignalRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    user = login(client, "ada")
    path = flow_path(client)
    installed_via_lifecycle(KEY_A)
    with override_settings(BITBUCKET_INSTALL_SUCCESS_URL=target):
        response = flow_return(client, KEY_A, INSTALL_SECRET, path)
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
    assert Installation.objects.get(client_key=KEY_A).user_id == user.pk
    assert len(sent_signals.of(installed)) == 1
    assert "install return: success or failure URL not on this site ignored" in [
        record.getMessage() for record in caplog.records
    ]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/welcome/", "/welcome/"),
        ("https://app.example.com:8443/w/", "https://app.example.com:8443/w/"),
    ],
)
def test_a_success_url_on_this_site_is_followed(target: str, expected: str) -> None:
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    installed_via_lifecycle(KEY_A)
    with override_settings(BITBUCKET_INSTALL_SUCCESS_URL=target):
        response = flow_return(client, KEY_A, INSTALL_SECRET, path)
    assert response["Location"] == expected


def test_an_off_site_failure_url_is_not_followed(sent_signals: SignalRecorder) -> None:
    client = Client()
    login(client, "ada")
    path = flow_path(client)
    with override_settings(BITBUCKET_INSTALL_FAILURE_URL="https://evil.test/sorry/"):
        response = client.get(path + "?error=access_denied")
    assert response.status_code == 303
    assert response["Location"] == RESULT_PATH
