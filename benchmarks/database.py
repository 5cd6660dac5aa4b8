"""The benchmark's own PostgreSQL databases: dropped and created afresh on every run.

``BENCH_POSTGRES_URL`` names the server (default ``postgres://postgres@127.0.0.1:5432``,
the user must be allowed to create databases); every database this module makes is called
``bitbucket_install_bench_*`` (``BENCH_DATABASE_PREFIX`` changes that start, so that runs
on one shared server keep apart) and nothing else on the server is touched.
"""

from __future__ import annotations

import hashlib
import os
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
PREFIX = os.environ.get("BENCH_DATABASE_PREFIX", "bitbucket_install_bench_")
TABLE = "bitbucket_install_installation"


def database_url(name: str) -> str:
    """The django-environ URL of database ``name`` on the benchmark's server."""
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True)


def recreate(suffix: str) -> str:
    """Drop ``<PREFIX><suffix>`` if it exists, create it empty; its URL."""
    name = PREFIX + suffix
    with _connect(database_url("postgres")) as connection:
        identifier = sql.Identifier(name)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    return database_url(name)


def drop(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not PREFIX or not name.startswith(PREFIX):
        raise ValueError(f"not a benchmark database: {name}")
    with _connect(database_url("postgres")) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def server_version() -> str:
    with _connect(database_url("postgres")) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def client_key(number: int) -> str:
    """The clientKey of bulk-loaded row ``number`` (1-based), as ``load`` writes it."""
    return f"ari:cloud:bitbucket::app/{{{_uuid(number)}}}/bench-app"


def principal_name(number: int) -> str:
    return f"Workspace {number:07d}"


def _uuid(number: int) -> str:
    # Must match the SQL expression in ``load``: md5 of the number, shaped as a UUID.
    digest = hashlib.md5(str(number).encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


LOAD_SQL = """
INSERT INTO bitbucket_install_installation (
    client_key, addon_key, shared_secret, public_key, base_url, base_api_url, product_type,
    principal, principal_uuid, principal_name, installed_by, installed_at, confirmed_at,
    confirmed_flow, uninstalled_at, created_at, updated_at
)
SELECT
    'ari:cloud:bitbucket::app/{' || u || '}/bench-app',
    'bench-app',
    'bench-installation-secret',
    '',
    'https://bitbucket.org',
    'https://api.bitbucket.org',
    'bitbucket',
    jsonb_build_object('type', 'workspace', 'uuid', '{' || u || '}', 'display_name', name),
    '{' || u || '}',
    name,
    NULL,
    t,
    t + interval '5 seconds',
    NULL, -- confirmed without a flow of this site: no flow hash (the column is unique)
    CASE WHEN n % 10 = 0 THEN t + interval '1 day' END,
    t,
    t
FROM (
    -- OFFSET 0 keeps this subquery apart, so md5() runs once a row, not once a reference.
    SELECT
        n,
        md5(n::text)::uuid::text AS u,
        'Workspace ' || lpad(n::text, 7, '0') AS name,
        timestamptz '2024-01-01 00:00:00+00' + n * interval '1 minute' AS t
    FROM generate_series(1, %(rows)s) AS n
    OFFSET 0
) AS numbered
"""


def _pairs(
    connection: psycopg.Connection[tuple[object, ...]], query: str
) -> list[tuple[str, str]]:
    """(name, definition) rows of ``query`` about the installations table."""
    rows = connection.execute(query, [TABLE]).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


def load(url: str, rows: int) -> float:
    """Insert ``rows`` installations into the migrated database at ``url``; the seconds taken.

    One INSERT ... SELECT over generate_series, with the table's secondary indexes and
    constraints dropped first and rebuilt after (a sorted build is far quicker than a
    million index insertions), then VACUUM ANALYZE so the planner, the visibility map and
    ``pg_class.reltuples`` know the table. The schema ends exactly as migrate left it.

    Row ``n`` was created ``n`` minutes after 2024-01-01 (the newest rows have the highest
    numbers); every tenth row is uninstalled.
    """
    started = time.monotonic()
    with _connect(url) as connection:
        constraints = _pairs(
            connection,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY conname",
        )
        indexes = _pairs(
            connection,
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
            " ORDER BY i.relname",
        )
        table = sql.Identifier(TABLE)
        for name, _ in constraints:
            connection.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(name))
            )
        for name, _ in indexes:
            connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        connection.execute(LOAD_SQL.replace("%(rows)s", str(int(rows))))
        connection.execute("SET maintenance_work_mem = '256MB'")
        for name, definition in constraints:
            connection.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(table, sql.Identifier(name))
                + sql.SQL(definition)
            )
        for _, definition in indexes:
            connection.execute(sql.SQL(definition))
        connection.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
    return time.monotonic() - started
