"""Fixtures of the tests that ask Bitbucket whether an installation is genuine: a running
``FakeBitbucket`` (a real HTTP server that accepts a Connect JWT only when it is signed with
the secret it holds for the token's ``sub``), the app pointed at it, and tasks that are only
stored (the follow-up check is run by the tests that are about it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from bitbucket_install import task_framework
from bitbucket_install.conf import DEFAULT_BITBUCKET_ORIGINS
from tests.client.fake_bitbucket import FakeBitbucket, running

FRAMEWORK = task_framework.framework().__name__
DUMMY = f"{FRAMEWORK}.backends.dummy.DummyBackend"
IMMEDIATE = f"{FRAMEWORK}.backends.immediate.ImmediateBackend"
# The secret Bitbucket issued (32 bytes at least: PyJWT warns about shorter HMAC keys).
ISSUED_SECRET = "secret-bitbucket-issued-0123456789abcdef"
CHOSEN_SECRET = "secret-a-squatter-chose-0123456789abcdef"


@pytest.fixture(autouse=True)
def _empty_cache(empty_cache: None) -> None:
    """Every test here starts and ends with an empty cache."""


@pytest.fixture
def bitbucket(settings: Settings) -> Iterator[FakeBitbucket]:
    """Bitbucket, knowing no installation yet (``fake.secrets`` says which it made)."""
    for fake in running():
        fake.secrets = {}
        settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = [*DEFAULT_BITBUCKET_ORIGINS, fake.origin]
        settings.BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = True
        settings.TASKS = {"default": {"BACKEND": DUMMY}}
        yield fake


def on(fake: FakeBitbucket, **overrides: Any) -> dict[str, Any]:
    """The URL fields of a lifecycle body for an installation on ``fake``."""
    return {"baseUrl": fake.url, "baseApiUrl": fake.url, **overrides}


def checks(fake: FakeBitbucket) -> list[str]:
    """The paths of the calls Bitbucket received."""
    return [received.path for received in fake.received]
