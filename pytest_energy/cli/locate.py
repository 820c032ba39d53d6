"""Where the ``pytest-energy`` CLI finds the history: exactly where the plugin saves it.

The plugin resolves ``storage`` as ``--energy-storage`` > ``$PYTEST_ENERGY_STORAGE`` >
ini ``energy_storage`` > ``.energy``, the last two relative to pytest's rootdir. The
CLI must land on the same directory, or ``pytest-energy runs`` would miss the runs a
project saves where its ini file says. So it finds the project's ini file and rootdir
the way pytest does when run here without arguments (the first directory, from here
upward, with a file holding pytest configuration; else the nearest ``pyproject.toml``;
else the nearest ``setup.py``; else here) and reads the same row of the options table.

It never searches parent directories for some ``.energy/`` holding a history: a
history there may be anyone's (a shared ``/tmp``), and the CLI prints what it holds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import iniconfig

from pytest_energy.errors import EnergyConfigError
from pytest_energy.history.location import StorageLocation, resolve_storage_dir
from pytest_energy.options import SETTINGS_BY_NAME, resolve_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest itself depends on tomli there, so it is always installed
    import tomli as tomllib

# A file's pytest configuration (key -> raw value), or None when it holds none.
IniValues = dict[str, object]


def _ini_section(path: Path, section: str, *, always: bool) -> IniValues | None:
    """The ``[section]`` of an ini-style file; ``always``: the file counts even without it."""
    try:
        parsed = iniconfig.IniConfig(str(path))
    except iniconfig.ParseError as exc:
        raise EnergyConfigError(f"cannot read {path}: {exc}") from None
    if section in parsed:
        return dict(parsed[section].items())
    return {} if always else None


def _toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EnergyConfigError(f"cannot read {path}: {exc}") from None


def _table(document: Mapping[str, object], *keys: str) -> dict[str, object] | None:
    for key in keys:
        value = document.get(key)
        if not isinstance(value, dict):
            return None
        document = value
    return dict(document)


def _pytest_toml(path: Path) -> IniValues | None:
    """``pytest.toml`` (pytest 9): the ``[pytest]`` table; the file counts even if empty."""
    return _table(_toml(path), "pytest") or {}


def _pyproject(path: Path) -> IniValues | None:
    """``[tool.pytest.ini_options]``, or pytest 9's native ``[tool.pytest]`` keys."""
    tool_pytest = _table(_toml(path), "tool", "pytest") or {}
    native = {key: value for key, value in tool_pytest.items() if key != "ini_options"}
    if native:
        return native
    return _table(tool_pytest, "ini_options")


# pytest's discovery order within one directory (see _pytest.config.findpaths).
_LOADERS: tuple[tuple[str, Callable[[Path], IniValues | None]], ...] = (
    ("pytest.toml", _pytest_toml),
    (".pytest.toml", _pytest_toml),
    ("pytest.ini", lambda p: _ini_section(p, "pytest", always=True)),
    (".pytest.ini", lambda p: _ini_section(p, "pytest", always=True)),
    ("pyproject.toml", _pyproject),
    ("tox.ini", lambda p: _ini_section(p, "pytest", always=False)),
    ("setup.cfg", lambda p: _ini_section(p, "tool:pytest", always=False)),
)


def find_inifile(cwd: Path) -> tuple[Path, IniValues] | None:
    """The ini file pytest would use when run here without arguments, and its values."""
    for directory in (cwd, *cwd.parents):
        for name, load in _LOADERS:
            path = directory / name
            if path.is_file():
                values = load(path)
                if values is not None:
                    return path, values
    return None


def find_rootdir(cwd: Path, inifile: Path | None) -> Path:
    """pytest's rootdir when run here without arguments: the ini file's directory; with
    none, the nearest ``pyproject.toml``'s, else the nearest ``setup.py``'s, else here."""
    if inifile is not None:
        return inifile.parent
    for marker in ("pyproject.toml", "setup.py"):
        for directory in (cwd, *cwd.parents):
            if (directory / marker).is_file():
                return directory
    return cwd


def find_storage(explicit: str | None, environ: Mapping[str, str], cwd: Path
                 ) -> Path | StorageLocation:
    """The history directory: ``--storage`` > environment > ini > ``.energy`` in the
    rootdir (see module doc); a PostgreSQL URL, from any of them, as it is.

    Relative paths: as given (from the current directory) for the flag and the
    environment, from the ini file's directory (pytest's rootdir) for the ini key.
    Raises EnergyConfigError for an unreadable ini file or a bad value, naming it.
    """
    setting = SETTINGS_BY_NAME["storage"]
    inifile, ini_value = None, None
    if not (explicit or environ.get(setting.env, "").strip()):
        found = find_inifile(cwd)  # only read when it decides: a broken file elsewhere
        if found is not None:      # must not stop `--storage DIR` from working
            inifile, values = found
            raw = values.get(setting.ini)
            ini_value = None if raw is None else str(raw)
    resolved = resolve_value(setting, explicit or None, environ, ini_value,
                             ini_source=f"{inifile}: {setting.ini}")
    return resolve_storage_dir(resolved, invocation_dir=Path(),
                               rootdir=find_rootdir(cwd, inifile))
