"""The PostgreSQL history's schema: connecting, versioned migrations, errors that teach.

Tables live in their own PostgreSQL schema, ``pytest_energy`` unless the URL sets a
``search_path`` (``?options=-csearch_path%3Dteam_a``: its first entry is used), so a
shared database stays tidy and Grafana or plain SQL reads them directly:

* ``schema_version``: one row per migration applied (version, when, by which plugin);
* ``runs``: as in the SQLite history, ``machine`` and ``meter`` as JSONB, and
  ``created_at`` (a timestamp, for dashboards) next to ``created`` (the text saved);
* ``results``: one row per test per run: its position in the run, node id, outcome,
  meter identity, three numbers for dashboards (``joules_per_call``,
  ``joules_per_item``, ``latency_ms``) and ``entry``, the JSON text ``Entry.to_json()``
  gave (type ``json``, not ``jsonb``: read back with its keys in the order saved).

Migrations are numbered; each is applied in its own transaction holding a
transaction-level advisory lock, and the version is read again under the lock, so
many first runs at once (a CI matrix on a fresh database) create the schema exactly
once. Reading never creates or migrates: a compare-only job against an older schema
reads it as it is when this version can (:data:`READABLE_FROM`), else says why not. A
newer schema, or a schema holding tables that are not a pytest-energy history, is
refused and left untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pytest_energy._version import __version__
from pytest_energy.history.location import StorageLocation
from pytest_energy.history.sqlite import StorageError

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1
READABLE_FROM = 1  # the oldest schema this version reads without a migration
DEFAULT_SCHEMA = "pytest_energy"
STATEMENT_TIMEOUT_S = 300.0
"""No save, compare or migration of a history takes minutes: one that does is stuck."""
CONNECT_TIMEOUT_S = 10
TABLES = frozenset({"schema_version", "runs", "results"})
# pg_advisory_xact_lock key: "pytest-energy history" hashed to a stable bigint.
_LOCK_KEY = 0x70795F656E657267
INSTALL_HINT = "install it with: pip install 'pytest-energy[postgres]'"

_V1 = (
    """CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY,
        applied TIMESTAMPTZ NOT NULL DEFAULT now(),
        plugin_version TEXT)""",
    """CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        name TEXT,
        created TEXT NOT NULL,
        created_at TIMESTAMPTZ,
        commit_sha TEXT,
        dirty BOOLEAN,
        branch TEXT,
        fingerprint TEXT NOT NULL,
        machine JSONB NOT NULL,
        meter JSONB NOT NULL,
        plugin_version TEXT,
        tests INTEGER NOT NULL,
        status TEXT)""",
    "CREATE INDEX runs_by_fingerprint ON runs (fingerprint, id)",
    "CREATE INDEX runs_by_name ON runs (name, id)",
    """CREATE TABLE results (
        run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        nodeid TEXT NOT NULL,
        outcome TEXT,
        meter_identity TEXT,
        joules_per_call DOUBLE PRECISION,
        joules_per_item DOUBLE PRECISION,
        latency_ms DOUBLE PRECISION,
        entry JSON NOT NULL,
        PRIMARY KEY (run_id, position),
        UNIQUE (run_id, nodeid))""",
    "CREATE INDEX results_by_nodeid ON results (nodeid, run_id)",
)

# version -> the statements taking a schema of version - 1 to it (run in one transaction).
MIGRATIONS: dict[int, tuple[str, ...]] = {1: _V1}


def import_psycopg() -> Any:
    """psycopg, imported only when a PostgreSQL history is used."""
    try:
        import psycopg
    except ImportError:
        raise StorageError(f"a PostgreSQL history needs psycopg 3, which is not installed; "
                           f"{INSTALL_HINT}") from None
    return psycopg


def _scrub(text: str, location: StorageLocation) -> str:
    """A server or driver message with the URL's password taken out, to be sure."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(location.url or "").password
    except ValueError:
        password = None
    for secret in filter(None, {password, password and unquote(password)}):
        text = text.replace(secret, "***")
    return text.strip().replace("\n", " ")


def _connect_fix(text: str) -> str:
    """What to do about a failed connection, from libpq's message."""
    lower = text.lower()
    if "password" in lower or "authentication" in lower:
        return ("check the user and password: set PGPASSWORD or a ~/.pgpass line for this "
                "host (keep passwords out of the URL)")
    if "does not exist" in lower:
        return "create that database or role (createdb NAME), or fix the URL"
    if "timeout" in lower or "refused" in lower or "could not" in lower or "host" in lower:
        return ("check that the server is running and reachable from here (host, port, "
                "firewall)")
    return "check the URL and the server"


