"""Fixtures of the descriptor push's tests: a running ``FakeBitbucket`` (a real HTTP server
that verifies every Connect JWT with atlassian-jwt) whose origin is allowed, installations
on it, a sleep that only records, an empty cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import push
from bitbucket_install.models import Installation
from tests.client.fake_bitbucket import APP_KEY, FakeBitbucket, running


@pytest.fixture(autouse=True)
def _empty_cache(empty_cache: None) -> None:
    """Every test here starts and ends with an empty cache."""


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the client asked for between 429s (none of them waited)."""
    waits: list[float] = []
    monkeypatch.setattr(push, "sleep", waits.append)
    return waits


@pytest.fixture
def bitbucket(settings: Settings) -> Iterator[FakeBitbucket]:
    for fake in running():
        fake.secrets = {}
        settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = [fake.origin]
        yield fake


def on_fake(fake: FakeBitbucket, number: int, **fields: object) -> Installation:
    """Installation ``number`` on ``fake``, which knows its secret."""
    client_key = f"connection:{number}"
    secret = f"installation-{number}-shared-secret-0123456789abcdef"
    fake.secrets[client_key] = secret
    values: dict[str, object] = {
        "client_key": client_key,
        "addon_key": APP_KEY,
        "shared_secret": secret,
        "base_url": fake.url,
        "base_api_url": fake.url,
        "product_type": "bitbucket",
        "installed_at": timezone.now(),
        **fields,
    }
    installation: Installation = Installation.objects.create(**values)
    return installation


def outcome(installation: Installation) -> tuple[bool, str]:
    """(pushed at some time, the recorded error) of the row as stored now."""
    installation.refresh_from_db()
    return installation.descriptor_pushed_at is not None, installation.descriptor_push_error
