"""The speed work, tested for behaviour (the timings are in benchmarks/).

- The admin's search: one case-insensitive term, not split at spaces (exact clientKey, the
  start of the principal's name, exact principal UUID), lookups an index serves.
- The admin's paginator: the whole table is counted from the database's estimate once it
  is large (PostgreSQL), exactly otherwise; searches and filters are counted exactly.
- Migration 0002: the composite index of the admin's ordering, and on PostgreSQL the
  expression indexes the search compares with (the planner uses them).
- ``{% bitbucket_install_button %}``: the title translated in Python, the app name read
  without building the descriptor, the start URL reversed once per URLconf, prefix and
  language, the stylesheet's URL worked out once per static files storage and DEBUG.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin import site
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.management import call_command
from django.db import connection
from django.templatetags.static import static
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import clear_script_prefix, include, path, reverse, set_script_prefix, set_urlconf
from django.utils import timezone, translation
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings

from bitbucket_install import admin as installation_admin
from bitbucket_install.admin import InstallationPaginator, estimated_rows
from bitbucket_install.conf import app_settings
from bitbucket_install.models import Installation
from bitbucket_install.templatetags.bitbucket_install import (
    STYLESHEET,
    bitbucket_install_button,
    start_url,
    stylesheet_url,
)
from tests.test_templatetags import BUTTON, HOSTILE, Elements, render_with_request

CHANGELIST = reverse("admin:bitbucket_install_installation_changelist")
SEARCH_INDEXES = {
    "bbinstall_client_key_upper",
    "bbinstall_principal_name_upper",
    "bbinstall_principal_uuid_upper",
}


def make(client_key: str, principal_name: str = "", principal_uuid: str = "") -> Installation:
    installation: Installation = Installation.objects.create(
        client_key=client_key, principal_name=principal_name, principal_uuid=principal_uuid
    )
    return installation


@pytest.fixture
def workspaces(db: None) -> dict[str, Installation]:
    return {
        "acme": make("connection:1001", "Acme Team", "{aaaa-1111}"),
        "acme-labs": make("connection:1002", "Acme Labs", "{aaaa-2222}"),
        "team": make("connection:1003", "Team Acme", "{bbbb-3333}"),
        "initech": make("ari:cloud:bitbucket::app/{CAFE}/example-app", "Initech", "{cccc}"),
    }


def listed(admin_client: Client, term: str) -> set[str]:
    response = admin_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    return {row.client_key for row in response.context["cl"].result_list}


# --- the admin's search ---------------------------------------------------------------------


def test_search_keeps_the_term_whole(
    admin_client: Client, workspaces: dict[str, Installation]
) -> None:
    # Not split at spaces: a two-word name finds that workspace and no other.
    assert listed(admin_client, "Acme Team") == {"connection:1001"}
    assert listed(admin_client, "  acme team  ") == {"connection:1001"}
    assert listed(admin_client, "Acme Labs") == {"connection:1002"}
    assert listed(admin_client, "Acme Team Labs") == set()


def test_search_matches_the_start_of_the_principal_name_in_any_case(
    admin_client: Client, workspaces: dict[str, Installation]
) -> None:
    assert listed(admin_client, "acme") == {"connection:1001", "connection:1002"}
    assert listed(admin_client, "ACME L") == {"connection:1002"}
    assert listed(admin_client, "team") == {"connection:1003"}  # the start only
    assert listed(admin_client, "labs") == set()
    assert listed(admin_client, "%") == set()  # LIKE wildcards are literal
    assert listed(admin_client, "_cme") == set()


def test_search_matches_a_whole_client_key_or_principal_uuid_in_any_case(
    admin_client: Client, workspaces: dict[str, Installation]
) -> None:
    key = "ari:cloud:bitbucket::app/{CAFE}/example-app"
    assert listed(admin_client, key) == {key}
    assert listed(admin_client, key.lower()) == {key}
    assert listed(admin_client, "connection:100") == set()  # no prefix of a clientKey
    assert listed(admin_client, "{AAAA-1111}") == {"connection:1001"}
    assert listed(admin_client, "{aaaa") == set()


def test_blank_search_lists_everything(
    admin_client: Client, workspaces: dict[str, Installation]
) -> None:
    everything = {row.client_key for row in workspaces.values()}
    assert listed(admin_client, "   ") == everything
    assert listed(admin_client, "") == everything


def test_search_box_is_shown(admin_client: Client, workspaces: dict[str, Installation]) -> None:
    response = admin_client.get(CHANGELIST)
    assert 'id="searchbar"' in response.content.decode()


# --- the admin's paginator ------------------------------------------------------------------


@pytest.fixture
def estimate(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Lets a test decide what the database "estimates" (one SQL per vendor)."""
    sql: dict[str, str] = {}
    monkeypatch.setattr(installation_admin, "ROW_ESTIMATE_SQL", sql)
    return sql


