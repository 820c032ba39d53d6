"""``python -m pytest_energy`` and the ``pytest-energy`` console script."""

from __future__ import annotations

import sys

from pytest_energy.cli import main

if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main"]
