"""Minimal settings for the test suite; DATABASE_URL picks the database (SQLite by default)."""

from __future__ import annotations

import importlib.util

import environ

env = environ.Env()

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite:///:memory:")}
# Each xdist worker gets its own test database; TEST NAME keeps PostgreSQL and MariaDB
# apart from the server's other databases.
DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"]["TEST"].update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"})
    DATABASES["default"].setdefault("OPTIONS", {})["charset"] = "utf8mb4"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "bitbucket_install",
]
# Django 5.2 has no django.tasks: its backport (the [tasks] extra) is an app, whose receiver
# lets override_settings(TASKS=...) take effect.
if importlib.util.find_spec("django.tasks") is None:
    INSTALLED_APPS.append("django_tasks")
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

BITBUCKET_INSTALL_ADDON_KEY = "example-app"
BITBUCKET_INSTALL_BASE_URL = "https://app.example.com"
BITBUCKET_INSTALL_SHARED_SECRET = "app-level-shared-secret-for-the-test-suite"
BITBUCKET_INSTALL_DESCRIPTOR = {
    "name": "Example app",
    "description": "An app used by the test suite.",
    "vendor": {"name": "Example Inc.", "url": "https://example.com"},
}