def counts(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]


@pytest.mark.django_db
def test_large_table_is_counted_from_the_estimate(
    admin_client: Client, estimate: dict[str, str]
) -> None:
    make("connection:1")
    estimate[connection.vendor] = "SELECT 123456 WHERE %s IS NOT NULL"

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert counts(captured) == []  # no COUNT(*) of the table
    assert response.context["cl"].result_count == 123456
    assert response.context["cl"].paginator.num_pages == 1235
    assert [row.client_key for row in response.context["cl"].result_list] == ["connection:1"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 9999 WHERE %s IS NOT NULL",  # below estimate_from: small enough to count
        "SELECT -1 WHERE %s IS NOT NULL",  # PostgreSQL before the first ANALYZE
        "SELECT NULL WHERE %s IS NOT NULL",
        "SELECT 1 WHERE %s IS NULL",  # no row
    ],
    ids=["small", "never-analyzed", "null", "no-row"],
)
def test_small_or_unknown_estimate_is_counted_exactly(
    admin_client: Client, estimate: dict[str, str], sql: str
) -> None:
    make("connection:1")
    make("connection:2")
    estimate[connection.vendor] = sql

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST)

    assert len(counts(captured)) == 1
    assert response.context["cl"].result_count == 2


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"q": "connection:2"}, {"status": "installed"}])
def test_search_and_filters_are_counted_exactly(
    admin_client: Client, estimate: dict[str, str], query: dict[str, str]
) -> None:
    uninstalled = make("connection:1")
    uninstalled.uninstalled_at = timezone.now()
    uninstalled.save()
    make("connection:2")
    estimate[connection.vendor] = "SELECT 123456 WHERE %s IS NOT NULL"

    response = admin_client.get(CHANGELIST, query)

    assert response.context["cl"].result_count == 1
    assert [row.client_key for row in response.context["cl"].result_list] == ["connection:2"]


@pytest.mark.django_db
def test_paginator_of_a_plain_list_counts_it() -> None:
    paginator = InstallationPaginator([Installation(), Installation(), Installation()], 2)
    assert paginator.count == 3
    assert paginator.num_pages == 2


@pytest.mark.django_db(transaction=True)
def test_estimate_of_this_database() -> None:
    # PostgreSQL: pg_class.reltuples once ANALYZE has run (-1 before: no estimate). Other
    # databases have no estimate here: the paginator counts.
    for number in range(3):
        make(f"connection:{number}")
    queryset = Installation.objects.all()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE bitbucket_install_installation")
        assert estimated_rows(queryset) == 3
    else:
        assert estimated_rows(queryset) is None
    assert InstallationPaginator(queryset, 100).count == 3  # under estimate_from: exact


# --- migration 0002 ------------------------------------------------------------------------


def index_names() -> set[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Installation._meta.db_table)
    return {name for name, details in constraints.items() if details["index"]}


@pytest.mark.django_db
def test_the_admin_ordering_has_its_index() -> None:
    names = index_names()
    assert "bbinstall_created" in names
    if connection.vendor == "postgresql":
        assert names >= SEARCH_INDEXES
    else:
        assert not SEARCH_INDEXES & names


class RecordingEditor:
    def __init__(self, vendor: str) -> None:
        self.connection = types.SimpleNamespace(vendor=vendor)
        self.executed: list[str] = []

    def execute(self, sql: str) -> None:
        self.executed.append(sql)


def migration_0002() -> Any:
    from importlib import import_module

    return import_module("bitbucket_install.migrations.0002_installation_admin_indexes")


@pytest.mark.parametrize("vendor", ["sqlite", "mysql", "oracle"])
def test_search_indexes_are_for_postgresql_only(vendor: str) -> None:
    module = migration_0002()
    editor = RecordingEditor(vendor)
    module.create_search_indexes(None, editor)
    module.drop_search_indexes(None, editor)
    assert editor.executed == []


