"""Fixtures of the API client's tests: a running ``FakeBitbucket`` whose origin is allowed,
an installation on it, a clock that moves only when the client sleeps, an empty cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from bitbucket_install import client
from bitbucket_install.models import Installation
from tests.client.fake_bitbucket import (
    APP_KEY,
    CLIENT_KEY,
    SHARED_SECRET,
    FakeBitbucket,
    running,
)


@pytest.fixture(autouse=True)
def _empty_cache(empty_cache: None) -> None:
    """Every test here starts and ends with an empty cache."""


@pytest.fixture
def bitbucket(settings: Settings) -> Iterator[FakeBitbucket]:
    for fake in running():
        settings.BITBUCKET_INSTALL_BITBUCKET_ORIGINS = [fake.origin]
        yield fake


@pytest.fixture
def installation(db: None, bitbucket: FakeBitbucket) -> Installation:
    return make_installation(bitbucket.url)


def make_installation(url: str, **fields: object) -> Installation:
    values: dict[str, object] = {
        "client_key": CLIENT_KEY,
        "addon_key": APP_KEY,
        "shared_secret": SHARED_SECRET,
        "base_url": url,
        "base_api_url": url,
        "product_type": "bitbucket",
        "installed_at": timezone.now(),
        **fields,
    }
    installation: Installation = Installation.objects.create(**values)
    return installation


@dataclass
class FakeTime:
    """The client's clock, moved only by its sleeps (and by tests): no test waits."""

    now: float
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    # Starts at the real time, which the fake Bitbucket checks iat and exp against.
    moved = FakeTime(float(int(time.time())))
    monkeypatch.setattr(client, "clock", moved)
    return moved
