"""Sphinx configuration of the django-bitbucket-install documentation.

Built in CI with warnings as errors: ``make docs`` (``sphinx-build -W --keep-going``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_PATTERN = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)

project = "django-bitbucket-install"
author = "django-bitbucket-install developers"
copyright = "the django-bitbucket-install developers"
match = VERSION_PATTERN.search((ROOT / "bitbucket_install" / "__init__.py").read_text())
release = version = match.group(1) if match else "unknown"

extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "django-bitbucket-install"
html_static_path: list[str] = []
# Nothing is fetched from elsewhere when the docs are read: no CDN, no web fonts.
html_theme_options = {"navigation_with_keys": True}
nitpicky = True
