"""The PostgreSQL server the storage tests use: ``$PYTEST_ENERGY_TEST_POSTGRES``.

Test modules import the fixtures ``pg_database_fixture`` and ``pg_url_fixture`` (named
``pg_database`` and ``pg_url`` in tests). Start a server with ``eval "$(bash
.ci/postgres-start)"``. Without it the PostgreSQL tests skip, saying so, except under CI
(``$CI`` set), where they fail: there the server must be there. Each test module gets a
database of its own (dropped afterwards), each test a fresh schema in it (the URL's
``search_path``), so tests never see each other's runs.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV = "PYTEST_ENERGY_TEST_POSTGRES"
START = 'eval "$(bash .ci/postgres-start)"'


def server_url() -> str:
    """The server's URL, or a skip (a failure under CI) saying how to get one."""
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"${ENV} is not set under CI: the PostgreSQL storage tests need the "
                    f"server ({START})")
    pytest.skip(f"no PostgreSQL server: set ${ENV} (e.g. {START}) to run this test")


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def with_schema(url: str, schema: str) -> str:
    """The URL whose tables live in ``schema`` (the first entry of its search_path)."""
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"


def admin(url: str) -> object:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """The URL of a new database on the test server, dropped afterwards."""
    base = server_url()
    name = prefix + uuid.uuid4().hex[:12]
    with admin(base) as db:  # type: ignore[attr-defined]
        db.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(base, name)
    finally:
        with admin(base) as db:  # type: ignore[attr-defined]
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", name="pg_database")
def pg_database_fixture() -> Iterator[str]:
    """A database of this module's own on the test server, dropped afterwards."""
    with fresh_database("pe_test_") as url:
        yield url


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_database: str) -> str:
    """A URL to a fresh, empty schema of this module's database."""
    return with_schema(pg_database, "t_" + uuid.uuid4().hex[:12])