def connect(location: StorageLocation, psycopg: Any) -> psycopg.Connection[Any]:
    """An autocommit connection (writes use explicit transactions), with a connect
    timeout (``PGCONNECT_TIMEOUT`` or the URL's own win) so a down server never hangs a
    run. Credentials: the URL, libpq's environment (``PGPASSWORD``...) or ``~/.pgpass``."""
    url = location.url or ""
    options: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in url and not os.environ.get("PGCONNECT_TIMEOUT"):
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in url and not os.environ.get("PGAPPNAME"):
        options["application_name"] = "pytest-energy"
    if "keepalives" not in url:  # a server that vanishes mid-query is noticed in ~1 min
        options.update(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                       keepalives_count=3)
    try:
        connection = psycopg.connect(url, **options)
        _bound_statements(connection)
        return connection  # type: ignore[no-any-return]
    except Exception as exc:
        if not psycopg_error(exc):
            raise
        detail = _scrub(str(exc), location)
        raise StorageError(f"{location.display}: cannot connect to the PostgreSQL history "
                           f"({detail}); {_connect_fix(detail)}") from None
    except (ValueError, UnicodeError) as exc:  # a malformed URL
        raise StorageError(f"{location.display}: not a usable PostgreSQL URL "
                           f"({_scrub(str(exc), location)}); expected "
                           "postgresql://USER@HOST:PORT/DATABASE") from None


def _bound_statements(connection: Any) -> None:
    """A statement (a lock wait included) that hangs is an error after
    :data:`STATEMENT_TIMEOUT_S`, unless the URL or ``PGOPTIONS`` set a limit."""
    if connection.execute("SHOW statement_timeout").fetchone()[0] in ("0", "0ms"):
        connection.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_S * 1000)}")


@contextlib.contextmanager
def pg_errors(location: StorageLocation, doing: str, psycopg: Any) -> Iterator[None]:
    """Turn psycopg errors into a StorageError naming the database (no password)."""
    try:
        yield
    except Exception as exc:
        if not psycopg_error(exc):
            raise
        hint = ("; check that the server is up and reachable, then retry"
                if psycopg_error(exc, "OperationalError") else "")
        raise StorageError(f"{location.display}: {doing} failed: "
                           f"{_scrub(str(exc), location)}{hint}") from None


def psycopg_error(exc: BaseException, kind: str = "Error") -> bool:
    """Whether ``exc`` is psycopg's ``kind`` (``Error``, ``OperationalError``), told by
    its classes' names: psycopg imported again (pytester restores ``sys.modules``) has
    new classes while its C core still raises the first import's."""
    return any(cls.__name__ == kind and cls.__module__.startswith("psycopg")
               for cls in type(exc).__mro__)


def schema_name(db: psycopg.Connection[Any], location: StorageLocation) -> str:
    """``pytest_energy``, or the first entry of a ``search_path`` the URL sets."""
    if "search_path" not in (location.url or "").lower():
        return DEFAULT_SCHEMA
    row = db.execute("SHOW search_path").fetchone()
    first = str(row[0] if row else "").split(",")[0].strip().strip('"')
    return first if first and first != "$user" else DEFAULT_SCHEMA


