"""What the user-model tests share: the install of a signed-in user, and the deletion of
that user afterwards (whatever the user model: ``test_user_deleted.py`` runs it with
Django's, ``test_custom_user.py`` with one whose primary key is a UUID)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.urls import reverse

from bitbucket_install.models import Installation
from bitbucket_install.signals import installed
from tests.configurations.site import Site, install
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows


def new_user(username: str, **fields: object) -> User:
    user: User = get_user_model().objects.create_user(
        username=username, password="unused-password", **fields
    )
    return user


def install_signed_in(site: Site, user: User, workspace: str = "Acme Team") -> str:
    """The whole install by ``user``; the clientKey it confirmed, connected to ``user``."""
    browser = site.browser()
    browser.force_login(user)
    done = install(browser, site.url("/"), workspace=workspace)
    assert done.returned.status == 303
    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    return done.client_key


def check_deleting_the_user_keeps_the_installation(
    site: Site, sent_signals: SignalRecorder
) -> None:
    """Install as a user, delete the user: the installation stays, installed and connected
    to nobody; the admin still shows it; the next install there connects its user."""
    user = new_user("leaver")
    client_key = install_signed_in(site, user)
    [before] = installation_rows()
    assert before["user_id"] == user.pk
    sent_signals.calls.clear()

    user.delete()

    [after] = installation_rows()
    assert after["client_key"] == client_key
    assert after["user_id"] is None
    assert after["uninstalled_at"] is None
    assert after["shared_secret"] == before["shared_secret"]
    assert after["confirmed_at"] == before["confirmed_at"]
    assert sent_signals.none_sent
    admin = new_user("root", is_staff=True, is_superuser=True)
    browser = site.browser()
    browser.force_login(admin)
    installation = Installation.objects.get()
    change = browser.get(
        site.url(reverse("admin:bitbucket_install_installation_change", args=[installation.pk]))
    )
    assert change.status == 200
    assert client_key in change.text

    successor = new_user("successor")
    assert install_signed_in(site, successor) == client_key  # the same workspace again
    [reconnected] = installation_rows()
    assert reconnected["user_id"] == successor.pk
    [sent] = sent_signals.of(installed)
    assert sent["user"] == successor