def test_search_index_statements() -> None:
    module = migration_0002()
    editor = RecordingEditor("postgresql")
    module.create_search_indexes(None, editor)
    module.drop_search_indexes(None, editor)
    table = '"bitbucket_install_installation"'
    assert editor.executed == [
        f'CREATE INDEX "bbinstall_client_key_upper" ON {table} (UPPER("client_key"::text))',
        f'CREATE INDEX "bbinstall_principal_name_upper" ON {table} '
        '(UPPER("principal_name"::text) text_pattern_ops)',
        f'CREATE INDEX "bbinstall_principal_uuid_upper" ON {table} '
        '(UPPER("principal_uuid"::text))',
        'DROP INDEX IF EXISTS "bbinstall_client_key_upper"',
        'DROP INDEX IF EXISTS "bbinstall_principal_name_upper"',
        'DROP INDEX IF EXISTS "bbinstall_principal_uuid_upper"',
    ]


@pytest.mark.django_db(transaction=True)
def test_migration_0002_reverses_and_applies_again() -> None:
    call_command("migrate", "bitbucket_install", "0001", verbosity=0)
    names = index_names()
    assert "bbinstall_created" not in names
    assert not SEARCH_INDEXES & names
    call_command("migrate", "bitbucket_install", verbosity=0)
    names = index_names()
    assert "bbinstall_created" in names
    assert (names >= SEARCH_INDEXES) == (connection.vendor == "postgresql")


@pytest.mark.django_db(transaction=True)
def test_postgresql_plans_the_search_on_its_indexes() -> None:
    for number in range(50):
        make(f"connection:{number}", f"Workspace {number}", f"{{{number}}}")
    model_admin = installation_admin.InstallationAdmin(Installation, site)
    request = RequestFactory().get(CHANGELIST)
    queryset, _ = model_admin.get_search_results(
        request, Installation.objects.all(), "workspace 1"
    )
    assert {row.principal_name for row in queryset} == {"Workspace 1"} | {
        f"Workspace {number}" for number in range(10, 20)
    }
    if connection.vendor != "postgresql":
        return  # nothing to plan with: SQLite and MariaDB have no such indexes
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            plan = queryset.explain()
            ordered = Installation.objects.order_by("-created_at", "-id")[:100].explain()
        finally:
            cursor.execute("RESET enable_seqscan")
    assert all(name in plan for name in SEARCH_INDEXES), plan
    assert "bbinstall_created" in ordered, ordered


# --- the button -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("descriptor", "addon_key", "expected"),
    [
        ({"name": "Named"}, "key-x", "Named"),
        ({"key": "own-key"}, "key-x", "own-key"),
        ({}, "key-x", "key-x"),
        ({}, None, ""),
        ({"name": None}, "key-x", ""),
        ({"name": ""}, "key-x", ""),
        ({"key": None}, "key-x", ""),
        ({"name": 42}, None, "42"),
        ("not a dict", "key-x", "key-x"),
    ],
)
def test_app_name_is_the_descriptor_name(
    settings: Settings, descriptor: object, addon_key: str | None, expected: str
) -> None:
    settings.BITBUCKET_INSTALL_DESCRIPTOR = descriptor
    settings.BITBUCKET_INSTALL_ADDON_KEY = addon_key
    assert app_settings.app_name() == expected
    name = app_settings.DESCRIPTOR.get("name")
    assert app_settings.app_name() == (str(name) if name else "")


def test_button_title_is_translated() -> None:
    with translation.override("fr"):
        html = render_with_request(BUTTON)
    button = Elements(html).one("button")
    assert button.attrs["title"] == "Installer Example app dans votre espace de travail Bitbucket"


def test_button_context_keeps_app_name_for_overriding_templates() -> None:
    with override_settings(BITBUCKET_INSTALL_DESCRIPTOR={"name": HOSTILE, "description": "d"}):
        context = bitbucket_install_button(_context())
    assert context["app_name"] == HOSTILE
    assert context["title"] == f"Install {HOSTILE} in your Bitbucket workspace"  # escaped later


def _context() -> Any:
    from django.template import Context

    return Context({})


def test_start_url_follows_the_script_prefix() -> None:
    assert start_url() == "/bitbucket/install/"
    set_script_prefix("/mounted/")
    try:
        assert start_url() == "/mounted/bitbucket/install/"
    finally:
        clear_script_prefix()
    assert start_url() == "/bitbucket/install/"