def _tables(db: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    return {str(name) for name, in rows}


def _version(db: psycopg.Connection[Any], tables: set[str]) -> int | None:
    """The schema's version; 0 when it has none yet; None when ``schema_version`` is
    not ours (another program's table of that name)."""
    if "schema_version" not in tables:
        return 0
    try:
        with db.transaction():
            row = db.execute("SELECT max(version), count(applied) FROM schema_version"
                             ).fetchone()
    except Exception:  # no such columns: another program's table
        return None
    return int(row[0]) if row and row[0] is not None else 0


def _refuse_foreign(location: StorageLocation, schema: str, tables: set[str],
                    version: int | None) -> None:
    """Tables without our version table belong to another program: never touch them."""
    if version is None or (version == 0 and tables):
        raise StorageError(
            f"{location.display}: schema {schema!r} holds tables that are not a "
            f"pytest-energy history ({', '.join(sorted(tables))}); they were left "
            "untouched: point the URL at another schema (?options=-csearch_path%3DNAME) "
            "or another database")


def prepare(db: psycopg.Connection[Any], location: StorageLocation, schema: str, *,
            create: bool, psycopg: Any) -> int:
    """Make the connection use ``schema``, created or migrated when ``create``; return
    its version (0: no history yet, when only reading). Raises StorageError for a newer
    schema, foreign tables, missing tables, or an old schema that cannot be read."""
    ident = psycopg.sql.Identifier(schema)
    with pg_errors(location, "opening the history", psycopg):
        db.execute(psycopg.sql.SQL("SET search_path TO {}").format(ident))
        tables = _tables(db, schema)
        version = _version(db, tables)
    _refuse_foreign(location, schema, tables, version)
    assert version is not None
    if version == 0 and not create:
        return 0
    _refuse_newer(location, schema, version)
    if version < SCHEMA_VERSION and create:
        version = _migrate(db, location, schema, psycopg)
    if version < READABLE_FROM:
        raise StorageError(
            f"{location.display}: history schema {version} is too old to read with this "
            f"pytest-energy (it reads {READABLE_FROM} to {SCHEMA_VERSION}); save a run with "
            "it once (that upgrades the schema), or use the version that wrote it")
    with pg_errors(location, "opening the history", psycopg):
        missing = TABLES - _tables(db, schema)
    if missing:
        raise StorageError(f"{location.display}: history schema {version} in {schema!r} but "
                           f"the tables {sorted(missing)} are missing; it was left untouched: "
                           "restore it from a backup or point the URL at another schema")
    return version


def _refuse_newer(location: StorageLocation, schema: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{location.display}: schema {schema!r} was written by a newer pytest-energy "
            f"(history schema {version}; this version knows {SCHEMA_VERSION} and older). "
            "It was left untouched: upgrade pytest-energy")


def _migrate(db: psycopg.Connection[Any], location: StorageLocation, schema: str,
             psycopg: Any) -> int:
    """Apply the missing migrations, each in one transaction under the advisory lock,
    looking at the version again under the lock (another process may have done it)."""
    ident = psycopg.sql.Identifier(schema)
    version = 0
    with pg_errors(location, "creating or upgrading the history schema", psycopg):
        for target in range(1, SCHEMA_VERSION + 1):
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                if not db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                  (schema,)).fetchone():
                    db.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(ident))
                tables = _tables(db, schema)
                found = _version(db, tables)
                _refuse_foreign(location, schema, tables, found)
                version = found or 0
                _refuse_newer(location, schema, version)
                if version >= target:
                    continue
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version, plugin_version) "
                           "VALUES (%s, %s)", (target, __version__))
                version = target
    return version


def glob_regex(pattern: str) -> str | None:
    """An SQL GLOB (SQLite's: ``*``, ``?``, ``[...]``/``[^...]`` with ranges, no escape
    character, case-sensitive) as an anchored PostgreSQL regular expression, to be
    passed as a parameter; None for a pattern that matches nothing (an unclosed ``[``,
    a set of reversed ranges only), as SQLite's GLOB does."""
    out = ["^"]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[":
            part, index = _glob_set(pattern, index + 1)
            if part is None:
                return None
            out.append(part)
            continue
        out.append(".*" if char == "*" else "." if char == "?" else _literal(char))
        index += 1
    return "".join(out) + "$"


def _literal(char: str) -> str:
    """One character matching itself in an ARE (inside brackets too)."""
    return "\\" + char if char.isascii() and not char.isalnum() else char


def _glob_set(pattern: str, index: int) -> tuple[str | None, int]:
    """The ``[...]`` set starting after its ``[``: (regex part or None when it matches
    nothing, index after its ``]``). A ``]`` first is a member; ranges as SQLite reads
    them (:func:`_set_members`)."""
    negate = index < len(pattern) and pattern[index] == "^"
    index += negate
    end = pattern.find("]", index + 1 if pattern[index:index + 1] == "]" else index)
    if end < 0:
        return None, len(pattern)  # no closing "]": nothing matches
    members = _set_members(pattern[index:end])
    if not members:
        return ("." if negate else None), end + 1
    return "[" + ("^" if negate else "") + "".join(members) + "]", end + 1


def _set_members(body: str) -> list[str]:
    """The members of a set's body as ARE bracket items: ``a-z`` is a range after a
    character that did not end a range (SQLite's rule); a reversed one matches nothing."""
    members: list[str] = []
    previous = ""
    index = 0
    while index < len(body):
        char = body[index]
        if char == "-" and previous and index + 1 < len(body) and index > 0:
            high = body[index + 1]
            members.pop()
            if previous <= high:
                members.append(f"{_literal(previous)}-{_literal(high)}")
            previous, index = "", index + 2
            continue
        members.append(_literal(char))
        previous = "" if (index == 0 and char == "]") else char
        index += 1
    return members
