"""The test settings with a custom user model whose primary key is a UUID. It needs a
process of its own (the user model is fixed at start-up):

    python -m pytest --ds=tests.settings_custom_user tests/configurations/test_custom_user.py
"""

from __future__ import annotations

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.custom_user"]  # noqa: F405
AUTH_USER_MODEL = "custom_user.User"