def test_start_url_follows_the_urlconf() -> None:
    elsewhere = types.ModuleType("tests_elsewhere_urls")
    elsewhere.urlpatterns = [path("elsewhere/", include("bitbucket_install.urls"))]  # type: ignore[attr-defined]
    set_urlconf(elsewhere)  # type: ignore[arg-type]  # a module works as well as a name
    try:
        assert start_url() == "/elsewhere/install/"
    finally:
        set_urlconf(None)
    with override_settings(ROOT_URLCONF=elsewhere):
        assert start_url() == "/elsewhere/install/"
    assert start_url() == "/bitbucket/install/"


class DebugAwareStorage(StaticFilesStorage):
    """Answers by DEBUG, as the manifest storages do."""

    def url(self, name: str | None) -> str:
        return f"/files-debug-{settings.DEBUG}/{name}"


def test_stylesheet_url_is_that_of_the_static_tag() -> None:
    assert stylesheet_url() == static(STYLESHEET) == "/static/" + STYLESHEET
    html = render_with_request(BUTTON)
    assert Elements(html).one("link").attrs["href"] == "/static/" + STYLESHEET


def test_stylesheet_url_follows_static_settings() -> None:
    with override_settings(STATIC_URL="/assets/"):
        assert stylesheet_url() == "/assets/" + STYLESHEET
    assert stylesheet_url() == "/static/" + STYLESHEET
    storages = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": f"{__name__}.DebugAwareStorage"},
    }
    with override_settings(STORAGES=storages):
        assert stylesheet_url() == f"/files-debug-False/{STYLESHEET}"
        with override_settings(DEBUG=True):
            assert stylesheet_url() == f"/files-debug-True/{STYLESHEET}"
        assert stylesheet_url() == f"/files-debug-False/{STYLESHEET}"
    assert stylesheet_url() == "/static/" + STYLESHEET


# --- tokens -----------------------------------------------------------------------------------


def parsing_everything(query: str) -> str:
    """The canonical query as parsing the whole query with ``parse_qsl`` gives it."""
    from urllib.parse import parse_qsl

    from bitbucket_install.tokens import _encode_component

    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "jwt":
            values.setdefault(name, []).append(value)
    return "&".join(
        f"{n}={v}"
        for n, v in sorted(
            (_encode_component(name), ",".join(_encode_component(x) for x in sorted(vals)))
            for name, vals in values.items()
        )
    )


@pytest.mark.parametrize(
    "query",
    [
        "jwt=abc&a=1",
        "a=1&jwt",
        "jwt=&a=1&jwt=x",
        "j%77t=escaped&a=1",  # decodes to "jwt": dropped after decoding, as before
        "jwtx=2&a=1&xjwt=3",  # other names that merely contain "jwt" stay
        "a=1&&jwt=1&b=%20",
        "a+b=c+d&%2B=%2b&plain=1&=&x=%zz&y=%E2%82%AC%ff",  # +, escapes, bad escapes
    ],
)
def test_canonical_query_drops_jwt_as_parsing_everything_would(query: str) -> None:
    from bitbucket_install.tokens import canonical_query

    assert canonical_query(query) == parsing_everything(query)


@given(st.text(alphabet="ab=&+%2BFjwtz~é ", max_size=40))
@hypothesis_settings(deadline=None)
def test_canonical_query_decodes_as_parse_qsl_does(query: str) -> None:
    # The fast path (plain components not unquoted) against parse_qsl on any mix of
    # separators, plus signs, escapes (valid or cut short) and non-ASCII text.
    from bitbucket_install.tokens import canonical_query

    assert canonical_query(query) == parsing_everything(query)


def test_hmac_secrets_are_checked_once_and_asymmetric_keys_still_refused() -> None:
    import jwt

    from bitbucket_install.tokens import _prepared_key, encode_token, verify_token

    _prepared_key.cache_clear()
    token = encode_token({"iss": "connection:1"}, "a-secret", method="GET", path="/x")
    for _ in range(3):
        claims = verify_token(token, "a-secret", qsh=None, issuer="connection:1")
        assert claims["iss"] == "connection:1"
    info = _prepared_key.cache_info()
    assert info.misses == 1
    assert info.hits >= 3
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----"
    )
    for _ in range(2):  # refusals are not cached: each call refuses
        with pytest.raises(jwt.InvalidKeyError):
            encode_token({"iss": "connection:1"}, pem)
