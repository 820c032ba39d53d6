"""``python -m pytest_energy`` and the ``pytest-energy`` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from pytest_energy.cli import main as cli_main
from pytest_energy.cli.base import EXIT_OK, version_text

VERSION_FLAGS = ("--version", "-V")


def main(argv: Sequence[str] | None = None, **streams: Any) -> int:
    """``pytest-energy --version`` prints the version; anything else is a command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in VERSION_FLAGS:
        out = streams.get("out") or sys.stdout
        out.write(version_text() + "\n")
        return EXIT_OK
    return cli_main(args, **streams)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main"]
