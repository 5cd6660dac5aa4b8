"""A user who connected an installation is deleted: the installation stays, unconnected."""

from __future__ import annotations

import pytest

from tests.configurations.site import Site
from tests.configurations.users import check_deleting_the_user_keeps_the_installation
from tests.conftest import SignalRecorder

pytestmark = pytest.mark.django_db(transaction=True)


def test_deleting_the_user_keeps_the_installation(
    site: Site, sent_signals: SignalRecorder
) -> None:
    check_deleting_the_user_keeps_the_installation(site, sent_signals)
