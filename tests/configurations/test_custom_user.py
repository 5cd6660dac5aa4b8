"""A project's own user model whose primary key is a UUID (``AUTH_USER_MODEL``).

Its own process, with its own settings::

    python -m pytest --ds=tests.settings_custom_user tests/configurations/test_custom_user.py

The flow keeps the user's id as text in the session and binds it through a foreign key
of that type; the admin shows and links the user.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import models
from django.urls import reverse

from bitbucket_install import flow as flows
from bitbucket_install.models import Installation
from bitbucket_install.signals import install_failed, installed
from tests.configurations.conftest import CUSTOM_USER_MODEL
from tests.configurations.site import Site, install, press_button
from tests.configurations.users import (
    check_deleting_the_user_keeps_the_installation,
    install_signed_in,
    new_user,
)
from tests.conftest import SignalRecorder
from tests.lifecycle_helpers import installation_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_user_model_has_a_uuid_primary_key() -> None:
    user_model = get_user_model()
    assert user_model._meta.label == CUSTOM_USER_MODEL
    assert isinstance(user_model._meta.pk, models.UUIDField)
    foreign_key = Installation._meta.get_field("user")
    assert foreign_key.related_model is user_model
    assert isinstance(foreign_key, models.ForeignKey)
    assert isinstance(foreign_key.target_field, models.UUIDField)


def test_install_connects_a_uuid_user(site: Site, sent_signals: SignalRecorder) -> None:
    user = new_user("ada")
    browser = site.browser()
    browser.force_login(user)
    press_button(browser, site.url("/"))
    session = browser.agent.client.session  # type: ignore[attr-defined]
    [stored] = session[flows.SESSION_KEY]
    assert stored["user_id"] == str(user.pk)
    assert uuid.UUID(stored["user_id"]) == user.pk

    done = install(browser, site.url("/"))

    assert done.result.status == 200
    assert "connected to your account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == user.pk
    assert isinstance(row["user_id"], uuid.UUID)
    [sent] = sent_signals.of(installed)
    assert sent["user"] == user
    assert Installation.objects.get().user == user


def test_another_uuid_user_cannot_take_the_installation_over(
    site: Site, sent_signals: SignalRecorder
) -> None:
    owner = new_user("owner")
    client_key = install_signed_in(site, owner)
    sent_signals.calls.clear()
    other = new_user("other")
    browser = site.browser()
    browser.force_login(other)

    done = install(browser, site.url("/"))  # the same workspace

    assert done.client_key == client_key
    assert "already connected to another account" in done.result.text
    [row] = installation_rows()
    assert row["user_id"] == owner.pk
    assert sent_signals.of(installed) == []
    [failed] = sent_signals.of(install_failed)
    assert failed["error"] == "connected_to_another_user"
    assert failed["user"] == other


def test_admin_shows_the_uuid_user(site: Site) -> None:
    user = new_user("ada")
    install_signed_in(site, user)
    admin = new_user("root", is_staff=True, is_superuser=True)
    browser = site.browser()
    browser.force_login(admin)
    installation = Installation.objects.get()

    listed = browser.get(site.url(reverse("admin:bitbucket_install_installation_changelist")))
    change = browser.get(
        site.url(reverse("admin:bitbucket_install_installation_change", args=[installation.pk]))
    )

    assert listed.status == 200
    assert ">ada<" in listed.text
    assert change.status == 200
    # The change page is read-only: it names the connected user (whose model has no admin
    # of its own here, so as text rather than a link to it).
    assert '<div class="readonly">ada</div>' in change.text


def test_deleting_the_user_keeps_the_installation(
    site: Site, sent_signals: SignalRecorder
) -> None:
    check_deleting_the_user_keeps_the_installation(site, sent_signals)
