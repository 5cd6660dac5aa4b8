"""Settings of the example project: for development only. Never deploy the example
project, and never copy these settings into a site you deploy.

It is a small site for trying the app on a laptop: ``make demo`` serves it with the
Bitbucket simulator on http://127.0.0.1:PORT/. Its defaults are safe when DEBUG is off, so
that a copy left running by mistake gives away nothing, but it has none of what a real
site needs (its own users, logging, static files, a real database and cache).

Each value comes from a real environment variable if set, else from ``example_project/.env``
if there is one (``ENV_FILE`` names another file), else the default below. Every variable
is documented in ``.env.example``; the demo works without any.

- DEBUG is off unless the environment turns it on (``make demo`` does, for the server it
  starts). With DEBUG on and no SECRET_KEY, the key is one generated for this checkout and
  kept in ``example_project/.dev/`` (see ``local_secrets.py``).
- With DEBUG off, SECRET_KEY and BITBUCKET_INSTALL_BASE_URL (the site's public HTTPS
  address) are required, ALLOWED_HOSTS defaults to that address's host, cookies are
  secure, HSTS is on and plain HTTP is redirected to HTTPS. The site is then expected to
  run behind a reverse proxy that terminates TLS and sets ``X-Forwarded-Proto: https``
  (overwriting any such header from the client): Django trusts that header to know a
  request came over HTTPS (SECURE_PROXY_SSL_HEADER). ``manage.py check --deploy`` is then
  clean.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from example_project.local_secrets import local_secret

BASE_DIR = Path(__file__).resolve().parent

env = environ.Env()
ENV_FILE = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.is_file():
    # Real environment variables win: read_env only fills in the ones that are missing.
    environ.Env.read_env(ENV_FILE)

# --- Django -----------------------------------------------------------------------------

DEBUG = env.bool("DEBUG", default=False)
# What the example generates for development (the dev SECRET_KEY, the demo's password).
DEV_STATE_DIR = Path(env.str("DEV_STATE_DIR", default=str(BASE_DIR / ".dev")))
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "The example project needs SECRET_KEY when DEBUG is off. It is for development "
            "only: run it with DEBUG=on (make demo does), never deploy it."
        )
    SECRET_KEY = local_secret(DEV_STATE_DIR, "secret_key")

PORT = env.int("PORT", default=8000)
SITE_URL = f"http://127.0.0.1:{PORT}"
# The descriptor's baseUrl; the redirect URI must be under it. With DEBUG on it defaults
# to the development server's address; with DEBUG off it must be given (HTTPS).
BITBUCKET_INSTALL_BASE_URL = env.str("BITBUCKET_INSTALL_BASE_URL", default="") or (
    SITE_URL if DEBUG else ""
)
if not BITBUCKET_INSTALL_BASE_URL:
    raise ImproperlyConfigured(
        "The example project needs BITBUCKET_INSTALL_BASE_URL (the site's public HTTPS "
        "address) when DEBUG is off."
    )
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=(
        ["127.0.0.1", "localhost", "[::1]"]
        if DEBUG
        else [urlsplit(BITBUCKET_INSTALL_BASE_URL).hostname or ""]
    ),
)

# HTTPS when DEBUG is off: behind the reverse proxy the docstring describes.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The benchmarks serve it over plain HTTP on loopback, with DEBUG off: they turn this off.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# Asking browsers to preload HSTS for the domain is its owner's decision, not a default of
# an example's (check --deploy mentions it as security.W021).
SILENCED_SYSTEM_CHECKS = ["security.W021"]

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
# The Forge app the demo migrates to (the simulator's Forge page installs it): any app ARI.
DEMO_FORGE_APP_ID = "ari:cloud:ecosystem::app/5f0c2a8e-4b1d-4e6f-9a3c-7d8e9f0a1b2c"
DEMO_ADMIN_USERNAME = env.str("DEMO_ADMIN_USERNAME", default="admin")
# Empty: a password generated for this checkout, kept in DEV_STATE_DIR and printed by the
# demo (never a password everybody knows).
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")

# --- django-bitbucket-install ---------------------------------------------------------------
# An empty value means "derive it": from the base URL (above), the mode and the simulator
# switch.

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
# The Forge app this Connect app moves to: forgeAppId and forgeAppLink in the descriptor
# (push them to the installations with manage.py bitbucket_install_push_descriptor). With
# the simulator on, a demo app that the simulator's Forge page installs.
BITBUCKET_INSTALL_FORGE_APP_ID = env.str("BITBUCKET_INSTALL_FORGE_APP_ID", default="") or (
    DEMO_FORGE_APP_ID if BITBUCKET_INSTALL_SIMULATOR else None
)
BITBUCKET_INSTALL_FORGE_APP_LINK = env.str("BITBUCKET_INSTALL_FORGE_APP_LINK", default="") or None
BITBUCKET_INSTALL_AUTHORIZE_URL = env.str("BITBUCKET_INSTALL_AUTHORIZE_URL", default="") or (
    f"{_base}/bitbucket/simulator/authorize/" if BITBUCKET_INSTALL_SIMULATOR else None
)
BITBUCKET_INSTALL_SUCCESS_URL = env.str("BITBUCKET_INSTALL_SUCCESS_URL", default="") or None
BITBUCKET_INSTALL_FAILURE_URL = env.str("BITBUCKET_INSTALL_FAILURE_URL", default="") or None
# The events the descriptor subscribes the webhook view to; the demo's receiver records
# each delivery (the /webhooks/ page), and the simulator's console sends them.
BITBUCKET_INSTALL_WEBHOOKS = env.list(
    "BITBUCKET_INSTALL_WEBHOOKS", default=["repo:push", "pullrequest:created"]
)
# Only genuine installations are confirmed or connected: Bitbucket (in the demo, the
# simulator, which knows the installations it made) is asked first, and each new one is
# checked again by a task shortly after its callback.
BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET = env.bool(
    "BITBUCKET_INSTALL_CONFIRM_WITH_BITBUCKET", default=True
)
# The backend of those tasks. Django's default runs each at once (enough for the demo);
# production wants a worker that can run a task later, e.g.
# TASKS_BACKEND=django_tasks_db.DatabaseBackend with `manage.py db_worker` running.
_tasks_backend = env.str("TASKS_BACKEND", default="")
if _tasks_backend:
    TASKS = {"default": {"BACKEND": _tasks_backend}}
    if _tasks_backend.startswith("django_tasks_db."):
        INSTALLED_APPS.append("django_tasks_db")
# Installs begun on Bitbucket's side (the simulator console's "Install from Bitbucket")
# land on the app's landing page, where a signed-in user connects them.
BITBUCKET_INSTALL_POST_INSTALL_REDIRECT = env.bool(
    "BITBUCKET_INSTALL_POST_INSTALL_REDIRECT", default=True
)
# A page of the example waits out a 429 of Bitbucket's for a few seconds at most.
BITBUCKET_INSTALL_API_MAX_RETRY_WAIT = env.int("BITBUCKET_INSTALL_API_MAX_RETRY_WAIT", default=5)
BITBUCKET_INSTALL_DESCRIPTOR = {
    "key": BITBUCKET_INSTALL_ADDON_KEY or DEMO_APP_KEY,
    "name": env.str("DEMO_APP_NAME", default="Example app"),
    "description": env.str(
        "DEMO_APP_DESCRIPTION",
        default="The example project of django-bitbucket-install.",
    ),
    "vendor": {"name": "django-bitbucket-install", "url": BITBUCKET_INSTALL_BASE_URL},
    "scopes": env.list("DEMO_APP_SCOPES", default=["account", "repository"]),
}
