"""Settings of the example project, read from the environment with django-environ.

Each value comes from a real environment variable if set, else from ``example_project/.env``
(copy ``.env.example`` beside it; ``ENV_FILE`` names another file), else the default
below. Every variable is documented in ``.env.example``.

``make demo`` (the ``demo`` command) serves this site on http://127.0.0.1:PORT/ with DEBUG
and the Bitbucket simulator on, whatever ``.env`` says about those.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env()
ENV_FILE = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.is_file():
    # Real environment variables win: read_env only fills in the ones that are missing.
    environ.Env.read_env(ENV_FILE)

# --- Django -----------------------------------------------------------------------------

# This is a development example: DEBUG is on unless turned off, and then it needs a key.
DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY when DEBUG is off.")
    SECRET_KEY = "django-insecure-example-project-only-never-deploy-this"

PORT = env.int("PORT", default=8000)
SITE_URL = f"http://127.0.0.1:{PORT}"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# The database cache keeps the simulator's memory of past installs (the secret that signs
# a re-install) across restarts, in step with the installations in the database.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://example_project_cache")}

INSTALLED_APPS = [
    # First, so its templates override the app's (bitbucket_install/installed.html, ...).
    "example_project.demo",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bitbucket_install",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en")
LANGUAGES = [("en", "English"), ("fr", "Français")]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The app logs one line per install outcome, with the reason of every refusal.
    "loggers": {"bitbucket_install": {"handlers": ["console"], "level": "INFO"}},
}

# --- the example's own knobs --------------------------------------------------------------

# "descriptor": an unregistered app, install links carry descriptor_uri (the default).
# "registered": a registered app, install links carry addon_key.
DEMO_INSTALL_MODE = env.str("DEMO_INSTALL_MODE", default="descriptor")
if DEMO_INSTALL_MODE not in {"descriptor", "registered"}:
    raise ImproperlyConfigured(
        f"DEMO_INSTALL_MODE must be 'descriptor' or 'registered', not {DEMO_INSTALL_MODE!r}."
    )
DEMO_APP_KEY = env.str("DEMO_APP_KEY", default="django-bitbucket-install-demo")
DEMO_ADMIN_USERNAME = env.str("DEMO_ADMIN_USERNAME", default="admin")
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="bitbucket-demo")

# --- django-bitbucket-install ---------------------------------------------------------------
# An empty value means "derive it": from PORT, the mode and the simulator switch.

BITBUCKET_INSTALL_BASE_URL = env.str("BITBUCKET_INSTALL_BASE_URL", default="") or SITE_URL
_base = BITBUCKET_INSTALL_BASE_URL.rstrip("/")
BITBUCKET_INSTALL_ADDON_KEY = env.str("BITBUCKET_INSTALL_ADDON_KEY", default="") or (
    DEMO_APP_KEY if DEMO_INSTALL_MODE == "registered" else None
)
BITBUCKET_INSTALL_DESCRIPTOR_URI = env.str("BITBUCKET_INSTALL_DESCRIPTOR_URI", default="") or (
    f"{_base}/bitbucket/atlassian-connect.json" if DEMO_INSTALL_MODE == "descriptor" else None
)
BITBUCKET_INSTALL_REDIRECT_URI = env.str("BITBUCKET_INSTALL_REDIRECT_URI", default="") or None
BITBUCKET_INSTALL_SHARED_SECRET = env.str("BITBUCKET_INSTALL_SHARED_SECRET", default="") or None
BITBUCKET_INSTALL_SIMULATOR = env.bool("BITBUCKET_INSTALL_SIMULATOR", default=False)
BITBUCKET_INSTALL_AUTHORIZE_URL = env.str("BITBUCKET_INSTALL_AUTHORIZE_URL", default="") or (
    f"{_base}/bitbucket/simulator/authorize/" if BITBUCKET_INSTALL_SIMULATOR else None
)
BITBUCKET_INSTALL_SUCCESS_URL = env.str("BITBUCKET_INSTALL_SUCCESS_URL", default="") or None
BITBUCKET_INSTALL_FAILURE_URL = env.str("BITBUCKET_INSTALL_FAILURE_URL", default="") or None
BITBUCKET_INSTALL_DESCRIPTOR = {
    "key": BITBUCKET_INSTALL_ADDON_KEY or DEMO_APP_KEY,
    "name": env.str("DEMO_APP_NAME", default="Example app"),
    "description": env.str(
        "DEMO_APP_DESCRIPTION",
        default="The example project of django-bitbucket-install.",
    ),
    "vendor": {"name": "django-bitbucket-install", "url": SITE_URL},
    "scopes": env.list("DEMO_APP_SCOPES", default=["account", "repository"]),
}
