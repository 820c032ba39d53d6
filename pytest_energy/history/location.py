"""Where a results history lives: a directory (SQLite, the default) or a PostgreSQL URL.

``--energy-storage`` (and ``$PYTEST_ENERGY_STORAGE``, ini ``energy_storage``, the CLI's
``--storage``) takes either. A value starting with ``postgresql://`` or ``postgres://``
is a server's database (see ``docs/postgres.md``); anything else is a directory.

A URL may hold a password. It is kept to connect with but never shown: messages, the
JSON report's ``compare.storage`` key and the CLI print :attr:`StorageLocation.display`,
the URL without it (and without a ``password=`` query parameter), and ``repr`` shows
the same. Credentials are better left out of the URL altogether: libpq reads
``PGPASSWORD`` or ``~/.pgpass``.

Light on purpose: the option parsers import this on every pytest run, so neither
psycopg nor SQLite is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from pytest_energy.options import Resolved

__all__ = ["POSTGRES_SCHEMES", "StorageLocation", "is_postgres_url", "storage_location"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` names a PostgreSQL database rather than a directory."""
    return isinstance(value, str) and value.strip().lower().startswith(POSTGRES_SCHEMES)


def _without_password(url: str) -> str:
    """The URL with its password (in the user part or the query) left out."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hosts}" if user else hosts
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v)
                               for k, v in pairs], safe="=-/,:")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # an unparsable URL: show its scheme only, never its text
        return url.split("://", 1)[0] + "://..."


@dataclass(frozen=True)
class StorageLocation:
    """A history's place: ``directory`` for SQLite, or ``url`` for PostgreSQL.

    Build one with :func:`storage_location`. ``str()`` and ``repr()`` never show a
    password; the URL itself (:attr:`url`) is for connecting only.
    """

    directory: Path | None = None
    url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.directory is None) == (self.url is None):
            raise ValueError("a StorageLocation is a directory or a URL, exactly one")

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "postgresql" if self.is_postgres else "sqlite"

    @property
    def display(self) -> str:
        """How messages name it: the directory's SQLite file, or the URL without its
        password."""
        if self.url is not None:
            return _without_password(self.url)
        assert self.directory is not None
        return str(self.directory / "history.sqlite3")  # storage.DB_NAME (not imported)

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return f"StorageLocation({self.display!r})"


def storage_location(value: str | Path | StorageLocation) -> StorageLocation:
    """A location from a Path (a directory), a string (a PostgreSQL URL, else a
    directory) or a location (as it is). Relative directories stay relative: resolving
    them is the caller's job (see :func:`resolve_storage_dir`)."""
    if isinstance(value, StorageLocation):
        return value
    if isinstance(value, str) and is_postgres_url(value):
        return StorageLocation(url=value.strip())
    return StorageLocation(directory=Path(value))


def resolve_storage_dir(resolved: Resolved, *, invocation_dir: Path, rootdir: Path
                        ) -> Path | StorageLocation:
    """Relative storage paths: from the invocation dir for CLI/env, the rootdir for ini.

    Like pytest's ``cache_dir``: an ini value is written relative to the project, a
    command-line value relative to where the user typed it. A PostgreSQL URL is
    relative to nothing: it comes back as a :class:`StorageLocation`.
    """
    if is_postgres_url(resolved.value):
        return storage_location(str(resolved.value))
    path = Path(str(resolved.value)).expanduser()
    if path.is_absolute():
        return path
    base = invocation_dir if resolved.source.startswith(("--", "environment")) else rootdir
    return base / path
