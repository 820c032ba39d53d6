"""Packaging metadata, the supported pytest range and the optional transformers example.

Cheap checks of what users and indexes read: pyproject.toml's license expression,
classifiers and URLs, that the declared pytest floor is the one CI runs and the README
states, and that the transformers example skips with its reason when transformers is
missing. Building the sdist and wheel (LICENSE in both) is checked by hand with
``python -m build``, not here: it is too slow for the default run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib", reason="tomllib is in the stdlib from Python 3.11")


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _project() -> dict[str, Any]:
    project: dict[str, Any] = _pyproject()["project"]
    return project


def _pytest_floor() -> str:
    """The lower bound of the pytest requirement, e.g. '8.0'."""
    (spec,) = [d for d in _project()["dependencies"] if re.match(r"pytest\b(?!-)", d)]
    match = re.search(r">=\s*([0-9.]+)", spec)
    assert match, f"pytest requirement without a floor: {spec}"
    return match.group(1)


def _full(version: str) -> str:
    """'8.0' -> '8.0.0', the release CI installs for a floor."""
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def test_license_is_an_spdx_expression_with_its_file() -> None:
    project = _project()
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    # PEP 639: a license expression replaces the "License ::" classifiers.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_build_backend_reads_the_license_expression() -> None:
    """setuptools reads `license = "MIT"` and `license-files` from version 77 on."""
    (setuptools,) = [r for r in _pyproject()["build-system"]["requires"]
                     if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools.replace(" ", ""))
    assert match and int(match.group(1)) >= 77, setuptools


def test_python_classifiers_match_requires_python() -> None:
    project = _project()
    assert project["requires-python"] == ">=3.10"
    versions = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]


def test_project_urls() -> None:
    urls = _project()["urls"]
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_ci_tox_and_readme_use_the_declared_pytest_floor() -> None:
    floor = _pytest_floor()
    pin = f"pytest=={_full(floor)}"
    assert pin in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"deps = {pin}" in (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert f"pytest {floor}-" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_transformers_is_an_optional_extra() -> None:
    extras = _project()["optional-dependencies"]
    assert any(r.startswith("transformers") for r in extras["transformers"])
    assert not any(d.startswith("transformers") for d in _project()["dependencies"])


def test_transformers_example_skips_with_its_reason_when_missing(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without transformers, `pytest examples` skips that one module and says why."""
    monkeypatch.setitem(sys.modules, "transformers", None)  # import -> ImportError
    monkeypatch.setitem(sys.modules, "torch", None)  # CI's test venv has no torch either
    source = (ROOT / "examples" / "test_transformers_models.py").read_text(encoding="utf-8")
    pytester.makepyfile(test_transformers_models=source)
    result = pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*needs transformers (pip install*transformers]*"])


def test_every_cli_command_is_documented_and_none_is_denied() -> None:
    """docs/regression-gate.md once said there was no prune command after one existed."""
    (commands,) = [a for a in build_parser()._actions
                   if isinstance(a, argparse._SubParsersAction)]
    doc = (ROOT / "docs" / "regression-gate.md").read_text(encoding="utf-8")
    missing = [name for name in commands.choices if f"`pytest-energy {name}" not in doc]
    assert not missing, f"docs/regression-gate.md lacks commands: {missing}"
    assert not re.search(r"no (pruning|prune) command", doc)
